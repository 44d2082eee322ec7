"""Chunk selection: every token scores the landmarks of the chunks it may see and keeps the top k."""

import torch

from kernels.select.naive import chunk_scores_naive, select_chunks_naive

__all__ = ["chunk_scores_naive", "select_chunks", "select_chunks_naive"]

BACKENDS = ("auto", "torch", "triton")


def select_chunks(
    q: torch.Tensor,
    landmarks: torch.Tensor,
    positions: torch.Tensor,
    chunk_size: int,
    top_k: int,
    ext_landmarks: torch.Tensor | None = None,
    gumbel: float = 0.0,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k chunks by q·landmark/√Dl among those each token may see.

    q [B,T,H,Dl] retrieval queries; landmarks [B,Co,H,Dl] the sequence's own chunks (chunk c visible
    iff positions[t] ≥ (c+1)·chunk_size); ext_landmarks [Ce,H,Dl] an external memory, always visible
    and numbered first (own chunk c is Ce + c). Returns indices [B,T,H,top_k] (int64, -1 = empty
    slot, best first) and their scores (fp32, -inf when empty) — of the Gumbel-perturbed scores when
    gumbel > 0, so that callers weight the picks with clean scores of their own. Not differentiable.
    backend: "auto" (Triton for CUDA tensors, the reference on CPU), "torch" or "triton" (on CPU
    only under TRITON_INTERPRET=1, for tests). The Triton path never writes the [T, C] score matrix.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if q.dim() != 4 or landmarks.dim() != 4:
        raise ValueError(
            f"expected q [B,T,H,Dl] and landmarks [B,Co,H,Dl]; got {tuple(q.shape)}, {tuple(landmarks.shape)}"
        )
    B, T, H, Dl = q.shape
    if landmarks.shape[0] != B or landmarks.shape[2:] != (H, Dl):
        raise ValueError(f"landmarks {tuple(landmarks.shape)} do not match q {tuple(q.shape)}")
    if ext_landmarks is not None and (ext_landmarks.dim() != 3 or ext_landmarks.shape[1:] != (H, Dl)):
        raise ValueError(f"ext_landmarks must be [Ce,{H},{Dl}], got {tuple(ext_landmarks.shape)}")
    if positions.shape != (T,):
        raise ValueError(f"positions must be [{T}], got {tuple(positions.shape)}")
    if top_k < 1 or chunk_size < 1:
        raise ValueError(f"top_k and chunk_size must be ≥ 1, got {top_k} and {chunk_size}")
    if backend == "torch" or (backend == "auto" and not q.is_cuda):
        return select_chunks_naive(q, landmarks, positions, chunk_size, top_k, ext_landmarks, gumbel)
    # imported here so that `import kernels` never compiles or interprets anything
    from kernels.select import parallel

    if not q.is_cuda and not parallel.INTERPRETED:
        raise RuntimeError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before kernels.select.parallel "
            f"is imported to run on CPU tensors; got tensors on {q.device}"
        )
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if gumbel > 0 else 0
    ext = ext_landmarks.to(q.dtype).contiguous() if ext_landmarks is not None else None
    return parallel.select_fwd(
        q.contiguous(),
        landmarks.to(q.dtype).contiguous(),
        positions.contiguous(),
        chunk_size,
        top_k,
        ext,
        gumbel,
        seed,
    )
