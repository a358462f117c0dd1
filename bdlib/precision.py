"""Mixed precision for the networks of an edit: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"`` autocast.

Only the networks (UNet, CLIP) run inside the autocast; the diffusion arithmetic (means, variances,
x̂_0, blending) stays in float32, and the UNet keeps GroupNorm, its embeddings and output head in
float32 (as guided-diffusion's fp16 mode does).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    """Raise a ValueError listing the precisions if ``precision`` is not one of them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def network_autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (``"fp32"``: a no-op context)."""
    check_precision(precision)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
