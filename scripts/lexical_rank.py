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

PYTHONPATH=. python scripts/lexical_rank.py [MODEL] [--words [--text-words] [--bins N]] [--documents r-data]
"""

import argparse
import re
import tempfile
import zlib
from pathlib import Path

import torch

from app.docqa_real import COLLECTION, DATA, DOCUMENTS, STOPWORDS, load_questions
from hsa_core.lexical import chunk_bins, chunk_word_bins, window_bags, word_pieces
from ingest import Encoder, ingest
from storage import Store


def store_chunks(encoder: Encoder, documents: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The document's chunks as ingest stores them: token ids (N, S), -1 after a short chunk's end, each
    chunk's page (N,) and its text."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        ingest([DATA / DOCUMENTS[documents]], store, encoder, documents, progress=False)
        rows = store.db.execute("select page, text from chunks order by document_id, ordinal").fetchall()
    ids = [encoder.model.tokenizer.encode(text) for _, text in rows]
    width = max(map(len, ids))
    chunks = torch.tensor([i + [-1] * (width - len(i)) for i in ids])
    return chunks, torch.tensor([page for page, _ in rows]), [text for _, text in rows]


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
    p.add_argument("--documents", choices=sorted(DOCUMENTS), default=COLLECTION)
    args = p.parse_args()
    encoder, _ = Encoder.load(args.model, "cpu")
    model = encoder.model
    if not model.cfg.lexical_dim and not args.words:
        raise SystemExit(f"{args.model}: this model has no lexical part; try --words")
    chunks, chunk_page, texts = store_chunks(encoder, args.documents)
    questions = load_questions(args.documents)
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
