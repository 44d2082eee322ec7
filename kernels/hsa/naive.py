"""Plain PyTorch HSA attention: the ground truth every faster backend is tested against."""

import torch


def hsa_attention_naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Σ_j w_j · softmax(q·K_jᵀ/√D) · V_j, one softmax per selected chunk; computed in fp32.

    q [B,T,Hq,D]; k, v [B,C,S,Hkv,D]; indices, weights [B,T,Hkv,K] (index -1 = empty slot).
    """
    B, T, Hq, D = q.shape
    Hkv = k.shape[3]
    G = Hq // Hkv
    scale = D**-0.5
    qg = q.float().view(B, T, Hkv, G, D)
    valid = indices >= 0
    idx = indices.clamp(min=0)
    w = torch.where(valid, weights.float(), torch.zeros((), device=q.device))
    i_b = torch.arange(B, device=q.device).view(B, 1, 1)
    i_h = torch.arange(Hkv, device=q.device).view(1, 1, Hkv)
    out = torch.zeros(B, T, Hkv, G, D, device=q.device, dtype=torch.float32)
    for j in range(indices.shape[-1]):
        # advanced indices around the S slice put their broadcast dims first: (B, T, Hkv, S, D)
        k_j = k[i_b, idx[..., j], :, i_h].float()
        v_j = v[i_b, idx[..., j], :, i_h].float()
        s = torch.einsum("bthgd,bthsd->bthgs", qg, k_j) * scale  # (B, T, Hkv, G, S)
        o = torch.einsum("bthgs,bthsd->bthgd", s.softmax(-1), v_j)  # (B, T, Hkv, G, D)
        out = out + w[..., j, None, None] * o
    return out.view(B, T, Hq, D).to(q.dtype)
