"""Plain PyTorch chunk selection: score every landmark, mask unfinished chunks, torch.topk."""

import torch


def chunk_scores_naive(
    q: torch.Tensor,
    landmarks: torch.Tensor,
    positions: torch.Tensor,
    chunk_size: int,
    ext_landmarks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores [B,T,H,Ce+Co] in fp32: q·landmark/√Dl, -inf for own chunks not completed before the token.

    q [B,T,H,Dl]; landmarks [B,Co,H,Dl] (own chunk c visible iff position ≥ (c+1)·chunk_size);
    positions [T]; ext_landmarks [Ce,H,Dl] always visible, numbered first.
    """
    scale = q.shape[-1] ** -0.5
    own = torch.einsum("bthd,bchd->bthc", q.float(), landmarks.float()) * scale
    visible = (torch.arange(own.shape[-1], device=q.device) + 1) * chunk_size
    own = own.masked_fill(visible[None, None, None, :] > positions[None, :, None, None], float("-inf"))
    if ext_landmarks is None or not ext_landmarks.shape[0]:
        return own
    ext = torch.einsum("bthd,chd->bthc", q.float(), ext_landmarks.float()) * scale
    return torch.cat([ext, own], -1)


def select_chunks_naive(
    q: torch.Tensor,
    landmarks: torch.Tensor,
    positions: torch.Tensor,
    chunk_size: int,
    top_k: int,
    ext_landmarks: torch.Tensor | None = None,
    gumbel: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k chunks per (token, KV head): indices [B,T,H,top_k] (-1 = empty, best first) and their scores.

    With gumbel > 0 the picks (and returned scores) are of the Gumbel-perturbed scores.
    """
    scores = chunk_scores_naive(q, landmarks, positions, chunk_size, ext_landmarks)
    if gumbel > 0:
        u = torch.rand_like(scores).clamp_(1e-9, 1 - 1e-9)
        scores = scores - gumbel * torch.log(-torch.log(u))
    kk = min(top_k, scores.shape[-1])
    top = scores.topk(kk, dim=-1)
    values, indices = top.values, torch.where(torch.isfinite(top.values), top.indices, -1)
    if kk < top_k:
        pad = (0, top_k - kk)
        values = torch.nn.functional.pad(values, pad, value=float("-inf"))
        indices = torch.nn.functional.pad(indices, pad, value=-1)
    return indices, values
