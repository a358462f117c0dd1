"""``python -m bdlib train toy-ddpm|toy-clip|toy-noise-aware-clip|oracle``: train (or resume) a toy model.

Training draws fresh procedural scenes every step, runs under bf16 autocast on CPU, keeps an EMA of the
weights and saves a resumable checkpoint every few minutes (``runs/NAME.pt`` by default): run the same
command again to continue. A checkpoint (or ``--init-from`` file) of another model is refused, naming the model
it belongs to.

``--export`` evaluates the EMA weights and writes them into the package (``bdlib/worlds/toy/weights/NAME.safetensors``)
with their metrics, and records the new file's SHA-256 in ``bdlib/worlds/toy/weight_checksums.py`` and in the model
card (``NAME.md``), which the loader checks. Replacing weights that bdlib ships needs ``--replace-shipped`` as well
(checked before training), and even then the export is refused when the new model's validation metric
(:data:`TRAINABLES`) is more than :data:`MAX_METRIC_DROP` below the shipped model's (read from the shipped file's
metadata): nothing is written, the checkpoint is kept, and the message gives both numbers.

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
from bdlib.worlds.toy.trainer import fits, initial_weights, read_checkpoint
from bdlib.worlds.toy.weights_io import CHECKSUMS_FILE, model_card_path, read_metadata, weights_path

#: Export refuses a model whose validation metric is more than this far below the shipped model's (the metrics are
#: fractions in [0, 1]: 0.05 is five percentage points).
MAX_METRIC_DROP = 0.05


@dataclass(frozen=True)
class Trainable:
    """Where a toy model's pieces live, as ``"module:function"`` names (imported only when used), and the validation
    metric that export compares with the shipped model's: a path into the metrics (higher is better, in [0, 1])."""

    build: str
    step_fn: str
    config: str
    evaluate: str
    export: str
    metric: tuple[str, ...] = ()
    metric_label: str = ""

    def get(self, attribute: str):
        module, name = getattr(self, attribute).split(":")
        return getattr(importlib.import_module(module), name)


def _trainable(module: str, stem: str, metric: str, label: str, evaluate: str | None = None) -> Trainable:
    return Trainable(
        build=f"{module}:build_{stem}",
        step_fn=f"{module}:{stem}_step_fn",
        config=f"{module}:{stem}_train_config",
        evaluate=evaluate or f"{module}:evaluate_{stem}",
        export=f"{module}:export_{stem}",
        metric=tuple(metric.split("/")),
        metric_label=label,
    )


TRAINABLES: dict[str, Trainable] = {
    "toy-ddpm": _trainable(
        "bdlib.worlds.toy.ddpm",
        "toy_ddpm",
        "generated/clean_known_fraction",
        "fraction of generated objects the oracle finds clean",
        "bdlib.worlds.toy.sample_quality:evaluate_toy_ddpm",
    ),
    "toy-clip": _trainable("bdlib.worlds.toy.clip_model", "toy_clip", "masked/acc", "masked-object accuracy"),
    "toy-noise-aware-clip": _trainable(
        "bdlib.worlds.toy.noise_aware_clip", "toy_noise_aware_clip", "masked/250/acc", "masked-object accuracy at t=250"
    ),
    "oracle": _trainable("bdlib.worlds.toy.oracle", "oracle", "objects/joint_acc", "colour-and-shape accuracy"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train or resume a toy model (CPU or GPU)")
    parser.add_argument("model", choices=sorted(TRAINABLES), help="which toy model")
    parser.add_argument(
        "--minutes", type=arguments.finite_float, default=30.0, help="wall-clock budget of this run (default 30)"
    )
    parser.add_argument("--device", type=arguments.device, default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument(
        "--seed",
        type=arguments.seed,
        default=None,
        help="seeds the initial weights and every step's data (default: the model's recommended seed, as shipped)",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="resumable checkpoint (default runs/NAME.pt)")
    parser.add_argument(
        "--threads", type=arguments.positive_int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument(
        "--max-steps", type=arguments.positive_int, default=None, help="stop at this total step count (default: none)"
    )
    parser.add_argument(
        "--anneal-from",
        type=arguments.non_negative_int,
        default=None,
        help="decay the learning rate along a half cosine from this step to --max-steps (default: constant)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start a new run from these weights (a checkpoint .pt, its EMA; or a .safetensors file)",
    )
    parser.add_argument("--export", action="store_true", help="evaluate and write the weights into the package")
    parser.add_argument(
        "--replace-shipped",
        action="store_true",
        help=f"with --export: allow replacing the weights bdlib ships; the export is still refused if the new "
        f"model's validation metric is more than {MAX_METRIC_DROP:g} (of 1) below the shipped model's",
    )
    parser.set_defaults(func=run)


def metric_of(spec: Trainable, metrics: dict) -> float | None:
    """The validation metric of ``spec`` in ``metrics`` (None when it is missing)."""
    value: object = metrics
    for key in spec.metric:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def shipped_metric(spec: Trainable, name: str) -> float | None:
    """The validation metric recorded in the shipped ``weights/NAME.safetensors`` (None: no file, or none recorded)."""
    path = weights_path(name)
    if not path.is_file():
        return None
    try:
        return metric_of(spec, read_metadata(path).get("metrics", {}))
    except ValueError:  # damaged: nothing to compare with (retraining is how to repair it)
        return None


def owner_of(state_dict: dict) -> str | None:
    """The toy model whose parameter names and shapes ``state_dict`` has (None: no toy model's)."""
    for name, spec in TRAINABLES.items():
        with seeded_construction():  # only the names and shapes count: no draw from the caller's generator
            model = spec.get("build")()
        if fits(model, state_dict):
            return name
    return None


def _check_weight_files(args: argparse.Namespace, checkpoint: Path, model) -> None:
    """Refuse a checkpoint to resume, or ``--init-from`` weights, of another model, naming the model they belong to."""
    if checkpoint.exists():
        state = read_checkpoint(checkpoint)["model"]
        source, retry = f"the checkpoint {checkpoint}", f"give {args.model} another --checkpoint"
    elif args.init_from is not None:
        state = initial_weights(args.init_from, "--init-from")
        source = f"--init-from {args.init_from}"
        retry = f"give {args.model} weights (e.g. {weights_path(args.model.replace('-', '_'))})"
    else:
        return
    if fits(model, state):
        return
    owner = owner_of(state)
    if owner is None:
        raise ValueError(f"{source} holds the weights of no bdlib toy model (other names or shapes): {retry}")
    hint = f" (resume it with python -m bdlib train {owner} --checkpoint {checkpoint})" if checkpoint.exists() else ""
    raise ValueError(f"{source} holds {owner} weights, not {args.model} ones{hint}: {retry}")


def _check_export_flags(args: argparse.Namespace, spec: Trainable, name: str) -> float | None:
    """Before training: refuse --export over shipped weights without --replace-shipped; return the shipped metric."""
    if args.replace_shipped and not args.export:
        raise ValueError("--replace-shipped has no effect without --export: add --export, or drop --replace-shipped")
    if not args.export:
        return None
    shipped = weights_path(name)
    if shipped.exists() and not args.replace_shipped:
        raise ValueError(
            f"--export would replace the shipped weights {shipped}: add --replace-shipped to confirm (the export is "
            f"still refused if the new {spec.metric_label} is more than {MAX_METRIC_DROP:g} below the shipped one's)"
        )
    for path in (shipped, CHECKSUMS_FILE, model_card_path(name)):
        check_writable(path, "exported file")
    return shipped_metric(spec, name)


def _check_metric(args: argparse.Namespace, spec: Trainable, metrics: dict, shipped: float | None, checkpoint) -> None:
    """After evaluation: refuse to export a model far below the shipped one (exit 2, both numbers)."""
    new = metric_of(spec, metrics)
    if shipped is None or (new is not None and new >= shipped - MAX_METRIC_DROP):
        return
    new_text = "missing from the evaluation" if new is None else f"{new:.4g}"
    raise ValueError(
        f"not exported: the new {args.model}'s {spec.metric_label} is {new_text}, more than {MAX_METRIC_DROP:g} below "
        f"the shipped model's {shipped:.4g}. Train longer (run the same command again: it resumes {checkpoint}), "
        "then export"
    )


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = TRAINABLES[args.model]
    checkpoint = args.checkpoint or Path("runs") / f"{args.model.replace('-', '_')}.pt"
    check_writable(checkpoint, "checkpoint", example=f"{args.model.replace('-', '_')}.pt")
    shipped = _check_export_flags(args, spec, args.model.replace("-", "_"))
    overrides = {} if args.seed is None else {"seed": args.seed}
    config = spec.get("config")(
        checkpoint,
        args.minutes,
        device=args.device,
        max_steps=args.max_steps,
        anneal_from=args.anneal_from,
        init_from=args.init_from,
        **overrides,
    )
    from bdlib.worlds.toy import trainer

    trainer.check_config(config)  # a bad budget or schedule fails before anything is built
    with seeded_construction(config.seed):
        model = spec.get("build")()
    _check_weight_files(args, checkpoint, model)
    final = trainer.train(model, spec.get("step_fn")(device=args.device), config)
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
        with seeded_construction():  # the weights come from the checkpoint next
            trained = spec.get("build")()
        trained.load_state_dict(final["ema"] or final["model"])
        metrics = spec.get("evaluate")(trained.to(args.device).eval())
        _check_metric(args, spec, metrics, shipped, checkpoint)
        path = spec.get("export")(checkpoint, metrics)
        print(json.dumps(metrics, indent=2))
        print(f"exported {path}")
    return 0
