"""The shipped model's acceptance check: a pass key hidden in ~32K tokens of text it never saw, found
through the command line a user runs (`hsa ingest` a text file, then `hsa ask`).

The haystack is the docstrings of the installed torch package (pinned in pyproject.toml, so the same
text everywhere, and none of it in the training corpus), shuffled per sample; the key goes in at a
random depth between two paragraphs. Usage:

    python scripts/passkey_cli.py [--samples 10] [--tokens 32768] [--model DIR] [--json]
"""

import argparse
import ast
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from hsa_core.checkpoint import MODELS_DIR, SMALL_MODEL
from hsa_core.tokenizer import Tokenizer

NEEDLE = "The pass key is {n}. Remember it. {n} is the pass key."
QUESTION = "What is the pass key?"


def docstrings() -> list[str]:
    """Every module, class and function docstring of the installed torch, in a fixed order."""
    root = Path(torch.__file__).parent
    out = []
    for path in sorted(root.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and 200 < len(doc) < 2000:  # paragraphs, so the length lands close
                    out.append(doc.strip())
    return out


def haystack(paragraphs: list[str], tokens: int, key: str, depth: float, tok: Tokenizer, rng) -> str:
    """Random paragraphs up to `tokens` tokens with the needle between two of them at `depth`."""
    picked, total = [], 0
    while total < tokens:
        p = rng.choice(paragraphs)
        picked.append(p)
        total += len(tok.encode("\n\n" + p))
    at = round(depth * len(picked))
    picked.insert(at, NEEDLE.format(n=key))
    return "\n\n".join(picked)


def hsa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=32768, help="haystack length in tokens")
    ap.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tok = Tokenizer.from_file(MODELS_DIR / SMALL_MODEL / "tokenizer.json")  # only to size the haystack
    paragraphs = docstrings()
    model = ["--model", args.model] if args.model else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        for i in range(args.samples):
            rng = random.Random(f"passkey-cli/{args.seed}/{i}")
            key, depth = str(rng.randrange(10_000, 100_000)), rng.random()
            path = Path(tmp) / f"haystack-{i}.txt"
            path.write_text(haystack(paragraphs, args.tokens, key, depth, tok, rng))
            ing = hsa("ingest", str(path), "-c", f"pk{i}", "--store", store, "--quiet", "--json", *model)
            if ing.returncode:
                raise SystemExit(f"hsa ingest failed on {path}: {ing.stderr.strip()}")
            ask = hsa(
                "ask", QUESTION, "-c", f"pk{i}", "--store", store, "--json", "--max-tokens", "12", *model
            )
            if ask.returncode:
                raise SystemExit(f"hsa ask failed: {ask.stderr.strip()}")
            answer = json.loads(ask.stdout)
            tokens = json.loads(ing.stdout)["tokens"]
            rows.append(
                {
                    "key": key,
                    "depth": round(depth, 3),
                    "tokens": tokens,
                    "answer": answer["answer"],
                    "correct": key in answer["answer"],
                    "seconds": answer["timings"],
                }
            )
            if not args.json:
                print(
                    f"{i}: key {key} depth {depth:.2f} tokens {tokens}: {answer['answer']!r} "
                    f"{'ok' if rows[-1]['correct'] else 'WRONG'}",
                    flush=True,
                )
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "samples": rows}, indent=1))
    else:
        print(f"accuracy {accuracy:.0%} over {len(rows)} samples of ~{args.tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
