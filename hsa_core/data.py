"""Training batches: plain-text LM rows and retrieval/QA task rows, at the curriculum's length.

Every row is a sequence of T+1 tokens made of unrelated documents (forced sparsity: many more
chunks than top-k, the evidence beyond the window). A task row is the task's context documents, then
the question as its own document with the answer after it. Batch `step` depends only on
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""

import random
from dataclasses import dataclass

import numpy as np
import torch

from hsa_core.corpus import Corpus
from hsa_core.tasks import NEEDS_CORPUS, TASKS, Sample, TaskEnv, TaskError, make_sample
from hsa_core.tokenizer import Tokenizer

VAL_EVERY = 100  # corpus document i is held out for validation when i % VAL_EVERY == 0


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) token ids
    targets: torch.Tensor  # (B, T) next tokens
    weights: torch.Tensor  # (B, T) weight of each target in the text term: 0 for padding and answers
    doc_ids: torch.Tensor  # (B, T) document index; SWA never crosses a change
    answer: torch.Tensor  # (B, T) bool: the target is an answer token (or its END)
    tasks: list[str]  # per row: "lm" or the task name
    evidence: torch.Tensor  # (B, T) bool: the input token is part of the evidence the answer needs
    answer_part: torch.Tensor  # (B, T) int16: i where the target is the first token of reference i (1-based)
    evidence_part: torch.Tensor  # (B, T) int16: i where the input token is evidence of reference i

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.inputs),
            move(self.targets),
            move(self.weights),
            move(self.doc_ids),
            move(self.answer),
            self.tasks,
            move(self.evidence),
            move(self.answer_part),
            move(self.evidence_part),
        )


@dataclass
class DataConfig:
    mix: dict[str, float]  # row kind ("lm" or a task name) → share of rows
    options: dict[str, dict]  # task → options; a list value is a choice made per sample
    answer_weight: float = (
        5.0  # loss = mean text CE + answer_weight × mean answer CE (the probe's LM + 5 × answer)
    )
    context_weight: float = 1.0  # weight of a task row's context and question tokens in the text term
    max_answer_tokens: int = 64  # room left after the context for the answer (more is made when needed)
    # weight of the retrieval loss (hsa_core.train.retrieval_loss): at each answer position, −log of the
    # probability its retrieval softmax (over every visible chunk) gives the evidence's chunks, averaged
    # per task row, then over rows; 0: none, selection is learnt only through the answer (the paper's)
    retrieval_weight: float = 0.0
    # where the retrieval loss looks: "answer" (every answer position) or "first" (only the position that
    # predicts the first answer token, where multi-key's key alone decides: at later positions the value
    # written so far finds its own chunk, and their easy losses hid the first one's — run 8), or "part"
    # (the first token of each reference, asking for that reference's own evidence: several contrasts
    # per row from multi-query, multi-value and vt rows — run 9)
    retrieval_at: str = "answer"
    question_own_doc: bool = True  # the question starts a new document (the product's layout: the SWA
    # cannot see the context); False continues the last context document, as the GPU probe trained
    lm_sources: dict[str, float] | None = None  # corpus source → share of LM documents (None: by tokens)
    lm_one_document: bool = False  # an LM row is one document (padded), not unrelated ones concatenated:
    # the ablation without forced sparsity (docs/ablation.md)


class BatchMaker:
    """Builds batch `step` of a run; one per process (DataLoader workers each hold their own)."""

    def __init__(
        self,
        cfg: DataConfig,
        tokenizer: Tokenizer,
        corpus: Corpus | None,
        window: int,
        seed: int,
        stage_mixes: tuple[dict[str, float], ...] = (),
    ):
        """stage_mixes: the curriculum stages' own mixes, checked here so a bad one fails at the start."""
        for mix in (cfg.mix, *stage_mixes):
            unknown = set(mix) - set(TASKS) - {"lm"}
            if unknown:
                raise TaskError(f"unknown row kinds in the mix: {sorted(unknown)}")
            if corpus is None and ({"lm"} | NEEDS_CORPUS) & {k for k, v in mix.items() if v > 0}:
                raise TaskError("the mix asks for LM or docqa rows but no corpus is configured")
        self.cfg, self.tokenizer, self.corpus, self.seed = cfg, tokenizer, corpus, seed
        self.env, self.window = TaskEnv(tokenizer, corpus, window), window
        self.kinds = [k for k, v in cfg.mix.items() if v > 0]
        self.shares = [cfg.mix[k] for k in self.kinds]
        if corpus is not None:
            sources = corpus.sources
            weights = cfg.lm_sources or {s: float(corpus.offsets(s)[-1]) for s in sources}
            self.lm_sources = [s for s in sources if weights.get(s, 0) > 0]
            self.lm_shares = [weights[s] for s in self.lm_sources]

    def batch(
        self,
        step: int,
        rows: int,
        seq_len: int,
        split: str = "train",
        kind: str | None = None,
        gap: int | None = None,
        mix: dict[str, float] | None = None,
    ) -> Batch:
        """Batch `step`: rows of seq_len (+1 for the shifted targets); kind forces every row's kind, mix
        replaces the configured mix; gap is the least distance from evidence to question (None: the
        window given at construction)."""
        self.env.window = self.window if gap is None else gap
        kinds, shares = (list(mix), list(mix.values())) if mix else (self.kinds, self.shares)
        rng = random.Random(f"{self.seed}/{split}/{kind}/{step}")
        seqs = []
        for r in range(rows):
            row_kind = kind or rng.choices(kinds, shares)[0]
            sample_seed = ((self.seed * 1_000_003 + step) * 1024 + r) * 2 + (split == "val")
            if row_kind == "lm":
                seqs.append((row_kind, self.lm_row(rng, seq_len + 1, split)))
            else:
                seqs.append((row_kind, self.task_row(row_kind, sample_seed, rng, seq_len + 1)))
        tokens, weights, docs, answer, evidence, answer_part, evidence_part = (
            np.stack([s[i] for _, s in seqs]) for i in range(7)
        )
        tokens, docs = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(docs.astype(np.int64))
        weights, answer, evidence, answer_part, evidence_part = (
            torch.from_numpy(a) for a in (weights, answer, evidence, answer_part, evidence_part)
        )
        return Batch(
            tokens[:, :-1],
            tokens[:, 1:],
            weights[:, 1:],
            docs[:, :-1],
            answer[:, 1:],
            [k for k, _ in seqs],
            evidence[:, :-1],
            answer_part[:, 1:],
            evidence_part[:, :-1],
        )

    def lm_row(self, rng: random.Random, n: int, split: str) -> tuple[np.ndarray, ...]:
        """n tokens of whole corpus documents from random sources, each with its EOT (the last cut);
        like task_row: tokens, weights, document ids, answer and evidence masks and parts (none here)."""
        parts, doc_ids, used = [], [], 0
        while used < n:
            source = rng.choices(self.lm_sources, self.lm_shares)[0]
            offs = self.corpus.offsets(source)
            n_docs = offs.size - 1
            if split == "val":
                i = VAL_EVERY * rng.randrange((n_docs + VAL_EVERY - 1) // VAL_EVERY)
            else:
                i = rng.randrange(n_docs)
                if i % VAL_EVERY == 0:
                    continue
            doc = np.asarray(self.corpus.tokens(source)[offs[i] : offs[i + 1]])[: n - used]
            parts.append(doc)
            doc_ids.append(np.full(doc.size, len(doc_ids)))
            used += doc.size
            if self.cfg.lm_one_document and used < n:  # the rest is padding the loss ignores
                parts.append(np.full(n - used, self.tokenizer.pad_id, dtype=doc.dtype))
                doc_ids.append(np.full(n - used, len(doc_ids)))
                weights = np.zeros(n, dtype=np.float32)
                weights[:used] = 1.0
                none, no_part = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int16)
                return np.concatenate(parts), weights, np.concatenate(doc_ids), none, none, no_part, no_part
        tokens, none, no_part = np.concatenate(parts), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int16)
        return tokens, np.ones(n, dtype=np.float32), np.concatenate(doc_ids), none, none, no_part, no_part

    def task_row(self, task: str, seed: int, rng: random.Random, n: int) -> tuple[np.ndarray, ...]:
        """A task sample, then its answer and END, padded to n tokens; the question is its own document.
        Returns tokens, weights, document ids, the answer mask, the evidence mask, and the references'
        first tokens and evidence numbered by reference (Batch.answer_part, Batch.evidence_part)."""
        options = {
            k: rng.choice(v) if isinstance(v, list) else v for k, v in self.cfg.options.get(task, {}).items()
        }
        room, tries = self.cfg.max_answer_tokens, 0
        while True:
            try:
                sample = make_sample(task, n - room, seed + (tries << 50), self.env, **options)
            except TaskError:  # e.g. a FAQ document longer than a short curriculum row: draw another
                tries += 1
                if tries == 8:
                    raise
                continue
            target = sample.target_ids(self.tokenizer)
            if len(target) <= room:
                break
            room, tries = len(target) + 8, tries + 1
            if tries == 8:
                raise TaskError(f"{task}: answers of {len(target)} tokens do not fit in rows of {n}")
        ctx, prompt = sample.context_ids(), np.array(sample.prompt, dtype=np.int32)
        pad = n - ctx.size - prompt.size - len(target)
        tokens = np.concatenate(
            [
                ctx,
                prompt,
                np.array(target, dtype=np.int32),
                np.full(pad, self.tokenizer.pad_id, dtype=np.int32),
            ]
        )
        q = len(sample.documents) - (not self.cfg.question_own_doc)
        doc_ids = np.concatenate([sample.doc_ids(), np.full(n - ctx.size, q)])
        weights = np.full(n, self.cfg.context_weight, dtype=np.float32)
        answer = np.zeros(n, dtype=bool)
        a0 = ctx.size + prompt.size
        answer[a0 : a0 + len(target)] = True
        weights[a0 : a0 + len(target)] = 0.0  # answers have their own term in the loss
        weights[n - pad :] = 0.0
        weights[ctx.size] = 0.0  # the QUESTION token follows nothing it could be predicted from
        evidence = np.zeros(n, dtype=bool)
        for start, end in sample.evidence:
            evidence[start:end] = True
        answer_part, evidence_part = np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.int16)
        for i, (first, spans) in enumerate(self._parts(sample, target), 1):
            answer_part[a0 + first] = i
            for start, end in spans:
                evidence_part[start:end] = i
        return tokens, weights, doc_ids, answer, evidence, answer_part, evidence_part

    def _parts(self, sample: Sample, target: list[int]) -> list[tuple[int, list[tuple[int, int]]]]:
        """(index in target of the token that starts writing the reference, its evidence) per reference;
        a whole answer without parts is one. That token may hold the separator too: in `PALKQ YKFAP`
        the second name starts with the token ' Y'."""
        if sample.parts is None:
            return [(0, sample.evidence)]
        ids, offsets = self.tokenizer.encode_with_offsets(sample.answer)
        assert target[: len(ids)] == ids, "target_ids must start with the answer's tokens"
        out, at = [], 0
        for ref, spans in zip(sample.answers, sample.parts, strict=True):
            found = sample.answer.find(ref, at)
            if found < 0:
                continue
            out.append((next(i for i, (_, end) in enumerate(offsets) if end > found), spans))
            at = found + len(ref)
        return out
