"""The command line's first moments, before its own error handling runs.

``python -m bdlib`` imports the package (PyTorch: a second or two) and the commands (matplotlib) before
:func:`bdlib.__main__.main` can catch anything. :func:`stop_quietly_while_starting` makes Ctrl-C in that time
end the process with one line and exit code 130, as Ctrl-C later does, instead of a traceback through the
imports. :func:`files_only_matplotlib` sets matplotlib up for a program that only writes files: the Agg backend
whatever ``MPLBACKEND`` says (a value matplotlib does not know would stop every command), and no warnings about an
unwritable configuration folder (a read-only HOME: matplotlib then uses a temporary folder, which is all a
command needs).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

STOPPED_WHILE_STARTING = "stopped (Ctrl-C) while starting; nothing was done"


def _stop(signum: int, _frame) -> None:
    print(f"\n{STOPPED_WHILE_STARTING}", file=sys.stderr)
    raise SystemExit(128 + signum)


def running_the_command_line() -> bool:
    """True when this process was started as ``python [options] -m bdlib ...`` (not ``-m`` with another module)."""
    args = sys.orig_argv[1:]
    return any(arg == "-mbdlib" or (arg == "-m" and args[i + 1 : i + 2] == ["bdlib"]) for i, arg in enumerate(args))


def stop_quietly_while_starting() -> None:
    """Until :func:`bdlib.__main__.main` takes over, Ctrl-C exits with 130 and one line (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)


def files_only_matplotlib() -> None:
    """Import matplotlib for drawing into files: the Agg backend, and its start-up warnings silenced."""
    os.environ["MPLBACKEND"] = "agg"
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "mkdir -p failed ...", "Matplotlib created a temporary cache directory ..."
    try:
        import matplotlib.pyplot  # noqa: F401 (imported here, quietly, for every command)
    finally:
        logger.setLevel(level)
