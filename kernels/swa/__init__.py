"""Sliding-window attention with document masking, for the SWA layers."""

import torch

from kernels.swa.naive import sliding_window_attention_naive

__all__ = ["sliding_window_attention", "sliding_window_attention_naive"]

BACKENDS = ("auto", "torch", "flex")
# "auto" on CUDA tensors: flex_attention in training (it measured faster than the blockwise reference on
# the H200, docs/benchmarks.md, "Kernels"); without gradients (encoding, generation, evaluation) the
# reference, since the compiled flex call failed there on the GPU and its block mask grows as Tq×Tk for
# long segments. CPU always runs the reference
AUTO_FLEX_ON_CUDA = True
FLEX_MIN_QUERIES = 256  # decode steps (a few queries) stay on one SDPA call: no recompiles per cache length


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    q_doc: torch.Tensor | None = None,
    k_doc: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """q [B,Tq,Hq,D] over the last `window` of k, v [B,Tk,Hkv,D] (Tk ≥ Tq; queries are the last Tq keys).

    q_doc [B,Tq], k_doc [B,Tk]: document ids; attention never crosses a document boundary.
    backend: "auto" (flex_attention on CUDA with gradients, see AUTO_FLEX_ON_CUDA; else the reference),
    "torch", "flex".
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if k.shape[1] < q.shape[1]:
        raise ValueError(f"k has {k.shape[1]} positions, fewer than q's {q.shape[1]}")
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    if (q_doc is None) != (k_doc is None):
        raise ValueError("give both q_doc and k_doc, or neither")
    if backend == "flex" or (
        backend == "auto"
        and q.is_cuda
        and AUTO_FLEX_ON_CUDA
        and torch.is_grad_enabled()
        and q.shape[1] >= FLEX_MIN_QUERIES
    ):
        from kernels.swa.flex import sliding_window_attention_flex

        return sliding_window_attention_flex(q, k, v, window, q_doc, k_doc)
    return sliding_window_attention_naive(q, k, v, window, q_doc, k_doc)
