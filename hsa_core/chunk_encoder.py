"""The chunking layer: each chunk of S hidden states, with a learned CLS appended, through a small
bidirectional encoder; the CLS output becomes the chunk's landmark, the S token outputs its K/V. With a
lexical part, the landmark ends with the bins of the chunk's tokens or words, or with lexical_exact its
words themselves (hsa_core/lexical.py)."""

import torch
import torch.nn as nn

from hsa_core.config import HSAConfig
from hsa_core.layers import Block, RMSNorm, rope_angles
from hsa_core.lexical import chunk_bins, chunk_word_bins, saturated, word_slots


class ChunkEncoder(nn.Module):
    def __init__(self, cfg: HSAConfig):
        super().__init__()
        self.cfg = cfg
        self.cls = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.encoder == "cls_encoder" else None
        self.layers = nn.ModuleList(Block(cfg, bidirectional=True) for _ in range(cfg.enc_layers))
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.landmark_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mean_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.landmark_mean else None
        self.mean_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False) if cfg.landmark_mean else None
        self.wk = nn.Linear(cfg.d_model, cfg.hsa_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.hsa_kv_heads * cfg.head_dim, bias=False)

    def forward(
        self, h: torch.Tensor, ids: torch.Tensor | None = None, table: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h (N, S, d) chunks and their token ids (N, S) → landmarks (N, Hkv, Dl), k and v (N, S, Hkv, D);
        table (V,): lexical.word_pieces, for lexical_words."""
        cfg = self.cfg
        N, S, d = h.shape
        if N == 0:  # no chunk completed (most decode steps): CUDA's SDPA returns None on an empty batch
            kv = h.new_zeros(0, S, cfg.hsa_kv_heads, cfg.head_dim)
            return h.new_zeros(0, cfg.hsa_kv_heads, cfg.landmark_dim), kv, kv
        x = h if self.cls is None else torch.cat([h, self.cls.to(h.dtype).expand(N, 1, d)], 1)
        rope = rope_angles(torch.arange(x.shape[1], device=h.device), cfg.head_dim, cfg.rope_theta)
        for layer in self.layers:
            x, _ = layer(x, rope)
        x = self.norm(x)
        tokens = x[:, :S]
        summary = tokens.mean(1) if self.cls is None else x[:, S]
        landmarks = self.landmark_norm(summary)
        if self.mean_proj is not None:
            landmarks = landmarks + self.mean_proj(self.mean_norm(h.mean(1)))
        landmarks = landmarks.view(N, cfg.hsa_kv_heads, cfg.dense_dim)
        if cfg.lexical_exact and not self.training:  # training scores bins (HSAModel._exact)
            words = word_slots(ids, table).to(landmarks.dtype)
            landmarks = torch.cat([landmarks, words[:, None].expand(N, cfg.hsa_kv_heads, -1)], -1)
        elif cfg.lexical_dim:
            if cfg.lexical_words:
                bins = chunk_word_bins(ids, table, cfg.lexical_dim, counts=cfg.lexical_bm25)
            else:
                bins = chunk_bins(ids, cfg.lexical_dim, counts=cfg.lexical_bm25)
            bins = (saturated(bins) if cfg.lexical_bm25 else bins).to(landmarks.dtype)
            landmarks = torch.cat([landmarks, bins[:, None].expand(N, cfg.hsa_kv_heads, -1)], -1)
        k = self.wk(tokens).view(N, S, cfg.hsa_kv_heads, cfg.head_dim)
        v = self.wv(tokens).view(N, S, cfg.hsa_kv_heads, cfg.head_dim)
        return landmarks, k, v
