"""Sliding-window attention in PyTorch, block by block so memory grows with T·W, not T²."""

import torch
import torch.nn.functional as F


def sliding_window_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    q_doc: torch.Tensor | None = None,
    k_doc: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of q over the last `window` keys, never across a document boundary.

    q [B,Tq,Hq,D]; k, v [B,Tk,Hkv,D] with Tk ≥ Tq: the queries are the last Tq keys (earlier keys are a
    cache). q_doc [B,Tq] and k_doc [B,Tk] hold document ids; None means one document.
    """
    B, Tq, Hq, D = q.shape
    Tk = k.shape[1]
    past = Tk - Tq
    out = torch.empty_like(q)
    block = 128  # queries per step: keys per step = block + window - 1, so little is computed twice
    for q0 in range(0, Tq, block):
        q1 = min(q0 + block, Tq)
        k0 = max(0, past + q0 - window + 1)
        k1 = past + q1
        qpos = torch.arange(past + q0, past + q1, device=q.device)[:, None]
        kpos = torch.arange(k0, k1, device=q.device)[None, :]
        mask = (kpos <= qpos) & (qpos - kpos < window)  # (bq, bk)
        mask = mask.expand(B, -1, -1)
        if q_doc is not None:
            mask = mask & (q_doc[:, q0:q1, None] == k_doc[:, None, k0:k1])
        o = F.scaled_dot_product_attention(
            q[:, q0:q1].transpose(1, 2),  # (B, Hq, bq, D)
            k[:, k0:k1].transpose(1, 2),
            v[:, k0:k1].transpose(1, 2),
            attn_mask=mask[:, None],
            enable_gqa=Hq != k.shape[2],
        )
        out[:, q0:q1] = o.transpose(1, 2)
    return out
