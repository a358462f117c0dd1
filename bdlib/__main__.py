"""The bdlib command line: ``python -m bdlib <command> ...``.

Each command lives in its own module under ``bdlib.commands`` and exposes ``register(subparsers)``,
which adds an argparse sub-parser whose ``func`` default runs the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("demo", "download", "edit", "evaluate", "figures", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bdlib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bdlib.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
