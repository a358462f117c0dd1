"""A grid of edits in one batch: the same input under several values of λ or k, in one call to the sampler.

``edit_grid(world, image, mask, prompt, "lam", [0, 1e3, 1e4])`` gives the same images as three calls of
``edit(..., lam=v, samples=1)`` (up to the float rounding of batched kernels): every value is sample 0 of an
edit of its own, with its own streams (:mod:`bdlib.runtime.randomness`), and the sampler runs them side by side: each λ
weighs its own image's background loss, and each k starts its chain when the shared loop reaches it. This is
what the λ and k panels of the notebooks compute when a control changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from bdlib.core.algorithms import edit_progressive
from bdlib.edit import EditResult, finish_edit, prepare_edit, rank_distances, resolve_edit_settings
from bdlib.runtime.imageio import ImageLike
from bdlib.runtime.randomness import SampleStreams, check_seed
from bdlib.worlds.base import World

GRID_FIELDS = ("lam", "start_index")


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
    callback: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> list[EditResult]:
    """One :class:`~bdlib.edit.EditResult` (one sample) per value of ``field`` ("lam", or "start_index" alias
    "k"), all drawn in one batch. ``settings`` and ``overrides`` are those of :func:`bdlib.edit.edit`."""
    field = "start_index" if field == "k" else field
    if field not in GRID_FIELDS:
        raise ValueError(f"a grid runs over one of {', '.join(GRID_FIELDS)} (or k), got {field!r}")
    if not values:
        raise ValueError("the grid needs at least one value")
    seed = check_seed(seed)
    base = resolve_edit_settings(world, settings, **overrides)
    per_value = [base.with_(**{field: value}) for value in values]  # each value checked as an edit would be
    if field == "lam" and base.algorithm != "local":
        raise ValueError("λ only acts in Algorithm 1: pass algorithm='local' for a λ grid")
    prepared = prepare_edit(world, image, mask, prompt, base, invert_mask, dilate)
    has_prompt = prepared.has_prompt
    text_embed = world.encode_prompt(prompt, base.noise_aware).to(world.device) if has_prompt else None
    streams = SampleStreams.stack([SampleStreams.for_edit(seed, [0], world.device) for _ in values])
    last: dict[str, Any] = {}
    for last in edit_progressive(
        world.unet, world.diffusion(base.respacing), world.guidance_clip(base.noise_aware), prepared.init,
        prepared.mask_world, text_embed, base, streams, lpips=world.lpips,
        start_indices=[s.start_index for s in per_value],
        background_weights=[s.background_weight for s in per_value] if field == "lam" else None,
    ):  # fmt: skip
        if callback is not None:
            callback(last)
    results = last["result"].float().cpu().clamp(-1, 1)  # (V, 3, S, S)
    distances = torch.full((len(values),), float("nan"))
    if has_prompt:
        embed = world.encode_prompt(prompt).to(world.device)
        distances = rank_distances(world, last["result"], prepared.mask_world, embed, base.official).float().cpu()
    return [
        finish_edit(replace(prepared, settings=settings_i), results[i : i + 1], distances[i : i + 1])
        for i, settings_i in enumerate(per_value)
    ]
