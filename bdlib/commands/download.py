"""``python -m bdlib download paper [--cache-dir DIR] [--only PART ...]``: fetch the paper's weights.

Downloads guided-diffusion's 256x256 unconditional UNet and CLIP ViT-B/16 into the bdlib cache
(``--cache-dir``, else ``$BDLIB_CACHE``, else ``~/.cache/bdlib``), verifying SHA-256, and makes
torchvision fetch LPIPS's VGG-16 trunk. Interrupted downloads resume when the command is run again.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
from pathlib import Path

WHAT = ("paper",)


def run(args: argparse.Namespace) -> int:
    """Run the download; return 0 on success, 1 when the network failed (partial files are kept)."""
    from bdlib.worlds.paper import PAPER_PARTS, download_paper_weights

    include = tuple(args.only) if args.only else PAPER_PARTS
    try:
        paths = download_paper_weights(cache_dir=args.cache_dir, include=include)
    except FileNotFoundError:
        raise  # reported by bdlib.__main__ with its message
    except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
        print(
            f"error: download failed: {error}. Partial files are kept; run the same command again to resume.",
            file=sys.stderr,
        )
        return 1
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
