"""The HSA layer: attend inside the selected chunks and merge through the bypassing residual."""

import torch
import torch.nn as nn

from hsa_core.config import HSAConfig
from hsa_core.layers import RMSNorm, SwiGLU
from kernels import hsa_attention


class HSALayer(nn.Module):
    """q = W_q·norm(x); o = W_o·Σ_k w_k·softmax(q K_kᵀ/√D) V_k. No RoPE: the memory has no positions.

    bypass:   x + MLP(norm(x) + norm_o(o))   (the HSA output reaches the stream only through the MLP)
    standard: h = x + o; h + MLP(norm(h))

    The bypass normalises o on its own: inside norm(x + o) the small, freshly initialised HSA output
    was drowned by the residual stream, and a CPU toy took several times longer to start reading than
    with the standard residual (docs/training-notes.md, "Why nothing was read").
    """

    def __init__(self, cfg: HSAConfig):
        super().__init__()
        self.cfg = cfg
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.wq = nn.Linear(cfg.d_model, cfg.hsa_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.hsa_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.o_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.residual == "bypass" else None
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)
        # bypass only: weight of a direct path x + direct·o that training may fade out
        # (TrainConfig.bypass_anneal); not a parameter and not saved, so a loaded model is a pure bypass
        self.direct = 0.0

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        indices: torch.Tensor,
        weights: torch.Tensor,
        backend: str = "auto",
    ) -> torch.Tensor:
        """x (B, T, d); k, v (B, C, S, Hkv, D); indices, weights (B, T, Hkv, K)."""
        B, T, _ = x.shape
        q = self.wq(self.norm(x)).view(B, T, self.cfg.hsa_heads, self.cfg.head_dim)
        if k.shape[1]:
            o = hsa_attention(q, k, v, indices, weights.to(q.dtype), backend=backend)
        else:  # no chunk anywhere yet: nothing to read
            o = torch.zeros_like(q)
        o = self.wo(o.reshape(B, T, -1))
        if self.cfg.residual == "bypass":
            out = x + self.mlp(self.mlp_norm(x) + self.o_norm(o))
            return out + self.direct * o if self.direct else out
        h = x + o
        return h + self.mlp(self.mlp_norm(h))
