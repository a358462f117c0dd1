"""Argument types shared by the commands: a bad value is refused by argparse, before anything runs.

argparse prints ``usage: ...`` and ``python -m bdlib CMD: error: argument --seed: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import math

from bdlib.runtime.devices import check_device
from bdlib.runtime.randomness import check_seed


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def seed(text: str) -> int:
    """A seed: an integer in ``[0, 2**63)``."""
    try:
        return check_seed(_int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def device(text: str) -> str:
    """A device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text
