"""`hsa collections`: list collections with documents, chunks, tokens and bytes on disk."""

import argparse
import json
import sys
from dataclasses import asdict

from storage import Store, StoreError, UsageError, default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collections", help="list collections", description="List the collections of a store.")
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")
    p.add_argument("--json", action="store_true", help="print a JSON list")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    try:
        with Store(args.store) as store:
            stats = store.collections()
            root = store.root
    except (StoreError, OSError) as e:
        print(f"hsa collections: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    if args.json:
        print(json.dumps([asdict(s) for s in stats], indent=2))
        return 0
    if not stats:
        print(f"no collections in {root}", file=sys.stderr)
        return 0
    head = ("collection", "model", "documents", "failed", "chunks", "tokens", "on disk", "dead chunks")
    rows = [
        (
            s.name,
            s.model,
            f"{s.documents:,}",
            f"{s.failed:,}",
            f"{s.chunks:,}",
            f"{s.tokens:,}",
            _size(s.bytes),
            f"{s.dead_chunks:,}",
        )
        for s in stats
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return 0
