"""The tokenizer's contract (special ids, offsets, round trip) and the command line's shell."""

import subprocess
import sys

import pytest

from app.cli import COMMANDS, main
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


def test_special_tokens_and_prompt(tok):
    assert [tok.hf.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = tok.prompt("  What is the pass key? ")
    assert ids[0] == QUESTION and ids[-1] == ANSWER
    assert tok.decode(ids) == "What is the pass key?"
    assert tok.encode("<|endoftext|><|end|>") == [EOT, END]


def test_load_model_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(ModelNotFound, match="no trained checkpoint"):
        load_model(tmp_path)


def test_every_command_has_help():
    for name in COMMANDS:
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", name, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert "usage: hsa" in out.stdout


def test_a_command_not_built_exits_2(capsys):
    from app.cli import _module

    missing = [n for n in COMMANDS if _module(n) is None]
    if not missing:
        pytest.skip("every command is built")
    assert main([missing[0]]) == 2
    assert "not built yet" in capsys.readouterr().err
