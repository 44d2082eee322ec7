"""The memory view the model reads for one collection (hsa_core.MemoryView).

All landmarks sit in one contiguous tensor on the model's device; chunk K/V stay in the mmapped shards and
only the rows the model selects are copied (or, when asked, all K/V are loaded onto the device at once).
The view reads the index in one snapshot, so a concurrent ingest is either wholly in it or not at all.
"""

import numpy as np
import torch

from storage.shards import ShardReader


class CollectionMemory:
    """landmarks [C, Hkv, Dl], ids [C] (chunk ids), gather(rows) → K, V [n, S, Hkv, D]; refresh() reloads."""

    def __init__(
        self, store, collection: str, device: str | torch.device = "cpu", kv_on_device: bool | None = None
    ):
        self.store, self.collection = store, collection
        self.device = torch.device(device)
        # K/V on the device when it is a GPU (a single H200 holds tens of millions of tokens), else mapped
        self.kv_on_device = self.device.type != "cpu" if kv_on_device is None else kv_on_device
        self.version = -1
        self._readers: dict[str, ShardReader] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Reload if the collection changed since the last load; True when it did."""
        current = self.store.collection(self.collection)["version"]
        if current == self.version:
            return False
        for attempt in range(3):
            try:
                self._load()
                return True
            except FileNotFoundError:  # a compact replaced a shard between our snapshot and opening it
                if attempt == 2:
                    raise
        return True

    def _load(self) -> None:
        db = self.store.db
        db.execute("BEGIN")  # one read snapshot for the version, the chunks and their shards
        try:
            coll = self.store.collection(self.collection)
            rows = db.execute(
                """select k.id, s.path, k.row from chunks k
                   join documents d on k.document_id = d.id join shards s on k.shard = s.id
                   where d.collection = ? and d.status = 'ok' order by d.id, k.ordinal""",
                [self.collection],
            ).fetchall()
        finally:
            db.execute("COMMIT")
        self.info = coll
        readers = {
            path: self._readers.get(path) or ShardReader(self.store.root / path)
            for path in {r[1] for r in rows}
        }
        paths = sorted(readers)
        shard_of = {p: i for i, p in enumerate(paths)}
        self._readers = readers
        self._shards = [readers[p] for p in paths]
        self.ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
        self._shard = np.array([shard_of[r[1]] for r in rows], dtype=np.int64)
        self._row = np.array([r[2] for r in rows], dtype=np.int64)
        Hkv, Dl = coll["kv_heads"], coll["landmark_dim"]
        self.landmarks = self._collect("landmarks", np.arange(len(rows))).reshape(len(rows), Hkv, Dl)
        self.landmarks = self.landmarks.to(self.device)
        self._kv = None
        if self.kv_on_device:
            everything = np.arange(len(rows))
            self._kv = (
                self._collect("k", everything).to(self.device),
                self._collect("v", everything).to(self.device),
            )
        self.version = coll["version"]

    def _collect(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of one tensor from their shards, in the order asked (one mapped read per shard)."""
        S, Hkv, D, Dl = (
            self.info["chunk_size"],
            self.info["kv_heads"],
            self.info["head_dim"],
            self.info["landmark_dim"],
        )
        shape = (Hkv, Dl) if name == "landmarks" else (S, Hkv, D)
        out = torch.empty(len(rows), *shape, dtype=getattr(torch, self.info["dtype"]))
        shard = self._shard[rows]
        for s in np.unique(shard):
            where = np.nonzero(shard == s)[0]
            out[torch.from_numpy(where)] = self._shards[s].rows(name, self._row[rows[where]])
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V [n, S, Hkv, D] of the given rows of this view, on the view's device."""
        if self._kv is not None:
            rows = rows.to(self.device)
            return self._kv[0][rows], self._kv[1][rows]
        idx = rows.detach().cpu().numpy().astype(np.int64)
        k, v = self._collect("k", idx), self._collect("v", idx)
        return k.to(self.device, non_blocking=True), v.to(self.device, non_blocking=True)
