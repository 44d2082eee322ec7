"""Extraction from real files made in the test: PDF (PyMuPDF), text, Markdown, HTML, JSONL, bad inputs."""

import json

import pymupdf
import pytest

from ingest import Extracted, ExtractError, Failure, expand_inputs, extract_file, iter_jsonl
from ingest.chunks import chunk_rows

PAGES = [
    "Alpha apples grow on page one.",
    "Bravo bananas ripen on page two.",
    "Charlie cherries end page three.",
]


def write_pdf(path, pages=PAGES, labels=None):
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 100), text, fontsize=12)
    if labels:
        doc.set_page_labels(labels)
    doc.save(path)
    return path


def test_pdf_text_pages_labels_and_boxes(tmp_path):
    path = write_pdf(
        tmp_path / "a.pdf", labels=[{"startpage": 0, "prefix": "A-", "style": "D", "firstpagenum": 1}]
    )
    (doc,) = extract_file(path)
    assert doc.kind == "pdf" and doc.path == str(path) and len(doc.sha256) == 64
    assert [p[0] for p in doc.pages] == [1, 2, 3]
    assert [p[1] for p in doc.pages] == ["A-1", "A-2", "A-3"]
    for (number, _, start), text in zip(doc.pages, PAGES, strict=True):
        assert doc.text[start : start + len(text)] == text
        words = doc.words[doc.words[:, 2] == number]
        assert doc.text[int(words[0, 0]) : int(words[0, 1])] == text.split()[0]
        assert words[:, 3].min() == pytest.approx(72, abs=1)  # x0 of the first word: where it was written
    assert doc.title == PAGES[0]


def test_pdf_chunks_know_their_page_and_box(tmp_path):
    (doc,) = extract_file(write_pdf(tmp_path / "a.pdf"))
    # one "token" per character: chunks of 8 characters, easy to reason about
    n = len(doc.text)
    rows = chunk_rows(doc, [(i, min(i + 8, n)) for i in range(0, n, 8)], n, 8)
    assert len(rows) == -(-len(doc.text) // 8)
    for row in rows:
        assert row["text"] == doc.text[row["char_start"] : row["char_end"]]
        for number, text in enumerate(PAGES, 1):
            if text.split()[1] in row["text"]:  # "apples", "bananas", "cherries": each on one page only
                assert row["page"] == row["page_end"] == number
    last = rows[-1]
    assert last["page"] == 3 and last["page_label"] is None
    x0, y0, x1, y1 = json.loads(last["bbox"])
    assert 72 <= x0 < x1 and y0 < 100 < y1 + 5


def test_text_markdown_html(tmp_path):
    (tmp_path / "t.txt").write_text("plain words here\n")
    (tmp_path / "m.md").write_text("intro\n# The Title\n\nbody text\n")
    (tmp_path / "h.html").write_text(
        "<html><head><title>Page T</title><style>p{color:red}</style></head>"
        "<body><script>var x=1;</script><p>Hello &amp; welcome</p><div>second block</div></body></html>"
    )
    (t,) = extract_file(tmp_path / "t.txt")
    (m,) = extract_file(tmp_path / "m.md")
    (h,) = extract_file(tmp_path / "h.html")
    assert t.text == "plain words here\n" and t.kind == "text" and t.pages == []
    assert m.title == "The Title" and m.kind == "markdown"
    assert h.title == "Page T" and h.text == "Hello & welcome\n\nsecond block"
    assert "var x" not in h.text and "color" not in h.text


def test_non_utf8_text_is_decoded_with_a_warning(tmp_path):
    (tmp_path / "latin.txt").write_bytes("café au lait".encode("latin-1"))
    (doc,) = extract_file(tmp_path / "latin.txt")
    assert doc.text == "caf\ufffd au lait"
    assert len(doc.warnings) == 1 and "UTF-8" in doc.warnings[0]


def test_jsonl_records_metadata_and_bad_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": "x1", "title": "One", "url": "http://e/1", "text": "first text", "lang": "en"}),
        "{not json",
        json.dumps({"title": "no text field"}),
        "",
        json.dumps({"text": "second text"}),
        json.dumps({"text": "   "}),
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(iter_jsonl(path))
    docs = [i for i in items if isinstance(i, Extracted)]
    fails = [i for i in items if isinstance(i, Failure)]
    assert [d.path for d in docs] == [f"{path}#x1", f"{path}#L5"]
    assert docs[0].title == "One" and docs[0].metadata == {
        "line": 1,
        "id": "x1",
        "url": "http://e/1",
        "lang": "en",
    }
    assert docs[1].source == str(path) and docs[1].text == "second text"
    assert [f.error.split(":")[0] for f in fails] == ["line 2", "line 3", "line 6"]
    assert "not JSON" in fails[0].error and '"text"' in fails[1].error and "empty" in fails[2].error


def make_bad_inputs(tmp_path):
    """Every bad input of issue 4, with the words its error must contain."""
    good = write_pdf(tmp_path / "good.pdf").read_bytes()
    (tmp_path / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    doc = pymupdf.open(tmp_path / "good.pdf")
    doc.save(tmp_path / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    scanned = pymupdf.open()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), 0)
    pix.clear_with(128)
    scanned.new_page().insert_image(pymupdf.Rect(0, 0, 200, 200), pixmap=pix)
    scanned.save(tmp_path / "scanned.pdf")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "binary.pdf").write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    (tmp_path / "big.txt").write_text("word " * 20_000)  # 100 kB: over a 50 kB limit
    return {
        "truncated.pdf": "truncated",
        "corrupt.pdf": "corrupt",
        "encrypted.pdf": "encrypted",
        "scanned.pdf": "no extractable text; OCR is not supported",
        "empty.txt": "empty file",
        "binary.txt": "binary file",
        "binary.pdf": "not a PDF",
        "big.txt": "size limit",
    }


def test_every_bad_file_raises_with_its_reason(tmp_path):
    expected = make_bad_inputs(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(ExtractError, match=reason):
            extract_file(tmp_path / name, max_bytes=50_000)


def test_expand_inputs_folders_globs_and_missing(tmp_path):
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    for name in ("a.txt", "sub/b.md", "sub/c.bin", "sub/.hidden/d.txt", "e.jsonl"):
        (tmp_path / name).write_text("x")
    files, failures = expand_inputs(
        [tmp_path, str(tmp_path / "*.txt"), tmp_path / "nope.pdf", tmp_path / "*.zzz"]
    )
    assert [f.name for f in files] == ["a.txt", "e.jsonl", "b.md"]  # deduplicated, folder order first
    assert [f.error for f in failures] == ["no such file or directory", "no files match this pattern"]
