"""Model configuration: one dataclass, saved as JSON beside the weights, with named presets."""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ENCODERS = ("cls_encoder", "meanpool")
RESIDUALS = ("bypass", "standard")
WEIGHTINGS = ("softmax", "stick_breaking")
WORD_PIECES = 8  # with lexical_words, a word's key hashes at most its last 8 pieces
LEXICAL_SLOT = 4  # with lexical_exact, a word of a landmark: its hash's three bytes, its saturated count


@dataclass
class HSAConfig:
    vocab_size: int = 8192  # tokenizer vocabulary, special tokens included
    d_model: int = 384  # residual stream width
    n_heads: int = 6  # query heads of the SWA layers and the chunk encoder
    n_kv_heads: int = 2  # KV heads of the SWA layers (GQA)
    head_dim: int = 64  # per head, SWA and HSA alike
    mlp_hidden: int = 1024  # SwiGLU inner width
    n_lower: int = 4  # SWA layers below the chunking layer
    n_groups: int = 2  # upper groups of [retrieval + HSA layer + SWA layers]
    group_swa: int = 1  # SWA layers after the HSA layer in each group
    window: int = 512  # sliding window of the SWA layers, in tokens (the token itself included)
    chunk_size: int = 64  # tokens per chunk (S)
    top_k: int = 8  # chunks each token reads per HSA layer
    enc_layers: int = 1  # bidirectional layers of the chunk encoder
    hsa_heads: int = 6  # query heads of each HSA layer
    hsa_kv_heads: int = 1  # KV heads of the chunk memory; retrieval runs per KV head
    encoder: str = "cls_encoder"  # landmark = norm(CLS output) | norm(mean of the encoder's outputs)
    # landmark += W·norm(mean of the chunk's input states), W zero at the start: the input states hold a
    # needle's key that the summary drops (scripts/key_probe.py; docs/training-notes.md, run 8)
    landmark_mean: bool = False
    # a lexical part appended to every landmark: which hashed token bins the chunk holds (lexical_dim
    # bins, 0 = none), scored against the bins of the query's last lexical_window tokens, each weighted
    # per token (init: IDF); its gate starts at zero. Selection alone never learnt to match a needle's key
    # (docs/training-notes.md, runs 7-11); shared words are what keyword search ranks by.
    lexical_dim: int = 0
    lexical_window: int = 32
    # a token from which on, within its document, tokens join no lexical query (-1: none): the prompt's
    # ANSWER marker, so the lexical part searches with the question's words and not with the answer's,
    # which would pull back the chunk of the value just written (docs/training-notes.md, run 11)
    lexical_stop: int = -1
    lexical_resume: int = -1  # and a token after which tokens join again: the next turn's QUESTION marker
    # bins of whole words (a word's pieces hashed together, weighted per bin) instead of single tokens:
    # BPE pieces are not words, and on the R FAQ whole words rank the answering page as keyword search
    # does where token bins do not (scripts/lexical_rank.py; docs/retrofit.md, eleventh session)
    lexical_words: bool = False
    # keyword search's weighting in the lexical part (BM25's, without length normalisation): a chunk's bin
    # holds its word count saturated (k1 = 1.2) rather than 1, and a query's bin is weighed by the bin's
    # IDF over the chunks the query can see (the memory's and its own sequence's visible ones), so that a
    # word every chunk of a collection holds counts for little there. The retrofit fine-tuned with it finds
    # the answering page of the three real documents as often as keyword search (187 of 194; 180 without),
    # docs/retrofit.md, nineteenth session
    lexical_bm25: bool = False
    # read the lexical part by exact words instead of lexical_dim bins: a chunk's part holds its distinct
    # words (at most chunk_size) as 24-bit hashes with their saturated counts, LEXICAL_SLOT values a word,
    # so words that share a bin no longer match each other; a query's words are matched against them one
    # by one, each weighed as in bins (learnt weight × IDF). A way of reading a lexical part trained with
    # bins: training (no memory) still scores bins, so the weights train as before. Needs lexical_words
    # and lexical_bm25. On the
    # three real documents the shipped retrofit ranks the answering page first / in its top 3 / top 5 for
    # 165 / 183 / 190 of 194 questions, 160 / 181 / 187 by bins (docs/retrofit.md, twentieth session)
    lexical_exact: bool = False
    # False: retrieval scores are the lexical part alone (the learnt query's part is zero). On real documents
    # the learnt part is a chunk prior that no question changes (docs/retrofit.md, thirteenth session);
    # trained without it, a model has to find needles by their words
    dense_retrieval: bool = True
    # low-rank adapters (LoRA) of this rank on every matrix of the upper groups' SWA layers (0 = none),
    # their B at zero so they start as no change: a retrofit's frozen upper layers can learn to use what
    # HSA brings them, and what ships is still only ours (docs/retrofit.md)
    lora_rank: int = 0
    residual: str = "bypass"  # x + MLP(norm(x) + norm(hsa)) | x + hsa + MLP(norm(x + hsa))
    weights: str = "softmax"  # chunk weights over the top-k: softmax | stick_breaking (most recent first)
    gumbel: float = 1.0  # scale of the Gumbel noise added to selection scores in training (0 = off)
    qk_norm: bool = True  # RMSNorm on q and k in the SWA layers and the encoder
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("encoder", self.encoder, ENCODERS),
            ("residual", self.residual, RESIDUALS),
            ("weights", self.weights, WEIGHTINGS),
        ):
            if value not in allowed:
                raise ValueError(f"HSAConfig.{name} must be one of {allowed}, got {value!r}")
        if self.n_heads % self.n_kv_heads or self.hsa_heads % self.hsa_kv_heads:
            raise ValueError("query heads must be a multiple of KV heads (n_heads/n_kv_heads, hsa_*)")
        if self.d_model % self.hsa_kv_heads:
            raise ValueError(
                f"d_model {self.d_model} must split evenly into {self.hsa_kv_heads} landmark heads"
            )
        if self.top_k < 1 or self.chunk_size < 1 or self.window < 1:
            raise ValueError("top_k, chunk_size and window must be positive")
        if self.lexical_dim < 0 or self.lexical_window < 1:
            raise ValueError("lexical_dim must be ≥ 0 and lexical_window ≥ 1")
        if self.lexical_exact and not (self.lexical_dim and self.lexical_words and self.lexical_bm25):
            raise ValueError(
                "lexical_exact reads a lexical part of words weighed as BM25 weighs: it needs "
                "lexical_dim > 0, lexical_words and lexical_bm25"
            )
        if not self.dense_retrieval and not self.lexical_dim:
            raise ValueError("dense_retrieval = false needs a lexical part (lexical_dim > 0) to select by")

    @property
    def dense_dim(self) -> int:
        """Per-KV-head width of the learnt part of landmarks and queries (norm(CLS) split per head)."""
        return self.d_model // self.hsa_kv_heads

    @property
    def lexical_width(self) -> int:
        """Per-KV-head width of a landmark's lexical part: its bins, or with lexical_exact its word slots."""
        return LEXICAL_SLOT * self.chunk_size if self.lexical_exact else self.lexical_dim

    @property
    def landmark_dim(self) -> int:
        """Per-KV-head width of landmarks: the learnt part, then the lexical part."""
        return self.dense_dim + self.lexical_width

    @property
    def lexical_history(self) -> int:
        """Tokens before a position that its lexical query depends on: the window's, and with word bins
        the rest of the window's first word (a word's key hashes at most its last WORD_PIECES pieces)."""
        if not self.lexical_dim:
            return 0
        return self.lexical_window - 1 + (WORD_PIECES if self.lexical_words else 0)

    @property
    def select_lag(self) -> int:
        """Tokens a chunk waits after it completes before a position may select it: with a lexical part,
        a chunk overlapping the query's own reach would match the query's words in itself."""
        return self.lexical_history

    @classmethod
    def preset(cls, name: str, **overrides) -> "HSAConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return cls(**{**PRESETS[name], **overrides})

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> "HSAConfig":
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config fields {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, dict] = {
    # tiny: forward + backward on CPU in milliseconds; small chunks and window so tests cross both
    "test": dict(
        d_model=64,
        n_heads=2,
        n_kv_heads=1,
        head_dim=32,
        mlp_hidden=128,
        n_lower=2,
        n_groups=2,
        group_swa=1,
        window=16,
        chunk_size=8,
        top_k=2,
        enc_layers=1,
        hsa_heads=2,
        hsa_kv_heads=1,
    ),
    # the shipped reader's shape: 16.1M parameters with its 8,192-token vocabulary (+0.15M with landmark_mean)
    "small": dict(
        d_model=384,
        n_heads=6,
        n_kv_heads=2,
        head_dim=64,
        mlp_hidden=896,
        n_lower=4,
        n_groups=2,
        group_swa=1,
        window=512,
        chunk_size=64,
        top_k=8,
        enc_layers=1,
        hsa_heads=6,
        hsa_kv_heads=1,
    ),
}
