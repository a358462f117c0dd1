"""``python -m bdlib train toy-ddpm|toy-clip|toy-noise-aware-clip|oracle``: train (or resume) a toy model.

Training draws fresh procedural scenes every step, runs under bf16 autocast on CPU, keeps an EMA of the
weights and saves a resumable checkpoint every few minutes (``runs/NAME.pt`` by default): run the same
command again to continue. ``--export`` evaluates the EMA weights and writes them into the package
(``bdlib/worlds/toy/weights/NAME.safetensors``) with their metrics, and records the new file's SHA-256 in
``bdlib/worlds/toy/weight_checksums.py`` and in the model card (``NAME.md``), which the loader checks.

A run stopped by Ctrl-C or SIGTERM saves its checkpoint, exports nothing and exits with 130 or 143.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bdlib.commands import arguments
from bdlib.runtime.files import check_writable
from bdlib.runtime.randomness import seeded_construction
from bdlib.worlds.toy.weights_io import CHECKSUMS_FILE, model_card_path, weights_path


@dataclass(frozen=True)
class Trainable:
    """Where a toy model's pieces live, as ``"module:function"`` names (imported only when used)."""

    build: str
    step_fn: str
    config: str
    evaluate: str
    export: str

    def get(self, attribute: str):
        module, name = getattr(self, attribute).split(":")
        return getattr(importlib.import_module(module), name)


def _trainable(module: str, stem: str, evaluate: str | None = None) -> Trainable:
    return Trainable(
        build=f"{module}:build_{stem}",
        step_fn=f"{module}:{stem}_step_fn",
        config=f"{module}:{stem}_train_config",
        evaluate=evaluate or f"{module}:evaluate_{stem}",
        export=f"{module}:export_{stem}",
    )


TRAINABLES: dict[str, Trainable] = {
    "toy-ddpm": _trainable("bdlib.worlds.toy.ddpm", "toy_ddpm", "bdlib.worlds.toy.sample_quality:evaluate_toy_ddpm"),
    "toy-clip": _trainable("bdlib.worlds.toy.clip_model", "toy_clip"),
    "toy-noise-aware-clip": _trainable("bdlib.worlds.toy.noise_aware_clip", "toy_noise_aware_clip"),
    "oracle": _trainable("bdlib.worlds.toy.oracle", "oracle"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train or resume a toy model (CPU or GPU)")
    parser.add_argument("model", choices=sorted(TRAINABLES), help="which toy model")
    parser.add_argument("--minutes", type=arguments.finite_float, default=30.0,
                        help="wall-clock budget of this run (default 30)")  # fmt: skip
    parser.add_argument("--device", type=arguments.device, default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument(
        "--seed", type=arguments.seed, default=None,
        help="seeds the initial weights and every step's data (default: the model's recommended seed, as shipped)",
    )  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="resumable checkpoint (default runs/NAME.pt)")
    parser.add_argument("--threads", type=arguments.positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice)")  # fmt: skip
    parser.add_argument("--max-steps", type=arguments.positive_int, default=None,
                        help="stop at this total step count (default: none)")  # fmt: skip
    parser.add_argument(
        "--anneal-from", type=arguments.non_negative_int, default=None,
        help="decay the learning rate along a half cosine from this step to --max-steps (default: constant)",
    )  # fmt: skip
    parser.add_argument(
        "--init-from", type=Path, default=None,
        help="start a new run from these weights (a checkpoint .pt, its EMA; or a .safetensors file)",
    )  # fmt: skip
    parser.add_argument("--export", action="store_true", help="evaluate and write the weights into the package")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = TRAINABLES[args.model]
    checkpoint = args.checkpoint or Path("runs") / f"{args.model.replace('-', '_')}.pt"
    check_writable(checkpoint, "checkpoint")
    if args.export:  # the package folder must take the weights (and their recorded checksum) once trained
        name = args.model.replace("-", "_")
        for path in (weights_path(name), CHECKSUMS_FILE, model_card_path(name)):
            check_writable(path, "exported file")
    overrides = {} if args.seed is None else {"seed": args.seed}
    config = spec.get("config")(
        checkpoint, args.minutes, device=args.device, max_steps=args.max_steps, anneal_from=args.anneal_from,
        init_from=args.init_from, **overrides,
    )  # fmt: skip
    from bdlib.worlds.toy.trainer import check_config, train

    check_config(config)  # a bad budget or schedule fails before anything is built
    with seeded_construction(config.seed):
        model = spec.get("build")()
    final = train(model, spec.get("step_fn")(device=args.device), config)
    if final["stopped_by"] is not None:
        how = "Ctrl-C" if final["stopped_by"] == signal.SIGINT else f"signal {final['stopped_by']}"
        print(
            f"stopped by {how} at step {final['step']}: checkpoint {checkpoint} saved (run the same command again "
            f"to resume){'; nothing exported' if args.export else ''}",
            file=sys.stderr,
        )
        return 128 + final["stopped_by"]
    print(f"trained {args.model} to step {final['step']} ({final['elapsed_s'] / 60:.1f} min); checkpoint {checkpoint}")
    if args.export:
        trained = spec.get("build")()
        trained.load_state_dict(final["ema"] or final["model"])
        metrics = spec.get("evaluate")(trained.to(args.device).eval())
        path = spec.get("export")(checkpoint, metrics)
        print(json.dumps(metrics, indent=2))
        print(f"exported {path}")
    return 0
