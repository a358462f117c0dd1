"""Mixed precision for the networks of an edit: which dtype each network's ``torch.autocast`` uses.

- ``"fp32"``: no autocast (the default: results do not depend on the CPU's bf16 support);
- ``"bf16"`` / ``"fp16"``: the UNet and the guidance networks (CLIP, LPIPS) under autocast to that dtype;
- ``"bf16-clip"`` / ``"fp16-clip"``: the UNet stays float32, only the guidance networks run in the low
  precision. x̂_0's derivative at high noise is a difference of near-equal terms scaled by 1/√ᾱ_t, so a
  low-precision UNet changes the guidance gradient far more than a low-precision CLIP does (toy world,
  relative L2 of one step's gradient, median of 8 seeds: 26 % against 1.3 % at the first step of an edit,
  6-13 % against 1-5 % later; ``benchmarks/precision_tolerance.py``).

Only the networks run inside the autocast: the diffusion arithmetic (means, variances, x̂_0, blending),
the pooling and augmentations before CLIP (a homography applied in bf16 moves the sampling grid by a
visible fraction of a pixel) and the distances after it stay in float32; the UNet keeps GroupNorm, its
embeddings and output head in float32 (as guided-diffusion's fp16 mode does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

#: The networks that :func:`network_autocast` distinguishes.
NETWORKS = ("unet", "guidance")

#: precision → autocast dtype of the UNet and of the guidance networks (``None``: float32, no autocast).
PRECISIONS: dict[str, dict[str, torch.dtype | None]] = {
    "fp32": {"unet": None, "guidance": None},
    "bf16": {"unet": torch.bfloat16, "guidance": torch.bfloat16},
    "fp16": {"unet": torch.float16, "guidance": torch.float16},
    "bf16-clip": {"unet": None, "guidance": torch.bfloat16},
    "fp16-clip": {"unet": None, "guidance": torch.float16},
}


def at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` raised to float32 at least: float16/bfloat16 become float32, float64 stays float64 (a float64 world
    computes everything in float64, :func:`bdlib.worlds.toy.world.load_toy_world`)."""
    return torch.promote_types(dtype, torch.float32)


def check_precision(precision: str) -> None:
    """Raise a ValueError listing the precisions if ``precision`` is not one of them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def low_precision_dtypes(precision: str) -> set[torch.dtype]:
    """The autocast dtypes that ``precision`` uses (empty for ``"fp32"``)."""
    check_precision(precision)
    return {dtype for dtype in PRECISIONS[precision].values() if dtype is not None}


def network_autocast(
    device: torch.device | str, precision: str, network: str = "unet"
) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``network`` (``"unet"`` or ``"guidance"``) at ``precision`` on ``device``."""
    check_precision(precision)
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    dtype = PRECISIONS[precision][network]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class AutocastClip:
    """``clip`` with ``encode_pixels`` run under ``context()``; every other attribute passes through."""

    def __init__(self, clip: Any, context: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
        self._clip, self._context = clip, context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clip, name)

    def encode_pixels(self, *args: Any) -> torch.Tensor:
        with self._context():
            return self._clip.encode_pixels(*args)


def guidance_networks(
    clip: Any, lpips: Callable[..., torch.Tensor] | None, device: torch.device | str, precision: str
) -> tuple[Any, Callable[..., torch.Tensor] | None]:
    """``(clip, lpips)`` whose network calls run under the guidance autocast of ``precision`` (as given at fp32)."""
    check_precision(precision)
    if PRECISIONS[precision]["guidance"] is None:
        return clip, lpips

    def context() -> contextlib.AbstractContextManager[Any]:
        return network_autocast(device, precision, "guidance")

    def lpips_in_context(*args: Any, **kwargs: Any) -> torch.Tensor:
        with context():
            return lpips(*args, **kwargs)

    return AutocastClip(clip, context), None if lpips is None else lpips_in_context
