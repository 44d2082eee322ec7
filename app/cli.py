"""The `hsa` command line: a thin shell over the packages.

Each subcommand lives in app/commands/<name>.py with `add_parser(subparsers)` and `run(args) -> int`;
modules are imported when the command line is built, and heavy libraries inside `run`."""

import argparse
import importlib
import sys

COMMANDS = ("ingest", "ask", "serve", "collections", "delete", "compact", "eval", "bench", "train")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="hsa", description="HSA DocQA: question answering over documents.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {name: importlib.import_module(f"app.commands.{name}") for name in COMMANDS}
    for module in modules.values():
        module.add_parser(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
