"""Training loop (nanoGPT style): AdamW, warm-up + cosine, bf16 autocast on GPU, gradient clipping,
checkpoint + resume, a JSONL log and a loss-curve PNG, and a length curriculum.

Forced sparsity comes from the data (hsa_core/data.py: unrelated documents per row, evidence beyond
the window, top-k ≪ chunks at the final length) and from the model's Gumbel noise in training mode.
The curriculum starts with short rows, where every chunk is selected (the model learns to read what
it retrieves), and grows to the final length, where few are (it learns to select): the GPU probe in
shared/notes/anchors.md found that this, at a modest learning rate, is what makes retrieval emerge.
"""

import json
import math
import time
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hsa_core.checkpoint import MODELS_DIR, SMALL_MODEL, is_retrofit, load_model, save_model
from hsa_core.config import HSAConfig
from hsa_core.corpus import Corpus
from hsa_core.data import Batch, BatchMaker, DataConfig
from hsa_core.lexical import idf, word_pieces
from hsa_core.model import HSAModel, RetrievalProbe
from hsa_core.tokenizer import Tokenizer


@dataclass
class Stage:
    until: float  # fraction of max_steps at which this stage ends (the last stage runs to the end)
    seq_len: int  # row length in tokens during the stage
    gap: int | None = None  # least distance from evidence to question (None: the model's window)
    mix: dict[str, float] | None = None  # this stage's row kinds and shares (None: the [mix] table)


@dataclass
class TrainConfig:
    preset: str = "test"  # HSAConfig preset of the model
    init: str = ""  # a trained model (name or folder) whose weights start the run: fine-tuning; "": preset
    model: dict = field(default_factory=dict)  # HSAConfig overrides
    seed: int = 0
    max_steps: int = 100
    batch_tokens: int = 4096  # tokens per optimizer step; rows = batch_tokens // seq_len
    lr: float = 5e-4  # peak learning rate (2e-3 learned nothing in the GPU probe)
    min_lr: float = 5e-5  # floor of the cosine
    warmup_steps: int = 10
    weight_decay: float = 0.1  # on matrices only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    log_interval: int = 10  # steps per log line
    eval_interval: int = 0  # steps between evaluations on held-out rows (0: only at the end)
    eval_rows: int = 4  # rows per row kind in an evaluation, at the final length
    ckpt_interval: int = 100  # steps between checkpoints (and one at the end)
    time_limit: float = 0.0  # seconds; > 0 saves a checkpoint and stops when passed (resume continues)
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0  # DataLoader processes building batches
    compile: bool = False  # torch.compile the model
    train_base: bool = True  # preset "smollm2": also adapt the base's weights (False: only the new parts)
    # learning rate of the lexical part's gates and per-token weights, as a multiple of lr: at lr they
    # moved 0.1 of their IDF start in a fine-tune (docs/training-notes.md, run 11)
    lexical_lr_scale: float = 1.0
    # residual "bypass": over this fraction of max_steps a direct path x + g·o fades from g = 1 to 0, so
    # the bypass starts reading as the standard residual does; the trained model is a pure bypass
    bypass_anneal: float = 0.0
    tokenizer: str = ""  # tokenizer.json; empty: the shipped one
    curriculum: list[Stage] = field(default_factory=lambda: [Stage(1.0, 256)])
    data: DataConfig = field(default_factory=lambda: DataConfig(mix={"passkey": 1.0}, options={}))
    corpus: str = ""  # corpus folder (hsa train corpus --out); empty: none (no LM or docqa rows)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Iterable[str] = ()) -> "TrainConfig":
        """Read a TOML config: [train] fields, [model] preset + overrides, [data], [mix], [tasks.*],
        [[curriculum]] (docs/training.md). overrides: "a.b=VALUE" settings (VALUE in TOML) applied to
        the file's tables first, so a variant of a config needs no copy of it."""
        raw = tomllib.loads(Path(path).read_text())
        for item in overrides:
            _override(raw, item)
        known = {f.name for f in fields(cls)} - {"model", "curriculum", "data"}
        train = raw.get("train", {})
        unknown = set(train) - known
        data = raw.get("data", {})
        data_known = {f.name for f in fields(DataConfig)} - {"mix", "options"}
        unknown |= {f"data.{k}" for k in set(data) - data_known - {"corpus"}}
        unknown |= {k for k in raw if k not in ("train", "model", "data", "mix", "tasks", "curriculum")}
        if unknown:
            raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
        model = dict(raw.get("model", {}))
        cfg = cls(
            preset=model.pop("preset", "test"),
            model=model,
            curriculum=[Stage(**s) for s in raw.get("curriculum", [{"until": 1.0, "seq_len": 256}])],
            data=DataConfig(
                mix=raw.get("mix", {}),
                options=raw.get("tasks", {}),
                **{k: v for k, v in data.items() if k != "corpus"},
            ),
            corpus=data.get("corpus", ""),
            **train,
        )
        return cfg

    def stage_at(self, step: int) -> Stage:
        for stage in self.curriculum:
            if step < stage.until * self.max_steps:
                return stage
        return self.curriculum[-1]

    def seq_len_at(self, step: int) -> int:
        return self.stage_at(step).seq_len

    def direct_at(self, step: int) -> float:
        """Weight of the bypass's direct path at `step` (bypass_anneal)."""
        if not self.bypass_anneal:
            return 0.0
        return max(0.0, 1.0 - step / (self.bypass_anneal * self.max_steps))

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine from lr down to min_lr at max_steps."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        return self.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)


class Batches(IterableDataset):
    """Batches from `start` to max_steps; with several DataLoader workers, worker k builds the steps
    k, k+n, ... and the loader's round-robin keeps them in order."""

    def __init__(self, cfg: TrainConfig, window: int, start: int):
        self.cfg, self.window, self.start = cfg, window, start

    def __iter__(self):
        info = get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        maker = make_batch_maker(self.cfg, self.window)
        for step in range(self.start + k, self.cfg.max_steps, n):
            stage = self.cfg.stage_at(step)
            rows = max(1, self.cfg.batch_tokens // stage.seq_len)
            yield step, maker.batch(step, rows, stage.seq_len, gap=stage.gap, mix=stage.mix)


def load_tokenizer(cfg: TrainConfig) -> Tokenizer:
    if cfg.preset == "smollm2" or (cfg.init and is_retrofit(cfg.init)):
        from hsa_core.smollm2 import smollm2_tokenizer

        return smollm2_tokenizer()
    return Tokenizer.from_file(cfg.tokenizer or MODELS_DIR / SMALL_MODEL / "tokenizer.json")


def _override(raw: dict, item: str) -> None:
    """Apply one "a.b=VALUE" setting to a parsed TOML config; a VALUE that is not TOML is a string."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f'setting {item!r}: expected KEY=VALUE, e.g. model.residual="bypass"')
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    *tables, last = key.strip().split(".")
    node = raw
    for name in tables:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ValueError(f"setting {item!r}: {name} is not a table")
    node[last] = parsed


# HSAConfig fields a fine-tune (init) may set: parts that start as no change, and the lexical part's settings
GROWING = {
    "landmark_mean",
    "lora_rank",
    "enc_layers",
    "lexical_dim",
    "lexical_window",
    "lexical_stop",
    "lexical_resume",
    "lexical_words",
    "lexical_bm25",
    "dense_retrieval",
}


def build_model(cfg: TrainConfig) -> HSAModel:
    """A preset with random weights and the configured tokenizer, or (preset "smollm2") the pretrained
    base retrofitted with HSA parts that start as identities (hsa_core/smollm2.py), or (init) a trained
    model to fine-tune, shapes and tokenizer included, grown by [model] overrides that only add parts
    (landmark_mean, more enc_layers, a lexical part, LoRA adapters). A retrofit's base trains only with
    train_base."""
    if cfg.init:
        model = load_model(cfg.init)
        if cfg.model:
            model = _grown(model, cfg)
        if model.cfg.lexical_words:  # trained on, its words are cut as word_pieces cuts them now
            model.word_pieces.copy_(word_pieces(model.tokenizer.pieces()))
    elif cfg.preset == "smollm2":
        from hsa_core.smollm2 import load_smollm2

        model = load_smollm2(**cfg.model)
    else:
        tokenizer = load_tokenizer(cfg)
        model = HSAModel(HSAConfig.preset(cfg.preset, **{"vocab_size": tokenizer.vocab_size, **cfg.model}))
        model.tokenizer = tokenizer
    if model.cfg.lexical_dim and not cfg.init:  # a new lexical part (grown ones start in _grown)
        _start_lexical(model, cfg)
    if getattr(model, "base", None):
        from hsa_core.smollm2 import is_base_parameter

        for name, p in model.named_parameters():
            p.requires_grad_(cfg.train_base or not is_base_parameter(name))
        if cfg.train_base:  # the base's weights change too: its checkpoint must hold every weight
            model.base = None
    return model


def _grown(model: HSAModel, cfg: TrainConfig) -> HSAModel:
    """The init model with new parts added by [model] overrides (GROWING): every trained weight kept, the
    new parts at their start, which changes nothing (e.g. landmark_mean's zero projection)."""
    if set(cfg.model) - GROWING:
        raise ValueError(
            f"init = {cfg.init!r} brings its own shapes: [model] overrides may only add parts "
            f"({', '.join(sorted(GROWING))}), got {cfg.model}"
        )
    grown_cfg = HSAConfig(**{**asdict(model.cfg), **cfg.model})
    if getattr(model, "base", None):  # a retrofit: the pinned base again, then every weight of ours
        from hsa_core.smollm2 import load_smollm2

        grown = load_smollm2(cfg=grown_cfg)
    else:
        grown = HSAModel(grown_cfg)
    if model.cfg.lexical_dim and grown.cfg.lexical_words != model.cfg.lexical_words:
        raise ValueError(
            f"init = {cfg.init!r} has a lexical part of {'words' if model.cfg.lexical_words else 'tokens'}:"
            " lexical_words would change what its weights mean; grow a model without a lexical part"
        )
    _, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"init = {cfg.init!r}: [model] {cfg.model} would drop its weights {unexpected}")
    with torch.no_grad():  # encoder layers added on top pass their input through until trained
        for layer in grown.encoder.layers[model.cfg.enc_layers :]:
            layer.attn.wo.weight.zero_()
            layer.mlp.w_down.weight.zero_()
    grown.tokenizer = model.tokenizer
    if grown.cfg.lexical_dim and not model.cfg.lexical_dim:
        _start_lexical(grown, cfg)
    return grown


def _start_lexical(model: HSAModel, cfg: TrainConfig) -> None:
    """A new lexical part: with lexical_words, its table of the tokenizer's pieces (word_pieces); its weights
    start at the corpus's IDF per token or word bin (ones without a corpus): common words start weak,
    and words the training tasks never ask about keep a sensible weight."""
    mcfg = model.cfg
    if mcfg.lexical_words:
        model.word_pieces.copy_(word_pieces(model.tokenizer.pieces()))
    if not cfg.corpus:
        return
    if mcfg.lexical_words:
        weights = idf(cfg.corpus, mcfg.vocab_size, mcfg.chunk_size, table=model.word_pieces.cpu())
    else:
        weights = idf(cfg.corpus, mcfg.vocab_size, mcfg.chunk_size)
    with torch.no_grad():
        for group in model.groups:
            group.retrieval.lex_weight.copy_(weights)


def make_batch_maker(cfg: TrainConfig, window: int) -> BatchMaker:
    corpus = Corpus(cfg.corpus) if cfg.corpus else None
    stage_mixes = tuple(s.mix for s in cfg.curriculum if s.mix)
    return BatchMaker(cfg.data, load_tokenizer(cfg), corpus, window, cfg.seed, stage_mixes)


def loss_and_stats(logits: torch.Tensor, batch: Batch, answer_weight: float) -> tuple[torch.Tensor, dict]:
    """Mean text cross-entropy + answer_weight × mean answer cross-entropy, and what the log reports:
    LM loss, answer loss, and per task the teacher-forced exact match of whole answers.

    The answer term is its own mean: weighting answer tokens inside one mean over all tokens gives the
    few answer tokens of a 64K-token batch almost no say (the first GPU run learned no retrieval so)."""
    V = logits.shape[-1]
    ce = F.cross_entropy(logits.float().view(-1, V), batch.targets.reshape(-1), reduction="none").view_as(
        batch.weights
    )
    loss = (ce * batch.weights).sum() / batch.weights.sum().clamp(min=1e-6)
    if batch.answer.any():
        loss = loss + answer_weight * ce[batch.answer].mean()
    stats: dict = {"loss": loss.item()}
    with torch.no_grad():
        lm_rows = torch.tensor([t == "lm" for t in batch.tasks], device=ce.device)
        lm_mask = lm_rows[:, None] & (batch.weights > 0)
        if lm_mask.any():
            stats["lm_loss"] = ce[lm_mask].mean().item()
        if batch.answer.any():
            stats["answer_loss"] = ce[batch.answer].mean().item()
            wrong = (logits.argmax(-1) != batch.targets) & batch.answer
            ok = ~wrong.any(1)
            stats["acc"] = {}
            for i, task in enumerate(batch.tasks):
                if task != "lm":
                    stats["acc"].setdefault(task, []).append(float(ok[i]))
    return loss, stats


def retrieval_positions(
    answer: torch.Tensor, at: str = "answer", answer_part: torch.Tensor | None = None
) -> torch.Tensor:
    """The positions (B, T) the retrieval loss probes: every answer position, each row's first, or the
    first of each reference (answer_part > 0: Batch.answer_part)."""
    if at == "answer":
        return answer
    if at == "first":
        return answer & ~torch.cat([torch.zeros_like(answer[:, :1]), answer[:, :-1]], 1)
    if at == "part" and answer_part is not None:
        return answer_part > 0
    raise ValueError(f"data.retrieval_at must be 'answer', 'first' or 'part' (with answer_part), got {at!r}")


def retrieval_loss(
    probe: RetrievalProbe,
    evidence: torch.Tensor,
    chunk_size: int,
    parts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per row: −log of the retrieval softmax's mass on the evidence chunks, over every chunk a probed
    position can see, averaged over the row's probed positions, the HSA groups and the KV heads.
    Returns those losses (R,) and their rows (R,), or None if no probed position sees evidence (LM-only
    batches, or evidence inside the window).

    Selection is top-k of these same scores, so this teaches the query to rank the evidence first —
    including among needles of the same shape, where the answer alone gave too weak a signal to make
    the key matter. Rows weigh the same whatever their answer's length: averaged over positions, the
    long answers of multi-value and vt rows drowned the one-number multi-key rows (docs/retrofit.md).
    parts = (Batch.answer_part, Batch.evidence_part): each probed position's evidence is only that of
    the reference it starts."""
    B, T = probe.mask.shape
    C = probe.landmarks.shape[1]
    rows, pos = probe.mask.nonzero(as_tuple=True)
    if parts is None:
        chunks = evidence[:, : C * chunk_size].reshape(B, C, chunk_size).any(-1)[rows]  # (N, C)
    else:
        answer_part, evidence_part = parts
        own = evidence_part[rows, : C * chunk_size] == answer_part[rows, pos][:, None]
        chunks = (own & (evidence_part[rows, : C * chunk_size] > 0)).reshape(-1, C, chunk_size).any(-1)
    visible = (torch.arange(C, device=pos.device) + 1) * chunk_size + probe.lag <= pos[:, None]  # as selected
    target = chunks & visible
    keep = target.any(-1)
    if not keep.any():
        return None
    rows = rows[keep]
    landmarks = probe.landmarks[rows].float()  # (n, C, Hkv, Dl)
    scale = probe.scale
    per_position = 0.0
    for q in probe.queries:
        scores = torch.einsum("nhd,nchd->nhc", q[keep].float(), landmarks) * scale
        logp = scores.masked_fill(~visible[keep][:, None], float("-inf")).log_softmax(-1)
        mass = logp.masked_fill(~target[keep][:, None], float("-inf")).logsumexp(-1)  # (n, Hkv)
        per_position = per_position - mass.mean(-1) / len(probe.queries)
    sums = torch.zeros(B, device=pos.device).index_add(0, rows, per_position)
    counts = torch.bincount(rows, minlength=B)
    seen = (counts > 0).nonzero().squeeze(1)
    return sums[seen] / counts[seen], seen


def _autocast(device: torch.device):
    return (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )


def _average(records: list[dict]) -> dict:
    out: dict = {}
    for key in ("loss", "lm_loss", "answer_loss", "retrieval_loss"):
        values = [r[key] for r in records if key in r]
        if values:
            out[key] = sum(values) / len(values)
    for key in ("acc", "retrieval"):  # per task: exact match, retrieval loss
        per_task: dict[str, list[float]] = {}
        for r in records:
            for task, values in r.get(key, {}).items():
                per_task.setdefault(task, []).extend(values)
        if per_task:
            out[key] = {t: round(sum(v) / len(v), 4) for t, v in sorted(per_task.items())}
    return out


@torch.no_grad()
def evaluate(model: HSAModel, maker: BatchMaker, cfg: TrainConfig, device: torch.device) -> dict:
    """Held-out rows as the final stage builds them (its length and gap), in eval mode (no Gumbel
    noise): per row kind, its loss and, for tasks, teacher-forced exact match."""
    model.eval()
    stage = cfg.curriculum[-1]
    records = []
    for kind in maker.kinds:
        batch = maker.batch(0, cfg.eval_rows, stage.seq_len, split="val", kind=kind, gap=stage.gap).to(device)
        with _autocast(device):
            logits = model(batch.inputs, batch.doc_ids)
        records.append(loss_and_stats(logits, batch, cfg.data.answer_weight)[1])
    model.train()
    out = _average(records)
    return {f"val_{k}": v for k, v in out.items()}


def configure_optimizer(model: HSAModel, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on matrices and embeddings only (nanoGPT)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lexical = [p for n, p in named if ".lex_" in n]
    params = [p for n, p in named if ".lex_" not in n]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lexical:
        groups.append({"params": lexical, "weight_decay": 0.0, "lr_scale": cfg.lexical_lr_scale})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    # map_location moved the saved generator states onto the training device; torch wants CPU bytes
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(
    path: Path, model: HSAModel, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig
) -> None:
    """Written to a temporary file, then renamed: a crash while saving leaves the last checkpoint whole."""
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": _rng_state()}
    torch.save({**state, "config": asdict(cfg)}, tmp)
    tmp.replace(path)


def _keep_log_until(log_path: Path, step: int) -> None:
    """After a resume, drop log lines written after the checkpoint (they will be written again)."""
    if log_path.is_file():
        lines = [
            ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step
        ]
        log_path.write_text("".join(ln + "\n" for ln in lines))


def plot_losses(log_path: Path, png: Path) -> None:
    """Loss curves from the JSONL log (train, LM, answer; held-out points), with the row length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, style in (("loss", "-"), ("lm_loss", "--"), ("answer_loss", ":"), ("val_loss", "o")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    ax.legend(loc="upper right")
    pts = [(r["step"], r["seq_len"]) for r in rows if "seq_len" in r]
    if pts:
        ax2 = ax.twinx()
        ax2.step(*zip(*pts, strict=True), color="grey", alpha=0.4, where="post")
        ax2.set_ylabel("row length (tokens)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, out: Path, resume: bool = True, stop_at: int | None = None, log=print) -> dict:
    """Run (or resume) training into `out`: ckpt.pt, log.jsonl, loss.png, and model/ (save_model) when
    the run ends. stop_at ends this run after that step with a checkpoint, as time_limit does."""
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if cfg.device == "auto"
        else cfg.device
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    model_cfg = model.cfg
    opt = configure_optimizer(model, cfg, device)
    ckpt_path, log_path = out / "ckpt.pt", out / "log.jsonl"
    step = 0
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        _set_rng_state(ckpt["rng"])
        _keep_log_until(log_path, step)
        log(f"resumed from {ckpt_path} at step {step}")
    elif log_path.exists():
        log_path.unlink()
    log(
        f"model {cfg.init or cfg.preset}: {model.num_parameters() / 1e6:.1f}M parameters on {device}; "
        f"steps {step}..{cfg.max_steps}"
    )
    forward = torch.compile(model) if cfg.compile else model
    model.train()
    maker = make_batch_maker(cfg, model_cfg.window)
    loader = DataLoader(
        Batches(cfg, model_cfg.window, step),
        batch_size=None,
        num_workers=cfg.num_workers,
        prefetch_factor=4 if cfg.num_workers else None,
    )
    t_start = t_log = time.time()
    records, tokens = [], 0
    summary: dict = {}
    with open(log_path, "a") as log_file:
        for batch_step, batch in loader:
            if batch_step != step:
                raise RuntimeError(f"data out of order: got step {batch_step}, expected {step}")
            lr = cfg.lr_at(step)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = batch.to(device)
            direct = cfg.direct_at(step)
            for group in model.groups:
                group.hsa.direct = direct
            probe = (
                RetrievalProbe(retrieval_positions(batch.answer, cfg.data.retrieval_at, batch.answer_part))
                if cfg.data.retrieval_weight
                else None
            )
            with _autocast(device):
                logits = forward(batch.inputs, batch.doc_ids, probe=probe)
            loss, stats = loss_and_stats(logits, batch, cfg.data.answer_weight)
            if probe is not None:
                parts = (batch.answer_part, batch.evidence_part) if cfg.data.retrieval_at == "part" else None
                per_row = retrieval_loss(probe, batch.evidence, model_cfg.chunk_size, parts)
                if per_row is not None:
                    values, rows = per_row
                    loss = loss + cfg.data.retrieval_weight * values.mean()
                    stats["retrieval_loss"] = values.mean().item()
                    stats["retrieval"] = {}
                    for v, r in zip(values.tolist(), rows.tolist(), strict=True):
                        stats["retrieval"].setdefault(batch.tasks[r], []).append(v)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            records.append({**stats, "lr": lr, "grad_norm": grad_norm})
            tokens += batch.inputs.numel()
            last = step == cfg.max_steps
            stop = (stop_at is not None and step >= stop_at) or (
                cfg.time_limit > 0 and time.time() - t_start > cfg.time_limit
            )
            if step % cfg.log_interval == 0 or last or stop:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.time()
                entry = {
                    "step": step,
                    "lr": lr,
                    **({"direct": round(direct, 4)} if cfg.bypass_anneal else {}),
                    "seq_len": batch.inputs.shape[1],
                    **_average(records),
                    "grad_norm": records[-1]["grad_norm"],
                    "tokens_per_s": round(tokens / (now - t_log)),
                    "elapsed_s": round(now - t_start, 1),
                }
                if (cfg.eval_interval and step % cfg.eval_interval == 0) or last or stop:
                    entry.update(evaluate(model, maker, cfg, device))
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log(json.dumps(entry))
                records, tokens, t_log = [], 0, time.time()
                summary = entry
            if step % cfg.ckpt_interval == 0 or last or stop:
                save_checkpoint(ckpt_path, model, opt, step, cfg)
            if stop:
                break
    plot_losses(log_path, out / "loss.png")
    save_model(model.float().cpu(), out / "model")  # the weights at this step (final when step == max_steps)
    passkey = summary.get("val_acc", {}).get("passkey")
    if passkey is not None and passkey < 0.5:  # reading starts suddenly, or not at all (docs/training.md)
        log(f"warning: {passkey:.0%} of held-out pass keys answered: this model has not learned to read")
    return {**summary, "step": step}
