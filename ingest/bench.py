"""`hsa bench ingest`: ingest throughput (tokens/s) and bytes on disk per token, on generated inputs.

Two workloads, both made here so the numbers can be reproduced anywhere: a PDF of N pages written with
PyMuPDF, and a JSONL corpus of about N tokens (documents of 200–4,000 tokens). Each goes through the same
`ingest()` as `hsa ingest`, into a fresh store; the report gives the stage times so a miss can be explained.
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ingest.encode import Encoder
from ingest.pipeline import ingest
from storage import Store

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there one all we their been has when who will more no if out so "
    "said what up its about into than them can only other new some could time these two may then do "
    "first any my now such like our over man me even most made after also did many before must "
    "through back years where much your way well down should because each just those people memory "
    "chunk landmark attention window retrieval document page collection storage shard index token "
    "encoder model sparse hierarchical question answer evidence corpus"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(1, 99999)))
    return " ".join(words).capitalize() + "."


def make_pdf(path: Path, pages: int, seed: int = 0) -> Path:
    """A PDF of `pages` full pages of generated prose (about 500 tokens each)."""
    import pymupdf

    rng = random.Random(seed)
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page()
        text = " ".join(_sentence(rng) for _ in range(28))
        page.insert_textbox(page.rect + (54, 54, -54, -54), text, fontsize=10)
    doc.save(path)
    return path


def make_jsonl(path: Path, tokens: int, tokenizer, seed: int = 0) -> tuple[Path, int]:
    """A JSONL corpus with at least `tokens` tokens; returns the path and the exact token count."""
    rng = random.Random(seed)
    total, n = 0, 0
    with open(path, "w") as f:
        while total < tokens:
            target = int(rng.lognormvariate(6.8, 0.7))  # median ≈ 900 tokens, clipped to 200–4,000
            target = max(200, min(4000, target))
            sentences, count = [], 0
            while count < target:
                s = _sentence(rng)
                sentences.append(s)
                count += len(tokenizer.encode(s)) + 1
            text = " ".join(sentences)
            total += len(tokenizer.encode(text))
            f.write(json.dumps({"id": f"doc{n}", "title": f"Document {n}", "text": text}) + "\n")
            n += 1
    return path, total


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", choices=("pdf", "jsonl", "all"), default="all")
    parser.add_argument("--pages", type=int, default=100, help="pages of the PDF (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens of the corpus (default: 1M)")
    parser.add_argument("--model", default="small", help="checkpoint or preset (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="extraction processes (default: 0)")
    parser.add_argument("--threads", type=int, help="CPU threads for encoding (default: torch's)")
    parser.add_argument("--encode-tokens", type=int, help="tokens per encoding batch (default: ingest's)")
    parser.add_argument("--dir", help="keep inputs and stores here (default: a temporary folder, removed)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of the encode stage")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    encoder, _ = Encoder.load(args.model, args.device)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hsa-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    # warm up the model (first-call allocations, kernel selection) outside the timed runs
    encoder.encode_many([encoder.model.tokenizer.encode(" ".join(WORDS * k)) for k in (20, 30)])
    if encoder.device.type == "cuda":  # encoding is queued on the GPU: let it finish before timing
        torch.cuda.synchronize()
    results = []
    try:
        workloads = ("pdf", "jsonl") if args.workload == "all" else (args.workload,)
        for name in workloads:
            t0 = time.perf_counter()
            if name == "pdf":
                inputs = make_pdf(work / f"bench-{args.pages}p.pdf", args.pages)
            else:
                inputs, _ = make_jsonl(
                    work / f"bench-{args.tokens}.jsonl", args.tokens, encoder.model.tokenizer
                )
            made = time.perf_counter() - t0
            store_dir = work / f"store-{name}"
            shutil.rmtree(store_dir, ignore_errors=True)
            cpu0 = time.process_time()
            with Store(store_dir) as store:
                report = ingest(
                    [inputs],
                    store,
                    encoder,
                    "bench",
                    workers=args.workers,
                    encode_tokens=args.encode_tokens,
                    progress=False,
                )
            cpu = time.process_time() - cpu0  # CPU seconds of this process: robust to other load
            disk = _du(store_dir)
            results.append(
                {
                    "workload": name,
                    "input": str(inputs),
                    "input_bytes": inputs.stat().st_size,
                    "made_in_s": round(made, 2),
                    "model": encoder.name,
                    "device": str(encoder.device),
                    "threads": torch.get_num_threads(),
                    "documents": report.added,
                    "tokens": report.tokens,
                    "seconds": round(report.seconds, 2),
                    "tokens_per_s": round(report.tokens_per_s),
                    "cpu_seconds": round(cpu, 2),
                    "tokens_per_cpu_s": round(report.tokens / cpu) if cpu else None,
                    "shard_bytes_per_token": round(report.bytes_per_token, 1),
                    "store_bytes_per_token": round(disk / report.tokens, 1),
                    "timings": report.timings,
                    "failed": report.failed,
                }
            )
        if args.profile:
            ids = encoder.model.tokenizer.encode(" ".join(_sentence(random.Random(1)) for _ in range(700)))[
                :8192
            ]
            with torch.profiler.profile() as prof:
                encoder.encode(ids)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['workload']}: {r['tokens']:,} tokens, {r['documents']} document(s) in {r['seconds']} s "
                f"on {r['device']} ({r['threads']} threads) → {r['tokens_per_s']:,} tokens/s; "
                f"{r['shard_bytes_per_token']} shard bytes/token, "
                f"{r['store_bytes_per_token']} store bytes/token; "
                f"stages {r['timings']}"
            )
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":  # python -m ingest.bench: the same benchmark without the app (e.g. on a GPU host)
    parser = argparse.ArgumentParser(prog="python -m ingest.bench", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
