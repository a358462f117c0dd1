"""Shipped toy weights: safetensors files with a JSON metadata entry, inside the package.

``save_weights`` writes a float32 state dict (made contiguous) plus ``{"bdlib": json}`` metadata; ``load_weights``
returns both. A missing file says how to get it back: reinstall bdlib, or retrain it with the command that
made it (``python -m bdlib train NAME``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def weights_path(name: str, directory: Path | None = None) -> Path:
    """Where the shipped weights of toy model ``name`` live (``weights/NAME.safetensors``)."""
    return (directory or WEIGHTS_DIR) / f"{name}.safetensors"


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, meta: dict) -> Path:
    """Write ``state_dict`` (as contiguous float32 where floating) and ``meta`` (JSON) to ``path``."""
    tensors = {
        key: (value.float() if value.is_floating_point() else value).contiguous().cpu()
        for key, value in state_dict.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"bdlib": json.dumps(meta, sort_keys=True)})
    path.chmod(0o644)  # safetensors creates files readable by their owner only
    return path


def load_weights(path: Path, train_command: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a state dict and its metadata; a missing file names the path and how to get it back."""
    if not path.exists():
        raise FileNotFoundError(
            f"toy weights {path.name} are missing from {path.parent}: reinstall bdlib "
            f"(pip install -e . from a full clone), or train them with `{train_command}`"
        )
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("bdlib", "{}"))
    return load_file(str(path)), meta


def export_checkpoint(checkpoint: Path, name: str, config: dict, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights (else the raw ones) of a training checkpoint as ``weights/NAME.safetensors``.

    The metadata records the model ``config``, the training step, minutes, seed and settings, and ``metrics``.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    train_meta = json.loads(state["meta"])
    meta = {
        "config": {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()},
        "step": state["step"],
        "minutes": round(state["elapsed_s"] / 60, 2),
        "seed": train_meta.get("seed"),
        "train": train_meta,
        "metrics": metrics,
    }
    return save_weights(state["ema"] or state["model"], path or weights_path(name), meta)


def load_shipped(name: str, build: Callable[[], nn.Module], device: str | torch.device = "cpu") -> nn.Module:
    """``build()`` loaded with the shipped ``weights/NAME.safetensors``: on ``device``, eval mode, frozen
    (gradients still flow to the inputs). A missing file names ``python -m bdlib train NAME`` (dashes)."""
    state, _ = load_weights(weights_path(name), f"python -m bdlib train {name.replace('_', '-')}")
    model = build()
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False)
