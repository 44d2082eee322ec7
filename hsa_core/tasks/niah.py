"""RULER needle-in-a-haystack: single, multikey, multivalue and multiquery; number, word or UUID values."""

import random
import uuid

from hsa_core.tasks.base import Sample, TaskEnv, TaskError, pick
from hsa_core.tasks.words import ADJECTIVES, NOUNS

VARIANTS = ("single", "multikey", "multivalue", "multiquery")
VALUE_KINDS = {"number": ("numbers", "number"), "word": ("words", "word"), "uuid": ("UUIDs", "UUID")}

NEEDLES = (  # template 0 is RULER's own
    "One of the special magic {kinds} for {key} is: {value}.",
    "The special magic {kind} for {key} is {value}.",
    "Remember this: a special magic {kind} for {key} is {value}.",
)
QUESTIONS = (
    "What are all the special magic {kinds} for {key} mentioned in the provided text?",
    "Which special magic {kinds} for {key} appear in the text?",
    "List the special magic {kinds} for {key}.",
)


def _word(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def _value(kind: str, rng: random.Random) -> str:
    if kind == "number":
        return str(rng.randrange(1_000_000, 10_000_000))
    if kind == "word":
        return _word(rng)
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _distinct(make, count: int, taken: set[str] | None = None) -> list[str]:
    taken, out = set(taken or ()), []
    while len(out) < count:
        v = make()
        if v not in taken:
            taken.add(v)
            out.append(v)
    return out


def niah(
    env: TaskEnv,
    rng: random.Random,
    length: int,
    variant: str = "single",
    value_kind: str = "number",
    haystack: str = "noise",
    n: int = 4,
    template: int | None = None,
) -> Sample:
    """n: keys of multikey (one asked, n-1 distractors), values of multivalue, keys of multiquery."""
    if variant not in VARIANTS or value_kind not in VALUE_KINDS:
        raise TaskError(f"niah variant must be in {VARIANTS} and value_kind in {tuple(VALUE_KINDS)}")
    kinds, kind = VALUE_KINDS[value_kind]
    n_keys = n if variant in ("multikey", "multiquery") else 1
    keys = _distinct(lambda: _word(rng), n_keys)
    n_values = n if variant == "multivalue" else n_keys
    values = _distinct(lambda: _value(value_kind, rng), n_values, set(keys))
    pairs = (
        [(keys[0], v) for v in values] if variant == "multivalue" else list(zip(keys, values, strict=True))
    )
    needle = pick(rng, NEEDLES, template)
    texts = [needle.format(kinds=kinds, kind=kind, key=k, value=v) for k, v in pairs]
    asked = keys if variant == "multiquery" else keys[:1]
    evidence = [i for i, (k, _) in enumerate(pairs) if k in asked]
    order = list(range(len(pairs)))
    rng.shuffle(order)  # needles in random order; evidence indices follow them
    # the answer lists several keys' values in the question's order, several values of one key in the
    # order they appear: an order a reader can follow (a shuffled one makes the target unlearnable)
    answers = [v for k, v in ([pairs[i] for i in order] if variant == "multivalue" else pairs) if k in asked]
    # each reference's needle (its place in the document): multi-value lists its values in document order
    multivalue = variant == "multivalue"
    parts = [[j] for j in range(len(pairs))] if multivalue else [[order.index(i)] for i in evidence]
    key_text = asked[0] if len(asked) == 1 else ", ".join(asked[:-1]) + " and " + asked[-1]
    question = pick(rng, QUESTIONS, template).format(kinds=kinds, key=key_text)
    return env.single_document(
        f"niah_{variant}",
        haystack,
        length,
        [texts[i] for i in order],
        sorted(order.index(i) for i in evidence),
        question,
        ", ".join(answers),
        answers,
        rng,
        parts=parts,
        distractors=[v for k, v in pairs if k not in asked],
    )
