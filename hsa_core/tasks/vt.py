"""RULER variable tracking: `VAR A = 12345`, then chains `VAR B = VAR A`; name all holders of a value."""

import random
import string

from hsa_core.tasks.base import Sample, TaskEnv, pick

QUESTIONS = (
    "Find all variables that are assigned the value {value} in the text above.",
    "Which variables hold the value {value}?",
    "List every variable whose value is {value}.",
)


def vt(
    env: TaskEnv,
    rng: random.Random,
    length: int,
    hops: int = 4,
    chains: int = 1,
    haystack: str = "noise",
    template: int | None = None,
) -> Sample:
    """The first chain is asked; further chains (other values) are distractors. Statements keep their
    chain's order; chains interleave at random."""
    names: set[str] = set()
    while len(names) < chains * (hops + 1):
        names.add("".join(rng.choices(string.ascii_uppercase, k=5)))
    pool = sorted(names)
    rng.shuffle(pool)
    values = rng.sample(range(10_000, 100_000), chains)
    statements = []
    for c in range(chains):
        vars_ = pool[c * (hops + 1) : (c + 1) * (hops + 1)]
        chain = [f"VAR {vars_[0]} = {values[c]}."]
        chain += [f"VAR {vars_[i]} = VAR {vars_[i - 1]}." for i in range(1, hops + 1)]
        statements.append((vars_, chain))
    slots = [c for c in range(chains) for _ in range(hops + 1)]
    rng.shuffle(slots)  # interleave chains, each in its own order
    cursor, texts, evidence = [0] * chains, [], []
    for c in slots:
        texts.append(statements[c][1][cursor[c]])
        if c == 0:
            evidence.append(len(texts) - 1)
        cursor[c] += 1
    asked = statements[0][0]
    return env.single_document(
        "vt",
        haystack,
        length,
        texts,
        evidence,
        pick(rng, QUESTIONS, template).format(value=values[0]),
        " ".join(asked),
        list(asked),
        rng,
        parts=[[e] for e in evidence],  # the statement that assigns each name, in the chain's order
        distractors=[name for vars_, _ in statements[1:] for name in vars_],
    )
