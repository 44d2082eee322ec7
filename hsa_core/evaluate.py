"""Long-context evaluation: accuracy and evidence recall against context length, per task.

Each sample's context documents are encoded into memory one by one, in segments, as ingest does it;
the question is then asked against that memory (its own document, as in training) and the answer
scored. Evidence recall: the share of the chunks holding the evidence that the model selected, in any
HSA layer, while writing the answer."""

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hsa_core.memory import ChunkMemory
from hsa_core.model import HSAModel
from hsa_core.tasks import Sample, TaskEnv, make_sample

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_length(text: str) -> int:
    """'4k' → 4096, '16M' → 16777216, '1000' → 1000 (binary units, as RULER's lengths)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)\s*", text)
    if not m:
        raise ValueError(f"bad length {text!r}: use a number with an optional k, m or g (e.g. 4k, 16m)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_length(n: int) -> str:
    for unit, size in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def score(task: str, answer: str, references: list[str]) -> float:
    """RULER's metric for needles, pass key and variable tracking (the share of references the answer
    contains, case-insensitive); the exact label for bAbI; contains-the-answer for document QA."""
    text = answer.strip().lower()
    if task.startswith("babi"):
        first = re.split(r"[\s.,;!?]+", text, maxsplit=1)[0] if text else ""
        return float(first == references[0].strip().lower())
    if task.startswith("docqa"):
        return float(all(r.strip().lower() in text for r in references))
    return sum(r.strip().lower() in text for r in references) / len(references)


def strict_score(task: str, answer: str, references: list[str], distractors: list[str]) -> float:
    """The score, but zero when the answer also names a distractor (a value the question did not ask
    for): RULER credits a multi-key answer that lists every key's value, a reader would not."""
    text = answer.lower()
    named = any(re.search(rf"\b{re.escape(d.strip().lower())}\b", text) for d in distractors)
    return 0.0 if named else score(task, answer, references)


@dataclass
class SampleResult:
    task: str
    length: int
    seed: int
    answer: str
    references: list[str]
    accuracy: float
    evidence_recall: float
    seconds: float
    strict: float


@dataclass
class Result:
    task: str
    length: int
    samples: int
    accuracy: float
    evidence_recall: float
    seconds: float  # mean per sample: encoding the context and answering
    strict_accuracy: float | None = None  # strict_score's mean; None in results older than it


def evidence_rows(sample: Sample, chunk_size: int) -> set[int]:
    """Memory rows (documents encoded one by one, each padded to whole chunks) holding the evidence."""
    rows, base, start = set(), 0, 0
    spans = list(sample.evidence)
    for doc in sample.documents:
        end = start + doc.size + 1  # the separator belongs to the document in context coordinates
        for a, b in spans:
            if start <= a < end:
                first, last = (a - start) // chunk_size, (min(b, end - 1) - 1 - start) // chunk_size
                rows.update(range(base + first, base + last + 1))
        base += math.ceil(doc.size / chunk_size)
        start = end
    return rows


@torch.no_grad()  # not inference_mode: the GPU SWA path caches its mask by tensor version
def run_sample(
    model: HSAModel,
    sample: Sample,
    max_new_tokens: int = 32,
    segment: int = 65536,
    top_k: int | None = None,
) -> tuple[str, set[int], float]:
    """Encode the context, ask the question; the answer, the memory rows selected, and the seconds.
    top_k overrides the chunks each answer token reads per HSA layer."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    parts = [
        model.encode_memory(
            torch.as_tensor(doc, dtype=torch.long, device=device),
            pad_id=model.tokenizer.eot_id,
            segment=segment,
        )
        for doc in sample.documents
        if doc.size
    ]
    memory = ChunkMemory.cat(parts) if len(parts) > 1 else parts[0]
    prompt = torch.tensor(sample.prompt, device=device)
    tokens, selected = [], set()
    for step in model.generate(
        prompt,
        memory=memory,
        max_new_tokens=max_new_tokens,
        stop_ids=model.tokenizer.stop_ids,
        top_k=top_k,
    ):
        for layer in step.layers:
            selected.update(int(i) for i in layer.ids.flatten() if i >= 0)
        if step.token in model.tokenizer.stop_ids:
            break
        tokens.append(step.token)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model.tokenizer.decode(tokens), selected, time.perf_counter() - t0


def evaluate(
    model: HSAModel,
    env: TaskEnv,
    tasks: Iterable[str],
    lengths: Iterable[int],
    samples: int,
    seed: int = 0,
    max_new_tokens: int = 32,
    options: dict[str, dict] | None = None,
    on_sample=None,
    top_k: int | None = None,
) -> list[Result]:
    """Accuracy and evidence recall per (task, length) over `samples` samples (seeds seed..seed+n-1)."""
    results = []
    for task in tasks:
        for length in lengths:
            per = []
            for i in range(samples):
                sample = make_sample(task, length, seed + i, env, **(options or {}).get(task, {}))
                answer, selected, seconds = run_sample(model, sample, max_new_tokens, top_k=top_k)
                evidence = evidence_rows(sample, model.cfg.chunk_size)
                recall = len(evidence & selected) / len(evidence) if evidence else 1.0
                r = SampleResult(
                    task,
                    length,
                    seed + i,
                    answer,
                    sample.answers,
                    score(task, answer, sample.answers),
                    recall,
                    seconds,
                    strict_score(task, answer, sample.answers, sample.distractors),
                )
                per.append(r)
                if on_sample:
                    on_sample(r)
            results.append(
                Result(
                    task,
                    length,
                    len(per),
                    sum(r.accuracy for r in per) / len(per),
                    sum(r.evidence_recall for r in per) / len(per),
                    sum(r.seconds for r in per) / len(per),
                    sum(r.strict for r in per) / len(per),
                )
            )
    return results


def write_json(results: list[Result], path: Path, meta: dict | None = None) -> None:
    Path(path).write_text(
        json.dumps({**(meta or {}), "results": [asdict(r) for r in results]}, indent=2) + "\n"
    )


def table(results: list[Result]) -> str:
    """A Markdown table: one row per task, accuracy (evidence recall) per length, and the strict
    accuracy where it is lower (an answer also named a value that was not asked for)."""
    lengths = sorted({r.length for r in results})
    tasks = list(dict.fromkeys(r.task for r in results))
    cell = {(r.task, r.length): r for r in results}

    def text(r: Result) -> str:
        base = f"{r.accuracy:.0%} ({r.evidence_recall:.0%})"
        lower = r.strict_accuracy is not None and r.strict_accuracy < r.accuracy
        return base + (f" strict {r.strict_accuracy:.0%}" if lower else "")

    lines = [
        "| task | " + " | ".join(format_length(n) for n in lengths) + " |",
        "|---" * (len(lengths) + 1) + "|",
    ]
    for t in tasks:
        cells = [text(cell[t, n]) if (t, n) in cell else "–" for n in lengths]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[Result], path: Path, title: str = "") -> None:
    """Accuracy against context length (log axis), one line per task; dashed, the strict accuracy where
    it is lower."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for task in dict.fromkeys(r.task for r in results):
        rs = sorted((r for r in results if r.task == task), key=lambda r: r.length)
        line = ax.plot([r.length for r in rs], [100 * r.accuracy for r in rs], marker="o", label=task)[0]
        if any(r.strict_accuracy is not None and r.strict_accuracy < r.accuracy for r in rs):
            strict = [100 * (r.accuracy if r.strict_accuracy is None else r.strict_accuracy) for r in rs]
            ax.plot(
                [r.length for r in rs],
                strict,
                ls="--",
                marker="x",
                color=line.get_color(),
                label=f"{task}, strict",
            )
    ax.set_xscale("log", base=2)
    lengths = sorted({r.length for r in results})
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.set_ylim(-3, 103)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
