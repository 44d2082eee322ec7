"""Retrieval: per token and KV head, score every visible chunk's landmark and keep the top k."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hsa_core.config import HSAConfig
from hsa_core.layers import RMSNorm
from hsa_core.lexical import window_bags, window_word_bags
from kernels.select import select_chunks

MASKED = -1e4  # stands in for -inf inside the weights so an all-empty row has no NaN gradient
LEXICAL_GAIN = 10.0  # the lexical gate's step per unit of parameter: Adam moves it about lr a step


class Retrieval(nn.Module):
    """Retrieval query = Linear(RMSNorm(x)), split per KV head of the chunk memory; with a lexical part,
    then gate·(weighted bins of the last tokens), the gate per KV head starting at zero."""

    def __init__(self, cfg: HSAConfig):
        super().__init__()
        self.cfg = cfg
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.wq = nn.Linear(cfg.d_model, cfg.hsa_kv_heads * cfg.dense_dim, bias=False)
        # a weight per token, or with lexical_words per word's hash mod vocab_size
        self.lex_weight = nn.Parameter(torch.ones(cfg.vocab_size)) if cfg.lexical_dim else None
        self.lex_gate = nn.Parameter(torch.zeros(cfg.hsa_kv_heads)) if cfg.lexical_dim else None

    def bags(
        self, ids: torch.Tensor, doc: torch.Tensor | None, T: int, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The lexical bins (B, T, lexical_dim) of the last T positions of ids (B, ≥T): see window_bags, or
        with lexical_words (table: lexical.word_pieces) window_word_bags."""
        cfg, weights = self.cfg, self.lex_weight.float()
        if cfg.lexical_words:
            bags = window_word_bags(ids, weights, table, cfg.lexical_dim, cfg.lexical_window, doc)
        else:
            bags = window_bags(ids, weights, cfg.lexical_dim, cfg.lexical_window, doc)
        return bags[:, -T:]

    def query(self, x: torch.Tensor, bags: torch.Tensor | None = None) -> torch.Tensor:
        """Retrieval queries (..., Hkv, Dl) of hidden states x (..., d) and, with a lexical part, their
        positions' bags (..., lexical_dim)."""
        cfg = self.cfg
        if cfg.dense_retrieval:
            q = self.wq(self.norm(x)).unflatten(-1, (cfg.hsa_kv_heads, cfg.dense_dim))
        else:
            q = x.new_zeros(*x.shape[:-1], cfg.hsa_kv_heads, cfg.dense_dim)
        if not cfg.lexical_dim or bags is None:
            return q
        # scores are scaled by 1/√dense_dim for the learnt part; the lexical part is not
        gate = self.lex_gate * (LEXICAL_GAIN * math.sqrt(cfg.dense_dim))
        lexical = bags.float()[..., None, :] * gate[:, None]
        return torch.cat([q, lexical.to(q.dtype)], -1)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        own_landmarks: torch.Tensor,
        ext_landmarks: torch.Tensor | None = None,
        top_k: int | None = None,
        bags: torch.Tensor | None = None,
        words: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Select chunks for every token (top_k: the config's unless given).

        x (B, T, d); positions (T,) of the tokens in their own sequence; own_landmarks (B, Co, Hkv, Dl)
        are the sequence's chunks (chunk c visible iff position ≥ (c+1)·S + select_lag); ext_landmarks
        (Ce, Hkv, Dl) an external memory, always visible; bags (B, T, lexical_dim) the lexical part's.
        Returns indices and weights (B, T, Hkv, k): indices count external chunks first, then own chunks
        (Ce + c); -1 marks an empty slot (weight 0). With lexical_exact, words (B, T, Ce + Co) are the
        lexical part's scores (lexical.WordMatches), added to the learnt part's under the gate.
        """
        cfg = self.cfg
        top_k = top_k or cfg.top_k
        positions = positions - cfg.select_lag
        scale = 1.0 / math.sqrt(cfg.dense_dim)
        if words is not None:  # the learnt part of the landmarks (none: width 0), then the exact words
            d = cfg.dense_dim if cfg.dense_retrieval else 0
            q = self.query(x, None)[..., :d]
            own_landmarks = own_landmarks[..., :d]
            ext_landmarks = ext_landmarks[..., :d] if ext_landmarks is not None else None
        else:
            q = self.query(x, bags)
            if x.is_cuda:
                return self._select_fused(q, positions, own_landmarks, ext_landmarks, scale, top_k)
        own = torch.einsum("bthd,bchd->bthc", q, own_landmarks.to(q.dtype)) * scale
        visible = (torch.arange(own.shape[-1], device=x.device) + 1) * cfg.chunk_size
        own = own.masked_fill(visible[None, None, None, :] > positions[None, :, None, None], float("-inf"))
        scores = own
        if ext_landmarks is not None and ext_landmarks.shape[0]:
            ext = torch.einsum("bthd,chd->bthc", q, ext_landmarks.to(q.dtype)) * scale
            scores = torch.cat([ext, own], -1)
        scores = scores.float()
        if words is not None:  # hidden own chunks stay at -inf
            scores = scores + (self.lex_gate.float() * LEXICAL_GAIN)[:, None] * words[:, :, None]
        return select_top_k(scores, top_k, cfg.weights, cfg.gumbel if self.training else 0.0)

    def _select_fused(self, q, positions, own_landmarks, ext_landmarks, scale, top_k):
        """GPU path: the fused Triton scan picks (on noisy scores in training) without a [T, C] matrix in
        HBM; the picks' clean scores are then recomputed differentiably for the weights."""
        cfg = self.cfg
        ext = ext_landmarks if ext_landmarks is not None and ext_landmarks.shape[0] else None
        own = own_landmarks.to(q.dtype)
        gumbel = cfg.gumbel if self.training else 0.0
        indices, _ = select_chunks(q, own, positions, cfg.chunk_size, top_k, ext, gumbel)
        B, T, H, _ = q.shape
        n_ext = ext.shape[0] if ext is not None else 0
        safe = indices.clamp(min=0)
        i_b = torch.arange(B, device=q.device).view(B, 1, 1, 1)
        i_h = torch.arange(H, device=q.device).view(1, 1, H, 1)
        lmk = q.new_zeros(*indices.shape, q.shape[-1])  # (B, T, H, k, Dl)
        if own.shape[1]:
            lmk = own[i_b, (safe - n_ext).clamp(0, own.shape[1] - 1), i_h]
        if n_ext:
            ext_rows = ext.to(q.dtype)[safe.clamp(max=n_ext - 1), i_h]
            lmk = torch.where((safe < n_ext)[..., None], ext_rows, lmk)
        picked_scores = torch.einsum("bthd,bthkd->bthk", q, lmk).float() * scale
        return _weigh(indices, picked_scores, indices >= 0, cfg.weights)


def select_top_k(
    scores: torch.Tensor, k: int, weighting: str = "softmax", gumbel: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of scores (..., C) with -inf for invisible chunks → indices (-1 = empty) and weights (..., k).

    Gumbel noise (scale `gumbel`) perturbs which chunks are picked, not their weights.
    """
    C = scores.shape[-1]
    kk = min(k, C)
    noisy = scores
    if gumbel > 0:
        u = torch.rand_like(scores).clamp_(1e-9, 1 - 1e-9)
        noisy = scores - gumbel * torch.log(-torch.log(u))
    picked = noisy.topk(kk, dim=-1).indices if kk else scores.new_zeros(*scores.shape[:-1], 0).long()
    picked_scores = scores.gather(-1, picked)
    valid = torch.isfinite(picked_scores)
    indices = torch.where(valid, picked, -1)
    indices, weights = _weigh(indices, picked_scores, valid, weighting)
    if kk < k:
        pad = (0, k - kk)
        indices, weights = F.pad(indices, pad, value=-1), F.pad(weights, pad, value=0.0)
    return indices, weights


def _weigh(
    indices: torch.Tensor, picked_scores: torch.Tensor, valid: torch.Tensor, weighting: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (..., k) of the picks from their clean scores; stick-breaking reorders most recent first."""
    if weighting == "stick_breaking":
        # most recent chunk first: sort descending by index (empty slots, -1, go last)
        indices, order = indices.sort(dim=-1, descending=True)
        picked_scores, valid = picked_scores.gather(-1, order), valid.gather(-1, order)
        s = torch.where(valid, picked_scores, MASKED)
        stay = F.logsigmoid(-s).cumsum(-1) - F.logsigmoid(-s)  # Σ_{j<i} log(1 − σ(s_j))
        weights = torch.exp(F.logsigmoid(s) + stay)
    else:
        weights = torch.where(valid, picked_scores, MASKED).softmax(-1)
    weights = torch.where(valid, weights, 0.0)
    return indices, weights
