"""The toy world's vocabulary: 7 colours, 3 shapes, captions and a strict prompt parser.

A toy scene holds 1-3 objects, each one colour word and one shape word. Captions list the objects in
plain English with the right article::

    [("red", "circle")]                                          -> "a red circle"
    [("orange", "square")]                                       -> "an orange square"
    [("red", "circle"), ("blue", "triangle")]                    -> "a red circle and a blue triangle"
    [("red", "circle"), ("blue", "square"), ("white", "triangle")]
                                         -> "a red circle, a blue square and a white triangle"

:func:`parse_prompt` inverts :func:`build_caption` and refuses words outside the vocabulary with a
message that lists it, so a typo like "a pink circle" fails loudly instead of guiding towards nothing.
The empty prompt parses to ``[]``: it is the prompt of a "remove" edit (plain inpainting).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white")
"""Colour words, in label order (a colour label is an index into this tuple)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""Shape words, in label order (a shape label is an index into this tuple)."""

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (228, 26, 28),
    "green": (30, 170, 60),
    "blue": (35, 85, 235),
    "yellow": (250, 225, 20),
    "purple": (150, 45, 205),
    "orange": (255, 135, 0),
    "white": (250, 250, 250),
}
"""8-bit sRGB value of every colour word: saturated and far apart, so that colour is unambiguous."""

_ARTICLES = ("a", "an")
_VOWELS = "aeiou"


def color_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """The colour of every label as a (7, 3) tensor in the bdlib image range [-1, 1]."""
    rgb = torch.tensor([COLOR_RGB[c] for c in COLORS], dtype=torch.float32, device=device)  # (7, 3)
    return rgb / 127.5 - 1.0


def article(word: str) -> str:
    """The indefinite article for ``word``: "an" before a vowel letter, "a" otherwise."""
    return "an" if word[:1].lower() in _VOWELS else "a"


def object_phrase(color: str, shape: str) -> str:
    """One object as a noun phrase, e.g. ``object_phrase("orange", "square") == "an orange square"``."""
    _check_word(color, COLORS, "colour")
    _check_word(shape, SHAPES, "shape")
    return f"{article(color)} {color} {shape}"


def build_caption(objects: Sequence[tuple[str, str]]) -> str:
    """Caption of a list of (colour, shape) pairs: phrases joined by ", " with " and " before the last.

    An empty list gives the empty caption "" (an empty scene, or the prompt of a "remove" edit).
    """
    phrases = [object_phrase(color, shape) for color, shape in objects]
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption_from_labels(labels: Sequence[tuple[int, int]]) -> str:
    """Caption of a list of (colour index, shape index) label pairs."""
    return build_caption([(COLORS[c], SHAPES[s]) for c, s in labels])


def vocabulary_help() -> str:
    """One line that lists the vocabulary, used in error messages."""
    return f"colours: {', '.join(COLORS)}; shapes: {', '.join(SHAPES)}"


def shorten(text: str, limit: int = 60) -> str:
    """``repr(text)``, cut to about ``limit`` characters (error messages quote prompts, which may be long)."""
    return repr(text) if len(text) <= limit else f"{text[: limit - 3]!r}... ({len(text)} characters)"


def _listed(words: Sequence[str], most: int = 5) -> str:
    """The distinct ``words``, quoted, at most ``most`` of them."""
    distinct = list(dict.fromkeys(words))
    more = f" and {len(distinct) - most} more" if len(distinct) > most else ""
    return ", ".join(shorten(w, 20) for w in distinct[:most]) + more


def parse_prompt(prompt: str) -> list[tuple[str, str]]:
    """Parse a toy-world prompt into a list of (colour, shape) pairs.

    Accepts exactly the captions :func:`build_caption` writes (case and surrounding spaces are free, a
    final full stop is allowed, and the article may be "a" or "an" whichever word follows).
    The empty (or all-blank) prompt gives ``[]``.

    Raises:
        ValueError: for a word outside the vocabulary (the message names the word and lists the 7
            colours and 3 shapes), or for a phrase that is not "a COLOUR SHAPE".
    """
    text = prompt.strip().lower().rstrip(".").strip()
    if not text:
        return []
    phrases = re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", text)
    parsed: list[tuple[str, str]] = []
    for phrase in phrases:
        words = phrase.split()
        if words and words[0] in _ARTICLES:
            words = words[1:]
        unknown = [w for w in words if w not in COLORS and w not in SHAPES and w not in ("and", *_ARTICLES)]
        if unknown:
            raise ValueError(
                f"prompt {shorten(prompt)}: unknown word(s) {_listed(unknown)}; the toy world only knows "
                f'{vocabulary_help()} (write prompts like "a red circle" or "a red circle and a blue square")'
            )
        if len(words) != 2 or words[0] not in COLORS or words[1] not in SHAPES:
            raise ValueError(
                f"prompt {shorten(prompt)}: cannot read {shorten(phrase)}; each object must be written "
                f'"a COLOUR SHAPE" ({vocabulary_help()}), objects joined by "," and "and"'
            )
        parsed.append((words[0], words[1]))
    return parsed


def _check_word(word: str, allowed: Sequence[str], kind: str) -> None:
    """Raise ValueError naming ``word`` and the vocabulary when ``word`` is not in ``allowed``."""
    if word not in allowed:
        raise ValueError(f"unknown {kind} {word!r}; the toy world only knows {vocabulary_help()}")
