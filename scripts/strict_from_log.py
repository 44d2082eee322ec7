"""Strict accuracy (hsa_core.evaluate.strict_score) of an `hsa eval` log written before the strict score
existed: each sample is built again from its task, length and seed to learn its distractors.

python scripts/strict_from_log.py runs/part-a/eval-1m.log [MODEL]   # MODEL's tokenizer built the samples
"""

import ast
import re
import sys
from collections import defaultdict

from hsa_core import load_model
from hsa_core.evaluate import parse_length, score, strict_score
from hsa_core.tasks import TaskEnv, make_sample

LINE = re.compile(r"^\s+(\S+) (\S+) seed (\d+): .*?\) (.*) vs (\[.*\])$")

if __name__ == "__main__":
    model = load_model(sys.argv[2] if len(sys.argv) > 2 else "hsa-small")
    env = TaskEnv(model.tokenizer, window=model.cfg.window)
    cells = defaultdict(list)
    for line in open(sys.argv[1]):
        if m := LINE.match(line.rstrip("\n")):
            task, length, seed, answer, refs = m.groups()
            answer, refs = ast.literal_eval(answer), ast.literal_eval(refs)
            sample = make_sample(task, parse_length(length), int(seed), env)
            assert sample.answers == refs, f"seed {seed}: the sample built again differs from the log's"
            cells[task, length].append(
                (score(task, answer, refs), strict_score(task, answer, refs, sample.distractors))
            )
    for (task, length), rows in cells.items():
        ruler, strict = (sum(col) / len(rows) for col in zip(*rows, strict=True))
        print(f"{task} {length}: n={len(rows)} accuracy {ruler:.1%} strict {strict:.1%}")
