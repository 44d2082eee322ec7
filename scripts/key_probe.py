"""Which side of multi-key retrieval lacks the key: the query at the question, or the needles' landmarks?

Multi-key samples (four needles "... for <key> is: <value>."); for each, the retrieval query of every HSA
group at the position that predicts the first answer token, and of each needle's key chunk (the chunk
holding the key's first token) its landmark, the mean of its states entering the chunk encoder, and
the state of the key's first token there. A ridge map, fitted on 80% of the samples, sends a vector
to the mean input embedding of a key; on the other 20% a vector "decodes" its key if the map lands
nearest (cosine) its own key among the sample's four (chance 25%). High for both sides means the key
is there and only the match q·landmark is unlearnt; low on one side names the side to change, and the
chunk's own states say whether the chunk encoder loses what it is given (docs/training-notes.md,
run 8).

PYTHONPATH=. python scripts/key_probe.py [MODEL] [SAMPLES] [LENGTH]      # default hsa-small 300 1024
"""

import re
import sys

import torch

from hsa_core.checkpoint import load_model
from hsa_core.model import RetrievalProbe
from hsa_core.tasks import TaskEnv, make_sample


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else None
    n, length = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (300, 1024)
    model = load_model(name)
    tok, S = model.tokenizer, model.cfg.chunk_size
    D = model.cfg.dense_dim  # the learnt part of landmarks and queries, without any lexical bins
    env = TaskEnv(tok, None, window=model.cfg.window)
    embed = model.embed.weight.float()

    def key_vector(key: str) -> torch.Tensor:
        return embed[tok.encode(" " + key)].mean(0)

    lower = []  # the chunk encoder's input: each chunk's states after the SWA layers (C, S, d)
    model.encoder.register_forward_hook(lambda _m, args, _out: lower.append(args[0]))
    # per sample: the queries (groups × Dl); per needle (4 × ...) its key chunk's landmark, the mean of that
    # chunk's lower states and the lower state at the key's first token; the asked key; four key vectors
    queries, needles, targets, candidates = [], {"landmark": [], "chunk mean": [], "key token": []}, [], []
    for seed in range(n):
        s = make_sample("niah_multikey", length, seed, env)
        ctx = s.context_ids()
        text = tok.decode(ctx.tolist())
        keys = re.findall(r"for ([a-z]+-[a-z]+) is", text)
        asked = re.search(r"for ([a-z]+-[a-z]+)", s.question).group(1)
        if len(keys) != 4 or asked not in keys:
            continue
        ids = torch.tensor([*ctx.tolist(), *s.prompt], dtype=torch.long)[None]
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, -1] = True  # the ANSWER token: it predicts the first answer token
        probe = RetrievalProbe(mask)
        lower.clear()
        with torch.no_grad():
            model(ids, probe=probe)
        at = [find_sub(ctx.tolist(), tok.encode(" " + key)) for key in keys]  # each key's first token
        needles["landmark"].append(torch.stack([probe.landmarks[0, p // S, 0, :D] for p in at]))
        needles["chunk mean"].append(torch.stack([lower[0][p // S].mean(0) for p in at]))
        needles["key token"].append(torch.stack([lower[0][p // S, p % S] for p in at]))
        queries.append(torch.stack([q[0, 0, :D].float() for q in probe.queries]))
        targets.append(keys.index(asked))
        candidates.append(torch.stack([key_vector(k) for k in keys]))
    Q, C = torch.stack(queries), torch.stack(candidates)  # (N, G, D), (N, 4, E)
    t = torch.tensor(targets)
    cut = int(0.8 * len(t))

    def decoded(
        x: torch.Tensor, y: torch.Tensor, cands: torch.Tensor, right: torch.Tensor, cut: int
    ) -> float:
        """Ridge x → y on the first `cut` rows; on the rest, the share whose nearest candidate is right."""
        xt, yt = x[:cut], y[:cut]
        mean_x, mean_y = xt.mean(0), yt.mean(0)
        xc = xt - mean_x
        gram = xc.T @ xc
        ridge = 0.1 * gram.trace() / x.shape[1]  # a tenth of the mean variance: few rows, many dimensions
        w = torch.linalg.solve(gram + ridge * torch.eye(x.shape[1]), xc.T @ (yt - mean_y))
        pred = (x[cut:] - mean_x) @ w + mean_y
        sims = torch.cosine_similarity(pred[:, None], cands[cut:], dim=-1)
        return (sims.argmax(-1) == right[cut:]).float().mean().item()

    rows = torch.arange(len(t))
    asked_vec = C[rows, t]
    print(f"{len(t)} samples of {length} tokens; held out {len(t) - cut}; chance 0.25")
    for g in range(Q.shape[1]):
        print(f"query, group {g}: asked key decoded {decoded(Q[:, g], asked_vec, C, t, cut):.2f}")
    which = torch.arange(4).repeat(len(t))
    for what, vectors in needles.items():
        x = torch.stack(vectors).float().flatten(0, 1)
        own = decoded(x, C.flatten(0, 1), C.repeat_interleave(4, 0), which, 4 * cut)
        print(f"needles, {what}: own key decoded {own:.2f}")
    scores = torch.einsum("ngd,nkd->ngk", Q, torch.stack(needles["landmark"]).float())
    hit = (scores.argmax(-1) == t[:, None]).float().mean(0)
    print("q·landmark picks the asked needle, per group: " + ", ".join(f"{h:.2f}" for h in hit.tolist()))


def find_sub(seq: list[int], sub: list[int]) -> int:
    return next(i for i in range(len(seq) - len(sub) + 1) if seq[i : i + len(sub)] == sub)


if __name__ == "__main__":
    main()
