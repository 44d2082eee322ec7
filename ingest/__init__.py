"""Ingest: files, folders, globs and JSONL corpora → text with provenance → tokens → chunk memory in a store.

Public API: `ingest` (the batch pipeline), `Encoder` (the model that encodes, with its fingerprint),
`IngestReport` / `IngestEvent` (what happened), `extract_file` / `iter_jsonl` / `expand_inputs` (extraction
alone), `Extracted`, `Failure`, `ExtractError`.
"""

from ingest.encode import Encoder
from ingest.extract import Extracted, ExtractError, Failure, expand_inputs, extract_file, iter_jsonl
from ingest.pipeline import IngestEvent, IngestReport, ingest

__all__ = [
    "Encoder",
    "ExtractError",
    "Extracted",
    "Failure",
    "IngestEvent",
    "IngestReport",
    "expand_inputs",
    "extract_file",
    "ingest",
    "iter_jsonl",
]
