"""The lexical part of landmarks and retrieval queries: hashed token bins, so that a query shares a score
with the chunks that hold its words.

A chunk's part marks the bins of the tokens it holds (token id mod `lexical_dim`); a query's part sums a
learnt weight per token over its last `lexical_window` tokens into the same bins. Their dot product is the
weighted count of the query's words the chunk holds, collisions aside: what keyword search ranks by, and
what the learnt landmark never learnt for a needle's key (docs/training-notes.md, run 11).
"""

import numpy as np
import torch

from hsa_core.corpus import Corpus


def chunk_bins(ids: torch.Tensor, dim: int) -> torch.Tensor:
    """ids (N, S) → (N, dim): 1 in the bin of each token the chunk holds."""
    return torch.zeros(ids.shape[0], dim, device=ids.device).scatter_(1, ids.long() % dim, 1.0)


def window_bags(
    ids: torch.Tensor, weights: torch.Tensor, dim: int, window: int, doc: torch.Tensor | None = None
) -> torch.Tensor:
    """ids (B, T) → (B, T, dim): at each position, the weights of its last `window` tokens (itself included,
    none before its document's start when doc (B, T) is given) summed into their bins. Ids < 0 count
    nothing (an empty history)."""
    B, T = ids.shape
    valid = ids >= 0
    safe = ids.clamp(min=0)
    per_token = torch.zeros(B, T, dim, device=ids.device, dtype=weights.dtype)
    per_token.scatter_(2, (safe % dim)[..., None], (weights[safe] * valid)[..., None])
    sums = torch.cat([per_token.new_zeros(B, 1, dim), per_token.cumsum(1)], 1)  # sums[t] = Σ_{i<t}
    t = torch.arange(T, device=ids.device).expand(B, T)
    start = (t - window + 1).clamp(min=0)
    if doc is not None:
        boundary = torch.ones_like(doc, dtype=torch.bool)
        boundary[:, 1:] = doc[:, 1:] != doc[:, :-1]
        doc_start = torch.where(boundary, t, torch.zeros_like(t)).cummax(1).values
        start = torch.maximum(start, doc_start)
    return sums[:, 1:] - sums.gather(1, start[..., None].expand(B, T, dim))


def idf(corpus: str, vocab_size: int, chunk_size: int, max_tokens: int = 20_000_000) -> torch.Tensor:
    """log((N + 1) / (df + 1)) per token, df counted over the corpus's chunks of chunk_size tokens: the
    start of the per-token weights, so that words seen everywhere start weak."""
    c = Corpus(corpus)
    df = np.zeros(vocab_size)
    n, budget = 0, max_tokens
    for source in c.sources:
        tokens = c.tokens(source)[:budget].astype(np.int64)
        chunks = np.sort(tokens[: len(tokens) // chunk_size * chunk_size].reshape(-1, chunk_size), 1)
        first = np.ones_like(chunks, dtype=bool)
        first[:, 1:] = chunks[:, 1:] != chunks[:, :-1]
        df += np.bincount(chunks[first], minlength=vocab_size)[:vocab_size]
        n += len(chunks)
        budget -= len(tokens)
        if budget <= 0:
            break
    return torch.tensor(np.log((n + 1) / (df + 1)), dtype=torch.float32)
