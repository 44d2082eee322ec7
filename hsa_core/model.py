"""The SWA+HSA language model: SWA layers below, a chunk encoder at the middle, HSA groups above."""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from hsa_core.chunk_encoder import ChunkEncoder
from hsa_core.config import HSAConfig
from hsa_core.hsa_layer import HSALayer
from hsa_core.layers import Block, RMSNorm, WindowCache, rope_angles
from hsa_core.lexical import WordIndex, WordMatches, bm25_idf, window_words
from hsa_core.memory import ChunkMemory, MemoryView
from hsa_core.retrieval import Retrieval


class Group(nn.Module):
    """One upper group: a retrieval layer, an HSA layer sharing its selection, then SWA layers."""

    def __init__(self, cfg: HSAConfig):
        super().__init__()
        self.retrieval = Retrieval(cfg)
        self.hsa = HSALayer(cfg)
        self.blocks = nn.ModuleList(Block(cfg, lora_rank=cfg.lora_rank) for _ in range(cfg.group_swa))


@dataclass
class State:
    """Everything a sequence carries from one call to the next: SWA caches and its own chunks."""

    pos: int  # tokens seen so far
    lower: list[WindowCache]
    upper: list[WindowCache]
    pending: torch.Tensor  # (B, r, d) mid-layer states of the chunk not yet complete (r < S)
    pending_ids: torch.Tensor  # (B, r) their token ids
    recent: torch.Tensor  # (B, lexical_history) the last token ids (-1: none yet) for lexical queries
    stopped: torch.Tensor  # (B, 1) bool: the stream is between a lexical_stop and a lexical_resume token
    landmarks: torch.Tensor  # (B, Co, Hkv, Dl) the sequence's completed chunks
    k: torch.Tensor  # (B, Co, S, Hkv, D)
    v: torch.Tensor


@dataclass
class Selections:
    """Chunks picked by each HSA layer for each position: indices count external chunks first."""

    n_external: int
    indices: list[torch.Tensor] = field(default_factory=list)  # per layer (B, T, Hkv, K)
    weights: list[torch.Tensor] = field(default_factory=list)


@dataclass
class RetrievalProbe:
    """Asks `forward` for each HSA group's retrieval query at chosen positions, and the sequence's own
    landmarks: what training's retrieval loss scores (hsa_core/train.py)."""

    mask: torch.Tensor  # (B, T) bool: the positions to probe
    queries: list[torch.Tensor] = field(default_factory=list)  # per group (N, Hkv, Dl), N = mask.sum()
    landmarks: torch.Tensor | None = None  # (B, C, Hkv, Dl)
    scale: float = 1.0  # of the scores q·landmark, as Retrieval scales them
    lag: int = 0  # HSAConfig.select_lag: chunk c is visible from position (c+1)·S + lag


class HSAModel(nn.Module):
    def __init__(self, cfg: HSAConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.lower = nn.ModuleList(Block(cfg) for _ in range(cfg.n_lower))
        self.encoder = ChunkEncoder(cfg)
        self.groups = nn.ModuleList(Group(cfg) for _ in range(cfg.n_groups))
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.tokenizer = None  # set by load_model
        # the tokenizer's pieces as parts of words (lexical.word_pieces), for lexical_words: set from the
        # tokenizer when the part is made (until then every token is a word of its own)
        table = -torch.arange(1, cfg.vocab_size + 1) if cfg.lexical_words else None
        self.register_buffer("word_pieces", table)
        self.backend = "auto"  # kernels.hsa_attention backend
        self.hsa = True  # False inside without_hsa()
        self._df_of = None  # (landmarks, df) of the last external memory (_memory_df)
        self._words_of = None  # (landmarks, WordIndex) of the last external memory (_memory_words)
        self.apply(self._init_weights)
        if self.encoder.cls is not None:
            nn.init.normal_(self.encoder.cls, std=cfg.init_std)
        if self.encoder.mean_proj is not None:  # starts as no change: a trained model grown with it
            nn.init.zeros_(self.encoder.mean_proj.weight)  # computes what it computed

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the two halves ---------------------------------------------------------------------------

    def _lower(self, input_ids, doc, rope, state: State | None) -> torch.Tensor:
        x = self.embed(input_ids)
        for i, block in enumerate(self.lower):
            x, cache = block(x, rope, doc, state.lower[i] if state else None)
            if state:
                state.lower[i] = cache
        return x

    def _chunks(self, h: torch.Tensor, ids: torch.Tensor, state: State | None):
        """Encode the chunks that h (B, T, d) of ids (B, T) completes, after any pending states of the last
        call."""
        S = self.cfg.chunk_size
        if state is not None:
            h, ids = torch.cat([state.pending, h], 1), torch.cat([state.pending_ids, ids], 1)
        B, T, d = h.shape
        n = T // S
        if state is not None:
            state.pending, state.pending_ids = h[:, n * S :], ids[:, n * S :]
        lmk, k, v = self.encoder(
            h[:, : n * S].reshape(B * n, S, d), ids[:, : n * S].reshape(B * n, S), self.word_pieces
        )
        return lmk.view(B, n, *lmk.shape[1:]), k.view(B, n, *k.shape[1:]), v.view(B, n, *v.shape[1:])

    def _upper(
        self,
        x,
        doc,
        rope,
        positions,
        own,
        memory: MemoryView | None,
        state,
        selections,
        top_k,
        probe,
        lexical,
    ):
        own_lmk, own_k, own_v = own
        B = x.shape[0]
        ext_lmk = memory.landmarks if memory is not None else None
        n_ext = ext_lmk.shape[0] if ext_lmk is not None else 0
        cfg = self.cfg
        exact = self._word_matches(lexical, x.shape[1], own_lmk, ext_lmk, positions) if self.hsa else None
        binned = lexical if lexical and not self._exact else None
        idf = self._lexical_idf(own_lmk, ext_lmk, positions) if binned and cfg.lexical_bm25 else None
        j = 0
        for group in self.groups:
            if not self.hsa:
                x = self._blocks(group, x, rope, doc, state, j)
                j += len(group.blocks)
                continue
            bags = group.retrieval.bags(*binned, x.shape[1], self.word_pieces) if binned else None
            if idf is not None:
                bags = bags * idf
            words = exact.scores(group.retrieval.lex_weight) if exact is not None else None
            indices, weights = group.retrieval(x, positions, own_lmk, ext_lmk, top_k, bags, words)
            k, v, local = own_k, own_v, indices
            if n_ext:
                # gather only the external chunks some token picked; renumber indices into [ext | own]
                is_ext = (indices >= 0) & (indices < n_ext)
                rows = torch.unique(indices[is_ext])
                ek, ev = memory.gather(rows)
                ek, ev = ek.to(x.dtype), ev.to(x.dtype)
                local = torch.where(
                    is_ext,
                    torch.searchsorted(rows, indices.clamp(0, max(n_ext - 1, 0)).contiguous()),
                    torch.where(indices >= 0, indices - n_ext + rows.numel(), -1),
                )
                k = torch.cat([ek[None].expand(B, *ek.shape), own_k], 1)
                v = torch.cat([ev[None].expand(B, *ev.shape), own_v], 1)
            if selections is not None:
                selections.indices.append(indices)
                selections.weights.append(weights)
            if probe is not None:
                probe.queries.append(
                    group.retrieval.query(x[probe.mask], bags[probe.mask] if binned else None)
                )
            x = group.hsa(x, k, v, local, weights, self.backend)
            x = self._blocks(group, x, rope, doc, state, j)
            j += len(group.blocks)
        return x

    def _blocks(self, group: Group, x, rope, doc, state: State | None, j: int) -> torch.Tensor:
        """A group's SWA layers; j: the first one's index among all upper SWA layers (its cache)."""
        for i, block in enumerate(group.blocks, j):
            x, cache = block(x, rope, doc, state.upper[i] if state else None)
            if state:
                state.upper[i] = cache
        return x

    def _lexical_idf(self, own_lmk, ext_lmk, positions) -> torch.Tensor:
        """(B, T, lexical_dim): each bin's IDF (lexical.bm25_idf) over the chunks each position can select,
        the external memory's and its own sequence's visible ones."""
        cfg = self.cfg
        held = (own_lmk[..., 0, cfg.dense_dim :] > 0).float()
        own = torch.cat([held.new_zeros(held.shape[0], 1, cfg.lexical_dim), held], 1).cumsum(1)
        # own[b, n]: how many of the sequence's first n chunks hold each bin
        visible = ((positions - cfg.select_lag) // cfg.chunk_size).clamp(0, own.shape[1] - 1)  # (T,)
        df, n = own[:, visible], visible.to(own.dtype)[None, :, None]
        if ext_lmk is not None and ext_lmk.shape[0]:
            df, n = df + self._memory_df(ext_lmk), n + ext_lmk.shape[0]
        return bm25_idf(df, n)

    def _word_matches(self, lexical, T: int, own_lmk, ext_lmk, positions) -> WordMatches | None:
        """lexical_exact: the query words of the last T positions and where they occur among the chunks
        each position can select (None without lexical_exact)."""
        cfg = self.cfg
        if not lexical or not self._exact:
            return None
        ids, doc = lexical
        hashes, held = window_words(ids, self.word_pieces, cfg.lexical_window, doc)
        visible = ((positions - cfg.select_lag) // cfg.chunk_size).clamp(0, own_lmk.shape[1])
        external = self._memory_words(ext_lmk) if ext_lmk is not None and ext_lmk.shape[0] else None
        own = own_lmk[:, :, 0, cfg.dense_dim :]
        return WordMatches(hashes[:, -T:], held[:, -T:], own, visible, external)

    @property
    def _exact(self) -> bool:
        """lexical_exact reads the lexical part by exact words outside training; training, which reads no
        memory, scores bins as the part was trained, so a model read by words fine-tunes as before."""
        return self.cfg.lexical_exact and not self.training

    def _memory_words(self, ext_lmk: torch.Tensor) -> WordIndex:
        """An external memory's WordIndex, kept while the same landmarks come back."""
        cached = self._words_of
        if cached is None or cached[0]() is not ext_lmk:
            self._words_of = cached = (weakref.ref(ext_lmk), WordIndex(ext_lmk[:, 0, self.cfg.dense_dim :]))
        return cached[1]

    def _memory_df(self, ext_lmk: torch.Tensor) -> torch.Tensor:
        """(lexical_dim,): how many of an external memory's chunks hold each bin, kept while the same
        landmarks come back (each token of an answer scans the same memory)."""
        cached = self._df_of
        if cached is None or cached[0]() is not ext_lmk:
            df = (ext_lmk[:, 0, self.cfg.dense_dim :] > 0).sum(0, dtype=torch.float32)
            self._df_of = cached = (weakref.ref(ext_lmk), df)
        return cached[1]

    @contextmanager
    def without_hsa(self) -> Iterator["HSAModel"]:
        """The model without its retrieval and HSA layers (no memory, no selections): a retrofit whose
        HSA parts are switched off computes its base on the window, which reads a context placed in
        the window as the base does (app/service.py, reread)."""
        self.hsa = False
        try:
            yield self
        finally:
            self.hsa = True

    def _lexical_ids(self, input_ids, doc, state: State | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ids (B, ≥T) whose windows make the lexical queries of input_ids' positions and their
        document ids: from a lexical_stop token (the stop included) to the next lexical_resume token (the
        resume included: a chat's role word is not the question's) or the document's end a token is -1
        (joins nothing); with a state, the stream's last tokens come first and the window ignores
        documents."""
        cfg = self.cfg
        t = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        last_stop = torch.where(input_ids == cfg.lexical_stop, t, -1).cummax(1).values
        last_resume = torch.where(input_ids == cfg.lexical_resume, t, -1).cummax(1).values
        if doc is not None:  # marks before the position's document count nothing
            start = torch.ones_like(doc, dtype=torch.bool)
            start[:, 1:] = doc[:, 1:] != doc[:, :-1]
            doc_start = torch.where(start, t, 0).cummax(1).values
            last_stop = torch.where(last_stop >= doc_start, last_stop, -1)
        after = last_stop > last_resume
        mark = input_ids == cfg.lexical_resume
        if state is None:
            return torch.where(after | mark, -1, input_ids), doc
        after = after | (state.stopped & (last_stop < 0) & (last_resume < 0))  # no mark yet in this call
        state.stopped = after[:, -1:]
        ids = torch.cat([state.recent, torch.where(after | mark, -1, input_ids)], 1)
        state.recent = ids[:, ids.shape[1] - state.recent.shape[1] :]
        return ids, None

    # -- public paths -----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        doc_ids: torch.Tensor | None = None,
        memory: MemoryView | None = None,
        state: State | None = None,
        selections: Selections | None = None,
        last_only: bool = False,
        top_k: int | None = None,
        probe: RetrievalProbe | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for input_ids (B, T).

        doc_ids (B, T): SWA never crosses a document boundary (HSA may: that is retrieval).
        memory: an external chunk memory read as if it preceded the sequence beyond the window.
        state: continue a sequence (generation, segmented prefill); updated in place.
        selections: if given, filled with every HSA layer's picks.
        top_k: chunks per token and HSA layer, instead of the config's (e.g. a reader's setting).
        probe: if given, filled with the retrieval queries at its positions and the own landmarks.
        """
        cfg = self.cfg
        B, T = input_ids.shape
        p0 = state.pos if state else 0
        positions = torch.arange(p0, p0 + T, device=input_ids.device)
        rope = rope_angles(positions, cfg.head_dim, cfg.rope_theta)
        x = self._lower(input_ids, doc_ids, rope, state)
        new = self._chunks(x, input_ids, state)
        lexical = None  # the ids whose last lexical_window tokens make each position's lexical query
        if cfg.lexical_dim:
            lexical = self._lexical_ids(input_ids, doc_ids, state)
        if state is not None:
            state.landmarks = torch.cat([state.landmarks, new[0]], 1)
            state.k, state.v = torch.cat([state.k, new[1]], 1), torch.cat([state.v, new[2]], 1)
            state.pos += T
            own = (state.landmarks, state.k, state.v)
        else:
            own = new
        if probe is not None:
            probe.landmarks, probe.scale, probe.lag = own[0], cfg.dense_dim**-0.5, cfg.select_lag
        x = self._upper(x, doc_ids, rope, positions, own, memory, state, selections, top_k, probe, lexical)
        if last_only:
            x = x[:, -1:]
        return F.linear(self.norm(x), self.embed.weight)

    def new_state(self, batch: int = 1) -> State:
        cfg, p = self.cfg, next(self.parameters())
        empty = lambda: WindowCache.empty(cfg, batch, p.device, p.dtype)  # noqa: E731
        z = lambda *shape: torch.zeros(batch, *shape, device=p.device, dtype=p.dtype)  # noqa: E731
        S, Hkv = cfg.chunk_size, cfg.hsa_kv_heads
        return State(
            pos=0,
            lower=[empty() for _ in self.lower],
            upper=[empty() for g in self.groups for _ in g.blocks],
            pending=z(0, cfg.d_model),
            pending_ids=torch.zeros(batch, 0, dtype=torch.long, device=p.device),
            recent=torch.full((batch, cfg.lexical_history), -1, device=p.device),
            stopped=torch.zeros(batch, 1, dtype=torch.bool, device=p.device),
            landmarks=z(0, Hkv, cfg.landmark_dim),
            k=z(0, S, Hkv, cfg.head_dim),
            v=z(0, S, Hkv, cfg.head_dim),
        )

    @torch.no_grad()
    def encode_memory(
        self, input_ids: torch.Tensor, pad_id: int | None = None, segment: int = 8192
    ) -> ChunkMemory:
        """Landmarks and chunk K/V of one document (1-D token ids), encoded on its own.

        Runs only the lower layers and the chunk encoder, segment by segment with the SWA caches, so a
        document of any length costs O(T·W). A trailing partial chunk is filled with `pad_id` (none:
        dropped).
        """
        if input_ids.dim() != 1:
            raise ValueError(
                f"encode_memory takes one document as 1-D token ids, got shape {tuple(input_ids.shape)}"
            )
        S = self.cfg.chunk_size
        if pad_id is not None and input_ids.numel() % S:
            fill = input_ids.new_full((S - input_ids.numel() % S,), pad_id)
            input_ids = torch.cat([input_ids, fill])
        state = self.new_state(1)
        parts = []
        for s0 in range(0, input_ids.numel(), segment):
            ids = input_ids[None, s0 : s0 + segment]
            positions = torch.arange(s0, s0 + ids.shape[1], device=ids.device)
            rope = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_theta)
            parts.append(self._chunks(self._lower(ids, None, rope, state), ids, state))
        lmk, k, v = (torch.cat([p[i][0] for p in parts]) for i in range(3))
        return ChunkMemory(lmk, k, v)

    @torch.no_grad()
    def encode_documents(self, documents: list[torch.Tensor], pad_id: int) -> list[ChunkMemory]:
        """`encode_memory` of several short documents in one pass, each exactly as if encoded alone.

        The documents are packed into one sequence, each padded to whole chunks with `pad_id`: document
        ids keep every sliding window inside its document, no chunk straddles two, and RoPE is relative,
        so the model runs a few large matrix products instead of many small ones. The whole pack is one
        segment: keep it to what fits in memory at once (long documents go through `encode_memory`).
        """
        S = self.cfg.chunk_size
        device = next(self.parameters()).device
        for i, ids in enumerate(documents):
            if ids.dim() != 1:
                raise ValueError(f"document {i}: expected 1-D token ids, got shape {tuple(ids.shape)}")
        counts = [-(-ids.numel() // S) for ids in documents]
        # padding as views of one buffer, row ids as views of one arange, document ids in one op: few small
        # kernels per document (a GPU batch holds hundreds); the one copy from the host is pinned, so
        # nothing here waits for the GPU
        fill = torch.full((S,), pad_id, dtype=torch.long, device=device)
        packed = torch.cat([p for ids in documents for p in (ids.to(device), fill[: -ids.numel() % S])])[None]
        lengths = torch.tensor(counts, pin_memory=device.type == "cuda").to(device, non_blocking=True) * S
        doc = torch.arange(len(counts), device=device).repeat_interleave(
            lengths, output_size=packed.shape[1]
        )[None]
        positions = torch.arange(packed.shape[1], device=device)
        rope = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_theta)
        lmk, k, v = (t[0] for t in self._chunks(self._lower(packed, doc, rope, None), packed, None))
        rows = torch.arange(max(counts, default=0), device=device)
        per_doc = zip(lmk.split(counts), k.split(counts), v.split(counts), counts, strict=True)
        return [ChunkMemory(lm, kd, vd, rows[:n]) for lm, kd, vd, n in per_doc]

    def generate(self, prompt_ids: torch.Tensor, memory: MemoryView | None = None, **kwargs):
        """Stream tokens after prompt_ids (1-D); see hsa_core.generate.generate."""
        from hsa_core.generate import generate

        return generate(self, prompt_ids, memory=memory, **kwargs)
