"""Triton chunk selection: landmark scores, the completed-chunks mask and a running top-k, fused.

One program per (block of BT tokens, split of the chunk range, KV head). It scores BC chunks at a time
([BT, BC] in registers, never in HBM) and merges them into a running top-k of K slots: each merge round
moves the tile's best score into the slot of the current worst, and rounds stop once no tile score beats
the current k-th best. Training shapes use one split (a program skips chunks no row of its block may
see); decode (few tokens, a huge memory) splits the chunk range across the SMs, and the host keeps the
top-k of the splits' top-k's.
"""

import os

import torch
import triton
import triton.language as tl

# triton.jit picks the interpreter at decoration time, so this is what the kernels below were built for
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# tests set this: outputs start as NaN so that an element a kernel forgets to write fails the comparison
POISON = False


@triton.jit
def select_fwd_kernel(
    q,  # [B, T, H, DL]
    lmk,  # [B, CO, H, DL] own chunks
    ext,  # [CE, H, DL] external memory (any valid pointer when CE == 0)
    pos,  # [T]
    o_v,  # [B, H, T, NSPLIT, K] fp32 scores of the picks
    o_i,  # [B, H, T, NSPLIT, K] int32 chunk ids (ext first, then CE + own)
    scale,
    gumbel,
    seed,
    T,
    CO,
    CE,
    L,  # chunks per split
    S: tl.constexpr,
    H: tl.constexpr,
    DL: tl.constexpr,
    K: tl.constexpr,
    NSPLIT: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BDL: tl.constexpr,
    BK: tl.constexpr,
    GUMBEL: tl.constexpr,
    PREC: tl.constexpr,
):
    i_tb, i_sp, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_tb * BT + tl.arange(0, BT)
    o_c, o_dl, o_k = tl.arange(0, BC), tl.arange(0, BDL), tl.arange(0, BK)
    m_t = o_t < T
    DT = q.dtype.element_ty

    b_pos = tl.load(pos + o_t, mask=m_t, other=-1)  # [BT]
    # own chunk c is visible iff pos ≥ (c+1)·S: no row of this block sees an own chunk past n_vis
    n_vis = tl.minimum(CO, tl.max(b_pos, 0) // S)
    i_lo = i_sp * L
    i_hi = tl.minimum(i_lo + L, CE + tl.maximum(n_vis, 0))

    b_tv = tl.where(o_k[None, :] < K, float("-inf"), float("inf")) + tl.zeros([BT, BK], dtype=tl.float32)
    b_ti = tl.full([BT, BK], -1, dtype=tl.int32)
    o_q = ((i_b * T + o_t) * H + i_h) * DL  # [BT]
    for i_c0 in range(i_lo, i_hi, BC):
        o_cid = i_c0 + o_c  # [BC]
        m_c = o_cid < i_hi
        m_ext = m_c & (o_cid < CE)
        m_own = m_c & (o_cid >= CE)
        o_ext = (o_cid.to(tl.int64) * H + i_h) * DL  # [BC]
        o_own = ((i_b * CO + (o_cid - CE)) * H + i_h) * DL
        b_s = tl.zeros([BT, BC], dtype=tl.float32)
        for i_d in range(0, DL, BDL):
            m_d = i_d + o_dl < DL
            b_q = tl.load(q + o_q[:, None] + i_d + o_dl[None, :], mask=m_t[:, None] & m_d[None, :], other=0)
            b_q = b_q.to(tl.float32)  # [BT, BDL]
            p_l = o_dl[None, :] + i_d
            b_l = tl.load(ext + o_ext[:, None] + p_l, mask=m_ext[:, None] & m_d[None, :], other=0)
            b_l = b_l.to(tl.float32)  # [BC, BDL]
            b_lo = tl.load(lmk + o_own[:, None] + p_l, mask=m_own[:, None] & m_d[None, :], other=0)
            b_l += b_lo.to(tl.float32)
            b_s += tl.dot(b_q.to(DT), tl.trans(b_l.to(DT)), input_precision=PREC)  # [BT, BC]
        b_s = b_s * scale
        m_vis = m_c[None, :] & ((o_cid[None, :] < CE) | (b_pos[:, None] >= (o_cid[None, :] - CE + 1) * S))
        m_vis = m_vis & m_t[:, None]
        if GUMBEL:
            o_rand = ((i_bh * T + o_t[:, None]) * (CE + CO) + o_cid[None, :]).to(tl.uint32)
            b_u = tl.minimum(tl.maximum(tl.rand(seed, o_rand), 1e-9), 1 - 1e-9)
            b_s = b_s - gumbel * tl.log(-tl.log(b_u))
        b_s = tl.where(m_vis, b_s, float("-inf"))
        # rounds needed: how many tile scores beat the current k-th best, at most K, in the worst row
        b_kth = tl.min(b_tv, 1)  # [BT]
        n_rounds = tl.minimum(tl.max(tl.sum((b_s > b_kth[:, None]).to(tl.int32), 1), 0), K)
        for _ in range(n_rounds):
            b_best = tl.max(b_s, 1)  # [BT]
            b_barg = tl.argmax(b_s, 1)  # [BT]
            b_worst = tl.min(b_tv, 1)
            b_warg = tl.argmin(b_tv, 1)
            m_rep = (o_k[None, :] == b_warg[:, None]) & (b_best > b_worst)[:, None]  # [BT, BK]
            b_tv = tl.where(m_rep, b_best[:, None], b_tv)
            b_ti = tl.where(m_rep, (i_c0 + b_barg)[:, None].to(tl.int32), b_ti)
            b_s = tl.where(o_c[None, :] == b_barg[:, None], float("-inf"), b_s)
    o_out = ((i_bh * T + o_t[:, None]) * NSPLIT + i_sp) * K + o_k[None, :]  # [BT, BK]
    m_out = m_t[:, None] & (o_k[None, :] < K)
    tl.store(o_v + o_out, b_tv, mask=m_out)
    tl.store(o_i + o_out, b_ti, mask=m_out)


def _splits(n_programs: int, n_chunks: int, BC: int) -> int:
    """Chunk-range splits so that about four programs per SM run, each over at least 8 tiles."""
    if not torch.cuda.is_available():
        sms = 4
    else:
        sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    want = triton.cdiv(4 * sms, max(n_programs, 1))
    return max(1, min(want, triton.cdiv(n_chunks, 8 * BC)))


def select_fwd(
    q: torch.Tensor,
    landmarks: torch.Tensor,
    positions: torch.Tensor,
    chunk_size: int,
    top_k: int,
    ext_landmarks: torch.Tensor | None = None,
    gumbel: float = 0.0,
    seed: int = 0,
    n_split: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused scan; returns indices [B,T,H,K] int64 (-1 empty) and scores, best first."""
    B, T, H, DL = q.shape
    CO = landmarks.shape[1]
    ext = ext_landmarks if ext_landmarks is not None and ext_landmarks.shape[0] else None
    CE = ext.shape[0] if ext is not None else 0
    K = top_k
    BT = 16 if T <= 16 else 64
    BC = 64
    BDL = min(64, max(16, triton.next_power_of_2(DL)))
    n_tb = triton.cdiv(T, BT)
    NSPLIT = n_split or _splits(n_tb * B * H, CE + CO, BC)
    L = triton.cdiv(max(CE + CO, 1), NSPLIT)
    shape = (B, H, T, NSPLIT, K)
    if POISON:
        vals = torch.full(shape, float("nan"), device=q.device)
        idx = torch.full(shape, -7, device=q.device, dtype=torch.int32)
    else:
        vals = torch.empty(shape, device=q.device)
        idx = torch.empty(shape, device=q.device, dtype=torch.int32)
    if B and T and H:
        select_fwd_kernel[(n_tb, NSPLIT, B * H)](
            q,
            landmarks,
            ext if ext is not None else landmarks,
            positions,
            vals,
            idx,
            DL**-0.5,
            float(gumbel),
            seed,
            T,
            CO,
            CE,
            L,
            S=chunk_size,
            H=H,
            DL=DL,
            K=K,
            NSPLIT=NSPLIT,
            BT=BT,
            BC=BC,
            BDL=BDL,
            BK=max(2, triton.next_power_of_2(K)),
            GUMBEL=gumbel > 0,
            PREC="ieee" if q.dtype == torch.float32 else "tf32",
            num_warps=4,
        )
    vals = vals.view(B, H, T, NSPLIT * K)
    idx = idx.view(B, H, T, NSPLIT * K)
    vals, order = vals.topk(K, dim=-1)  # the top-k of the splits' top-k's, best first
    idx = idx.gather(-1, order).long()
    idx = torch.where(torch.isfinite(vals), idx, -1)
    return idx.permute(0, 2, 1, 3), vals.permute(0, 2, 1, 3)
