"""``bdlib.edit``: the user-facing edit. Image, mask and prompt in; ranked edited images out.

1. Read the image and the mask (files, PIL, arrays or tensors; the mask thresholded at half range,
   optionally inverted and dilated), check them, and resize both to the world's size.
2. Run Algorithm 2 (or 1) for ``samples`` images in one batch (:func:`bdlib.blend.edit_progressive`).
3. Bring the results back to the input's size and paste the input's background back: outside the mask
   the result *is* the input, pixel for pixel (Algorithm 2).
4. Rank the samples by the CLIP distance of their masked region to the prompt, best first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bdlib.blend import edit_progressive
from bdlib.clip_guidance import clip_distance, masked_clip_pixels
from bdlib.imageio import ImageLike, load_image, load_mask
from bdlib.method import MethodSettings
from bdlib.worlds.base import World


@dataclass
class EditResult:
    """Edited images ranked best first, at the input's size, with what was needed to make them."""

    images: torch.Tensor  # (N, 3, H, W) in [-1, 1], best first
    distances: torch.Tensor  # (N,) masked CLIP distance to the prompt, ascending
    order: torch.Tensor  # (N,) index of each ranked image among the samples as drawn
    image: torch.Tensor  # (1, 3, H, W) the input
    mask: torch.Tensor  # (1, 1, H, W) the mask used (after invert/dilate), 1 = edit
    prompt: str
    settings: MethodSettings

    @property
    def best(self) -> torch.Tensor:
        """The best-ranked image (1, 3, H, W)."""
        return self.images[:1]


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a binary mask by ``pixels`` (a square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


def prepare_inputs(
    image: ImageLike, mask: ImageLike, invert_mask: bool = False, dilate: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check an image and its mask; raise a ValueError that says what is wrong and how to fix it."""
    image_t = load_image(image)
    mask_t = dilate_mask(load_mask(mask, invert=invert_mask), dilate)
    if image_t.shape[-2:] != mask_t.shape[-2:]:
        raise ValueError(
            f"the mask is {mask_t.shape[-1]}x{mask_t.shape[-2]} but the image is {image_t.shape[-1]}x"
            f"{image_t.shape[-2]} (width x height): make them the same size"
        )
    covered = float(mask_t.mean())
    if covered == 0:
        raise ValueError("the mask is empty, so there is nothing to edit: mark the region to change in white")
    if covered == 1:
        raise ValueError(
            "the mask covers the whole image, so there is no background to keep: that is text-to-image "
            "generation, not an edit. Leave some of the image unmasked (or invert the mask if it is reversed)"
        )
    return image_t, mask_t


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``x`` at ``size x size`` (images: antialiased bicubic; masks: nearest)."""
    if x.shape[-2:] == (size, size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


@torch.no_grad()
def rank_distances(world: World, images: torch.Tensor, mask: torch.Tensor, text_embed: torch.Tensor, official: bool):
    """Masked CLIP distance of each final image to the prompt (lower is better), by the plain CLIP.

    Paper mode: the guidance view (mask → mid-grey, CLIP normalisation, no augmentation). Official mode:
    the official ranking, ``x/2 + ½`` clamped, masked to *black*, resized, and not normalised.
    """
    clip = world.clip
    if official:
        pixels = ((images.add(1).div(2).clamp(0, 1)) * mask).float()
        pixels = F.interpolate(pixels, size=clip.input_resolution, mode="bilinear", antialias=True, align_corners=False)
    else:
        pixels = masked_clip_pixels(clip, images.float(), mask)
    return clip_distance(clip.encode_pixels(pixels).float(), text_embed, world.defaults.distance)


def edit(
    world: World,
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    *,
    samples: int = 1,
    seed: int = 0,
    invert_mask: bool = False,
    dilate: int = 0,
    settings: MethodSettings | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> EditResult:
    """Edit the masked region of ``image`` to match ``prompt``; return ``samples`` results ranked best first.

    ``settings`` defaults to the world's; keyword ``overrides`` change single fields (``k=`` is an alias
    of ``start_index``, ``lam=`` is λ, ``algorithm="local"`` runs Algorithm 1). ``callback`` receives
    every step's record (``t``, ``x_t``, ``pred_x0``, ``fg``, ``bg``, ``mask``, ``sample``).
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if "k" in overrides:
        overrides["start_index"] = overrides.pop("k")
    settings = (settings or world.defaults).with_(**overrides)
    world.check_prompt(prompt)
    image_t, mask_t = prepare_inputs(image, mask, invert_mask, dilate)
    device, size = world.device, world.image_size
    init = _resize(image_t, size, "bicubic").to(device)
    mask_w = (_resize(mask_t, size, "nearest") > 0.5).float().to(device)
    if float(mask_w.mean()) in (0.0, 1.0):
        raise ValueError(
            f"at the world's {size}x{size} resolution the mask becomes {'empty' if mask_w.mean() == 0 else 'full'}: "
            "use a larger (or smaller) region"
        )
    text_embed = world.encode_prompt(prompt, settings.noise_aware).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    final = None
    for record in edit_progressive(
        world.unet, world.diffusion(settings.respacing), world.guidance_clip(settings.noise_aware), init, mask_w,
        text_embed, settings, batch_size=samples, generator=generator, lpips=world.lpips,
    ):  # fmt: skip
        if callback is not None:
            callback(record)
        final = record
    assert final is not None
    results = final["result"].float().cpu().clamp(-1, 1)  # (N, 3, S, S): an image, so in [-1, 1]
    distances = rank_distances(
        world, final["result"], mask_w, world.encode_prompt(prompt).to(device), settings.official
    )
    if results.shape[-2:] != image_t.shape[-2:]:  # back to the input's size (and aspect ratio)
        results = F.interpolate(results, size=image_t.shape[-2:], mode="bicubic", antialias=True).clamp(-1, 1)
    if settings.algorithm == "blended":  # exact background at the input's own resolution
        results = results * mask_t + image_t * (1 - mask_t)
    order = torch.argsort(distances.cpu())
    return EditResult(results[order], distances.cpu()[order], order, image_t, mask_t, prompt, settings)
