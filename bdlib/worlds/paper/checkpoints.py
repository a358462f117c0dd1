"""The paper's model world, checkpoint side: where the official weights live, how to fetch and load them.

Blended Diffusion (Avrahami et al., CVPR 2022) uses three pretrained networks:

- guided-diffusion's unconditional 256x256 ImageNet UNet (Dhariwal & Nichol 2021),
  ``256x256_diffusion_uncond.pt`` (a plain ``state_dict``, 552,814,086 parameters);
- CLIP ViT-B/16 (Radford et al. 2021), the ``clip`` package's ``ViT-B-16.pt`` (a TorchScript archive);
- LPIPS with a VGG-16 trunk (Zhang et al. 2018), used only by Algorithm 1's background loss. Its
  linear heads ship inside the ``lpips`` package; the VGG-16 ImageNet weights are fetched by
  torchvision into its own cache (``torch.hub.get_dir()``), not into bdlib's.

Nothing here downloads unless :func:`download_paper_weights` is called (``python -m bdlib download
paper``). Files live in one cache directory: the ``cache_dir`` argument, else ``$BDLIB_CACHE``, else
``~/.cache/bdlib``. A missing file raises :class:`MissingCheckpointError`, a ``FileNotFoundError``
whose message names the file, the directory searched and the command that fetches it; a damaged one
raises :class:`bdlib.runtime.safe_load.DamagedFileError` (a ``ValueError``) with the same command.

Checksums. CLIP's SHA-256 is part of its official URL (the ``clip`` package checks it the same way).
OpenAI publishes no checksum for the guided-diffusion file; the SHA-256 and byte size pinned below are
the values reported independently by downstream projects that download it (Disco Diffusion's model
table; a reproduction manifest that also records the size, 2,211,383,297 bytes), and they are
consistent with the parameter count (552,814,086 float32 values = 2,211,256,344 bytes plus the pickle
container). If OpenAI ever replaces the file, the download fails loudly with both hashes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bdlib.runtime.download import download
from bdlib.runtime.safe_load import DamagedFileError, load_torch_file

CACHE_ENV = "BDLIB_CACHE"
DEFAULT_CACHE = Path("~/.cache/bdlib")
DOWNLOAD_COMMAND = "python -m bdlib download paper"
PAPER_PARTS = ("unet", "clip", "lpips")
_MAX_LISTED = 20  # keys shown per category in a state-dict mismatch message


@dataclass(frozen=True)
class PaperFile:
    """One official file: where it comes from and how to recognise it."""

    filename: str
    url: str
    sha256: str | None
    size: int | None
    description: str


PAPER_FILES: dict[str, PaperFile] = {
    "unet": PaperFile(
        filename="256x256_diffusion_uncond.pt",
        url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
        sha256="a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1",
        size=2_211_383_297,
        description="guided-diffusion unconditional ImageNet 256x256 UNet (state_dict)",
    ),
    "clip": PaperFile(
        filename="ViT-B-16.pt",
        url=(
            "https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
        ),
        sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        size=None,
        description="OpenAI CLIP ViT-B/16 (TorchScript archive, as the clip package downloads it)",
    ),
}


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint bdlib needs is not in the cache; the message says how to fetch it."""


class StateDictMismatchError(ValueError):
    """A state dict does not fit a model: missing keys, unexpected keys or wrong shapes."""


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``cache_dir`` if given, else ``$BDLIB_CACHE``, else ``~/.cache/bdlib``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


def fetch_command(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The shell command that downloads the paper's weights into ``cache_dir`` (or the default)."""
    if cache_dir is None:
        return DOWNLOAD_COMMAND
    return f"{DOWNLOAD_COMMAND} --cache-dir {Path(cache_dir).expanduser()}"


def _lookup(name: str) -> tuple[str, PaperFile]:
    """Accept a registry key (``"unet"``) or a file name (``"256x256_diffusion_uncond.pt"``)."""
    if name in PAPER_FILES:
        return name, PAPER_FILES[name]
    for key, entry in PAPER_FILES.items():
        if entry.filename == name:
            return key, entry
    known = ", ".join(f"{k!r} ({v.filename})" for k, v in PAPER_FILES.items())
    raise ValueError(f"unknown paper checkpoint {name!r}; known: {known}")


def checkpoint_path(name: str, cache_dir: str | os.PathLike[str] | None = None, *, must_exist: bool = True) -> Path:
    """Path of the official file ``name`` (``"unet"`` or ``"clip"``, or its file name) in the cache.

    Raises:
        MissingCheckpointError: if ``must_exist`` and the file is not there; the message names the file,
            the directory searched and the download command.
    """
    _, entry = _lookup(name)
    directory = resolve_cache_dir(cache_dir)
    path = directory / entry.filename
    if must_exist and path.exists() and not path.is_file():
        raise ValueError(
            f"{path} is a folder, not the file {entry.filename} ({entry.description}): move it away, then fetch the "
            f"file with: {fetch_command(cache_dir)}"
        )
    if must_exist and not path.is_file():
        raise MissingCheckpointError(
            f"{entry.filename} ({entry.description}) was not found in {directory} (the bdlib cache: "
            f"cache_dir argument, else ${CACHE_ENV}, else {DEFAULT_CACHE}). Fetch it with: "
            f"{fetch_command(cache_dir)}"
        )
    return path


def download_paper_weights(
    cache_dir: str | os.PathLike[str] | None = None,
    include: Iterable[str] = PAPER_PARTS,
    *,
    progress: bool = True,
) -> dict[str, Path | None]:
    """Download (or verify) the paper's weights; return ``{part: path}`` for each part in ``include``.

    ``"unet"`` and ``"clip"`` go to the bdlib cache and are checked against their SHA-256 (an existing,
    matching file is not fetched again). ``"lpips"`` builds ``lpips.LPIPS(net="vgg")`` with pretrained
    weights, which makes torchvision fetch VGG-16 into ``torch.hub.get_dir()``; its value is that
    directory. This is the only function in bdlib that may reach the network.
    """
    parts = list(include)
    unknown = sorted(set(parts) - set(PAPER_PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {list(PAPER_PARTS)}")
    result: dict[str, Path | None] = {}
    for part in parts:
        if part == "lpips":
            from bdlib.nets.lpips_adapter import load_lpips  # imported here: lpips is slow to import

            load_lpips(pretrained=True)
            result[part] = Path(torch.hub.get_dir()) / "checkpoints"
            continue
        entry = PAPER_FILES[part]
        dest = checkpoint_path(part, cache_dir, must_exist=False)
        if progress:
            print(f"{part}: {entry.filename} -> {dest.parent}")
        result[part] = download(entry.url, dest, entry.sha256, size=entry.size, progress=progress)
    return result


def refetch_hint(path: Path) -> str:
    """What to do about a damaged official file: fetch it again (the download replaces it once verified)."""
    return f"fetch the official file again with: {fetch_command(path.parent)}"


def check_official_size(name: str, path: Path) -> None:
    """Refuse an official file whose size is not the pinned one (a cheap check for a cut or damaged file)."""
    entry = _lookup(name)[1]
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise DamagedFileError(
            f"{path} is damaged or incomplete: {size:,} bytes instead of {entry.size:,}; {refetch_hint(path)}"
        )


def load_unet_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a guided-diffusion UNet ``state_dict`` on the CPU with ``weights_only=True`` (no pickled code).

    Raises:
        MissingCheckpointError: if ``path`` does not exist (with the download command).
        DamagedFileError: (a ValueError) if the file cannot be read as tensors (empty, cut short, overwritten, or
            holding pickled objects besides tensors): the message names the file and the download command.
        ValueError: if the file does not hold a mapping of names to tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(
            f"UNet checkpoint {path.name} was not found in {path.parent}. Fetch the official one "
            f"with: {fetch_command(path.parent)}"
        )
    state = load_torch_file(path, "the UNet checkpoint", refetch_hint(path))
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not contain a state dict (a mapping of names to tensors); {refetch_hint(path)}")
    return dict(state)


def _listing(title: str, lines: list[str]) -> str:
    shown = lines[:_MAX_LISTED]
    more = f"\n    ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    return f"  {title} ({len(lines)}):\n" + "\n".join(f"    {line}" for line in shown) + more


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Check that ``state_dict`` fits ``model`` exactly; raise :class:`StateDictMismatchError` if not.

    The message lists the keys the model needs but the checkpoint lacks, the keys the checkpoint has
    but the model does not, and every key whose shape differs, with both shapes. Use it before
    ``model.load_state_dict`` to get one readable report instead of PyTorch's first error.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if not (missing or unexpected or wrong):
        return
    sections = [
        _listing(title, lines)
        for title, lines in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if lines
    ]
    raise StateDictMismatchError(
        f"state dict does not fit {type(model).__name__}:\n"
        + "\n".join(sections)
        + "\n  (a checkpoint for another configuration? compare the model's config with the file's)"
    )
