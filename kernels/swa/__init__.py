"""Sliding-window attention with document masking, for the SWA layers."""

import torch

from kernels.swa.naive import sliding_window_attention_naive

__all__ = ["sliding_window_attention", "sliding_window_attention_naive"]


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    q_doc: torch.Tensor | None = None,
    k_doc: torch.Tensor | None = None,
) -> torch.Tensor:
    """q [B,Tq,Hq,D] over the last `window` of k, v [B,Tk,Hkv,D] (Tk ≥ Tq; queries are the last Tq keys)."""
    if k.shape[1] < q.shape[1]:
        raise ValueError(f"k has {k.shape[1]} positions, fewer than q's {q.shape[1]}")
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    if (q_doc is None) != (k_doc is None):
        raise ValueError("give both q_doc and k_doc, or neither")
    return sliding_window_attention_naive(q, k, v, window, q_doc, k_doc)
