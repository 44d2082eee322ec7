"""What each part of a model's retrieval score finds on real documents (docs/retrofit.md, thirteenth session).

The R FAQ is ingested as the app ingests it; for each of docqa_real's 56 questions the retrieval query of
every HSA group is taken where the answer starts (the prompt's last position) and scored against every
chunk's landmark, split into its learnt (dense) part and its lexical part. Printed per group: how often
the answering page is among the 5 best chunks by the dense part, the lexical part, both (what the model
selects by), and both without the dense part's chunk prior (its mean over the 56 questions, which no
question changes); how many chunks the dense part ever puts in a top 5; how much of the dense score the
prior is; and how alike the hidden states are that the queries are made from (mean cosine).

--at question takes the queries at the question's last token instead; --at mean averages their dense
part over the question's tokens (the lexical part stays the answer start's): would a dense query made
where the question is read rank better than the one the answer's position makes?

    PYTHONPATH=. python scripts/selection_probe.py [--model models/smollm2-hsa] [--at answer|question|mean]
"""

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from app.docqa_real import COLLECTION, PDF, load_questions
from hsa_core.model import RetrievalProbe
from ingest import Encoder, ingest
from storage import Store


def question_span(prompt: list[int], template: list[int]) -> tuple[int, int]:
    """Where the question's tokens sit in its prompt: between what it shares with the empty question's
    prompt at the start and at the end."""
    start = next(i for i, (a, b) in enumerate(zip(prompt, template, strict=False)) if a != b)
    tail = next(i for i, (a, b) in enumerate(zip(prompt[::-1], template[::-1], strict=False)) if a != b)
    return start, len(prompt) - tail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/smollm2-hsa")
    ap.add_argument("--at", choices=("answer", "question", "mean"), default="answer")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    encoder, _ = Encoder.load(args.model, "cpu")
    model, questions = encoder.model, load_questions()
    tok, D = model.tokenizer, model.cfg.dense_dim
    if not model.cfg.lexical_dim or not model.cfg.dense_retrieval:
        raise SystemExit(f"{args.model}: this model selects by one part only, there is nothing to compare")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        ingest([PDF], store, encoder, COLLECTION, progress=False)
        memory = store.memory(COLLECTION, device="cpu")
        pages = dict(store.db.execute("select id, page from chunks").fetchall())
    page_of = torch.tensor([pages[int(i)] for i in memory.ids])
    landmarks = memory.landmarks.float()
    template = tok.prompt("")
    at = [-1]  # the position whose hidden state each group's query reads (not the probe's call)
    states = []
    hooks = [
        g.retrieval.norm.register_forward_hook(
            lambda m, i, o: states.append(i[0][0, at[0]]) if i[0].dim() == 3 else None
        )
        for g in model.groups
    ]
    queries = []  # per question, per group (Hkv, Dl)
    for q in questions:
        prompt = tok.prompt(q.question)
        start, end = question_span(prompt, template)
        at[0] = -1 if args.at == "answer" else end - 1 - len(prompt)  # end: past the question's last token
        ids = torch.tensor([prompt])
        probe = RetrievalProbe(mask=torch.zeros_like(ids, dtype=torch.bool))
        probe.mask[0, start if args.at == "mean" else end - 1 : end] = args.at != "answer"
        probe.mask[0, -1] = True
        model(ids, memory=memory, probe=probe)
        if args.at == "answer":
            queries.append([x[0].float() for x in probe.queries])
        else:  # the dense part at (or averaged over) the question, the lexical part of the answer start
            queries.append(
                [torch.cat([x[:-1, :, :D].float().mean(0), x[-1, :, D:].float()], -1) for x in probe.queries]
            )
    for h in hooks:
        h.remove()
    x = torch.stack(states).float().view(len(questions), len(model.groups), -1)

    def hits(scores: torch.Tensor) -> str:
        n = sum(q.page in page_of[s.topk(5).indices].tolist() for q, s in zip(questions, scores, strict=True))
        return f"{n}/{len(questions)}"

    print(
        f"{args.model}, queries at {args.at}: {len(questions)} questions, {len(landmarks)} chunks; answering "
        "page in the top 5 by"
    )
    for g in range(len(model.groups)):
        q = torch.stack([qs[g] for qs in queries])  # (Q, Hkv, Dl)
        dense = torch.einsum("qhd,chd->qc", q[..., :D], landmarks[..., :D]) / D**0.5
        lexical = torch.einsum("qhd,chd->qc", q[..., D:], landmarks[..., D:]) / D**0.5
        prior = dense.mean(0, keepdim=True)
        tops = {c for s in dense for c in s.topk(5).indices.tolist()}
        unit = F.normalize(x[:, g], dim=-1)
        cos = ((unit @ unit.T).sum() - len(unit)) / (len(unit) * (len(unit) - 1))
        print(
            f"group {g}: dense {hits(dense)}, lexical {hits(lexical)}, both {hits(dense + lexical)}, "
            f"both without the prior {hits(dense - prior + lexical)}; dense top-5 chunks over all "
            f"questions: {len(tops)}; dense score spread {dense.std(1).mean():.2f}, of it the prior's "
            f"{prior.std():.2f}; hidden states' mean cosine {cos:.3f}"
        )


if __name__ == "__main__":
    main()
