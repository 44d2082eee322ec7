"""Triton HSA attention vs the PyTorch reference: forward and every gradient.

On a CPU-only machine the kernels run under TRITON_INTERPRET=1 (set only around this module's import
and its tests); with a GPU they run compiled, and the bf16 cases run too.
"""

import math

import pytest
import torch

from kernels import hsa_attention
from kernels.hsa.naive import hsa_attention_naive
from kernels.testing import import_interpreted, triton_interpreter

CUDA = torch.cuda.is_available()
if CUDA:
    from kernels.hsa import parallel
else:
    parallel = import_interpreted("kernels.hsa.parallel")
DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(autouse=True)
def _triton_setup():
    """Interpreter on (CPU only) and NaN-filled outputs for every test here."""
    parallel.POISON = True
    if CUDA:
        yield
    else:
        with triton_interpreter():
            yield
    parallel.POISON = False


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def causal_selection(B: int, T: int, H: int, C: int, S: int, K: int, gen: torch.Generator):
    """Top-K of random scores over completed chunks (c visible iff t ≥ (c+1)·S); -1 where none is left."""
    scores = torch.randn(B, T, H, C, generator=gen)
    visible = (torch.arange(C) + 1) * S <= torch.arange(T)[:, None]  # (T, C)
    scores = scores.masked_fill(~visible[None, :, None, :], float("-inf"))
    top = scores.topk(min(K, C), -1)
    idx = torch.where(torch.isfinite(top.values), top.indices, -1)
    if K > C:
        idx = torch.nn.functional.pad(idx, (0, K - C), value=-1)
    return idx


# id: (B, T, Hq, Hkv, D, S, K, selection)
CASES = {
    "T63-G1-S8-causal": (1, 63, 2, 2, 16, 8, 3, "causal"),
    "T111-G3-S5-D24-causal": (1, 111, 3, 1, 24, 5, 4, "causal"),
    "B2-T40-G4-random-dups": (2, 40, 8, 2, 32, 16, 2, "random"),
    "T9-G6-S64-D64-preset": (1, 9, 6, 1, 64, 64, 8, "random"),
}


def make_inputs(case, dtype=torch.float32, seed=0, scale=1):
    B, T, Hq, H, D, S, K, mode = case
    T = T * scale
    gen = torch.Generator().manual_seed(seed)
    C = max(1, math.ceil(T / S)) if mode == "causal" else 3
    q = torch.randn(B, T, Hq, D, generator=gen)
    k = torch.randn(B, C, S, H, D, generator=gen)
    v = torch.randn(B, C, S, H, D, generator=gen)
    if mode == "causal":
        idx = causal_selection(B, T, H, C, S, K, gen)
    else:  # any chunk, duplicates allowed, about one slot in four empty
        idx = torch.randint(0, C, (B, T, H, K), generator=gen)
        idx = idx.masked_fill(torch.rand(B, T, H, K, generator=gen) < 0.25, -1)
        idx[:, 0] = -1  # a first token that sees nothing
    w = torch.rand(B, T, H, K, generator=gen).softmax(-1)
    do = torch.randn(B, T, Hq, D, generator=gen)
    q, k, v, w, do = (x.to(DEVICE, dtype) for x in (q, k, v, w, do))
    return [q, k, v, idx.to(DEVICE), w, do]


def run(fn, q, k, v, idx, w, do):
    q, k, v, w = (x.detach().requires_grad_() for x in (q, k, v, w))
    o = fn(q, k, v, idx, w)
    o.backward(do)
    return o, q.grad, k.grad, v.grad, w.grad


@pytest.mark.parametrize("forward", ["token", "chunk"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_triton_matches_reference_fp32(case, forward, monkeypatch):
    monkeypatch.setattr(parallel, "FORWARD", forward)  # token-major or chunk-major forward
    q, k, v, idx, w, do = make_inputs(case)
    got = run(lambda *a: hsa_attention(*a, backend="triton"), q, k, v, idx, w, do)
    ref = run(hsa_attention_naive, q, k, v, idx, w, do)
    for name, a, b in zip(("o", "dq", "dk", "dv", "dw"), got, ref, strict=True):
        assert not a.isnan().any(), f"{name} has unwritten (NaN) elements"
        assert rel_err(a, b) <= 1e-4, f"{name}: rel err {rel_err(a, b):.2e}"


def test_first_tokens_that_see_nothing_get_zero_output_and_grad():
    q, k, v, idx, w, do = make_inputs(CASES["T63-G1-S8-causal"])
    o, dq, _, _, dw = run(lambda *a: hsa_attention(*a, backend="triton"), q, k, v, idx, w, do)
    blind = (idx < 0).all(-1).all(-1)[0]  # (T,): tokens before the first completed chunk
    assert blind[:8].all() and not blind[8:].any()
    assert (o[0, blind] == 0).all() and (dq[0, blind] == 0).all() and (dw[0, blind] == 0).all()


def test_unchosen_chunks_get_zero_kv_grad():
    q, k, v, idx, w, do = make_inputs(CASES["B2-T40-G4-random-dups"])
    idx = idx.clamp(max=1)  # chunk 2 never chosen
    _, _, dk, dv, _ = run(lambda *a: hsa_attention(*a, backend="triton"), q, k, v, idx, w, do)
    assert (dk[:, 2] == 0).all() and (dv[:, 2] == 0).all()


def test_invert_selection_groups_every_pair_by_chunk():
    idx = torch.tensor([[[[2, -1]], [[0, 2]], [[1, 1]]]])  # (B=1, T=3, H=1, K=2)
    order, offsets = parallel.invert_selection(idx, C=3)
    runs = [sorted(order[offsets[c] : offsets[c + 1]].tolist()) for c in range(4)]
    assert runs == [[2], [4, 5], [0, 3], [1]]  # flat t·K + j per chunk 0, 1, 2, then the empty slots


def test_auto_on_cpu_is_the_reference():
    q, k, v, idx, w, _ = (x.cpu() for x in make_inputs(CASES["T9-G6-S64-D64-preset"]))
    assert torch.equal(hsa_attention(q, k, v, idx, w), hsa_attention_naive(q, k, v, idx, w))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    q, k, v, idx, w, _ = (x.cpu() for x in make_inputs(CASES["T9-G6-S64-D64-preset"]))
    monkeypatch.setattr(parallel, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        hsa_attention(q, k, v, idx, w, backend="triton")


@pytest.mark.skipif(not CUDA, reason="bf16 is checked compiled on the GPU (the interpreter's bf16 is wrong)")
@pytest.mark.parametrize("forward", ["token", "chunk"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_triton_matches_reference_bf16(case, forward, monkeypatch):
    monkeypatch.setattr(parallel, "FORWARD", forward)
    q, k, v, idx, w, do = make_inputs(case, torch.bfloat16, seed=1, scale=8)
    got = run(lambda *a: hsa_attention(*a, backend="triton"), q, k, v, idx, w, do)
    up = (x.float() if x.is_floating_point() else x for x in (q, k, v, idx, w, do))
    ref = run(hsa_attention_naive, *up)
    for name, a, b in zip(("o", "dq", "dk", "dv", "dw"), got, ref, strict=True):
        assert not a.isnan().any(), f"{name} has unwritten (NaN) elements"
        assert rel_err(a, b) <= 1e-2, f"{name}: rel err {rel_err(a, b):.2e}"
