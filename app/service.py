"""The QA service: one shared model, a store, and answers with the chunks the model read.

Every answer carries its selection trace: per answer token, the chunks each HSA layer picked and their
weights; aggregated per chunk (sum over answer tokens, layers and KV heads) it ranks the evidence."""

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from hsa_core.generate import Step
from ingest import Encoder
from storage import ModelMismatch, Store

REREAD = 3  # a chat model's chunks read again by default: as many as docqa_real's keyword baseline reads
# a reread's selection pass: the answer's first tokens through HSA, which select for the question; later ones
# select for what the hidden answer writes, which the reread throws away (R FAQ, docs/retrofit.md: 4 tokens
# rank the page as well as 24 or better, at a sixth of the work before the first visible token)
SELECT_TOKENS = 4


@dataclass
class Evidence:
    """A chunk the model read while answering, with its provenance and summed selection weight."""

    chunk_id: int
    document: str
    document_id: int
    path: str
    page: int | None
    bbox: list[float] | None
    score: float
    text: str


@dataclass
class Answer:
    question: str
    collection: str
    answer: str = ""
    tokens: list[str] = field(default_factory=list)  # the answer's tokens as text
    chunks: list[Evidence] = field(default_factory=list)  # most relevant first
    per_token: list[list[tuple[int, float]]] = field(default_factory=list)  # (chunk_id, weight), by weight
    timings: dict[str, float] = field(default_factory=dict)
    # a reread's answers: chunks read → the mean log-probability of the answer written from them
    readings: dict[int, float] = field(default_factory=dict)
    done: bool = False

    def to_json(self) -> dict:
        """The object of `hsa ask --json` and the /ask endpoint."""
        return {
            "answer": self.answer,
            "chunks": [
                {k: c[k] for k in ("chunk_id", "document", "page", "score", "text", "bbox")}
                for c in (asdict(e) for e in self.chunks)
            ],
            "per_token": [
                {"token": t, "chunks": [{"chunk_id": i, "weight": w} for i, w in sel]}
                for t, sel in zip(self.tokens, self.per_token, strict=True)
            ],
            "timings": self.timings,
            "readings": {str(n): lp for n, lp in self.readings.items()},  # JSON keys are strings
        }


def _token_weights(step: Step) -> dict[int, float]:
    """chunk id → weight summed over HSA layers and KV heads, for one answer token (memory chunks only)."""
    out: dict[int, float] = defaultdict(float)
    for layer in step.layers:
        for cid, w in zip(layer.ids.flatten().tolist(), layer.weights.flatten().tolist(), strict=True):
            if cid >= 0:
                out[cid] += w
    return out


class QAService:
    """Answers questions against the store's collections with one model instance shared by all requests."""

    def __init__(self, store: Store, encoder: Encoder, reread: int | None = None):
        """reread > 0: select over the memory for the answer's first SELECT_TOKENS tokens, then answer
        again with the HSA layers off, the `reread` best evidence chunks placed in the window — a
        retrofit's base reads prose in its window, not through its HSA layers (docs/retrofit.md, twelfth
        session). Chat models only. None: REREAD for a chat model (on the R FAQ 34% answered against 2%
        through HSA), 0 (through HSA) for others."""
        chat = hasattr(encoder.model.tokenizer, "context_prompt")
        if reread is None:
            reread = REREAD if chat else 0
        if reread and not chat:
            raise ValueError(f"reread needs a chat model such as smollm2-hsa, not {encoder.name}")
        self.store, self.encoder, self.reread = store, encoder, reread
        self.model, self.device = encoder.model, encoder.device
        self.lock = threading.RLock()  # one generation or store read at a time: model and index are shared
        self._memories: dict = {}

    def memory(self, collection: str):
        """The collection's memory view, loaded once and refreshed when the collection changed."""
        info = self.store.collection(collection)
        if info["model_hash"] != self.encoder.info.hash:
            raise ModelMismatch(
                f"collection {collection!r} was encoded by model {info['model']} "
                f"({info['model_hash'][:12]}); "
                f"this app runs {self.encoder.name} ({self.encoder.info.hash[:12]}): ask with --model "
                f"{info['model']}, or re-ingest the documents"
            )
        mem = self._memories.get(collection)
        if mem is None:
            mem = self._memories[collection] = self.store.memory(collection, device=self.device)
        else:
            mem.refresh()
        return mem

    def prompt_ids(self, question: str, history: list[tuple[str, str]] = ()) -> list[int]:
        """Earlier turns, then the question, laid out in the prompt format (docs/prompt-format.md)."""
        tok = self.model.tokenizer
        ids: list[int] = []
        for q, a in history:
            ids += tok.turn(q, a)
        ids += tok.prompt(question)
        return ids[-self.model.cfg.window :]

    def stream(
        self,
        question: str,
        collection: str,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        history: list[tuple[str, str]] = (),
        seed: int = 0,
        top_k: int | None = None,
    ) -> Iterator[Answer]:
        """Yield the same Answer, grown by one token each time; the last yield has done=True and the ranked
        evidence."""
        if not question.strip():
            raise ValueError("the question is empty")
        t0 = time.perf_counter()
        ans = Answer(question, collection)
        with self.lock:
            memory = self.memory(collection)
            t_mem = time.perf_counter()
            ans.timings["memory_s"] = round(t_mem - t0, 4)
            prompt = torch.tensor(self.prompt_ids(question, history), device=self.device)
            gen = torch.Generator(device=self.device).manual_seed(seed)
            steps = self.model.generate(
                prompt,
                memory=memory if len(memory) else None,
                max_new_tokens=min(max_new_tokens, SELECT_TOKENS) if self.reread else max_new_tokens,
                temperature=temperature,
                stop_ids=self.model.tokenizer.stop_ids,
                generator=gen,
                top_k=top_k,
            )
            scores: dict[int, float] = defaultdict(float)
            ids: list[int] = []
            for step in steps:
                if not self.reread and "first_token_s" not in ans.timings:
                    ans.timings["first_token_s"] = round(time.perf_counter() - t_mem, 4)
                if step.token in self.model.tokenizer.stop_ids:
                    break
                weights = _token_weights(step)
                for cid, w in weights.items():
                    scores[cid] += w
                ids.append(step.token)
                if not self.reread:
                    yield self._grown(ans, ids, sorted(weights.items(), key=lambda kv: -kv[1]))
            ans.chunks = self.evidence(scores)
            if self.reread:  # with no evidence (an empty memory) the base answers from the question alone
                ans.timings["select_s"] = round(time.perf_counter() - t_mem, 4)
                yield from self._read_again(ans, history, max_new_tokens, temperature, gen, t_mem)
            ans.timings["generate_s"] = round(time.perf_counter() - t_mem, 4)
            n = max(len(ans.tokens), 1)
            ans.timings["tokens_per_s"] = round(n / max(ans.timings["generate_s"], 1e-9), 2)
        ans.timings["total_s"] = round(time.perf_counter() - t0, 4)
        ans.done = True
        yield ans

    def _grown(self, ans: Answer, ids: list[int], chunks: list[tuple[int, float]]) -> Answer:
        """ans with the last of ids as its next token, read from chunks (chunk id, weight)."""
        ans.tokens.append(self.model.tokenizer.decode(ids[-1:]))
        ans.per_token.append(chunks)
        ans.answer = self.model.tokenizer.decode(ids).strip()
        return ans

    def _read_again(
        self, ans: Answer, history: list[tuple[str, str]], max_new_tokens: int, temperature: float, gen, t_mem
    ) -> Iterator[Answer]:
        """The answer written anew by the model without its HSA layers, the best evidence chunks and the
        chat's earlier turns in its window; each token is marked as read from all the chunks (equal
        weights). Its first token is the answer's first (first_token_s), after the selection pass
        (select_s). Then, if it read more than one chunk, the answer is written again from the best chunk
        alone, and kept instead if the model is surer of it (a higher mean log-probability over its tokens
        and its end); ans.readings holds both (chunks read → mean log-probability). SmolLM2-135M answers
        some questions from one chunk that it misses from three and others the other way, and is surer
        where it is right (docs/retrofit.md, twenty-first session: 107 of 251 answers against 95 and 90)."""
        read, turns = self._fit(ans.question, ans.chunks[: self.reread], list(history), max_new_tokens)
        chunks = [(c.chunk_id, 1 / len(read)) for c in read]
        ids: list[int] = []
        logprobs: list[float] = []
        for token, logprob in self._reading(ans.question, read, turns, max_new_tokens, temperature, gen):
            logprobs.append(logprob)
            if "first_token_s" not in ans.timings:
                ans.timings["first_token_s"] = round(time.perf_counter() - t_mem, 4)
            if token in self.model.tokenizer.stop_ids:
                break
            ids.append(token)
            yield self._grown(ans, ids, chunks)
        ans.readings = {len(read): _mean(logprobs)}
        if len(read) > 1:
            best, turns = self._fit(ans.question, read[:1], list(history), max_new_tokens)
            steps = list(self._reading(ans.question, best, turns, max_new_tokens, temperature, gen))
            ans.readings[1] = _mean([lp for _, lp in steps])
            if ans.readings[1] > ans.readings[len(read)]:
                ans.tokens, ans.per_token = [], []
                alone = [t for t, _ in steps if t not in self.model.tokenizer.stop_ids]
                for i in range(len(alone)):
                    self._grown(ans, alone[: i + 1], [(best[0].chunk_id, 1.0)])
                ans.answer = self.model.tokenizer.decode(alone).strip()

    def _fit(
        self, question: str, read: list[Evidence], turns: list[tuple[str, str]], max_new_tokens: int
    ) -> tuple[list[Evidence], list[tuple[str, str]]]:
        """The chunks and turns that fit the window with the answer (whatever slid out would be unread):
        the oldest turns go but the last, then the lowest-ranked chunks but the best, then the last turn."""
        room = self.model.cfg.window - max_new_tokens

        def prompt() -> list[int]:
            return self.model.tokenizer.context_prompt(question, [c.text for c in read], turns)

        while len(prompt()) > room and (len(read) > 1 or turns):
            if len(turns) > 1 or len(read) <= 1:
                turns = turns[1:]
            else:
                read = read[:-1]
        return read, turns

    def _reading(
        self,
        question: str,
        read: list[Evidence],
        turns: list[tuple[str, str]],
        max_new_tokens: int,
        temperature: float,
        gen,
    ) -> Iterator[tuple[int, float]]:
        """(token, log-probability) of the answer to question from the chunks read, HSA off; the stop
        token, if reached, last."""
        tok = self.model.tokenizer
        prompt = torch.tensor(tok.context_prompt(question, [c.text for c in read], turns), device=self.device)
        with self.model.without_hsa():
            steps = self.model.generate(
                prompt,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                stop_ids=tok.stop_ids,
                generator=gen,
            )
            for step in steps:
                yield step.token, step.logprob

    def ask(self, question: str, collection: str, **kwargs) -> Answer:
        *_, last = self.stream(question, collection, **kwargs)
        return last

    def evidence(self, scores: dict[int, float]) -> list[Evidence]:
        """Chunks with their document, page, box and text, highest score first."""
        if not scores:
            return []
        marks = ",".join("?" * len(scores))
        rows = self.store.db.execute(
            f"""select k.id, coalesce(d.title, d.path), d.id, d.path, k.page, k.bbox, k.text
                from chunks k join documents d on k.document_id = d.id where k.id in ({marks})""",
            list(scores),
        ).fetchall()
        out = [
            Evidence(
                chunk_id=r[0],
                document=r[1],
                document_id=r[2],
                path=r[3],
                page=r[4],
                bbox=_parse_bbox(r[5]),
                score=round(scores[r[0]], 6),
                text=r[6],
            )
            for r in rows
        ]
        return sorted(out, key=lambda e: -e.score)


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def _parse_bbox(text: str | None) -> list[float] | None:
    if not text:
        return None
    return [float(x) for x in text.strip("[]").split(",")]
