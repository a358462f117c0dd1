"""The paper's applications (section 5) as small recipes over :func:`bdlib.edit.edit`.

- add or replace an object: a mask over the place, a prompt naming the object;
- remove an object: fill the region smoothly from its border (:func:`bdlib.inpaint.smooth_fill`), then blended
  diffusion with the empty prompt (no CLIP guidance) from a low noise level, so the prior makes the fill look
  like background instead of inventing a new object (measured on the toy benchmark: figures/evaluation.md);
- replace the background: the object's mask *inverted*, a prompt for the new background;
- scribble-guided editing: paint a rough coloured scribble into the input, then edit its region starting
  from a lower noise level so the scribble's colour and layout survive;
- text-guided extrapolation (outpainting): shift the image, fill the strip that appears smoothly from the
  picture's edge, and edit it.
"""

from __future__ import annotations

from typing import Any

import torch

from bdlib.edit import EditResult, dilate_mask, edit
from bdlib.inpaint import smooth_fill
from bdlib.runtime.imageio import ImageLike, load_image, load_mask
from bdlib.worlds.base import World

DIRECTIONS = ("left", "right", "up", "down")


def add_object(world: World, image: ImageLike, mask: ImageLike, prompt: str, **kwargs: Any) -> EditResult:
    """Make the masked area show ``prompt`` (an empty area: add; an object's area: replace)."""
    return edit(world, image, mask, prompt, **kwargs)


replace_object = add_object


#: The removal recipe starts at this fraction of the chain (k = 6 of the toy world's 25 steps). Measured on the
#: toy benchmark's 40 remove tasks (figures/evaluation.md); the paper world uses the same fraction, unmeasured.
REMOVAL_START_FRACTION = 0.25


def default_removal_k(world: World, respacing: str | None = None) -> int:
    """The start index k of the removal recipe: :data:`REMOVAL_START_FRACTION` of the world's chain."""
    return round(REMOVAL_START_FRACTION * (world.diffusion(respacing).num_steps - 1))


def removal_input(image: ImageLike, mask: ImageLike, invert_mask: bool = False, dilate: int = 0) -> torch.Tensor:
    """The input of the removal recipe: ``image`` with the (inverted, dilated) masked region filled smoothly."""
    image_t = load_image(image)
    mask_t = dilate_mask(load_mask(mask, invert=invert_mask), dilate)
    if mask_t.shape[-2:] != image_t.shape[-2:]:
        return image_t  # edit() reports the size mismatch with its own message
    return smooth_fill(image_t, mask_t)


def remove_object(world: World, image: ImageLike, mask: ImageLike, fill: bool = True, **kwargs: Any) -> EditResult:
    """Remove what the mask covers: the empty prompt (no CLIP guidance), by default on the input with the region
    filled smoothly from its border and from k = :func:`default_removal_k` (``k=`` overrides it).

    ``fill=False`` is the paper's plain recipe: the prior alone refills the region from the world's default k,
    which in the toy world often draws a new object there (its prior never saw an empty scene; see README)."""
    if fill:
        image = removal_input(image, mask, kwargs.get("invert_mask", False), kwargs.get("dilate", 0))
        settings = kwargs.get("settings") or world.defaults
        kwargs.setdefault("k", default_removal_k(world, kwargs.get("respacing", settings.respacing)))
    return edit(world, image, mask, "", **kwargs)


def replace_background(world: World, image: ImageLike, object_mask: ImageLike, prompt: str, **kwargs: Any):
    """Keep the object (``object_mask`` = 1 on it) exactly and regenerate everything else."""
    return edit(world, image, object_mask, prompt, invert_mask=True, **kwargs)


def paint_scribble(image: ImageLike, scribble_mask: ImageLike, color: tuple[float, float, float]) -> torch.Tensor:
    """The input with ``scribble_mask`` painted in ``color`` (RGB in [0, 1]): the scribble-guided input."""
    image_t = load_image(image)
    mask_t = load_mask(scribble_mask)
    paint = torch.tensor(color, dtype=image_t.dtype).view(1, 3, 1, 1) * 2 - 1
    return image_t * (1 - mask_t) + paint * mask_t


def scribble_edit(
    world: World,
    image: ImageLike,
    scribble_mask: ImageLike,
    color: tuple[float, float, float],
    prompt: str,
    region: ImageLike | None = None,
    **kwargs: Any,
) -> EditResult:
    """Paint the scribble, then edit ``region`` (default: the scribble grown by 2 px) from a middle noise level.

    Starting at about half of the chain (``k``) keeps the scribble's colour and rough shape while the
    diffusion and CLIP turn it into a plausible object.
    """
    painted = paint_scribble(image, scribble_mask, color)
    kwargs.setdefault("k", world.defaults.k // 2)
    if region is None:
        kwargs.setdefault("dilate", 2)
        region = scribble_mask
    return edit(world, painted, region, prompt, **kwargs)


def extend_canvas(
    image: ImageLike, direction: str = "right", fraction: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift the image by ``fraction`` of its size away from ``direction``; return it and the mask of the new strip.

    The canvas keeps its size (the world works at one size); the strip that appears is masked and filled smoothly
    from the picture's edge (:func:`bdlib.inpaint.smooth_fill`), a placeholder that the edit redraws from ``x_k``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1 (the share of the canvas to invent), got {fraction}")
    image_t = load_image(image)
    _, _, height, width = image_t.shape
    vertical = direction in ("up", "down")
    shift = max(1, round(fraction * (height if vertical else width)))
    sign = -1 if direction in ("right", "down") else 1
    shifted = torch.roll(image_t, shifts=sign * shift, dims=2 if vertical else 3)
    mask = torch.zeros(1, 1, height, width)
    strip = slice(-shift, None) if sign < 0 else slice(0, shift)
    if vertical:
        mask[..., strip, :] = 1
    else:
        mask[..., strip] = 1
    return smooth_fill(shifted * (1 - mask), mask), mask


def extrapolate(
    world: World, image: ImageLike, prompt: str, direction: str = "right", fraction: float = 0.25, **kwargs
):
    """Text-guided outpainting: extend the scene by ``fraction`` towards ``direction`` to match ``prompt``."""
    shifted, mask = extend_canvas(image, direction, fraction)
    return edit(world, shifted, mask, prompt, **kwargs)
