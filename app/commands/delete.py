"""`hsa delete --collection NAME [--document PATH_OR_ID]`: rows go at once; `hsa compact` reclaims shards."""

import argparse
import sys

from storage import Store, StoreError, UsageError, default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "delete",
        help="delete a collection or a document",
        description="Delete a whole collection (its shard files too), or documents of it by path or id "
        "(a JSONL file's path deletes all its records). Document deletes free disk space at `hsa compact`.",
    )
    p.add_argument("--collection", "-c", required=True, help="collection name")
    p.add_argument("--document", "-d", metavar="PATH_OR_ID", help="a document's path or id (default: all)")
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")


def run(args: argparse.Namespace) -> int:
    try:
        with Store(args.store) as store, store.writing():
            if args.document is None:
                store.delete_collection(args.collection)
                print(f"deleted collection {args.collection}", file=sys.stderr)
            else:
                n = store.delete_documents(args.collection, args.document)
                print(f"deleted {n} document(s) from {args.collection}", file=sys.stderr)
    except (StoreError, OSError) as e:
        print(f"hsa delete: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    return 0
