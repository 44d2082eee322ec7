"""`hsa eval`: accuracy and evidence recall against context length, a table, JSON and a plot."""

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="long-context evaluation",
        description="Build each task's samples at each length, encode the context into memory (one "
        "document at a time, in segments), ask, and score. Prints a task × length table of accuracy "
        "(evidence recall), and the strict accuracy where lower (the answer also named a value that was not "
        "asked for); writes results.json and accuracy.png to --out.",
    )
    p.add_argument(
        "--tasks",
        default="passkey,niah_single",
        help="comma-separated (default: %(default)s); docqa_real alone runs the real-document benchmark",
    )
    p.add_argument(
        "--lengths", default="4k,16k", help="comma-separated, e.g. 4k,64k,1m (default: %(default)s)"
    )
    p.add_argument(
        "--samples", type=int, default=10, help="samples per task and length (default: %(default)s)"
    )
    p.add_argument(
        "--model",
        help="checkpoint or preset (default: the default model, smollm2-hsa; hsa-small needs no download)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float32"],
        default="auto",
        help="weights and activations; auto: bfloat16 on cuda, float32 on cpu (default: %(default)s)",
    )
    p.add_argument("--corpus", help="corpus folder, needed by docqa tasks and the corpus haystack")
    p.add_argument(
        "--documents",
        choices=["r-faq", "r-data", "r-admin", "r-ints", "r-lang"],
        default="r-faq",
        help="docqa_real's PDF and questions: the R FAQ, R Data Import/Export, R Installation and "
        "Administration, R Internals or the R Language Definition (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="first sample seed (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=32, help="answer length limit (default: %(default)s)")
    p.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="chunks each answer token reads per HSA layer (default: the model's)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/eval"), help="folder for results.json, accuracy.png"
    )
    p.add_argument("--json", action="store_true", help="print the JSON results instead of the table")


def run(args: argparse.Namespace) -> int:
    from hsa_core import ModelNotFound, load_model
    from hsa_core.checkpoint import DEFAULT_MODEL
    from hsa_core.corpus import Corpus, CorpusError
    from hsa_core.evaluate import evaluate, format_length, parse_length, plot, table, write_json
    from hsa_core.smollm2 import BaseModelError
    from hsa_core.tasks import NEEDS_CORPUS, TASKS, TaskEnv, TaskError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if "docqa_real" in tasks:
        if tasks != ["docqa_real"]:
            print("hsa eval: run docqa_real on its own (it has no lengths)", file=sys.stderr)
            return 2
        return run_docqa_real(args)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        print(f"hsa eval: unknown tasks {unknown}; known: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
        device = torch.device(
            "cuda"
            if args.device == "auto" and torch.cuda.is_available()
            else ("cpu" if args.device == "auto" else args.device)
        )
        dtype = getattr(torch, args.dtype) if args.dtype != "auto" else None
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model = load_model(args.model, device=device, dtype=dtype)
        corpus = Corpus(args.corpus) if args.corpus else None
    except (ValueError, ModelNotFound, BaseModelError, CorpusError) as e:
        print(f"hsa eval: {e}", file=sys.stderr)
        return 2
    if corpus is None and NEEDS_CORPUS & set(tasks):
        print(f"hsa eval: tasks {sorted(NEEDS_CORPUS & set(tasks))} need --corpus", file=sys.stderr)
        return 2
    env = TaskEnv(model.tokenizer, corpus, window=model.cfg.window)

    def on_sample(r) -> None:
        print(
            f"  {r.task} {format_length(r.length)} seed {r.seed}: {r.accuracy:.0%} "
            + (f"strict {r.strict:.0%} " if r.strict < r.accuracy else "")
            + f"(evidence {r.evidence_recall:.0%}, {r.seconds:.1f} s) {r.answer!r} vs {r.references}",
            file=sys.stderr,
        )

    t0 = time.perf_counter()
    try:
        results = evaluate(
            model,
            env,
            tasks,
            lengths,
            args.samples,
            args.seed,
            args.max_tokens,
            on_sample=on_sample,
            top_k=args.top_k,
        )
    except TaskError as e:
        print(f"hsa eval: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": str(args.model or DEFAULT_MODEL),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "samples": args.samples,
        "top_k": args.top_k or model.cfg.top_k,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(results, args.out / "results.json", meta)
    plot(results, args.out / "accuracy.png", title=f"{meta['model']}: accuracy against context length")
    if args.json:
        print((args.out / "results.json").read_text())
    else:
        print(table(results))
        print(f"\nwritten: {args.out / 'results.json'}, {args.out / 'accuracy.png'}")
    return 0


def run_docqa_real(args: argparse.Namespace) -> int:
    """The real-document benchmark (app/docqa_real.py) with its keyword and base-model baselines."""
    from app import docqa_real
    from hsa_core.smollm2 import BaseModelError, fetch_gguf, load_smollm2

    cuda = args.device == "auto" and torch.cuda.is_available()
    device = "cuda" if cuda else args.device.replace("auto", "cpu")
    try:
        base = load_smollm2(fetch_gguf(), window=2048).to(device)
    except BaseModelError as e:
        print(f"hsa eval: the base-model baseline needs SmolLM2: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = docqa_real.run(args.model, device, base, args.max_tokens, args.documents)
    result["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"docqa_real-{args.documents}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(docqa_real.table(result["summary"]))
        print(f"\nwritten: {args.out / f'docqa_real-{args.documents}.json'}")
    return 0
