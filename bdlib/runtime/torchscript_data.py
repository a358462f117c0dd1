"""Read the tensors of a TorchScript archive as data, without running any code stored in it.

OpenAI's CLIP checkpoints (``ViT-B-16.pt``) are TorchScript archives: a zip file holding ``PREFIX/data.pkl``
(the module tree, pickled by PyTorch's C++ pickler), ``PREFIX/data/N`` (the raw bytes of each storage) and
``PREFIX/code/`` (TorchScript source). ``torch.jit.load`` compiles that source and runs it: a class's
``__setstate__`` executes while the file loads, so a crafted file runs whatever it holds.
:func:`read_torchscript_tensors` reads the same module tree with a restricted unpickler instead:

- objects of TorchScript classes (``__torch__.*``) become inert :class:`ScriptObject` records of their pickled
  state; their ``__setstate__`` (and every other method) is never looked at, let alone run;
- tensors are rebuilt from the raw bytes of their storage records (``torch.frombuffer`` + ``as_strided``);
- the few helpers the C++ pickler uses for containers are accepted as data; any other global is refused.

The tensors come out named by their attribute path (``visual.conv1.weight``), as ``module.state_dict()`` names
them.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
_LIST_BUILDERS = ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist")


class UnsafeArchiveError(ValueError):
    """The archive's pickle refers to something other than tensors, TorchScript objects and plain containers."""


class ScriptObject:
    """A TorchScript object read as data: its class name and its pickled state (no methods, no code)."""

    qualified_name = ""

    def __setstate__(self, state: Any) -> None:  # called by pickle's BUILD: store, never interpret
        self.__dict__["state"] = state


class _StorageType:
    """Stands for ``torch.FloatStorage`` and friends in a storage record: only its dtype is used."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_rest) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a flat storage tensor; requires_grad and hooks are dropped."""
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds only tensors, inert :class:`ScriptObject` records and plain containers."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            return list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return lambda value, _tag: value
        if module == "torch" and name == "device":
            return str
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self._classes[qualified]
        raise UnsafeArchiveError(f"the archive refers to {module}.{name}, which is not plain data: refused")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeArchiveError(f"unexpected persistent record {pid!r:.80} in the archive")
        raw = bytearray(self._archive.read(f"{self._prefix}data/{pid[2]}"))
        if not raw:
            return torch.empty(0, dtype=pid[1].dtype)
        return torch.frombuffer(raw, dtype=pid[1].dtype)


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    """The folder holding ``data.pkl`` (``ViT-B-16/``, ``archive/``, ...)."""
    for name in archive.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name[: -len("data.pkl")]
    raise UnsafeArchiveError("no data.pkl at the top of the archive: not a TorchScript file")


def _named_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, ScriptObject) and isinstance(obj.__dict__.get("state"), dict):
        for key, value in obj.__dict__["state"].items():
            if isinstance(key, str):
                _named_tensors(value, f"{prefix}{key}.", out)


def read_torchscript_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the module tree in a TorchScript archive, by attribute path; no code runs.

    Raises:
        UnsafeArchiveError: (a ValueError) the pickle refers to anything but plain data, or it is not TorchScript.
        zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError: the archive is damaged.
    """
    with zipfile.ZipFile(Path(path)) as archive:
        prefix = _archive_prefix(archive)
        root = _DataUnpickler(archive.read(f"{prefix}data.pkl"), archive, prefix).load()
    tensors: dict[str, torch.Tensor] = {}
    _named_tensors(root, "", tensors)
    return tensors
