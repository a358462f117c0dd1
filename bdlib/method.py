"""Settings of the method: Algorithm 1 (local CLIP-guided diffusion) or 2 (blended diffusion), and switches.

The defaults are the paper's choices. ``official=True`` reproduces the official code
(omriav/blended-diffusion), which differs from the paper in three places:

============================  ==========================  ====================================
choice                        paper (default)             official code
============================  ==========================  ====================================
what CLIP sees                x̂_0                         ``x_in = x̂_0·s + x_t·(1-s)``, ``s = √(1-ᾱ_t)``
level of the blended bg       t-1 (same as x_{t-1})       t (one level noisier than x_{t-1})
network passes per step       one (reused for μ and ∇)    two (no-grad for μ, with grad for ∇)
============================  ==========================  ====================================

The official code also draws one background noise for the whole batch and weights its L2 term by
``λ/B`` per image; both follow the switch too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bdlib.clip_guidance import DISTANCES
from bdlib.precision import check_precision

ALGORITHMS = ("blended", "local")


@dataclass(frozen=True)
class MethodSettings:
    """Every knob of one edit. ``start_index`` is the paper's k as a respaced index (official: 100 - 25 - 1)."""

    algorithm: str = "blended"  # "blended" (Algorithm 2) or "local" (Algorithm 1)
    respacing: str = "100"
    start_index: int = 74
    ddim: bool = False
    eta: float = 0.0
    guidance_scale: float = 1000.0  # weight of D_CLIP (official clip_guidance_lambda)
    range_scale: float = 50.0  # weight of the range loss on x̂_0
    # λ: weight of D_bg = MSE + lpips_weight·LPIPS per image (Algorithm 1 only). The official code weights a
    # mean over the whole batch of 4 by 10000 (2500 per image) and an LPIPS summed over the batch by 1000.
    lam: float = 2500.0
    lpips_weight: float = 0.4
    augmentations: int = 8  # N views for CLIP: 1 clean + N-1 warped
    distance: str = "spherical"
    official: bool = False
    noise_aware: bool = False  # guide with a CLIP that reads (x_t, t): no backward through the UNet
    clip_denoised: bool = False
    precision: str = "fp32"  # networks' autocast: fp32 (none), bf16/fp16 (all), bf16-clip/fp16-clip (bdlib.precision)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if not isinstance(self.augmentations, int) or self.augmentations < 1:
            raise ValueError(f"augmentations must be an integer >= 1 (1 = none), got {self.augmentations!r}")
        for name in ("guidance_scale", "range_scale", "lam", "lpips_weight", "eta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.noise_aware and self.algorithm != "blended":
            raise ValueError(
                "noise_aware guidance reads x_t, not x̂_0, so it cannot compute Algorithm 1's background loss "
                "on x̂_0: use algorithm='blended' with noise_aware=True"
            )

    @property
    def clip_sees_mix(self) -> bool:
        """Official: CLIP sees ``x̂_0·s + x_t·(1-s)``; paper: x̂_0."""
        return self.official

    @property
    def background_at_t(self) -> bool:
        """Official: blend in the input noised to level t; paper: to level t-1, like x_{t-1}."""
        return self.official

    @property
    def two_pass(self) -> bool:
        """Official: a no-grad network pass for μ and a second one with grad for the guidance."""
        return self.official

    def with_(self, **changes) -> MethodSettings:
        """A copy with some fields changed (and checked again)."""
        return replace(self, **changes)
