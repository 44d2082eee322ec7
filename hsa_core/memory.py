"""Chunk memory: what the HSA layers read. Landmarks are scanned in full; K/V are gathered on demand."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class MemoryView(Protocol):
    """What the model needs of a memory; `storage` satisfies it for a collection on disk.

    landmarks: [C, Hkv, Dl], one row per chunk, on the device the model runs on.
    gather(rows): K, V [n, S, Hkv, D] of the given rows (a LongTensor), on that device.
    ids: [C] LongTensor, the chunk id reported for each row in selection traces.
    """

    landmarks: torch.Tensor
    ids: torch.Tensor

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class ChunkMemory:
    """An in-memory chunk memory, e.g. one document from `HSAModel.encode_memory`."""

    landmarks: torch.Tensor  # (C, Hkv, Dl)
    k: torch.Tensor  # (C, S, Hkv, D)
    v: torch.Tensor  # (C, S, Hkv, D)
    ids: torch.Tensor | None = None  # (C,) chunk ids for traces; row numbers when None

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = torch.arange(self.landmarks.shape[0], device=self.landmarks.device)

    def __len__(self) -> int:
        return self.landmarks.shape[0]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.to(self.k.device)
        return self.k[rows], self.v[rows]

    def to(self, device=None, dtype=None) -> "ChunkMemory":
        return ChunkMemory(
            self.landmarks.to(device=device, dtype=dtype),
            self.k.to(device=device, dtype=dtype),
            self.v.to(device=device, dtype=dtype),
            self.ids.to(device=device),
        )

    @staticmethod
    def cat(memories: list["ChunkMemory"]) -> "ChunkMemory":
        """Concatenate memories (e.g. documents encoded one by one); ids restart as row numbers."""
        return ChunkMemory(
            torch.cat([m.landmarks for m in memories]),
            torch.cat([m.k for m in memories]),
            torch.cat([m.v for m in memories]),
        )
