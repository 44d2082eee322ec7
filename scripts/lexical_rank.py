"""How well a lexical ranking alone could find the real-document benchmark's answering pages.

For each of docqa_real's questions, chunks are ranked by a bag of hashed bins only, no learnt part,
and a question scores if its page is among the pages of the 5 best chunks, as `hsa eval --tasks
docqa_real` scores the whole model. The chunks are the ones the benchmark ranks: the PDF ingested with
the model into a temporary store, each chunk's text encoded again and on the page the store gives it
(before the seventeenth session the probe cut the pages' tokens itself, and lost pages at chunk
borders: 52 of 56 where the store's chunks give 56). Two kinds of bins:

- tokens, the model's own lexical part: the query the model forms where the answer starts (the
  per-token weights of its last lexical_window prompt tokens, those from lexical_stop on left out)
  against each chunk's token bins; weights: each HSA group's learnt ones, and uniform ones;
- words (`--words`): whole words hashed into `--bins` bins as `lexical_words` hashes them (a word's
  pieces together, hsa_core/lexical.py), or with `--text-words` as keyword search cuts them (runs of
  letters and digits of the chunk's text, lower-cased, crc32), the question's words against each
  chunk's; weights: uniform, or the IDF of the bin over this document's chunks (as keyword search
  weighs by its collection), each with and without the keyword baseline's stop words.

Read against the model's own figure and keyword search's (docs/retrofit.md, eleventh session).

- `--bm25`: the model's own lexical_bm25 score (learnt weight × IDF × saturated count) computed here, once
  with the model's bins and once with exact words, pages at rank 1, 3 and 5 beside keyword search's:
  what a sparse lexical memory of exact words would gain (docs/retrofit.md, twentieth session).

PYTHONPATH=. python scripts/lexical_rank.py [MODEL] [--words [--text-words] [--bins N] | --bm25]
    [--documents r-data]
"""

import argparse
import re
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import torch

from app.docqa_real import COLLECTION, DATA, DOCUMENTS, STOPWORDS, keyword_chunks, load_questions
from hsa_core.lexical import (
    bm25_idf,
    chunk_bins,
    chunk_word_bins,
    chunk_words,
    saturated,
    window_bags,
    word_pieces,
)
from ingest import Encoder, ingest
from storage import Store


def store_chunks(
    encoder: Encoder, documents: str, questions=()
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[list[int]]]:
    """The document's chunks as ingest stores them: token ids (N, S), -1 after a short chunk's end, each
    chunk's page (N,) and its text; and for each of questions the pages of keyword search's top 5."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        ingest([DATA / DOCUMENTS[documents]], store, encoder, documents, progress=False)
        rows = store.db.execute("select page, text from chunks order by document_id, ordinal").fetchall()
        keyword = [[r[1] for r in keyword_chunks(store, q.question, 5, documents)] for q in questions]
    ids = [encoder.model.tokenizer.encode(text) for _, text in rows]
    width = max(map(len, ids))
    chunks = torch.tensor([i + [-1] * (width - len(i)) for i in ids])
    return chunks, torch.tensor([page for page, _ in rows]), [text for _, text in rows], keyword


def rank_tokens(model, questions, chunks: torch.Tensor, chunk_page: torch.Tensor) -> dict[str, int]:
    cfg, tok = model.cfg, model.tokenizer
    bins = chunk_bins(torch.where(chunks < 0, chunks[:, :1], chunks), cfg.lexical_dim)  # pad: a bin it has
    weightings = {
        f"group {g} learnt": grp.retrieval.lex_weight.detach().float() for g, grp in enumerate(model.groups)
    }
    weightings["uniform"] = torch.ones(cfg.vocab_size)
    hits = {}
    for name, weights in weightings.items():
        hits[name] = 0
        for q in questions:
            prompt = torch.tensor(tok.prompt(q.question))
            stop = (prompt == cfg.lexical_stop).nonzero()
            if len(stop):
                prompt[stop[0, 0] :] = -1
            bag = window_bags(prompt[None], weights, cfg.lexical_dim, cfg.lexical_window)[0, -1]
            hits[name] += q.page in chunk_page[(bins @ bag).topk(5).indices].tolist()
    return hits


def rank_bags(questions, bins: torch.Tensor, chunk_page: torch.Tensor, bins_of) -> dict[str, int]:
    """Chunks' word bins (N, dim) against each question's (bins_of: text → (dim,)), weighted uniformly or
    by the bin's IDF over the chunks, with and without the keyword baseline's stop words' bins."""
    idf = torch.log((len(bins) + 1) / (bins.sum(0) + 1))
    stop = torch.zeros(bins.shape[1], dtype=torch.bool)  # the stop words' bins, as they appear in text
    for word in STOPWORDS:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            stop |= bins_of(form) > 0
    hits = {}
    for name, weights in (("uniform", torch.ones(bins.shape[1])), ("document IDF", idf)):
        for drop in (False, True):
            key = name + (", stop words out" if drop else "")
            w = torch.where(stop, 0.0, weights) if drop else weights
            hits[key] = sum(
                q.page in chunk_page[(bins @ (bins_of(q.question) * w)).topk(5).indices].tolist()
                for q in questions
            )
    return hits


def rank_bm25(model, questions, chunks: torch.Tensor, chunk_page: torch.Tensor, bins: int | None) -> list:
    """lexical_bm25's score outside the model, over the document's chunks: each word of the question
    weighs its learnt weight (HSA group 0's, by hash mod vocabulary as the model indexes it) × its BM25
    IDF over the chunks, times the chunk's saturated count of it; words are matched by their full hash
    (bins None: exact words) or by hash mod bins (the model's lexical_dim). Each question's top 5 pages.
    With the model's bins it ranks the page as the model's reread pass does (docs/retrofit.md, nineteenth
    session), so exact words measure what a sparse lexical memory would gain."""
    table = model.word_pieces.cpu()
    weights = model.groups[0].retrieval.lex_weight.detach().float()
    key = (lambda h: h) if bins is None else (lambda h: h % bins)  # noqa: E731
    hashes, ends = chunk_words(chunks, table)
    counts = [
        Counter(key(h) for h in hashes[i][ends[i] & (chunks[i] >= 0)].tolist()) for i in range(len(chunks))
    ]
    df = Counter(k for c in counts for k in c)
    n = torch.tensor(float(len(chunks)))
    out = []
    for q in questions:
        ids = torch.tensor([model.tokenizer.encode(q.question)])
        q_hashes, q_ends = chunk_words(ids, table)
        query: dict[int, float] = {}
        for h in q_hashes[0][q_ends[0]].tolist():
            query[key(h)] = query.get(key(h), 0.0) + weights[h % len(weights)].item()
        idf = {k: bm25_idf(torch.tensor(float(df[k])), n).item() for k in query if df[k]}
        scores = torch.tensor(
            [
                sum(
                    w * idf[k] * saturated(torch.tensor(float(c[k]))).item()
                    for k, w in query.items()
                    if k in c
                )
                for c in counts
            ]
        )
        out.append(chunk_page[scores.topk(5).indices].tolist())
    return out


def ranks(questions, top5: list[list[int]]) -> str:
    """Answering page at rank 1 / in the top 3 / in the top 5."""
    at = lambda k: sum(q.page in pages[:k] for q, pages in zip(questions, top5, strict=True))  # noqa: E731
    return f"{at(1)} / {at(3)} / {at(5)} of {len(questions)}"


def piece_word_bins(model, chunks: torch.Tensor, dim: int):
    """Words as `lexical_words` makes them from the tokenizer's pieces (hsa_core/lexical.py)."""
    table = word_pieces(model.tokenizer.pieces())
    return chunk_word_bins(chunks, table, dim), lambda text: chunk_word_bins(
        torch.tensor([model.tokenizer.encode(text)]), table, dim
    )[0]


def text_word_bins(texts: list[str], dim: int):
    """Words as keyword search makes them from the text (runs of letters and digits, lower-cased), crc32
    into bins: what a lexical part could reach with the text's own words."""

    def bins_of(text: str) -> torch.Tensor:
        keys = [zlib.crc32(w.lower().encode()) % dim for w in re.findall(r"\w+", text)]
        return torch.zeros(dim).index_fill_(0, torch.tensor(keys, dtype=torch.long), 1.0)

    return torch.stack([bins_of(t) for t in texts]), bins_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--words", action="store_true", help="hash whole words instead of the model's tokens")
    p.add_argument("--text-words", action="store_true", help="with --words: words of the text, not of pieces")
    p.add_argument("--bins", type=int, default=1024, help="word bins (default: %(default)s)")
    p.add_argument(
        "--bm25",
        action="store_true",
        help="lexical_bm25's score with the model's weights, its bins against exact words; pages at rank "
        "1 / 3 / 5 beside keyword search's",
    )
    p.add_argument("--documents", choices=sorted(DOCUMENTS), default=COLLECTION)
    args = p.parse_args()
    encoder, _ = Encoder.load(args.model, "cpu")
    model = encoder.model
    if not model.cfg.lexical_dim and (args.bm25 or not args.words):
        raise SystemExit(f"{args.model}: this model has no lexical part; try --words")
    questions = load_questions(args.documents)
    chunks, chunk_page, texts, keyword = store_chunks(encoder, args.documents, questions if args.bm25 else ())
    if args.bm25:
        print(f"{args.documents}: answering page at rank 1 / in the top 3 / in the top 5")
        print(f"{'keyword search (FTS5)':>32}: {ranks(questions, keyword)}")
        for bins in (model.cfg.lexical_dim, None):
            top5 = rank_bm25(model, questions, chunks, chunk_page, bins)
            name = f"model's weights, {bins} bins" if bins else "model's weights, exact words"
            print(f"{name:>32}: {ranks(questions, top5)}")
        return
    if args.words:
        bins, bins_of = (
            text_word_bins(texts, args.bins) if args.text_words else piece_word_bins(model, chunks, args.bins)
        )
        hits = rank_bags(questions, bins, chunk_page, bins_of)
    else:
        hits = rank_tokens(model, questions, chunks, chunk_page)
    words = "text word" if args.text_words else "word"
    kind = f"{words} bins ({args.bins})" if args.words else f"token bins ({model.cfg.lexical_dim})"
    tokens = int((chunks >= 0).sum())
    print(f"{args.documents}: {tokens:,} tokens, {len(chunks)} chunks, {len(questions)} questions, {kind}")
    for name, hit in hits.items():
        share = f"{hit}/{len(questions)} ({hit / len(questions):.0%})"
        print(f"{name:>32}: answering page in the top 5 chunks for {share}")


if __name__ == "__main__":
    main()
