"""A simulated accelerator for tests on a CPU-only machine: tensors that live on "another device" and refuse to
mix with CPU tensors, as CUDA tensors do.

Inside :class:`SimulatedAccelerator`, ``x.to("meta")`` (or a factory with ``device="meta"``) gives an
:class:`OnDevice` tensor: it reports ``device == meta`` but keeps its real values on the CPU, so a whole edit
runs and gives numbers. Every operation checks its arguments the way a GPU would:

- a device tensor and a CPU tensor with dimensions in one operation raise (CPU 0-dim scalars are allowed, as on
  CUDA; so are the operations that CUDA lets cross devices: ``copy_`` and CPU index tensors);
- a random factory that draws on the device from a generator of another device raises (PyTorch refuses a CPU
  generator for CUDA tensors and the reverse), and a generator cannot be created on the device at all.

"meta" is only the label: the values are computed on the CPU, and ``.cpu()`` or ``.item()`` read them back.
``torch.tensor(data, device=...)``, which builds its tensor outside the dispatcher, is caught by a function mode.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
_CROSS_DEVICE_OK = {
    torch.ops.aten.copy_.default,  # cuda_tensor.copy_(cpu_tensor) is a transfer
    torch.ops.aten._to_copy.default,  # .to(device)
    torch.ops.aten.index.Tensor,  # indexing a device tensor with CPU indices
    torch.ops.aten.index_put_.default,
    torch.ops.aten.index_put.default,
}
_SCALAR_OUT = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}


class DevicePlacementError(RuntimeError):
    """A tensor or generator on the wrong device, as a GPU would report it."""


class OnDevice(torch.Tensor):
    """A CPU tensor wearing the simulated device's label."""

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls,
            data.size(),
            strides=data.stride(),
            dtype=data.dtype,
            device=DEVICE,
            requires_grad=data.requires_grad,
            layout=data.layout,
        )

    def __init__(self, data: torch.Tensor) -> None:
        self.values = data

    def __repr__(self) -> str:
        return f"OnDevice({self.values!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _is_device(value) -> bool:
    return isinstance(value, OnDevice)


def _targets_device(device) -> bool:
    return device is not None and torch.device(device).type == DEVICE.type


def _run(func, args, kwargs):
    flat, _ = tree_flatten((args, kwargs))
    on_device = any(_is_device(a) for a in flat)
    host = [a for a in flat if isinstance(a, torch.Tensor) and not _is_device(a) and a.dim() > 0]
    if on_device and host and func not in _CROSS_DEVICE_OK:
        shapes = [tuple(a.shape) for a in host]
        raise DevicePlacementError(f"{func}: expected all tensors on the device, got CPU tensors of shapes {shapes}")
    to_device = on_device
    if "device" in kwargs and kwargs["device"] is not None:
        to_device = _targets_device(kwargs["device"])
        if to_device:
            kwargs = dict(kwargs, device="cpu")
    generator = kwargs.get("generator")
    if generator is not None and to_device:
        raise DevicePlacementError(f"{func}: a generator on {generator.device} cannot draw a tensor on {DEVICE}")
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func in _SCALAR_OUT or not to_device:
        return out
    return tree_map(lambda o: OnDevice(o) if isinstance(o, torch.Tensor) else o, out)


def _unwrap(value):
    return value.values if _is_device(value) else value


class _Dispatch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


class _Factories(TorchFunctionMode):
    """``torch.tensor(data, device=...)`` builds its tensor outside the dispatcher: build it on the CPU, then move."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and _targets_device(kwargs.get("device")):
            return func(*args, **{**kwargs, "device": "cpu"}).to(DEVICE)
        return func(*args, **kwargs)


class SimulatedAccelerator:
    """While active, ``DEVICE`` ("meta") behaves as a separate accelerator with real values (see the module)."""

    def __enter__(self) -> SimulatedAccelerator:
        self._modes = [_Factories(), _Dispatch()]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


class SameKernels:
    """While active, CPU code takes the kernels it takes on the simulated device, so the two give identical numbers.

    PyTorch picks two fused CPU kernels only for plain CPU tensors: the fast path of ``nn.TransformerEncoderLayer``
    (the toy CLIP's text encoder) and the flash-attention kernel of ``scaled_dot_product_attention``. On the simulated
    device both fall back to their decomposed versions, which round differently (2e-7 in a text embedding); a guided
    chain amplifies that to 2.5e-5-5e-5 in the final pixels (measured over 5 seeds x 7 edits at 1 and 2 threads) and
    to 1.26e-4 on another CPU. With both decompositions forced on both sides, an edit matches bit for bit.
    """

    def __enter__(self) -> SameKernels:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self._fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        self._sdpa = sdpa_kernel(SDPBackend.MATH)
        self._sdpa.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._sdpa.__exit__(*exc)
        torch.backends.mha.set_fastpath_enabled(self._fastpath)
