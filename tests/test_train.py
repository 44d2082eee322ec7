"""The training loop on CPU with the test preset: the loss falls, resume continues the same schedule,
batches are built as documented, configs parse."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as cli
from app.commands.train import main as train_main
from hsa_core.checkpoint import load_model, save_model
from hsa_core.data import BatchMaker, DataConfig
from hsa_core.model import RetrievalProbe
from hsa_core.tokenizer import END, PAD, QUESTION
from hsa_core.train import (
    Stage,
    TrainConfig,
    build_model,
    load_tokenizer,
    make_batch_maker,
    retrieval_loss,
    retrieval_positions,
    train,
)
from tests.test_corpus import make_small_corpus

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _cfg(**overrides) -> TrainConfig:
    """A tiny run: test preset (window 16, chunk 8, top-k 2), 3-digit pass keys and bAbI relations."""
    data = DataConfig(
        mix={"passkey": 0.7, "babi_qa4": 0.3},
        options={"passkey": {"digits": 3, "haystack": ["noise", "varied"]}},
        max_answer_tokens=8,
    )
    base = TrainConfig(
        preset="test",
        max_steps=14,
        batch_tokens=384,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        log_interval=1,
        ckpt_interval=100,
        eval_rows=1,
        device="cpu",
        curriculum=[Stage(0.5, 64), Stage(1.0, 96)],
        data=data,
    )
    return replace(base, **overrides)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_smoke_run_loss_falls(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "run"
    summary = train(_cfg(), out, log=lambda _: None)
    log = _log(out)
    assert summary["step"] == 14 and [r["step"] for r in log] == list(range(1, 15))
    first, last = np.mean([r["loss"] for r in log[:3]]), np.mean([r["loss"] for r in log[-3:]])
    assert last < first - 1.0, (first, last)
    assert {"lr", "seq_len", "tokens_per_s", "answer_loss", "acc"} <= set(log[-1])
    assert "val_loss" in log[-1] and set(log[-1]["val_acc"]) == {"passkey", "babi_qa4"}
    assert [r["seq_len"] for r in log[:7]] == [64] * 7 and log[-1]["seq_len"] == 96  # the curriculum
    assert (out / "loss.png").stat().st_size > 1000
    model = load_model(out / "model")
    assert model.cfg.window == 16 and model.tokenizer is not None


def test_resume_continues_the_same_schedule(tmp_path):
    cfg = _cfg(max_steps=6, batch_tokens=192)
    full, split = tmp_path / "full", tmp_path / "split"
    train(cfg, full, log=lambda _: None)
    train(cfg, split, stop_at=2, log=lambda _: None)
    assert [r["step"] for r in _log(split)] == [1, 2]
    messages = []
    train(cfg, split, log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)
    a, b = _log(full), _log(split)
    assert [r["step"] for r in b] == [r["step"] for r in a]
    assert [r["lr"] for r in b] == [r["lr"] for r in a]
    assert [r["seq_len"] for r in b] == [r["seq_len"] for r in a]
    # same weights, optimizer state and batches: the losses agree up to float summation order
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=2e-3)


def test_init_fine_tunes_a_trained_model(tmp_path):
    """`init` starts from the trained weights (not the preset's random ones) and keeps its shapes."""
    first = tmp_path / "first"
    train(_cfg(max_steps=2), first, log=lambda _: None)
    start = load_model(first / "model").state_dict()
    tuned = tmp_path / "tuned"
    messages = []
    train(_cfg(max_steps=1, init=str(first / "model"), lr=0.0, min_lr=0.0), tuned, log=messages.append)
    assert messages[0].startswith(f"model {first / 'model'}:")  # names what it starts from
    after = load_model(tuned / "model").state_dict()  # lr 0: the weights it started from, unchanged
    assert all(torch.equal(start[k], after[k]) for k in start)
    with pytest.raises(ValueError, match="init"):
        train(_cfg(init=str(first / "model"), model={"window": 32}), tmp_path / "bad", log=lambda _: None)


def test_settings_override_the_config_file():
    cfg = TrainConfig.from_toml(
        CONFIGS / "hsa-small.toml",
        [
            "model.encoder=meanpool",  # not TOML: a string
            'model.residual="bypass"',
            "train.max_steps=1300",
            "curriculum=[{until = 1.0, seq_len = 512}]",
            "data.lm_one_document=true",
            "mix={lm = 0.5, passkey = 0.5}",
        ],
    )
    assert cfg.model == {"residual": "bypass", "encoder": "meanpool"} and cfg.preset == "small"
    assert cfg.max_steps == 1300 and [(s.until, s.seq_len) for s in cfg.curriculum] == [(1.0, 512)]
    assert cfg.data.lm_one_document and cfg.data.mix == {"lm": 0.5, "passkey": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        TrainConfig.from_toml(CONFIGS / "hsa-small.toml", ["model.residual"])
    with pytest.raises(ValueError, match="unknown settings"):
        TrainConfig.from_toml(CONFIGS / "hsa-small.toml", ["train.max_stepz=3"])


def test_lm_rows_of_one_document(tmp_path):
    tokenizer = load_tokenizer(_cfg())
    corpus = make_small_corpus(tmp_path / "corpus", tokenizer)
    data = DataConfig(mix={"lm": 1.0}, options={}, lm_one_document=True)
    batch = BatchMaker(data, tokenizer, corpus, window=64, seed=1).batch(step=0, rows=8, seq_len=512)
    padded = 0
    for i in range(8):
        docs = batch.doc_ids[i]
        assert set(docs.tolist()) <= {0, 1}  # one document, then perhaps padding
        assert bool((batch.inputs[i][docs == 1] == PAD).all())
        torch.testing.assert_close(
            batch.weights[i], (batch.targets[i] != PAD).float()
        )  # loss on the text only
        padded += bool((docs == 1).any())
    assert padded  # the small corpus has documents shorter than a row


def test_bypass_anneal_fades_the_direct_path(tmp_path):
    cfg = _cfg(max_steps=6, bypass_anneal=0.5, model={"residual": "bypass"})
    assert [cfg.direct_at(s) for s in range(5)] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    assert _cfg().direct_at(0) == 0.0
    train(cfg, tmp_path / "run", log=lambda _: None)
    logged = [r.get("direct") for r in _log(tmp_path / "run")]  # the weight each logged step trained with
    assert logged == pytest.approx([1.0, 2 / 3, 1 / 3, 0, 0, 0], abs=1e-3)
    model = load_model(tmp_path / "run" / "model")  # a pure bypass again: the direct path is not saved
    assert all(g.hsa.direct == 0.0 for g in model.groups)
    ids = torch.randint(5, 100, (1, 40))
    with torch.no_grad():
        plain = model(ids)
        model.groups[0].hsa.direct = 1.0
        assert not torch.allclose(plain, model(ids))


def test_schedule_and_curriculum():
    cfg = _cfg(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(10) == pytest.approx(1e-3) and cfg.lr_at(100) == pytest.approx(1e-4)
    assert cfg.lr_at(55) == pytest.approx(1e-4 + 0.5 * 9e-4)
    lrs = [cfg.lr_at(s) for s in range(10, 100)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:], strict=False))
    assert [cfg.seq_len_at(s) for s in (0, 49, 50, 99, 120)] == [64, 64, 96, 96, 96]


def test_batches(tmp_path):
    tokenizer = load_tokenizer(_cfg())
    corpus = make_small_corpus(tmp_path / "corpus", tokenizer)
    data = DataConfig(mix={"lm": 0.5, "passkey": 0.3, "docqa_wiki": 0.2}, options={}, answer_weight=5.0)
    maker = BatchMaker(data, tokenizer, corpus, window=64, seed=1)
    batch = maker.batch(step=4, rows=12, seq_len=512)
    again = maker.batch(step=4, rows=12, seq_len=512)
    assert torch.equal(batch.inputs, again.inputs) and batch.tasks == again.tasks
    assert batch.inputs.shape == batch.targets.shape == batch.weights.shape == (12, 512)
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    assert {"lm", "passkey", "docqa_wiki"} <= set(batch.tasks)
    for i, task in enumerate(batch.tasks):
        w, ans, docs = batch.weights[i], batch.answer[i], batch.doc_ids[i]
        assert bool((torch.diff(docs) >= 0).all())  # document ids only grow along a row
        if task == "lm":
            assert not ans.any() and bool((w == 1).all()) and not batch.evidence[i].any()
            continue
        assert bool((w[ans] == 0).all()) and batch.targets[i][ans][-1] == END  # answers: their own term
        assert bool((w[batch.targets[i] == PAD] == 0).all())
        q = int((batch.inputs[i] == QUESTION).nonzero()[0])
        assert docs[q] == docs[-1] and docs[q - 1] < docs[q]  # the question is its own document
    only = maker.batch(step=0, rows=4, seq_len=256, mix={"passkey": 1.0})  # a curriculum stage's own mix
    assert only.tasks == ["passkey"] * 4
    for i in range(4):  # the evidence mask covers the pass key the answer repeats, before the window
        key = tokenizer.decode(only.targets[i][only.answer[i]][:-1].tolist()).strip()
        assert key in tokenizer.decode(only.inputs[i][only.evidence[i]].tolist())
        q = int((only.inputs[i] == QUESTION).nonzero()[0])
        assert int(only.evidence[i].nonzero().max()) < q - 64
    joined = BatchMaker(replace(data, question_own_doc=False), tokenizer, corpus, window=64, seed=1)
    rows = joined.batch(step=0, rows=2, seq_len=256, mix={"passkey": 1.0})
    assert bool((rows.doc_ids == 0).all())  # one haystack document, the question continuing it
    with pytest.raises(ValueError, match="corpus"):
        BatchMaker(data, tokenizer, None, window=64, seed=1)
    with pytest.raises(ValueError, match="unknown row kinds"):
        BatchMaker(data, tokenizer, corpus, window=64, seed=1, stage_mixes=({"passkee": 1.0},))


def test_retrieval_loss_scores_the_evidence_chunks_and_training_lowers_it(tmp_path):
    """retrieval_loss = −log of the softmax mass on the evidence's visible chunks (checked against a
    direct computation), and a run with retrieval_weight lowers it on held-out rows."""
    cfg = _cfg(data=replace(_cfg().data, retrieval_weight=1.0), max_steps=30)
    model = build_model(cfg)
    maker = make_batch_maker(cfg, model.cfg.window)
    batch = maker.batch(0, 4, 96, mix={"passkey": 1.0})
    probe = RetrievalProbe(batch.answer)
    model(batch.inputs, batch.doc_ids, probe=probe)
    S = model.cfg.chunk_size
    values, rows = retrieval_loss(probe, batch.evidence, S)
    _assert_retrieval_loss(values, rows, probe, S, lambda b, t, chunk: bool(batch.evidence[b, chunk].any()))
    lm_only = RetrievalProbe(torch.zeros_like(batch.answer))
    model(batch.inputs, batch.doc_ids, probe=lm_only)
    assert retrieval_loss(lm_only, batch.evidence, S) is None  # nothing probed: no term
    held_out = maker.batch(0, 16, 96, split="val", mix={"passkey": 1.0})

    def held_out_loss(m) -> float:
        probe = RetrievalProbe(held_out.answer)
        with torch.no_grad():
            m(held_out.inputs, held_out.doc_ids, probe=probe)
        return retrieval_loss(probe, held_out.evidence, S)[0].mean().item()

    torch.manual_seed(0)
    before = held_out_loss(build_model(cfg))
    train(replace(cfg, data=replace(cfg.data, retrieval_weight=5.0)), tmp_path / "run", log=lambda _: None)
    assert (
        "retrieval_loss" in _log(tmp_path / "run")[-1]
        and "passkey" in _log(tmp_path / "run")[-1]["retrieval"]
    )
    after = held_out_loss(load_model(tmp_path / "run" / "model"))
    assert after < before - 0.2, (before, after)


def _assert_retrieval_loss(values, rows, probe, S, is_target) -> None:
    """retrieval_loss's (values, rows) against a direct computation: per probed position (b, t), −log of
    the softmax mass on the visible chunks that is_target(b, t, chunk slice) picks, the mean over groups
    and heads; then per row the mean over its positions."""
    C = probe.landmarks.shape[1]
    expected: dict[int, list[torch.Tensor]] = {}
    for n, (b, t) in enumerate(zip(*(x.tolist() for x in probe.mask.nonzero(as_tuple=True)), strict=True)):
        seen = [c for c in range(C) if (c + 1) * S <= t]
        hit = [i for i, c in enumerate(seen) if is_target(b, t, slice(c * S, (c + 1) * S))]
        if not hit:
            continue
        terms = []
        for q in probe.queries:
            for h in range(q.shape[1]):
                scores = torch.stack([q[n, h] @ probe.landmarks[b, c, h] for c in seen]) / q.shape[-1] ** 0.5
                terms.append(-torch.log(scores.softmax(0)[hit].sum()))
        expected.setdefault(b, []).append(torch.stack(terms).mean())
    assert rows.tolist() == sorted(expected)
    torch.testing.assert_close(values, torch.stack([torch.stack(expected[b]).mean() for b in rows.tolist()]))


def test_retrieval_at_part_asks_each_reference_for_its_own_needle(tmp_path):
    """retrieval_at = "part": one probed position per value of a multi-query answer, the one that predicts
    the value's first token, whose evidence is that value's needle alone; training runs with it."""
    data = replace(_cfg().data, retrieval_weight=1.0, retrieval_at="part", mix={"niah_multiquery": 1.0})
    options = {"niah_multiquery": {"value_kind": "number"}}
    cfg = _cfg(
        data=replace(data, options=options), max_steps=3, batch_tokens=512, curriculum=[Stage(1.0, 256)]
    )
    model, tokenizer = build_model(cfg), load_tokenizer(cfg)
    batch = make_batch_maker(cfg, model.cfg.window).batch(0, 2, 256)
    positions = retrieval_positions(batch.answer, "part", batch.answer_part)
    assert positions.sum(1).tolist() == [4, 4]
    for b, t in zip(*(x.tolist() for x in positions.nonzero(as_tuple=True)), strict=True):
        value = tokenizer.decode(batch.targets[b, t : t + 7].tolist())
        part = batch.answer_part[b, t]
        assert value.isdigit() and value in tokenizer.decode(
            batch.inputs[b][batch.evidence_part[b] == part].tolist()
        )
        others = (batch.evidence_part[b] > 0) & (batch.evidence_part[b] != part)
        assert value not in tokenizer.decode(batch.inputs[b][others].tolist())
    probe = RetrievalProbe(positions)
    model(batch.inputs, batch.doc_ids, probe=probe)
    S = model.cfg.chunk_size
    values, rows = retrieval_loss(probe, batch.evidence, S, (batch.answer_part, batch.evidence_part))

    def own(b: int, t: int, chunk: slice) -> bool:
        return bool((batch.evidence_part[b, chunk] == batch.answer_part[b, t]).any())

    _assert_retrieval_loss(values, rows, probe, S, own)
    train(cfg, tmp_path / "run", log=lambda _: None)
    assert "niah_multiquery" in _log(tmp_path / "run")[-1]["retrieval"]
    with pytest.raises(ValueError, match="retrieval_at"):
        retrieval_positions(batch.answer, "part")  # needs the parts


def test_retrieval_positions_first_keeps_each_rows_first_answer_position():
    maker = make_batch_maker(_cfg(), 16)
    answer = maker.batch(0, 3, 96, mix={"passkey": 1.0}).answer
    first = retrieval_positions(answer, "first")
    assert first.sum(1).tolist() == [1, 1, 1]
    assert (first.int().argmax(1) == answer.int().argmax(1)).all()
    assert torch.equal(retrieval_positions(answer, "answer"), answer)
    with pytest.raises(ValueError, match="retrieval_at"):
        retrieval_positions(answer, "last")


@pytest.mark.parametrize(
    "growth",
    [
        {"landmark_mean": True},
        {"enc_layers": 3},
        {"lexical_dim": 32},
        {"lexical_dim": 32, "lexical_words": True},
        {"lora_rank": 4},
    ],
)
def test_init_grown_computes_what_it_computed(tmp_path, growth):
    """A trained model fine-tuned with new parts (landmark_mean's zero projection, encoder layers that
    pass their input through, a lexical part with its gate shut, LoRA adapters with B at zero) keeps its
    weights and its answers over a memory; overrides that would change a shape or drop weights are
    refused, naming the setting."""
    trained = build_model(_cfg())
    save_model(trained, tmp_path / "init")
    grown = build_model(_cfg(init=str(tmp_path / "init"), model=growth))
    new = {
        "landmark_mean": lambda: grown.encoder.mean_proj.weight,
        "enc_layers": lambda: grown.encoder.layers[-1].mlp.w_down.weight,
        "lexical_dim": lambda: grown.groups[0].retrieval.lex_gate,
        "lora_rank": lambda: grown.groups[-1].blocks[-1].attn.wo.lora_b,
    }[next(iter(growth))]()
    assert len(grown.encoder.layers) == growth.get("enc_layers", trained.cfg.enc_layers)
    if growth.get("lexical_words"):  # its word table comes from the tokenizer: some pieces continue words
        assert (grown.word_pieces > 0).any() and (grown.word_pieces < 0).any()
    doc = torch.randint(0, trained.cfg.vocab_size, (160,))
    question = torch.randint(0, trained.cfg.vocab_size, (1, trained.cfg.chunk_size - 1))

    def answer(m):
        return m.eval()(question, memory=m.encode_memory(doc))

    with torch.no_grad():
        torch.testing.assert_close(answer(grown), answer(trained))
        new.normal_()  # once trained, the new part changes the landmarks or the queries
        assert not torch.allclose(answer(grown), answer(trained))
    if "lexical_dim" in growth:  # token bins and word bins do not turn into each other
        save_model(grown, tmp_path / "grown")
        switched = {"lexical_words": not growth.get("lexical_words", False)}
        with pytest.raises(ValueError, match="lexical_words"):
            build_model(_cfg(init=str(tmp_path / "grown"), model=switched))
    with pytest.raises(ValueError, match="d_model"):
        build_model(_cfg(init=str(tmp_path / "init"), model={"d_model": 32}))
    with pytest.raises(ValueError, match="drop its weights"):
        build_model(_cfg(init=str(tmp_path / "init"), model={"enc_layers": 0}))


def test_configs_parse():
    for path in sorted(CONFIGS.glob("*.toml")):
        cfg = TrainConfig.from_toml(path)
        assert cfg.curriculum and cfg.data.mix and math.isclose(sum(cfg.data.mix.values()), 1.0)
        for stage in cfg.curriculum:
            assert stage.mix is None or math.isclose(sum(stage.mix.values()), 1.0)
    small = TrainConfig.from_toml(CONFIGS / "hsa-small.toml")
    assert small.preset == "small" and small.curriculum[-1].seq_len == 4096 and small.lr <= 1e-3
    assert small.curriculum[0].seq_len <= 1024  # every chunk selected at first (top-k 8 × 64 + window 512)


def test_bad_config_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_stepz = 3\n")
    assert cli(["train", "--config", str(bad)]) == 2
    assert "max_stepz" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--help"], ["train", "corpus", "--help"]])
@pytest.mark.parametrize("entry", ["hsa", "module"])
def test_help(argv, entry, capsys):
    with pytest.raises(SystemExit) as e:
        cli(argv) if entry == "hsa" else train_main(argv[1:])
    assert e.value.code == 0 and "corpus" in capsys.readouterr().out


def test_held_out_rows_follow_the_last_stage_gap_and_a_stopped_run_reports_them(tmp_path):
    # contexts no longer than the window (the ablation's "dense" run) build only with the stage's gap
    cfg = _cfg(max_steps=4, curriculum=[Stage(1.0, 48, gap=4)])
    messages = []
    train(cfg, tmp_path / "run", stop_at=2, log=messages.append)
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2] and "val_loss" in log[-1] and "val_loss" not in log[0]
    # two steps teach no reading, and the run says so
    assert log[-1]["val_acc"]["passkey"] == 0 and "has not learned to read" in messages[-1]


def test_the_lexical_part_learns_at_its_own_rate(tmp_path):
    """lexical_lr_scale multiplies the learning rate of the lexical gates and per-token weights only, and
    training moves them."""
    cfg = _cfg(max_steps=2, model={"lexical_dim": 16}, lexical_lr_scale=5.0)
    train(cfg, tmp_path, log=lambda _: None)
    groups = torch.load(tmp_path / "ckpt.pt", weights_only=False)["optimizer"]["param_groups"]
    lexical = [g for g in groups if "lr_scale" in g]
    assert len(lexical) == 1 and len(lexical[0]["params"]) == 2 * len(build_model(cfg).groups)
    assert all(g["lr"] * 5.0 == pytest.approx(lexical[0]["lr"]) for g in groups if g is not lexical[0])
    trained = load_model(tmp_path / "model")
    assert (trained.groups[0].retrieval.lex_weight != 1.0).any()


def test_parts_start_at_the_token_that_holds_the_separator():
    """vt names after the first start inside a token (' QWERT' is ' Q', 'WERT'): each still gets its
    part, at the token that starts writing it, with the statement that assigns it as evidence."""
    data = replace(_cfg().data, mix={"vt": 1.0}, options={})
    cfg = _cfg(data=data, curriculum=[Stage(1.0, 512)])
    tokenizer = load_tokenizer(cfg)
    batch = make_batch_maker(cfg, 64).batch(0, 2, 512)
    for b in range(2):
        starts = batch.answer_part[b].nonzero().flatten()
        assert batch.answer_part[b, starts].tolist() == [1, 2, 3, 4, 5]
        answer = tokenizer.decode(batch.targets[b][batch.answer[b]].tolist()).split()
        for t, name in zip(starts.tolist(), answer, strict=True):
            assert tokenizer.decode(batch.targets[b, t:].tolist()).strip().startswith(name)
            evidence = tokenizer.decode(
                batch.inputs[b][batch.evidence_part[b] == batch.answer_part[b, t]].tolist()
            )
            assert f"VAR {name} =" in evidence
