"""Passkey retrieval (Landmark Attention): a number hidden in filler, asked for at the end."""

import random

from hsa_core.tasks.base import Sample, TaskEnv, pick

NEEDLES = (
    "The pass key is {n}. Remember it. {n} is the pass key.",
    "Here is the pass key: {n}. Keep it in mind, the pass key is {n}.",
    "Important: the pass key is {n}. Do not forget {n}.",
)
QUESTIONS = (
    "What is the pass key?",
    "What is the pass key mentioned in the text?",
    "Which number is the pass key?",
    "Tell me the pass key.",
)


def passkey(
    env: TaskEnv,
    rng: random.Random,
    length: int,
    haystack: str = "noise",
    digits: int = 5,
    template: int | None = None,
    depth: float | None = None,
) -> Sample:
    """template 0 is the standard wording; depth (0..1) places the key, else a random depth."""
    n = str(rng.randrange(10 ** (digits - 1), 10**digits))
    return env.single_document(
        "passkey",
        haystack,
        length,
        [pick(rng, NEEDLES, template).format(n=n)],
        [0],
        pick(rng, QUESTIONS, template),
        n,
        [n],
        rng,
        None if depth is None else [depth],
    )
