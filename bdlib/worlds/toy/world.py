"""The toy world: 32x32 procedural scenes with a toy DDPM, a toy CLIP, a noise-aware CLIP and an oracle.

All four networks ship inside the package (``weights/*.safetensors``, with a model card each), so the
whole course runs offline on a laptop CPU. The oracle judges edits and is never used for guidance.
"""

from __future__ import annotations

import torch

from bdlib.core.settings import MethodSettings
from bdlib.worlds.base import World
from bdlib.worlds.toy.ddpm import toy_diffusion
from bdlib.worlds.toy.tokenizer import encode

#: Toy defaults: the official schedule shape (start at 3/4 of the chain: k = 18 of 25 respaced steps, original
#: t = 749, like the official 74 of 100 at t = 747) at a quarter of the steps, which a learned-σ model samples
#: well (about half the time of 50 steps from k = 37; text match 0.56 against 0.64, figures/evaluation.md).
#: Networks in float32, so that an edit does not depend on the CPU's bf16 support: ``precision="bf16-clip"``
#: (CLIP in bf16) changes one step's guidance gradient by 1-5 % (relative L2, median over seeds) and is
#: faster at larger batches, ``"bf16"`` (the UNet too) by 6-26 % (benchmarks/precision_tolerance.py).
#: No LPIPS (its VGG trunk is ImageNet-trained and cannot ship, so D_bg is the MSE alone). x̂_0 is clipped to
#: [-1, 1] at every step (the official code, and the paper world here, do not clip): the toy DDPM samples
#: cleanly either way (model card), but guided edits match the prompt better with it (40 seeded tasks, oracle
#: text match 66 % clipped against 44 % unclipped), and Algorithm 1 needs it (see TOY_LOCAL_DEFAULTS).
TOY_DEFAULTS = MethodSettings(respacing="25", k=18, lpips_weight=0.0, clip_denoised=True)

#: Algorithm 1 in the toy world, chosen by measurement (40 add/replace tasks, figures/evaluation.md has the full
#: benchmark): at guidance scale 1000 the region is mostly noise (clean objects 23-55 % for λ ≤ 10⁴), at 300 it
#: is an object (clean 68-90 %); λ = 3000 keeps the background within 0.04 (mean |Δ|) with the most clean
#: matches. λ ≥ 2·10⁴ diverges (the per-step background correction overshoots), and without the clamp of x̂_0
#: already λ = 10³ does: the clamp zeroes the gradient of every saturated pixel, which bounds the steps.
TOY_LOCAL_DEFAULTS = TOY_DEFAULTS.with_(algorithm="local", guidance_scale=300.0, lam=3000.0)


#: Working memory of one sample of a toy edit in flight, per pixel (40 MiB at 32x32), rounded up from a measurement
#: (peak RSS of edits of 1, 16 and 64 samples at the defaults, 8 views, float32, CPU: 84, 38 and 32 MiB per sample;
#: 16 samples with 1 and 64 views: 19 and 130 MiB, so ``edit`` scales the estimate by views / 8 above 8 views).
TOY_SAMPLE_BYTES_PER_PIXEL = 40 * 2**20 // (32 * 32)


def check_toy_prompt(prompt: str) -> None:
    """Raise a ValueError listing the vocabulary if ``prompt`` uses words the toy world does not know, or if it
    is longer than the toy CLIP reads."""
    encode(prompt)  # parses it (unknown words, malformed phrases), then counts its tokens


def load_toy_world(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> World:
    """Load the shipped toy models on ``device``, in ``dtype``.

    Float64 by default: in float32 the clamp of x̂_0 makes a guided toy chain chaotic, so the rounding of kernels,
    which depends on the thread count and the batch size, grew into different pictures (up to 220/255 on the
    example edit at 1 against 2 threads); in float64 the same edit is identical at 1, 2 and 4 threads and at batch
    sizes 1, 2 and 4, at 2-3x the time (``benchmarks/thread_invariance.py``). ``dtype=torch.float32`` is the fast
    choice where the exact picture does not matter (the benchmark uses it).
    """
    from bdlib.worlds.toy.clip_model import load_toy_clip
    from bdlib.worlds.toy.ddpm import load_toy_ddpm
    from bdlib.worlds.toy.noise_aware_clip import load_toy_noise_aware_clip
    from bdlib.worlds.toy.oracle import load_oracle

    world = World(
        name="toy",
        unet=load_toy_ddpm(),
        clip=load_toy_clip(),
        image_size=32,
        make_diffusion=toy_diffusion,
        defaults=TOY_DEFAULTS,
        local_defaults=TOY_LOCAL_DEFAULTS,
        check_prompt=check_toy_prompt,
        noise_aware_clip=load_toy_noise_aware_clip(),
        oracle=load_oracle(),
        description="toy world: 32x32 scenes, toy DDPM + toy CLIP + noise-aware CLIP + oracle (shipped weights)",
        capabilities=frozenset({"noise_aware", "oracle"}),
        sample_bytes_per_pixel=TOY_SAMPLE_BYTES_PER_PIXEL,
    )
    return world.to(device).to(dtype)
