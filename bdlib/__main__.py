"""The bdlib command line: ``python -m bdlib <command> ...``.

Each command lives in its own module under ``bdlib.commands`` and exposes ``register(subparsers)``,
which adds an argparse sub-parser whose ``func`` default runs the command.

Exit codes: 0 done; 2 the command could not do what was asked (a bad argument or input, a missing or damaged
file, no space left, a failed download): one or two lines on stderr name the problem and the fix; 130 stopped
by Ctrl-C (SIGINT) and 143 by SIGTERM; 1 an internal error, which is a bug in bdlib. Set ``BDLIB_DEBUG=1`` to
see the Python traceback of an error. Ctrl-C while the command line is still starting (importing PyTorch and
matplotlib) also ends with one line and 130 (:mod:`bdlib.runtime.startup`). The commands draw with matplotlib's
Agg backend, whatever ``MPLBACKEND`` says: they write files and never open a window.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator

from bdlib.runtime.distributed import printed_here
from bdlib.runtime.memory import is_out_of_memory
from bdlib.runtime.startup import files_only_matplotlib, stop_quietly_while_starting

COMMAND_MODULES = ("demo", "download", "edit", "evaluate", "figures", "train")
DEBUG_ENV = "BDLIB_DEBUG"
EXIT_USER, EXIT_BUG = 2, 1


class Stopped(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every ``finally`` runs (temporary files go)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def exit_code_for_signal(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Stopped` in the main thread (elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    """argparse with a two-line error (the problem, then where the help is) instead of the whole usage block."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n(the options: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bdlib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bdlib.commands.{name}").register(subparsers)
    return parser


def _report(message: str, debug: bool, error: BaseException | None = None) -> None:
    """Print ``error: MESSAGE`` (under torchrun, an error that every rank has is printed by rank 0 alone)."""
    if error is not None and not printed_here(error):
        return
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring). argparse exits with 2 by itself."""
    stop_quietly_while_starting()  # until the commands are imported and the arguments read
    files_only_matplotlib()
    args = build_parser().parse_args(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt from here on
        with sigterm_raises():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C); outputs are written whole or not at all", file=sys.stderr)
        return exit_code_for_signal(signal.SIGINT)
    except Stopped as stop:
        print("\nstopped (SIGTERM); outputs are written whole or not at all", file=sys.stderr)
        return exit_code_for_signal(stop.signum)
    except (ValueError, OSError) as error:  # the input, the files or the machine: the message says what to do
        _report(str(error), debug, error)
        return EXIT_USER
    except Exception as error:
        if is_out_of_memory(error) or isinstance(error, MemoryError):
            _report("out of memory: ask for fewer samples, or draw them in smaller batches (--batch-size)", debug)
            return EXIT_USER
        first = (str(error).splitlines() or [""])[0][:200]
        _report(
            f"internal error ({type(error).__name__}: {first}). This is a bug in bdlib: please report it "
            f"(run again with {DEBUG_ENV}=1 to print the traceback)",
            debug,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
