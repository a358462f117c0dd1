"""Mixed precision for the networks of an edit: which dtype each network's ``torch.autocast`` uses.

- ``"fp32"``: no autocast (the default: results do not depend on the CPU's bf16 support);
- ``"bf16"`` / ``"fp16"``: the UNet and the guidance networks (CLIP, LPIPS) under autocast to that dtype;
- ``"bf16-clip"`` / ``"fp16-clip"``: the UNet stays float32, only the guidance networks run in the low
  precision. x̂_0's derivative at high noise is a difference of near-equal terms scaled by 1/√ᾱ_t, so a
  low-precision UNet changes the guidance gradient far more than a low-precision CLIP does (toy world:
  about 20 % against under 1 % relative L2 at the first step; benchmarks/README.md).

Only the networks run inside the autocast; the diffusion arithmetic (means, variances, x̂_0, blending)
stays in float32, and the UNet keeps GroupNorm, its embeddings and output head in float32 (as
guided-diffusion's fp16 mode does).
"""

from __future__ import annotations

import contextlib
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


def check_precision(precision: str) -> None:
    """Raise a ValueError listing the precisions if ``precision`` is not one of them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def uses_autocast(precision: str) -> bool:
    """Whether any network runs under autocast at ``precision``."""
    check_precision(precision)
    return any(dtype is not None for dtype in PRECISIONS[precision].values())


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
