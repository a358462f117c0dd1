"""What both benchmark scripts measure about the machine: its name, memory, GEMM peak and counted FLOPs."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


def synchronize(device: torch.device | str) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so that wall-clock times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU model from ``/proc/cpuinfo`` (``platform`` is often empty on Linux)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def current_rss_mb() -> float | None:
    """Resident memory of this process now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of the whole process so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def peak_memory_mb(device: torch.device | str) -> tuple[float, str]:
    """``(MiB, kind)``: the GPU's peak allocated tensor memory, or the process's peak resident memory."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    return peak_rss_mb(), "process_peak_rss"


def gemm_peak_tflops(device: torch.device | str, dtype: torch.dtype, repeats: int = 5) -> float:
    """The best TFLOP/s of a square matmul in ``dtype`` (2048 on the CPU, 8192 on a GPU): the device's peak."""
    n = 8192 if torch.device(device).type == "cuda" else 2048
    generator = torch.Generator().manual_seed(0)  # drawn on the CPU, moved (bdlib's randomness rule)
    a, b = (torch.randn(n, n, generator=generator).to(device, dtype) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def device_peaks(device: torch.device | str) -> dict[str, float]:
    """GEMM peak TFLOP/s of the dtypes the device runs fast: fp32 and bf16, plus fp16 on a GPU (fp32 is true
    float32 only if the caller switched TF32 off, as the benchmark scripts do)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if torch.device(device).type == "cuda":
        dtypes["fp16"] = torch.float16
    return {name: round(gemm_peak_tflops(device, dtype), 4) for name, dtype in dtypes.items()}


class FlopCount(TorchDispatchMode):
    """Sums ``torch.utils.flop_counter``'s FLOPs (convolutions, matmuls, attention) of every op it sees.

    Unlike ``FlopCounterMode``, whose module hooks ``torch.autograd.grad`` refuses, it counts inside the
    guided step, backward included (an input-only convolution backward counts only its input gradient).
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:
            self.flops += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        return out
