"""`hsa ask "QUESTION"`: answer from a collection, streaming the answer, or one JSON object with --json."""

import argparse
import json
import sys
import textwrap

from app.commands import add_reread_argument
from app.service import QAService
from ingest import Encoder
from storage import Store, StoreError, UsageError, default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ask",
        help="ask a question against a collection",
        description="Answer a question from a collection's documents and list the chunks the model read, "
        "most relevant first (score = selection weight summed over answer tokens and HSA layers).",
    )
    p.add_argument("question", help="the question")
    p.add_argument("--collection", "-c", default="default", help="collection name (default: %(default)s)")
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")
    p.add_argument(
        "--model",
        help="the model the collection was encoded with (default: the default model, smollm2-hsa; "
        "hsa-small needs no download)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64, help="answer length limit (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)")
    p.add_argument("--chunks", type=int, default=5, help="evidence chunks to show (default: %(default)s)")
    add_reread_argument(p)
    p.add_argument("--json", action="store_true", help="print {answer, chunks, timings} as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        encoder, note = Encoder.load(args.model, args.device)
        if note:
            print(f"hsa ask: warning: {note}", file=sys.stderr)
        with Store(args.store) as store:
            service = QAService(store, encoder, args.reread)
            kwargs = dict(max_new_tokens=args.max_tokens, temperature=args.temperature)
            if args.json:
                answer = service.ask(args.question, args.collection, **kwargs)
                print(json.dumps(answer.to_json(), indent=2))
                return 0
            shown = ""
            for answer in service.stream(args.question, args.collection, **kwargs):
                if answer.answer.startswith(shown):
                    sys.stdout.write(answer.answer[len(shown) :])
                else:  # a reread kept the answer from its best chunk alone: the model was surer of it
                    sys.stdout.write(f"\n(surer, from its best chunk alone:) {answer.answer}")
                sys.stdout.flush()
                shown = answer.answer
            print()
            for e in answer.chunks[: args.chunks]:  # each whole: what was picked may sit at its end
                where = f"{e.document}" + (f", page {e.page}" if e.page else "")
                print(f"  [{e.score:.3f}] {where}")
                print(
                    textwrap.fill(
                        " ".join(e.text.split()),
                        100,
                        initial_indent=" " * 4,
                        subsequent_indent=" " * 4,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
            return 0
    except (UsageError, ValueError) as e:
        print(f"hsa ask: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"hsa ask: {e}", file=sys.stderr)
        return 1
