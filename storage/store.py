"""The store: a folder with `index.sqlite` (sqlite-utils, WAL) and `shards/` (safetensors, append-only).

Writes are grouped so that a document is visible only once it is whole: shard data is fsynced first, then the
document, its chunks and the shard are committed in one transaction. Anything a crash leaves behind (a shard
file no row names, a row whose shard is gone) is removed by `recover`, which runs whenever a writer takes the
store's lock, so it never races an ingest in flight.
"""

import fcntl
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from sqlite_utils import Database

from storage.errors import CollectionNotFound, DocumentNotFound, ModelMismatch, StoreBusy, UsageError
from storage.shards import ShardReader, fsync_dir, write_shard

INDEX = "index.sqlite"
SHARDS = "shards"
LOCK = "write.lock"
# the columns of a `chunks` row that NewDocument.chunks carries
CHUNK_FIELDS = (
    "token_start",
    "token_end",
    "page",
    "page_end",
    "page_label",
    "bbox",
    "char_start",
    "char_end",
    "text",
)
# the columns the committer writes to a `documents` row, in order
DOCUMENT_FIELDS = (
    "collection",
    "path",
    "sha256",
    "source",
    "title",
    "kind",
    "pages",
    "n_tokens",
    "n_chunks",
    "status",
    "error",
    "warnings",
    "metadata",
    "added_at",
)


def default_store_path() -> Path:
    """$HSA_STORE, else the per-user data folder ($XDG_DATA_HOME or ~/.local/share, then hsa-docqa)."""
    if os.environ.get("HSA_STORE"):
        return Path(os.environ["HSA_STORE"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hsa-docqa"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelInfo:
    """Which model encoded a collection, and the geometry its memory has; a collection holds one model."""

    name: str
    hash: str  # fingerprint of config and weights: equal hashes give interchangeable memory
    chunk_size: int
    kv_heads: int
    head_dim: int
    landmark_dim: int
    dtype: str = "bfloat16"  # how K/V and landmarks are stored


@dataclass
class NewDocument:
    """A document ready to commit: its index row and one dict per chunk, in chunk order.

    Chunk dicts carry the `chunks` columns except id, document_id, ordinal, shard and row.
    """

    path: str  # the document's key: a file's absolute path, or FILE#ID for a record of a JSONL corpus
    sha256: str
    title: str
    n_tokens: int
    chunks: list[dict]
    source: str = ""  # the file it came from (the path itself for a file; the .jsonl for a record)
    kind: str = "text"
    pages: int | None = None
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Commit:
    """What `write_documents` wrote: the new document ids, the shard that holds their memory, and the
    background seconds for the shard (host copy, write, fsync) and for the index transaction."""

    document_ids: list[int]
    shard: str  # path relative to the store
    bytes: int
    shard_seconds: float = 0.0
    index_seconds: float = 0.0


@dataclass
class CollectionStats:
    name: str
    model: str
    model_hash: str
    documents: int
    failed: int
    chunks: int
    tokens: int
    bytes: int  # shard files on disk, dead rows included until `compact`
    dead_chunks: int  # rows in shards that no document uses any more


@dataclass
class CompactReport:
    shards_rewritten: int = 0
    shards_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def _connect(path: Path) -> Database:
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
    db = Database(conn)
    db.enable_wal()
    db.execute("PRAGMA synchronous=FULL")
    return db


def _delete_where(db: Database, where: str, params: list) -> int:
    """Delete documents (and their chunks) matching `where`; inside a transaction."""
    ids = [r["id"] for r in db.query(f"select id from documents where {where}", params)]
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        db.execute(f"delete from chunks where document_id in ({marks})", part)
        db.execute(f"delete from documents where id in ({marks})", part)
    return len(ids)


def _timed(fn, *args):
    """fn(*args) and the seconds it took (in whichever thread runs it)."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def _bump(db: Database, collection: str) -> None:
    db.execute("update collections set version = version + 1 where name = ?", [collection])


def _create_schema(db: Database) -> None:
    if "chunks_fts" in db.table_names():
        _drop_insert_trigger(db)  # a store made before chunk text was indexed in bulk
        return
    with db.atomic():
        db["collections"].create(
            {
                "id": int,
                "name": str,
                "model": str,
                "model_hash": str,
                "chunk_size": int,
                "kv_heads": int,
                "head_dim": int,
                "landmark_dim": int,
                "dtype": str,
                "version": int,
                "created_at": str,
            },
            pk="id",
            not_null={"name"},
            if_not_exists=True,
        )
        db["collections"].create_index(["name"], unique=True, if_not_exists=True)
        db["shards"].create(
            {"id": int, "collection_id": int, "path": str, "rows": int, "bytes": int, "created_at": str},
            pk="id",
            foreign_keys=[("collection_id", "collections", "id")],
            if_not_exists=True,
        )
        db["documents"].create(
            {
                "id": int,
                "collection": str,
                "path": str,
                "sha256": str,
                "source": str,
                "title": str,
                "kind": str,
                "pages": int,
                "n_tokens": int,
                "n_chunks": int,
                "status": str,
                "error": str,
                "warnings": str,
                "metadata": str,
                "added_at": str,
            },
            pk="id",
            if_not_exists=True,
        )
        db["documents"].create_index(["collection", "path"], if_not_exists=True)
        db["documents"].create_index(["collection", "sha256"], if_not_exists=True)
        db["chunks"].create(
            {
                "id": int,
                "document_id": int,
                "ordinal": int,
                "shard": int,
                "row": int,
                "token_start": int,
                "token_end": int,
                "page": int,
                "page_end": int,
                "page_label": str,
                "bbox": str,
                "char_start": int,
                "char_end": int,
                "text": str,
            },
            pk="id",
            foreign_keys=[("document_id", "documents", "id"), ("shard", "shards", "id")],
            if_not_exists=True,
        )
        db["chunks"].create_index(["document_id", "ordinal"], unique=True, if_not_exists=True)
        db["chunks"].create_index(["shard"], if_not_exists=True)
    try:
        db["chunks"].enable_fts(["text"], create_triggers=True)
    except sqlite3.OperationalError:  # another process created it a moment ago
        if "chunks_fts" not in db.table_names():
            raise
    _drop_insert_trigger(db)


def _drop_insert_trigger(db: Database) -> None:
    """The committer indexes a group's chunk text in one statement: 6× faster than a trigger per row.

    The update and delete triggers stay, so every other change keeps the full-text index in step.
    """
    if db.execute("select 1 from sqlite_master where type = 'trigger' and name = 'chunks_ai'").fetchone():
        db.execute("drop trigger if exists chunks_ai")


class Store:
    """One store folder. Reading needs nothing; writing goes through `with store.writing():`."""

    def __init__(self, path: str | Path | None = None):
        self.root = Path(path).expanduser() if path is not None else default_store_path()
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"store {self.root} is not a folder")
        (self.root / SHARDS).mkdir(parents=True, exist_ok=True)
        self.db = _connect(self.root / INDEX)
        _create_schema(self.db)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        # while the caller encodes the next group: shards written two at a time (a host copy waiting for the
        # GPU beside an fsync), their documents committed one group at a time, in order, by the committer
        self._shard_writer: ThreadPoolExecutor | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._committer_db: Database | None = None  # the committer thread's own connection
        try:
            with self.writing():
                pass  # recovery runs on taking the lock
        except StoreBusy:
            pass  # a writer is at work; it recovered when it took the lock

    def close(self) -> None:
        for pool in (self._committer, self._shard_writer):
            if pool is not None:
                pool.shutdown()
        if self._committer_db is not None:
            self._committer_db.close()
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the write lock and recovery ---------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator["Store"]:
        """Hold the store's write lock (one writer process at a time); recover first."""
        if self._lock_depth == 0:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreBusy(
                    f"store {self.root} is busy: another hsa ingest, delete or compact is writing to it"
                ) from None
            self._lock_fd = fd
            self._lock_depth = 1
            try:
                self.recover()
            except BaseException:
                self._release()
                raise
        else:
            self._lock_depth += 1
        try:
            yield self
        finally:
            if self._lock_depth == 1:
                try:
                    self._settle()  # no commit may outlive the lock: the next writer's recovery would race it
                finally:
                    self._release()
            else:
                self._lock_depth -= 1

    def _release(self) -> None:
        self._lock_depth = 0
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _require_lock(self, settle: bool = True) -> None:
        """Writes need the lock; settle: and run after the committer's pending commits, so that two
        connections never write at once (a deferred transaction could then fail with SQLITE_BUSY)."""
        if self._lock_depth == 0:
            raise RuntimeError("store writes must run inside `with store.writing():`")
        if settle:
            self._settle()

    def _settle(self) -> None:
        """Wait until every group handed to `write_documents` is committed or has failed."""
        if self._committer is not None:
            self._committer.submit(lambda: None).result()  # each commit first waits for its shard

    def recover(self) -> dict[str, int]:
        """Remove what a crash can leave: shard files no row names, rows whose shard file is gone."""
        self._require_lock()
        counts = {"files": 0, "shards": 0, "chunks": 0}
        known = {row["path"] for row in self.db.query("select path from shards")}
        shard_dir = self.root / SHARDS
        for file in sorted(shard_dir.rglob("*")):
            if file.is_file() and file.relative_to(self.root).as_posix() not in known:
                file.unlink()
                counts["files"] += 1
        for folder in sorted((p for p in shard_dir.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        missing = [
            r for r in self.db.query("select id, path from shards") if not (self.root / r["path"]).exists()
        ]
        with self.db.atomic():
            for shard in missing:
                ids = [
                    r["document_id"]
                    for r in self.db.query(
                        "select distinct document_id from chunks where shard = ?", [shard["id"]]
                    )
                ]
                for doc_id in ids:
                    self.db.execute(
                        "update documents set status = 'failed', error = ?, n_chunks = 0 where id = ?",
                        [f"shard file {shard['path']} is missing; ingest the file again", doc_id],
                    )
                self.db.execute("delete from chunks where shard = ?", [shard["id"]])
                self.db.execute("delete from shards where id = ?", [shard["id"]])
                counts["shards"] += 1
            cur = self.db.execute(
                "delete from chunks where document_id not in (select id from documents where status = 'ok')"
            )
            counts["chunks"] = cur.rowcount
            self.db.execute("delete from shards where collection_id not in (select id from collections)")
            self.db.execute("delete from documents where collection not in (select name from collections)")
        return counts

    # -- collections -------------------------------------------------------------------------------

    def collection(self, name: str) -> dict:
        rows = list(self.db.query("select * from collections where name = ?", [name]))
        if not rows:
            known = ", ".join(r["name"] for r in self.db.query("select name from collections order by name"))
            raise CollectionNotFound(
                f"no collection {name!r} in {self.root} (collections: {known or 'none'})"
            )
        return rows[0]

    def ensure_collection(self, name: str, model: ModelInfo) -> dict:
        """The collection, created for `model` if new; refuses a model other than the one it holds."""
        self._require_lock()
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise UsageError(f"invalid collection name {name!r}")
        try:
            row = self.collection(name)
        except CollectionNotFound:
            with self.db.atomic():
                self.db["collections"].insert(
                    {
                        "name": name,
                        "model": model.name,
                        "model_hash": model.hash,
                        "chunk_size": model.chunk_size,
                        "kv_heads": model.kv_heads,
                        "head_dim": model.head_dim,
                        "landmark_dim": model.landmark_dim,
                        "dtype": model.dtype,
                        "version": 0,
                        "created_at": _now(),
                    }
                )
            return self.collection(name)
        if row["model_hash"] != model.hash:
            raise ModelMismatch(
                f"collection {name!r} holds memory encoded by model {row['model']} "
                f"({row['model_hash'][:12]}); this run uses {model.name} ({model.hash[:12]}): "
                f"ingest with --model {row['model']}, use another collection, or delete this one first"
            )
        return row

    def collections(self) -> list[CollectionStats]:
        rows = self.db.query(
            """
            select c.name, c.model, c.model_hash,
              (select count(*) from documents d where d.collection = c.name and d.status = 'ok') as documents,
              (select count(*) from documents d
                 where d.collection = c.name and d.status = 'failed') as failed,
              (select count(*) from chunks k join documents d on k.document_id = d.id
                 where d.collection = c.name) as chunks,
              (select coalesce(sum(n_tokens), 0) from documents d
                 where d.collection = c.name and d.status = 'ok') as tokens,
              (select coalesce(sum(bytes), 0) from shards s where s.collection_id = c.id) as bytes,
              (select coalesce(sum(rows), 0) from shards s where s.collection_id = c.id) as shard_rows
            from collections c order by c.name
            """
        )
        return [
            CollectionStats(
                **{k: v for k, v in r.items() if k != "shard_rows"}, dead_chunks=r["shard_rows"] - r["chunks"]
            )
            for r in rows
        ]

    # -- documents ---------------------------------------------------------------------------------

    def find_stored(self, collection: str, sha256: str, path: str) -> tuple[str | None, bool]:
        """Content-hash dedup in one query: the path of a stored document with these bytes (None: none),
        and whether a stored document is at `path` (a new one there replaces it)."""
        rows = self.db.execute(
            "select path, sha256 from documents where collection = ? and status = 'ok' "
            "and (sha256 = ? or path = ?)",
            [collection, sha256, path],
        ).fetchall()
        return next((p for p, s in rows if s == sha256), None), any(p == path for p, _ in rows)

    def documents(self, collection: str, status: str | None = None) -> list[dict]:
        sql, params = "select * from documents where collection = ?", [collection]
        if status:
            sql, params = sql + " and status = ?", [*params, status]
        return list(self.db.query(sql + " order by id", params))

    def add_documents(
        self,
        collection: str,
        docs: Sequence[NewDocument],
        landmarks: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> Commit:
        """Store documents whose memory is the given rows, in order; each replaces records at its path."""
        return self.write_documents(collection, docs, landmarks, k, v).result()

    def write_documents(
        self,
        collection: str,
        docs: Sequence[NewDocument],
        landmarks: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> Future[Commit]:
        """Start storing documents (memory rows in document order) in background threads; returns at once.

        A shard-writer thread writes and fsyncs the shard; then the committer thread makes the documents
        visible in one transaction, on its own connection; a crash before that leaves an orphan shard for
        `recover`. Groups commit in the order they were handed over, so an ingest encodes the next group
        meanwhile. The tensors may be on a GPU: the shard writer copies them to the host, so the caller
        never waits for the GPU here. A failed write or commit re-raises from the future's `result()`;
        nothing of that group is visible.
        """
        self._require_lock(settle=False)
        coll = self.collection(collection)
        n = landmarks.shape[0]
        if not (k.shape[0] == v.shape[0] == n):
            raise ValueError(f"{n} landmarks but {k.shape[0]} K and {v.shape[0]} V rows")
        if sum(len(d.chunks) for d in docs) != n:
            raise ValueError(
                f"{sum(len(d.chunks) for d in docs)} chunks in the documents but {n} rows of memory"
            )
        expected = (coll["chunk_size"], coll["kv_heads"], coll["head_dim"])
        if n and tuple(k.shape[1:]) != expected:
            raise ModelMismatch(
                f"K/V of shape {tuple(k.shape[1:])} do not fit collection {collection!r} {expected}"
            )
        dtype = getattr(torch, coll["dtype"])
        rel = self._new_shard_path(coll["id"])
        meta = {"collection": collection, "model": coll["model"], "model_hash": coll["model_hash"]}
        if self._committer is None:
            self._shard_writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-writer")
            self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="committer")
        tensors = (landmarks.to(dtype), k.to(dtype), v.to(dtype))
        shard = self._shard_writer.submit(_timed, write_shard, self.root / rel, *tensors, meta)
        return self._committer.submit(self._commit, coll["id"], collection, list(docs), rel, shard)

    def _commit(
        self, collection_id: int, collection: str, docs: list[NewDocument], rel: str, shard: Future
    ) -> Commit:
        """In the committer thread: once the shard is durable, its documents in one transaction."""
        size, shard_seconds = shard.result()  # a failed write re-raises: nothing is committed
        t1 = time.perf_counter()
        if self._committer_db is None:
            self._committer_db = _connect(self.root / INDEX)
        db = self._committer_db
        ids = []
        with db.atomic():
            shard_id = db.execute(
                "insert into shards (collection_id, path, rows, bytes, created_at) values (?, ?, ?, ?, ?)",
                [collection_id, rel, sum(len(d.chunks) for d in docs), size, _now()],
            ).lastrowid
            paths = [doc.path for doc in docs]
            for i in range(0, len(paths), 500):  # documents these replace: rare, so one query per 500
                part = paths[i : i + 500]
                where = f"collection = ? and path in ({','.join('?' * len(part))})"
                _delete_where(db, where, [collection, *part])
            # plain execute: sqlite-utils' insert inspects the table on every call, 10× slower per row
            marks = ", ".join("?" * len(DOCUMENT_FIELDS))
            insert = f"insert into documents ({', '.join(DOCUMENT_FIELDS)}) values ({marks})"
            last = {doc.path: i for i, doc in enumerate(docs)}  # a later document at a path wins
            row = 0
            chunk_rows = []
            for n, doc in enumerate(docs):
                if last[doc.path] != n:
                    row += len(doc.chunks)  # its memory rows stay unreferenced until `hsa compact`
                    continue
                values = (
                    collection,
                    doc.path,
                    doc.sha256,
                    doc.source or doc.path,
                    doc.title,
                    doc.kind,
                    doc.pages,
                    doc.n_tokens,
                    len(doc.chunks),
                    "ok",
                    None,
                    json.dumps(doc.warnings) if doc.warnings else None,
                    json.dumps(doc.metadata) if doc.metadata else None,
                    _now(),
                )
                doc_id = db.conn.execute(insert, values).lastrowid
                chunk_rows += [
                    (doc_id, i, shard_id, row + i, *(c[col] for col in CHUNK_FIELDS))
                    for i, c in enumerate(doc.chunks)
                ]
                row += len(doc.chunks)
                ids.append(doc_id)
            # one executemany: sqlite-utils' insert_all builds each row in Python, 5× slower at 16K chunks
            columns = ("document_id", "ordinal", "shard", "row", *CHUNK_FIELDS)
            db.conn.executemany(
                f"insert into chunks ({', '.join(columns)}) values ({', '.join('?' * len(columns))})",
                chunk_rows,
            )
            db.execute(
                "insert into chunks_fts (rowid, text) select id, text from chunks where shard = ?", [shard_id]
            )
            _bump(db, collection)
        return Commit(ids, rel, size, shard_seconds, time.perf_counter() - t1)

    def record_failure(
        self, collection: str, path: str, error: str, sha256: str | None = None, source: str | None = None
    ) -> int:
        """Record a file that could not be stored; a stored document at the same path stays as it was."""
        self._require_lock()
        self.collection(collection)
        with self.db.atomic():
            self.db.execute(
                "delete from documents where collection = ? and path = ? and status = 'failed'",
                [collection, path],
            )
            return (
                self.db["documents"]
                .insert(
                    {
                        "collection": collection,
                        "path": path,
                        "sha256": sha256,
                        "source": source or path.split("#")[0],
                        "status": "failed",
                        "error": error,
                        "n_tokens": 0,
                        "n_chunks": 0,
                        "added_at": _now(),
                    }
                )
                .last_pk
            )

    def forget_failures(self, collection: str, path: str) -> None:
        """Drop failed records at `path` (its stored document is current again)."""
        self._require_lock()
        with self.db.atomic():
            self.db.execute(
                "delete from documents where collection = ? and path = ? and status = 'failed'",
                [collection, path],
            )

    def _new_shard_path(self, collection_id: int) -> str:
        """A fresh shard name (relative to the store): time-ordered, never reused."""
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        return f"{SHARDS}/c{collection_id}/{stamp}.safetensors"

    def delete_documents(self, collection: str, path_or_id: str | int) -> int:
        """Delete documents by id, by path, or all records of a JSONL file; shards wait for compact."""
        self._require_lock()
        self.collection(collection)
        with self.db.atomic():
            if isinstance(path_or_id, int) or str(path_or_id).isdigit():
                n = _delete_where(self.db, "collection = ? and id = ?", [collection, int(path_or_id)])
            else:
                paths = {str(path_or_id), str(Path(path_or_id).expanduser().resolve())}
                n = 0
                for p in paths:
                    n += _delete_where(
                        self.db, "collection = ? and (path = ? or source = ?)", [collection, p, p]
                    )
            if n:
                _bump(self.db, collection)
        if not n:
            raise DocumentNotFound(f"no document {path_or_id!r} in collection {collection!r}")
        return n

    def delete_collection(self, name: str) -> None:
        """Delete a collection: its rows at once, then its shard folder."""
        self._require_lock()
        coll = self.collection(name)
        with self.db.atomic():
            _delete_where(self.db, "collection = ?", [name])
            self.db.execute("delete from shards where collection_id = ?", [coll["id"]])
            self.db.execute("delete from collections where id = ?", [coll["id"]])
        shutil.rmtree(self.root / SHARDS / f"c{coll['id']}", ignore_errors=True)

    def compact(self, collection: str | None = None) -> CompactReport:
        """Rewrite shards that hold rows of deleted documents, keeping only live rows."""
        self._require_lock()
        report = CompactReport()
        names = (
            [collection] if collection else [c["name"] for c in self.db.query("select name from collections")]
        )
        for name in names:
            coll = self.collection(name)
            for shard in list(self.db.query("select * from shards where collection_id = ?", [coll["id"]])):
                live = list(
                    self.db.query("select id, row from chunks where shard = ? order by row", [shard["id"]])
                )
                if len(live) == shard["rows"]:
                    continue
                report.bytes_before += shard["bytes"]
                old = self.root / shard["path"]
                if not live:
                    with self.db.atomic():
                        self.db.execute("delete from shards where id = ?", [shard["id"]])
                    old.unlink(missing_ok=True)
                    report.shards_removed += 1
                    continue
                reader = ShardReader(old)
                idx = np.array([r["row"] for r in live])
                tensors = [reader.rows(t, idx) for t in ("landmarks", "k", "v")]
                rel = self._new_shard_path(coll["id"])
                size = write_shard(
                    self.root / rel,
                    *tensors,
                    {"collection": name, "model": coll["model"], "model_hash": coll["model_hash"]},
                )
                with self.db.atomic():
                    new_id = (
                        self.db["shards"]
                        .insert(
                            {
                                "collection_id": coll["id"],
                                "path": rel,
                                "rows": len(live),
                                "bytes": size,
                                "created_at": _now(),
                            }
                        )
                        .last_pk
                    )
                    self.db.conn.executemany(
                        "update chunks set shard = ?, row = ? where id = ?",
                        [(new_id, i, r["id"]) for i, r in enumerate(live)],
                    )
                    self.db.execute("delete from shards where id = ?", [shard["id"]])
                    _bump(self.db, name)
                del reader
                old.unlink(missing_ok=True)
                fsync_dir(old.parent)
                report.shards_rewritten += 1
                report.bytes_after += size
        return report

    # -- reading -----------------------------------------------------------------------------------

    def memory(self, collection: str, device: str | torch.device = "cpu", kv_on_device: bool | None = None):
        """The collection's memory view for the model (see storage.memory.CollectionMemory)."""
        from storage.memory import CollectionMemory

        return CollectionMemory(self, collection, device=device, kv_on_device=kv_on_device)
