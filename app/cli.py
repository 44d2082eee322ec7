"""The `hsa` command line: a thin shell over the packages; each subcommand calls their library API."""

import argparse
import sys

NOT_BUILT = {
    "ingest": "ingest files into a collection (issue #4)",
    "ask": "ask a question against a collection (issue #7)",
    "serve": "start the web app (issue #7)",
    "collections": "list collections (issue #4)",
    "delete": "delete a collection or a document (issue #4)",
    "compact": "rewrite shards without deleted chunks (issue #4)",
    "eval": "long-context evaluation (issue #6)",
    "bench": "benchmarks (issues #3, #4)",
    "train": "train the model (issue #5)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsa", description="HSA DocQA: question answering over documents.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in NOT_BUILT.items():
        p = sub.add_parser(name, help=f"{help_text} — not built yet", add_help=True)
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in NOT_BUILT:
        print(f"hsa {args.command}: not built yet — {NOT_BUILT[args.command]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
