#!/usr/bin/env bash
# Progress of runs started by train_side_by_side.sh: the last log lines, then (step, answer loss, row
# length, tokens/s) every 60 steps from each run's log.jsonl. Usage: bash scripts/gpu/poll.sh NAME...
for name in "$@"; do
  echo "== $name"; grep -v '^{"step"' "/tmp/train_$name.log" | tail -n 5
done
python - "$@" <<'PY'
import json, sys
for name in sys.argv[1:]:
    try:
        rows = [json.loads(line) for line in open(f"runs/{name}/log.jsonl") if line.startswith('{"step"')]
    except OSError as e:
        print(name, e)
        continue
    print(name, [(r["step"], round(r.get("answer_loss", -1), 2), r["seq_len"], r["tokens_per_s"]) for r in rows[::6]][-12:])
PY
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
