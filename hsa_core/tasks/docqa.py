"""Document QA over the corpus's structured sources: the evidence document among many distractors.

wiki: "What is <title>?" over Wikipedia summaries; dictionary: "What does <word> mean?" over GCIDE
entries; faq: a perlfaq question. The answer is the start of the evidence (the summary's first
sentence, the definition, the FAQ answer's first sentences), cut to at most MAX_ANSWER_WORDS words.
"""

import random
import re

import numpy as np

from hsa_core.tasks.base import DocPool, Sample, TaskEnv, TaskError, pick

SOURCES = ("wiki", "dictionary", "faq")
MAX_ANSWER_WORDS = 30
MAX_DOC_TOKENS = 1500  # a long FAQ answer is cut so it cannot fill a whole training context

QUESTIONS = {
    "wiki": (
        "What is {title}?",
        "Tell me about {title}.",
        "What does the text say about {title}?",
        "Describe {title} in one sentence.",
    ),
    "dictionary": (
        "What does {word} mean?",
        "Define the word {word}.",
        "What is the meaning of {word}?",
        "What is the definition of {word}?",
    ),
    "faq": ("{question}", "According to the FAQ: {question}", "The FAQ asks: {question}"),
}


def first_sentences(text: str, max_words: int = MAX_ANSWER_WORDS) -> str:
    """The first sentence of text (more while under max_words), cut at a word to max_words."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()))
    out = sentences[0]
    for s in sentences[1:]:
        if len((out + " " + s).split()) > max_words:
            break
        out += " " + s
    words = out.split()
    return " ".join(words[:max_words]) if len(words) > max_words else out


def record_text(source: str, row: dict) -> tuple[str, str]:
    """(document text, answer) of one structured record."""
    if source == "wiki":
        return f"{row['title']}\n\n{row['summary']}", first_sentences(row["summary"])
    if source == "dictionary":
        head = f"{row['word']} ({row['pos']})" if row.get("pos") else row["word"]
        return f"{head}: {row['definition']}", first_sentences(row["definition"])
    first, _, rest = row["answer"].partition("\n\n")
    first = " ".join(first.split())  # the answer is this paragraph's start, so its lines are joined
    return f"{row['question']}\n\n{first}\n\n{rest}".strip(), first_sentences(first)


class _Encoded:
    """Token ids of a source's records, each encoded on first use and kept for the env's lifetime."""

    def __init__(self, env: TaskEnv, source: str, rows: list[dict]):
        self.env, self.source, self.rows, self.docs = env, source, rows, {}

    def __call__(self, i: int) -> np.ndarray:
        if i not in self.docs:
            text = record_text(self.source, self.rows[i])[0]
            self.docs[i] = np.array(self.env.tokenizer.encode(text)[:MAX_DOC_TOKENS], dtype=np.int32)
        return self.docs[i]


def docqa(
    env: TaskEnv,
    rng: random.Random,
    length: int,
    source: str | None = None,
    template: int | None = None,
    depth: float | None = None,
) -> Sample:
    """source: wiki, dictionary or faq (None: one the corpus has, at random); distractors are other
    records of the same source, so the title or word must be matched, not the kind of text."""
    corpus = env.corpus
    if corpus is None:
        raise TaskError("docqa needs a corpus (TaskEnv(corpus=...))")
    available = [s for s in SOURCES if getattr(corpus, s)]
    if source is None:
        if not available:
            raise TaskError(f"the corpus at {corpus.directory} has no QA records")
        source = rng.choice(available)
    elif source not in available:
        raise TaskError(f"the corpus at {corpus.directory} has no {source!r} records")
    rows = getattr(corpus, source)
    cache = env.__dict__.setdefault("_docqa", {})
    if source not in cache:
        cache[source] = _Encoded(env, source, rows)
    encoded = cache[source]
    i = rng.randrange(len(rows))
    row = rows[i]
    _, answer = record_text(source, row)
    question = pick(rng, QUESTIONS[source], template).format(
        title=row.get("title"), word=row.get("word"), question=row.get("question")
    )
    prompt = env.prompt(question)
    pool = DocPool(encoded, len(rows), exclude=i)
    documents, span = env.documents_around(encoded(i), length - len(prompt), pool, rng, depth)
    return Sample(
        f"docqa_{source}", documents, question, prompt, answer, [answer], [span], env.tokenizer.eot_id
    )
