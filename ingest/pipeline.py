"""The batch pipeline: extract (worker processes) → tokenize → encode → write shard → commit index.

Documents are committed in groups (a shard of up to `shard_chunks` chunks, or every `commit_seconds`); a
group becomes visible in one transaction after its shard is durable, so a crash loses at most the group in
flight, and a re-run skips what was committed (content-hash dedup) and does the rest.
"""

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ingest.chunks import chunk_rows
from ingest.encode import GPU_BATCH, Encoder
from ingest.extract import (
    DEFAULT_MAX_BYTES,
    Extracted,
    ExtractError,
    Failure,
    expand_inputs,
    extract_file,
    iter_jsonl,
)
from storage import NewDocument, Store

CHARS_PER_TOKEN = 4  # texts are tokenized once about this many characters per encode batch are waiting


@dataclass
class IngestEvent:
    """Something the user should hear about one input, as it happens."""

    kind: str  # added | replaced | skipped | failed | warning | removed
    path: str
    message: str = ""


@dataclass
class IngestReport:
    collection: str
    store: str
    model: str
    added: int = 0
    replaced: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    warnings: int = 0
    tokens: int = 0  # tokens encoded in this run (skipped documents not counted)
    chunks: int = 0
    bytes_written: int = 0  # shard bytes written in this run
    seconds: float = 0.0
    # seconds the main thread spent per stage: tokenize and write count only its waits for their threads
    # (write: until a group is durable and committed); on a GPU, encode is the time to queue the work
    # (waiting for the GPU shows up in shard); shard and index: the seconds of the store's background
    # threads (copy to the host, write and fsync; the index transaction), beside the main thread
    timings: dict[str, float] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_written / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "bytes_per_token": round(self.bytes_per_token, 1),
        }


def _extract_job(path: str, max_bytes: int) -> tuple[list[Extracted] | Failure, float]:
    """Run in a worker process: one file's documents, or its failure, and the seconds it took."""
    t0 = time.perf_counter()
    try:
        result: list[Extracted] | Failure = extract_file(path, max_bytes)
    except ExtractError as e:
        result = Failure(path, str(e), path)
    except Exception as e:  # a library bug on a strange file must not stop the other files
        result = Failure(path, f"unexpected {type(e).__name__}: {e}", path)
    return result, time.perf_counter() - t0


class _Pending:
    """Documents on their way to a commit: waiting to be tokenized, then encoded, then written.

    Texts are tokenized a batch at a time (in parallel) and token ids encoded a batch at a time, so both
    stages run few, large calls.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit  # documents longer than this are encoded on their own, segment by segment
        self.texts: list[Extracted] = []  # not yet tokenized
        self.text_chars = 0
        self.next_group()

    def next_group(self) -> None:
        """Start a new group (texts not yet tokenized stay)."""
        self.docs: list[NewDocument] = []
        # of docs[: len(memory)], on the encoder's device: the shard writer copies it to the host
        self.memory: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.ids: list[list[int]] = []  # token ids of docs[len(memory):], to encode in one batch
        self.queued_tokens = 0
        self.replacing: list[bool] = []
        self.chunks = 0
        self.since = time.monotonic()

    def encode(self, encoder: Encoder, timings: dict) -> None:
        if self.ids:
            t0 = time.perf_counter()
            self.memory += encoder.encode_many(self.ids, alone_above=self.limit)
            timings["encode"] += time.perf_counter() - t0
            self.ids, self.queued_tokens = [], 0


class _Tokenizer:
    """Tokenizes one batch of texts in a background thread (tokenizers releases the GIL) while the main
    thread chunks, encodes and commits the batch before it."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self.batch: tuple[list[Extracted], Future] | None = None

    def swap(self, items: list[Extracted]) -> list[tuple[Extracted, list[int], list[tuple[int, int]]]]:
        """Start on `items` (if any); return the previous batch with its ids and chunk spans, once done."""
        done = []
        if self.batch is not None:
            before, future = self.batch
            done = [(item, ids, spans) for item, (ids, spans) in zip(before, future.result(), strict=True)]
            self.batch = None
        if items:
            self.batch = (items, self.pool.submit(self.encoder.tokenize, [item.text for item in items]))
        return done

    def __enter__(self) -> "_Tokenizer":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(cancel_futures=True)


def ingest(
    paths: Iterable[str | Path],
    store: Store,
    encoder: Encoder,
    collection: str = "default",
    *,
    sync: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = 0,
    encode_tokens: int | None = None,
    shard_chunks: int = 2048,
    commit_seconds: float = 10.0,
    progress: bool | None = None,
    on_event: Callable[[IngestEvent], None] | None = None,
) -> IngestReport:
    """Ingest files, folders, globs and JSONL corpora into `collection`; returns what happened.

    workers: extraction processes for PDF/text/HTML files (0: in this process). encode_tokens: documents
    are encoded together up to this many tokens (default: 8K on a CPU, 256K on a GPU). progress: a bar on
    stderr (None: only when stderr is a terminal). on_event: called for each added, replaced, skipped, failed,
    removed document and each warning, as it happens. Bad inputs never raise: they are recorded as failed.
    """
    t_start = time.perf_counter()
    if encode_tokens is None:
        encode_tokens = 8192 if encoder.device.type == "cpu" else GPU_BATCH
    report = IngestReport(collection, str(store.root), encoder.name)
    timings = dict.fromkeys(("extract", "tokenize", "encode", "write", "shard", "index"), 0.0)

    def emit(kind: str, path: str, message: str = "") -> None:
        if on_event:
            on_event(IngestEvent(kind, path, message))

    with store.writing(), _Tokenizer(encoder) as tokenizer:
        store.ensure_collection(collection, encoder.info)
        files, missing = expand_inputs(list(paths))
        pending = _Pending(encode_tokens)
        # a tokenized batch fills an encode batch, and never more than a group
        tokenize_chars = CHARS_PER_TOKEN * min(encode_tokens, shard_chunks * encoder.chunk_size)
        # groups handed to the store's background threads: (docs, replacing, Future[Commit]), oldest first
        in_flight: deque = deque()
        queued: dict[str, str] = {}  # sha256 → path of every document queued in this run
        replacing: set[str] = set()  # paths queued in this run where a stored document is
        seen_paths: set[str] = set()
        read_sources: set[str] = set()
        sizes = [f.stat().st_size if f.exists() else 0 for f in files]
        total_bytes = sum(sizes)
        bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            desc="ingest",
            disable=None if progress is None else not progress,
        )

        def fail(failure: Failure) -> None:
            store.record_failure(
                collection, failure.path, failure.error, failure.sha256, failure.source or None
            )
            report.failed += 1
            report.failures.append({"path": failure.path, "error": failure.error})
            emit("failed", failure.path, failure.error)

        def tokenize(drain: bool = False) -> None:
            """Hand the waiting texts to the tokenizer thread and queue the batch it finished before;
            drain: also wait for the batch just handed over."""
            for _ in range(2 if drain else 1):
                t0 = time.perf_counter()
                done = tokenizer.swap(pending.texts)
                timings["tokenize"] += time.perf_counter() - t0  # time the main thread waited
                pending.texts, pending.text_chars = [], 0
                for item, ids, spans in done:
                    _queue(item, ids, spans, replacing, encoder, pending, report, fail)

        def publish(wait: int = 0) -> None:
            """Report the groups the store has committed, oldest first; wait until at most `wait` remain."""
            while in_flight and (len(in_flight) > wait or in_flight[0][2].done()):
                docs, replacing, future = in_flight.popleft()
                t0 = time.perf_counter()
                commit = future.result()  # a failed write or commit re-raises here
                timings["write"] += time.perf_counter() - t0
                timings["shard"] += commit.shard_seconds
                timings["index"] += commit.index_seconds
                report.bytes_written += commit.bytes
                for doc, replaced in zip(docs, replacing, strict=True):
                    report.replaced += replaced
                    report.added += not replaced
                    emit(
                        "replaced" if replaced else "added",
                        doc.path,
                        f"{doc.n_tokens} tokens, {len(doc.chunks)} chunks",
                    )

        def flush(drain: bool = False) -> None:
            """Encode what is left of the group and hand it to the store, keeping at most three groups in
            flight (two shards being written, one commit; their memory waits on the GPU); drain: first take
            in every text waiting or being tokenized."""
            if drain:
                tokenize(drain=True)
            if not pending.docs:
                return
            pending.encode(encoder, timings)
            lmk, k, v = (torch.cat([m[i] for m in pending.memory]) for i in range(3))
            future = store.write_documents(collection, pending.docs, lmk, k, v)
            in_flight.append((pending.docs, pending.replacing, future))
            pending.next_group()
            publish(wait=3)

        for failure in missing:
            fail(failure)
        done_files = done_bytes = 0
        for file, results in _extracted(files, workers, max_bytes, timings):
            for item in results:
                if isinstance(item, Failure):
                    fail(item)
                    continue
                seen_paths.add(item.path)
                for w in item.warnings:
                    report.warnings += 1
                    emit("warning", item.path, w)
                if _is_duplicate(item, store, collection, queued, replacing, report, emit):
                    continue
                queued[item.sha256] = item.path
                pending.texts.append(item)
                pending.text_chars += len(item.text)
                if pending.text_chars >= tokenize_chars:
                    tokenize()
                if pending.queued_tokens >= encode_tokens:
                    pending.encode(encoder, timings)
                if pending.chunks >= shard_chunks:
                    flush()
                elif (pending.docs or pending.texts) and time.monotonic() - pending.since >= commit_seconds:
                    flush(drain=True)
                elif in_flight and in_flight[0][2].done():
                    publish()  # reported as soon as it is committed, not only at the next flush
                if item.kind == "jsonl":
                    bar.update(len(item.text.encode()))
                elapsed = time.perf_counter() - t_start
                bar.set_postfix_str(
                    f"{done_files}/{len(files)} files, {report.tokens / elapsed:,.0f} tok/s", refresh=False
                )
            if file.suffix.lower() == ".jsonl":
                read_sources.add(str(file))
            done_bytes += sizes[done_files]
            done_files += 1
            bar.n = done_bytes
            bar.refresh()
        flush(drain=True)
        publish(wait=0)
        bar.close()
        if sync:
            report.removed = _sync(store, collection, seen_paths, read_sources, emit)
    report.seconds = time.perf_counter() - t_start
    report.timings = {k: round(v, 3) for k, v in timings.items()}
    return report


def _is_duplicate(
    item: Extracted, store: Store, collection: str, queued: dict, replacing: set[str], report, emit
) -> bool:
    """Same bytes as a stored document or one queued in this run: skipped and reported. Otherwise its
    path joins `replacing` if a stored document is there."""
    stored, occupied = store.find_stored(collection, item.sha256, item.path)
    twin = stored or queued.get(item.sha256)
    if twin is None:
        if occupied:
            replacing.add(item.path)
        return False
    if twin == item.path:
        store.forget_failures(collection, item.path)  # an earlier failed attempt at this path is moot
    report.skipped += 1
    emit("skipped", item.path, "unchanged" if twin == item.path else f"same content as {twin}")
    return True


def _queue(item, ids, spans, replacing: set[str], encoder, pending, report, fail) -> None:
    """A tokenized document into the pending group, with its chunk rows (encoding waits for a batch)."""
    if not ids:
        fail(Failure(item.path, "no text", item.source, item.sha256))
        return
    rows = chunk_rows(item, spans, len(ids), encoder.chunk_size)
    pending.docs.append(
        NewDocument(
            path=item.path,
            sha256=item.sha256,
            title=item.title,
            n_tokens=len(ids),
            chunks=rows,
            source=item.source,
            kind=item.kind,
            pages=len(item.pages) or None,
            metadata=item.metadata,
            warnings=item.warnings,
        )
    )
    pending.ids.append(ids)
    pending.queued_tokens += len(ids)
    pending.replacing.append(item.path in replacing)
    pending.chunks += len(rows)
    report.tokens += len(ids)
    report.chunks += len(rows)


def _extracted(
    files: list[Path], workers: int, max_bytes: int, timings: dict
) -> Iterator[tuple[Path, Iterable[Extracted | Failure]]]:
    """Each file with its documents, in order; non-JSONL files extracted ahead in worker processes."""
    others = [f for f in files if f.suffix.lower() != ".jsonl"]
    pool = None
    if workers > 0 and len(others) > 1:
        # fork: workers only run PyMuPDF and never touch torch, and start without re-importing anything
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
    ahead: deque[Future] = deque()
    queue = iter(others)

    def top_up() -> None:
        while pool is not None and len(ahead) < 2 * workers:
            nxt = next(queue, None)
            if nxt is None:
                return
            ahead.append(pool.submit(_extract_job, str(nxt), max_bytes))

    try:
        top_up()
        for file in files:
            if file.suffix.lower() == ".jsonl":
                yield file, iter_jsonl(file, max_bytes)
                continue
            if pool is not None:
                result, seconds = ahead.popleft().result()
                top_up()
            else:
                result, seconds = _extract_job(str(file), max_bytes)
            timings["extract"] += seconds
            yield file, [result] if isinstance(result, Failure) else result
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _sync(store: Store, collection: str, seen: set[str], read_sources: set[str], emit) -> int:
    """Remove documents whose file is gone, and records of JSONL files read now that are no longer in them."""
    removed = 0
    for doc in store.documents(collection):
        source = doc["source"] or doc["path"]
        if not Path(source).exists():
            reason = "its file is gone"
        elif source in read_sources and doc["path"] not in seen and doc["status"] == "ok":
            reason = "no longer in its file"
        else:
            continue
        store.delete_documents(collection, doc["id"])
        emit("removed", doc["path"], reason)
        removed += 1
    return removed
