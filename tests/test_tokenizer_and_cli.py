"""The tokenizer's contract (special ids, offsets, round trip) and the command line's shell."""

import subprocess
import sys

import pytest

from app.cli import COMMANDS, build_parser
from hsa_core import ModelNotFound, load_model
from hsa_core.tokenizer import ANSWER, END, EOT, QUESTION, SPECIAL_TOKENS


@pytest.fixture(scope="module")
def tok():
    return load_model("test").tokenizer


def test_round_trip_and_offsets(tok):
    text = "Die Brücke — the pass key is 71432.\nUUID 3f2a-91bc"
    ids, offsets = tok.encode_with_offsets(text)
    assert tok.decode(ids) == text
    starts = [a for a, _ in offsets]
    assert starts == sorted(starts) and offsets[0][0] == 0 and offsets[-1][1] == len(text)
    ascii_text = "Chapter 3: the pass key is 71432."
    _, ascii_offsets = tok.encode_with_offsets(ascii_text)
    assert "".join(ascii_text[a:b] for a, b in ascii_offsets) == ascii_text
    assert [tok.hf.id_to_token(i) for i in tok.encode("71432")] == list("71432")


def test_batch_spans_are_each_runs_characters(tok):
    texts = ["Die Brücke — 71432 🙂 naïve\n\tcafé <|endoftext|> x" * 3, "a", "ひらがな and ＡＢＣ ﬁx"]
    for text, (ids, spans) in zip(texts, tok.encode_batch_with_spans(texts, 4), strict=True):
        _, offsets = tok.encode_with_offsets(text)
        runs = [offsets[t : t + 4] for t in range(0, len(offsets), 4)]
        assert ids == tok.encode(text)
        assert spans == [(run[0][0], max(e for _, e in run)) for run in runs]


def test_special_tokens_and_prompt(tok):
    assert [tok.hf.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = tok.prompt("  What is the pass key? ")
    assert ids[0] == QUESTION and ids[-1] == ANSWER
    assert tok.decode(ids) == "What is the pass key?"
    assert tok.encode("<|endoftext|><|end|>") == [EOT, END]


def test_load_model_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(ModelNotFound, match="no trained checkpoint"):
        load_model(tmp_path)


def test_every_command_has_help(capsys):
    parser, _ = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([name, "--help"])
        assert exit_.value.code == 0
        assert f"usage: hsa {name}" in capsys.readouterr().out


def test_the_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(name in out.stdout for name in COMMANDS)
