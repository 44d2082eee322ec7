"""The `hsa` command line: a thin shell over the packages.

Each subcommand lives in app/commands/<name>.py with `add_parser(subparsers)` and `run(args) -> int`;
a command whose module does not exist yet is listed and answers 'not built yet' with exit code 2."""

import argparse
import importlib
import sys

COMMANDS = {
    "ingest": "ingest files, folders, globs or JSONL corpora into a collection",
    "ask": "ask a question against a collection",
    "serve": "start the web app",
    "collections": "list collections",
    "delete": "delete a collection or a document",
    "compact": "rewrite shards without deleted chunks",
    "eval": "long-context evaluation",
    "bench": "benchmarks (kernels, ingest, app)",
    "train": "train the model, or build its corpus",
}


def _module(name: str):
    try:
        return importlib.import_module(f"app.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"app.commands.{name}":
            raise
        return None


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="hsa", description="HSA DocQA: question answering over documents.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS.items():
        module = modules[name] = _module(name)
        if module is None:
            p = sub.add_parser(name, help=f"{help_text} (not built yet)")
            p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        else:
            module.add_parser(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    module = modules[args.command]
    if module is None:
        print(f"hsa {args.command}: not built yet ({COMMANDS[args.command]})", file=sys.stderr)
        return 2
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
