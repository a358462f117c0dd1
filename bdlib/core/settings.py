"""The settings of an edit: Algorithm 1 (local CLIP-guided diffusion) or 2 (blended diffusion), and every knob.

bdlib has two modes. The default follows the paper (Avrahami et al., CVPR 2022, arXiv 2111.14818) where the paper
says what to do, and the official code where the paper is silent; ``official=True`` follows the official code in
every choice that changes a result (:mod:`bdlib.core.official` holds the table of differences and those choices).
Precision stays a separate setting (``precision``), because it depends on the hardware, not on the method.

Why bdlib's default differs from the paper where it does: the paper leaves the distance's exact form, the scales,
the range loss, the batch weights and the final image to its code, so the default takes the code's values there;
the gradient w.r.t. x_t is the guidance that guided-diffusion's ``cond_fn`` defines (the paper's ∇_{x̂_0} skips
the UNet's Jacobian, which notebook 04 measures); the cosine distance is available as ``distance="cosine"``.
:mod:`bdlib.core.variants` reads these settings and composes the edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bdlib.core.losses import DISTANCES
from bdlib.runtime.precision import check_precision

ALGORITHMS = ("blended", "local")
GRADIENTS = ("x_t", "pred_x0")
BLENDINGS = ("each step", "end", "none")
#: λ and the LPIPS share of D_bg when not given (paper mode, per image): the official weights at its batch of 4.
PAPER_LAM, PAPER_LPIPS_WEIGHT = 2500.0, 0.4
#: Largest accepted weight: beyond it float32 gradients overflow (a weight times a squared pixel error must stay
#: far below float32's 3.4e38).
MAX_WEIGHT = 1e12


@dataclass(frozen=True)
class MethodSettings:
    """Every knob of one edit. ``k`` is the paper's k as a respaced index (official: 100 - 25 - 1).

    ``official=True`` follows the official code in every result-changing choice (:mod:`bdlib.core.official`): for
    example it never clamps x̂_0 whatever ``clip_denoised`` says, and Algorithm 1 adds its background loss only when
    ``lam`` is set (the official ``--background_preservation_loss`` flag).
    """

    algorithm: str = "blended"  # "blended" (Algorithm 2) or "local" (Algorithm 1)
    respacing: str = "100"
    k: int = 74
    ddim: bool = False
    eta: float = 0.0
    guidance_scale: float = 1000.0  # weight of D_CLIP (official clip_guidance_lambda)
    range_scale: float = 50.0  # weight of the range loss on x̂_0
    # λ: weight of Algorithm 1's D_bg = MSE + lpips_weight·LPIPS. None: 2500 per image (paper mode), or no background
    # loss at all (official mode, as without --background_preservation_loss); lpips_weight None: 0.4 (paper) or 0.1.
    lam: float | None = None
    lpips_weight: float | None = None
    views: int = 8  # N views for CLIP: 1 clean + N-1 warped
    distance: str = "spherical"
    official: bool = False
    noise_aware: bool = False  # guide with a CLIP that reads (x_t, t): no backward through the UNet
    clip_denoised: bool = False  # clamp x̂_0 to [-1, 1] at every step (never in official mode)
    gradient: str = "x_t"  # take ∇L w.r.t. x_t (through the UNet) or w.r.t. x̂_0 (the paper's algorithms as written)
    # Algorithm 2 blends the noised input into every step ("each step"); the ablations of notebook 05 run the same
    # guided generation of the whole image and paste the input's background only once at the end ("end"), or never
    # ("none"); with the same noise as Algorithm 2
    blending: str = "each step"
    # the networks' autocast: fp32 (none), bf16/fp16 (all), bf16-clip/fp16-clip (bdlib.runtime.precision)
    precision: str = "fp32"
    # torch.use_deterministic_algorithms during the edit: the same bits twice on one GPU (slower; CPU kernels are
    # deterministic already; bdlib.runtime.devices.deterministic_algorithms)
    deterministic: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}")
        if isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1:
            raise ValueError(f"views must be an integer >= 1 (1 = the clean view alone), got {self.views!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise ValueError(f"k must be an integer, got {self.k!r}")
        for name in ("guidance_scale", "range_scale", "lam", "lpips_weight", "eta"):
            value = getattr(self, name)
            if value is None and name in ("lam", "lpips_weight"):
                continue
            check_weight(name, value)
        if self.noise_aware and self.algorithm != "blended":
            raise ValueError(
                "noise_aware guidance reads x_t, not x̂_0, so it cannot compute Algorithm 1's background loss "
                "on x̂_0: use algorithm='blended' with noise_aware=True"
            )
        if self.official and self.distance != "spherical":
            raise ValueError("official=True uses the official spherical distance: drop distance='cosine' or official")
        if self.official and self.gradient != "x_t":
            raise ValueError("official=True takes the gradient w.r.t. x_t: drop gradient='pred_x0' or official")
        if self.blending not in BLENDINGS:
            raise ValueError(f"blending must be one of {', '.join(BLENDINGS)}, got {self.blending!r}")
        if self.blending != "each step" and self.algorithm != "blended":
            raise ValueError(f"blending={self.blending!r} is an ablation of Algorithm 2: use algorithm='blended'")
        if self.official and self.noise_aware:
            raise ValueError("the official code has no noise-aware CLIP: drop noise_aware or official")
        if self.official and self.blending != "each step":
            raise ValueError(f"blending={self.blending!r} is an ablation of the paper's Algorithm 2: drop official")
        if self.noise_aware and self.gradient != "x_t":
            raise ValueError("noise_aware guidance reads x_t, so its gradient is w.r.t. x_t: drop gradient='pred_x0'")

    def with_(self, **changes) -> MethodSettings:
        """A copy with some fields changed (and checked again)."""
        return replace(self, **changes)


def check_weight(name: str, value: object) -> float:
    """Return ``value`` if it is a finite number in ``[0, MAX_WEIGHT]``; raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}: pass a value such as 1000")
    if not 0 <= value <= MAX_WEIGHT:
        raise ValueError(f"{name} must be in [0, {MAX_WEIGHT:g}], got {value:g}")
    return float(value)
