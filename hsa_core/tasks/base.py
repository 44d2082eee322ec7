"""What every task shares: the Sample it returns, the environment it draws on, and haystack building.

Everything is built in token space, so a sample's length is exact: the context documents (each
followed by EOT, the document separator) plus the question prompt add up to the requested length.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from hsa_core.corpus import Corpus
from hsa_core.tasks.words import ADJECTIVES, NOUNS, PLACES, VERBS
from hsa_core.tokenizer import EOT, Tokenizer

NOISE = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


class TaskError(ValueError):
    """A sample cannot be built as asked (length too short for the window, no corpus for docqa...)."""


@dataclass
class Sample:
    """One task instance: context documents, a question, its references and where the evidence lies.

    The model sees `context_ids()` (documents each followed by EOT) then `prompt`; the answer follows
    the prompt's ANSWER token and ends with END. `evidence` holds [start, end) token spans in
    `context_ids()`; every span ends at least `window` tokens before the prompt.
    """

    task: str
    documents: list[np.ndarray]  # int32 token ids of each context document, without separators
    question: str
    prompt: list[int]  # tokenizer.prompt(question): [QUESTION, ..., ANSWER]
    answer: str  # the text the model is trained to produce
    answers: list[str]  # references: a correct answer contains every one (case-insensitive)
    evidence: list[tuple[int, int]]
    eot: int = EOT  # the document separator of the tokenizer that made the sample
    # the evidence of each reference, in `answers` order (None: all of it backs the whole answer), so a
    # retrieval loss can ask each reference's first token for its own needle (hsa_core/data.py)
    parts: list[list[tuple[int, int]]] | None = None
    # values in the context that answer something not asked (another key's value): the strict score
    # counts an answer that names one as wrong, as a reader would (hsa_core/evaluate.py)
    distractors: list[str] = field(default_factory=list)

    def context_ids(self) -> np.ndarray:
        parts = [p for d in self.documents for p in (d, np.array([self.eot], dtype=np.int32))]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def doc_ids(self) -> np.ndarray:
        """Document index of every context token (its EOT included)."""
        return np.repeat(np.arange(len(self.documents)), [d.size + 1 for d in self.documents])

    @property
    def context_length(self) -> int:
        return sum(d.size + 1 for d in self.documents)

    @property
    def length(self) -> int:
        """Tokens the model reads before answering: context plus prompt."""
        return self.context_length + len(self.prompt)

    def texts(self, tokenizer: Tokenizer) -> list[str]:
        """The context documents as text (for ingesting them as files)."""
        return [tokenizer.decode(d.tolist()) for d in self.documents]

    def target_ids(self, tokenizer: Tokenizer) -> list[int]:
        """Answer tokens followed by END: what training puts after the prompt."""
        return [*tokenizer.encode(self.answer), tokenizer.end_id]


class TaskEnv:
    """What generators draw on: the tokenizer, an optional corpus, and the window evidence must clear.

    window: minimum distance in tokens from the end of any evidence span to the prompt (the SWA
    window of the model being trained or evaluated), so only HSA can reach the evidence.
    """

    def __init__(self, tokenizer: Tokenizer, corpus: Corpus | None = None, window: int = 512):
        self.tokenizer = tokenizer
        self.corpus = corpus
        self.window = window
        self.encode = lru_cache(maxsize=200_000)(self._encode)
        vocab = tokenizer.hf.get_vocab_size()
        pieces = [tokenizer.hf.decode([i], skip_special_tokens=False) for i in range(vocab)]
        # tokens after which a needle may be inserted without cutting a word or sentence
        self.is_break = np.array([p.endswith((".", "\n", "!", "?")) for p in pieces], dtype=bool)
        self.noise = np.array(self.encode(NOISE), dtype=np.int32)
        self._varied: tuple[np.ndarray, np.ndarray] | None = None

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text))

    def ids(self, text: str) -> np.ndarray:
        return np.array(self.encode(text), dtype=np.int32)

    def prompt(self, question: str) -> list[int]:
        return self.tokenizer.prompt(question)

    # -- filler -----------------------------------------------------------------------------------

    def filler(self, kind: str, n: int, rng: random.Random) -> np.ndarray:
        """n tokens of haystack text: "noise" (the repeated grass/sky paragraph of the passkey test),
        "varied" (random grammar-made sentences) or "corpus" (real documents from the corpus shards)."""
        if n <= 0:
            return np.zeros(0, dtype=np.int32)
        if kind == "noise":
            start = rng.randrange(self.noise.size)
            reps = (start + n) // self.noise.size + 1
            return np.tile(self.noise, reps)[start : start + n]
        if kind == "varied":
            return self._varied_filler(n, rng)
        if kind == "corpus":
            return self._corpus_filler(n, rng)
        raise TaskError(f"unknown haystack {kind!r}; known: noise, varied, corpus")

    def _varied_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """2,000 grammar-made sentences, encoded once: (flat token ids, offsets)."""
        if self._varied is None:
            r = random.Random(1234)
            sentences = [
                f" The {r.choice(ADJECTIVES)} {r.choice(NOUNS)} {r.choice(VERBS)} the {r.choice(ADJECTIVES)} "
                f"{r.choice(NOUNS)} {r.choice(PLACES)}."
                for _ in range(2000)
            ]
            encoded = [np.array(e.ids, dtype=np.int32) for e in self.tokenizer.hf.encode_batch(sentences)]
            offsets = np.cumsum([0, *(e.size for e in encoded)])
            self._varied = (np.concatenate(encoded), offsets)
        return self._varied

    def _varied_filler(self, n: int, rng: random.Random) -> np.ndarray:
        flat, offsets = self._varied_pool()
        mean = flat.size / (offsets.size - 1)
        out, total = [], 0
        while total < n:
            picks = np.random.default_rng(rng.getrandbits(63)).integers(
                0, offsets.size - 1, int(n / mean) + 8
            )
            for i in picks:
                out.append(flat[offsets[i] : offsets[i + 1]])
                total += out[-1].size
                if total >= n:
                    break
        return np.concatenate(out)[:n]

    def _corpus_filler(self, n: int, rng: random.Random) -> np.ndarray:
        if self.corpus is None or not self.corpus.sources:
            raise TaskError("the corpus haystack needs a corpus (TaskEnv(corpus=...))")
        para = self.ids("\n\n")
        out, total = [], 0
        while total < n:
            source = rng.choice(self.corpus.sources)
            tokens, offs = self.corpus.tokens(source), self.corpus.offsets(source)
            i = rng.randrange(offs.size - 1)
            doc = np.asarray(tokens[offs[i] : offs[i + 1] - 1], dtype=np.int32)  # without its EOT
            out.extend([doc, para])
            total += doc.size + para.size
        return np.concatenate(out)[:n]

    # -- placing evidence -------------------------------------------------------------------------

    def haystack(
        self, kind: str, total: int, needles: list[np.ndarray], depths: list[float], rng: random.Random
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """One document of `total` tokens: filler with the needles inserted in order at the given depths
        (0..1 of the room available), each at a sentence break, all ending ≥ window tokens before the
        document's end + separator. Returns the tokens and each needle's [start, end)."""
        n_filler = total - sum(x.size for x in needles)
        room = n_filler + 1 - self.window  # last insertion point that keeps the window clear
        if room < 0:
            raise TaskError(f"{total} tokens leave no room for the evidence beyond a window of {self.window}")
        filler = self.filler(kind, n_filler, rng)
        breaks = np.flatnonzero(self.is_break[filler[:room]]) + 1
        points = []
        for depth in sorted(depths):
            target = int(round(depth * room))
            if breaks.size:
                j = int(np.searchsorted(breaks, target))
                cand = [breaks[k] for k in (j - 1, j) if 0 <= k < breaks.size]
                target = int(min(cand, key=lambda b: abs(b - target)))
            points.append(max(target, points[-1] if points else 0))
        parts, spans, prev, shift = [], [], 0, 0
        for point, needle in zip(points, needles, strict=True):
            parts.extend([filler[prev:point], needle])
            spans.append((point + shift, point + shift + needle.size))
            shift += needle.size
            prev = point
        parts.append(filler[prev:])
        return np.concatenate(parts).astype(np.int32), spans

    def single_document(
        self,
        task: str,
        kind: str,
        length: int,
        needles: list[str],
        evidence: list[int],
        question: str,
        answer: str,
        answers: list[str],
        rng: random.Random,
        depths: list[float] | None = None,
        parts: list[list[int]] | None = None,
        distractors: list[str] | None = None,
    ) -> Sample:
        """A sample whose context is one haystack document holding the needles (texts, in order);
        `evidence` names the needles that support the answer, `parts` those behind each reference."""
        prompt = self.prompt(question)
        ids = [self.ids(" " + n.strip()) for n in needles]
        depths = depths if depths is not None else sorted(rng.random() for _ in needles)
        doc, spans = self.haystack(kind, length - len(prompt) - 1, ids, depths, rng)
        evidence_spans = [spans[i] for i in evidence]
        part_spans = [[spans[i] for i in p] for p in parts] if parts else None
        return Sample(
            task,
            [doc],
            question,
            prompt,
            answer,
            answers,
            evidence_spans,
            self.tokenizer.eot_id,
            part_spans,
            distractors or [],
        )

    def documents_around(
        self,
        evidence: np.ndarray,
        budget: int,
        pool: "DocPool",
        rng: random.Random,
        depth: float | None = None,
    ) -> tuple[list[np.ndarray], tuple[int, int]]:
        """Distractor documents from pool around one evidence document, filling `budget` context tokens
        exactly (separators included), the evidence ending ≥ window tokens before the end."""
        room = budget - self.window - evidence.size - 1
        if room < 0:
            raise TaskError(f"{budget} context tokens leave no room for a {evidence.size}-token document")
        start = int(round((rng.random() if depth is None else depth) * room))
        before = pool.fill(start, rng)
        after = pool.fill(budget - start - evidence.size - 1, rng)
        return [*before, evidence, *after], (start, start + evidence.size)


class DocPool:
    """Distractor documents drawn at random (with replacement): `get(i)` gives document i's tokens."""

    def __init__(self, get: Callable[[int], np.ndarray], n: int, exclude: int | None = None):
        if n < (2 if exclude is not None else 1):
            raise TaskError("no distractor documents")
        self.get, self.n, self.exclude = get, n, exclude

    def fill(self, budget: int, rng: random.Random) -> list[np.ndarray]:
        """Documents whose tokens plus one separator each add up to exactly budget (the last cut short)."""
        out, used = [], 0
        while used < budget:
            i = rng.randrange(self.n)
            if i == self.exclude:
                continue
            doc = self.get(i)[: budget - used - 1]
            out.append(doc)
            used += doc.size + 1
        return out


def pick(rng: random.Random, options: list[str] | tuple[str, ...], template: int | None) -> str:
    """A phrasing: the given template index, or a random one (several per task, so the model learns
    to retrieve rather than to match one wording)."""
    return options[template % len(options)] if template is not None else rng.choice(options)
