#!/usr/bin/env bash
# Issue #8: evaluate runs of ablation.sh (passkey, niah_single, niah_multikey, vt at 4K, 64K, 1M and 16M;
# held-out LM loss at 4K comes from each run's log); then scripts/ablation_table.py writes the table:
#   bash scripts/gpu/ablation_eval.sh baseline meanpool ...   (sqlite-utils wheels on PYTHONPATH: app.cli)
#   python scripts/ablation_table.py runs OUTDIR
set -euo pipefail
for run in "$@"; do
  [ -f "runs/ab-$run/model/model.safetensors" ] || { echo "ab-$run: no model"; continue; }
  python -m app.cli eval --model "runs/ab-$run/model" --tasks passkey,niah_single,niah_multikey,vt \
    --lengths 4k,64k,1m --samples "${N:-10}" --seed 90000 --device cuda --out "runs/ab-$run/eval-short" \
    2> "runs/ab-$run/eval-short.log" | grep '^|' || true
  python -m app.cli eval --model "runs/ab-$run/model" --tasks passkey,niah_single,niah_multikey,vt \
    --lengths 16m --samples "${N16:-5}" --seed 95000 --device cuda --out "runs/ab-$run/eval-16m" \
    2> "runs/ab-$run/eval-16m.log" | grep '^|' || true
done
