"""`hsa bench kernels`: HSA attention, chunk selection, decode and sliding-window attention, timed.

Every row carries the FLOPs and the fewest HBM bytes the operation needs (counted here, from the
shapes and the actual selection), the time, and both as a % of the H200 ceilings measured on the
machine (≈790 TFLOP/s bf16 matmul, ≈4.3 TB/s copy). On CPU only small shapes run, reference only.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels.hsa import hsa_attention
from kernels.select import chunk_scores_naive, select_chunks
from kernels.swa import sliding_window_attention

PEAK_TFLOPS = 790.0  # bf16 dense matmul measured on the H200 here
PEAK_TBS = 4.3  # device-to-device copy, bytes read + written

# name: (Hq, Hkv, D, S, K)
HSA_SHAPES = {
    "small": (6, 1, 64, 64, 8),  # PRESETS["small"]: hsa_heads, hsa_kv_heads, head_dim, chunk_size, top_k
    # 1B class, Hq 16: each of Hkv ∈ {1, 2}, D ∈ {64, 128}, k ∈ {8, 32} varied once from kv1-d64-k8
    "1B-kv1-d64-k8": (16, 1, 64, 64, 8),
    "1B-kv1-d128-k8": (16, 1, 128, 64, 8),
    "1B-kv1-d128-k32": (16, 1, 128, 64, 32),
    "1B-kv2-d128-k32": (16, 2, 128, 64, 32),
}
# the remaining combinations, with --all-shapes
MORE_SHAPES = {
    "1B-kv1-d64-k32": (16, 1, 64, 64, 32),
    "1B-kv2-d64-k8": (16, 2, 64, 64, 8),
    "1B-kv2-d64-k32": (16, 2, 64, 64, 32),
    "1B-kv2-d128-k8": (16, 2, 128, 64, 8),
}
LANDMARK_DIM = 384  # small preset: d_model 384 over 1 KV head


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    parser.add_argument(
        "--sections",
        default="hsa,select,decode,swa",
        help="comma-separated subset of hsa,select,decode,swa (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small shapes only, also on a GPU")
    parser.add_argument("--all-shapes", action="store_true", help="all 8 combinations of the 1B-class shape")


def _timer(cuda: bool) -> Callable[[Callable[[], object]], float]:
    """Median milliseconds: CUDA events through triton's do_bench on the GPU, a wall clock on CPU."""
    if cuda:
        import triton.testing

        return lambda fn: triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")

    def cpu(fn):
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * sorted(times)[1]

    return cpu


class Bench:
    """Collects rows; each measurement that runs out of memory becomes a row that says so."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.time = _timer(cuda)
        self.rows: list[dict] = []

    def add(self, section, shape, T, impl, pass_, fn, flops, bytes_, **extra) -> float | None:
        try:
            ms = self.time(fn)
        except torch.OutOfMemoryError:
            ms = None
            torch.cuda.empty_cache()
        row = dict(section=section, shape=shape, T=T, impl=impl, pass_=pass_, ms=ms)
        row.update(flops=flops, bytes=bytes_)
        if ms:
            row["tflops"] = flops / ms / 1e9
            row["tbs"] = bytes_ / ms / 1e9
            row["pct_flops"] = 100 * row["tflops"] / PEAK_TFLOPS
            row["pct_bw"] = 100 * row["tbs"] / PEAK_TBS
        row.update(extra)
        self.rows.append(row)
        print("row", json.dumps(row, default=float), file=sys.stderr, flush=True)  # survives a timeout
        return ms


def _causal_selection(T, Hkv, C, S, K, device):
    """A realistic training selection: top-K completed chunks by random landmark scores."""
    gen = torch.Generator(device=device).manual_seed(0)
    qr = torch.randn(1, T, Hkv, 64, device=device, generator=gen)
    lmk = torch.randn(1, C, Hkv, 64, device=device, generator=gen)
    idx, vals = select_chunks(qr, lmk, torch.arange(T, device=device), S, K)
    w = torch.where(idx >= 0, vals, -1e4).softmax(-1)
    return idx, w


def bench_hsa(b: Bench, Ts, shapes, dtype, device):
    for name, shape in shapes.items():
        for T in Ts:
            _hsa_rows(b, name, shape, T, dtype, device)
            bench_sdpa(b, name, T, shape[0], shape[2], dtype, device)


def _hsa_rows(b: Bench, name, shape, T, dtype, device):
    Hq, Hkv, D, S, K = shape
    G, C = Hq // Hkv, T // S
    gen = torch.Generator(device=device).manual_seed(T)
    q = torch.randn(1, T, Hq, D, device=device, dtype=dtype, generator=gen)
    k = torch.randn(1, C, S, Hkv, D, device=device, dtype=dtype, generator=gen)
    v = torch.randn(1, C, S, Hkv, D, device=device, dtype=dtype, generator=gen)
    do = torch.randn_like(q)
    idx, w = _causal_selection(T, Hkv, C, S, K, device)
    w = w.to(dtype)
    n_sel = int((idx >= 0).sum())  # (token, KV head, slot) triples that read a chunk
    fwd = 4 * n_sel * G * S * D
    io_q, io_kv, io_sel = T * Hq * D * 2, C * S * Hkv * D * 2, T * Hkv * K * (8 + 2)
    by_fwd = 2 * io_q + 2 * io_kv + io_sel + T * Hq * K * 4
    by_bwd = 3 * io_q + 4 * io_kv + io_sel + T * Hkv * K * 2 + 3 * T * Hq * K * 4
    impls = {"triton": "triton"} if b.cuda else {}
    if T <= (16384 if name == "small" else 4096):
        impls["reference"] = "torch"
    for impl, backend in impls.items():
        leaves = [x.detach().requires_grad_() for x in (q, k, v, w)]

        def f(backend=backend):
            return hsa_attention(q, k, v, idx, w, backend=backend)

        def fb(backend=backend, leaves=leaves):
            o = hsa_attention(leaves[0], leaves[1], leaves[2], idx, leaves[3], backend=backend)
            return torch.autograd.grad(o, leaves, do)

        try:
            o = hsa_attention(leaves[0], leaves[1], leaves[2], idx, leaves[3], backend=backend)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            continue

        def bw(o=o, leaves=leaves):
            return torch.autograd.grad(o, leaves, do, retain_graph=True)

        with torch.no_grad():
            b.add("hsa", name, T, impl, "fwd", f, fwd, by_fwd, selected=n_sel)
        b.add("hsa", name, T, impl, "bwd", bw, 2.5 * fwd, by_bwd, selected=n_sel)
        b.add("hsa", name, T, impl, "fwd+bwd", fb, 3.5 * fwd, by_fwd + by_bwd, selected=n_sel)
        del o, bw
    if b.cuda:  # both forward orders, for the record (impl "triton" is the dispatched one)
        from kernels.hsa import parallel

        for order in ("token", "chunk"):
            parallel.FORWARD = order
            with torch.no_grad():
                b.add(
                    "hsa",
                    name,
                    T,
                    f"triton-{order}-major",
                    "fwd",
                    lambda: hsa_attention(q, k, v, idx, w),
                    fwd,
                    by_fwd,
                    selected=n_sel,
                )
        parallel.FORWARD = "auto"


def bench_sdpa(b: Bench, name, T, Hq, D, dtype, device):
    """Full causal attention through SDPA (flash on the GPU), the GQA heads expanded beforehand."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    key = (T, Hq, D)
    done = [r for r in b.rows if r["impl"] == "sdpa-causal" and (r["T"], r.get("hq"), r.get("d")) == key]
    if done:  # the same (T, Hq, D) was timed for another HSA shape: it does not depend on Hkv or k
        b.rows.extend({**r, "shape": name, "copied_from": r["shape"]} for r in done if "copied_from" not in r)
        return

    backend = SDPBackend.FLASH_ATTENTION if b.cuda else SDPBackend.MATH
    q, k, v = (torch.randn(1, Hq, T, D, device=device, dtype=dtype).requires_grad_() for _ in range(3))
    do = torch.randn_like(q)
    fwd = 4 * Hq * D * T * (T + 1) // 2
    io = T * Hq * D * 2

    def f():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def fb():
        return torch.autograd.grad(f(), (q, k, v), do)

    with sdpa_kernel(backend):
        with torch.no_grad():
            b.add("hsa", name, T, "sdpa-causal", "fwd", f, fwd, 4 * io, hq=Hq, d=D)
        o = f()
        b.add(
            "hsa",
            name,
            T,
            "sdpa-causal",
            "bwd",
            lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True),
            2.5 * fwd,
            8 * io,
            hq=Hq,
            d=D,
        )
        b.add("hsa", name, T, "sdpa-causal", "fwd+bwd", fb, 3.5 * fwd, 12 * io, hq=Hq, d=D)


def bench_select(b: Bench, Ts, dtype, device):
    for T in Ts:
        _select_rows(b, T, dtype, device)


def _select_rows(b: Bench, T, dtype, device):
    Hkv, S, K, Dl = 1, 64, 8, LANDMARK_DIM
    C = T // S
    q = torch.randn(1, T, Hkv, Dl, device=device, dtype=dtype)
    lmk = torch.randn(1, C, Hkv, Dl, device=device, dtype=dtype)
    pos = torch.arange(T, device=device)
    seen = sum(min(C, t // S) for t in range(T))  # (token, chunk) pairs that are visible
    flops = 2 * seen * Dl * Hkv
    by = (T + C) * Hkv * Dl * 2 + T * Hkv * K * 12
    if b.cuda:
        b.add("select", "small", T, "triton", "fwd", lambda: select_chunks(q, lmk, pos, S, K), flops, by)

    def ref():
        return chunk_scores_naive(q, lmk, pos, S).topk(K, -1)

    b.add("select", "small", T, "reference", "fwd", ref, flops, by, scores_bytes=T * C * Hkv * 4)


def bench_decode(b: Bench, Ns, dtype, device):
    """One token against a memory of N tokens: landmark scan + top-k, then attention in the k chunks."""
    for N in Ns:
        try:
            _decode_rows(b, N, dtype, device)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
        if N <= 8 * 2**20:
            try:
                _decode_full_rows(b, N, dtype, device)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()


def _decode_rows(b: Bench, N, dtype, device):
    Hq, Hkv, D, S, K = HSA_SHAPES["small"]
    Dl, C = LANDMARK_DIM, N // S
    ext = torch.randn(C, Hkv, Dl, device=device, dtype=dtype)
    kmem = torch.randn(1, C, S, Hkv, D, device=device, dtype=dtype)
    vmem = torch.randn(1, C, S, Hkv, D, device=device, dtype=dtype)
    own = torch.empty(1, 0, Hkv, Dl, device=device, dtype=dtype)
    qr = torch.randn(1, 1, Hkv, Dl, device=device, dtype=dtype)
    q = torch.randn(1, 1, Hq, D, device=device, dtype=dtype)
    pos = torch.zeros(1, dtype=torch.long, device=device)

    def select():
        return select_chunks(qr, own, pos, S, K, ext)

    def step():
        idx, vals = select()
        w = torch.where(idx >= 0, vals, -1e4).softmax(-1).to(dtype)
        return hsa_attention(q, kmem, vmem, idx, w)

    sel_flops, attn_flops = 2 * C * Dl * Hkv, 4 * K * Hq * S * D
    sel_bytes, attn_bytes = C * Hkv * Dl * 2, 2 * K * S * Hkv * D * 2
    with torch.no_grad():
        b.add("decode", "small", N, "hsa", "select", select, sel_flops, sel_bytes)
        b.add("decode", "small", N, "hsa", "token", step, sel_flops + attn_flops, sel_bytes + attn_bytes)


def _decode_full_rows(b: Bench, N, dtype, device):
    """Full attention of one token over the same N keys, for scale (GQA heads expanded for SDPA)."""
    Hq, Hkv, D, _, _ = HSA_SHAPES["small"]
    kf = torch.randn(1, Hq, N, D, device=device, dtype=dtype)
    vf = torch.randn_like(kf)
    qf = torch.randn(1, Hq, 1, D, device=device, dtype=dtype)
    with torch.no_grad():
        b.add(
            "decode",
            "small",
            N,
            "sdpa-full",
            "token",
            lambda: F.scaled_dot_product_attention(qf, kf, vf),
            4 * Hq * N * D,
            2 * N * Hkv * D * 2,
            note="bytes for Hkv=1 K/V; SDPA reads Hq expanded",
        )


def bench_swa(b: Bench, Ts, dtype, device):
    for T in Ts:
        for impl in ["torch"] + (["flex"] if b.cuda else []):
            _swa_rows(b, T, impl, dtype, device)


def _swa_rows(b: Bench, T, impl, dtype, device):
    Hq, Hkv, D, W = 6, 2, 64, 512
    q = torch.randn(1, T, Hq, D, device=device, dtype=dtype)
    k = torch.randn(1, T, Hkv, D, device=device, dtype=dtype)
    v = torch.randn(1, T, Hkv, D, device=device, dtype=dtype)
    do = torch.randn_like(q)
    t = torch.arange(T, device=device)
    doc = (t // 3000)[None]  # documents of 3000 tokens
    keys = int(torch.clamp(t - doc[0] * 3000 + 1, max=W).sum())  # visible keys over all queries
    fwd = 4 * Hq * D * keys
    by = (2 * T * Hq + 2 * T * Hkv) * D * 2
    if impl == "flex":
        import kernels.swa.flex as swa_flex

        torch._dynamo.reset()  # a static compile per T, not a dynamic one
        swa_flex._compiled_flex.cache_clear()
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]

    def f():
        return sliding_window_attention(q, k, v, W, doc, doc, backend=impl)

    def fb():
        o = sliding_window_attention(*leaves, W, doc, doc, backend=impl)
        return torch.autograd.grad(o, leaves, do)

    name = f"h{Hq}-kv{Hkv}-d{D}-w{W}"
    if impl == "flex":  # built once per forward, shared by the SWA layers (cached on the doc tensors)

        def mask():
            d = doc.clone()
            return swa_flex.block_mask(d, d, 1, T, T, W, device)

        b.add("swa", name, T, impl, "block-mask", mask, 0, 0)
    with torch.no_grad():
        b.add("swa", name, T, impl, "fwd", f, fwd, by)
    b.add("swa", name, T, impl, "fwd+bwd", fb, 3.5 * fwd, 3 * by)


def _summary(rows: list[dict]) -> dict:
    """The issue's three targets, read off the rows."""

    def ms(section, shape, T, impl, pass_):
        for r in rows:
            if (r["section"], r["shape"], r["T"], r["impl"], r["pass_"]) == (section, shape, T, impl, pass_):
                return r["ms"]
        return None

    out = {}
    for shape in HSA_SHAPES:
        hsa = ms("hsa", shape, 65536, "triton", "fwd+bwd")
        sdpa = ms("hsa", shape, 65536, "sdpa-causal", "fwd+bwd")
        if hsa and sdpa:
            out[f"fwd+bwd 64K speedup vs SDPA ({shape}), target ≥5"] = round(sdpa / hsa, 2)
    fwd = [
        r
        for r in rows
        if r["section"] == "hsa"
        and r["impl"] == "triton"
        and r["pass_"] == "fwd"
        and r["T"] >= 16384
        and r.get("tflops")
    ]
    if fwd:
        best = max(fwd, key=lambda r: r["tflops"])
        key = "best forward TFLOP/s at T ≥ 16K, target ≥120"
        out[key] = f"{best['tflops']:.1f} ({best['shape']}, T={best['T']})"
        small = [r["tflops"] for r in fwd if r["shape"] == "small"]
        if small:
            out["forward TFLOP/s at T ≥ 16K, small preset"] = [round(x, 1) for x in small]
    d64, d32 = ms("decode", "small", 65536, "hsa", "token"), ms("decode", "small", 32 * 2**20, "hsa", "token")
    if d64 and d32:
        out["decode 32M / decode 64K per token, target ≤3"] = round(d32 / d64, 2)
    return out


def _table(rows: list[dict]) -> str:
    head = "| section | shape | T / N | impl | pass | ms | TFLOP/s | % 790 | TB/s | % 4.3 | GFLOP | MB |"
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        ms = r["ms"]
        cells = [
            r["section"],
            r["shape"],
            _tokens(r["T"]),
            r["impl"],
            r["pass_"],
            f"{ms:.3f}" if ms else "oom",
            f"{r['tflops']:.3g}" if ms else "",
            f"{r['pct_flops']:.2g}" if ms else "",
            f"{r['tbs']:.3g}" if ms else "",
            f"{r['pct_bw']:.2g}" if ms else "",
            f"{r['flops'] / 1e9:.2f}",
            f"{r['bytes'] / 1e6:.1f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _tokens(n: int) -> str:
    if n >= 2**20 and n % 2**20 == 0:
        return f"{n // 2**20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


def run(args: argparse.Namespace) -> int:
    """Run the chosen sections; print a Markdown table (or JSON) and the targets' summary."""
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"hsa", "select", "decode", "swa"}
    if unknown:
        print(f"unknown sections: {sorted(unknown)}", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    big = cuda and not args.quick
    dtype = torch.bfloat16 if cuda else torch.float32
    b = Bench(cuda)
    t0 = time.perf_counter()
    if "hsa" in sections:
        shapes = HSA_SHAPES if big else {"small": HSA_SHAPES["small"]}
        if big and args.all_shapes:
            shapes = {**HSA_SHAPES, **MORE_SHAPES}
        bench_hsa(b, (4096, 16384, 65536) if big else (256,), shapes, dtype, device)
    if "select" in sections:
        bench_select(b, (4096, 16384, 65536) if big else (512,), dtype, device)
    if "decode" in sections:
        bench_decode(b, (2**16, 2**20, 8 * 2**20, 32 * 2**20) if big else (2**14,), dtype, device)
    if "swa" in sections:
        bench_swa(b, (16384, 65536) if big else (1024,), dtype, device)
    meta = dict(
        device=torch.cuda.get_device_name() if cuda else "cpu",
        torch=torch.__version__,
        dtype=str(dtype).removeprefix("torch."),
        batch=1,
        ceilings=dict(tflops=PEAK_TFLOPS, tbs=PEAK_TBS),
        seconds=round(time.perf_counter() - t0, 1),
    )
    if cuda:
        import triton

        meta["triton"] = triton.__version__
    summary = _summary(b.rows)
    if args.json:
        print(json.dumps(dict(meta=meta, rows=b.rows, summary=summary), indent=1, default=float))
    else:
        print(_table(b.rows))
        print(json.dumps(dict(meta=meta, summary=summary), indent=1, ensure_ascii=False))
    return 0 if all(math.isfinite(r["ms"]) for r in b.rows if r["ms"]) else 1
