"""The real-document benchmark (`hsa eval --tasks docqa_real [--documents NAME]`, a name of DOCUMENTS):
factual questions about a PDF from Debian's r-doc-pdf that no model here was trained on, each with the
page that answers it. r-faq: 56 questions on the R FAQ (52 pages), on which every decision since the ninth
session was measured. r-data: 65 questions on R Data Import/Export (41 pages), written in the fifteenth
session and tuned on by nothing, so that a choice made on the R FAQ can be checked on a document it never
saw. r-admin: 73 questions on R Installation and Administration (85 pages), written in the eighteenth
session after r-data had decided something (the retrofit's word table), so that again one document has
decided nothing. r-ints: 57 questions on R Internals (81 pages), written in the twentieth session before
anything was measured on it, to decide how many chunks the reread reads. r-lang: 60 questions on the R
Language Definition (69 pages), written blind in the twenty-first session (by a helper that ran nothing),
to decide how the reread reads its evidence.

Three readers answer the same questions over the same store:
- the HSA model through the app's own path (QAService): correct if the answer contains a reference;
  evidence hit if the answering page is among the pages of its 5 highest-scored chunks;
- keyword search (FTS5 / BM25 over the question's words): hit if the page is among its top 5 chunks;
- optionally the SmolLM2-135M-Instruct base reading the top 3 keyword chunks (the small local setup a
  user would otherwise choose): correct if its answer contains a reference;
- for a chat model (the retrofit), the same HSA model with `reread` = 3, the app's default for it: its
  own selection (the answer's first tokens', app/service.py SELECT_TOKENS), then its answer written
  again with its best 3 evidence chunks in the window, and from its best chunk alone, the surer of the
  two kept; its evidence hit is scored as above.
"""

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from app.service import REREAD, QAService
from hsa_core.checkpoint import DEFAULT_MODEL
from ingest import Encoder, ingest
from storage import Store

DATA = Path(__file__).parent / "data"
# the collection's name: its PDF in DATA
DOCUMENTS = {
    "r-faq": "R-FAQ.pdf",
    "r-data": "R-data.pdf",
    "r-admin": "R-admin.pdf",
    "r-ints": "R-ints.pdf",
    "r-lang": "R-lang.pdf",
}
COLLECTION = "r-faq"  # the default, and the one the probes in scripts/ read
PDF = DATA / DOCUMENTS[COLLECTION]
STOPWORDS = set(
    "a an and are as at be by can do does for from how i in is it of on or r s should that the this to "
    "what when where which who whose why with you your".split()
)


@dataclass
class Question:
    page: int  # 1-based physical page that answers it
    question: str
    answers: list[str]  # a correct answer contains one of them (case-insensitive)

    def is_answered_by(self, text: str) -> bool:
        return any(a.lower() in text.lower() for a in self.answers)


def load_questions(documents: str = COLLECTION) -> list[Question]:
    if documents not in DOCUMENTS:
        raise ValueError(f"unknown documents {documents!r}: one of {', '.join(DOCUMENTS)}")
    return [
        Question(**q) for q in json.loads((DATA / f"{documents}-questions.json").read_text())["questions"]
    ]


def keyword_chunks(
    store: Store, question: str, k: int, collection: str = COLLECTION
) -> list[tuple[int, int, str]]:
    """(chunk id, page, text) of the k best FTS5 matches for any of the question's content words."""
    words = [w for w in re.findall(r"[\w.]+", question) if w.lower() not in STOPWORDS and len(w) > 1]
    if not words:
        return []
    query = " OR ".join(store.db.quote_fts(w) for w in words)
    return store.db.execute(
        """select k.id, k.page, k.text from chunks_fts f join chunks k on k.rowid = f.rowid
           join documents d on d.id = k.document_id
           where chunks_fts match ? and d.collection = ? and d.status = 'ok' order by f.rank limit ?""",
        [query, collection, k],
    ).fetchall()


def base_answer(base, question: str, chunks: list[str], max_new_tokens: int, memory=None) -> str:
    """The instruct base's answer from the given chunks, in its own chat format, greedy (a retrofit may
    read a chunk memory as well); max_new_tokens is the other readers', so that no reader has more room."""
    tok = base.tokenizer
    ids = torch.tensor(tok.context_prompt(question, chunks))
    with torch.no_grad():
        steps = base.generate(ids, memory=memory, max_new_tokens=max_new_tokens, stop_ids=tok.stop_ids)
        out = [s.token for s in steps]
    return tok.decode(out).strip()


def run(
    model: str | None = None,
    device: str = "cpu",
    baseline_model=None,
    max_new_tokens: int = 24,
    documents: str = COLLECTION,
) -> dict:
    """Every question through the three readers; per-question rows and the summary."""
    questions = load_questions(documents)
    encoder, _ = Encoder.load(model, device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        t0 = time.perf_counter()
        ingest([DATA / DOCUMENTS[documents]], store, encoder, documents, progress=False)
        ingest_s = time.perf_counter() - t0
        service = QAService(store, encoder, reread=0)  # through HSA
        chat = hasattr(encoder.model.tokenizer, "context_prompt")
        rereader = QAService(store, encoder, reread=REREAD) if chat else None
        for q in questions:
            ans = service.ask(q.question, documents, max_new_tokens=max_new_tokens)
            keyword = keyword_chunks(store, q.question, 5, documents)
            row = {
                "page": q.page,
                "question": q.question,
                "answers": q.answers,
                "hsa_answer": ans.answer,
                "hsa_correct": q.is_answered_by(ans.answer),
                "hsa_pages": [c.page for c in ans.chunks[:5]],
                "keyword_pages": [r[1] for r in keyword],
            }
            row["hsa_evidence_hit"] = q.page in row["hsa_pages"]
            row["keyword_hit"] = q.page in row["keyword_pages"]
            if rereader is not None:
                again = rereader.ask(q.question, documents, max_new_tokens=max_new_tokens)
                row["reread_answer"] = again.answer
                row["reread_correct"] = q.is_answered_by(row["reread_answer"])
                row["reread_readings"] = again.readings
                row["reread_pages"] = [c.page for c in again.chunks[:5]]
                row["reread_evidence_hit"] = q.page in row["reread_pages"]
            if baseline_model is not None:
                row["base_answer"] = base_answer(
                    baseline_model, q.question, [r[2] for r in keyword[:3]], max_new_tokens
                )
                row["base_correct"] = q.is_answered_by(row["base_answer"])
            rows.append(row)
    n = len(rows)
    share = lambda key: sum(r[key] for r in rows) / n  # noqa: E731
    summary = {
        "documents": documents,
        "questions": n,
        "model": model or DEFAULT_MODEL,
        "hsa_accuracy": share("hsa_correct"),
        "hsa_evidence_recall_at_5": share("hsa_evidence_hit"),
        "keyword_recall_at_5": share("keyword_hit"),
        "ingest_s": round(ingest_s, 2),
    }
    if rereader is not None:
        summary["reread_accuracy"] = share("reread_correct")
        summary["reread_evidence_recall_at_5"] = share("reread_evidence_hit")
    if baseline_model is not None:
        summary["base_plus_keyword_accuracy"] = share("base_correct")
    return {"summary": summary, "rows": rows}


def table(summary: dict) -> str:
    lines = ["| reader | answer accuracy | evidence page in top 5 |", "|---|---|---|"]
    lines.append(
        f"| HSA model ({summary['model']}) | {summary['hsa_accuracy']:.0%} | "
        f"{summary['hsa_evidence_recall_at_5']:.0%} |"
    )
    if "reread_accuracy" in summary:
        lines.append(
            f"| the same, its top {REREAD} chunks and its best alone read again in its window | "
            f"{summary['reread_accuracy']:.0%} | "
            f"{summary['reread_evidence_recall_at_5']:.0%} |"
        )
    lines.append(f"| keyword search (FTS5) | – | {summary['keyword_recall_at_5']:.0%} |")
    if "base_plus_keyword_accuracy" in summary:
        lines.append(
            f"| SmolLM2-135M-Instruct + top-3 keyword chunks | {summary['base_plus_keyword_accuracy']:.0%} | "
            f"{summary['keyword_recall_at_5']:.0%} (its chunks) |"
        )
    return "\n".join(lines)
