"""Typed errors of the store: the command line turns each into one line and an exit code."""


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class UsageError(StoreError):
    """The request cannot be met as asked (exit code 2 at the command line)."""


class CollectionNotFound(UsageError):
    """No collection of that name in the store."""


class DocumentNotFound(UsageError):
    """No document with that path or id in the collection."""


class ModelMismatch(UsageError):
    """A collection holds memory of one model; another model may not add to it."""


class StoreBusy(StoreError):
    """Another process holds the store's write lock (an ingest, delete or compact)."""
