"""``python -m bdlib download paper [--cache-dir DIR] [--only PART ...]``: fetch the paper's weights.

Downloads guided-diffusion's 256x256 unconditional UNet and CLIP ViT-B/16 into the bdlib cache
(``--cache-dir``, else ``$BDLIB_CACHE``, else ``~/.cache/bdlib``), verifying SHA-256, and makes
torchvision fetch LPIPS's VGG-16 trunk. Interrupted downloads resume when the command is run again.

Exit code 2 with one line that says what happened and what to do: the server refused (404, 403: the file
moved, retrying will not help), the cache folder cannot be written, the connection was cut or stalled
(the partial file is kept: run again to resume), or the bytes failed their SHA-256 check.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
from pathlib import Path

from bdlib.runtime.files import OutputError, check_folder_writable

WHAT = ("paper",)


def _failure(error: BaseException, cache: Path) -> str:
    """One line: what went wrong in a download and what to do about it."""
    if isinstance(error, urllib.error.HTTPError):
        return (
            f"the server answered {error.code} {error.reason} for {error.url}: the file is not there (retrying "
            "will not help); check for a newer bdlib, whose bdlib/worlds/paper/checkpoints.py may list a new address"
        )
    if isinstance(error, PermissionError) or (
        isinstance(error, OSError) and not isinstance(error, ConnectionError | TimeoutError) and error.errno is not None
    ):
        reason = error.strerror or str(error)
        return f"cannot write to {cache}: {reason}; choose another folder with --cache-dir (or $BDLIB_CACHE)"
    reason = getattr(error, "reason", None) or error
    if any(cache.glob("*.part")):
        return f"download failed: {reason}. The partial file is kept in {cache}: run the same command to resume"
    return f"download failed: {reason}. Check the network connection and run the same command again"


def run(args: argparse.Namespace) -> int:
    """Run the download; return 0 on success, 2 when it failed (the message says what to do)."""
    from bdlib.worlds.paper.checkpoints import PAPER_PARTS, download_paper_weights, resolve_cache_dir

    include = tuple(args.only) if args.only else PAPER_PARTS
    cache = resolve_cache_dir(args.cache_dir)
    if set(include) - {"lpips"}:
        try:
            check_folder_writable(cache, f"to the cache folder {cache}")
        except OutputError as error:
            raise OutputError(f"{error} with --cache-dir (or $BDLIB_CACHE)") from None
    try:
        paths = download_paper_weights(cache_dir=args.cache_dir, include=include)
    except ValueError:
        raise  # a failed checksum: reported by bdlib.__main__ with its own message
    except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
        print(f"error: {_failure(error, cache)}", file=sys.stderr)
        return 2
    for part, path in paths.items():
        print(f"{part}: ready ({path})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``download`` command to the ``python -m bdlib`` parser."""
    parser = subparsers.add_parser(
        "download",
        help="download pretrained weights (explicit, resumable, SHA-256 checked)",
        description=__doc__.splitlines()[0].split(": ", 1)[-1],
    )
    parser.add_argument("what", choices=WHAT, help="which weights: 'paper' = UNet, CLIP ViT-B/16, LPIPS-VGG")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where to store the files (default: $BDLIB_CACHE or ~/.cache/bdlib)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("unet", "clip", "lpips"),
        default=None,
        help="fetch only these parts (default: all three)",
    )
    parser.set_defaults(func=run)
    return parser
