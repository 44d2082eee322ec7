"""Can the landmark's mean term alone learn the key match that training left at log 4?

Everything frozen but `encoder.mean_proj` (W): for multi-key samples, the retrieval queries at the position
that predicts the first answer token, every chunk's landmark and the normed mean of its states entering
the chunk encoder are cached once; then W is fitted (Adam, full batch) to the training retrieval loss —
−log of the softmax mass on the asked needle's chunks over every chunk, averaged over the HSA groups —
with landmark' = landmark + (W − W₀)·m̂. Reported on held-out samples: that loss, and how often the
asked needle's key chunk outscores the other three needles'. Falling far below log 4 says the query and
the chunk states already carry a matchable key and the GPU runs' plateau is the optimisation (too little
signal or too low a rate for the new matrix); staying there says the match needs more than W
(docs/training-notes.md, run 9).

PYTHONPATH=. python scripts/landmark_fit.py [MODEL] [SAMPLES] [LENGTH] [STEPS] [LR]
(defaults: hsa-small 1200 768 400 3e-3)
"""

import re
import sys
import time

import torch
from key_probe import find_sub  # scripts/ is the script's sys.path[0]

from hsa_core.checkpoint import load_model
from hsa_core.model import RetrievalProbe
from hsa_core.tasks import TaskEnv, make_sample


def main() -> None:
    args = sys.argv[1:] + [None] * 5
    model = load_model(args[0])
    n, length = int(args[1] or 1200), int(args[2] or 768)
    steps, lr = int(args[3] or 400), float(args[4] or 3e-3)
    if model.encoder.mean_proj is None:
        sys.exit("the model has no landmark_mean term to fit")
    tok, S = model.tokenizer, model.cfg.chunk_size
    D = model.cfg.dense_dim  # the learnt part of landmarks and queries, without any lexical bins
    env = TaskEnv(tok, None, window=model.cfg.window)
    lower = []
    model.encoder.register_forward_hook(lambda _m, args, _out: lower.append(args[0]))
    # per sample: queries (G, D), landmarks (C, D), normed means (C, d), evidence mask (C,), needle chunks,
    # the asked needle
    cache = []
    t0 = time.time()
    for seed in range(n):
        s = make_sample("niah_multikey", length, 50_000 + seed, env)
        ctx = s.context_ids().tolist()
        keys = re.findall(r"for ([a-z]+-[a-z]+) is", tok.decode(ctx))
        asked = re.search(r"for ([a-z]+-[a-z]+)", s.question).group(1)
        if len(keys) != 4 or asked not in keys:
            continue
        ids = torch.tensor([*ctx, *s.prompt], dtype=torch.long)[None]
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, -1] = True
        probe = RetrievalProbe(mask)
        lower.clear()
        with torch.no_grad():
            model(ids, probe=probe)
            C = len(ctx) // S  # chunks the answer position sees whole
            means = model.encoder.mean_norm(lower[0][:C].mean(1))
        evidence = torch.zeros(C, dtype=torch.bool)
        for a, b in s.evidence:
            evidence[a // S : min((b - 1) // S + 1, C)] = True
        needles = torch.tensor([find_sub(ctx, tok.encode(" " + k)) // S for k in keys])
        queries = torch.stack([q[0, 0, :D].float() for q in probe.queries])
        cache.append(
            (queries, probe.landmarks[0, :C, 0, :D].float(), means, evidence, needles, keys.index(asked))
        )
    print(f"{len(cache)} samples of {length} tokens cached in {time.time() - t0:.0f} s")
    cut = int(0.8 * len(cache))
    w0 = model.encoder.mean_proj.weight.detach().clone()
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.Adam([w], lr=lr)

    def evaluate(rows: list, grad: bool = False) -> tuple[torch.Tensor, float]:
        losses, hits = [], 0
        for queries, landmarks, means, evidence, needles, asked in rows:
            lm = landmarks + means @ (w - w0).T
            scores = queries @ lm.T / lm.shape[-1] ** 0.5  # (G, C)
            logp = scores.log_softmax(-1)
            losses.append(-logp[:, evidence].logsumexp(-1).mean())
            hits += int(scores[:, needles].mean(0).argmax() == asked)
        return torch.stack(losses).mean(), hits / len(rows)

    for step in range(steps + 1):
        if step % 50 == 0:
            with torch.no_grad():
                (tl, ta), (hl, ha) = evaluate(cache[:cut]), evaluate(cache[cut:])
            print(f"step {step}: train loss {tl:.3f} picks {ta:.2f} | held out loss {hl:.3f} picks {ha:.2f}")
        if step == steps:
            break
        loss, _ = evaluate(cache[:cut])
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
