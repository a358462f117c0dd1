"""Seeded editing tasks in the toy world: an image, a binary mask (1 = edit), a prompt and the truth.

Five kinds, one per application of the paper (mask dilation ``d`` = 2 px and region side 12 px at
32x32; both scale with the image size):

- ``add``: the mask is an empty ``12 x 12`` square of background (it touches no object, with a 1 px
  margin); the prompt is a random "a COLOUR SHAPE" not already in the scene; ``target`` is that pair.
  Scenes of "add" tasks hold 1-2 objects, so the edited scene has at most 3.
- ``replace``: the mask is the box of one object dilated by ``d`` (whole pixels); the prompt names a
  different colour *and* a different shape; ``target`` is that pair.
- ``recolor``: the same mask; the prompt keeps the shape and changes the colour.
- ``remove``: the same mask; the prompt is "" (plain inpainting); ``target`` is None: the region
  should become background.
- ``background``: the mask is the complement of the objects, each dilated by ``d`` (the inverted-mask
  edit of the paper). The toy vocabulary has no background words, so the prompt is the caption of the
  kept objects and ``target`` is None: success means the objects survive exactly (blended diffusion
  keeps them by construction) and the rest becomes a new, object-free, plausible background.

For replace/recolor/remove the edited object is chosen among those whose mask touches no other object,
so the region holds exactly one object. Task ``i`` of ``generate_tasks(n, seed)`` depends only on
``(seed, i)``: a longer list extends a shorter one, and any prefix is balanced across kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .scenes import BackgroundSpec, SceneBatch, SceneSpec, ToyObject, generate_scenes, render_scene
from .vocab import COLORS, SHAPES, object_phrase

TASK_KINDS: tuple[str, ...] = ("add", "replace", "remove", "recolor", "background")
_DILATE, _ADD_SIDE, _ADD_MARGIN = 2.0, 12.0, 1.0  # pixels at 32x32


@dataclass
class EditTask:
    """One editing task. ``region_box`` = (x0, y0, x1, y1), integer pixels, x1/y1 exclusive: the
    bounding box of the mask. ``object_index`` is the edited object of ``scene`` (None for add and
    background)."""

    kind: str
    image: torch.Tensor  # (3, H, W) in [-1, 1]
    mask: torch.Tensor  # (1, H, W), exactly 0 or 1; 1 = edit
    prompt: str
    target: tuple[str, str] | None
    scene: SceneSpec
    region_box: tuple[int, int, int, int]
    object_index: int | None = None

    def expected_scene(self) -> SceneSpec | None:
        """An ideal result as a scene spec (None for "background", whose new background is free).

        For "add" the new object is centred in the region with a half-extent of ``side/2 - 1.5`` px; this
        is one good answer among many, meant for pictures, not for pixel metrics.
        """
        objects = list(self.scene.objects)
        if self.kind == "background":
            return None
        if self.kind == "add":
            assert self.target is not None
            x0, y0, x1, y1 = self.region_box
            half = (x1 - x0) / 2 - 1.5 * self.scene.size / 32
            objects.append(ToyObject(*self.target, (x0 + x1) / 2, (y0 + y1) / 2, half))
        elif self.kind == "remove":
            objects.pop(self._index())
        else:
            assert self.target is not None
            old = objects[self._index()]
            objects[self._index()] = dataclasses.replace(old, color=self.target[0], shape=self.target[1])
        return dataclasses.replace(self.scene, objects=tuple(objects))

    def _index(self) -> int:
        if self.object_index is None:
            raise ValueError(f"a {self.kind!r} task has no edited object")
        return self.object_index


def task_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of task ``index`` under ``seed`` (well mixed by numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _support(batch: SceneBatch) -> torch.Tensor:
    """(1, 1, H, W) binary union of the object masks (every pixel an object touches at all)."""
    return (batch.masks[0].sum(dim=0, keepdim=True) > 0).float()


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary (B, 1, H, W) mask grown by ``radius`` pixels (a square structuring element)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def _choice(generator: torch.Generator, n: int) -> int:
    return int(torch.randint(0, n, (1,), generator=generator))


def _pair_choice(generator: torch.Generator, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    return pairs[_choice(generator, len(pairs))]


def _box_mask(box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    x0, y0, x1, y1 = box
    mask = torch.zeros(1, size, size)
    mask[:, y0:y1, x0:x1] = 1.0
    return mask


def _make_add(batch: SceneBatch, size: int, generator: torch.Generator) -> EditTask | None:
    side = round(_ADD_SIDE * size / 32)
    blocked = _dilate(_support(batch), round(_ADD_MARGIN * size / 32))  # (1, 1, H, W)
    overlap = F.avg_pool2d(blocked, side, stride=1)[0, 0]  # (H-side+1, W-side+1): > 0 where blocked
    free = (overlap == 0).nonzero()
    if free.numel() == 0:
        return None
    y0, x0 = (int(v) for v in free[_choice(generator, free.shape[0])])
    box = (x0, y0, x0 + side, y0 + side)
    spec = batch.scene(0)
    present = {(o.color, o.shape) for o in spec.objects}
    target = _pair_choice(generator, [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present])
    return EditTask("add", batch.images[0], _box_mask(box, size), object_phrase(*target), target, spec, box)


def _make_object_edit(kind: str, batch: SceneBatch, size: int, generator: torch.Generator) -> EditTask | None:
    spec = batch.scene(0)
    radius = _DILATE * size / 32
    candidates = []
    for k, obj in enumerate(spec.objects):
        x0, y0, x1, y1 = obj.box
        box = (
            max(0, int(np.floor(x0 - radius))),
            max(0, int(np.floor(y0 - radius))),
            min(size, int(np.ceil(x1 + radius))),
            min(size, int(np.ceil(y1 + radius))),
        )
        others = batch.masks[0, [j for j in range(len(spec.objects)) if j != k]].sum(dim=0)  # (1, H, W)
        if float((others * _box_mask(box, size)).sum()) == 0.0:
            candidates.append((k, box))
    if not candidates:
        return None
    k, box = candidates[_choice(generator, len(candidates))]
    obj = spec.objects[k]
    taken = {(o.color, o.shape) for j, o in enumerate(spec.objects) if j != k}
    if kind == "remove":
        target, prompt = None, ""
    else:
        if kind == "replace":
            pairs = [(c, s) for c in COLORS for s in SHAPES if c != obj.color and s != obj.shape]
        else:  # recolor
            pairs = [(c, obj.shape) for c in COLORS if c != obj.color]
        target = _pair_choice(generator, [p for p in pairs if p not in taken])
        prompt = object_phrase(*target)
    return EditTask(kind, batch.images[0], _box_mask(box, size), prompt, target, spec, box, k)


def _make_background(batch: SceneBatch, size: int) -> EditTask:
    keep = _dilate(_support(batch), round(_DILATE * size / 32))[0]  # (1, H, W)
    spec = batch.scene(0)
    return EditTask("background", batch.images[0], 1.0 - keep, spec.caption, None, spec, (0, 0, size, size))


def make_task(kind: str, seed: int, index: int = 0, size: int = 32) -> EditTask:
    """Task ``index`` of kind ``kind`` under ``seed`` (draws scenes until one suits the kind)."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; choose from {', '.join(TASK_KINDS)}")
    generator = task_generator(seed, index)
    for _ in range(1000):
        batch = generate_scenes(1, generator=generator, size=size, max_objects=2 if kind == "add" else 3)
        if kind == "add":
            task = _make_add(batch, size, generator)
        elif kind == "background":
            task = _make_background(batch, size)
        else:
            task = _make_object_edit(kind, batch, size, generator)
        if task is not None:
            return task
    raise RuntimeError(f"no scene suited a {kind!r} task at size {size}")


def generate_tasks(n: int, seed: int, kinds: Sequence[str] | None = None, size: int = 32) -> list[EditTask]:
    """``n`` deterministic tasks, cycling through ``kinds`` (default: all five, in ``TASK_KINDS`` order),
    so every kind appears ``n // len(kinds)`` or one more times."""
    kinds = tuple(TASK_KINDS if kinds is None else kinds)
    if not kinds:
        raise ValueError(f"kinds must name at least one of {', '.join(TASK_KINDS)}")
    return [make_task(kinds[i % len(kinds)], seed, i, size) for i in range(n)]


def stack_tasks(tasks: Sequence[EditTask]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Batch tasks as images (B, 3, H, W), masks (B, 1, H, W) and prompts."""
    return (torch.stack([t.image for t in tasks]), torch.stack([t.mask for t in tasks]), [t.prompt for t in tasks])


def save_image_png(image: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) image in [-1, 1] as an 8-bit RGB PNG."""
    array = ((image.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def save_mask_png(mask: torch.Tensor, path: str | Path) -> None:
    """Write a (1, H, W) mask in [0, 1] as an 8-bit greyscale PNG (white = edit)."""
    array = (mask.detach().cpu().clamp(0, 1)[0] * 255).round().byte().numpy()
    Image.fromarray(array).save(path)


def example_task() -> EditTask:
    """The shipped example: a blue square and a yellow triangle, and an empty 12x12 area to fill with
    "a red circle". Built from an explicit spec, so it never changes with the random generators."""
    background = BackgroundSpec((0.40, 0.45, 0.52), (0.60, 0.55, 0.47), 0.6, (0.04, -0.03, 0.0), 2.0)
    objects = (ToyObject("blue", "square", 9.5, 9.5, 5.5), ToyObject("yellow", "triangle", 22.5, 22.5, 5.5))
    batch = render_scene(background, objects)
    box = (18, 3, 30, 15)
    mask = _box_mask(box, 32)
    assert float((mask * _dilate(_support(batch), 1)[0]).sum()) == 0.0, "example region must be empty"
    spec = SceneSpec(background, objects, 32)
    return EditTask("add", batch.images[0], mask, "a red circle", ("red", "circle"), spec, box)


def make_examples(out_dir: str | Path) -> EditTask:
    """Write ``scene.png`` (32x32 RGB) and ``scene_mask.png`` (32x32, white = edit) of
    :func:`example_task` into ``out_dir`` and return the task."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = example_task()
    save_image_png(task.image, out / "scene.png")
    save_mask_png(task.mask, out / "scene_mask.png")
    return task
