"""The lexical part of landmarks and queries: bins against a loop, the score it gives, growth, IDF."""

import json
import math

import numpy as np
import pytest
import torch

from hsa_core import HSAConfig, HSAModel
from hsa_core.lexical import chunk_bins, idf, window_bags
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
    weights = idf(str(tmp_path), vocab_size=8, chunk_size=S)
    assert weights[3] > weights[2] > weights[1]
    assert weights[2] == pytest.approx(math.log(11 / 2))


def test_from_the_stop_token_to_the_next_turn_no_token_joins_a_lexical_query():
    """The answer after the prompt's ANSWER marker does not search, until the next turn's QUESTION marker
    or the document's end: per document in one pass, and the same when the stream arrives piece by
    piece through a state (generation, a chat's turns)."""
    cfg = HSAConfig.preset(
        "test", vocab_size=300, lexical_dim=16, lexical_window=4, lexical_stop=3, lexical_resume=2
    )
    m = HSAModel(cfg).eval()
    ids = torch.tensor([[10, 11, 3, 12, 2, 13, 3, 14, 20, 21, 3, 22]])
    doc = torch.tensor([[0] * 8 + [1] * 4])
    lexical, _ = m._lexical_ids(ids, doc, None)
    assert lexical.tolist() == [[10, 11, -1, -1, 2, 13, -1, -1, 20, 21, -1, -1]]
    state = m.new_state()
    cuts = [(0, 2), (2, 3), (3, 4), (4, 6), (6, 8)]
    pieces = [m._lexical_ids(ids[:, a:b], None, state)[0][:, -(b - a) :] for a, b in cuts]
    assert torch.cat(pieces, 1).tolist() == [[10, 11, -1, -1, 2, 13, -1, -1]]
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.lex_gate.fill_(0.1)
        full = m(ids[:, :8])
        state = m.new_state()
        stepwise = torch.cat([m(ids[:, i : i + 1], state=state) for i in range(8)], 1)
    torch.testing.assert_close(stepwise, full, rtol=1e-4, atol=1e-4)
