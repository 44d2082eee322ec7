"""The store on a real SQLite file and real shards: add, dedup, delete, compact, recover, memory view."""

import sqlite3

import pytest
import torch
from sqlite_utils import Database

from hsa_core import MemoryView
from storage import (
    CollectionNotFound,
    DocumentNotFound,
    ModelInfo,
    ModelMismatch,
    NewDocument,
    Store,
    StoreBusy,
    default_store_path,
)

S, HKV, D, DL = 4, 1, 8, 16
MODEL = ModelInfo("toy", "a" * 64, S, HKV, D, DL)


def memory(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, HKV, DL, generator=g),
        torch.randn(n, S, HKV, D, generator=g),
        torch.randn(n, S, HKV, D, generator=g),
    )


def doc(path: str, n_chunks: int, sha: str | None = None) -> NewDocument:
    chunks = [
        {
            "token_start": i * S,
            "token_end": (i + 1) * S,
            "char_start": i * 10,
            "char_end": i * 10 + 10,
            "text": f"{path} chunk {i}",
            "page": None,
            "page_end": None,
            "page_label": None,
            "bbox": None,
        }
        for i in range(n_chunks)
    ]
    return NewDocument(path=path, sha256=sha or path * 2, title=path, n_tokens=n_chunks * S, chunks=chunks)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store") as s:
        with s.writing():
            s.ensure_collection("c", MODEL)
        yield s


def add(store, docs, seed=0):
    mem = memory(sum(len(d.chunks) for d in docs), seed)
    with store.writing():
        store.add_documents("c", docs, *mem)
    return mem


def test_layout_schema_and_wal(store):
    assert (store.root / "index.sqlite").is_file() and (store.root / "shards").is_dir()
    db = Database(store.root / "index.sqlite")
    assert db.journal_mode == "wal"
    assert {"collections", "documents", "chunks", "shards", "chunks_fts"} <= set(db.table_names())
    assert {
        "id",
        "collection",
        "path",
        "sha256",
        "title",
        "pages",
        "n_tokens",
        "status",
        "error",
        "added_at",
    } <= set(db["documents"].columns_dict)
    assert {
        "id",
        "document_id",
        "ordinal",
        "shard",
        "row",
        "token_start",
        "token_end",
        "page",
        "bbox",
        "char_start",
        "char_end",
        "text",
    } <= set(db["chunks"].columns_dict)


def test_add_then_view_gathers_exactly_the_stored_rows(store):
    mem = add(store, [doc("a", 3), doc("b", 2)])
    view = store.memory("c")
    assert isinstance(view, MemoryView)
    assert view.landmarks.shape == (5, HKV, DL) and view.landmarks.dtype == torch.bfloat16
    assert view.ids.tolist() == [r["id"] for r in store.db.query("select id from chunks order by id")]
    k, v = view.gather(torch.tensor([4, 0, 2]))
    assert k.shape == (3, S, HKV, D)
    torch.testing.assert_close(k, mem[1][[4, 0, 2]].to(torch.bfloat16), rtol=0, atol=0)
    torch.testing.assert_close(v, mem[2][[4, 0, 2]].to(torch.bfloat16), rtol=0, atol=0)
    torch.testing.assert_close(view.landmarks, mem[0].to(torch.bfloat16), rtol=0, atol=0)
    on_device = store.memory("c", kv_on_device=True)  # the GPU path, on the CPU here
    torch.testing.assert_close(
        on_device.gather(torch.tensor([1, 3]))[0], mem[1][[1, 3]].bfloat16(), rtol=0, atol=0
    )


def test_view_refreshes_only_when_the_collection_changes(store):
    add(store, [doc("a", 2)])
    view = store.memory("c")
    assert view.refresh() is False
    add(store, [doc("b", 3)], seed=1)
    assert view.refresh() is True and len(view) == 5
    assert view.refresh() is False


def test_same_path_replaces_and_dedup_lookup(store):
    add(store, [doc("a", 2, sha="v1")])
    assert store.find_stored("c", "v1", "b") == ("a", False)
    add(store, [doc("a", 4, sha="v2")], seed=1)
    assert store.find_stored("c", "v1", "a") == (None, True)
    [row] = store.documents("c")
    assert row["sha256"] == "v2" and row["n_chunks"] == 4
    assert store.db["chunks"].count == 4


def test_a_later_document_at_the_same_path_in_one_group_wins(store):
    """A JSONL file with a repeated id gives one group two documents at one path: the later is stored,
    over the right memory rows, and the earlier leaves no document or chunk behind."""
    add(store, [doc("a", 1, sha="v0")])
    mem = add(store, [doc("a", 2, sha="v1"), doc("b", 1), doc("a", 3, sha="v2")], seed=1)
    assert sorted((r["path"], r["sha256"], r["n_chunks"]) for r in store.documents("c")) == [
        ("a", "v2", 3),
        ("b", "bb", 1),
    ]
    assert store.db["chunks"].count == 4
    view = store.memory("c")
    rows = {r["id"]: r["text"] for r in store.db.query("select id, text from chunks")}
    a_rows = [i for i, cid in enumerate(view.ids.tolist()) if rows[cid].startswith("a ")]
    torch.testing.assert_close(view.landmarks[a_rows], mem[0][3:6].bfloat16(), rtol=0, atol=0)


def test_groups_commit_in_order_in_the_writer_thread_and_the_lock_waits_for_them(store):
    """`write_documents` returns before its group is visible; groups land in the order handed over, a
    write on the caller's connection runs after them, and leaving `writing()` waits for every commit."""
    groups = [[doc(f"g{g}-{i}", 2) for i in range(50)] for g in range(4)]
    with store.writing():
        futures = [store.write_documents("c", docs, *memory(100, seed)) for seed, docs in enumerate(groups)]
        store.record_failure("c", "bad.pdf", "corrupt PDF: broken")  # on the caller's connection
        assert all(f.done() for f in futures)
        last = futures[-1]
    assert last.done()
    commits = [f.result() for f in futures]
    ids = [i for c in commits for i in c.document_ids]
    assert ids == sorted(ids) and len(ids) == 200
    assert len({c.shard for c in commits}) == 4 and all(c.shard_seconds > 0 for c in commits)
    assert store.collections()[0].documents == 200 and store.collections()[0].failed == 1
    view = store.memory("c")
    torch.testing.assert_close(view.landmarks[-100:], memory(100, 3)[0].bfloat16(), rtol=0, atol=0)


def test_failure_keeps_the_stored_document(store):
    add(store, [doc("a", 2)])
    with store.writing():
        store.record_failure("c", "a", "corrupt PDF: broken")
        store.record_failure("c", "a", "corrupt PDF: broken again")
    rows = store.documents("c")
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]
    assert [r["error"] for r in rows if r["status"] == "failed"] == ["corrupt PDF: broken again"]
    assert len(store.memory("c")) == 2


def test_delete_document_then_compact(store):
    mem = add(store, [doc("a", 3), doc("b", 2), doc("c", 1)])
    before = store.collections()[0]
    with store.writing():
        assert store.delete_documents("c", "b") == 1
        with pytest.raises(DocumentNotFound):
            store.delete_documents("c", "nope")
    after = store.collections()[0]
    assert (after.documents, after.chunks, after.dead_chunks, after.bytes) == (2, 4, 2, before.bytes)
    view = store.memory("c")
    assert len(view) == 4
    with store.writing():
        report = store.compact()
    assert report.shards_rewritten == 1 and report.bytes_after < report.bytes_before
    stats = store.collections()[0]
    assert stats.dead_chunks == 0 and stats.bytes < before.bytes
    assert view.refresh() is True
    keep = [0, 1, 2, 5]  # a's three rows, then c's row
    torch.testing.assert_close(view.gather(torch.arange(4))[0], mem[1][keep].bfloat16(), rtol=0, atol=0)
    assert len(list((store.root / "shards").rglob("*.safetensors"))) == 1
    assert (
        list(store.db.query("select count(*) n from chunks_fts where chunks_fts match 'chunk'"))[0]["n"] == 4
    )


def test_delete_collection_removes_rows_and_files(store):
    add(store, [doc("a", 2)])
    with store.writing():
        store.delete_collection("c")
        with pytest.raises(CollectionNotFound):
            store.delete_collection("c")
    assert store.collections() == []
    assert store.db["chunks"].count == 0 and store.db["documents"].count == 0
    assert not list((store.root / "shards").rglob("*.safetensors"))


def test_one_model_per_collection(store):
    other = ModelInfo("other", "b" * 64, S, HKV, D, DL)
    with store.writing(), pytest.raises(ModelMismatch, match="ingest with --model .*delete this one first"):
        store.ensure_collection("c", other)


def test_one_writer_at_a_time(store, tmp_path):
    with store.writing():
        with Store(store.root) as second, pytest.raises(StoreBusy):
            with second.writing():
                pass


def test_recovery_removes_orphans_and_rows_without_shards(store):
    add(store, [doc("a", 2)])
    add(store, [doc("b", 1)], seed=1)
    shard_dir = store.root / "shards" / "c1"
    (shard_dir / "crashed-before-commit.safetensors").write_bytes(b"half a shard")
    (shard_dir / "x.safetensors.tmp").write_bytes(b"temp")
    b_shard = (
        store.root
        / next(
            iter(
                store.db.query(
                    "select s.path from shards s join chunks k on k.shard = s.id "
                    "join documents d on d.id = k.document_id where d.path = 'b'"
                )
            )
        )["path"]
    )
    b_shard.unlink()  # lost outside the store
    conn = sqlite3.connect(store.root / "index.sqlite")
    conn.execute(
        "insert into chunks (document_id, ordinal, shard, row, text) values (999, 0, 1, 0, 'orphan')"
    )
    conn.commit()
    conn.close()
    with Store(store.root) as reopened:  # recovery runs on open when no writer holds the lock
        assert sorted(p.name for p in shard_dir.iterdir()) == [
            p.name for p in shard_dir.glob("*.safetensors")
        ]
        assert len(list(shard_dir.iterdir())) == 1
        assert reopened.db["chunks"].count == 2
        statuses = {r["path"]: (r["status"], r["error"]) for r in reopened.documents("c")}
        assert statuses["a"] == ("ok", None)
        assert statuses["b"][0] == "failed" and "missing" in statuses["b"][1]
        assert len(reopened.memory("c")) == 2


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HSA_STORE", str(tmp_path / "here"))
    assert default_store_path() == tmp_path / "here"
    monkeypatch.delenv("HSA_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "hsa-docqa"


def test_chunk_text_is_indexed_once_also_in_a_store_with_the_old_insert_trigger(tmp_path):
    """Stores made before bulk indexing had a per-row insert trigger; opening one drops it."""
    with Store(tmp_path / "s") as s:
        s.db.execute(
            "create trigger chunks_ai after insert on chunks begin "
            "insert into chunks_fts (rowid, text) values (new.rowid, new.text); end"
        )
    with Store(tmp_path / "s") as s:
        with s.writing():
            s.ensure_collection("c", MODEL)
        add(s, [doc("a", 3), doc("b", 2)])
        hits = s.db.execute(
            "select rowid from chunks_fts where chunks_fts match 'chunk' order by rowid"
        ).fetchall()
        assert [r[0] for r in hits] == [r["id"] for r in s.db.query("select id from chunks order by id")]
        assert len(hits) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_memory_on_the_gpu_is_stored_exactly(store):
    mem = memory(3, 0)
    with store.writing():
        store.add_documents("c", [doc("a", 3)], *(t.cuda() for t in mem))
    view = store.memory("c")
    torch.testing.assert_close(view.landmarks, mem[0].bfloat16(), rtol=0, atol=0)
    torch.testing.assert_close(view.gather(torch.arange(3))[1], mem[2].bfloat16(), rtol=0, atol=0)
