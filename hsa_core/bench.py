"""`hsa bench reader`: what a model costs to use — encoding a document into memory (tokens/s), then
answering over that memory: time to the first token (the prompt read over the whole memory) and per
further token. The figures do not depend on the weights or the text, so random token ids stand in.
"""

import argparse
import json
import time

import torch

from hsa_core.checkpoint import load_model
from hsa_core.memory import ChunkMemory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", default="hsa-small,smollm2", help="comma-separated names (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument(
        "--memory-tokens", type=int, default=49152, help="tokens in memory (default: %(default)s, ~100 pages)"
    )
    parser.add_argument(
        "--prompt-tokens", type=int, default=24, help="question tokens (default: %(default)s)"
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="answer length (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def measure(name: str, device: torch.device, memory_tokens: int, prompt_tokens: int, new_tokens: int) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = load_model(name, device=device, dtype=dtype)
    loaded = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    vocab = model.cfg.vocab_size
    doc = torch.randint(100, vocab, (memory_tokens,), generator=g).to(device)
    model.encode_memory(doc[:4096], pad_id=model.tokenizer.eot_id)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    mem = model.encode_memory(doc, pad_id=model.tokenizer.eot_id)
    _sync(device)
    encode = time.perf_counter() - t0
    memory = ChunkMemory(mem.landmarks, mem.k, mem.v)
    prompt = torch.randint(100, vocab, (prompt_tokens,), generator=g).to(device)
    stamps = []
    t0 = time.perf_counter()
    for _ in model.generate(prompt, memory=memory, max_new_tokens=new_tokens):
        stamps.append(time.perf_counter() - t0)
    return {
        "model": name,
        "parameters": model.num_parameters(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_s": round(loaded, 2),
        "memory_tokens": memory_tokens,
        "chunks": len(memory),
        "encode_tokens_per_s": round(memory_tokens / encode),
        "first_token_s": round(stamps[0], 3),
        "per_token_s": round((stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), 4),
    }


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = [measure(n, device, args.memory_tokens, args.prompt_tokens, args.new_tokens) for n in names]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['model']} ({r['parameters'] / 1e6:.1f}M parameters, {r['device']} {r['dtype']}, "
                f"{r['threads']} threads): encode {r['encode_tokens_per_s']:,} tokens/s; over "
                f"{r['memory_tokens']:,} tokens of memory: first token {r['first_token_s']} s, "
                f"then {r['per_token_s']} s per token"
            )
    return 0
