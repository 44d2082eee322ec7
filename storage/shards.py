"""Shard files: landmarks, K and V of a run of chunks in one safetensors file, written durably, read by mmap.

A shard is written once (to a temporary name, fsynced, renamed, directory fsynced) and never changed;
`compact` writes new shards and removes old ones. Reading maps the file and copies only the rows asked for.
"""

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

TENSORS = ("landmarks", "k", "v")
# safetensors dtype name → numpy dtype of the same width (bf16 is read as raw 16-bit words)
_NP = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}
_TORCH = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(path: Path, landmarks: torch.Tensor, k: torch.Tensor, v: torch.Tensor, metadata: dict) -> int:
    """Write a shard durably; returns its size in bytes. Nothing is visible at `path` until it is whole.

    The tensors may be on any device: copying them to the host waits for the device, here in the caller's
    thread (the store's writer thread, so an ingest's main thread never does).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {name: _to_host(t) for name, t in zip(TENSORS, (landmarks, k, v), strict=True)}
    save_file(tensors, str(tmp), metadata={key: str(value) for key, value in metadata.items()})
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path.stat().st_size


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """t on the host; from a GPU through pinned memory (the caching host allocator reuses its blocks),
    several times faster than a copy into pageable memory."""
    if t.device.type == "cpu":
        return t.contiguous()
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return out.copy_(t)


class ShardReader:
    """Memory-mapped view of one shard: `rows(name, idx)` copies just those rows into a tensor."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        self.arrays: dict[str, np.memmap] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        for name in TENSORS:
            info = header[name]
            start, end = info["data_offsets"]
            shape = tuple(info["shape"])
            if end == start:  # zero rows: numpy cannot map an empty range
                self.arrays[name] = np.zeros(shape, dtype=_NP[info["dtype"]])
            else:
                self.arrays[name] = np.memmap(
                    self.path, dtype=_NP[info["dtype"]], mode="r", offset=8 + n + start, shape=shape
                )
            self.dtypes[name] = _TORCH[info["dtype"]]

    def __len__(self) -> int:
        return self.arrays["landmarks"].shape[0]

    def rows(self, name: str, idx: np.ndarray | slice) -> torch.Tensor:
        """Rows of one tensor, copied out of the map (fancy indexing reads only those pages)."""
        out = np.ascontiguousarray(self.arrays[name][idx])
        return torch.from_numpy(out).view(self.dtypes[name])
