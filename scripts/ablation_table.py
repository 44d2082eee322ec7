"""Issue #8's table from the runs of scripts/gpu/ablation.sh: accuracy (evidence recall) per task and
length for each run, the held-out LM loss at 4K, steps and seconds trained; written to OUTDIR as
ablation.md, ablation.json and ablation.png.

python scripts/ablation_table.py RUNS_DIR OUTDIR
"""

import json
import sys
from itertools import pairwise
from pathlib import Path

from hsa_core.evaluate import format_length

RUNS = ("baseline", "meanpool", "bypass", "dense", "stickbreaking")
TASKS = ("passkey", "niah_single", "niah_multikey", "vt")


def collect(runs: Path) -> list[dict]:
    rows = []
    for name in RUNS:
        folder = runs / f"ab-{name}"
        log = folder / "log.jsonl"
        if not log.is_file():
            continue
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"step"')]
        last = lines[-1]
        # a resumed run's log starts its clock again: add up the seconds of each part
        seconds = sum(a["elapsed_s"] for a, b in pairwise(lines) if b["elapsed_s"] < a["elapsed_s"])
        cells = {}
        for part in ("eval-short", "eval-16m"):
            path = folder / part / "results.json"
            if path.is_file():
                for r in json.loads(path.read_text())["results"]:
                    cells[f"{r['task']}@{r['length']}"] = r
        rows.append(
            {
                "run": name,
                "steps": last["step"],
                "seconds": round(seconds + last["elapsed_s"]),
                "val_lm_loss": last.get("val_lm_loss"),
                "cells": cells,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lengths = sorted({c["length"] for r in rows for c in r["cells"].values()})
    head = [f"{t} {format_length(n)}" for t in TASKS for n in lengths]
    out = ["| run | steps | s | LM loss 4K | " + " | ".join(head) + " |", "|---" * (len(head) + 4) + "|"]
    for r in rows:
        cells = []
        for t in TASKS:
            for n in lengths:
                c = r["cells"].get(f"{t}@{n}")
                cells.append(f"{c['accuracy']:.0%} ({c['evidence_recall']:.0%})" if c else "–")
        loss = f"{r['val_lm_loss']:.2f}" if r["val_lm_loss"] is not None else "–"
        out.append(f"| {r['run']} | {r['steps']} | {r['seconds']} | {loss} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(14, 3.6), sharey=True)
    for ax, task in zip(axes, TASKS, strict=True):
        for i, r in enumerate(rows):
            shift = 1.5 * (i - (len(rows) - 1) / 2)  # equal scores of different runs stay visible
            pts = sorted(
                (c["length"], 100 * c["accuracy"] + shift) for c in r["cells"].values() if c["task"] == task
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=r["run"])
        ax.set_xscale("log", base=2)
        ax.set_title(task)
        ax.set_xlabel("context length (tokens)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%; runs offset by 1.5 points each)")
    axes[0].set_ylim(-8, 108)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    runs, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(runs)
    (out / "ablation.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "ablation.md").write_text(markdown(rows) + "\n")
    plot(rows, out / "ablation.png")
    print(markdown(rows))
