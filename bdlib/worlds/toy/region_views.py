"""Regions of toy scenes as the toy CLIPs and the oracle see them: masked objects, empty areas, warps.

Blended Diffusion scores an edit by CLIP on the *masked* image ``x ⊙ m`` (outside the region every pixel is
0, mid-grey in [-1, 1]), averaged over random geometric augmentations. The toy models are trained on
exactly such inputs, so this module builds them from a :class:`~bdlib.worlds.toy.scenes.SceneBatch`:

- :func:`object_regions`: one random object per scene and a binary region around it, its box grown by an
  integer margin on each side (whole pixels, as the editing tasks do: ``[floor(x0 - d), ceil(x1 + d))``),
  or its soft mask dilated;
- :func:`empty_regions`: squares of background that touch no object (the "add" task's regions);
- :func:`random_warp`: the extending augmentations of the official code with our own random numbers (so a
  step's generator fixes them): ``RandomAffine(15°, translate 0.1, p, padding "border")`` then
  ``RandomPerspective(0.7, p, padding zeros)``, built on kornia's warps.

The oracle's corruptions (what bad diffusion edits look like) live in :mod:`bdlib.worlds.toy.corruptions`.
All random numbers come from the CPU generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform, get_rotation_matrix2d, warp_affine, warp_perspective

from .scenes import SceneBatch
from .vocab import caption_from_labels


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def _randint(generator: torch.Generator, low: int, high: int, *shape: int) -> torch.Tensor:
    """Integers uniform in ``[low, high]`` (both ends included)."""
    return torch.randint(low, high + 1, shape, generator=generator)


def box_masks(boxes: torch.Tensor, margins: torch.Tensor | float, size: int) -> torch.Tensor:
    """Binary masks of boxes grown by ``margins`` pixels, in whole pixels.

    Args:
        boxes: (N, 4) float ``(x0, y0, x1, y1)`` in pixels.
        margins: (N, 4) per-side margins (left, top, right, bottom), or one number for all sides.
    Returns:
        (N, 1, size, size) masks, 1 on the pixels ``[floor(x0 - d), ceil(x1 + d))`` (clipped to the image).
    """
    boxes = boxes.float().cpu()
    margins = torch.as_tensor(margins, dtype=torch.float32).expand(boxes.shape[0], 4)
    grown = boxes + margins * torch.tensor([-1.0, -1.0, 1.0, 1.0])
    lo = torch.floor(grown[:, :2] + 1e-4).clamp(0, size)  # (N, 2): x0, y0 (tolerance for float noise)
    hi = torch.ceil(grown[:, 2:] - 1e-4).clamp(0, size)  # (N, 2): x1, y1 exclusive
    grid = torch.arange(size, dtype=torch.float32)
    inside_x = (grid.view(1, -1) >= lo[:, :1]) & (grid.view(1, -1) < hi[:, :1])  # (N, W)
    inside_y = (grid.view(1, -1) >= lo[:, 1:]) & (grid.view(1, -1) < hi[:, 1:])  # (N, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float().unsqueeze(1)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow a (N, 1, H, W) mask by ``radius`` pixels (square structuring element); binarises ``mask > 0``."""
    mask = (mask > 0).float()
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius) if radius > 0 else mask


@dataclass
class ObjectRegions:
    """One object per scene: ``index`` (N,) its slot, ``labels`` (N, 2) (colour, shape), ``boxes`` (N, 4),
    ``coverage`` (N, 1, H, W) its soft mask, ``masks`` (N, 1, H, W) the binary region around it."""

    index: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    coverage: torch.Tensor
    masks: torch.Tensor

    @property
    def captions(self) -> list[str]:
        """ "a COLOUR SHAPE" of every object."""
        return [caption_from_labels([tuple(row)]) for row in self.labels.tolist()]


def pick_objects(batch: SceneBatch, generator: torch.Generator) -> torch.Tensor:
    """(N,) a uniformly random present slot of every scene (scenes must hold at least one object)."""
    counts = batch.counts.cpu()
    if (counts < 1).any():
        raise ValueError("every scene needs at least one object to pick from")
    return (_rand(generator, len(counts)) * counts).long().clamp(max=counts - 1)


def object_regions(
    batch: SceneBatch,
    generator: torch.Generator,
    margin: tuple[int, int] = (1, 3),
    soft_fraction: float = 0.0,
    index: torch.Tensor | None = None,
) -> ObjectRegions:
    """A region around one object of every scene.

    The region is the object's box grown by an independent integer margin in ``[margin[0], margin[1]]`` on
    each side, or (for a ``soft_fraction`` of the scenes) its soft mask dilated by that margin's first side.
    ``index`` (N,) chooses the objects; by default one is picked at random per scene.
    """
    n, size = len(batch), batch.images.shape[-1]
    index = pick_objects(batch, generator) if index is None else index.cpu()
    rows = torch.arange(n)
    labels = batch.labels.cpu()[rows, index]  # (N, 2)
    boxes = batch.boxes.cpu()[rows, index]  # (N, 4)
    coverage = batch.masks.cpu()[rows, index]  # (N, 1, H, W)
    margins = _randint(generator, margin[0], margin[1], n, 4).float()
    masks = box_masks(boxes, margins, size)
    soft = _rand(generator, n) < soft_fraction
    if soft.any():
        for radius in sorted({int(r) for r in margins[soft, 0].tolist()}):
            chosen = soft & (margins[:, 0] == radius)
            masks[chosen] = dilate(coverage[chosen], radius)
    device = batch.images.device
    return ObjectRegions(index, labels, boxes, coverage.to(device), masks.to(device))


def empty_regions(
    batch: SceneBatch, generator: torch.Generator, side: tuple[int, int] = (8, 14), gap: int = 1, tries: int = 24
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random squares of background, ``side`` pixels wide, at least ``gap`` pixels away from every object.

    Returns:
        masks (N, 1, H, W) and ``ok`` (N,) bool: False where no candidate square was free (mask all 0).
    """
    n, size = len(batch), batch.images.shape[-1]
    blocked = dilate(batch.masks.cpu().sum(dim=1), gap)  # (N, 1, H, W)
    sides = _randint(generator, side[0], side[1], n, tries).float()
    x0 = torch.floor(_rand(generator, n, tries) * (size - sides + 1))
    y0 = torch.floor(_rand(generator, n, tries) * (size - sides + 1))
    boxes = torch.stack([x0, y0, x0 + sides, y0 + sides], dim=-1).view(-1, 4)
    candidates = box_masks(boxes, 0.0, size).view(n, tries, size, size)
    free = (candidates * blocked).sum(dim=(2, 3)) == 0  # (N, tries)
    first = free.float().argmax(dim=1)
    ok = free.any(dim=1)
    masks = candidates[torch.arange(n), first].unsqueeze(1) * ok.view(n, 1, 1, 1)
    return masks.to(batch.images.device), ok


def masked(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x ⊙ m``: the guidance's view of a region (0 = mid-grey outside it)."""
    return images * masks


def random_warp(
    images: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.7,
    degrees: float = 15.0,
    translate: float = 0.1,
    distortion: float = 0.7,
) -> torch.Tensor:
    """The extending augmentations on a batch: a random affine map then a random perspective map.

    Affine (probability ``p``): rotation by ``θ ~ U(-degrees, degrees)`` about the image centre and a shift
    ``(dx, dy) ~ U(-translate, translate) · (W, H)``, border padding. Perspective (probability ``p``): each
    corner moves inwards by ``U(0, 1) · distortion · (W - 1) / 2`` in x and in y, zero padding (kornia's
    ``RandomPerspective`` sampling). Differentiable with respect to ``images`` (B, C, H, W).
    """
    with torch.autocast(images.device.type, enabled=False):  # bf16 homographies are singular enough to give NaN
        return _warp(images.float(), generator, p, degrees, translate, distortion).to(images.dtype)


def _warp(
    images: torch.Tensor, generator: torch.Generator, p: float, degrees: float, translate: float, distortion: float
) -> torch.Tensor:
    b, _, h, w = images.shape
    dev, dtype = images.device, images.dtype
    apply_affine = (_rand(generator, b) < p).float()
    angle = (_rand(generator, b) * 2 - 1) * degrees * apply_affine
    shift = (_rand(generator, b, 2) * 2 - 1) * translate * torch.tensor([w, h]) * apply_affine[:, None]
    center = torch.tensor([(w - 1) / 2, (h - 1) / 2]).expand(b, 2)
    affine = get_rotation_matrix2d(center, angle, torch.ones(b, 2))  # (B, 2, 3)
    affine[:, :, 2] += shift
    out = warp_affine(images, affine.to(dev, dtype), (h, w), padding_mode="border", align_corners=True)
    apply_persp = (_rand(generator, b) < p).float()
    start = torch.tensor([[0.0, 0.0], [w - 1, 0.0], [w - 1, h - 1], [0.0, h - 1]]).expand(b, 4, 2)
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    reach = distortion * torch.tensor([w - 1, h - 1]) / 2
    end = start + _rand(generator, b, 4, 2) * reach * inward * apply_persp[:, None, None]
    homography = get_perspective_transform(start, end)  # (B, 3, 3)
    return warp_perspective(out, homography.to(dev, dtype), (h, w), align_corners=True)


def warp_part(images: torch.Tensor, generator: torch.Generator, fraction: float) -> torch.Tensor:
    """Apply :func:`random_warp` to a random ``fraction`` of the batch (the rest passes unchanged)."""
    chosen = _rand(generator, images.shape[0]) < fraction
    warped = random_warp(images, generator)
    return torch.where(chosen.view(-1, 1, 1, 1).to(images.device), warped, images)
