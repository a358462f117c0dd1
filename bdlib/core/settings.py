"""Settings of the method: Algorithm 1 (local CLIP-guided diffusion) or 2 (blended diffusion), and switches.

bdlib has two modes. The default follows the paper (Avrahami et al., CVPR 2022, arXiv 2111.14818) where the
paper says what to do, and the official code (omriav/blended-diffusion at 86ed6ce; ``image_editor.py`` is
``optimization/image_editor.py``, ``arguments.py`` is ``optimization/arguments.py``) where the paper is silent;
``official=True`` follows the official code in every row that changes a result. Precision stays a separate
setting (``precision``), because it depends on the hardware, not on the method.

The differences, one row each, are the data :data:`DIFFERENCES` below; :func:`differences_table` renders them
as a Markdown table (appended to this docstring, and shown in notebook 05). Sources: "paper" names the
algorithm or the part of the method, "official" a file and line of the official code.

Why bdlib's default differs from the paper where it does: the paper leaves the distance's exact form, the
scales, the range loss, the batch weights and the final image to its code, so the default takes the code's
values there; the gradient w.r.t. x_t is the guidance that guided-diffusion's ``cond_fn`` defines (the paper's
∇_{x̂_0} skips the UNet's Jacobian, which notebook 04 measures); the cosine distance is available as
``distance="cosine"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bdlib.core.losses import DISTANCES
from bdlib.runtime.precision import check_precision

ALGORITHMS = ("blended", "local")
GRADIENTS = ("x_t", "pred_x0")
BLENDINGS = ("each step", "end", "none")
#: λ and the LPIPS share of D_bg when not given: per image in paper mode, the official formula in official mode.
PAPER_LAM, PAPER_LPIPS_WEIGHT = 2500.0, 0.4
OFFICIAL_LAM, OFFICIAL_LPIPS_WEIGHT = 10000.0, 0.1
#: Largest accepted weight: beyond it float32 gradients overflow (a weight times a squared pixel error must stay
#: far below float32's 3.4e38).
MAX_WEIGHT = 1e12


@dataclass(frozen=True)
class Difference:
    """One row of the table: a choice, what the paper and the official code do, and what bdlib does in each mode."""

    choice: str
    paper: str
    official_code: str
    bdlib_default: str
    bdlib_official: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference("what CLIP sees", "x̂_0 (Alg. 1-2)",
               "x_in = x̂_0·s + x_t·(1-s), s = √(1-ᾱ_t) (image_editor.py:177-178)", "x̂_0", "the x_in mix"),
    Difference("gradient taken w.r.t.", "x̂_0 (Alg. 1-2 write ∇_{x̂_0} L)",
               "x_t, through the UNet (image_editor.py:210)",
               "x_t: guided-diffusion's classifier-guidance mean shift; gradient='pred_x0' is the paper as written",
               "x_t"),
    Difference("level of the blended background", "t-1, like x_{t-1} (Alg. 2)",
               "t (postprocess_fn, image_editor.py:213-219)", "t-1", "t"),
    Difference("network passes per step", "not stated (one suffices)",
               "two: no grad for μ, with grad inside cond_fn (image_editor.py:173)", "one (same result, less work)",
               "two"),
    Difference("CLIP distance", "cosine distance D_c",
               "spherical 2·arcsin(‖â-b̂‖/2)² (losses.py:4-13)",
               "spherical (≈ θ²/2 against 1-cos θ ≈ θ²/2: the same for small angles); distance='cosine' is the paper's",
               "spherical (distance='cosine' is refused)"),
    Difference("guidance scale, range loss", "not stated",
               "clip 1000, range 50 on x̂_0 (arguments.py:55-66, image_editor.py:187-190)",
               "1000 and 50 (the official values)", "1000 and 50"),
    Difference("Alg. 1: background loss and weights", "λ·D_bg, D_bg = MSE + LPIPS (Alg. 1)",
               "10000·mse(x_in⊙(1-m), x) averaged over B·3·H·W (λ/B per image) + 1000·Σ_i LPIPS(x_in⊙(1-m), x) "
               "(image_editor.py:192-208)",
               "per image λ·(MSE + w·LPIPS) of x̂_0⊙(1-m) against x⊙(1-m); λ = 2500, w = 0.4: the official per-image "
               "weights at its batch of 4",
               "the official formula: λ = 10000 on the batch mean, LPIPS 0.1·λ = 1000 summed, against the full input"),
    Difference("clamping of x̂_0", "not stated", "never (clip_denoised=False, image_editor.py:174, 240)",
               "clip_denoised (off in the paper world; on in the toy world, see its defaults)", "never"),
    Difference("an empty prompt", "plain inpainting (project page)",
               "cond_fn returns 0: no guidance at all (image_editor.py:166-167)",
               "no CLIP and no range loss (Alg. 1 keeps its background loss)", "no guidance at all"),
    Difference("background noise of a batch", "one per image",
               "one draw for the batch: q_sample of the (1,3,H,W) input, tiled (image_editor.py:215-218)",
               "one per sample", "one per edit, shared by its samples"),
    Difference("final image", "x_0, the end of the chain (Alg. 2)",
               "x̂_0 of the last step, background pasted for Alg. 2 only (image_editor.py:262-278)",
               "the last sample x_0, background pasted (Alg. 2)", "x̂_0 of the last step, pasted for Alg. 2 only"),
    Difference("ranking: what CLIP sees", "the CLIP score of each result",
               "x̂_0·m in [0, 1], black outside the mask, resized, not normalised (image_editor.py:123-128, 279-284)",
               "the guidance view: mid-grey outside the mask, CLIP-normalised", "the official view"),
    Difference("augmentation warps", "affine and perspective warps",
               "RandomAffine (border padding), then RandomPerspective (zero padding), kornia defaults "
               "(augmentations.py:12-15)",
               "one composed homography, border padding (one interpolation)",
               "two warps: border then zeros, align_corners=False"),
    Difference("input resizing", "not stated", "PIL LANCZOS (image_editor.py:137)", "antialiased bicubic",
               "PIL LANCZOS"),
    Difference("mask file", "a binary mask", "R channel > 0 after a nearest resize (image_editor.py:149-157)",
               "luma (or alpha) above half its range; resized nearest", "R channel > 0"),
    Difference("precision", "not stated", "fp16 UNet (use_fp16) and fp16 CLIP on CUDA (image_editor.py:60, 84-88)",
               "float32 (precision='fp32')", "unchanged: a separate setting, precision"),
    Difference("default samples and seed", "many samples, ranked", "batch 4 × 8 iterations, seed 404 "
               "(arguments.py:96-110)", "1 sample, seed 0", "unchanged: pass samples and seed"),
)


def differences_table() -> str:
    """:data:`DIFFERENCES` as a Markdown table."""
    head = ("choice", "paper", "official code", "bdlib default", "bdlib, official=True")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in DIFFERENCES:
        cells = (row.choice, row.paper, row.official_code, row.bdlib_default, row.bdlib_official)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class MethodSettings:
    """Every knob of one edit. ``start_index`` is the paper's k as a respaced index (official: 100 - 25 - 1).

    ``official=True`` follows the official code in every result-changing row of the module's table; the fields
    it overrides (``clip_denoised``, and the defaults of ``lam`` and ``lpips_weight``) are then read through
    the properties below.
    """

    algorithm: str = "blended"  # "blended" (Algorithm 2) or "local" (Algorithm 1)
    respacing: str = "100"
    start_index: int = 74
    ddim: bool = False
    eta: float = 0.0
    guidance_scale: float = 1000.0  # weight of D_CLIP (official clip_guidance_lambda)
    range_scale: float = 50.0  # weight of the range loss on x̂_0
    # λ: weight of Algorithm 1's D_bg = MSE + lpips_weight·LPIPS. None: 2500 per image (paper mode) or the
    # official 10000 on a batch mean (official mode); lpips_weight None: 0.4 or 0.1 (LPIPS weighs 1000 in both).
    lam: float | None = None
    lpips_weight: float | None = None
    augmentations: int = 8  # N views for CLIP: 1 clean + N-1 warped
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

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}")
        if isinstance(self.augmentations, bool) or not isinstance(self.augmentations, int) or self.augmentations < 1:
            raise ValueError(f"augmentations must be an integer >= 1 (1 = none), got {self.augmentations!r}")
        if isinstance(self.start_index, bool) or not isinstance(self.start_index, int):
            raise ValueError(f"start_index (k) must be an integer, got {self.start_index!r}")
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
        if self.noise_aware and self.gradient != "x_t":
            raise ValueError("noise_aware guidance reads x_t, so its gradient is w.r.t. x_t: drop gradient='pred_x0'")

    @property
    def background_weight(self) -> float:
        """λ as used: the given ``lam``, or 2500 (paper mode, per image) / 10000 (official mode, batch mean)."""
        if self.lam is not None:
            return float(self.lam)
        return OFFICIAL_LAM if self.official else PAPER_LAM

    @property
    def lpips_share(self) -> float:
        """The weight of LPIPS inside D_bg: the given ``lpips_weight``, or 0.4 (paper) / 0.1 (official)."""
        if self.lpips_weight is not None:
            return float(self.lpips_weight)
        return OFFICIAL_LPIPS_WEIGHT if self.official else PAPER_LPIPS_WEIGHT

    @property
    def clamps_pred_x0(self) -> bool:
        """Clamp x̂_0 to [-1, 1] at every step: ``clip_denoised``, never in official mode."""
        return self.clip_denoised and not self.official

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

    @property
    def shared_background_noise(self) -> bool:
        """Official: one background noise per step for all samples of an edit; paper: one per sample."""
        return self.official

    @property
    def result_from_pred_x0(self) -> bool:
        """Official: the result is x̂_0 of the last step; paper: the last sample x_0."""
        return self.official

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


__doc__ = f"{__doc__}\n{differences_table()}\n"
