"""Document QA over the corpus's structured sources: the evidence document among many distractors.

wiki: "What is <title>?" over Wikipedia summaries; dictionary: "What does <word> mean?" over GCIDE
entries; faq: a perlfaq question. The answer is the start of the evidence (the summary's first
sentence, the definition, the FAQ answer's first sentences), cut to at most MAX_ANSWER_WORDS words.

docqa_cloze asks for one word instead: a few words of a sentence of the evidence with a name, a number
or a long word blanked out. The question shares some words with the evidence, not a key copied
verbatim, and the answer is short — the shape of questions about real documents, which the pass-key
and needle tasks do not teach retrieval (docs/retrofit.md).
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


CLOZE_QUESTIONS = (
    'Which word is missing from "{clue}"?',
    'Fill in the blank from the documents: "{clue}"',
    'According to the documents, what goes in the blank: "{clue}"?',
)
CLOZE_WORDS = 12  # a clue keeps at most this many words of its sentence
BLANK = "___"
STOP = frozenset("because through between however without within before should would could".split())


def _blankable(word: str) -> bool:
    """A word worth asking for: a number, a capitalised name, or a word of six letters or more."""
    if len(word) >= 2 and word.isdigit():
        return True
    if not word.isalpha():
        return False
    return len(word) >= 6 and word.lower() not in STOP or len(word) >= 3 and word[0].isupper()


def cloze(text: str, rng: random.Random) -> tuple[str, str] | None:
    """(clue, answer): up to CLOZE_WORDS words of a sentence of text around one blanked word; None when
    no sentence of at least six words has a word worth asking for. The blank is never the first word
    of a sentence or after a colon (capitalised by position, not a name)."""
    sentences = [x.split() for x in re.split(r"(?<=[.!?])\s+", " ".join(text.split()))]
    options = [
        (words, i)
        for words in sentences
        if len(words) >= 6
        for i in range(1, len(words))
        if _blankable(words[i].strip(".,;:!?()\"'")) and not words[i - 1].endswith(":")
    ]
    if not options:
        return None
    words, i = rng.choice(options)
    answer = words[i].strip(".,;:!?()\"'")
    words = [*words[:i], words[i].replace(answer, BLANK, 1), *words[i + 1 :]]
    start = max(0, min(i - rng.randint(2, CLOZE_WORDS - 3), len(words) - CLOZE_WORDS))
    return " ".join(words[start : start + CLOZE_WORDS]), answer


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
    cloze_form: bool = False,
) -> Sample:
    """source: wiki, dictionary or faq (None: one the corpus has, at random); distractors are other
    records of the same source, so the title or word must be matched, not the kind of text.
    cloze_form: ask for one blanked word of the evidence (docqa_cloze) instead of its first sentence."""
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
    for _ in range(100):
        i = rng.randrange(len(rows))
        row = rows[i]
        text, answer = record_text(source, row)
        if not cloze_form:
            question = pick(rng, QUESTIONS[source], template).format(
                title=row.get("title"), word=row.get("word"), question=row.get("question")
            )
            break
        # the clue must come from what the model sees: the record as encoded, cut to MAX_DOC_TOKENS
        found = cloze(env.tokenizer.decode(encoded(i).tolist()), rng)
        if found is not None:
            question = pick(rng, CLOZE_QUESTIONS, template).format(clue=found[0])
            answer = found[1]
            break
    else:
        raise TaskError(f"no {source} record of {corpus.directory} has a sentence to ask about")
    prompt = env.prompt(question)
    pool = DocPool(encoded, len(rows), exclude=i)
    documents, span = env.documents_around(encoded(i), length - len(prompt), pool, rng, depth)
    task = f"docqa_{'cloze_' if cloze_form else ''}{source}"
    return Sample(task, documents, question, prompt, answer, [answer], [span], env.tokenizer.eot_id)
