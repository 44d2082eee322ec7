"""Do a model's retrieval queries follow the question? For the R FAQ benchmark's questions, the query
each HSA group makes at the last prompt token (where the answer starts): how alike they are between
questions, how much of them is one shared direction, and how often the question's page is among the
8 chunks they score highest — as they are, with the shared direction taken out, averaged over the
question's own tokens, and with each chunk scored by the question token that likes it most.

If the queries of different questions point the same way, the picks cannot depend on the question,
whatever the landmarks hold (docs/retrofit.md). Ingest the PDF with the model first:

    HSA_STORE=/tmp/rfaq hsa ingest app/data/R-FAQ.pdf --collection rfaq --model smollm2-hsa
    HSA_STORE=/tmp/rfaq python scripts/query_spread.py --model smollm2-hsa --collection rfaq
"""

import argparse
import json
from pathlib import Path

import torch

from hsa_core import load_model
from storage import Store, default_store_path

QUESTIONS = Path(__file__).resolve().parent.parent / "app" / "data" / "r-faq-questions.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hsa-small")
    p.add_argument("--collection", default="rfaq")
    p.add_argument("--questions", type=int, default=20, help="the first N questions (default: %(default)s)")
    args = p.parse_args()
    model = load_model(args.model)
    data = json.loads(QUESTIONS.read_text())
    questions = (data["questions"] if isinstance(data, dict) else data)[: args.questions]
    queries: dict[int, list[torch.Tensor]] = {}
    for g, group in enumerate(model.groups):  # every prompt token's query, kept for the pooled variants
        group.retrieval.register_forward_hook(
            lambda mod, inputs, _, g=g: queries.setdefault(g, []).append(mod.wq(mod.norm(inputs[0]))[0])
        )
    with Store(default_store_path()) as store:
        view = store.memory(args.collection)
        page_of = dict(store.db.execute("select id, page from chunks").fetchall())
        pages = [page_of[i] for i in view.ids.tolist()]
        with torch.no_grad():
            spans = []  # where each question's own tokens sit in its prompt
            for q in questions:
                ids = model.tokenizer.prompt(q["question"])
                spans.append(_find(ids, model.tokenizer.encode(q["question"])))
                model(torch.tensor([ids]), memory=view, last_only=True)
            landmarks = view.landmarks.float()
    for g, per_token in queries.items():
        per_token = [t.float().view(t.shape[0], -1, landmarks.shape[-1]) for t in per_token]  # (T, Hkv, Dl)
        q = torch.stack([t[-1] for t in per_token])  # (n, Hkv, Dl) at the last prompt token
        flat = torch.nn.functional.normalize(q.flatten(1), dim=-1)
        cos = (flat @ flat.T)[~torch.eye(len(q), dtype=torch.bool)]
        shared = (q.mean(0).norm() ** 2 / (q.norm(dim=(1, 2)) ** 2).mean()).item()

        def hits(query: torch.Tensor) -> int:
            top = torch.einsum("nhd,chd->nc", query, landmarks).topk(8, dim=-1).indices.tolist()
            return sum(x["page"] in {pages[i] for i in t} for x, t in zip(questions, top, strict=True))

        pooled = torch.stack([t[a:b].mean(0) for t, (a, b) in zip(per_token, spans, strict=True)])
        # each chunk scored by the question token that likes it most (what prefill's own picks can read)
        best = [
            torch.einsum("thd,chd->tc", t[a:b], landmarks).max(0).values.topk(8).indices.tolist()
            for t, (a, b) in zip(per_token, spans, strict=True)
        ]
        any_token = sum(x["page"] in {pages[i] for i in top} for x, top in zip(questions, best, strict=True))
        n = len(q)
        print(
            f"group {g}: query cosine between questions mean {cos.mean():.3f} (min {cos.min():.3f}); "
            f"shared direction {shared:.0%} of |q|²; page in top 8: {hits(q)}/{n}, "
            f"shared direction removed: {hits(q - q.mean(0, keepdim=True))}/{n}; "
            f"query averaged over the question's tokens: {hits(pooled)}/{n}, "
            f"best question token per chunk: {any_token}/{n}"
        )


def _find(ids: list[int], part: list[int]) -> tuple[int, int]:
    """Where `part` (the question alone) lies in `ids` (its prompt); the whole prompt if not verbatim."""
    for i in range(len(ids) - len(part) + 1):
        if ids[i : i + len(part)] == part:
            return i, i + len(part)
    return 0, len(ids)


if __name__ == "__main__":
    main()
