"""The pipeline and the `hsa` commands end to end: real files, a real store, the real (tiny) model."""

import dataclasses
import json
import re

import pymupdf
import pytest
import torch

from app.cli import main
from hsa_core.tokenizer import EOT
from ingest import Encoder, extract_file, ingest
from ingest.encode import model_fingerprint
from storage import Store

PAGES = [
    f"Page {n} is about {fruit} and nothing else at all."
    for n, fruit in enumerate(["apples", "bananas", "cherries", "dates"], 1)
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread avoids OpenMP hand-offs, which cost milliseconds on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder():
    return Encoder.load("test", "cpu")[0]


def write_pdf(path, pages=PAGES):
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 100), text, fontsize=12)
    doc.save(path)
    return path


def corpus(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_pdf(tmp_path / "book.pdf")
    (tmp_path / "notes.md").write_text("# Notes\n\nSome notes about the apples in the book.\n")
    (tmp_path / "page.html").write_text("<title>T</title><p>An HTML page about bananas.</p>")
    lines = [{"id": i, "text": f"Record {i} tells of fruit number {i} in some detail."} for i in range(5)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return tmp_path


def counts(store):
    s = store.collections()[0]
    return s.documents, s.failed, s.chunks, s.tokens


def check_whole(store, collection="default"):
    """Every stored document has all its chunks once, numbered 0..n-1, in shards that exist; no orphans."""
    S = store.collection(collection)["chunk_size"]
    for d in store.documents(collection, "ok"):
        ords = [
            r["ordinal"]
            for r in store.db.query(
                "select ordinal from chunks where document_id = ? order by ordinal", [d["id"]]
            )
        ]
        assert ords == list(range(d["n_chunks"])) and d["n_chunks"] == -(-d["n_tokens"] // S), d["path"]
    orphans = store.db.execute(
        "select count(*) from chunks where document_id not in (select id from documents where status = 'ok')"
    ).fetchone()[0]
    assert orphans == 0
    files = {p.relative_to(store.root).as_posix() for p in (store.root / "shards").rglob("*") if p.is_file()}
    assert files == {r["path"] for r in store.db.query("select path from shards")}


def test_ingest_reingest_and_provenance(tmp_path, encoder):
    src = corpus(tmp_path / "in")
    with Store(tmp_path / "store") as store:
        report = ingest([src], store, encoder)
        assert (report.added, report.failed, report.skipped) == (8, 0, 0)
        first = counts(store)
        assert first[0] == 8 and first[3] == report.tokens
        again = ingest([src], store, encoder)
        assert (again.added, again.skipped, again.tokens) == (0, 8, 0)
        assert counts(store) == first
        check_whole(store)
        # every chunk of the PDF knows its pages: the fruit of page n is in a chunk on pages (…, n, …)
        rows = list(
            store.db.query(
                "select k.char_start, k.char_end, k.page, k.page_end, k.bbox from chunks k "
                "join documents d on d.id = k.document_id where d.kind = 'pdf' order by k.ordinal"
            )
        )
        (text,) = [d.text for d in extract_file(src / "book.pdf")]
        for n, fruit in enumerate(["apples", "bananas", "cherries", "dates"], 1):
            at = text.index(fruit)
            [row] = [r for r in rows if r["char_start"] <= at < r["char_end"]]
            assert row["page"] <= n <= row["page_end"] and len(json.loads(row["bbox"])) == 4
        assert {r["page"] for r in rows} == {1, 2, 3, 4}
        # full-text search over chunk text, as the docs show it
        hits = list(store.db["chunks"].search("about", columns=["id", "text"]))
        whole = [r for r in store.db["chunks"].rows if re.search(r"\babout\b", r["text"], re.IGNORECASE)]
        assert len(hits) == len(whole) >= 2


def test_stored_memory_is_what_the_model_encodes(tmp_path, encoder):
    (tmp_path / "a.txt").write_text("The pass key is 12345. Remember it. " * 6)
    with Store(tmp_path / "store") as store:
        ingest([tmp_path / "a.txt"], store, encoder)
        view = store.memory("default")
        [(ids, _)] = encoder.tokenize([(tmp_path / "a.txt").read_text()])
        mem = encoder.model.encode_memory(torch.tensor(ids), pad_id=EOT)
        torch.testing.assert_close(view.landmarks.float(), mem.landmarks, rtol=2e-2, atol=2e-2)
        k, v = view.gather(torch.arange(len(view)))
        torch.testing.assert_close(k.float(), mem.k, rtol=2e-2, atol=2e-2)
        # the model reads the store's view as its memory
        logits = encoder.model(torch.tensor([ids[:10]]), memory=view)
        assert logits.shape == (1, 10, encoder.model.cfg.vocab_size) and torch.isfinite(logits).all()


def test_fingerprint_counts_an_option_once_it_is_set(encoder):
    """Options at their defaults are left out of a model's fingerprint (a new option that is off leaves
    stored collections valid), but the same weights with an option set are another model."""
    model, off = encoder.model, encoder.model.cfg
    before = model_fingerprint(model)
    try:
        model.cfg = dataclasses.replace(off, lexical_dim=16, lexical_stop=3, lexical_words=True)
        assert model_fingerprint(model) != before
    finally:
        model.cfg = off
    assert model_fingerprint(model) == before


def test_batched_encoding_equals_one_document_at_a_time(encoder):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(5, 1000, (n,), generator=g).tolist() for n in (3, 8, 21, 40, 17, 1)]
    batched = encoder.encode_many(docs, alone_above=30)  # the 40-token one goes alone
    for ids, got in zip(docs, batched, strict=True):
        want = encoder.encode(ids)
        assert got[1].shape == (-(-len(ids) // encoder.chunk_size), *want[1].shape[1:])
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_memory_encoded_on_the_gpu_stays_there_until_the_store_writes_it(tmp_path):
    gpu = Encoder.load("test", "cuda")[0]
    (tmp_path / "a.txt").write_text("The pass key is 12345. Remember it. " * 6)
    [(ids, _)] = gpu.tokenize([(tmp_path / "a.txt").read_text()])
    want = gpu.encode(ids)
    assert all(t.device.type == "cuda" and t.dtype == torch.bfloat16 for t in want)
    with Store(tmp_path / "store") as store:
        ingest([tmp_path / "a.txt"], store, gpu)
        view = store.memory("default")
        k, v = view.gather(torch.arange(len(view)))
        for got, t in zip((view.landmarks, k, v), want, strict=True):
            torch.testing.assert_close(got.float(), t.cpu().float(), rtol=2e-2, atol=2e-2)


def test_changed_file_replaces_and_sync_removes_vanished(tmp_path, encoder):
    src = corpus(tmp_path / "in")
    with Store(tmp_path / "store") as store:
        ingest([src], store, encoder)
        (src / "notes.md").write_text("# Notes\n\nCompletely rewritten notes, now about cherries.\n")
        (src / "page.html").unlink()
        lines = (src / "c.jsonl").read_text().splitlines()
        (src / "c.jsonl").write_text("\n".join(lines[:3]) + "\n")  # records 3 and 4 removed from the corpus
        report = ingest([src], store, encoder, sync=True)
        assert (report.added, report.replaced, report.skipped, report.removed) == (0, 1, 4, 3)
        paths = {d["path"] for d in store.documents("default")}
        assert str(src / "page.html") not in paths and f"{src / 'c.jsonl'}#4" not in paths
        [notes] = [d for d in store.documents("default") if d["path"].endswith("notes.md")]
        assert "cherries" in "".join(
            r["text"] for r in store.db.query("select text from chunks where document_id = ?", [notes["id"]])
        )
        check_whole(store)


def test_delete_then_reingest(tmp_path, encoder):
    src = corpus(tmp_path / "in")
    with Store(tmp_path / "store") as store:
        ingest([src], store, encoder)
        full = counts(store)
        with store.writing():
            assert store.delete_documents("default", src / "c.jsonl") == 5  # a corpus file: all its records
            store.delete_documents("default", src / "book.pdf")
        assert counts(store)[0] == 2
        report = ingest([src], store, encoder)
        assert (report.added, report.skipped) == (6, 2)
        assert counts(store) == full
        with store.writing():
            store.delete_collection("default")
        ingest([src], store, encoder)
        assert counts(store) == full
        check_whole(store)


def test_extraction_in_worker_processes(tmp_path, encoder):
    for i in range(3):
        write_pdf(tmp_path / f"p{i}.pdf", [f"Worker document {i} page {p}." for p in range(2)])
    with Store(tmp_path / "store") as store:
        report = ingest([tmp_path], store, encoder, workers=2)
        assert report.added == 3 and report.timings["extract"] > 0
        check_whole(store)


def test_cli_every_bad_input(tmp_path, capsys):
    from tests.test_ingest_extract import make_bad_inputs  # the same bad files as the extraction tests

    bad = make_bad_inputs(tmp_path)
    write_pdf(tmp_path / "good.pdf")
    (tmp_path / "latin.txt").write_bytes("naïve café text".encode("latin-1"))
    (tmp_path / "c.jsonl").write_text(
        '{"text": "good line"}\n{oops\n{"title": "no text"}\n{"text": "also good"}\n'
    )
    store_dir = tmp_path / "store"
    args = [
        "ingest",
        "--store",
        str(store_dir),
        "--model",
        "test",
        "--max-size",
        "0.05",
        "-q",
        "--workers",
        "0",
    ]
    rc = main([*args, str(tmp_path / "good.pdf")])
    assert rc == 0
    with Store(store_dir) as store:
        before = list(store.db.query("select id, sha256 from documents where status = 'ok'"))
    # the good PDF turns corrupt at the same path: the run fails for it and keeps the stored version
    good_bytes = (tmp_path / "good.pdf").read_bytes()
    (tmp_path / "good.pdf").write_bytes(good_bytes[: len(good_bytes) // 2])
    names = [*bad, "latin.txt", "c.jsonl", "good.pdf"]
    rc = main([*args, *(str(tmp_path / n) for n in names), str(tmp_path / "missing.pdf")])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("hsa ingest: error: ")]
    for name, reason in [
        *bad.items(),
        ("good.pdf", "truncated"),
        ("missing.pdf", "no such file"),
        ("c.jsonl#L2", "line 2: not JSON"),
        ("c.jsonl#L3", 'line 3: no "text"'),
    ]:
        assert sum(name in ln and reason in ln for ln in lines) == 1, (name, err)
    assert len(lines) == len(bad) + 4
    assert "warning" in err and "latin.txt" in err and "UTF-8" in err
    with Store(store_dir) as store:
        failed = {d["path"].rsplit("/", 1)[-1]: d["error"] for d in store.documents("default", "failed")}
        assert set(failed) == {*bad, "good.pdf", "missing.pdf", "c.jsonl#L2", "c.jsonl#L3"}
        ok = {d["path"].rsplit("/", 1)[-1] for d in store.documents("default", "ok")}
        assert ok == {"good.pdf", "latin.txt", "c.jsonl#L1", "c.jsonl#L4"}
        assert (
            list(store.db.query(f"select id, sha256 from documents where id = {before[0]['id']}")) == before
        )
        check_whole(store)


def test_cli_commands_and_exit_codes(tmp_path, capsys):
    src = corpus(tmp_path / "in")
    store = str(tmp_path / "store")
    assert main(["ingest", str(src), "--store", store, "--model", "test", "-c", "docs", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 8 and summary["tokens_per_s"] > 0 and summary["bytes_per_token"] > 0
    assert main(["collections", "--store", store, "--json"]) == 0
    [c] = json.loads(capsys.readouterr().out)
    assert (c["name"], c["documents"], c["model"]) == ("docs", 8, "test") and c["bytes"] > 0
    assert main(["collections", "--store", store]) == 0
    assert "docs" in capsys.readouterr().out
    # another model may not add to this collection: a usage error
    assert main(["ingest", str(src), "--store", store, "--model", "small", "-c", "docs", "-q"]) == 2
    assert "delete this one first" in capsys.readouterr().err
    assert main(["delete", "--store", store, "-c", "docs", "-d", str(src / "book.pdf")]) == 0
    assert main(["delete", "--store", store, "-c", "docs", "-d", str(src / "book.pdf")]) == 2
    assert main(["compact", "--store", store]) == 0
    assert "rewrote 1 shard" in capsys.readouterr().err
    assert main(["delete", "--store", store, "-c", "docs"]) == 0
    assert main(["delete", "--store", store, "-c", "docs"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["delete", "--store", store])  # --collection is required
    assert e.value.code == 2


@pytest.mark.parametrize("command", ["ingest", "collections", "delete", "compact"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "--store" in capsys.readouterr().out


def test_bench_ingest_runs_small(capsys):
    rc = main(
        [
            "bench",
            "ingest",
            "--model",
            "test",
            "--device",
            "cpu",
            "--pages",
            "2",
            "--tokens",
            "1500",
            "--json",
        ]
    )
    assert rc == 0
    results = {r["workload"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["pdf"]["documents"] == 1 and results["jsonl"]["tokens"] >= 1500
    assert all(r["tokens_per_s"] > 0 and r["shard_bytes_per_token"] > 0 for r in results.values())
