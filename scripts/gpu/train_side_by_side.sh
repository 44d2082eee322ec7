#!/usr/bin/env bash
# Several training runs at once on one GPU machine (run 4 of docs/training-notes.md trained three
# configs side by side on one H200 in ~12 minutes). Run from the repository root on the device, with the
# corpus archive carried as .data/corpus.tar.xz; each config trains into runs/<name>/ in the background,
# so the device call can return and later calls poll:
#
#   TRAIN_S=950 bash scripts/gpu/train_side_by_side.sh configs/a.toml configs/b.toml configs/c.toml
#   bash scripts/gpu/poll.sh a b c            # in the next calls (the machine is released after 30 s idle)
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONPATH=.
if [ ! -d .data/corpus ]; then mkdir -p .data/corpus && tar xJf .data/corpus.tar.xz -C .data/corpus; fi
for config in "$@"; do
  name=$(basename "$config" .toml)
  setsid nohup python -m app.commands.train --config "$config" --out "runs/$name" --no-resume \
    --time-limit "${TRAIN_S:-950}" > "/tmp/train_$name.log" 2>&1 &
  echo "started $name"
done
