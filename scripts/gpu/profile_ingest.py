"""Where a GPU ingest's seconds go: the benchmark's JSONL corpus ingested twice, once plain (the figure)
and once under cProfile with CUDA's sync debug mode on, which reports every call that makes the main
thread wait for the GPU; each such call site is printed once, with its count and stack.

PYTHONPATH=/tmp/site:. python3 scripts/gpu/profile_ingest.py [--tokens N] [--encode-tokens N] [--repeat N]
(on the device machine, sqlite-utils carried as wheels; prints to stdout)
"""

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from ingest.bench import WORDS, make_jsonl
from ingest.encode import Encoder
from ingest.pipeline import ingest
from storage import Store


def run_once(corpus: Path, store_dir: Path, encoder: Encoder, args: argparse.Namespace) -> dict:
    shutil.rmtree(store_dir, ignore_errors=True)
    options = {"encode_tokens": args.encode_tokens, "shard_chunks": args.shard_chunks}
    with Store(store_dir) as store:
        report = ingest([corpus], store, encoder, "bench", progress=False, **options)
    return {"tokens_per_s": round(report.tokens_per_s), "seconds": round(report.seconds, 3), **report.timings}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--encode-tokens", type=int, help="tokens per encoding batch (default: ingest's)")
    p.add_argument("--shard-chunks", type=int, default=2048, help="chunks per shard and commit group")
    p.add_argument("--model", default="hsa-small")
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeat", type=int, default=1, help="plain runs before the profiled one")
    args = p.parse_args()
    encoder, _ = Encoder.load(args.model, args.device)
    cuda = encoder.device.type == "cuda"
    work = Path(tempfile.mkdtemp(prefix="hsa-profile-ingest-"))
    corpus, _ = make_jsonl(work / "corpus.jsonl", args.tokens, encoder.model.tokenizer)
    encoder.encode_many([encoder.model.tokenizer.encode(" ".join(WORDS * k)) for k in (20, 30)])
    if cuda:
        torch.cuda.synchronize()
    for _ in range(args.repeat):
        print("plain:", run_once(corpus, work / "store", encoder, args))

    sites: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message):
            frames = [f for f in traceback.format_stack()[:-1] if "/warnings.py" not in f]
            sites["".join(frames[-6:])] += 1

    profile = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        t0 = time.perf_counter()
        profile.enable()
        result = run_once(corpus, work / "store", encoder, args)
        profile.disable()
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    print(f"profiled ({time.perf_counter() - t0:.2f} s with the profiler):", result)
    print(f"\n{sum(sites.values())} synchronizing calls on the main thread, {len(sites)} call sites:")
    for stack, n in sites.most_common(8):
        print(f"--- {n}×\n{stack}")
    pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
