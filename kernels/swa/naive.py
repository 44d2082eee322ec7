"""Sliding-window attention in PyTorch, in blocks of queries so memory grows with T·W, not T².

All blocks go through one SDPA call: each block of `bq` queries sees the `(nb + 1) · bq` keys that end with
it (an `unfold` of the keys), masked to its window and document. That computes up to `bq` scores per query
more than needed, but costs one kernel launch per layer instead of one per block — on a GPU the launches,
not the arithmetic, were what a long packed batch waited for.
"""

import torch
import torch.nn.functional as F


def sliding_window_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    q_doc: torch.Tensor | None = None,
    k_doc: torch.Tensor | None = None,
    block: int = 128,
) -> torch.Tensor:
    """Causal attention of q over the last `window` keys, never across a document boundary.

    q [B,Tq,Hq,D]; k, v [B,Tk,Hkv,D] with Tk ≥ Tq: the queries are the last Tq keys (earlier keys are a
    cache). q_doc [B,Tq] and k_doc [B,Tk] hold document ids (≥ 0); None means one document.
    """
    B, Tq, Hq, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    bq = min(block, Tq)
    nb = -(-(window - 1) // bq)  # earlier key blocks a query block can reach
    n = -(-Tq // bq)  # query blocks
    span = (nb + 1) * bq
    front = nb * bq - (Tk - Tq)  # keys to add (or, if negative, drop: out of every window) in front
    tail = n * bq - Tq
    if q_doc is None:
        q_doc = torch.zeros(B, Tq, dtype=torch.long, device=q.device)
        k_doc = torch.zeros(B, Tk, dtype=torch.long, device=q.device)

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (B, (n+nb)·bq, ...) → (B, n, span, ...)
        return x.unfold(1, span, bq).movedim(-1, 2)

    kb = blocks(F.pad(k, (0, 0, 0, 0, front, tail)))  # (B, n, span, Hkv, D)
    vb = blocks(F.pad(v, (0, 0, 0, 0, front, tail)))
    kd = blocks(F.pad(k_doc, (front, tail), value=-1))  # padding never matches a document: (B, n, span)
    qd = F.pad(q_doc, (0, tail), value=-2).view(B, n, bq)
    i = torch.arange(bq, device=q.device)[:, None] + nb * bq  # a query's place among its block's keys
    j = torch.arange(span, device=q.device)[None, :]
    mask = (j <= i) & (i - j < window)  # (bq, span): the same for every block
    mask = mask & (qd[..., :, None] == kd[..., None, :])  # (B, n, bq, span)
    o = F.scaled_dot_product_attention(
        F.pad(q, (0, 0, 0, 0, 0, tail)).view(B * n, bq, Hq, D).transpose(1, 2),  # (B·n, Hq, bq, D)
        kb.reshape(B * n, span, Hkv, D).transpose(1, 2),
        vb.reshape(B * n, span, Hkv, D).transpose(1, 2),
        attn_mask=mask.view(B * n, 1, bq, span),
        enable_gqa=Hq != Hkv,
    )
    return o.transpose(1, 2).reshape(B, n * bq, Hq, D)[:, :Tq]
