"""`hsa compact`: rewrite shards without the chunks of deleted documents."""

import argparse
import sys

from storage import Store, StoreError, UsageError, default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compact",
        help="rewrite shards without deleted chunks",
        description="Rewrite the shards that hold chunks of deleted documents, freeing their disk space.",
    )
    p.add_argument("--collection", "-c", help="only this collection (default: all)")
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")


def run(args: argparse.Namespace) -> int:
    try:
        with Store(args.store) as store, store.writing():
            r = store.compact(args.collection)
    except (StoreError, OSError) as e:
        print(f"hsa compact: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    print(
        f"rewrote {r.shards_rewritten} shard(s), removed {r.shards_removed}; "
        f"{r.bytes_before - r.bytes_after:,} bytes freed",
        file=sys.stderr,
    )
    return 0
