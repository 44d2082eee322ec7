"""Held-out language-model loss of a trained model on the LM rows a training config builds at its final
length: the validation rows `hsa train` evaluates (split "val", step 0), so a run whose own config
builds other rows — the ablation's dense run, at 512 tokens, one document a row — is measured on the
same 4K-token rows as the others (docs/ablation.md).

PYTHONPATH=. python scripts/heldout_lm.py MODEL --config configs/hsa-small.toml [--rows 16] [--device cuda]
"""

import argparse
import json

import torch

from hsa_core import load_model
from hsa_core.train import TrainConfig, _autocast, loss_and_stats, make_batch_maker


@torch.no_grad()
def heldout_lm_loss(model_dir: str, config: str, rows: int, device: torch.device) -> dict:
    cfg = TrainConfig.from_toml(config, [])
    model = load_model(model_dir, device=device).eval()
    maker = make_batch_maker(cfg, model.cfg.window)
    stage = cfg.curriculum[-1]
    batch = maker.batch(0, rows, stage.seq_len, split="val", kind="lm", gap=stage.gap).to(device)
    with _autocast(device):
        logits = model(batch.inputs, batch.doc_ids)
    _, stats = loss_and_stats(logits, batch, cfg.data.answer_weight)
    return {
        "model": model_dir,
        "config": config,
        "rows": rows,
        "seq_len": stage.seq_len,
        "lm_loss": stats["lm_loss"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--config", default="configs/hsa-small.toml")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    print(json.dumps(heldout_lm_loss(args.model, args.config, args.rows, torch.device(args.device))))


if __name__ == "__main__":
    main()
