"""The lexical part of landmarks and queries: bins against a loop, the score it gives, growth, IDF."""

import json
import math

import numpy as np
import pytest
import torch

from hsa_core import HSAConfig, HSAModel
from hsa_core.lexical import (
    EXACT_BITS,
    WordIndex,
    bm25_idf,
    chunk_bins,
    chunk_word_bins,
    chunk_words,
    idf,
    saturated,
    slot_words,
    window_bags,
    window_word_bags,
    window_words,
    word_hashes,
    word_pieces,
    word_slots,
)
from hsa_core.model import Selections


def test_window_bags_sum_each_positions_last_tokens_within_its_document():
    torch.manual_seed(0)
    dim, window = 7, 4
    ids = torch.randint(0, 50, (2, 19))
    ids[1, :3] = -1  # an empty history counts nothing
    doc = torch.zeros(2, 19, dtype=torch.long)
    doc[0, 9:] = 1
    weights = torch.rand(50)
    got = window_bags(ids, weights, dim, window, doc)
    for b in range(2):
        for t in range(19):
            want = torch.zeros(dim)
            for i in range(max(0, t - window + 1), t + 1):
                if ids[b, i] >= 0 and doc[b, i] == doc[b, t]:
                    want[ids[b, i] % dim] += weights[ids[b, i]]
            torch.testing.assert_close(got[b, t], want)


def test_chunk_bins_mark_each_held_token_once():
    bins = chunk_bins(torch.tensor([[3, 3, 10], [0, 1, 2]]), 7)
    assert bins.tolist() == [[0, 0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]]


def test_bins_count_and_saturate_as_bm25_does():
    """counts: a token held twice marks its bin 2; saturated, once is 1, twice 1.375, never over 2.2; the
    IDF of a bin one chunk holds is 1 and falls to near 0 for a bin every chunk holds."""
    bins = chunk_bins(torch.tensor([[3, 3, 5]]), 7, counts=True)
    assert bins.tolist() == [[0, 0, 0, 2, 0, 1, 0]]
    table = torch.tensor([0, -1, -2])  # two one-piece words and a separator
    words = chunk_word_bins(torch.tensor([[1, 0, 1, 2, 0, 1]]), table, 2**16, counts=True)
    assert sorted(words[words > 0].tolist()) == [1, 3]
    assert saturated(torch.tensor([1.0, 2.0, 1e6])).tolist() == pytest.approx([1.0, 1.375, 2.2], rel=1e-4)
    n = torch.tensor(100.0)
    got = bm25_idf(torch.tensor([1.0, 10.0, 50.0, 100.0]), n)
    assert got[0] == pytest.approx(1.0) and (got.diff() < 0).all() and got[-1] < 0.01


@pytest.mark.parametrize("bm25", [False, True])
def test_with_bm25_a_word_every_chunk_holds_counts_for_little(bm25):
    """The question asks for five words: one that every chunk holds, two that half the chunks hold, one
    that only chunk 6 holds, and one no chunk holds. Counting shared words picks a chunk holding the
    three common ones; weighing each by its IDF over the memory picks chunk 6, as keyword search would."""
    cfg = HSAConfig.preset(
        "test", vocab_size=300, lexical_dim=256, lexical_window=8, dense_retrieval=False, lexical_bm25=bm25
    )
    torch.manual_seed(0)
    m = HSAModel(cfg).eval()
    S = cfg.chunk_size
    doc = torch.full((10, S), 50)
    doc[:, 0] = 7  # in every chunk
    doc[:5, 1:3] = torch.tensor([8, 9])  # in half of them
    doc[6, 1] = 10  # in chunk 6 alone
    memory = m.encode_memory(doc.flatten())
    sel = Selections(len(memory))
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.lex_gate.fill_(1.0)
        m(torch.tensor([[20, 7, 8, 9, 10]]), memory=memory, selections=sel)
    best = {int(i[0, -1, 0, w[0, -1, 0].argmax()]) for i, w in zip(sel.indices, sel.weights, strict=True)}
    assert best == ({6} if bm25 else best & set(range(5))) and best


def test_the_lexical_part_selects_the_chunk_holding_the_querys_words():
    """With the learnt part silenced, the chunk that holds the question's words is picked first and
    weighs most; with the gate at zero (a model just grown by it) the part changes nothing."""
    torch.manual_seed(0)
    cfg = HSAConfig.preset("test", vocab_size=300, lexical_dim=64, lexical_window=6)
    m = HSAModel(cfg).eval()
    S = cfg.chunk_size
    doc = torch.randint(100, 300, (10 * S,))
    words = torch.tensor([7, 8, 9])
    doc[4 * S + 2 : 4 * S + 5] = words
    question = torch.cat([torch.tensor([20, 21]), words])
    memory = m.encode_memory(doc)
    assert memory.landmarks.shape[-1] == cfg.dense_dim + 64
    plain = m(question[None], memory=memory)
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.wq.weight.zero_()
            group.retrieval.lex_gate.fill_(1.0)
    sel = Selections(len(memory))
    with torch.no_grad():
        m(question[None], memory=memory, selections=sel)
    for idx, w in zip(sel.indices, sel.weights, strict=True):
        assert idx[0, -1, 0, w[0, -1, 0].argmax()] == 4
        assert w[0, -1, 0].max() > 0.9
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.lex_gate.zero_()
        m.groups[0].retrieval.wq.weight.normal_(std=0.02)
    zeroed = HSAModel(HSAConfig(**{**cfg.__dict__, "lexical_dim": 0})).eval()
    zeroed.load_state_dict({k: v for k, v in m.state_dict().items() if "lex_" not in k})
    with torch.no_grad():
        dense_memory = zeroed.encode_memory(doc)
        torch.testing.assert_close(
            m(question[None], memory=memory), zeroed(question[None], memory=dense_memory)
        )
    assert plain.shape == (1, question.numel(), 300)


def test_without_dense_retrieval_the_learnt_query_selects_nothing():
    """dense_retrieval = false: selection is the lexical part's alone, whatever the learnt query's
    weights; the option needs a lexical part."""
    torch.manual_seed(0)
    cfg = HSAConfig.preset("test", vocab_size=300, lexical_dim=64, lexical_window=6, dense_retrieval=False)
    m = HSAModel(cfg).eval()
    S = cfg.chunk_size
    doc = torch.randint(100, 300, (10 * S,))
    doc[6 * S + 1 : 6 * S + 4] = torch.tensor([7, 8, 9])
    question = torch.tensor([20, 21, 7, 8, 9])
    memory = m.encode_memory(doc)

    def picks():
        sel = Selections(len(memory))
        with torch.no_grad():
            for group in m.groups:
                group.retrieval.lex_gate.fill_(1.0)
            m(question[None], memory=memory, selections=sel)
        return [(i[0, -1], w[0, -1]) for i, w in zip(sel.indices, sel.weights, strict=True)]

    before = picks()
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.wq.weight.normal_(std=1.0)
    for (i, w), (j, v) in zip(before, picks(), strict=True):
        assert torch.equal(i, j)
        torch.testing.assert_close(w, v)
        assert i[0, w[0].argmax()] == 6
    with pytest.raises(ValueError, match="dense_retrieval = false needs a lexical part"):
        HSAConfig.preset("test", vocab_size=300, dense_retrieval=False)


def test_idf_weighs_rare_tokens_above_common_ones(tmp_path):
    """Token 1 is in every chunk, token 2 in one, token 3 in none: their IDF falls in that order, and a
    token repeated within a chunk counts once."""
    S, chunks = 4, 10
    tokens = np.full((chunks, S), 5, dtype=np.uint16)
    tokens[:, 0] = 1
    tokens[0, 1:3] = 2
    (tmp_path / "shards").mkdir()
    tokens.tofile(tmp_path / "shards" / "one.bin")
    (tmp_path / "manifest.json").write_text(
        json.dumps({"sources": [{"source": "one", "tokens": tokens.size}]})
    )
    weights = idf(str(tmp_path), size=8, chunk_size=S)
    assert weights[3] > weights[2] > weights[1]
    assert weights[2] == pytest.approx(math.log(11 / 2))


def test_from_the_stop_token_to_the_next_turn_no_token_joins_a_lexical_query():
    """The answer after the prompt's ANSWER marker does not search, until the next turn's QUESTION marker
    (itself no word of the question) or the document's end: per document in one pass, and the same when
    the stream arrives piece by piece through a state (generation, a chat's turns)."""
    cfg = HSAConfig.preset(
        "test", vocab_size=300, lexical_dim=16, lexical_window=4, lexical_stop=3, lexical_resume=2
    )
    m = HSAModel(cfg).eval()
    ids = torch.tensor([[10, 11, 3, 12, 2, 13, 3, 14, 20, 21, 3, 22]])
    doc = torch.tensor([[0] * 8 + [1] * 4])
    lexical, _ = m._lexical_ids(ids, doc, None)
    assert lexical.tolist() == [[10, 11, -1, -1, -1, 13, -1, -1, 20, 21, -1, -1]]
    state = m.new_state()
    cuts = [(0, 2), (2, 3), (3, 4), (4, 6), (6, 8)]
    pieces = [m._lexical_ids(ids[:, a:b], None, state)[0][:, -(b - a) :] for a, b in cuts]
    assert torch.cat(pieces, 1).tolist() == [[10, 11, -1, -1, -1, 13, -1, -1]]
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.lex_gate.fill_(0.1)
        full = m(ids[:, :8])
        state = m.new_state()
        stepwise = torch.cat([m(ids[:, i : i + 1], state=state) for i in range(8)], 1)
    torch.testing.assert_close(stepwise, full, rtol=1e-4, atol=1e-4)


def test_word_pieces_fold_case_spaces_and_newlines_into_one_word():
    codes = word_pieces(["Ġdebian", "Debian", "ĠDeb", "ian", "Ċ", "Ġ(", ".", "ĠR"]).tolist()
    assert codes[0] < 0 and codes[1] > 0 and abs(codes[0]) == codes[1]  # " debian" starts, "Debian" goes on
    assert codes[2] < 0 < codes[3]
    assert codes[4] == codes[5] == codes[6] == 0  # no letter or digit: separators
    assert codes[7] < 0


def test_word_pieces_read_the_bytes_a_piece_stands_for():
    """Byte-level BPE spells a curly quote's bytes as letters (“ is "âĢľ"): read as bytes it is
    punctuation, so “FAQ” is the word FAQ. A character split across pieces ("Ã" + "©": é) stays inside
    its word."""
    table = word_pieces(["âĢľ", "FA", "Q", "âĢĿ", "ĠFA", "Ġcaf", "Ã", "©", "Ġcafé"])
    assert table[0] == table[3] == 0 and table[1] > 0 and table[6] > 0 and table[7] > 0
    hashes, start, word = word_hashes(torch.tensor([[0, 1, 2, 3, 4, 2, 5, 6, 7]]), table)
    assert hashes[0, 2] == hashes[0, 5] and start[0, 1] and start[0, 4]  # “FAQ” and " FAQ": one word
    assert start[0, 6] and not start[0, 7:].any() and word[0, 6:].all()  # caf + Ã + ©: one word, café
    assert not word[0, 3]


def _words(ids: list[int], table: torch.Tensor, doc: list[int]) -> list[tuple]:
    """Per position, the word it ends so far as a loop sees it: its pieces' codes, the last ≤ 8."""
    out, word = [], []
    for t, i in enumerate(ids):
        code = int(table[i]) if i >= 0 else 0
        if code == 0:
            word = []
            out.append(())
            continue
        starts = code < 0 or t == 0 or not word or doc[t] != doc[t - 1]
        word = [abs(code)] if starts else [*word, abs(code)]
        out.append(tuple(word[-8:]))
    return out


def test_word_hashes_give_one_hash_per_word_whatever_its_context():
    """Positions that end the same word so far (the same pieces since the word's start, a separator, a
    document's start) share a hash; different words almost never share one mod 2^20."""
    g = torch.Generator().manual_seed(0)
    table = torch.randint(1, 6, (40,), generator=g) * torch.randint(-1, 2, (40,), generator=g)
    ids = torch.randint(0, 40, (1, 400), generator=g)
    ids[0, 50:55] = -1
    doc = torch.zeros(1, 400, dtype=torch.long)
    doc[0, 200:] = 1
    hashes, start, word = word_hashes(ids, table, doc)
    bins = hashes % 2**20
    words = _words(ids[0].tolist(), table, doc[0].tolist())
    assert word[0].tolist() == [w != () for w in words]
    seen = {}
    for t, w in enumerate(words):
        if w:
            seen.setdefault(w, set()).add(int(bins[0, t]))
    assert all(len(b) == 1 for b in seen.values())
    assert len({next(iter(b)) for b in seen.values()}) >= 0.99 * len(seen) > 50


def test_window_word_bags_count_the_words_completed_in_the_window_and_the_one_being_written():
    g = torch.Generator().manual_seed(1)
    table = torch.randint(1, 9, (30,), generator=g) * torch.randint(-1, 2, (30,), generator=g)
    ids = torch.randint(0, 30, (2, 40), generator=g)
    ids[1, :4] = -1
    doc = torch.zeros(2, 40, dtype=torch.long)
    doc[0, 17:] = 1
    dim, window = 64, 6
    weights = torch.rand(100, generator=g)
    got = window_word_bags(ids, weights, table, dim, window, doc)
    hashes, start, word = word_hashes(ids, table, doc)
    bins, slots = hashes % dim, hashes % 100
    for b in range(2):
        for t in range(40):
            want = torch.zeros(dim)
            if word[b, t]:
                want[bins[b, t]] += weights[slots[b, t]]  # the word being written
            for i in range(max(0, t - window + 1), t + 1):  # words completed at i (the next starts)
                if i > 0 and start[b, i] and word[b, i - 1] and doc[b, i - 1] == doc[b, t]:
                    want[bins[b, i - 1]] += weights[slots[b, i - 1]]
            torch.testing.assert_close(got[b, t], want)


def test_chunk_word_bins_mark_each_word_the_chunk_holds():
    table = torch.tensor([0, -1, 2, -3, 4, -5])  # 0 separates; -1 2 and -3 4 are two-piece words
    chunks = torch.tensor([[1, 2, 0, 3, 4, 5], [3, 4, 1, 2, 0, 0]])
    got = chunk_word_bins(chunks, table, 2**16)
    bins = word_hashes(chunks, table)[0] % 2**16
    want = [{int(bins[0, 1]), int(bins[0, 4]), int(bins[0, 5])}, {int(bins[1, 1]), int(bins[1, 3])}]
    assert [set(row.nonzero().flatten().tolist()) for row in got] == want
    assert bins[0, 1] == bins[1, 3] and bins[0, 4] == bins[1, 1]  # the same word in either chunk


def test_word_bins_select_the_chunk_holding_a_word_split_into_pieces(tmp_path):
    """As the token test above, with the question's last word in three pieces: the chunk holding that
    word is picked, not the one holding two of its pieces as a word of their own; and idf over word bins
    counts a word once per chunk."""
    torch.manual_seed(0)
    cfg = HSAConfig.preset("test", vocab_size=300, lexical_dim=256, lexical_window=6, lexical_words=True)
    m = HSAModel(cfg).eval()
    table = -torch.arange(1, 301)
    table[8:10] = torch.tensor([9, 10])  # 7 8 9 is one word
    table[100:] = 0  # the haystack's tokens are separators: no words but the planted ones
    m.word_pieces.copy_(table)
    S = cfg.chunk_size
    doc = torch.randint(100, 300, (10 * S,))
    doc[6 * S + 2 : 6 * S + 5] = torch.tensor([7, 8, 9])
    doc[3 * S + 2 : 3 * S + 4] = torch.tensor([8, 9])  # after a separator: the word "8 9"
    question = torch.tensor([20, 21, 7, 8, 9])
    memory = m.encode_memory(doc)
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.wq.weight.zero_()
            group.retrieval.lex_gate.fill_(1.0)
            group.retrieval.lex_weight.fill_(1.0)
    sel = Selections(len(memory))
    with torch.no_grad():
        m(question[None], memory=memory, selections=sel)
    for idx, w in zip(sel.indices, sel.weights, strict=True):
        assert idx[0, -1, 0, w[0, -1, 0].argmax()] == 6
    tokens = np.tile(np.array([7, 8, 9, 7, 8, 9, 50, 51], dtype=np.uint16), 5)
    (tmp_path / "shards").mkdir()
    tokens.tofile(tmp_path / "shards" / "one.bin")
    (tmp_path / "manifest.json").write_text(
        json.dumps({"sources": [{"source": "one", "tokens": tokens.size}]})
    )
    weights = idf(str(tmp_path), size=300, chunk_size=8, table=table)
    word = word_hashes(torch.tensor([[7, 8, 9]]), table)[0][0, -1] % 300
    assert weights[word] == pytest.approx(math.log(6 / 6))  # in all 5 chunks, counted once each
    assert weights.max() == pytest.approx(math.log(6))  # slots of no word


def test_word_slots_hold_each_distinct_word_once_with_its_saturated_count():
    table = torch.tensor([0, -1, -2, 3])  # a separator, two words, a piece that continues a word
    ids = torch.tensor([[1, 0, 2, 3, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    keys, counts = slot_words(word_slots(ids, table).to(torch.bfloat16))  # as stored
    hashes, ends = chunk_words(ids, table)
    words = hashes[0][ends[0]] % 2**EXACT_BITS
    assert sorted(keys[0][keys[0] >= 0].tolist()) == sorted(set(words.tolist()))  # word 1 ×3, word 2+3 ×1
    by_key = dict(zip(keys[0].tolist(), counts[0].tolist(), strict=True))
    assert by_key[int(words[0])] == pytest.approx(float(saturated(torch.tensor(3.0))), rel=1e-2)
    assert by_key[int(words[1])] == 1.0
    assert (keys[1] == -1).all() and (counts[1] == 0).all()  # no word: every slot empty
    index = WordIndex(word_slots(ids, table))
    row, chunk, count, df = index.lookup(torch.tensor([int(words[0]), 12345]))
    assert df.tolist() == [1, 0] and row.tolist() == [0] and chunk.tolist() == [0]


def test_window_words_are_the_words_of_the_window_bags():
    """Summed into bins with their weights, a position's window words are window_word_bags' bag."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    table = torch.randint(1, 50, (60,), generator=g) * torch.randint(-1, 2, (60,), generator=g)
    ids = torch.randint(0, 60, (2, 40))
    ids[1, :4] = -1
    doc = torch.zeros(2, 40, dtype=torch.long)
    doc[0, 17:] = 1
    weights, dim = torch.rand(64), 2**16
    hashes, held = window_words(ids, table, 6, doc)
    got = torch.zeros(2, 40, dim).scatter_add_(2, hashes % dim, weights[hashes % 64] * held)
    torch.testing.assert_close(got, window_word_bags(ids, weights, table, dim, 6, doc))


def test_exact_words_select_as_bins_do_without_collisions_and_apart_where_bins_collide():
    """With more bins than words, lexical_exact computes what bins compute, in the sequence and against
    a memory. Two words that share a bin: the bins match the question's word in a chunk that holds only
    the other; exact words pick the chunk that holds the asked word."""
    kw = dict(vocab_size=300, lexical_words=True, lexical_bm25=True, dense_retrieval=False, lexical_window=8)
    torch.manual_seed(0)
    binned = HSAModel(HSAConfig.preset("test", lexical_dim=2**16, **kw)).eval()
    exact = HSAModel(HSAConfig.preset("test", lexical_dim=2**16, lexical_exact=True, **kw)).eval()
    with torch.no_grad():
        for group in binned.groups:
            group.retrieval.lex_gate.fill_(0.5)
            group.retrieval.lex_weight.uniform_(0.5, 2.0)
    exact.load_state_dict(binned.state_dict())
    ids = torch.randint(3, 40, (2, 96))  # few distinct tokens: words repeat, their IDF matters
    memory = binned.encode_memory(ids[0])
    for m_ids, mem in ((ids, None), (ids[1:, :20], memory)):
        sb, se = Selections(len(mem) if mem else 0), Selections(len(mem) if mem else 0)
        with torch.no_grad():
            binned(m_ids, memory=mem, selections=sb)
            exact(m_ids, memory=exact.encode_memory(ids[0]) if mem else None, selections=se)
        for a, b in zip(sb.indices + sb.weights, se.indices + se.weights, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # training (no memory) scores bins, so the weights train as they were trained
        torch.manual_seed(5)  # the same selection noise for both
        trained = exact.train()(ids)
        torch.manual_seed(5)
        torch.testing.assert_close(trained, binned.train()(ids))
    exact.eval()
    # 4 bins: two words (every token is one) sharing a bin, neither the filler nor the 20 asked with
    small = {
        b: HSAModel(HSAConfig.preset("test", lexical_dim=4, lexical_exact=b, **kw)).eval() for b in (0, 1)
    }
    hashes = chunk_words(torch.arange(300)[None], small[0].word_pieces)[0][0]
    a, b = next(
        (i, j)
        for i in range(10, 300)
        for j in range(i + 1, 300)
        if hashes[i] % 4 == hashes[j] % 4 and not {i, j} & {20, 50}
    )
    S = small[0].cfg.chunk_size
    doc = torch.full((6, S), 50)
    doc[2, 3:5] = b  # chunk 2 holds the other word of the asked word's bin, twice: a higher count
    doc[4, 3] = a  # chunk 4 holds the asked word
    picks = {}
    for flag, m in small.items():
        with torch.no_grad():
            for group in m.groups:
                group.retrieval.lex_gate.fill_(1.0)
        sel = Selections(6)
        with torch.no_grad():
            m(torch.tensor([[20, a]]), memory=m.encode_memory(doc.flatten()), selections=sel)
        picks[flag] = {
            int(i[0, -1, 0, w[0, -1, 0].argmax()]) for i, w in zip(sel.indices, sel.weights, strict=True)
        }
    assert picks == {0: {2}, 1: {4}}
