"""Labelled regions for the oracle: clean objects, empty background, and what bad diffusion edits look like.

Every example is an image (B, 3, H, W) in [-1, 1], a binary region mask (B, 1, H, W) and four labels:

============== ======= ============ ============ =====
kind           present colour       shape        clean
============== ======= ============ ============ =====
clean          1       its colour   its shape    1
empty          0       -1           -1           1     a square of untouched background
removed        0       -1           -1           1     an object's region with the object erased (ideal removal)
noise_object   1       -1           -1           0     multicoloured noise on the object's pixels
noise_region   1       -1           -1           0     the same over the whole region
noise_empty    1       -1           -1           0     the same over an empty/removed region
two_colour     1       -1           its shape    0     one side of a line through the object recoloured
blur           1       its colour   -1           0     the region blurred (σ 1.2-2.5 px)
cut            1       its colour   -1           0     25-70 % of the object erased by a straight cut
faint          1       -1           its shape    0     the object half transparent (opacity 0.2-0.55)
blob           1       palette / -1 -1           0     the object replaced by an irregular union of ellipses
============== ======= ============ ============ =====

``-1`` = undefined: the oracle's colour/shape heads are not trained on that example. ``present`` = the region
holds something other than background; ``clean`` = the region looks like a proper toy render (one intact,
one-colour object of a known shape with crisp edges, or plain background). Realistic nuisances keep the label
clean: a third of all examples get mild global noise (σ ≤ 0.04) or mild blur (σ ≤ 0.6 px), and a third of
the clean objects a small colour shift (≤ 0.1 per channel). There is a deliberate gap between "mild" and
"corrupt" (noise 0.04 vs ≥ 0.3, blur 0.6 vs ≥ 1.2 px) so that no label is a coin toss.

``held_out`` kinds never appear in training and test generalisation: ``speckle`` (half the object's pixels
replaced by random palette colours) and ``stripes`` (the object painted in 2-px stripes of two colours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .region_views import empty_regions, object_regions
from .scenes import SceneBatch
from .vocab import COLORS, color_table

KINDS: tuple[str, ...] = (
    "clean",
    "empty",
    "removed",
    "noise_object",
    "noise_region",
    "noise_empty",
    "two_colour",
    "blur",
    "cut",
    "faint",
    "blob",
)
HELD_OUT_KINDS: tuple[str, ...] = ("speckle", "stripes")
KIND_PROBS: tuple[float, ...] = (0.36, 0.08, 0.08, 0.07, 0.07, 0.05, 0.07, 0.06, 0.06, 0.05, 0.05)
# present, colour defined, shape defined, clean — per kind (KINDS then HELD_OUT_KINDS)
_LABELS = {
    "clean": (1, 1, 1, 1),
    "empty": (0, 0, 0, 1),
    "removed": (0, 0, 0, 1),
    "noise_object": (1, 0, 0, 0),
    "noise_region": (1, 0, 0, 0),
    "noise_empty": (1, 0, 0, 0),
    "two_colour": (1, 0, 1, 0),
    "blur": (1, 1, 0, 0),
    "cut": (1, 1, 0, 0),
    "faint": (1, 0, 1, 0),
    "blob": (1, 1, 0, 0),
    "speckle": (1, 0, 0, 0),
    "stripes": (1, 0, 0, 0),
}


@dataclass
class RegionExamples:
    """A batch of labelled regions (see the module docstring); ``kind`` (N,) indexes ``KINDS + HELD_OUT_KINDS``."""

    images: torch.Tensor  # (N, 3, H, W)
    masks: torch.Tensor  # (N, 1, H, W)
    color: torch.Tensor  # (N,) long, -1 = undefined
    shape: torch.Tensor  # (N,) long, -1 = undefined
    present: torch.Tensor  # (N,) float
    clean: torch.Tensor  # (N,) float
    kind: torch.Tensor  # (N,) long


def _u(generator: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _col(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def line_distance(size: int, angle: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) signed distance (px) of pixel centres from the line through ``(cx, cy)`` with normal angle."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, -1) - cx.view(-1, 1, 1)
    dy = grid.view(1, -1, 1) - cy.view(-1, 1, 1)
    return (dx * torch.cos(angle).view(-1, 1, 1) + dy * torch.sin(angle).view(-1, 1, 1)).unsqueeze(1)


def _noise(generator: torch.Generator, n: int, size: int) -> torch.Tensor:
    """Multicoloured noise, σ 0.3-1.0: per pixel, or (for half of the batch) in 2x2 blotches."""
    fine = torch.randn(n, 3, size, size, generator=generator)
    coarse = F.interpolate(torch.randn(n, 3, size // 2, size // 2, generator=generator), scale_factor=2.0)
    blotchy = _col(torch.rand(n, generator=generator) < 0.5)
    return torch.where(blotchy, coarse, fine) * _col(_u(generator, n, 0.3, 1.0))


def _blob(generator: torch.Generator, boxes: torch.Tensor, size: int, parts: int = 3) -> torch.Tensor:
    """(N, 1, H, W) coverage of a union of ``parts`` random axis-aligned ellipses inside each box."""
    n = boxes.shape[0]
    half = ((boxes[:, 2] - boxes[:, 0]) / 2).view(n, 1)
    cx = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * (0.25 + 0.5 * torch.rand(n, parts, generator=generator))
    cy = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * (0.25 + 0.5 * torch.rand(n, parts, generator=generator))
    rx = 1.5 + (0.7 * half - 1.5).clamp(min=0.5) * torch.rand(n, parts, generator=generator)
    ry = 1.5 + (0.7 * half - 1.5).clamp(min=0.5) * torch.rand(n, parts, generator=generator)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx = (grid.view(1, 1, 1, -1) - cx[..., None, None]) / rx[..., None, None]
    dy = (grid.view(1, 1, -1, 1) - cy[..., None, None]) / ry[..., None, None]
    dist = (torch.sqrt(dx * dx + dy * dy) - 1) * torch.minimum(rx, ry)[..., None, None]
    return (0.5 - dist).clamp(0, 1).amax(dim=1, keepdim=True)


def _other_colour(generator: torch.Generator, color: torch.Tensor) -> torch.Tensor:
    return (color + torch.randint(1, len(COLORS), color.shape, generator=generator)) % len(COLORS)


def make_examples(
    batch: SceneBatch, generator: torch.Generator, kinds: torch.Tensor | None = None, realism: float = 1 / 3
) -> RegionExamples:
    """One labelled region per scene of ``batch`` (which must be on the CPU, 1+ objects per scene).

    ``kinds`` (N,) indexes ``KINDS + HELD_OUT_KINDS``; by default they are drawn with ``KIND_PROBS``.
    ``realism`` is the fraction of examples that get mild global noise or blur.
    """
    n, size = len(batch), batch.images.shape[-1]
    names = KINDS + HELD_OUT_KINDS
    if kinds is None:
        kinds = torch.multinomial(torch.tensor(KIND_PROBS), n, replacement=True, generator=generator)
    regions = object_regions(batch, generator, margin=(0, 3), soft_fraction=0.15)
    a, region = regions.coverage, regions.masks  # (N, 1, H, W) each
    color_idx, shape_idx = regions.labels[:, 0], regions.labels[:, 1]
    table = color_table()
    c = table[color_idx].view(n, 3, 1, 1)
    x, bg = batch.images, batch.backgrounds
    removed = x - a * (c - bg)  # the object erased: exactly the background under it
    empty_mask, ok = empty_regions(batch, generator)
    blank = torch.where(_col(ok), x, removed)  # image whose "empty" region is empty_mask, or the erased object
    blank_mask = torch.where(_col(ok), empty_mask, region)
    noise = _noise(generator, n, size)
    cx, cy = (regions.boxes[:, 0] + regions.boxes[:, 2]) / 2, (regions.boxes[:, 1] + regions.boxes[:, 3]) / 2
    half = (regions.boxes[:, 2] - regions.boxes[:, 0]) / 2
    angle = _u(generator, n, 0, 2 * math.pi)
    # a triangle cut below a near-horizontal line stays an upright triangle (clean): cut its top instead
    downward = (shape_idx == 2) & ((angle - math.pi / 2).abs() < math.radians(30))
    angle = torch.where(downward, angle + math.pi, angle)
    side = (line_distance(size, angle, cx, cy) > 0).float()
    c2_idx = _other_colour(generator, color_idx)
    c2 = table[c2_idx].view(n, 3, 1, 1)
    cut_at = _u(generator, n, -0.4, 0.5) * half  # keep the side of the line below this offset
    keep = (0.5 - (line_distance(size, angle, cx, cy) - _col(cut_at))).clamp(0, 1)
    sigma = _u(generator, n, 1.2, 2.5)
    blurred = gaussian_blur2d(x, 9, torch.stack([sigma, sigma], dim=1))
    blob = _blob(generator, regions.boxes, size)
    palette_blob = torch.rand(n, generator=generator) < 0.6
    blob_color = torch.where(_col(palette_blob), c2, torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1)
    speckle = (torch.rand(n, 1, size, size, generator=generator) < 0.5).float()
    speckle_colors = table[torch.randint(0, len(COLORS), (n, size, size), generator=generator)].permute(0, 3, 1, 2)
    stripe_axis = torch.where(
        _col(torch.rand(n, generator=generator) < 0.5),
        torch.arange(size).view(1, 1, 1, -1),
        torch.arange(size).view(1, 1, -1, 1),
    )
    stripes = ((stripe_axis // 2) % 2).float()
    variants = {
        "clean": x,
        "empty": blank,
        "removed": removed,
        "noise_object": x + a * noise,
        "noise_region": x + region * noise,
        "noise_empty": blank + blank_mask * noise,
        "two_colour": x + a * side * (c2 - c),
        "blur": x * (1 - region) + blurred * region,
        "cut": x - a * (1 - keep) * (c - bg),
        "faint": x - _col(_u(generator, n, 0.45, 0.8)) * a * (c - bg),
        "blob": removed + blob * (blob_color - removed),
        "speckle": x + a * speckle * (speckle_colors - x),
        "stripes": x + a * stripes * (c2 - c),
    }
    images, masks = x.clone(), region.clone()
    for k, name in enumerate(names):
        chosen = kinds == k
        images[chosen] = variants[name][chosen]
        if name in ("empty", "noise_empty"):
            masks[chosen] = blank_mask[chosen]
    shift = (torch.rand(n, 3, 1, 1, generator=generator) * 0.2 - 0.1) * _col(torch.rand(n, generator=generator) < 1 / 3)
    images = images + a * shift * _col(kinds == 0)  # small colour shift of clean objects
    images = _mild_nuisance(images, generator, realism)
    labels = torch.tensor([_LABELS[name] for name in names])[kinds]  # (N, 4)
    color = torch.where(kinds == names.index("blob"), torch.where(palette_blob, c2_idx, -1), color_idx)
    color, shape = torch.where(labels[:, 1] == 1, color, -1), torch.where(labels[:, 2] == 1, shape_idx, -1)
    return RegionExamples(images.clamp(-1, 1), masks, color, shape, labels[:, 0].float(), labels[:, 3].float(), kinds)


def _mild_nuisance(images: torch.Tensor, generator: torch.Generator, fraction: float) -> torch.Tensor:
    """Mild global noise (σ ≤ 0.04) on half of a ``fraction`` of the batch, mild blur (σ 0.3-0.6 px) on the rest."""
    n = images.shape[0]
    chosen = torch.rand(n, generator=generator) < fraction
    use_noise = torch.rand(n, generator=generator) < 0.5
    sigma = _u(generator, n, 0.3, 0.6)
    blurred = gaussian_blur2d(images, 5, torch.stack([sigma, sigma], dim=1))
    noisy = images + _col(_u(generator, n, 0.0, 0.04)) * torch.randn(images.shape, generator=generator)
    return torch.where(_col(chosen), torch.where(_col(use_noise), noisy, blurred), images)
