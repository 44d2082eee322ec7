"""Evaluation: scoring, evidence rows, the table/JSON/plot, and `hsa eval` end to end on the test preset."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hsa_core import load_model
from hsa_core.evaluate import (
    Result,
    evidence_rows,
    format_length,
    parse_length,
    plot,
    score,
    strict_score,
    table,
    write_json,
)
from hsa_core.tasks import Sample, TaskEnv, make_sample


def test_parse_and_format_lengths():
    assert [parse_length(x) for x in ("4k", "16K", "1m", "32M", "1000")] == [4096, 16384, 2**20, 2**25, 1000]
    assert format_length(2**24) == "16m" and format_length(1000) == "1000"
    with pytest.raises(ValueError, match="bad length 'four'"):
        parse_length("four")


@pytest.mark.parametrize(
    "task, answer, refs, expected",
    [
        ("passkey", "The pass key is 71432.", ["71432"], 1.0),
        ("passkey", "7143", ["71432"], 0.0),
        ("niah_multivalue", "1234567 and 7654321", ["1234567", "7654321", "1111111", "2222222"], 0.5),
        ("vt", "abcde, FGHIJ", ["ABCDE", "FGHIJ"], 1.0),
        ("babi_qa1", "Garden.", ["garden"], 1.0),
        ("babi_qa1", "the garden", ["garden"], 0.0),  # bAbI wants the exact label
        ("docqa", "It is a large river in Europe", ["river"], 1.0),
        ("docqa", "", ["river"], 0.0),
    ],
)
def test_score(task, answer, refs, expected):
    assert score(task, answer, refs) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("7654321", 1.0),
        ("7654321, 1234567, 2222222", 0.0),  # every key's value: RULER's credit, not the strict one
        ("12345678, 7654321", 1.0),  # a distractor only inside a longer number is not named
        ("1234567", 0.0),
    ],
)
def test_strict_score_refuses_answers_that_name_a_distractor(answer, expected):
    refs, distractors = ["7654321"], ["1234567", "2222222", "2345678"]
    assert score("niah_multikey", answer, refs) == float("7654321" in answer)
    assert strict_score("niah_multikey", answer, refs, distractors) == expected


@pytest.mark.parametrize("task", ["niah_multikey", "vt"])
def test_distractors_are_the_values_not_asked_for(env, task):
    options = {"vt": {"chains": 2}}.get(task, {})
    s = make_sample(task, 2048, seed=5, env=env, **options)
    context = env.tokenizer.decode(s.context_ids().tolist())
    assert s.distractors and not set(s.distractors) & set(s.answers)
    assert all(d in context for d in s.distractors)
    assert strict_score(task, s.answer, s.answers, s.distractors) == 1.0
    assert strict_score(task, s.answer + " " + s.distractors[0], s.answers, s.distractors) == 0.0
    single = make_sample("niah_multivalue", 2048, seed=5, env=env)
    assert single.distractors == []  # every value is asked for


def test_evidence_rows_follow_documents_encoded_one_by_one():
    docs = [np.zeros(10, np.int32), np.zeros(20, np.int32), np.zeros(5, np.int32)]  # chunks: 2, 3, 1 of S=8
    # context: doc0 [0,11) doc1 [11,32) doc2 [32,38); evidence in doc1 at offsets 7..17 → its chunks 0..2
    s = Sample("t", docs, "q?", [2, 3], "a", ["a"], [(18, 29)])
    assert evidence_rows(s, 8) == {2, 3, 4}
    s = Sample("t", docs, "q?", [2, 3], "a", ["a"], [(0, 3), (33, 35)])
    assert evidence_rows(s, 8) == {0, 5}


@pytest.fixture(scope="module")
def env():
    model = load_model("test")
    return TaskEnv(model.tokenizer, window=model.cfg.window)


@pytest.mark.parametrize("task", ["passkey", "niah_single", "niah_multikey", "vt", "babi_qa2"])
@pytest.mark.parametrize("length", [4096, 16384])
def test_samples_have_the_requested_length(env, task, length):
    s = make_sample(task, length, seed=3, env=env)
    assert abs(s.length - length) <= 0.02 * length
    assert evidence_rows(s, 8), "no evidence chunk"


def test_table_json_and_plot(tmp_path):
    results = [
        Result("passkey", 4096, 10, 1.0, 1.0, 0.5),
        Result("passkey", 16384, 10, 0.9, 0.95, 1.5),
        Result("vt", 4096, 10, 0.4, 0.5, 0.6, strict_accuracy=0.1),
    ]
    text = table(results)
    assert "| passkey | 100% (100%) | 90% (95%) |" in text and "| vt | 40% (50%) strict 10% | – |" in text
    write_json(results, tmp_path / "r.json", {"model": "x"})
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["model"] == "x"
    assert set(data["results"][0]) >= {"task", "length", "accuracy", "evidence_recall", "seconds"}
    plot(results, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hsa_eval_command(tmp_path):
    cmd = [sys.executable, "-m", "app.cli", "eval", "--model", "test", "--tasks", "passkey,niah_single"]
    out = subprocess.run(
        [*cmd, "--lengths", "1k", "--samples", "2", "--max-tokens", "4", "--dtype", "bfloat16"]
        + ["--top-k", "2", "--json", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["device"], data["dtype"], data["top_k"]) == ("cpu", "bfloat16", 2)
    assert [(r["task"], r["length"], r["samples"]) for r in data["results"]] == [
        ("passkey", 1024, 2),
        ("niah_single", 1024, 2),
    ]
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["evidence_recall"] <= 1 for r in data["results"])
    assert (tmp_path / "accuracy.png").is_file()
    bad = subprocess.run([*cmd[:-1], "nope", "--lengths", "1k"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown tasks ['nope']" in bad.stderr
