"""Triton chunk selection vs torch.topk on the same scores: the same chunk sets, up to ties.

On a CPU-only machine the kernel runs under TRITON_INTERPRET=1 (set only around this module's import
and its tests); with a GPU it runs compiled, and the bf16 case runs too.
"""

import pytest
import torch

from kernels.select import chunk_scores_naive, select_chunks
from kernels.testing import import_interpreted, triton_interpreter

CUDA = torch.cuda.is_available()
if CUDA:
    from kernels.select import parallel
else:
    parallel = import_interpreted("kernels.select.parallel")
DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(autouse=True)
def _triton_setup():
    parallel.POISON = True
    if CUDA:
        yield
    else:
        with triton_interpreter():
            yield
    parallel.POISON = False


# id: (B, T, H, Dl, Co, Ce, S, K, n_split)
CASES = {
    "T63-S8-K4-own": (1, 63, 1, 24, 8, 0, 8, 4, None),
    "B2-T111-H2-ext-own": (2, 111, 2, 40, 13, 70, 8, 3, None),
    "T5-decode-split4": (1, 5, 1, 32, 3, 300, 8, 8, 4),
    "T40-K-exceeds-visible": (1, 40, 1, 16, 5, 0, 8, 16, None),
}


def make(case, dtype=torch.float32, seed=0):
    B, T, H, Dl, Co, Ce, S, K, n_split = case
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, Dl, generator=gen).to(DEVICE, dtype)
    own = torch.randn(B, Co, H, Dl, generator=gen).to(DEVICE, dtype)
    ext = torch.randn(Ce, H, Dl, generator=gen).to(DEVICE, dtype) if Ce else None
    pos = (torch.arange(T) + 3).to(DEVICE)  # a sequence that does not start at position 0
    return q, own, ext, pos, S, K, n_split


def assert_same_sets(idx, scores, K, tol):
    """idx equals torch.topk(scores) as a set per row, where no two candidates tie within tol."""
    ref = scores.topk(min(K, scores.shape[-1]), -1).values
    ref = torch.nn.functional.pad(ref, (0, K - ref.shape[-1]), value=float("-inf"))
    valid = idx >= 0
    assert torch.equal(valid, torch.isfinite(ref)), "empty slots differ from the invisible ones"
    picked = torch.where(valid, scores.gather(-1, idx.clamp(min=0)), float("-inf"))
    assert torch.isfinite(picked[valid]).all(), "picked an invisible chunk"
    rows = idx.sort(-1).values
    assert ((rows[..., 1:] != rows[..., :-1]) | (rows[..., 1:] < 0)).all(), "a chunk picked twice"
    got = picked.sort(-1, descending=True).values
    fin = torch.isfinite(ref)
    assert torch.allclose(got[fin], ref[fin], rtol=tol, atol=tol), "picked scores are not the top-k scores"


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_selection_equals_topk_fp32(case):
    q, own, ext, pos, S, K, n_split = make(case)
    scores = chunk_scores_naive(q, own, pos, S, ext)
    idx, vals = parallel.select_fwd(q, own, pos, S, K, ext, n_split=n_split)
    assert_same_sets(idx, scores, K, 1e-5)
    assert torch.allclose(vals[idx >= 0], scores.gather(-1, idx.clamp(min=0))[idx >= 0], atol=1e-5)
    ref_idx, _ = select_chunks(q, own, pos, S, K, ext, backend="torch")
    assert torch.equal(idx.sort(-1).values, ref_idx.sort(-1).values)  # random scores: no ties


def test_public_op_dispatches_and_orders_best_first():
    q, own, ext, pos, S, K, _ = make(CASES["B2-T111-H2-ext-own"])
    idx, vals = select_chunks(q, own, pos, S, K, ext, backend="triton")
    ref_idx, ref_vals = select_chunks(q, own, pos, S, K, ext, backend="torch")
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(vals, ref_vals, atol=1e-5)


def test_gumbel_picks_are_visible_distinct_and_noisy():
    q, own, ext, pos, S, K, _ = make(CASES["B2-T111-H2-ext-own"])
    scores = chunk_scores_naive(q, own, pos, S, ext)
    idx, _ = select_chunks(q, own, pos, S, K, ext, gumbel=1.0, backend="triton")
    clean, _ = select_chunks(q, own, pos, S, K, ext, backend="triton")
    valid = idx >= 0
    assert torch.isfinite(scores.gather(-1, idx.clamp(min=0))[valid]).all()
    assert torch.equal(valid, clean >= 0)
    assert not torch.equal(idx.sort(-1).values, clean.sort(-1).values)


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    q, own, ext, pos, S, K, _ = make(CASES["T63-S8-K4-own"])
    monkeypatch.setattr(parallel, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        select_chunks(q.cpu(), own.cpu(), pos.cpu(), S, K, backend="triton")


@pytest.mark.skipif(not CUDA, reason="bf16 is checked compiled on the GPU (the interpreter's bf16 is wrong)")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_selection_equals_topk_bf16(case):
    q, own, ext, pos, S, K, n_split = make(case, torch.bfloat16, seed=1)
    scores = chunk_scores_naive(q, own, pos, S, ext)  # fp32 scores of the same bf16 inputs
    idx, _ = select_chunks(q, own, pos, S, K, ext)
    assert_same_sets(idx, scores, K, 1e-2)


@pytest.mark.skipif(not CUDA, reason="the fused selection path of Retrieval runs on CUDA tensors only")
@pytest.mark.parametrize("weighting", ["softmax", "stick_breaking"])
def test_retrieval_cuda_path_matches_cpu_path(weighting):
    """hsa_core's Retrieval routes CUDA through select_chunks; same picks, weights and gradients as on CPU."""
    import copy

    from hsa_core.config import HSAConfig
    from hsa_core.retrieval import Retrieval

    cfg = HSAConfig.preset("test", weights=weighting)
    torch.manual_seed(0)
    cpu = Retrieval(cfg).eval()
    gpu = copy.deepcopy(cpu).cuda()
    B, T = 2, 100
    x = torch.randn(B, T, cfg.d_model)
    pos = torch.arange(T) + 5
    own = torch.randn(B, T // cfg.chunk_size, cfg.hsa_kv_heads, cfg.landmark_dim)
    ext = torch.randn(20, cfg.hsa_kv_heads, cfg.landmark_dim)
    outs = []
    for mod, dev in ((cpu, "cpu"), (gpu, "cuda")):
        idx, w = mod(x.to(dev), pos.to(dev), own.to(dev), ext.to(dev))
        (w * (idx + 2)).sum().backward()  # a loss that does not depend on the slot order
        order = idx.sort(-1).indices  # compare slot by slot in chunk order
        outs.append((idx.gather(-1, order).cpu(), w.gather(-1, order).cpu(), mod.wq.weight.grad.cpu()))
    (i_c, w_c, g_c), (i_g, w_g, g_g) = outs
    assert torch.equal(i_c, i_g)
    assert torch.allclose(w_c, w_g, atol=1e-5)
    assert ((g_c - g_g).norm() / g_c.norm()).item() <= 1e-4
