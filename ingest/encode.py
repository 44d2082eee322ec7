"""The model side of ingest: load the encoding model, fingerprint it, turn token ids into chunk memory."""

import hashlib
import json
from dataclasses import asdict

import torch

from hsa_core import HSAConfig, ModelNotFound, load_model
from hsa_core.checkpoint import DEFAULT_MODEL
from hsa_core.model import HSAModel
from hsa_core.smollm2 import BaseModelError
from storage import ModelInfo, UsageError

FALLBACK_PRESET = "small"
GPU_BUCKET = 16384  # tokens: packed GPU batches are padded to a multiple of this
GPU_BATCH = 262144  # tokens encoded together on a GPU by default: 256K ran 1.5× faster than 64K


def model_fingerprint(model: HSAModel) -> str:
    """sha256 of the config and the weights (as bf16, so a model loaded in any dtype has one fingerprint).
    Config fields at their defaults are left out: a new option that is off changes no stored collection's
    model."""
    defaults = asdict(HSAConfig())
    config = {k: v for k, v in asdict(model.cfg).items() if v != defaults[k]}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Encoder:
    """A loaded model that encodes documents into chunk memory, on the CPU in fp32 or on a GPU in bf16.

    fp32 on the CPU: without AVX-512 BF16 (this project's 2-core CI machine has only AVX2), bf16 matrix
    products run about 3.5× slower than fp32 (7 vs 25 GFLOP/s measured). Memory is stored as bf16 either way.
    """

    def __init__(self, model: HSAModel, name: str):
        if model.tokenizer is None:
            raise UsageError(f"model {name} has no tokenizer")
        self.model, self.name = model, name
        self.device = next(model.parameters()).device
        cfg = model.cfg
        self.chunk_size = cfg.chunk_size
        self.info = ModelInfo(
            name=name,
            hash=model_fingerprint(model),
            chunk_size=cfg.chunk_size,
            kv_heads=cfg.hsa_kv_heads,
            head_dim=cfg.head_dim,
            landmark_dim=cfg.landmark_dim,
        )

    @classmethod
    def load(cls, name: str | None = None, device: str = "auto") -> tuple["Encoder", str | None]:
        """The named checkpoint or preset; with no name DEFAULT_MODEL, else preset 'small' and a note."""
        dev = pick_device(device)
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        note = None
        try:
            model = load_model(name, device=dev, dtype=dtype)
        except BaseModelError as e:
            raise UsageError(str(e)) from None
        except ModelNotFound as e:
            if name is not None:
                raise UsageError(str(e)) from None
            note = (
                f"{e}. Encoding with the preset {FALLBACK_PRESET!r} (random weights), good only "
                "for tests, and a collection made with it will refuse the trained model later."
            )
            name = FALLBACK_PRESET
            model = load_model(name, device=dev, dtype=dtype)
        encoder = cls(model, str(name or DEFAULT_MODEL))
        encoder.warm_up()
        return encoder, note

    def warm_up(self) -> None:
        """On a GPU, encode one packed batch of every bucket size up to GPU_BATCH once: a shape's first call
        picks attention kernels and grows the allocator, ≈ 0.4 s of a cold 1M-token ingest otherwise
        (docs/benchmarks.md). Costs ≈ 2.5M tokens of encoding at load; nothing on a CPU."""
        if self.device.type != "cuda":
            return
        doc = [self.model.tokenizer.eot_id] * (GPU_BUCKET // 2)
        for buckets in range(1, GPU_BATCH // GPU_BUCKET + 2):
            self.encode_many([doc] * (2 * buckets), alone_above=len(doc))
        torch.cuda.synchronize(self.device)

    def tokenize(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids of each text and the character span of each of its chunks, tokenized in parallel."""
        return self.model.tokenizer.encode_batch_with_spans(texts, self.chunk_size)

    @torch.no_grad()  # not inference_mode: the kernels cache masks by tensor version, which it lacks
    def encode(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Landmarks [C, Hkv, Dl], K and V [C, S, Hkv, D] of one document, as bf16 on the encoder's device.

        Left on the device, so that on a GPU nothing here waits for the encoding to finish: the store copies
        the memory to the host in its writer thread.
        """
        mem = self.model.encode_memory(self._ids(ids), pad_id=self.model.tokenizer.eot_id)
        return tuple(t.to(torch.bfloat16) for t in (mem.landmarks, mem.k, mem.v))

    @torch.no_grad()  # not inference_mode: the kernels cache masks by tensor version, which it lacks
    def encode_many(
        self, docs: list[list[int]], alone_above: int = 8192
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`encode` of several documents in one pass: packed into one sequence, each padded to whole chunks.

        Document ids keep every SWA window inside its own document and chunks never straddle two, and RoPE
        is relative, so each document's memory equals `encode` of it alone (tests/test_ingest_pipeline.py
        checks this) while the model runs a few large matrix products instead of many small ones.
        (`HSAModel.encode_documents`). Documents longer than `alone_above` tokens go through `encode`
        on their own, which bounds the memory a batch needs.
        """
        out: list = [None] * len(docs)
        short = [i for i, ids in enumerate(docs) if len(ids) <= alone_above]
        for i in sorted(set(range(len(docs))) - set(short)):
            out[i] = self.encode(docs[i])
        if len(short) == 1:
            out[short[0]] = self.encode(docs[short[0]])
        elif short:
            for i, mem in zip(short, self._packed([docs[i] for i in short]), strict=True):
                out[i] = mem
        return out

    def _packed(self, docs: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        pad, n = self.model.tokenizer.eot_id, len(docs)
        if self.device.type == "cuda":
            # a filler document rounds the batch up to a whole bucket: batches then repeat a few shapes and
            # the allocator reuses its blocks, where new sizes cost cudaMalloc/cudaFree calls that wait for
            # the GPU (they held a 1M-token ingest at 0.5M tokens/s while the model ran at 5M)
            padded = sum(-(-len(d) // self.chunk_size) * self.chunk_size for d in docs)
            if padded % GPU_BUCKET:
                docs = [*docs, [pad] * (GPU_BUCKET - padded % GPU_BUCKET)]
        ids = self._ids([i for d in docs for i in d]).split([len(d) for d in docs])  # one copy to the device
        mems = self.model.encode_documents(list(ids), pad_id=pad)
        return [tuple(t.to(torch.bfloat16) for t in (m.landmarks, m.k, m.v)) for m in mems[:n]]

    def _ids(self, ids: list[int]) -> torch.Tensor:
        """Token ids on the device; on CUDA from pinned memory, so the copy does not wait for the GPU."""
        if self.device.type != "cuda":
            return torch.tensor(ids, dtype=torch.long, device=self.device)
        return torch.tensor(ids, dtype=torch.long, pin_memory=True).to(self.device, non_blocking=True)
