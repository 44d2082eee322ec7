"""A CPU toy for one question: how soon does a model configuration learn to read what it retrieves?

A context document of `ctx_chunks` chunks of random tokens holds a marker and a 4-digit key at least a
window before the question; the question is its own document (so only HSA reaches the key), and the
loss is on the 4 digits only. Every chunk is selected when top_k ≥ ctx_chunks, so this measures reading
alone, not selection. docs/training-notes.md has the results.

    python scripts/reading_toy.py STEPS LR '{"preset": "test", "top_k": 8, "residual": "standard"}'
    ("anneal": N with "residual": "bypass" fades a direct path x + g·o over the first N steps; "seed": N
    initialises the weights differently, on the same data)
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

from hsa_core.config import HSAConfig
from hsa_core.model import HSAModel

MARKER, QUESTION, DIGIT0 = 5, 2, 10  # token ids: digits are DIGIT0..DIGIT0+9, filler 100..999


def batch(g: torch.Generator, rows: int, length: int, window: int):
    ctx = torch.randint(100, 1000, (rows, length), generator=g)
    key = torch.randint(0, 10, (rows, 4), generator=g) + DIGIT0
    for b in range(rows):
        p = torch.randint(0, max(1, length - 5 - window), (1,), generator=g).item()
        ctx[b, p] = MARKER
        ctx[b, p + 1 : p + 5] = key[b]
    question = torch.cat([torch.full((rows, 1), QUESTION), torch.full((rows, 1), MARKER), key], 1)
    doc = torch.cat([torch.zeros(rows, length), torch.ones(rows, question.shape[1])], 1).long()
    return torch.cat([ctx, question], 1), doc, key


def main() -> None:
    steps, lr, over = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    preset, ctx_chunks, rows = over.pop("preset", "test"), over.pop("ctx_chunks", 6), over.pop("batch", 32)
    anneal = over.pop("anneal", 0)  # bypass: steps over which the direct path x + g·o fades (bypass_anneal)
    torch.manual_seed(over.pop("seed", 0))  # the weights' initialisation; the data stays the same
    cfg = HSAConfig.preset(preset, **over)
    model = HSAModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    t0 = time.time()
    for step in range(steps):
        for group in model.groups:
            group.hsa.direct = max(0.0, 1 - step / anneal) if anneal else 0.0
        ids, doc, key = batch(g, rows, ctx_chunks * cfg.chunk_size, cfg.window)
        logits = model(ids[:, :-1], doc[:, :-1])[:, -4:]  # predictions of the 4 digits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), key.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            acc = (logits.argmax(-1) == key).float().mean().item()
            print(
                f"{step} loss {loss.item():.3f} digit accuracy {acc:.2f} {time.time() - t0:.0f}s", flush=True
            )


if __name__ == "__main__":
    main()
