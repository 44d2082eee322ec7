"""The SWA+HSA model: causality, selection rules, the memory path, gradients, ablations, save/load."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from hsa_core import ChunkMemory, HSAConfig, HSAModel, average_models, load_model, save_model
from hsa_core.model import Selections
from hsa_core.tokenizer import END

V = 300


def make(seed: int = 0, **overrides) -> HSAModel:
    torch.manual_seed(seed)
    return HSAModel(HSAConfig.preset("test", vocab_size=V, **overrides)).eval()


def ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, V, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=["dense", "lexical", "words", "bm25", "exact"])
def model(request) -> HSAModel:
    """The test preset, and the same with a lexical part whose gate is open (hsa_core/lexical.py), of
    token or of word bins (words of 1–3 random pieces, some pieces separators), then with BM25's
    weighting (IDF over the chunks a position sees), then read by exact words (lexical_exact)."""
    if request.param == "dense":
        return make()
    words = request.param in ("words", "bm25", "exact")
    bm25, exact = request.param in ("bm25", "exact"), request.param == "exact"
    m = make(lexical_dim=16, lexical_window=5, lexical_words=words, lexical_bm25=bm25, lexical_exact=exact)
    with torch.no_grad():
        for group in m.groups:
            group.retrieval.lex_gate.fill_(0.1)
            group.retrieval.lex_weight.uniform_(0.5, 2.0)
        if words:
            g = torch.Generator().manual_seed(3)
            codes = torch.randint(1, 50, (V,), generator=g) * torch.randint(-1, 2, (V,), generator=g)
            m.word_pieces.copy_(codes)  # 0: a separator, < 0: starts a word, > 0: continues one
    return m


def test_forward_shapes_and_backward_are_fast(model):
    m = make().train()
    x = ids(128)[None].repeat(2, 1)
    logits = m(x)
    assert logits.shape == (2, 128, V)
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize(
    "t", [5, 15, 23, 40, 63]
)  # inside the first chunk, beyond the window, on a chunk edge
def test_causal(model, t):
    x = ids(80)[None]
    y = x.clone()
    y[0, t + 1 :] = ids(80, seed=2)[t + 1 :]
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[0, : t + 1], b[0, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(a[0, t + 1 :], b[0, t + 1 :])


def test_a_token_selects_only_completed_earlier_chunks(model):
    """... and, with a lexical part, only chunks completed select_lag tokens ago (none inside its window)."""
    S, k, lag = model.cfg.chunk_size, model.cfg.top_k, model.cfg.select_lag
    sel = Selections(0)
    with torch.no_grad():
        model(ids(100)[None], selections=sel)
    pos = torch.arange(100)[None, :, None, None]
    for idx in sel.indices:
        chosen = idx >= 0
        assert ((idx + 1) * S + lag <= pos)[chosen].all(), "a token picked its own or a later chunk"
        n_visible = ((pos - lag) // S).clamp(min=0).expand_as(idx)
        assert (chosen.sum(-1) == n_visible[..., 0].clamp(max=k)).all(), "visible chunks left unpicked"
        assert not chosen[0, : S + lag].any()  # the first chunk's tokens see nothing


def test_question_after_document_equals_question_against_its_memory(model):
    """From select_lag tokens into the question on, when the document's last chunk is selectable."""
    S, lag = model.cfg.chunk_size, model.cfg.select_lag
    doc, question = ids(6 * S, seed=3), ids(S - 2, seed=4)
    doc_ids = torch.cat([torch.zeros(doc.numel()), torch.ones(question.numel())]).long()[None]
    with torch.no_grad():
        full = model(torch.cat([doc, question])[None], doc_ids=doc_ids)[0, doc.numel() :]
        memory = model.encode_memory(doc)
        alone = model(question[None], memory=memory)[0]
        without = model(question[None])[0]
    torch.testing.assert_close(alone[lag:], full[lag:], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(without, full, atol=1e-3), "the memory made no difference"


def test_encode_memory_in_segments_equals_one_pass(model):
    doc = ids(13 * model.cfg.chunk_size + 3, seed=5)
    one = model.encode_memory(doc, pad_id=1)
    seg = model.encode_memory(doc, pad_id=1, segment=20)
    assert len(one) == 14
    for a, b in [(one.landmarks, seg.landmarks), (one.k, seg.k), (one.v, seg.v)]:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(model.encode_memory(doc)) == 13  # no pad id: the partial chunk is dropped


def test_document_boundaries_mask_the_sliding_window(model):
    """Mid-layer states of document 2 ignore document 1 (only retrieval may cross documents)."""
    captured = []
    hook = model.lower[-1].register_forward_hook(lambda mod, inp, out: captured.append(out[0]))
    a, b = ids(40, seed=6), ids(40, seed=7)
    second = ids(30, seed=8)
    doc_ids = torch.cat([torch.zeros(40), torch.ones(30)]).long()[None]
    with torch.no_grad():
        for first in (a, b):
            model(torch.cat([first, second])[None], doc_ids=doc_ids)
            model(torch.cat([first, second])[None])
    hook.remove()
    masked_a, unmasked_a, masked_b, unmasked_b = (c[0, 40:] for c in captured)
    torch.testing.assert_close(masked_a, masked_b, rtol=0, atol=0)
    assert not torch.allclose(unmasked_a, unmasked_b)


def test_gradients_reach_encoder_and_landmarks_through_selection_weights():
    m = make().train()
    loss = m(ids(96)[None]).float().logsumexp(-1).mean()
    loss.backward()
    # landmark_norm and the retrieval query influence the output only through the chunk weights
    for p in [m.encoder.landmark_norm.weight, m.groups[0].retrieval.wq.weight, m.encoder.cls]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert m.encoder.layers[0].attn.wq.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "switch", [{"encoder": "meanpool"}, {"residual": "standard"}, {"weights": "stick_breaking"}]
)
def test_each_ablation_switch_changes_the_computation(model, switch):
    other = make(**switch)
    other.load_state_dict(model.state_dict(), strict=False)  # meanpool has no CLS parameter
    x = ids(64)[None]
    with torch.no_grad():
        assert not torch.allclose(model(x), other(x), atol=1e-4)


def test_gumbel_noise_only_in_training():
    m = make(gumbel=5.0)
    x = ids(96)[None]
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
        m.train()
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        b = m(x)
    assert not torch.allclose(a, b)


def test_save_load_gives_identical_logits(tmp_path):
    m = load_model("test")
    with torch.no_grad():
        m.embed.weight.add_(0.01)  # no longer the seed-0 preset
    save_model(m, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    x = ids(70)[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
    assert loaded.tokenizer.encode("hello world") == m.tokenizer.encode("hello world")


def test_save_load_keeps_the_word_table(tmp_path, model):
    """A lexical_words model's table of pieces (a buffer, set from the tokenizer) is saved with it."""
    if not model.cfg.lexical_words:
        pytest.skip("no word table")
    save_model(model, tmp_path / "ckpt")
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert torch.equal(state["word_pieces"], model.word_pieces)
    loaded = HSAModel(HSAConfig.from_json(tmp_path / "ckpt" / "config.json")).eval()
    loaded.load_state_dict(state)
    x = ids(70)[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_generate_with_cache_equals_recomputing(model):
    S = model.cfg.chunk_size
    memory = model.encode_memory(ids(5 * S, seed=9))
    prompt = ids(13, seed=10)
    steps = list(model.generate(prompt, memory=memory, max_new_tokens=30))  # crosses chunks and the window
    tokens = torch.tensor([s.token for s in steps])
    sel = Selections(len(memory))
    with torch.no_grad():
        logits = model(torch.cat([prompt, tokens[:-1]])[None], memory=memory, selections=sel)
    assert torch.equal(logits[0, prompt.numel() - 1 :].argmax(-1), tokens)
    for i, step in enumerate(steps):
        pos = prompt.numel() - 1 + i
        for layer, idx, w in zip(step.layers, sel.indices, sel.weights, strict=True):
            ext = (idx[0, pos] >= 0) & (idx[0, pos] < len(memory))
            assert torch.equal(layer.ids[ext], memory.ids[idx[0, pos][ext]])
            assert torch.equal(layer.own >= 0, idx[0, pos] >= len(memory))
            torch.testing.assert_close(layer.weights, w[0, pos], rtol=1e-4, atol=1e-5)


def test_generate_stops_on_a_stop_token(model):
    first = next(iter(model.generate(ids(5), max_new_tokens=1))).token
    steps = list(model.generate(ids(5), max_new_tokens=10, stop_ids=(first, END)))
    assert [s.token for s in steps] == [first]


def test_memory_of_several_documents_concatenates():
    m = make()
    a, b = m.encode_memory(ids(24, seed=11)), m.encode_memory(ids(40, seed=12))
    both = ChunkMemory.cat([a, b])
    assert len(both) == 8 and both.ids.tolist() == list(range(8))
    k, v = both.gather(torch.tensor([3, 4]))
    torch.testing.assert_close(k, b.k[:2])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="encoder"):
        HSAConfig.preset("test", encoder="mean")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        HSAConfig.preset("huge")
    with pytest.raises(ValueError, match="1-D"):
        make().encode_memory(ids(16)[None])


def test_top_k_can_be_set_per_call(model):
    x = ids(96)[None]
    for k in (1, 3):
        sel = Selections(0)
        with torch.no_grad():
            model(x, selections=sel, top_k=k)
        assert all(idx.shape[-1] == k for idx in sel.indices)
        visible = ((torch.arange(96) - model.cfg.select_lag) // 8).clamp(0, k)
        assert ((sel.indices[0] >= 0).sum(-1) == visible[None, :, None]).all()
    steps = list(model.generate(ids(5), memory=model.encode_memory(ids(64)), max_new_tokens=2, top_k=3))
    assert all(layer.ids.shape[-1] == 3 for step in steps for layer in step.layers)


def test_documents_encoded_together_equal_each_alone(model):
    docs = [ids(n, seed=20 + n) for n in (5, 16, 23, 8)]
    together = model.encode_documents(docs, pad_id=1)
    for doc, mem in zip(docs, together, strict=True):
        alone = model.encode_memory(doc, pad_id=1)
        assert len(mem) == len(alone)
        for a, b in [(mem.landmarks, alone.landmarks), (mem.k, alone.k), (mem.v, alone.v)]:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bench_reader_reports_each_model(capsys):
    from app.cli import main

    assert (
        main(
            [
                "bench",
                "reader",
                "--models",
                "test,small",
                "--memory-tokens",
                "1024",
                "--new-tokens",
                "3",
                "--json",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in results] == ["test", "small"]
    small = results[1]
    assert small["chunks"] == 1024 // 64 and small["parameters"] == load_model("small").num_parameters()
    assert all(
        r["encode_tokens_per_s"] > 0 and r["first_token_s"] > 0 and r["per_token_s"] > 0 for r in results
    )


def test_rms_norm_takes_bf16_input_with_fp32_weight_on_the_fused_path():
    import warnings

    from hsa_core.layers import RMSNorm

    norm, ref = RMSNorm(16, eps=1e-6), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(norm.weight)
    x = torch.randn(3, 16)
    torch.testing.assert_close(norm(x), ref(x), rtol=0, atol=0)  # fp32: exactly torch's
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it must leave the fused kernel
        out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref(x), rtol=2e-2, atol=2e-2)


def test_average_models_mixes_every_weight_once(tmp_path):
    start = load_model("test")
    tuned = load_model("test")
    with torch.no_grad():
        tuned.embed.weight.add_(1.0)  # the embedding, also the output head
    save_model(start, tmp_path / "start")
    save_model(tuned, tmp_path / "tuned")
    mixed = average_models(tmp_path / "start", tmp_path / "tuned", 0.25)
    torch.testing.assert_close(mixed.embed.weight, start.embed.weight + 0.25)
    for (name, a), (_, b) in zip(mixed.named_parameters(), start.named_parameters(), strict=True):
        if name != "embed.weight":
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = ids(70)[None]
    with torch.no_grad():
        ends = average_models(tmp_path / "start", tmp_path / "tuned", 1.0)(x), tuned(x)
    torch.testing.assert_close(*ends, rtol=0, atol=0)


def test_average_models_refuses_two_architectures(tmp_path):
    model = load_model("test")
    save_model(model, tmp_path / "a")
    other = HSAModel(dataclasses.replace(model.cfg, top_k=model.cfg.top_k + 1))
    other.tokenizer = model.tokenizer
    save_model(other, tmp_path / "b")
    with pytest.raises(ValueError, match="different configs"):
        average_models(tmp_path / "a", tmp_path / "b", 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        average_models(tmp_path / "a", tmp_path / "a", 1.5)
