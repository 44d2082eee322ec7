#!/usr/bin/env bash
# Issue #8: five runs of the shipped recipe (configs/hsa-small.toml) side by side on one H200, each
# changing one thing; same data, seed, steps and tokens. Then scripts/gpu/ablation_eval.sh. Run from the
# repository root on the device with the corpus archive carried as .data/corpus.tar.xz:
#
#   STEPS=1300 TRAIN_S=660 bash scripts/gpu/ablation.sh      # returns at once; the runs go on
#   GPUS=2 ...                                                # spread the runs over two GPUs
#   ONLY="dense meanpool" ...                                  # just these runs
#   SEED=1 ...                                                 # another seed: runs/ab-NAME-s1
#   bash scripts/gpu/poll.sh ab-baseline ab-meanpool ab-bypass ab-dense ab-stickbreaking
#
# The device machine goes back 30 s after a call returns: poll within 30 s, or the runs die with it.
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONPATH=.
if [ ! -d .data/corpus ]; then mkdir -p .data/corpus && tar xJf .data/corpus.tar.xz -C .data/corpus; fi
fresh=--no-resume; [ -z "${RESUME:-}" ] || fresh=   # RESUME=1 continues stopped runs
common=(--config configs/hsa-small.toml $fresh --time-limit "${TRAIN_S:-660}"
  --set "train.max_steps=${STEPS:-1300}" --set "train.seed=${SEED:-0}" --set train.num_workers=3 --set train.eval_rows=16
  --set train.eval_interval=0 --set train.ckpt_interval=100000)
n=0
launch() {
  name=$1; shift
  [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]] || return 0
  gpu=$((n % ${GPUS:-1})); n=$((n + 1))
  name=$name${SEED:+-s$SEED}   # another seed's runs: runs/ab-NAME-sN
  CUDA_VISIBLE_DEVICES=$gpu setsid nohup python -m app.commands.train "${common[@]}" --out "runs/ab-$name" "$@" \
    > "/tmp/train_ab-$name.log" 2>&1 &
  echo "started $name on GPU $gpu"
}
launch baseline                                   # cls_encoder, standard residual, forced sparsity
launch meanpool --set model.encoder=meanpool      # claim 1: landmarks by mean pooling
# claim 2: the bypassing residual (the paper's "full"); a direct path fades out over the 512-token stage
# so it starts reading (run 4: a plain bypass read nothing in 98M tokens); the result is a pure bypass
launch bypass --set model.residual=bypass --set train.bypass_anneal=0.3
# claim 3: no forced sparsity — the same stages and mixes at 512 tokens (8 chunks = top-k: every chunk
# read), LM rows of one document each, no Gumbel noise
launch dense --set model.gumbel=0 --set data.lm_one_document=true --set 'curriculum=[
  {until = 0.30, seq_len = 512, gap = 64, mix = {passkey = 0.6, niah_single = 0.3, lm = 0.1}},
  {until = 0.45, seq_len = 512, gap = 64, mix = {passkey = 0.4, niah_single = 0.2, lm = 0.2, niah_multikey = 0.1, vt = 0.1}},
  {until = 1.0, seq_len = 512, gap = 64}]'
launch stickbreaking --set model.weights=stick_breaking   # our choice: the reference's default weights
