"""The real-document benchmark's data: 50+ questions per PDF, each answered on the page it names."""

import argparse

import pymupdf
import pytest

from app.commands.eval import add_parser
from app.docqa_real import DATA, DOCUMENTS, Question, load_questions


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.mark.parametrize("documents", DOCUMENTS)
def test_every_reference_is_on_its_page(documents):
    questions = load_questions(documents)
    assert len(questions) >= 50 and len({q.question for q in questions}) == len(questions)
    with pymupdf.open(DATA / DOCUMENTS[documents]) as doc:
        for q in questions:
            page = norm(doc[q.page - 1].get_text())
            assert any(norm(a) in page for a in q.answers), (q.page, q.question)


def test_scoring_is_containment_of_any_reference():
    q = Question(9, "Which version of R was the last to support 32-bit Windows?", ["4.1.3"])
    assert q.is_answered_by("R 4.1.3 was the last one") and not q.is_answered_by("4.1.2")


@pytest.mark.parametrize("documents", DOCUMENTS)
def test_no_question_gives_its_answer_away(documents):
    for q in load_questions(documents):
        assert not any(a.lower() in q.question.lower() for a in q.answers), q.question


def test_an_unknown_document_set_is_named_in_the_error():
    with pytest.raises(
        ValueError, match="unknown documents 'r-exts': one of r-faq, r-data, r-admin, r-ints, r-lang"
    ):
        load_questions("r-exts")


def test_hsa_eval_offers_every_document_set():
    """`hsa eval --documents` lists its choices without importing the benchmark (a light CLI start)."""
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    (documents,) = [a for a in sub.choices["eval"]._actions if a.dest == "documents"]
    assert documents.choices == list(DOCUMENTS)
