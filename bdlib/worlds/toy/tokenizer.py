"""A word-level tokenizer for toy-world prompts (the toy CLIPs' counterpart of CLIP's BPE tokenizer).

The toy vocabulary is closed: 7 colours, 3 shapes and the glue words "a", "an", "and" and ",". Every
word is one token, so a prompt is encoded as::

    "a red circle, a blue square"  ->  [a, red, circle, ",", a, blue, square, <end>, <pad>, ...]

padded to ``CONTEXT_LENGTH`` = 12 tokens. The longest caption ("a C S, a C S and a C S") has 11 words,
so with its end token it fills the context exactly. The end token marks where the text encoder reads
its summary (as CLIP reads the feature at its end-of-text token); the empty prompt, the prompt of a
"remove" edit, encodes to the end token alone.

Prompts are validated by :func:`bdlib.worlds.toy.vocab.parse_prompt` first, so an unknown word raises
the same ``ValueError`` (naming the word and listing the vocabulary) everywhere in the toy world.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from .vocab import COLORS, SHAPES, parse_prompt, shorten

PAD, END = "<pad>", "<end>"
GLUE_WORDS: tuple[str, ...] = ("a", "an", "and", ",")
TOKENS: tuple[str, ...] = (PAD, END, *GLUE_WORDS, *COLORS, *SHAPES)
"""Every token, in id order: ``<pad>`` = 0, ``<end>`` = 1, then the glue words, colours and shapes."""
TOKEN_IDS: dict[str, int] = {word: i for i, word in enumerate(TOKENS)}
PAD_ID, END_ID = TOKEN_IDS[PAD], TOKEN_IDS[END]
VOCAB_SIZE = len(TOKENS)
CONTEXT_LENGTH = 12


def split_words(prompt: str) -> list[str]:
    """Lower-cased words of ``prompt`` with "," as a word of its own and a final full stop dropped."""
    text = prompt.strip().lower().rstrip(".").strip()
    return re.findall(r"[^\s,]+|,", text)


def encode(prompt: str, context_length: int = CONTEXT_LENGTH) -> list[int]:
    """Token ids of one prompt, end token included, without padding.

    Raises:
        ValueError: an unknown word or a malformed phrase (from :func:`parse_prompt`), or a prompt longer
            than ``context_length - 1`` words.
    """
    parse_prompt(prompt)  # the toy world's one validation: same message for every unknown word
    ids = [TOKEN_IDS[w] for w in split_words(prompt)] + [END_ID]
    if len(ids) > context_length:
        raise ValueError(
            f"prompt {shorten(prompt)} has {len(ids)} tokens (end token included) but the toy CLIP reads at most "
            f"{context_length}; the toy world describes at most 3 objects"
        )
    return ids


def decode(ids: Sequence[int] | torch.Tensor) -> str:
    """The prompt text of a row of token ids (stops at the end token; inverse of :func:`encode` up to case)."""
    words: list[str] = []
    for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        if i == END_ID:
            break
        if i != PAD_ID:
            words.append(TOKENS[i])
    return " ".join(words).replace(" ,", ",")


def tokenize(prompts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Token ids of a list of prompts, shape (N, context_length), right-padded with ``<pad>`` (id 0)."""
    if isinstance(prompts, str):
        raise TypeError("pass a list of prompts, e.g. ['a red circle'], not a single string")
    out = torch.full((len(prompts), context_length), PAD_ID, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids = encode(prompt, context_length)
        out[row, : len(ids)] = torch.tensor(ids)
    return out


def end_positions(tokens: torch.Tensor) -> torch.Tensor:
    """(N,) index of the end token in every row of ``tokens`` (N, L)."""
    return (tokens == END_ID).long().argmax(dim=1)
