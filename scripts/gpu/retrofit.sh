#!/usr/bin/env bash
# Issue #9: fine-tune the SmolLM2 retrofit twice side by side, the base frozen (GPU 0) and the whole
# model trained (GPU 1), on the device machine, after the four staging calls of docs/retrofit.md have
# left the GGUF's parts in /tmp/stage. Carry .data/corpus-smollm2.tar.xz and .whl-retrofit:
#
#   STEPS=600 TRAIN_S=720 bash scripts/gpu/retrofit.sh     # returns at once; the runs go on
#   bash scripts/gpu/poll.sh smollm2-frozen smollm2-full
#
# EXTRA adds `hsa train` arguments to both runs (a CPU check: EXTRA="--set train.batch_tokens=2048 ...").
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export HSA_CACHE=${HSA_CACHE:-/tmp/hsa-cache} PYTHONPATH=/tmp/site:.
gguf=$HSA_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ]; then
  mkdir -p "$HSA_CACHE"
  cat /tmp/stage/gguf.part0{0,1,2,3} > "$gguf"  # fetch_gguf checks its sha256 when the runs load it
fi
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl-retrofit/*.whl
if [ ! -d .data/corpus-smollm2 ]; then
  mkdir -p .data/corpus-smollm2 && tar xJf .data/corpus-smollm2.tar.xz -C .data/corpus-smollm2
fi
gpu=0
for base in frozen full; do
  # shellcheck disable=SC2086  # EXTRA is a list of arguments
  CUDA_VISIBLE_DEVICES=$gpu setsid nohup python3 -m app.commands.train --config configs/smollm2-hsa.toml \
    --out "runs/smollm2-$base" --no-resume --time-limit "${TRAIN_S:-720}" \
    --set "train.max_steps=${STEPS:-600}" --set "train.train_base=$([ $base = full ] && echo true || echo false)" \
    --set train.num_workers=6 ${EXTRA:-} > "/tmp/train_smollm2-$base.log" 2>&1 &
  echo "started smollm2-$base on GPU $gpu"
  gpu=$((gpu + 1))
done
