"""Can the retrieval loss make the key decide the pick? A CPU toy: multi-key rows only (four needles of
the same shape, noise haystack, 512 tokens), trained with and without `data.retrieval_weight`, then
on 32 held-out rows the retrieval loss at the first answer position alone (log 4 ≈ 1.39: the four
needles weighted alike, the key unused) and whole-answer exact match (docs/training-notes.md, run 7).

PYTHONPATH=. python scripts/retrieval_toy.py WEIGHT STEPS [PRESET] [MODEL_OVERRIDES_JSON]
    # e.g. 1.0 300 test '{"encoder": "meanpool"}'
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from hsa_core.checkpoint import load_model
from hsa_core.data import DataConfig
from hsa_core.model import RetrievalProbe
from hsa_core.train import Stage, TrainConfig, make_batch_maker, retrieval_loss, retrieval_positions, train


def main() -> None:
    weight, steps = float(sys.argv[1]), int(sys.argv[2])
    preset = sys.argv[3] if len(sys.argv) > 3 else "test"
    overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    data = DataConfig(
        mix={"niah_multikey": 1.0},
        options={"niah_multikey": {"haystack": "noise", "value_kind": "number"}},
        max_answer_tokens=16,
        retrieval_weight=weight,
    )
    cfg = TrainConfig(
        preset=preset,
        model=overrides,
        max_steps=steps,
        batch_tokens=4096,
        lr=2e-3,
        min_lr=2e-4,
        warmup_steps=10,
        log_interval=25,
        ckpt_interval=10**6,
        eval_rows=4,
        device="cpu",
        curriculum=[Stage(1.0, 512)],
        data=data,
    )
    out = Path(tempfile.mkdtemp(prefix="retrieval-toy-"))
    torch.manual_seed(0)
    t0 = time.time()
    train(cfg, out, log=lambda _: None)
    model = load_model(out / "model").eval()
    batch = make_batch_maker(cfg, model.cfg.window).batch(0, 32, 512, split="val", mix={"niah_multikey": 1.0})
    probe = RetrievalProbe(retrieval_positions(batch.answer, "first"))
    with torch.no_grad():
        logits = model(batch.inputs, batch.doc_ids, probe=probe)
    values, _ = retrieval_loss(probe, batch.evidence, model.cfg.chunk_size)
    exact = ((logits.argmax(-1) == batch.targets) | ~batch.answer).all(1).float().mean().item()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    curve = [
        (r["step"], round(r["answer_loss"], 2), round(r.get("retrieval_loss", float("nan")), 2)) for r in log
    ]
    print(
        f"weight {weight}, {steps} steps, {overrides or preset}, {time.time() - t0:.0f} s: held-out "
        f"retrieval loss at the first answer position {values.mean():.3f}, exact match {exact:.2f}; "
        f"(step, answer loss, retrieval loss) {curve}"
    )


if __name__ == "__main__":
    main()
