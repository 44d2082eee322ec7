"""Triton HSA attention: forward, backward, and the autograd glue.

Forward, token-major (decode, small inputs): one program per (token, KV head) holds the GQA group's Q
tile and loops over the token's selected chunks, one softmax per chunk, saving each chunk's
log-sum-exp in fp32. Forward, chunk-major (training shapes): one program per (chosen chunk, KV head,
split) loads the chunk once and serves the (token, slot) pairs that chose it, writing per-slot
outputs that a second kernel sums; this reads each chunk's K/V once instead of once per pair.
Backward: dQ and dW per (token, KV head) from the same loop; dK/dV per (chunk, KV head) from the
inverted selection (the (token, slot) pairs that chose the chunk, found by a sort), so the work is
O(T·K·S), never the O(T²/S) mask of a dense query × chunk scan.

Every loaded value is cast to fp32 at once (the interpreter computes bf16 wrongly); dot operands
go back to the storage dtype so bf16 runs on the tensor cores, and fp32 dots use IEEE precision.
"""

import os

import torch
import triton
import triton.language as tl

# triton.jit picks the interpreter at decoration time, so this is what the kernels below were built for
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# tests set this: outputs start as NaN so that an element a kernel forgets to write fails the comparison
POISON = False


def _empty(*shape: int, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Output buffer on like's device; NaN-filled when POISON is set."""
    dtype = dtype or like.dtype
    if POISON:
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype)
    return torch.empty(shape, device=like.device, dtype=dtype)


@triton.jit
def hsa_fwd_kernel(
    q,  # [B, T, HQ, D]
    k,  # [B, C, S, H, D]
    v,  # [B, C, S, H, D]
    idx,  # [B, T, H, K]
    w,  # [B, T, H, K]
    o,  # [B, T, HQ, D]
    lse,  # [B, T, HQ, K] fp32
    scale,
    T,
    C,
    S: tl.constexpr,
    H: tl.constexpr,
    G: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    BG: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    PREC: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    HQ: tl.constexpr = H * G
    o_g, o_s, o_d = tl.arange(0, BG), tl.arange(0, BS), tl.arange(0, BD)
    m_g, m_s, m_d = o_g < G, o_s < S, o_d < D
    m_gd = m_g[:, None] & m_d[None, :]
    m_sd = m_s[:, None] & m_d[None, :]

    o_row = (i_b * T + i_t) * HQ + i_h * G + o_g  # [BG] rows of q / o / lse
    b_q = tl.load(q + o_row[:, None] * D + o_d[None, :], mask=m_gd, other=0).to(tl.float32)  # [BG, BD]
    b_acc = tl.zeros([BG, BD], dtype=tl.float32)
    o_sel = ((i_b * T + i_t) * H + i_h) * K
    for i_j in range(K):
        i_c = tl.load(idx + o_sel + i_j).to(tl.int64)
        if i_c >= 0:
            b_w = tl.load(w + o_sel + i_j).to(tl.float32)
            o_kv = ((i_b * C + i_c) * S + o_s[:, None]) * (H * D) + i_h * D + o_d[None, :]  # [BS, BD]
            b_k = tl.load(k + o_kv, mask=m_sd, other=0).to(tl.float32)
            b_v = tl.load(v + o_kv, mask=m_sd, other=0).to(tl.float32)
            b_s = (
                tl.dot(b_q.to(k.dtype.element_ty), tl.trans(b_k.to(k.dtype.element_ty)), input_precision=PREC)
                * scale
            )  # [BG, BS]
            b_s = tl.where(m_s[None, :], b_s, float("-inf"))
            b_m = tl.max(b_s, 1)  # [BG]
            b_p = tl.exp(b_s - b_m[:, None])
            b_l = tl.sum(b_p, 1)
            b_o = tl.dot(b_p.to(v.dtype.element_ty), b_v.to(v.dtype.element_ty), input_precision=PREC)
            b_acc += (b_w / b_l)[:, None] * b_o
            tl.store(lse + o_row * K + i_j, b_m + tl.log(b_l), mask=m_g)
    tl.store(o + o_row[:, None] * D + o_d[None, :], b_acc.to(o.dtype.element_ty), mask=m_gd)


@triton.jit
def hsa_fwd_chunk_kernel(
    q,  # [B, T, HQ, D]
    k,  # [B, C, S, H, D]
    v,  # [B, C, S, H, D]
    w,  # [B, T, H, K]
    order,  # [B*H*T*K] int32: flat (b, h, t, j) positions sorted by chosen chunk
    offsets,  # [B*H*(C+1) + 1] int64
    o_part,  # [B, T, K, HQ, D] fp32: w_j · softmax(q K_jᵀ) V_j per (token, slot)
    lse,  # [B, T, HQ, K] fp32
    scale,
    T,
    C,
    S: tl.constexpr,
    H: tl.constexpr,
    G: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    NSPLIT: tl.constexpr,
    BR: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    PREC: tl.constexpr,
):
    """Chunk-major forward: a chunk's K/V are loaded once for all the (token, slot) pairs that chose it.

    Each pair's output is complete inside the chunk (its own softmax), so the pairs of one chunk split
    freely across NSPLIT programs (no reduction between them) and a popular chunk is no long tail.
    """
    i_c, i_bh, i_sp = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    HQ: tl.constexpr = H * G
    E: tl.constexpr = BR // G
    o_r, o_s, o_d = tl.arange(0, BR), tl.arange(0, BS), tl.arange(0, BD)
    o_e, o_g = o_r // G, o_r % G
    m_s, m_d = o_s < S, o_d < D
    m_sd = m_s[:, None] & m_d[None, :]
    DT = k.dtype.element_ty

    i_start = tl.load(offsets + i_bh * (C + 1) + i_c)
    i_end = tl.load(offsets + i_bh * (C + 1) + i_c + 1)
    n_per = tl.cdiv(tl.cdiv(i_end - i_start, NSPLIT), E) * E  # whole steps per split
    i_lo = i_start + i_sp * n_per
    i_hi = tl.minimum(i_lo + n_per, i_end)
    if i_lo < i_hi:
        o_kv = ((i_b * C + i_c) * S + o_s[:, None]) * (H * D) + i_h * D + o_d[None, :]  # [BS, BD]
        b_k = tl.load(k + o_kv, mask=m_sd, other=0).to(tl.float32)
        b_v = tl.load(v + o_kv, mask=m_sd, other=0).to(tl.float32)
        for i_n in range(i_lo, i_hi, E):
            m_r = (o_e < E) & (i_n + o_e < i_hi)  # [BR]
            b_n = tl.load(order + i_n + o_e, mask=m_r, other=0).to(tl.int64)  # [BR]
            b_t, b_j = (b_n // K) % T, b_n % K
            o_row = (i_b * T + b_t) * HQ + i_h * G + o_g  # [BR]
            m_rd = m_r[:, None] & m_d[None, :]
            b_q = tl.load(q + o_row[:, None] * D + o_d[None, :], mask=m_rd, other=0)
            b_q = b_q.to(tl.float32)  # [BR, BD]
            b_w = tl.load(w + ((i_b * T + b_t) * H + i_h) * K + b_j, mask=m_r, other=0).to(tl.float32)
            b_s = tl.dot(b_q.to(DT), tl.trans(b_k.to(DT)), input_precision=PREC) * scale  # [BR, BS]
            b_s = tl.where(m_s[None, :], b_s, float("-inf"))
            b_m = tl.max(b_s, 1)  # [BR]
            b_p = tl.exp(b_s - b_m[:, None])
            b_l = tl.sum(b_p, 1)
            b_o = tl.dot(b_p.to(DT), b_v.to(DT), input_precision=PREC) * (b_w / b_l)[:, None]  # [BR, BD]
            o_part_row = ((i_b * T + b_t) * K + b_j) * HQ + i_h * G + o_g  # [BR]
            tl.store(o_part + o_part_row[:, None] * D + o_d[None, :], b_o, mask=m_rd)
            tl.store(lse + o_row * K + b_j, b_m + tl.log(b_l), mask=m_r)


@triton.jit
def hsa_fwd_reduce_kernel(
    idx,  # [B, T, H, K]
    o_part,  # [B, T, K, HQ, D] fp32
    o,  # [B, T, HQ, D]
    T,
    H: tl.constexpr,
    G: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    BG: tl.constexpr,
    BD: tl.constexpr,
):
    """o = Σ over the filled slots of the per-slot outputs (empty slots were never written)."""
    i_t, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    HQ: tl.constexpr = H * G
    o_g, o_d = tl.arange(0, BG), tl.arange(0, BD)
    m_gd = (o_g < G)[:, None] & (o_d < D)[None, :]
    b_acc = tl.zeros([BG, BD], dtype=tl.float32)
    o_sel = ((i_b * T + i_t) * H + i_h) * K
    for i_j in range(K):
        if tl.load(idx + o_sel + i_j) >= 0:
            o_part_row = ((i_b * T + i_t) * K + i_j) * HQ + i_h * G + o_g  # [BG]
            b_acc += tl.load(o_part + o_part_row[:, None] * D + o_d[None, :], mask=m_gd, other=0)
    o_row = (i_b * T + i_t) * HQ + i_h * G + o_g
    tl.store(o + o_row[:, None] * D + o_d[None, :], b_acc.to(o.dtype.element_ty), mask=m_gd)


@triton.jit
def hsa_bwd_dq_kernel(
    q,  # [B, T, HQ, D]
    k,  # [B, C, S, H, D]
    v,  # [B, C, S, H, D]
    idx,  # [B, T, H, K]
    w,  # [B, T, H, K]
    lse,  # [B, T, HQ, K] fp32
    do,  # [B, T, HQ, D]
    dq,  # [B, T, HQ, D]
    dw,  # [B, T, H, K] fp32
    dlt,  # [B, T, HQ, K] fp32: Σ_d dO·O_j, chunk j's share of the softmax backward
    scale,
    T,
    C,
    S: tl.constexpr,
    H: tl.constexpr,
    G: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    BG: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    PREC: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    HQ: tl.constexpr = H * G
    o_g, o_s, o_d = tl.arange(0, BG), tl.arange(0, BS), tl.arange(0, BD)
    m_g, m_s, m_d = o_g < G, o_s < S, o_d < D
    m_gd = m_g[:, None] & m_d[None, :]
    m_sd = m_s[:, None] & m_d[None, :]
    DT = k.dtype.element_ty

    o_row = (i_b * T + i_t) * HQ + i_h * G + o_g  # [BG]
    b_q = tl.load(q + o_row[:, None] * D + o_d[None, :], mask=m_gd, other=0).to(tl.float32)  # [BG, BD]
    b_do = tl.load(do + o_row[:, None] * D + o_d[None, :], mask=m_gd, other=0).to(tl.float32)
    b_dq = tl.zeros([BG, BD], dtype=tl.float32)
    o_sel = ((i_b * T + i_t) * H + i_h) * K
    for i_j in range(K):
        i_c = tl.load(idx + o_sel + i_j).to(tl.int64)
        if i_c >= 0:
            b_w = tl.load(w + o_sel + i_j).to(tl.float32)
            o_kv = ((i_b * C + i_c) * S + o_s[:, None]) * (H * D) + i_h * D + o_d[None, :]  # [BS, BD]
            b_k = tl.load(k + o_kv, mask=m_sd, other=0).to(tl.float32)
            b_v = tl.load(v + o_kv, mask=m_sd, other=0).to(tl.float32)
            b_lse = tl.load(lse + o_row * K + i_j, mask=m_g, other=0)  # [BG]
            b_s = tl.dot(b_q.to(DT), tl.trans(b_k.to(DT)), input_precision=PREC) * scale  # [BG, BS]
            b_p = tl.where(m_s[None, :], tl.exp(b_s - b_lse[:, None]), 0)
            b_o = tl.dot(b_p.to(DT), b_v.to(DT), input_precision=PREC)  # [BG, BD]
            b_dj = tl.sum(b_do * b_o, 1)  # [BG]
            tl.store(dlt + o_row * K + i_j, b_dj, mask=m_g)
            tl.store(dw + o_sel + i_j, tl.sum(tl.where(m_g, b_dj, 0), 0))
            b_dp = tl.dot(b_do.to(DT), tl.trans(b_v.to(DT)), input_precision=PREC)  # [BG, BS]
            b_ds = b_w * b_p * (b_dp - b_dj[:, None])
            b_dq += tl.dot(b_ds.to(DT), b_k.to(DT), input_precision=PREC)
        else:
            tl.store(dw + o_sel + i_j, 0.0)
    tl.store(dq + o_row[:, None] * D + o_d[None, :], (b_dq * scale).to(dq.dtype.element_ty), mask=m_gd)


@triton.jit
def hsa_bwd_dkv_kernel(
    q,  # [B, T, HQ, D]
    k,  # [B, C, S, H, D]
    v,  # [B, C, S, H, D]
    w,  # [B, T, H, K]
    lse,  # [B, T, HQ, K] fp32
    dlt,  # [B, T, HQ, K] fp32
    do,  # [B, T, HQ, D]
    order,  # [B*H*T*K] int32: flat (b, h, t, j) positions sorted by chosen chunk
    offsets,  # [B*H*(C+1) + 1] int64: where each (b, h, chunk) run starts in order
    dk,  # [B, C, S, H, D]
    dv,  # [B, C, S, H, D]
    scale,
    T,
    C,
    S: tl.constexpr,
    H: tl.constexpr,
    G: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    BR: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    PREC: tl.constexpr,
):
    i_c, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    HQ: tl.constexpr = H * G
    E: tl.constexpr = BR // G  # (token, slot) entries per step; each brings its G query rows
    o_r, o_s, o_d = tl.arange(0, BR), tl.arange(0, BS), tl.arange(0, BD)
    o_e, o_g = o_r // G, o_r % G
    m_s, m_d = o_s < S, o_d < D
    m_sd = m_s[:, None] & m_d[None, :]
    DT = k.dtype.element_ty

    o_kv = ((i_b * C + i_c) * S + o_s[:, None]) * (H * D) + i_h * D + o_d[None, :]  # [BS, BD]
    b_k = tl.load(k + o_kv, mask=m_sd, other=0).to(tl.float32)
    b_v = tl.load(v + o_kv, mask=m_sd, other=0).to(tl.float32)
    b_dk = tl.zeros([BS, BD], dtype=tl.float32)
    b_dv = tl.zeros([BS, BD], dtype=tl.float32)
    i_start = tl.load(offsets + i_bh * (C + 1) + i_c)
    i_end = tl.load(offsets + i_bh * (C + 1) + i_c + 1)
    for i_n in range(i_start, i_end, E):
        m_r = (o_e < E) & (i_n + o_e < i_end)  # [BR]
        b_n = tl.load(order + i_n + o_e, mask=m_r, other=0).to(tl.int64)  # [BR]
        b_t, b_j = (b_n // K) % T, b_n % K
        o_row = (i_b * T + b_t) * HQ + i_h * G + o_g  # [BR]
        m_rd = m_r[:, None] & m_d[None, :]
        b_q = tl.load(q + o_row[:, None] * D + o_d[None, :], mask=m_rd, other=0).to(tl.float32)  # [BR, BD]
        b_do = tl.load(do + o_row[:, None] * D + o_d[None, :], mask=m_rd, other=0).to(tl.float32)
        b_lse = tl.load(lse + o_row * K + b_j, mask=m_r, other=0)  # [BR]
        b_dj = tl.load(dlt + o_row * K + b_j, mask=m_r, other=0)
        b_w = tl.load(w + ((i_b * T + b_t) * H + i_h) * K + b_j, mask=m_r, other=0).to(tl.float32)
        b_s = tl.dot(b_q.to(DT), tl.trans(b_k.to(DT)), input_precision=PREC) * scale  # [BR, BS]
        b_p = tl.where(m_r[:, None] & m_s[None, :], tl.exp(b_s - b_lse[:, None]), 0)
        b_pw = b_p * b_w[:, None]
        b_dv += tl.dot(tl.trans(b_pw.to(DT)), b_do.to(DT), input_precision=PREC)  # [BS, BD]
        b_dp = tl.dot(b_do.to(DT), tl.trans(b_v.to(DT)), input_precision=PREC)  # [BR, BS]
        b_ds = b_pw * (b_dp - b_dj[:, None])
        b_dk += tl.dot(tl.trans(b_ds.to(DT)), b_q.to(DT), input_precision=PREC)
    tl.store(dk + o_kv, (b_dk * scale).to(dk.dtype.element_ty), mask=m_sd)
    tl.store(dv + o_kv, b_dv.to(dv.dtype.element_ty), mask=m_sd)


def _blocks(G: int, S: int, D: int) -> tuple[int, int, int]:
    """Tile sizes: tl.dot wants every side ≥ 16 and a power of two."""
    return tuple(max(16, triton.next_power_of_2(n)) for n in (G, S, D))


def _prec(dtype: torch.dtype) -> str:
    """fp32 inputs get IEEE dots (tf32 would cost ~3e-4 of accuracy); bf16/fp16 ignore this."""
    return "ieee" if dtype == torch.float32 else "tf32"


# forward order: "token" (a program per token gathers its chunks), "chunk" (a program per chosen chunk
# serves every pair that chose it), or "auto". Measured on the H200 (docs/benchmarks.md): token-major
# wins for GQA groups of 16 and below ~512K (token, KV head, slot) pairs, where the sort and the fp32
# per-slot outputs cost more than the K/V gathers they save; chunk-major wins from there for G ≤ 8.
FORWARD = "auto"
CHUNK_MAJOR_MIN_PAIRS = 2**19
CHUNK_MAJOR_MAX_GROUP = 8


def hsa_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scale: float,
    inverted: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Launch the forward; returns o [B,T,Hq,D], the per-chunk log-sum-exp [B,T,Hq,K] in fp32, and the
    inverted selection when it was built (the backward reuses it)."""
    B, T, Hq, D = q.shape
    C, S, H = k.shape[1], k.shape[2], k.shape[3]
    K = indices.shape[-1]
    G = Hq // H
    BG, BS, BD = _blocks(G, S, D)
    o = _empty(*q.shape, like=q)
    lse = _empty(B, T, Hq, K, like=q, dtype=torch.float32)
    if T == 0 or B == 0:
        return o, lse, inverted
    warps = 4 if BD <= 64 else 8
    chunk_major = FORWARD == "chunk" or (
        FORWARD == "auto" and G <= CHUNK_MAJOR_MAX_GROUP and B * T * H * K >= CHUNK_MAJOR_MIN_PAIRS
    )
    if not chunk_major or C == 0:
        hsa_fwd_kernel[(T, B * H)](
            q,
            k,
            v,
            indices,
            weights,
            o,
            lse,
            scale,
            T,
            C,
            S=S,
            H=H,
            G=G,
            K=K,
            D=D,
            BG=BG,
            BS=BS,
            BD=BD,
            PREC=_prec(q.dtype),
            num_warps=warps,
        )
        return o, lse, inverted
    order, offsets = inverted if inverted is not None else invert_selection(indices, C)
    o_part = _empty(B, T, K, Hq, D, like=q, dtype=torch.float32)
    BR = max(64, triton.next_power_of_2(G))
    hsa_fwd_chunk_kernel[(C, B * H, 4)](
        q,
        k,
        v,
        weights,
        order,
        offsets,
        o_part,
        lse,
        scale,
        T,
        C,
        S=S,
        H=H,
        G=G,
        K=K,
        D=D,
        NSPLIT=4,
        BR=BR,
        BS=BS,
        BD=BD,
        PREC=_prec(q.dtype),
        num_warps=warps,
    )
    hsa_fwd_reduce_kernel[(T, B * H)](indices, o_part, o, T, H=H, G=G, K=K, D=D, BG=BG, BD=BD)
    return o, lse, (order, offsets)


def invert_selection(indices: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every (batch, KV head, chunk), the (token, slot) pairs that chose it.

    indices [B,T,H,K] → order [B*H*T*K] int32 (flat (b,h,t,j) positions grouped by chunk, empty slots
    last) and offsets [B*H*(C+1)+1] (run of (b,h,c) is order[offsets[i]:offsets[i+1]], i=(b·H+h)·(C+1)+c).
    """
    B, T, H, K = indices.shape
    sel = indices.permute(0, 2, 1, 3).reshape(B * H, T * K).long()  # (B·H, T·K)
    key = torch.where(sel >= 0, sel, C) + torch.arange(B * H, device=sel.device)[:, None] * (C + 1)
    key = key.flatten()
    order = torch.argsort(key).to(torch.int32)
    counts = torch.bincount(key, minlength=B * H * (C + 1))
    offsets = torch.zeros(B * H * (C + 1) + 1, device=sel.device, dtype=torch.int64)
    offsets[1:] = counts.cumsum(0)
    return order, offsets


def hsa_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    lse: torch.Tensor,
    do: torch.Tensor,
    scale: float,
    inverted: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward; returns dq, dk, dv, dw."""
    B, T, Hq, D = q.shape
    C, S, H = k.shape[1], k.shape[2], k.shape[3]
    K = indices.shape[-1]
    G = Hq // H
    BG, BS, BD = _blocks(G, S, D)
    prec = _prec(q.dtype)
    dq = _empty(*q.shape, like=q)
    dk = _empty(*k.shape, like=k)
    dv = _empty(*v.shape, like=v)
    dw = _empty(B, T, H, K, like=q, dtype=torch.float32)
    dlt = _empty(B, T, Hq, K, like=q, dtype=torch.float32)
    if T and B:
        hsa_bwd_dq_kernel[(T, B * H)](
            q,
            k,
            v,
            indices,
            weights,
            lse,
            do,
            dq,
            dw,
            dlt,
            scale,
            T,
            C,
            S=S,
            H=H,
            G=G,
            K=K,
            D=D,
            BG=BG,
            BS=BS,
            BD=BD,
            PREC=prec,
            num_warps=4 if BD <= 64 else 8,
        )
    if C and B:
        order, offsets = inverted if inverted is not None else invert_selection(indices, C)
        BR = max(64, triton.next_power_of_2(G))
        hsa_bwd_dkv_kernel[(C, B * H)](
            q,
            k,
            v,
            weights,
            lse,
            dlt,
            do,
            order,
            offsets,
            dk,
            dv,
            scale,
            T,
            C,
            S=S,
            H=H,
            G=G,
            K=K,
            D=D,
            BR=BR,
            BS=BS,
            BD=BD,
            PREC=prec,
            num_warps=4 if BD <= 64 else 8,
        )
    return dq, dk, dv, dw.to(weights.dtype)


class HSAAttentionFunction(torch.autograd.Function):
    """Saves q, k, v, the selection and the per-chunk LSE; the backward recomputes the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, indices, weights):
        scale = q.shape[-1] ** -0.5
        o, lse, inverted = hsa_fwd(q, k, v, indices, weights, scale)
        ctx.save_for_backward(q, k, v, indices, weights, lse, *(inverted or ()))
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, indices, weights, lse, *inverted = ctx.saved_tensors
        dq, dk, dv, dw = hsa_bwd(
            q, k, v, indices, weights, lse, do.contiguous(), ctx.scale, tuple(inverted) or None
        )
        return dq, dk, dv, None, dw


def hsa_attention_triton(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Triton HSA attention (arguments already checked by kernels.hsa_attention)."""
    return HSAAttentionFunction.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), indices.contiguous(), weights.contiguous()
    )
