"""HSA attention: a separate softmax inside each selected chunk, then the weighted sum of the chunks."""

import torch

from kernels.hsa.naive import hsa_attention_naive

__all__ = ["hsa_attention", "hsa_attention_naive"]

BACKENDS = ("auto", "torch", "triton")


def hsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """Attend from every token to its selected chunks.

    q [B,T,Hq,D]; k, v [B,C,S,Hkv,D] (C chunks of S tokens); indices, weights [B,T,Hkv,K] with
    index -1 for an empty slot (its weight is ignored). The Hq/Hkv query heads of a KV group share
    the group's selection. Returns [B,T,Hq,D]; differentiable in q, k, v and weights.
    backend: "auto" (Triton for CUDA tensors, the PyTorch reference on CPU), "torch" or "triton"
    (on CPU tensors only under TRITON_INTERPRET=1, for tests).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if q.dim() != 4 or k.dim() != 5 or v.shape != k.shape:
        raise ValueError(
            f"expected q [B,T,Hq,D] and k, v [B,C,S,Hkv,D]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    B, T, Hq, D = q.shape
    if k.shape[0] != B or k.shape[4] != D or Hq % k.shape[3]:
        raise ValueError(
            f"k, v {tuple(k.shape)} do not match q {tuple(q.shape)}: batch and head dim must agree "
            f"and Hq must be a multiple of Hkv"
        )
    if indices.shape != weights.shape or indices.shape[:3] != (B, T, k.shape[3]):
        raise ValueError(
            f"indices {tuple(indices.shape)} and weights {tuple(weights.shape)} must both be "
            f"[B,T,Hkv,K] = [{B},{T},{k.shape[3]},K]"
        )
    if indices.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"indices must be int32 or int64, got {indices.dtype}")
    if backend == "torch" or (backend == "auto" and not q.is_cuda):
        return hsa_attention_naive(q, k, v, indices, weights)
    # imported here so that `import kernels` never compiles or interprets anything
    from kernels.hsa import parallel

    if not q.is_cuda and not parallel.INTERPRETED:
        raise RuntimeError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before kernels.hsa.parallel is "
            f"imported to run on CPU tensors; got tensors on {q.device}"
        )
    return parallel.hsa_attention_triton(q, k, v, indices, weights)
