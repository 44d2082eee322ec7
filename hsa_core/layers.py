"""Llama-style building blocks: RMSNorm, RoPE, SwiGLU, GQA attention with a sliding-window cache."""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hsa_core.config import HSAConfig
from kernels import sliding_window_attention


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm with its weight cast to the input's dtype: under bf16 autocast the input is bf16 and the
    weight fp32, and torch then falls back from its fused kernel to several elementwise ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


def rope_angles(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, dim/2] for absolute positions; float64 so positions in the millions stay exact."""
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B,T,H,D] by the angles of its positions (cos, sin [T, D/2]); half-split layout."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]  # (T, 1, D/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class Linear(nn.Linear):
    """A bias-free nn.Linear with an optional low-rank adapter: W·x + B·A·x (LoRA). B starts at zero, so
    the adapter changes nothing until trained; the parameter names of W stay those of nn.Linear, so a
    base's weights load into it as they are."""

    def __init__(self, d_in: int, d_out: int, rank: int = 0):
        super().__init__(d_in, d_out, bias=False)
        self.lora_a = nn.Parameter(torch.randn(rank, d_in) / d_in**0.5) if rank else None
        self.lora_b = nn.Parameter(torch.zeros(d_out, rank)) if rank else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.lora_a is None:
            return y
        return y + F.linear(F.linear(x, self.lora_a.to(x.dtype)), self.lora_b.to(x.dtype))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int, lora_rank: int = 0):
        super().__init__()
        self.w_gate = Linear(d_model, hidden, lora_rank)
        self.w_up = Linear(d_model, hidden, lora_rank)
        self.w_down = Linear(hidden, d_model, lora_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


@dataclass
class WindowCache:
    """The last `window` keys and values of one SWA layer (already rotated) and their document ids."""

    k: torch.Tensor  # (B, ≤W, Hkv, D)
    v: torch.Tensor
    doc: torch.Tensor  # (B, ≤W)

    @staticmethod
    def empty(cfg: HSAConfig, batch: int, device, dtype) -> "WindowCache":
        kv = torch.zeros(batch, 0, cfg.n_kv_heads, cfg.head_dim, device=device, dtype=dtype)
        return WindowCache(kv, kv, torch.zeros(batch, 0, dtype=torch.long, device=device))


class Attention(nn.Module):
    """GQA attention with RoPE and optional q/k RMSNorm; sliding-window causal or bidirectional."""

    def __init__(self, cfg: HSAConfig, bidirectional: bool = False, lora_rank: int = 0):
        super().__init__()
        self.cfg, self.bidirectional = cfg, bidirectional
        D = cfg.head_dim
        self.wq = Linear(cfg.d_model, cfg.n_heads * D, lora_rank)
        self.wk = Linear(cfg.d_model, cfg.n_kv_heads * D, lora_rank)
        self.wv = Linear(cfg.d_model, cfg.n_kv_heads * D, lora_rank)
        self.wo = Linear(cfg.n_heads * D, cfg.d_model, lora_rank)
        self.q_norm = RMSNorm(D, eps=cfg.norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(D, eps=cfg.norm_eps) if cfg.qk_norm else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        doc: torch.Tensor | None = None,
        cache: WindowCache | None = None,
    ) -> tuple[torch.Tensor, WindowCache | None]:
        """x (B, T, d); doc (B, T) document ids; cache: keys of earlier tokens. Returns (out, new cache)."""
        B, T, _ = x.shape
        D = self.cfg.head_dim
        q = apply_rope(self.q_norm(self.wq(x).view(B, T, self.cfg.n_heads, D)), *rope)  # (B, T, Hq, D)
        k = apply_rope(self.k_norm(self.wk(x).view(B, T, self.cfg.n_kv_heads, D)), *rope)  # (B, T, Hkv, D)
        v = self.wv(x).view(B, T, self.cfg.n_kv_heads, D)
        if self.bidirectional:
            o = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), enable_gqa=True
            ).transpose(1, 2)
            return self.wo(o.reshape(B, T, self.cfg.n_heads * D)), None
        if doc is None:
            doc = torch.zeros(B, T, dtype=torch.long, device=x.device)
        k_all, v_all, k_doc = k, v, doc
        if cache is not None:
            k_all, v_all = torch.cat([cache.k, k], 1), torch.cat([cache.v, v], 1)
            k_doc = torch.cat([cache.doc, doc], 1)
            W = self.cfg.window
            cache = WindowCache(k_all[:, -W:], v_all[:, -W:], k_doc[:, -W:])
        o = sliding_window_attention(q, k_all, v_all, self.cfg.window, doc, k_doc)
        return self.wo(o.reshape(B, T, self.cfg.n_heads * D)), cache


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then + MLP(norm(x)); every matrix with a LoRA
    adapter of lora_rank (0: none)."""

    def __init__(self, cfg: HSAConfig, bidirectional: bool = False, lora_rank: int = 0):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg, bidirectional, lora_rank)
        self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden, lora_rank)

    def forward(self, x, rope, doc=None, cache=None):
        h, cache = self.attn(self.attn_norm(x), rope, doc, cache)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), cache
