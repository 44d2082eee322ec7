"""How well a lexical ranking alone could find the real-document benchmark's answering pages.

For each of docqa_real's 56 questions, chunks are ranked by a bag of hashed bins only, no learnt part,
and a question scores if its page is among the pages of the 5 best chunks, as `hsa eval --tasks
docqa_real` scores the whole model. The R FAQ is cut about as ingest cuts it: the pages' tokens in one
stream, 64-token chunks, a chunk on the page of its first token. Two kinds of bins:

- tokens, the model's own lexical part: the query the model forms where the answer starts (the
  per-token weights of its last lexical_window prompt tokens, those from lexical_stop on left out)
  against each chunk's token bins; weights: each HSA group's learnt ones, and uniform ones;
- words (`--words`): whole words hashed into `--bins` bins as `lexical_words` hashes them (a word's
  pieces together, hsa_core/lexical.py), the question's words against each chunk's; weights: uniform,
  or the IDF of the bin over this document's chunks (as keyword search weighs by its collection), each
  with and without the keyword baseline's stop words.

Read against the model's own figure and keyword search's (docs/retrofit.md, eleventh session).

PYTHONPATH=. python scripts/lexical_rank.py [MODEL] [--words] [--bins N]     # default hsa-small
"""

import argparse

import pymupdf
import torch

from app.docqa_real import PDF, STOPWORDS, load_questions
from hsa_core.checkpoint import load_model
from hsa_core.lexical import chunk_bins, chunk_word_bins, window_bags, word_pieces


def page_tokens(tok) -> tuple[list[int], list[int]]:
    """The R FAQ's token ids in one stream, and each token's page."""
    ids, pages = [], []
    with pymupdf.open(PDF) as pdf:
        for number, page in enumerate(pdf, 1):
            page_ids = tok.encode(page.get_text())
            ids += page_ids
            pages += [number] * len(page_ids)
    return ids, pages


def rank_tokens(model, questions, chunks: torch.Tensor, chunk_page: torch.Tensor) -> dict[str, int]:
    cfg, tok = model.cfg, model.tokenizer
    bins = chunk_bins(chunks, cfg.lexical_dim)
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


def rank_words(model, questions, chunks: torch.Tensor, chunk_page: torch.Tensor, dim: int) -> dict[str, int]:
    tok = model.tokenizer
    table = word_pieces(tok.pieces())

    def bins_of(ids: list[int]) -> torch.Tensor:
        return chunk_word_bins(torch.tensor([ids]), table, dim)[0]

    bins = chunk_word_bins(chunks, table, dim)
    idf = torch.log((len(chunks) + 1) / (bins.sum(0) + 1))
    stop = torch.zeros(dim, dtype=torch.bool)  # the stop words' bins, as they appear in text
    for word in STOPWORDS:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            stop |= bins_of(tok.encode(form)) > 0
    hits = {}
    for name, weights in (("uniform", torch.ones(dim)), ("document IDF", idf)):
        for drop in (False, True):
            key = name + (", stop words out" if drop else "")
            w = torch.where(stop, 0.0, weights) if drop else weights
            hits[key] = 0
            for q in questions:
                bag = bins_of(tok.encode(q.question)) * w
                hits[key] += q.page in chunk_page[(bins @ bag).topk(5).indices].tolist()
    return hits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--words", action="store_true", help="hash whole words instead of the model's tokens")
    p.add_argument("--bins", type=int, default=1024, help="word bins (default: %(default)s)")
    args = p.parse_args()
    model = load_model(args.model)
    if not model.cfg.lexical_dim and not args.words:
        raise SystemExit(f"{args.model}: this model has no lexical part; try --words")
    ids, pages = page_tokens(model.tokenizer)
    S = model.cfg.chunk_size
    n = len(ids) // S
    chunks, chunk_page = torch.tensor(ids[: n * S]).view(n, S), torch.tensor(pages[: n * S : S])
    questions = load_questions()
    if args.words:
        hits = rank_words(model, questions, chunks, chunk_page, args.bins)
    else:
        hits = rank_tokens(model, questions, chunks, chunk_page)
    kind = f"word bins ({args.bins})" if args.words else f"token bins ({model.cfg.lexical_dim})"
    print(f"{len(ids):,} tokens, {n} chunks, {len(questions)} questions, {kind}")
    for name, hit in hits.items():
        share = f"{hit}/{len(questions)} ({hit / len(questions):.0%})"
        print(f"{name:>32}: answering page in the top 5 chunks for {share}")


if __name__ == "__main__":
    main()
