"""Devices: checking a device name before anything is built on it, and deterministic kernels on demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def check_device(device: str | torch.device) -> torch.device:
    """Return ``torch.device(device)`` if this machine has it; raise a ValueError naming the fix if not.

    Catches what PyTorch would otherwise report deep inside a model's ``.to()``: an unknown name, CUDA (or
    Apple's MPS) on a machine without it, and a GPU index beyond the GPUs present.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:1, mps, ...") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} asked for a GPU but PyTorch sees no CUDA device here: use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device} asked for Apple's MPS, which is not available here: use cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device}: bdlib runs on cpu, cuda or mps")
    return parsed


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """While inside, ``torch.use_deterministic_algorithms(enabled)`` (then the previous setting again).

    On a GPU some kernels of guidance add in a nondeterministic order (``adaptive_avg_pool2d`` and ``grid_sample``
    backward, atomics in attention's backward): two runs with one seed can differ in the last bits, which a guided
    chain amplifies. Deterministic kernels remove that at some cost in speed; PyTorch refuses an operation that has
    none, and on CUDA it needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before Python starts (it says
    so when it is missing). CPU kernels are deterministic already (for one thread count).
    """
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
