#!/usr/bin/env bash
# Several `hsa eval` cells of one model at once on one GPU (a 1M cell leaves most of an H200 idle), each
# in OUT/LENGTH-SEED/ with its per-sample log, then OUT.tgz of them all, for a device call's $OUT:
#   bash scripts/gpu/eval_cells.sh MODEL OUT LENGTHS:TASKS:SAMPLES:SEED:MAX_TOKENS ...
#   bash scripts/gpu/eval_cells.sh models/hsa-small /tmp/cells 32m:niah_single:20:96000:24 \
#       1m:niah_multivalue,vt,niah_multikey:80:100000:48
# One cell per length and seed. The cells share the GPU, so their seconds per sample are not speeds.
# DEVICE=cpu for a dry run.
set -euo pipefail
model=$1 out=$2; shift 2
mkdir -p "$out"
for cell in "$@"; do
  IFS=: read -r lengths tasks samples seed max_tokens <<< "$cell"
  python3 -m app.cli eval --model "$model" --device "${DEVICE:-cuda}" --lengths "$lengths" --tasks "$tasks" \
    --samples "$samples" --seed "$seed" --max-tokens "$max_tokens" --out "$out/$lengths-$seed" \
    > "$out/$lengths-$seed.txt" 2> "$out/$lengths-$seed.log" &
done
wait
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"
for f in "$out"/*.txt; do echo "== $(basename "$f" .txt)"; grep '^| [a-z]' "$f" | grep -v '^| task' || true; done
