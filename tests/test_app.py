"""The QA service and `hsa ask` over a real store: a PDF made here, ingested by the real pipeline."""

import json
import subprocess
import sys

import pymupdf
import pytest

from app.service import QAService
from ingest import Encoder, ingest
from storage import ModelMismatch, Store

PAGES = [
    "The lighthouse keeper logs the weather every morning at six. " * 4,
    "The river Alder flows north through the valley of Brennow. " * 4,
    "Brass instruments were tuned in the old mill before each concert. " * 4,
]


MEMO_TOPICS = ["lighthouse", "river", "mill", "orchard", "harbour", "library", "station", "bakery"]


def memo_pages(key: str, key_page: int, pages: int = 6) -> list[str]:
    """Pages of an operations memo, ~300 tokens each, with a pass key stated on page key_page (1-based)."""
    out = []
    for p in range(1, pages + 1):
        rotated = MEMO_TOPICS[p % 8 :] + MEMO_TOPICS[: p % 8]
        lines = [
            f"The {t} team checked the {u} schedule on day {p * 7 + i} and wrote the results in the log."
            for i, (t, u) in enumerate(zip(MEMO_TOPICS, rotated, strict=True))
        ]
        if p == key_page:
            lines.insert(4, f"The pass key is {key}. Remember it. {key} is the pass key.")
        out.append(" ".join(lines * 2))
    return out


def norm(text: str) -> str:
    return " ".join(text.split())


def make_pdf(path, pages=PAGES):
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 520, 700), text, fontsize=11)
    doc.save(path)
    return path


def assert_pages_hold_their_chunks(chunks, pdf_path):
    """Each evidence chunk's text is on the page it names (or runs on to the next)."""
    with pymupdf.open(pdf_path) as doc:
        texts = [norm(p.get_text()) for p in doc]
    for c in chunks:
        assert c["page"] is not None and 1 <= c["page"] <= len(texts)
        span = " ".join(texts[c["page"] - 1 : c["page"] + 1])
        assert norm(c["text"]) in span, (c["page"], c["text"])


@pytest.fixture(scope="module")
def store_with_pdf(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    pdf = make_pdf(root / "valley.pdf")
    encoder, _ = Encoder.load("test", "cpu")
    with Store(root / "store") as store:
        report = ingest([pdf], store, encoder, "docs", progress=False)
    assert report.added == 1
    return root / "store", pdf, encoder


def test_answer_streams_and_ranks_evidence_with_pages(store_with_pdf):
    root, pdf, encoder = store_with_pdf
    with Store(root) as store:
        service = QAService(store, encoder)
        states = [
            (a.done, len(a.tokens), a) for a in service.stream("Where is Alder?", "docs", max_new_tokens=6)
        ]
    final = states[-1][2]
    assert [done for done, _, _ in states] == [False] * (len(states) - 1) + [True]
    assert [n for _, n, _ in states[:-1]] == list(range(1, len(states)))  # one more token each time
    assert len(final.tokens) == len(final.per_token) <= 6
    out = final.to_json()
    assert set(out) == {"answer", "chunks", "per_token", "timings", "readings"}
    assert out["readings"] == {}  # answered through HSA: no reread, so no readings
    scores = [c["score"] for c in out["chunks"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert_pages_hold_their_chunks(out["chunks"], pdf)
    # the per-chunk score is the per-token weights summed
    per_chunk: dict[int, float] = {}
    for tok in out["per_token"]:
        for c in tok["chunks"]:
            per_chunk[c["chunk_id"]] = per_chunk.get(c["chunk_id"], 0) + c["weight"]
    for c in out["chunks"]:
        assert c["score"] == pytest.approx(per_chunk[c["chunk_id"]], rel=1e-4)
    assert {"memory_s", "first_token_s", "generate_s", "total_s"} <= set(out["timings"])


def test_a_collection_refuses_another_model(store_with_pdf):
    root, _, _ = store_with_pdf
    other, _ = Encoder.load("small", "cpu")
    with Store(root) as store:
        with pytest.raises(ModelMismatch, match="encoded by model test"):
            QAService(store, other).ask("anything", "docs")


def test_empty_question_is_refused(store_with_pdf):
    root, _, encoder = store_with_pdf
    with Store(root) as store, pytest.raises(ValueError, match="empty"):
        QAService(store, encoder).ask("   ", "docs")


def test_hsa_ask_json(store_with_pdf):
    root, pdf, _ = store_with_pdf
    cmd = [sys.executable, "-m", "app.cli", "ask", "Where does the Alder flow?", "--store", str(root)]
    out = subprocess.run(
        [*cmd, "--collection", "docs", "--model", "test", "--json", "--max-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert isinstance(answer["answer"], str) and answer["chunks"]
    assert set(answer["chunks"][0]) >= {"chunk_id", "document", "page", "score", "text"}
    assert_pages_hold_their_chunks(answer["chunks"], pdf)
    plain = subprocess.run(
        [*cmd, "--collection", "docs", "--model", "test", "--max-tokens", "4", "--chunks", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    top = " ".join(answer["chunks"][0]["text"].split())
    assert top[-40:] in " ".join(plain.stdout.split())  # the whole chunk is shown, its end included
    piped = dict(capture_output=True, text=True, timeout=120)
    missing = subprocess.run([*cmd, "--collection", "nope", "--model", "test"], **piped)
    assert missing.returncode == 2 and "no collection 'nope'" in missing.stderr
    reread = subprocess.run([*cmd, "--collection", "docs", "--model", "test", "--reread", "3"], **piped)
    assert reread.returncode == 2 and "reread needs a chat model such as smollm2-hsa, not test" in (
        reread.stderr
    )
