"""How the reread should read its evidence: layouts of the chunks in the window and a second reading.

For each of docqa_real's questions on one document, the retrofit's selection pass ranks the chunks (as
QAService does with reread) and keyword search ranks its own; from each ranking the model, HSA off,
answers from:

- top2 / top3: the best 2 or 3 chunks (top3 is what the app read until the twenty-first session);
- next / prev / around: each of the best 3 widened by the chunk after it, before it, or both
  (overlapping ones merged, the lowest-ranked dropped until the window holds them with the answer);
- single: each of the best 3 alone.

Per answer it keeps the text, whether it is right, and the log-probabilities of its tokens (the stop
token included), from which a choice between readings is scored afterwards (the app's is: the best chunk
alone against the best 3, the higher mean log-probability kept). `<layout>_contains`: a reference is in
the text read. One document per process, so that five share one GPU (docs/retrofit.md, twenty-first
session: 17.5 device minutes for the five documents on one H200).

PYTHONPATH=. python scripts/reread_probe.py DOCUMENTS DEVICE OUT_DIR    # writes OUT_DIR/DOCUMENTS.json
PYTHONPATH=. python scripts/reread_probe.py --summary OUT_DIR r-faq r-data r-admin r-ints
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

from app.docqa_real import DATA, DOCUMENTS, keyword_chunks, load_questions
from app.service import QAService
from ingest import Encoder, ingest
from storage import Store

MAX_NEW = 24  # docqa_real's answer length in docs/results.md
LAYOUTS = {"top2": (2, 0, 0), "top3": (3, 0, 0), "next": (3, 0, 1), "prev": (3, 1, 0), "around": (3, 1, 1)}


class Selector(QAService):
    """QAService's selection pass alone: the evidence ranked, no answer read again."""

    def _read_again(self, *args, **kwargs):
        return iter(())


def passages(db, ids: list[int], before: int, after: int) -> list[str]:
    """The chunks' texts, ranked, each widened by `before` / `after` neighbours in its document; a chunk
    that overlaps or touches a better one's passage joins it."""
    spans: list[list[int]] = []  # document, first ordinal, last ordinal
    for cid in ids:
        doc, ordinal = db.execute("select document_id, ordinal from chunks where id = ?", [cid]).fetchone()
        lo, hi = max(ordinal - before, 0), ordinal + after
        for s in spans:
            if s[0] == doc and lo <= s[2] + 1 and hi >= s[1] - 1:
                s[1], s[2] = min(s[1], lo), max(s[2], hi)
                break
        else:
            spans.append([doc, lo, hi])
    query = "select text from chunks where document_id = ? and ordinal between ? and ? order by ordinal"
    return ["".join(r[0] for r in db.execute(query, s)) for s in spans]


@torch.no_grad()
def read(model, question: str, texts: list[str]) -> tuple[str, int, list[float]]:
    """The answer from texts (the lowest-ranked dropped until the prompt and the answer fit the window),
    how many it read, and its tokens' log-probabilities, from one forward pass over prompt and answer."""
    tok = model.tokenizer
    room = model.cfg.window - MAX_NEW
    ids = tok.context_prompt(question, texts)
    while len(ids) > room and len(texts) > 1:
        texts = texts[:-1]
        ids = tok.context_prompt(question, texts)
    with model.without_hsa():
        out = [
            s.token for s in model.generate(torch.tensor(ids), max_new_tokens=MAX_NEW, stop_ids=tok.stop_ids)
        ]
        seq = torch.tensor([ids + out], device=next(model.parameters()).device)
        logp = torch.log_softmax(model(seq).float()[0, len(ids) - 1 : -1], -1)
    lp = logp.gather(-1, seq[0, len(ids) :, None])[:, 0].tolist()
    return tok.decode([t for t in out if t not in tok.stop_ids]).strip(), len(texts), lp


def summary(out_dir: Path, documents: list[str]) -> dict[str, list[int]]:
    """Per reader: [answers right, answers whose text read holds a reference] over the documents; `pick`
    is the app's choice (best chunk alone against the best 3, the surer kept), `top1` the best alone."""
    rows = [r for d in documents for r in json.loads((out_dir / f"{d}.json").read_text())]
    mean = lambda lp: sum(lp) / max(len(lp), 1)  # noqa: E731
    out = {}
    for src in ("hsa", "kw"):
        for name in LAYOUTS:
            out[f"{src}_{name}"] = [
                sum(r[f"{src}_{name}"][1] for r in rows),
                sum(r[f"{src}_{name}_contains"] for r in rows),
            ]
        alone = [r for r in rows if r[f"{src}_single"]]
        out[f"{src}_top1"] = [sum(r[f"{src}_single"][0][k] for r in alone) for k in (1, 3)]
        picked = [
            r[f"{src}_single"][0][1::2]
            if mean(r[f"{src}_single"][0][2]) > mean(r[f"{src}_top3"][3])
            else (r[f"{src}_top3"][1], r[f"{src}_top3_contains"])
            for r in alone
        ]
        out[f"{src}_pick"] = [sum(p[0] for p in picked), sum(p[1] for p in picked)]
    return out


def main(documents: str, device: str, out_dir: Path) -> None:
    encoder, _ = Encoder.load("smollm2-hsa", device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        ingest([DATA / DOCUMENTS[documents]], store, encoder, documents, progress=False)
        selector = Selector(store, encoder, reread=3)
        for q in load_questions(documents):
            evidence = selector.ask(q.question, documents, max_new_tokens=MAX_NEW).chunks[:5]
            ranked = {
                "hsa": [c.chunk_id for c in evidence],
                "kw": [r[0] for r in keyword_chunks(store, q.question, 3, documents)],
            }
            row = {
                "q": q.question,
                "page": q.page,
                "answers": q.answers,
                **ranked,
                "hsa_pages": [c.page for c in evidence],
            }
            for src, ids in ranked.items():
                for name, (n, before, after) in LAYOUTS.items():
                    texts = passages(store.db, ids[:n], before, after)
                    row[f"{src}_{name}_contains"] = q.is_answered_by("\n".join(texts))
                    text, lp = read(encoder.model, q.question, texts)
                    row[f"{src}_{name}"] = [text, q.is_answered_by(text), lp]
                row[f"{src}_single"] = [
                    [
                        *(r := read(encoder.model, q.question, [t])),
                        q.is_answered_by(r[0]),
                        q.is_answered_by(t),
                    ]
                    for t in passages(store.db, ids[:3], 0, 0)
                ]
            rows.append(row)
            print(documents, len(rows), flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{documents}.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    if sys.argv[1] == "--summary":  # --summary OUT_DIR DOCUMENTS...
        for key, value in summary(Path(sys.argv[2]), sys.argv[3:]).items():
            print(key, *value)
    else:
        main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
