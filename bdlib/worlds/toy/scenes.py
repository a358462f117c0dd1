"""Procedural toy scenes: muted gradient backgrounds with 1-3 coloured circles, squares and triangles.

Everything is vectorised in torch, so training can draw fresh scenes at every step (thousands of
32x32 scenes per second on a laptop CPU). Same seed, same scenes: all random numbers come from one
CPU ``torch.Generator`` whatever the rendering device.

Geometry (pixel coordinates: pixel ``(row i, column j)`` covers ``[j, j+1] x [i, i+1]``, its centre is
``(j + 0.5, i + 0.5)``). Every object has a centre ``(cx, cy)`` and a half-extent ``size`` and fills the
box ``[cx - size, cx + size] x [cy - size, cy + size]`` (the returned ``boxes``):

- circle: radius ``size``;
- square: axis-aligned, side ``2 size``;
- triangle: upright and nearly equilateral, apex ``(cx, cy - size)``, base from ``(cx - size, cy + size)``
  to ``(cx + size, cy + size)`` (height = base = 2 size: it fills its box, which keeps it legible at
  32x32).

Edges are anti-aliased analytically: with ``d`` the signed distance of a pixel centre to the shape
(negative inside), its coverage is ``clamp(0.5 - d, 0, 1)`` (exact for a straight edge crossing the
pixel; shapes are also clipped to their box, so coverage never leaks more than half a pixel out of it).

Sampling (at 32x32; every length scales with ``size / 32``): half-extent uniform in [4, 8] px, centre
uniform such that the box stays 1 px inside the image, and **no overlap**: the boxes of two objects are
disjoint with at least a 1 px gap, so soft masks never share a pixel and labels are unambiguous. A
scene whose objects do not fit is redrawn as a whole (this keeps the object-count distribution exact
and makes 3-object scenes hold slightly smaller objects on average). The (colour, shape) pairs of one
scene are distinct, so captions never say "a red circle and a red circle".

Backgrounds: a linear gradient between two muted colours (grey level 0.3-0.65, weak random chroma)
in a random direction, plus a gentle second tint gradient in another direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .vocab import COLORS, SHAPES, build_caption, caption_from_labels, color_table

_REFERENCE_SIZE = 32.0
_MIN_HALF, _MAX_HALF = 4.0, 8.0  # object half-extent range at 32x32 (pixels)
_MARGIN, _GAP = 1.0, 1.0  # border margin and minimum gap between boxes at 32x32 (pixels)
_CANDIDATES = 24  # placements tried per object slot in one round of rejection sampling
_CHUNK = 512  # scenes rendered at once (bounds memory for large batches)


@dataclass(frozen=True)
class ToyObject:
    """One object of an explicit scene: a colour word, a shape word, centre and half-extent in pixels."""

    color: str
    shape: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; choose one of {', '.join(COLORS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose one of {', '.join(SHAPES)}")
        if not self.size > 0:
            raise ValueError(f"object size (half-extent in pixels) must be positive, got {self.size}")

    @property
    def label(self) -> tuple[int, int]:
        """(colour index, shape index)."""
        return COLORS.index(self.color), SHAPES.index(self.shape)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in pixels."""
        return self.cx - self.size, self.cy - self.size, self.cx + self.size, self.cy + self.size


@dataclass(frozen=True)
class BackgroundSpec:
    """A background: gradient ``color0 -> color1`` along ``angle`` plus a ``tint`` gradient along
    ``tint_angle``. Colours are RGB in [0, 1]; the tint is a signed offset added across the image
    (from ``-tint/2`` to ``+tint/2``); angles in radians (0 = left to right, pi/2 = top to bottom)."""

    color0: tuple[float, float, float]
    color1: tuple[float, float, float]
    angle: float = 0.0
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tint_angle: float = 0.0

    def to_tensor(self) -> torch.Tensor:
        """Pack as the (11,) parameter vector ``[color0, color1, tint, angle, tint_angle]``."""
        return torch.tensor([*self.color0, *self.color1, *self.tint, self.angle, self.tint_angle])

    @staticmethod
    def from_tensor(params: torch.Tensor) -> BackgroundSpec:
        """Unpack an (11,) parameter vector (see :meth:`to_tensor`)."""
        p = [float(v) for v in params.tolist()]
        return BackgroundSpec(tuple(p[0:3]), tuple(p[3:6]), p[9], tuple(p[6:9]), p[10])


@dataclass(frozen=True)
class SceneSpec:
    """An explicit scene: background (a spec, or a (3, H, W) image in [-1, 1]) and objects."""

    background: BackgroundSpec | torch.Tensor
    objects: tuple[ToyObject, ...]
    size: int = 32

    @property
    def caption(self) -> str:
        return build_caption([(o.color, o.shape) for o in self.objects])


@dataclass
class SceneBatch:
    """A batch of rendered scenes. ``M`` is the number of object slots (``max_objects``); slot ``m`` of
    scene ``b`` holds an object iff ``m < counts[b]`` (empty slots: label -1, box 0, mask 0)."""

    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    backgrounds: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the same scenes without their objects
    masks: torch.Tensor  # (B, M, 1, H, W) soft coverage in [0, 1]
    labels: torch.Tensor  # (B, M, 2) long: (colour index, shape index), -1 for empty slots
    boxes: torch.Tensor  # (B, M, 4) float: (x0, y0, x1, y1) in pixels
    counts: torch.Tensor  # (B,) long: objects per scene
    captions: list[str]
    background_params: torch.Tensor | None = None  # (B, 11), see BackgroundSpec.to_tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def objects(self, i: int) -> list[ToyObject]:
        """The objects of scene ``i`` as explicit :class:`ToyObject` specs."""
        out = []
        for m in range(int(self.counts[i])):
            x0, y0, x1, y1 = (float(v) for v in self.boxes[i, m])
            c, s = (int(v) for v in self.labels[i, m])
            out.append(ToyObject(COLORS[c], SHAPES[s], (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2))
        return out

    def scene(self, i: int) -> SceneSpec:
        """Scene ``i`` as an explicit :class:`SceneSpec` (``render_scene`` of it gives the same image)."""
        if self.background_params is not None:
            background: BackgroundSpec | torch.Tensor = BackgroundSpec.from_tensor(self.background_params[i])
        else:
            background = self.backgrounds[i]
        return SceneSpec(background, tuple(self.objects(i)), self.images.shape[-1])


def render_backgrounds(params: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Render (B, 11) background parameters as (B, 3, size, size) images in [-1, 1].

    ``bg = color0 + (color1 - color0) t + tint (t' - 1/2)``, with ``t`` (``t'``) the position of the
    pixel centre along ``angle`` (``tint_angle``), scaled to [0, 1] over the image.
    """
    coords = (torch.arange(size, device=params.device, dtype=torch.float32) + 0.5) / size - 0.5
    u = coords.view(1, 1, size)  # x (columns)
    v = coords.view(1, size, 1)  # y (rows)

    def ramp(angle: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, 1, H, W) in [0, 1]
        cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
        t = (u * cos + v * sin) / (cos.abs() + sin.abs())
        return (t + 0.5).unsqueeze(1)

    c0, c1, tint = (params[:, k : k + 3].view(-1, 3, 1, 1) for k in (0, 3, 6))
    rgb = c0 + (c1 - c0) * ramp(params[:, 9]) + tint * (ramp(params[:, 10]) - 0.5)
    return rgb.clamp(0, 1) * 2 - 1  # (B, 3, H, W)


def shape_coverage(
    shapes: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, half: torch.Tensor, size: int
) -> torch.Tensor:
    """Anti-aliased coverage of objects, ``clamp(0.5 - d, 0, 1)`` from the signed distance ``d``.

    Args:
        shapes, cx, cy, half: (B, M) shape index, centre and half-extent (pixels).
    Returns:
        (B, M, size, size) coverage in [0, 1].
    """
    grid = torch.arange(size, device=cx.device, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, 1, size) - cx[..., None, None]  # (B, M, 1, W)
    dy = grid.view(1, 1, size, 1) - cy[..., None, None]  # (B, M, H, 1)
    r = half[..., None, None]
    box = torch.maximum(dx.abs(), dy.abs()) - r  # square: max of the four edge distances
    circle = torch.sqrt(dx * dx + dy * dy) - r
    below_apex = dy + r  # distance below the apex (cx, cy - r)
    # both slanted edges at once: outward normals (+-2, -1) / sqrt(5) through the apex
    slant = (2 * dx.abs() - below_apex) / math.sqrt(5.0)
    triangle = torch.maximum(slant, box)  # base edge and clipping to the box come from `box`
    s = shapes[..., None, None]
    distance = torch.where(s == 0, circle, torch.where(s == 1, box, triangle))
    return (0.5 - distance).clamp(0, 1)


def _render(
    params: torch.Tensor | None,
    backgrounds: torch.Tensor | None,
    labels: torch.Tensor,
    layout: torch.Tensor,
    counts: torch.Tensor,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render scenes from parameters. ``layout`` (B, M, 3) = (cx, cy, half); ``labels`` (B, M, 2).

    Returns images (B, 3, H, W), backgrounds (B, 3, H, W), masks (B, M, 1, H, W).
    """
    bg = render_backgrounds(params, size) if backgrounds is None else backgrounds
    b, m = labels.shape[:2]
    present = torch.arange(m, device=counts.device).view(1, m) < counts.view(b, 1)  # (B, M)
    cx, cy, half = layout.unbind(-1)
    coverage = shape_coverage(labels[..., 1].clamp(min=0), cx, cy, half, size)
    coverage = coverage * present[..., None, None]  # (B, M, H, W)
    colors = color_table(bg.device)[labels[..., 0].clamp(min=0)]  # (B, M, 3)
    image = bg
    for k in range(m):  # objects never overlap, so the compositing order does not matter
        alpha = coverage[:, k : k + 1]  # (B, 1, H, W)
        image = image + alpha * (colors[:, k, :, None, None] - image)
    return image, bg, coverage.unsqueeze(2)


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def _sample_backgrounds(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 11) muted background parameters (see BackgroundSpec)."""

    def muted() -> torch.Tensor:
        grey = 0.3 + 0.35 * _rand(generator, n, 1)
        chroma = _rand(generator, n, 3) * 2 - 1
        return grey + 0.12 * (chroma - chroma.mean(dim=1, keepdim=True))

    c0, c1 = muted(), muted()
    tint = 0.16 * (_rand(generator, n, 3) - 0.5)
    angles = _rand(generator, n, 2) * 2 * math.pi
    return torch.cat([c0.clamp(0, 1), c1.clamp(0, 1), tint, angles], dim=1)


def _sample_layout(counts: torch.Tensor, slots: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, slots, 3) non-overlapping (cx, cy, half) by vectorised rejection sampling (see module doc)."""
    n, scale = counts.shape[0], size / _REFERENCE_SIZE
    lo, hi, margin, gap = _MIN_HALF * scale, _MAX_HALF * scale, _MARGIN * scale, _GAP * scale
    layout = torch.zeros(n, slots, 3)
    todo = torch.arange(n)
    for _ in range(1000):
        if todo.numel() == 0:
            return layout
        k, need = todo.numel(), counts[todo]
        half = lo + (hi - lo) * _rand(generator, k, slots, _CANDIDATES)
        room = size - 2 * (half + margin)
        cx = half + margin + room * _rand(generator, k, slots, _CANDIDATES)
        cy = half + margin + room * _rand(generator, k, slots, _CANDIDATES)
        chosen = torch.zeros(k, slots, 3)
        ok = torch.ones(k, dtype=torch.bool)
        for m in range(slots):
            valid = torch.ones(k, _CANDIDATES, dtype=torch.bool)
            for j in range(m):
                sep = chosen[:, j, 2:3] + half[:, m] + gap
                apart_x = (cx[:, m] - chosen[:, j, 0:1]).abs() >= sep
                apart_y = (cy[:, m] - chosen[:, j, 1:2]).abs() >= sep
                valid &= apart_x | apart_y
            first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid candidate
            chosen[:, m] = torch.cat(
                [cx[:, m].gather(1, first), cy[:, m].gather(1, first), half[:, m].gather(1, first)], dim=1
            )
            ok &= valid.any(dim=1) | (m >= need)
        chosen *= (torch.arange(slots).view(1, slots) < need.view(k, 1)).unsqueeze(-1)
        layout[todo[ok]] = chosen[ok]
        todo = todo[~ok]
    raise RuntimeError("could not place the objects without overlap; use fewer or smaller objects")


def generate_scenes(
    n: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    size: int = 32,
    min_objects: int = 1,
    max_objects: int = 3,
    count_probs: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
) -> SceneBatch:
    """Draw ``n`` random scenes of ``size x size`` pixels with ``min_objects..max_objects`` objects.

    Args:
        seed: seeds a fresh CPU generator (takes precedence over ``generator``).
        generator: a CPU generator to draw from (advanced by the call). One of the two is required: bdlib never
            draws from the global RNG (:mod:`bdlib.runtime.randomness`).
        count_probs: probabilities of ``min_objects, ..., max_objects`` objects (default: uniform).
        device: where the images are rendered; the random draws are the same on every device.
    """
    if n < 0 or not 0 <= min_objects <= max_objects:
        raise ValueError(f"need n >= 0 and 0 <= min_objects <= max_objects, got n={n}, {min_objects}..{max_objects}")
    if max_objects > 3 or size < 8:
        raise ValueError(f"toy scenes hold at most 3 objects and are at least 8 px wide, got {max_objects} and {size}")
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    elif not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("generate_scenes needs a seed or a CPU generator: pass seed=0 or generator=torch.Generator()")
    options = max_objects - min_objects + 1
    probs = torch.full((options,), 1.0 / options) if count_probs is None else torch.tensor(count_probs)
    if probs.shape != (options,) or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(f"count_probs needs {options} non-negative weights, one per object count")
    counts = min_objects + torch.multinomial(probs.float(), n, replacement=True, generator=generator)
    pairs = _rand(generator, n, len(COLORS) * len(SHAPES)).argsort(dim=1)[:, :max_objects]  # distinct pairs
    labels = torch.stack([pairs // len(SHAPES), pairs % len(SHAPES)], dim=-1)  # (n, M, 2)
    present = torch.arange(max_objects).view(1, -1) < counts.view(-1, 1)
    labels = torch.where(present.unsqueeze(-1), labels, torch.full_like(labels, -1))
    layout = _sample_layout(counts, max_objects, size, generator)
    params = _sample_backgrounds(n, generator)
    images, backgrounds, masks = [], [], []
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        img, bg, msk = _render(
            params[part].to(device),
            None,
            labels[part].to(device),
            layout[part].to(device),
            counts[part].to(device),
            size,
        )
        images.append(img)
        backgrounds.append(bg)
        masks.append(msk)
    if n == 0:
        images = backgrounds = [torch.zeros(0, 3, size, size, device=device)]
        masks = [torch.zeros(0, max_objects, 1, size, size, device=device)]
    centre, half = layout[..., :2], layout[..., 2:]
    boxes = torch.cat([centre - half, centre + half], dim=-1)
    captions = [caption_from_labels(row[: int(c)].tolist()) for row, c in zip(labels, counts, strict=True)]
    return SceneBatch(
        torch.cat(images),
        torch.cat(backgrounds),
        torch.cat(masks),
        labels.to(device),
        boxes.to(device),
        counts.to(device),
        captions,
        params.to(device),
    )


def render_scene(
    background: BackgroundSpec | torch.Tensor,
    objects: Sequence[ToyObject],
    size: int = 32,
    device: torch.device | str = "cpu",
) -> SceneBatch:
    """Render one explicit scene (a batch of one). ``background`` is a :class:`BackgroundSpec` or a
    (3, size, size) image in [-1, 1]. Objects are drawn as given (no overlap or border check)."""
    m = len(objects)
    labels = torch.tensor([o.label for o in objects], dtype=torch.long).view(1, m, 2)
    layout = torch.tensor([(o.cx, o.cy, o.size) for o in objects], dtype=torch.float32).view(1, m, 3)
    counts = torch.tensor([m])
    if isinstance(background, BackgroundSpec):
        params: torch.Tensor | None = background.to_tensor().view(1, 11).to(device)
        bg_image = None
    else:
        if background.shape != (3, size, size):
            raise ValueError(f"background image must have shape (3, {size}, {size}), got {tuple(background.shape)}")
        params, bg_image = None, background.to(device, torch.float32).unsqueeze(0)
    labels, layout, counts = labels.to(device), layout.to(device), counts.to(device)
    image, bg, masks = _render(params, bg_image, labels, layout, counts, size)
    boxes = torch.cat([layout[..., :2] - layout[..., 2:], layout[..., :2] + layout[..., 2:]], dim=-1)
    caption = build_caption([(o.color, o.shape) for o in objects])
    return SceneBatch(image, bg, masks, labels, boxes, counts, [caption], params)


def render_spec(spec: SceneSpec, device: torch.device | str = "cpu") -> SceneBatch:
    """Render a :class:`SceneSpec` (a batch of one)."""
    return render_scene(spec.background, spec.objects, spec.size, device)
