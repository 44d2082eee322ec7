"""`hsa serve`: the web app on loopback by default, one model shared by a queue of requests."""

import argparse
import os
import sys

from app.commands import add_reread_argument
from storage import Store, StoreError, UsageError, default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="start the web app",
        description="Start the Gradio app: collections, upload, chat, and the evidence the model read. "
        "Named API endpoints /ask and /ingest serve gradio_client.",
    )
    p.add_argument("--store", help=f"store folder (default: $HSA_STORE, else {default_store_path()})")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback)"
    )
    p.add_argument("--port", type=int, default=7860, help="(default: %(default)s)")
    p.add_argument(
        "--model",
        help="checkpoint or preset (default: the default model, smollm2-hsa; hsa-small needs no download)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument(
        "--auth", default=os.environ.get("HSA_AUTH"), help="user:password required to log in ($HSA_AUTH)"
    )
    add_reread_argument(p)
    p.add_argument("--max-upload-mb", type=int, default=200, help="largest upload (default: %(default)s MB)")
    p.add_argument("--concurrency", type=int, default=1, help="requests run at once (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from app.service import QAService
    from app.ui import CSS, build_ui
    from ingest import Encoder

    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            print("hsa serve: --auth must be user:password", file=sys.stderr)
            return 2
        auth = (user, password)
    try:
        encoder, note = Encoder.load(args.model, args.device)
        if note:
            print(f"hsa serve: warning: {note}", file=sys.stderr)
        store = Store(args.store)
        service = QAService(store, encoder, args.reread)
    except (UsageError, ValueError) as e:
        print(f"hsa serve: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"hsa serve: {e}", file=sys.stderr)
        return 1
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=256)
    print(f"hsa serve: store {store.root}, model {encoder.name}", file=sys.stderr)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        auth=auth,
        max_file_size=f"{args.max_upload_mb}mb",
        show_error=True,
        footer_links=["api"],
        css=CSS,
        quiet=False,
    )
    return 0
