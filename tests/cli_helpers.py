"""Running ``python -m bdlib`` inside the test process, shared by the command-line tests."""

from __future__ import annotations

from pathlib import Path

from bdlib.__main__ import main

EXAMPLES = Path(__file__).resolve().parent.parent / "bdlib" / "examples"
FAST = ["--respacing", "10", "--k", "3"]  # a short chain: the tests check plumbing, not pictures


def cli(*args: object) -> int:
    """The exit code of ``python -m bdlib ARGS`` run in this process (argparse exits with SystemExit)."""
    try:
        return main([str(a) for a in args])
    except SystemExit as stop:
        return stop.code


def short(err: str) -> str:
    """``err`` after checking it is what a user should see for their mistake: one or two lines, no traceback."""
    lines = [line for line in err.strip().splitlines() if line]
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    return err
