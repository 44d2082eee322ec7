"""Long-context retrieval and QA tasks, shared by training and evaluation.

    env = TaskEnv(tokenizer, corpus=Corpus(".data/corpus"), window=512)
    s = make_sample("niah_multikey", length=4096, seed=7, env=env, value_kind="uuid")
    s.context_ids(), s.doc_ids()   # the haystack documents, EOT after each; their document index
    s.prompt                       # [QUESTION, ...question..., ANSWER]
    s.answer, s.answers            # training target; references that a correct answer contains
    s.evidence                     # [start, end) spans in context_ids(), all ≥ env.window before the prompt
    s.length                       # len(context_ids()) + len(prompt) == the requested length

The same (task, length, seed, options) always gives the same sample. Options per task:
passkey(haystack, digits, template, depth), niah_*(value_kind, haystack, n, template),
vt(hops, chains, haystack, template), babi_qa1..5(haystack), docqa / docqa_{wiki,dictionary,faq} /
docqa_cloze (template, depth; docqa_cloze also source). haystack is "noise", "varied" or "corpus";
template picks a phrasing (0 is the benchmark's own wording), None a random one.
"""

import random
from collections.abc import Callable
from functools import partial

from hsa_core.tasks.babi import babi
from hsa_core.tasks.base import DocPool, Sample, TaskEnv, TaskError
from hsa_core.tasks.docqa import docqa
from hsa_core.tasks.niah import niah
from hsa_core.tasks.passkey import passkey
from hsa_core.tasks.vt import vt

TASKS: dict[str, Callable[..., Sample]] = {
    "passkey": passkey,
    "niah_single": partial(niah, variant="single"),
    "niah_multikey": partial(niah, variant="multikey"),
    "niah_multivalue": partial(niah, variant="multivalue"),
    "niah_multiquery": partial(niah, variant="multiquery"),
    "vt": vt,
    **{f"babi_qa{i}": partial(babi, qa=i) for i in range(1, 6)},
    "docqa": docqa,
    **{f"docqa_{s}": partial(docqa, source=s) for s in ("wiki", "dictionary", "faq")},
    "docqa_cloze": partial(docqa, cloze_form=True),
}

NEEDS_CORPUS = {"docqa", "docqa_wiki", "docqa_dictionary", "docqa_faq", "docqa_cloze"}


def make_sample(task: str, length: int, seed: int, env: TaskEnv, **options) -> Sample:
    """One sample of `task` whose context plus prompt is exactly `length` tokens; deterministic in
    (task, length, seed, options)."""
    if task not in TASKS:
        raise TaskError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    rng = random.Random(f"{task}/{length}/{seed}/{sorted(options.items())}")
    return TASKS[task](env, rng, length, **options)


__all__ = ["DocPool", "NEEDS_CORPUS", "Sample", "TASKS", "TaskEnv", "TaskError", "make_sample"]
