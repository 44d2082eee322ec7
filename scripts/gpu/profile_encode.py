"""Why packed ingest batches encode slower than one long document: time both on the GPU, then profile.

PYTHONPATH=. python scripts/gpu/profile_encode.py  (on the device machine; prints to stdout)
"""

import time

import torch

from hsa_core import load_model


def timed(fn, n: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


@torch.no_grad()
def measure(model, total: int, g: torch.Generator) -> None:
    docs, n = [], 0
    while True:
        length = int(torch.randint(200, 2000, (), generator=g))
        if n + length > total:
            break
        docs.append(torch.randint(10, 8000, (length,), generator=g).cuda())
        n += length
    one = torch.cat(docs)
    packed = timed(lambda: model.encode_documents(docs, pad_id=1))
    single = timed(lambda: model.encode_memory(one, pad_id=1, segment=65536))
    print(
        f"{n} tokens in {len(docs)} documents: packed {packed * 1e3:.1f} ms ({n / packed / 1e6:.2f}M tok/s); "
        f"as one document {single * 1e3:.1f} ms ({n / single / 1e6:.2f}M tok/s)"
    )
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        model.encode_documents(docs, pad_id=1)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    model = load_model("hsa-small", device="cuda", dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    for total in (65536, 262144):
        measure(model, total, g)
