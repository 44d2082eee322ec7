"""The lexical part of landmarks and retrieval queries: hashed token bins, so that a query shares a score
with the chunks that hold its words.

A chunk's part marks the bins of the tokens it holds (token id mod `lexical_dim`); a query's part sums a
learnt weight per token over its last `lexical_window` tokens into the same bins. Their dot product is the
weighted count of the query's words the chunk holds, collisions aside: what keyword search ranks by, and
what the learnt landmark never learnt for a needle's key (docs/training-notes.md, run 11).

With word bins (`lexical_words`) a bin holds a whole word: its pieces (up to WORD_PIECES; a piece that
starts with a space or follows punctuation or a newline starts a word), lower-cased, hashed together,
each bin weighted on the query side. A word is counted in a query once it is complete (the next token starts
another) and while it is being written (the position's own word so far).
"""

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from hsa_core.config import LEXICAL_SLOT, WORD_PIECES
from hsa_core.corpus import Corpus

# odd multipliers of a word's last pieces (the last first), then one to mix the key's bits into a bin
PIECE_MULTIPLIERS = (
    0x2545F4914F6CDD1D,
    0x5851F42D4C957F2D,
    0x14057B7EF767814F,
    0x3C6EF372FE94F82B,
    0x27BB2EE687B0B0FD,
    0x1B873593CC9E2D51,
    0x6C62272E07BB0143,
    0x4CF5AD432745937F,
)
MIX = 0x1E3779B97F4A7C15


BM25_K1 = 1.2  # keyword search's term-count saturation (SQLite FTS5's and most engines' default)
EXACT_BITS = 24  # lexical_exact: a word's hash kept to 24 bits, three bytes that bf16 landmarks hold exactly


def chunk_bins(ids: torch.Tensor, dim: int, counts: bool = False) -> torch.Tensor:
    """ids (N, S) → (N, dim): 1 in the bin of each token the chunk holds (counts: how many times)."""
    marks = torch.zeros(ids.shape[0], dim, device=ids.device)
    marks = marks.scatter_add_(1, ids.long() % dim, torch.ones(ids.shape, device=ids.device))
    return marks if counts else marks.clamp_(max=1)


def saturated(counts: torch.Tensor) -> torch.Tensor:
    """BM25's term-count saturation f·(k1+1)/(f+k1): 1 for a word held once, at most k1+1 however often."""
    return counts * (BM25_K1 + 1) / (counts + BM25_K1)


def bm25_idf(df: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """BM25's IDF of bins held by df of n chunks, divided by that of a bin one chunk holds, so that a word
    only one chunk holds keeps its learnt weight and one that every chunk holds weighs almost nothing."""
    raw = lambda d: torch.log((n - d + 0.5) / (d + 0.5) + 1)  # noqa: E731
    return raw(df) / raw(torch.ones_like(n))


def window_bags(
    ids: torch.Tensor, weights: torch.Tensor, dim: int, window: int, doc: torch.Tensor | None = None
) -> torch.Tensor:
    """ids (B, T) → (B, T, dim): at each position, the weights of its last `window` tokens (itself included,
    none before its document's start when doc (B, T) is given) summed into their bins. Ids < 0 count
    nothing (an empty history)."""
    valid = ids >= 0
    safe = ids.clamp(min=0)
    per_token = torch.zeros(*ids.shape, dim, device=ids.device, dtype=weights.dtype)
    per_token.scatter_(2, (safe % dim)[..., None], (weights[safe] * valid)[..., None])
    return _window_sums(per_token, window, doc)


def word_pieces(pieces: Sequence[str]) -> torch.Tensor:
    """(V,) int64 from a byte-level BPE vocabulary's pieces: 0 for a piece with no letter or digit (it
    separates words), else a hash of its text lower-cased and stripped, negative when the piece starts a
    word (a space first, or a first character that is not a letter or digit). Each piece is read as the
    bytes it stands for, so " Debian", "Debian" after a newline and " debian" make one word, and a curly
    quote is punctuation, not the letters its byte-level spelling looks like. A byte of a character split
    across pieces counts as a letter: it stays inside its word."""
    codes = []
    for piece in pieces:
        text = bytes(_BYTE_OF.get(c, 32) for c in piece).decode("utf-8", "surrogateescape")
        word = text.strip().lower()
        if not any(_is_letter(c) for c in word):
            codes.append(0)
            continue
        code = zlib.crc32(word.encode("utf-8", "surrogateescape")) + 1
        codes.append(code if _is_letter(text[0]) else -code)
    return torch.tensor(codes, dtype=torch.int64)


def _byte_alphabet() -> dict[str, int]:
    """Byte-level BPE's spelling of bytes (GPT-2's): printable bytes are their own character, the others
    (space, controls, 127-160, 173) are 256 onwards in order; "Ġ" is a space, "Ċ" a newline."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}


_BYTE_OF = _byte_alphabet()


def _is_letter(c: str) -> bool:
    """A letter or digit, or a byte of a character split across pieces (an undecoded surrogate)."""
    return c.isalnum() or "\udc80" <= c <= "\udcff"


def word_hashes(
    ids: torch.Tensor, table: torch.Tensor, doc: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (B, T) → a hash (B, T) in [0, 2^31) of the word each position ends so far (its last
    WORD_PIECES pieces), whether the position starts a word, and whether it is in a word at all (B, T)
    bool; table (V,) from word_pieces. A piece after a separator, a document's first and the first
    position start a word; ids < 0 are separators. A word's bin is its hash mod lexical_dim, its weight
    the per-token weights' entry at its hash mod their size: rarer words keep their own weight where
    they share a bin."""
    code = torch.where(ids >= 0, table[ids.clamp(min=0)], 0)
    word = code != 0
    start = (code < 0) | ~word | ~_shift(word, 1, False)
    start[:, 0] = True
    if doc is not None:
        start[:, 1:] |= doc[:, 1:] != doc[:, :-1]
    piece = code.abs()
    key = torch.zeros_like(piece)
    inside = torch.ones_like(start)  # the piece k back still belongs to the position's word
    for k in range(WORD_PIECES):
        key = key + torch.where(inside, _shift(piece, k, 0) * PIECE_MULTIPLIERS[k], 0)
        inside = inside & ~_shift(start, k, True)
    return torch.remainder((key * MIX) >> 32, 2**31), start, word


def chunk_word_bins(ids: torch.Tensor, table: torch.Tensor, dim: int, counts: bool = False) -> torch.Tensor:
    """ids (N, S) → (N, dim): 1 in the bin of each word the chunk holds (counts: how many times; a
    chunk's first piece starts a word, its last ends one)."""
    hashes, ends = chunk_words(ids, table)
    marks = torch.zeros(ids.shape[0], dim + 1, device=ids.device)
    ones = torch.ones(ids.shape, device=ids.device)
    marks = marks.scatter_add_(1, torch.where(ends, hashes % dim, dim), ones)[:, :dim]
    return marks if counts else marks.clamp_(max=1)


def chunk_words(ids: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (N, S) → word hashes (N, S) and where a word of the chunk ends (N, S) bool."""
    hashes, start, word = word_hashes(ids, table)
    return hashes, torch.cat([start[:, 1:], torch.ones_like(start[:, :1])], 1) & word


def window_word_bags(
    ids: torch.Tensor,
    weights: torch.Tensor,
    table: torch.Tensor,
    dim: int,
    window: int,
    doc: torch.Tensor | None = None,
) -> torch.Tensor:
    """ids (B, T) → (B, T, dim): at each position, the weights of the words completed in its last
    `window` tokens (a word completes where the next starts) and of its own word so far, in their bins;
    nothing before its document's start, nothing for ids < 0."""
    hashes, start, word = word_hashes(ids, table, doc)
    weight = weights[hashes % weights.numel()]
    completed = start & _shift(word, 1, False)  # the word the previous position ended
    if doc is not None:
        completed &= doc == _shift(doc, 1, -1)
    per_token = torch.zeros(*ids.shape, dim, device=ids.device, dtype=weights.dtype)
    per_token.scatter_(
        2, _shift(hashes % dim, 1, 0)[..., None], (_shift(weight, 1, 0) * completed)[..., None]
    )
    sums = _window_sums(per_token, window, doc)
    return sums.scatter_add(2, (hashes % dim)[..., None], (weight * word)[..., None])


def window_words(
    ids: torch.Tensor, table: torch.Tensor, window: int, doc: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) → the words window_word_bags puts in bins, one by one: at each position the words
    completed in its last `window` tokens and its own word so far, as hashes (B, T, window + 1) and
    whether each slot holds a word (B, T, window + 1) bool. A word's weight is the per-token weights'
    entry at its hash mod their size, as in bins."""
    hashes, start, word = word_hashes(ids, table, doc)
    completed = start & _shift(word, 1, False)  # the word the previous position ended
    if doc is not None:
        completed &= doc == _shift(doc, 1, -1)
    done = _shift(hashes, 1, 0)
    B, T = ids.shape
    t = torch.arange(T, device=ids.device)
    source = t[:, None] - torch.arange(window, device=ids.device)  # (T, window): the positions looked at
    inside = source[None] >= _window_starts(B, T, window, doc, ids.device)[..., None]
    source = source.clamp(min=0).flatten().expand(B, -1)
    held = completed.gather(1, source).view(B, T, window) & inside
    return (
        torch.cat([done.gather(1, source).view(B, T, window), hashes[..., None]], -1),
        torch.cat([held, word[..., None]], -1),
    )


def word_slots(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """ids (N, S) → (N, LEXICAL_SLOT·S): lexical_exact's part of a chunk's landmark. Its distinct words
    first, each as the three bytes of its hash (EXACT_BITS) and its saturated count; then empty slots
    (all zero: count 0). Integers below 256 and the counts survive bf16."""
    hashes, ends = chunk_words(ids, table)
    N, S = ids.shape
    keys = torch.where(ends, hashes % 2**EXACT_BITS, -1)
    counts = ((keys[:, :, None] == keys[:, None, :]) & (keys >= 0)[:, :, None]).sum(-1)
    earlier = torch.ones(S, S, dtype=torch.bool, device=ids.device).tril(-1)  # [i, j]: j before i
    first = (keys >= 0) & ~((keys[:, :, None] == keys[:, None, :]) & earlier).any(-1)
    order = (~first).to(torch.uint8).argsort(dim=1, stable=True)  # a word's first occurrences first
    keys, counts, first = keys.gather(1, order), counts.gather(1, order), first.gather(1, order)
    slots = torch.stack([keys >> 16 & 255, keys >> 8 & 255, keys & 255, torch.zeros_like(keys)], -1).float()
    slots[..., 3] = saturated(counts.float())
    return torch.where(first[..., None], slots, 0.0).flatten(1)


def slot_words(lexical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """word_slots' part (..., LEXICAL_SLOT·S) → the words' hashes (..., S) (-1: an empty slot) and their
    saturated counts (..., S)."""
    x = lexical.float().unflatten(-1, (-1, LEXICAL_SLOT))
    b = x[..., :3].round().long()
    keys = b[..., 0] << 16 | b[..., 1] << 8 | b[..., 2]
    return torch.where(x[..., 3] > 0, keys, -1), x[..., 3]


class WordIndex:
    """Chunks' words sorted by hash (postings): which chunks hold a word, with its saturated count."""

    def __init__(self, lexical: torch.Tensor):
        """lexical (C, LEXICAL_SLOT·S): the chunks' word_slots."""
        keys, counts = slot_words(lexical)
        C, S = keys.shape
        held = keys.flatten() >= 0
        chunk = torch.arange(C, device=keys.device).repeat_interleave(S)[held]
        keys, counts = keys.flatten()[held], counts.flatten()[held]
        order = keys.argsort()
        self.keys, self.chunks, self.counts, self.n = keys[order], chunk[order], counts[order], C

    def lookup(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """query (N,) hashes → for each chunk holding a query word: the query's index, the chunk, the
        count (each (P,)); and each query word's document frequency (N,)."""
        lo = torch.searchsorted(self.keys, query)
        df = torch.searchsorted(self.keys, query, right=True) - lo
        row = torch.arange(len(query), device=query.device).repeat_interleave(df)
        first = (df.cumsum(0) - df).repeat_interleave(df)
        at = lo.repeat_interleave(df) + torch.arange(len(row), device=query.device) - first
        return row, self.chunks[at], self.counts[at], df


class WordMatches:
    """Where each position's query words occur among the chunks it can select, the external memory's
    first, then its own sequence's visible ones, with each word's BM25 IDF over those chunks: found once
    per forward pass, scored by each HSA group with its own per-word weights."""

    def __init__(
        self,
        hashes: torch.Tensor,
        held: torch.Tensor,
        own: torch.Tensor,
        visible: torch.Tensor,
        external: WordIndex | None,
    ):
        """hashes, held (B, T, Q): window_words; own (B, Co, LEXICAL_SLOT·S): the sequence's chunks'
        word_slots; visible (T,): how many of them each position can select; external: the memory's."""
        B, T, Q = hashes.shape
        self.hashes, self.held, self.shape = hashes, held, (B, T, own.shape[1])
        keys = torch.where(held, hashes % 2**EXACT_BITS, -1).flatten()
        n_ext = external.n if external is not None else 0
        rows, chunks, counts = [], [], []
        df = torch.zeros(B * T * Q, device=hashes.device)
        if external is not None:
            r, c, k, d = external.lookup(keys)
            rows.append(r), chunks.append(c), counts.append(k)
            df += d
        per_row = T * Q
        for b in range(B):
            r, c, k, _ = WordIndex(own[b]).lookup(keys[b * per_row : (b + 1) * per_row])
            seen = c < visible[r // Q]
            r, c, k = r[seen] + b * per_row, c[seen] + n_ext, k[seen]
            rows.append(r), chunks.append(c), counts.append(k)
            df += torch.bincount(r, minlength=B * T * Q)
        self.row, self.chunk, self.count = torch.cat(rows), torch.cat(chunks), torch.cat(counts)
        n = (visible.to(df.dtype) + n_ext)[None, :, None].expand(B, T, Q).flatten()
        self.idf = torch.where(keys >= 0, bm25_idf(df, n), 0.0)
        self.n_chunks = n_ext + own.shape[1]

    def scores(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, T, n_ext + Co): each chunk's Σ over the query's words it holds of weight × IDF × count;
        weights (V,) per word at its hash mod V."""
        B, T, Q = self.hashes.shape
        w = (weights.float()[self.hashes % weights.numel()] * self.held).flatten() * self.idf
        out = torch.zeros(B * T, self.n_chunks, device=w.device)
        out.index_put_((self.row // Q, self.chunk), w[self.row] * self.count, accumulate=True)
        return out.view(B, T, self.n_chunks)


def _shift(x: torch.Tensor, k: int, fill) -> torch.Tensor:
    """x (B, T) moved k positions later along T, the first k filled."""
    k = min(k, x.shape[1])
    return torch.cat([x.new_full((x.shape[0], k), fill), x[:, : x.shape[1] - k]], 1)


def _window_sums(per_token: torch.Tensor, window: int, doc: torch.Tensor | None) -> torch.Tensor:
    """per_token (B, T, dim) → at each position, the sum over its last `window` positions (itself
    included) within its document."""
    B, T, dim = per_token.shape
    sums = torch.cat([per_token.new_zeros(B, 1, dim), per_token.cumsum(1)], 1)  # sums[t] = Σ_{i<t}
    start = _window_starts(B, T, window, doc, per_token.device)
    return sums[:, 1:] - sums.gather(1, start[..., None].expand(B, T, dim))


def _window_starts(B: int, T: int, window: int, doc: torch.Tensor | None, device=None) -> torch.Tensor:
    """(B, T): the first position of each position's window, within its document."""
    device = doc.device if doc is not None else device
    t = torch.arange(T, device=device).expand(B, T)
    start = (t - window + 1).clamp(min=0)
    if doc is not None:
        boundary = torch.ones_like(doc, dtype=torch.bool)
        boundary[:, 1:] = doc[:, 1:] != doc[:, :-1]
        doc_start = torch.where(boundary, t, torch.zeros_like(t)).cummax(1).values
        start = torch.maximum(start, doc_start)
    return start


def idf(
    corpus: str,
    size: int,
    chunk_size: int,
    max_tokens: int = 20_000_000,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """log((N + 1) / (df + 1)) per token, or with a word_pieces table per word's weight slot (its hash mod
    size; size: the vocabulary), df counted over the corpus's chunks of chunk_size tokens: the start of
    the per-token weights, so that words seen everywhere start weak."""
    c = Corpus(corpus)
    df = np.zeros(size)
    n, budget = 0, max_tokens
    for source in c.sources:
        tokens = c.tokens(source)[:budget].astype(np.int64)
        chunks = tokens[: len(tokens) // chunk_size * chunk_size].reshape(-1, chunk_size)
        if table is None:
            chunks = np.sort(chunks, 1)
            first = np.ones_like(chunks, dtype=bool)
            first[:, 1:] = chunks[:, 1:] != chunks[:, :-1]
            df += np.bincount(chunks[first], minlength=size)[:size]
        else:  # a word's slot, once per chunk where it ends
            hashes, ends = chunk_words(torch.from_numpy(chunks), table)
            slots = torch.where(ends, hashes % size, -1).sort(1).values.numpy()
            first = np.ones_like(slots, dtype=bool)
            first[:, 1:] = slots[:, 1:] != slots[:, :-1]
            df += np.bincount(slots[first & (slots >= 0)], minlength=size)[:size]
        n += len(chunks)
        budget -= len(tokens)
        if budget <= 0:
            break
    return torch.tensor(np.log((n + 1) / (df + 1)), dtype=torch.float32)
