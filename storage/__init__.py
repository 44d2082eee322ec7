"""Chunk memory on disk: safetensors shards plus an SQLite index (sqlite-utils), grouped in collections.

Public API: `Store` (open a store folder; add, list, delete, compact, recover), `ModelInfo` and `NewDocument`
(what a writer hands in), `CollectionMemory` (the view `hsa_core` reads), `default_store_path`, errors.
"""

from storage.errors import (
    CollectionNotFound,
    DocumentNotFound,
    ModelMismatch,
    StoreBusy,
    StoreError,
    UsageError,
)
from storage.memory import CollectionMemory
from storage.store import (
    CollectionStats,
    Commit,
    CompactReport,
    ModelInfo,
    NewDocument,
    Store,
    default_store_path,
)

__all__ = [
    "CollectionMemory",
    "CollectionNotFound",
    "CollectionStats",
    "Commit",
    "CompactReport",
    "DocumentNotFound",
    "ModelInfo",
    "ModelMismatch",
    "NewDocument",
    "Store",
    "StoreBusy",
    "StoreError",
    "UsageError",
    "default_store_path",
]
