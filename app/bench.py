"""`hsa bench app`: the served app under load, on loopback: start-up time, first-token latency against a
100-page collection, and N concurrent questions through gradio_client (latency p50/p95, failures)."""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.commands import add_reread_argument
from ingest.bench import make_pdf

QUESTIONS = [
    "What is the memory of the collection?",
    "Which page talks about the shard index?",
    "Who made the first model?",
    "What does the encoder do with each chunk?",
    "Where is the answer to the question?",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint or preset served (default: the app's default model)")
    p.add_argument("--pages", type=int, default=100, help="pages of the generated PDF (default: %(default)s)")
    p.add_argument("--concurrent", type=int, default=20, help="questions sent at once (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=16, help="answer length (default: %(default)s)")
    add_reread_argument(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run(args: argparse.Namespace) -> int:
    from gradio_client import Client, handle_file

    from hsa_core.checkpoint import DEFAULT_MODEL

    args.model = args.model or DEFAULT_MODEL
    work = Path(tempfile.mkdtemp(prefix="hsa-bench-app-"))
    pdf = make_pdf(work / "report.pdf", args.pages)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "app.cli", "serve", "--store", str(work / "store"), "--model", args.model]
    cmd += ["--reread", str(args.reread)] if args.reread is not None else []
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 300:
                    print("hsa bench app: the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        startup = time.perf_counter() - t0
        client = Client(url, verbose=False)
        t1 = time.perf_counter()
        report = client.predict([handle_file(str(pdf))], "bench", api_name="/ingest")
        ingest_s = time.perf_counter() - t1
        single = client.predict(QUESTIONS[0], "bench", args.max_tokens, 0.0, api_name="/ask")

        def ask(i: int) -> tuple[float, str | None]:
            t = time.perf_counter()
            try:
                Client(url, verbose=False).predict(
                    QUESTIONS[i % len(QUESTIONS)], "bench", args.max_tokens, 0.0, api_name="/ask"
                )
                return time.perf_counter() - t, None
            except Exception as e:  # a failed request is a result to report, not a crash
                return time.perf_counter() - t, str(e)

        with ThreadPoolExecutor(args.concurrent) as pool:
            results = list(pool.map(ask, range(args.concurrent)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies = [t for t, _ in results]
    out = {
        "model": args.model,
        "reread": args.reread,
        "pages": args.pages,
        "tokens": report["tokens"],
        "chunks": report["chunks"],
        "startup_s": round(startup, 2),
        "ingest_s": round(ingest_s, 2),
        "first_token_s": single["timings"]["first_token_s"],
        "answer_s": single["timings"]["total_s"],
        "concurrent": args.concurrent,
        "failed": sum(e is not None for _, e in results),
        "errors": sorted({e for _, e in results if e}),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(_percentile(latencies, 0.95), 2),
        "max_s": round(max(latencies), 2),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:>14}: {v}")
    return 0 if out["failed"] == 0 else 1
