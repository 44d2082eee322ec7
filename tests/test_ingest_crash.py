"""Crash safety and concurrent reading: `kill -9` in the middle of an ingest, and a reader during one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ingest import Encoder, ingest
from storage import CollectionNotFound, Store

ROOT = Path(__file__).resolve().parent.parent
# small commit groups so that a run has many commits to be killed between
SCRIPT = """
import sys
from ingest import Encoder, ingest
from storage import Store
encoder = Encoder.load("test", "cpu")[0]
with Store(sys.argv[1]) as store:
    ingest([sys.argv[2]], store, encoder, "c", shard_chunks=int(sys.argv[3]), progress=False)
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread avoids OpenMP hand-offs, which cost milliseconds on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_corpus(path: Path, n: int) -> Path:
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
    with open(path, "w") as f:
        for i in range(n):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(20 + i % 40)) + f" record {i}."
            f.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    return path


def start(store: Path, corpus: Path, shard_chunks: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(store), str(corpus), str(shard_chunks)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def committed(store: Path) -> int:
    import sqlite3

    if not (store / "index.sqlite").exists():
        return 0
    try:
        conn = sqlite3.connect(store / "index.sqlite", timeout=5)
        n = conn.execute("select count(*) from documents where status = 'ok'").fetchone()[0]
        conn.close()
        return n
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def assert_whole(store: Store, n_lines: int | None = None) -> None:
    S = store.collection("c")["chunk_size"]
    docs = store.documents("c", "ok")
    for d in docs:
        ords = [
            r[0]
            for r in store.db.execute(
                "select ordinal from chunks where document_id = ? order by ordinal", [d["id"]]
            ).fetchall()
        ]
        assert ords == list(range(-(-d["n_tokens"] // S))), d["path"]
    assert (
        store.db.execute(
            "select count(*) from chunks where document_id not in (select id from documents)"
        ).fetchone()[0]
        == 0
    )
    on_disk = {
        p.relative_to(store.root).as_posix() for p in (store.root / "shards").rglob("*") if p.is_file()
    }
    assert on_disk == {r["path"] for r in store.db.query("select path from shards")}
    if n_lines is not None:
        paths = [d["path"] for d in docs]
        assert len(paths) == len(set(paths)) == n_lines


def test_kill_9_mid_ingest_then_rerun(tmp_path):
    n = 300
    corpus = write_corpus(tmp_path / "corpus.jsonl", n)
    store_dir = tmp_path / "store"
    proc = start(store_dir, corpus, shard_chunks=24)
    deadline = time.monotonic() + 120
    while committed(store_dir) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    with Store(store_dir) as store:  # opening recovers: the shard being written, if any, goes
        done = len(store.documents("c", "ok"))
        assert 5 <= done < n, "the kill must land in the middle of the run"
        assert_whole(store)
        report = ingest([corpus], store, Encoder.load("test", "cpu")[0], "c")
        assert report.skipped == done and report.added == n - done and report.failed == 0
        assert_whole(store, n_lines=n)
        assert len(store.memory("c")) == store.db["chunks"].count


def test_reader_during_ingest_sees_whole_documents(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 300)
    store_dir = tmp_path / "store"
    proc = start(store_dir, corpus, shard_chunks=24)
    versions = set()
    try:
        while committed(store_dir) == 0 and proc.poll() is None:
            time.sleep(0.01)
        with Store(store_dir) as store:
            view = None
            while proc.poll() is None or view is None or view.refresh():
                try:
                    view = view or store.memory("c")
                except CollectionNotFound:
                    continue
                view.refresh()
                versions.add(view.version)
                # every chunk in the view belongs to a document whose chunks are all in the view
                ids = view.ids.tolist()
                assert len(ids) == len(set(ids)) == view.landmarks.shape[0]
                marks = ",".join("?" * len(ids))
                per_doc = store.db.execute(
                    f"select d.n_chunks, count(*) from chunks k join documents d on d.id = k.document_id "
                    f"where k.id in ({marks}) group by d.id",
                    ids,
                ).fetchall()
                assert all(n_chunks == seen for n_chunks, seen in per_doc)
                k, v = view.gather(torch.tensor([0, len(ids) - 1]))
                assert torch.isfinite(k.float()).all() and k.shape[0] == 2
                time.sleep(0.05)  # leave the CPU to the writer
        assert proc.wait() == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(versions) >= 2, "the reader should have seen the collection grow"
    with Store(store_dir) as store:
        assert_whole(store, n_lines=300)
