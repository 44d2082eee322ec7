"""`hsa ingest PATH...`: files, folders, globs and JSONL corpora into a collection (over ingest.ingest)."""

import argparse
import json
import os
import sys

import torch
from tqdm import tqdm

from ingest import Encoder, IngestEvent, ingest
from storage import Store, StoreError, UsageError, default_store_path

LABELS = {"failed": "error", "warning": "warning", "skipped": "skipped", "removed": "removed"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest files, folders, globs or JSONL corpora into a collection",
        description="Extract, tokenize and encode documents into a collection's chunk memory. Files already "
        "stored with the same bytes are skipped; a changed file replaces its old document. Exit code 1 when "
        "some inputs failed (each is named on stderr), 2 on a usage error.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="files (.pdf .txt .md .html .jsonl), folders, globs"
    )
    p.add_argument("--collection", "-c", default="default", help="collection name (default: %(default)s)")
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")
    p.add_argument(
        "--model",
        help="checkpoint folder, models/ name or preset ('test', 'small'); default: the default model, "
        "smollm2-hsa (hsa-small needs no download), else the preset 'small' with a warning",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--sync", action="store_true", help="also remove documents whose files have vanished")
    p.add_argument(
        "--max-size", type=float, default=256, metavar="MiB", help="skip larger files (default: 256)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="extraction processes (default: %(default)s)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for encoding (default: torch's, one per core)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-document lines")


def run(args: argparse.Namespace) -> int:
    verbose = not args.quiet

    def on_event(event: IngestEvent) -> None:
        if event.kind in ("failed", "warning") or (verbose and event.kind in ("skipped", "removed")):
            tqdm.write(f"hsa ingest: {LABELS[event.kind]}: {event.path}: {event.message}", file=sys.stderr)

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        encoder, note = Encoder.load(args.model, args.device)
        if note:
            print(f"hsa ingest: warning: {note}", file=sys.stderr)
        with Store(args.store) as store:
            report = ingest(
                args.paths,
                store,
                encoder,
                args.collection,
                sync=args.sync,
                max_bytes=int(args.max_size * 2**20),
                workers=args.workers,
                progress=False if args.quiet else None,
                on_event=on_event,
            )
    except UsageError as e:
        print(f"hsa ingest: {e}", file=sys.stderr)
        return 2
    except (StoreError, OSError) as e:
        print(f"hsa ingest: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hsa ingest: interrupted; documents committed so far are stored whole", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif verbose:
        r = report
        print(
            f"{r.collection}: {r.added} added, {r.replaced} replaced, {r.skipped} skipped, "
            f"{r.failed} failed, {r.removed} removed; {r.tokens:,} tokens in {r.seconds:.1f} s "
            f"({r.tokens_per_s:,.0f} tokens/s, {r.bytes_per_token:.0f} bytes/token)",
            file=sys.stderr,
        )
    return 1 if report.failed else 0
