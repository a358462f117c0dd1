"""A grid of edits: the same input under several values of λ or k, as the λ and k panels of the lessons draw them.

``edit_grid(world, image, mask, prompt, "lam", [0, 1e3, 1e4])`` gives the images of three calls of
``edit(..., lam=v, samples=1)``: every value is sample 0 of an edit of its own, with its own streams
(:mod:`bdlib.runtime.randomness`). A λ grid runs in one batch, each image weighing its own background loss (up to the
float rounding of batched kernels, the same images); a k grid runs one edit per value, because each k starts its
chain at another step (bit for bit the same images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from bdlib.core import variants
from bdlib.core.algorithms import EditStep
from bdlib.edit import (
    EditResult,
    check_settings,
    finish_edit,
    prepare_edit,
    rank_distances,
    resolve_edit_settings,
)
from bdlib.runtime.imageio import ImageLike
from bdlib.runtime.randomness import SampleStreams, check_seed
from bdlib.worlds.base import World

GRID_FIELDS = ("lam", "k")


def edit_grid(
    world: World,
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    field: str,
    values: Sequence[Any],
    *,
    seed: int = 0,
    settings: Any = None,
    invert_mask: bool = False,
    dilate: int = 0,
    callback: Callable[[EditStep], None] | None = None,
    **overrides: Any,
) -> list[EditResult]:
    """One :class:`~bdlib.edit.EditResult` (one sample) per value of ``field`` ("lam" or "k"
    "k"). ``settings`` and ``overrides`` are those of :func:`bdlib.edit.edit`."""
    if field not in GRID_FIELDS:
        raise ValueError(f"a grid runs over one of {', '.join(GRID_FIELDS)} got {field!r}")
    if not values:
        raise ValueError("the grid needs at least one value")
    seed = check_seed(seed)
    base = resolve_edit_settings(world, settings, **overrides)
    per_value = [base.with_(**{field: value}) for value in values]  # each value checked as an edit would be
    for settings_i in per_value:
        check_settings(world, settings_i)
    if field == "lam" and base.algorithm != "local":
        raise ValueError("λ only acts in Algorithm 1: pass algorithm='local' for a λ grid")
    prepared = prepare_edit(world, image, mask, prompt, base, invert_mask, dilate)
    text = world.encode_prompt(prompt, base.noise_aware).to(world.device) if prepared.has_prompt else None
    if field == "lam":  # one batch: sample 0 of each value's edit, side by side
        streams = SampleStreams.stack([SampleStreams.for_edit(seed, [0], world.device) for _ in values])
        lam = torch.tensor([float(s.lam) for s in per_value], device=world.device)
        init = prepared.init.expand(len(values), -1, -1, -1)
        results, _ = variants.run(world, base, init, prepared.mask_world, text, streams, lam=lam, callback=callback)
    else:  # one edit per k: each starts its chain at its own step
        results = torch.cat(
            [
                variants.run(
                    world,
                    s,
                    prepared.init,
                    prepared.mask_world,
                    text,
                    SampleStreams.for_edit(seed, [0], world.device),
                    callback=callback,
                )[0]
                for s in per_value
            ]
        )
    distances = torch.full((len(values),), float("nan"))
    if prepared.has_prompt:
        embed = world.encode_prompt(prompt).to(world.device)
        distances = rank_distances(world, results, prepared.mask_world, embed, base.official).float().cpu()
    results = results.float().cpu().clamp(-1, 1)  # (V, 3, S, S)
    return [
        finish_edit(replace(prepared, settings=settings_i), results[i : i + 1], distances[i : i + 1])
        for i, settings_i in enumerate(per_value)
    ]
