"""Shipped toy weights: safetensors files with a JSON metadata entry, inside the package, checked by SHA-256.

``save_weights`` writes a float32 state dict (made contiguous) plus ``{"bdlib": json}`` metadata, atomically;
``load_weights`` returns both. A shipped file (``weights/NAME.safetensors`` with an entry in
:data:`bdlib.worlds.toy.weight_checksums.SHIPPED_SHA256`) is checked against its recorded SHA-256 before it is
read, once per process (again only if its size or modification time changes): a damaged file would otherwise
load without error and edit into a black image. A missing or damaged file says how to get it back: reinstall
bdlib, or retrain it (``python -m bdlib train NAME --export``, with ``--replace-shipped`` over a file in place),
which records the new file's SHA-256 (:func:`record_checksum`) in the table and in the model card.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bdlib.runtime.download import sha256_of, verified_sha256
from bdlib.runtime.files import write_files
from bdlib.runtime.randomness import seeded_construction
from bdlib.runtime.safe_load import DamagedFileError, load_safetensors, load_torch_file
from bdlib.worlds.toy.weight_checksums import SHIPPED_SHA256

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKSUMS_FILE = Path(__file__).resolve().parent / "weight_checksums.py"


def weights_path(name: str, directory: Path | None = None) -> Path:
    """Where the shipped weights of toy model ``name`` live (``weights/NAME.safetensors``)."""
    return (directory or WEIGHTS_DIR) / f"{name}.safetensors"


def model_card_path(name: str, directory: Path | None = None) -> Path:
    """The model card of toy model ``name`` (``weights/NAME.md``)."""
    return (directory or WEIGHTS_DIR) / f"{name}.md"


def _shipped_name(path: Path) -> str | None:
    """``NAME`` if ``path`` is a shipped weight file with a recorded hash, else None."""
    path = Path(path).resolve()
    if path.parent == Path(WEIGHTS_DIR).resolve() and path.suffix == ".safetensors" and path.stem in SHIPPED_SHA256:
        return path.stem
    return None


def _restore_hint(path: Path, train_command: str) -> str:
    return (
        f"restore it: reinstall bdlib (in a git clone: git checkout -- {path}), or run {train_command} --export "
        "--replace-shipped"
    )


def verify_shipped(path: Path, train_command: str) -> None:
    """Check a shipped weight file against its recorded SHA-256 (once per process); other paths pass unchecked.

    Raises:
        DamagedFileError: the hash differs; the message names the file and both ways to restore it.
    """
    name = _shipped_name(path)
    if name is None:
        return
    actual = verified_sha256(path, SHIPPED_SHA256[name])
    if actual is not None:
        raise DamagedFileError(
            f"the toy weights {Path(path).resolve()} are damaged: SHA-256 {actual[:16]}... instead of the recorded "
            f"{SHIPPED_SHA256[name][:16]}...; {_restore_hint(Path(path).resolve(), train_command)}"
        )


def _table_with(table: str, name: str, digest: str) -> str:
    """The text of the checksum table with ``name``'s entry set to ``digest`` (added at the end if new)."""
    entry = re.compile(rf'("{re.escape(name)}": ")[0-9a-f]{{64}}(")')
    if entry.search(table):
        return entry.sub(rf"\g<1>{digest}\g<2>", table)
    return table.replace("\n}\n", f'\n    "{name}": "{digest}",\n}}\n')


def _card_with(card: str, digest: str) -> str:
    """The text of a model card with its ``**File.** SHA-256`` line set to ``digest``."""
    return re.sub(r"(\*\*File\.\*\* SHA-256 `)[0-9a-f]{64}(`)", rf"\g<1>{digest}\g<2>", card)


def _recording(name: str, folder: Path, digest: Callable[[], str]) -> dict[Path, Callable[[Path], object]]:
    """Writers (:mod:`bdlib.runtime.files`) recording ``digest()`` as ``name``'s SHA-256 in the table and the card."""
    table = CHECKSUMS_FILE
    writers: dict[Path, Callable[[Path], object]] = {
        table: lambda tmp: tmp.write_text(_table_with(table.read_text("utf-8"), name, digest()), "utf-8")
    }
    card = model_card_path(name, folder)
    if card.exists():
        writers[card] = lambda tmp: tmp.write_text(_card_with(card.read_text("utf-8"), digest()), "utf-8")
    return writers


def record_checksum(name: str, path: Path | None = None) -> str:
    """Record the SHA-256 of ``weights/NAME.safetensors`` (or ``path``) as the shipped one: in memory, in
    :data:`CHECKSUMS_FILE` and in the model card's ``SHA-256`` line (for a file put in place by hand)."""
    path = Path(path or weights_path(name))
    digest = sha256_of(path)
    write_files(_recording(name, path.parent, lambda: digest))
    SHIPPED_SHA256[name] = digest
    return digest


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, meta: dict, record_as: str | None = None) -> Path:
    """Write ``state_dict`` (as contiguous float32 where floating) and ``meta`` (JSON) to ``path``, atomically.

    ``record_as=NAME`` also records the new file's SHA-256 as NAME's, in the table and the model card: the three
    files are written as one group (all or none), so the recorded hash always describes the file in place.
    """
    from safetensors.torch import save_file

    tensors = {
        key: (value.float() if value.is_floating_point() else value).contiguous().cpu()
        for key, value in state_dict.items()
    }
    metadata = {"bdlib": json.dumps(meta, sort_keys=True)}
    digest: dict[str, str] = {}

    def write_weights(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)
        digest["sha256"] = sha256_of(tmp)

    writers: dict[Path, Callable[[Path], object]] = {Path(path): write_weights}
    if record_as is not None:
        writers.update(_recording(record_as, Path(path).parent, lambda: digest["sha256"]))
    write_files(writers)
    if record_as is not None:
        SHIPPED_SHA256[record_as] = digest["sha256"]
    return Path(path)


def load_weights(path: Path, train_command: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a state dict and its metadata; a missing or damaged file names the path and how to get it back."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"toy weights {path.name} are missing from {path.parent}: reinstall bdlib "
            f"(pip install -e . from a full clone), or train them with `{train_command} --export`"
        )
    verify_shipped(path, train_command)
    tensors, metadata = load_safetensors(path, "the toy weights", _restore_hint(path, train_command))
    try:
        meta = json.loads(metadata.get("bdlib", "{}"))
    except json.JSONDecodeError:
        raise DamagedFileError(
            f"the toy weights {path} have damaged metadata; {_restore_hint(path, train_command)}"
        ) from None
    return tensors, meta


def read_metadata(path: Path) -> dict:
    """The bdlib metadata (config, training, metrics) of a weight file, without reading its tensors; a damaged file
    raises :class:`DamagedFileError`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {}).get("bdlib", "{}"))
    except (OSError, json.JSONDecodeError, Exception) as error:  # SafetensorError is not exported by name
        raise DamagedFileError(f"the toy weights {path} have unreadable metadata ({type(error).__name__})") from None


def export_checkpoint(checkpoint: Path, name: str, config: dict, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights (else the raw ones) of a training checkpoint as ``weights/NAME.safetensors``.

    The metadata records the model ``config``, the training step, minutes, seed and settings, and ``metrics``.
    Exported into the package (``path`` None), the new file's SHA-256 is recorded with it (``save_weights``).
    """
    state = load_torch_file(checkpoint, "the training checkpoint", "train again to make a new one")
    train_meta = json.loads(state["meta"])
    meta = {
        "config": {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()},
        "step": state["step"],
        "minutes": round(state["elapsed_s"] / 60, 2),
        "seed": train_meta.get("seed"),
        "train": train_meta,
        "metrics": metrics,
    }
    return save_weights(state["ema"] or state["model"], path or weights_path(name), meta, None if path else name)


def load_shipped(name: str, build: Callable[[], nn.Module], device: str | torch.device = "cpu") -> nn.Module:
    """``build()`` loaded with the shipped ``weights/NAME.safetensors``: on ``device``, eval mode, frozen
    (gradients still flow to the inputs). A missing or damaged file names ``python -m bdlib train NAME``."""
    state, _ = load_weights(weights_path(name), f"python -m bdlib train {name.replace('_', '-')}")
    with seeded_construction():  # PyTorch's initialisers draw from a forked global RNG, then the weights replace them
        model = build()
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False)
