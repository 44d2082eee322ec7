"""Sliding-window attention through flex_attention vs the blockwise reference (document masks, a cache)."""

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

import kernels.swa.flex as swa_flex
from kernels import sliding_window_attention
from kernels.swa.naive import sliding_window_attention_naive

CUDA = torch.cuda.is_available()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def inputs(B, Tq, Tk, Hq, Hkv, D, device="cpu", dtype=torch.float32, docs=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, Hq, D, generator=gen).to(device, dtype)
    k = torch.randn(B, Tk, Hkv, D, generator=gen).to(device, dtype)
    v = torch.randn(B, Tk, Hkv, D, generator=gen).to(device, dtype)
    if not docs:
        return q, k, v, None, None
    k_doc = (torch.rand(B, Tk, generator=gen) < 0.03).long().cumsum(1).to(device)  # random boundaries
    return q, k, v, k_doc[:, Tk - Tq :], k_doc


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("docs", [False, True], ids=["one-doc", "docs"])
def test_flex_mask_matches_reference_cpu(docs, monkeypatch):
    """The mask logic, run uncompiled on CPU (compiling would cost CI minutes)."""
    monkeypatch.setattr(swa_flex, "_compiled_flex", lambda: flex_attention)
    q, k, v, qd, kd = inputs(2, 111, 150, 4, 2, 16, docs=docs)
    got = sliding_window_attention(q, k, v, 33, qd, kd, backend="flex")
    assert rel_err(got, sliding_window_attention_naive(q, k, v, 33, qd, kd)) <= 1e-5


def test_unknown_backend_is_rejected():
    q, k, v, _, _ = inputs(1, 4, 4, 2, 1, 8, docs=False)
    with pytest.raises(ValueError, match="backend"):
        sliding_window_attention(q, k, v, 2, backend="cuda")


@pytest.mark.skipif(not CUDA, reason="compiled flex_attention is checked on the GPU")
@pytest.mark.parametrize("T", [1000, 4096])
def test_flex_matches_reference_bf16_cuda(T):
    q, k, v, qd, kd = inputs(2, T, T + 64, 6, 2, 64, "cuda", torch.bfloat16, seed=T)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    do = torch.randn_like(q)
    got = sliding_window_attention(q, k, v, 512, qd, kd, backend="flex")
    g = torch.autograd.grad(got, (q, k, v), do)
    up = [x.detach().float().requires_grad_() for x in (q, k, v)]
    ref = sliding_window_attention_naive(*up, 512, qd, kd)
    r = torch.autograd.grad(ref, up, do.float())
    assert rel_err(got, ref) <= 1e-2
    for a, b in zip(g, r, strict=True):
        assert rel_err(a, b) <= 1e-2


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_block_mask_is_reused_only_for_the_same_unmodified_docs(monkeypatch):
    monkeypatch.setattr(swa_flex, "_compiled_flex", lambda: flex_attention)
    q, k, v, qd, kd = inputs(1, 96, 96, 2, 1, 8)
    first = swa_flex.block_mask(qd, kd, 1, 96, 96, 20, "cpu")
    assert swa_flex.block_mask(qd, kd, 1, 96, 96, 20, "cpu") is first
    qd[0, 50:] += 7  # in place: a new version, so a new mask
    assert swa_flex.block_mask(qd, kd, 1, 96, 96, 20, "cpu") is not first
    got = sliding_window_attention(q, k, v, 20, qd, kd, backend="flex")
    assert rel_err(got, sliding_window_attention_naive(q, k, v, 20, qd, kd)) <= 1e-5
