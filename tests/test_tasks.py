"""Task generators: answer in the context, evidence beyond the window, exact length, deterministic."""

import random

import numpy as np
import pytest

from hsa_core.checkpoint import MODELS_DIR, SMALL_MODEL
from hsa_core.tasks import TASKS, Sample, TaskEnv, TaskError, make_sample
from hsa_core.tasks.docqa import cloze
from hsa_core.tokenizer import ANSWER, EOT, QUESTION, Tokenizer
from tests.test_corpus import make_small_corpus

WINDOW = 512
LENGTHS = (2048, 4096)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(MODELS_DIR / SMALL_MODEL / "tokenizer.json")


@pytest.fixture(scope="module")
def env(tokenizer, tmp_path_factory) -> TaskEnv:
    corpus = make_small_corpus(tmp_path_factory.mktemp("corpus"), tokenizer)
    return TaskEnv(tokenizer, corpus, window=WINDOW)


def _context_text(sample: Sample, tokenizer: Tokenizer) -> str:
    return tokenizer.decode(sample.context_ids().tolist())


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("length", LENGTHS)
def test_sample_contract(task, length, env, tokenizer):
    sample = make_sample(task, length, seed=11, env=env)
    # the requested length, within 2% (it is exact by construction)
    assert abs(sample.length - length) <= 0.02 * length
    ctx = sample.context_ids()
    assert ctx.size == sample.context_length and sample.doc_ids().size == ctx.size
    assert all(ctx[np.cumsum([d.size + 1 for d in sample.documents]) - 1] == EOT)
    # the prompt is the project's format
    assert sample.prompt[0] == QUESTION and sample.prompt[-1] == ANSWER
    assert sample.prompt == tokenizer.prompt(sample.question)
    # every reference is in the context, and the evidence lies beyond the window
    text = _context_text(sample, tokenizer).lower()
    assert sample.answers and all(ref.lower() in text for ref in sample.answers)
    assert sample.evidence
    for start, end in sample.evidence:
        assert 0 <= start < end <= ctx.size
        assert ctx.size - end >= WINDOW, f"evidence ends {ctx.size - end} tokens before the prompt"
    assert sample.target_ids(tokenizer)[-1] == 4  # END


@pytest.mark.parametrize("task", sorted(TASKS))
def test_same_seed_same_sample(task, env):
    a, b = (make_sample(task, 2048, seed=5, env=env) for _ in range(2))
    assert np.array_equal(a.context_ids(), b.context_ids())
    assert (a.question, a.answer, a.evidence) == (b.question, b.answer, b.evidence)
    others = [make_sample(task, 2048, seed=s, env=env) for s in range(6, 10)]
    assert any(not np.array_equal(a.context_ids(), o.context_ids()) or a.answer != o.answer for o in others)


@pytest.mark.parametrize(
    "task", ["passkey", "niah_single", "niah_multivalue", "niah_multiquery", "vt", "babi_qa1"]
)
def test_evidence_spans_hold_the_answer(task, env, tokenizer):
    sample = make_sample(task, 4096, seed=3, env=env)
    ctx = sample.context_ids()
    evidence = " ".join(tokenizer.decode(ctx[s:e].tolist()) for s, e in sample.evidence)
    if task.startswith("babi"):
        assert sample.answer in evidence
    else:
        assert all(ref in evidence for ref in sample.answers)


@pytest.mark.parametrize("task", ["niah_multikey", "niah_multivalue", "niah_multiquery", "vt"])
def test_each_reference_has_its_own_needle(task, env, tokenizer):
    """Sample.parts: the needle behind each reference, for a retrieval loss per reference."""
    sample = make_sample(task, 4096, seed=3, env=env)
    ctx = sample.context_ids()
    assert len(sample.parts) == len(sample.answers) and sum(map(len, sample.parts)) == len(sample.evidence)
    for ref, spans in zip(sample.answers, sample.parts, strict=True):
        text = " ".join(tokenizer.decode(ctx[s:e].tolist()) for s, e in spans).strip()
        if task == "vt":  # the statement that assigns the name
            assert text.startswith(f"VAR {ref} = ")
        else:
            assert ref in text and not any(o in text for o in sample.answers if o != ref)


@pytest.mark.parametrize(
    "task", ["passkey", "niah_single", "vt", "babi_qa5", "docqa_wiki", "docqa_dictionary"]
)
def test_several_phrasings(task, env):
    questions = {make_sample(task, 2048, seed=s, env=env).question.split(" ")[0] for s in range(30)}
    assert len(questions) > 1


def test_benchmark_wording_and_options(env, tokenizer):
    s = make_sample("niah_single", 2048, 0, env, template=0, value_kind="uuid")
    assert s.question.startswith("What are all the special magic UUIDs for ")
    assert "One of the special magic UUIDs for" in _context_text(s, tokenizer)
    assert len(s.answer) == 36 and s.answer.count("-") == 4
    p = make_sample("passkey", 2048, 0, env, template=0, depth=0.0)
    assert p.question == "What is the pass key?"
    assert p.evidence[0][0] < 20  # depth 0: at the start
    words = make_sample("niah_multikey", 2048, 0, env, value_kind="word")
    assert len(words.answers) == 1 and "-" in words.answer
    chained = make_sample("vt", 4096, 0, env, chains=2, hops=3)
    assert len(chained.answers) == 4 and len(chained.evidence) == 4
    assert len(make_sample("niah_multiquery", 2048, 0, env).answers) == 4


@pytest.mark.parametrize("haystack", ["noise", "varied", "corpus"])
def test_haystacks(haystack, env, tokenizer):
    s = make_sample("passkey", 2048, 1, env, haystack=haystack)
    assert s.length == 2048 and s.answer in _context_text(s, tokenizer)


def test_long_sample_is_exact_and_docqa_has_distractors(env):
    s = make_sample("passkey", 200_000, 0, env)
    assert s.length == 200_000
    d = make_sample("docqa_wiki", 4096, 0, env)
    assert len(d.documents) > 10 and d.length == 4096


def test_docqa_cloze_asks_for_a_blanked_word_of_the_evidence(env, tokenizer):
    """The clue is a run of the evidence's words with one word blanked; that word is the answer, and
    putting it back into the clue gives text that the evidence document contains."""
    for seed in range(20):
        s = make_sample("docqa_cloze", 2048, seed, env)
        clue = s.question.split('"')[1]
        assert clue.count("___") == 1 and s.answer and " " not in s.answer
        assert len(clue.split()) <= 12
        start, end = s.evidence[0]
        evidence = " ".join(tokenizer.decode(s.context_ids()[start:end].tolist()).split())
        assert clue.replace("___", s.answer) in evidence, (clue, s.answer)
        assert s.task.startswith("docqa_cloze_") and s.answers == [s.answer]


def test_cloze_picks_names_numbers_and_long_words():
    text = "Short one. The compiler was written by Dennis in 1972 at the laboratory: Its home."
    answers = {cloze(text, random.Random(i))[1] for i in range(200)}
    assert answers == {"compiler", "written", "Dennis", "1972", "laboratory"}
    assert cloze("Too short here. Also tiny.", random.Random(0)) is None


def test_babi_answers_follow_the_story(env, tokenizer):
    rooms = {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"}
    for seed in range(10):
        for qa in (1, 2, 3, 4):
            s = make_sample(f"babi_qa{qa}", 2048, seed, env)
            assert s.answer in rooms
        s = make_sample("babi_qa1", 2048, seed, env)
        actor = s.question.rstrip("?").split()[-1] if "now" not in s.question else s.question.split()[2]
        text = _context_text(s, tokenizer)
        moves = [
            line for line in text.replace(". ", ".\n").split("\n") if line.strip().startswith(actor + " ")
        ]
        assert moves[-1].rstrip(".").endswith(s.answer)  # the actor's last move names the answer


def test_too_short_is_a_clear_error(env):
    with pytest.raises(TaskError, match="window"):
        make_sample("passkey", 400, 0, env)
    with pytest.raises(TaskError, match="unknown task"):
        make_sample("nope", 2048, 0, env)
    with pytest.raises(TaskError, match="corpus"):
        make_sample("docqa", 2048, 0, TaskEnv(env.tokenizer, None, WINDOW))


def test_values_of_one_key_are_answered_in_the_order_they_appear(env, tokenizer):
    """A shuffled order would make the training target unlearnable (run 5 never learned multi-value)."""
    for seed in range(8):
        sample = make_sample("niah_multivalue", 2048, seed=seed, env=env)
        text = _context_text(sample, tokenizer)
        positions = [text.index(v) for v in sample.answers]
        assert len(positions) == 4 and positions == sorted(positions)
        assert sample.answer == ", ".join(sample.answers)
