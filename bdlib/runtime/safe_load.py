"""Reading weight files as data only, with one clear error for a file that is damaged or not what it should be.

``torch.load(..., weights_only=True)`` unpickles tensors and plain containers and refuses anything else (code);
safetensors files hold nothing but tensors. When either fails, the raw error (``UnpicklingError``, ``EOFError``,
``SafetensorError``, ...) says little to a user, and PyTorch's own text even suggests ``weights_only=False``,
which would run whatever code the file holds. :class:`DamagedFileError` says instead which file, that it is
damaged or of the wrong kind, and how to get a good one back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class DamagedFileError(ValueError):
    """A file exists but cannot be read as what it should be (truncated, overwritten, or another kind of file)."""


def _reason(error: BaseException) -> str:
    """A short, safe description of a loading error (never PyTorch's advice to load with ``weights_only=False``)."""
    text = str(error)
    if "Unsupported operand" in text or "invalid load key" in text:  # its first bytes are no pickle at all
        return "it is not a PyTorch file (another kind of file, or damaged)"
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds pickled Python objects besides tensors, which bdlib never loads because they can run code"
    if isinstance(error, EOFError) or "Ran out of input" in text:
        return "it ends too early (empty or cut short)"
    first = (text.splitlines() or [""])[0].strip().split(". ")[0]  # the first sentence: what, not PyTorch's advice
    return f"{type(error).__name__}: {first[:120]}" if first else type(error).__name__


def _unreadable(error: OSError, what: str, path: Path) -> ValueError | OSError:
    """A folder or a file without read permission where a weight file should be, in words; others unchanged."""
    if isinstance(error, IsADirectoryError) or path.is_dir():
        return ValueError(f"{what} {path} is a folder: give the path of a weight file")
    if isinstance(error, PermissionError):
        return ValueError(f"{what} {path} cannot be read (Permission denied): check its permissions (ls -l {path})")
    return error


def load_torch_file(path: str | os.PathLike[str], what: str, fix: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; a file that fails raises
    :class:`DamagedFileError` naming ``what`` it is, the path, why, and ``fix`` (what to do)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (IsADirectoryError, PermissionError) as error:
        raise _unreadable(error, what, path) from None
    except Exception as error:  # UnpicklingError, EOFError, RuntimeError (bad zip), ...
        raise DamagedFileError(f"{what} {path} cannot be read: {_reason(error)}; {fix}") from None


def load_safetensors(path: str | os.PathLike[str], what: str, fix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata (``{str: str}``) of a safetensors file; a damaged file raises
    :class:`DamagedFileError` naming ``what`` it is, the path, why, and ``fix``."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise _unreadable(IsADirectoryError(), what, path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise
    except PermissionError as error:
        raise _unreadable(error, what, path) from None
    except Exception as error:  # SafetensorError (bad header), OSError, ...
        reason = _reason(error)
        raise DamagedFileError(f"{what} {path} is damaged or not a safetensors file ({reason}); {fix}") from None
    return tensors, metadata
