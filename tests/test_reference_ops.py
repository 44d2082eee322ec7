"""The PyTorch reference ops against the definitions written out element by element."""

import math

import pytest
import torch

from kernels import hsa_attention, sliding_window_attention


def test_hsa_reference_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    B, T, Hq, Hkv, D, C, S, K = 2, 7, 4, 2, 8, 5, 3, 3
    q, k, v = torch.randn(B, T, Hq, D, generator=g), torch.randn(B, C, S, Hkv, D, generator=g), None
    v = torch.randn(B, C, S, Hkv, D, generator=g)
    indices = torch.randint(-1, C, (B, T, Hkv, K), generator=g)
    weights = torch.rand(B, T, Hkv, K, generator=g)
    out = hsa_attention(q, k, v, indices, weights, backend="torch")
    G = Hq // Hkv
    for b in range(B):
        for t in range(T):
            for h in range(Hq):
                expected = torch.zeros(D)
                for j in range(K):
                    c = int(indices[b, t, h // G, j])
                    if c < 0:
                        continue
                    p = (k[b, c, :, h // G] @ q[b, t, h] / math.sqrt(D)).softmax(0)
                    expected += weights[b, t, h // G, j] * (p @ v[b, c, :, h // G])
                torch.testing.assert_close(out[b, t, h], expected, rtol=1e-5, atol=1e-6)


def test_hsa_op_refuses_bad_arguments():
    q, k = torch.zeros(1, 4, 3, 8), torch.zeros(1, 2, 4, 2, 8)
    idx, w = torch.zeros(1, 4, 2, 1, dtype=torch.long), torch.zeros(1, 4, 2, 1)
    with pytest.raises(ValueError, match="multiple of Hkv"):
        hsa_attention(q, k, k, idx, w)
    with pytest.raises(ValueError, match="backend"):
        hsa_attention(torch.zeros(1, 4, 4, 8), k, k, idx, w, backend="cuda")
    with pytest.raises(ValueError, match="int32 or int64"):
        hsa_attention(torch.zeros(1, 4, 4, 8), k, k, idx.float(), w)


@pytest.mark.parametrize("past", [0, 5])
def test_sliding_window_reference_matches_a_dense_mask(past):
    g = torch.Generator().manual_seed(1)
    B, Tq, Hq, Hkv, D, W = 2, 70, 4, 2, 8, 9
    Tk = past + Tq
    q = torch.randn(B, Tq, Hq, D, generator=g)
    k, v = torch.randn(B, Tk, Hkv, D, generator=g), torch.randn(B, Tk, Hkv, D, generator=g)
    k_doc = (torch.arange(Tk) >= 31).long().expand(B, Tk).clone()
    k_doc[1] = 0
    q_doc = k_doc[:, past:]
    out = sliding_window_attention(q, k, v, W, q_doc, k_doc)
    qpos, kpos = torch.arange(past, Tk)[:, None], torch.arange(Tk)[None, :]
    for b in range(B):
        allowed = (kpos <= qpos) & (qpos - kpos < W) & (q_doc[b][:, None] == k_doc[b][None, :])
        for h in range(Hq):
            s = (q[b, :, h] @ k[b, :, h // 2].T / math.sqrt(D)).masked_fill(~allowed, float("-inf"))
            torch.testing.assert_close(out[b, :, h], s.softmax(-1) @ v[b, :, h // 2], rtol=1e-5, atol=1e-5)
