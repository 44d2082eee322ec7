"""The shipped checkpoint (models/hsa-small) on the CPU: it loads as its card says and it retrieves."""

import pytest
import torch

from hsa_core import load_model
from hsa_core.evaluate import evidence_rows, run_sample, score
from hsa_core.tasks import TaskEnv, make_sample
from hsa_core.tokenizer import ANSWER, QUESTION


@pytest.fixture(scope="module")
def model():
    return load_model("hsa-small")


def test_loads_as_the_card_says(model):
    assert model.num_parameters() == 16_296_194
    assert model.cfg.residual == "standard" and model.cfg.top_k == 8 and model.cfg.chunk_size == 64
    assert model.cfg.landmark_mean
    assert (model.cfg.lexical_dim, model.cfg.lexical_window) == (1024, 32)
    assert (model.cfg.lexical_stop, model.cfg.lexical_resume) == (ANSWER, QUESTION)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # bf16 on disk, fp32 on the CPU


@pytest.mark.parametrize(("task", "least"), [("passkey", 5), ("niah_single", 4)])
def test_finds_the_needle_beyond_its_window(model, task, least):
    """Contexts 8x the window: only HSA reaches the needle. Every time, the chunk holding it is among
    those read; the answer is right in at least `least` of 5 (the card: 100% and 80-100%)."""
    env = TaskEnv(model.tokenizer, window=model.cfg.window)
    right = 0
    for seed in range(5):
        sample = make_sample(task, 4096, 500 + seed, env)
        answer, selected, _ = run_sample(model, sample, max_new_tokens=24)
        right += score(task, answer, sample.answers) == 1.0
        assert evidence_rows(sample, model.cfg.chunk_size) & selected, seed
    assert right >= least


def test_top_k_limits_the_chunks_an_answer_reads(model):
    """`hsa eval --top-k` reaches the answer's selections: one chunk per token reads fewer chunks."""
    sample = make_sample("niah_single", 4096, 600, TaskEnv(model.tokenizer, window=model.cfg.window))
    _, default, _ = run_sample(model, sample, max_new_tokens=8)
    _, one, _ = run_sample(model, sample, max_new_tokens=8, top_k=1)
    assert 0 < len(one) < len(default)
