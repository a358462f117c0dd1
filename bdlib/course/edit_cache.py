"""Finished edits behind a cache, so that a notebook or a panel never runs the sampler twice for one setting.

:func:`cached_edit` is :func:`bdlib.edit.edit` behind a :class:`ResultCache` keyed by everything that changes the
result (world, input, prompt, seed, samples and the full :class:`~bdlib.core.settings.MethodSettings`).
:func:`cached_edit_grid` fills the cache for a whole grid of λ or k with one call to the sampler
(:func:`edit_grid`), and
:func:`chain_start` recomputes the start ``x_k`` of such an edit (the batch returns results only).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bdlib.core.algorithms import EditStep
from bdlib.core.sampling import resolve_k
from bdlib.core.settings import MethodSettings
from bdlib.edit import EditResult, edit, prepare_edit, resolve_edit_settings
from bdlib.grid import edit_grid
from bdlib.runtime.randomness import SampleStreams
from bdlib.worlds.base import World


@dataclass(frozen=True)
class EditInput:
    """An image (1, 3, H, W) in [-1, 1], its mask (1, 1, H, W) (1 = edit) and a prompt, with a content key."""

    image: torch.Tensor
    mask: torch.Tensor
    prompt: str
    key: str


def as_input(task: Any, prompt: str | None = None) -> EditInput:
    """An :class:`EditInput` from a toy ``EditTask`` (``.image``, ``.mask``, ``.prompt``), a ``(image, mask,
    prompt)`` tuple, or an ``EditInput``; ``prompt`` replaces the task's prompt."""
    if isinstance(task, EditInput):
        image, mask, text = task.image, task.mask, task.prompt
    elif isinstance(task, tuple) and len(task) == 3:
        image, mask, text = task
    else:
        image, mask, text = task.image, task.mask, task.prompt
    image = image[None] if image.ndim == 3 else image  # (1, 3, H, W)
    mask = mask.reshape(1, 1, *mask.shape[-2:]).float()  # (1, 1, H, W)
    text = text if prompt is None else prompt
    digest = hashlib.sha1(image.detach().float().cpu().numpy().tobytes())
    digest.update(mask.detach().cpu().numpy().tobytes())
    return EditInput(image.detach().float().cpu(), mask.detach().cpu(), text, digest.hexdigest()[:16])


@dataclass
class CachedEdit:
    """A finished edit: the ranked result, the chain's start x_k (in the order drawn, at the world's size) and its
    run time."""

    result: EditResult
    start: torch.Tensor  # (samples, 3, S, S) x_k
    timestep: int  # original (unrespaced) timestep of the start index
    seconds: float


class ResultCache:
    """A bounded dict of finished edits; ``hits`` and ``misses`` count lookups (a miss runs the sampler)."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._store: OrderedDict[tuple, CachedEdit] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: tuple) -> bool:
        return key in self._store

    def put(self, key: tuple, value: CachedEdit) -> None:
        """Store a finished edit (e.g. one value of a batched grid) under ``key``."""
        self._store[key] = value
        self._store.move_to_end(key)
        while len(self._store) > self.maxsize:
            self._store.popitem(last=False)

    def get_or_run(self, key: tuple, run: Callable[[], CachedEdit]) -> CachedEdit:
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        value = run()
        self.put(key, value)
        return value

    def clear(self) -> None:
        self._store.clear()
        self.hits = self.misses = 0


DEFAULT_CACHE = ResultCache()


def edit_key(world: World, inp: EditInput, seed: int, samples: int, settings: MethodSettings) -> tuple:
    """The cache key of an edit: everything that changes its result."""
    return (world, inp.key, inp.prompt, seed, samples, settings)


def cached_edit(
    world: World,
    task: Any,
    *,
    prompt: str | None = None,
    seed: int = 0,
    samples: int = 1,
    settings: MethodSettings | None = None,
    cache: ResultCache | None = None,
    **overrides: Any,
) -> CachedEdit:
    """:func:`bdlib.edit.edit` of ``task`` behind a cache: the same arguments never run the sampler twice."""
    cache = DEFAULT_CACHE if cache is None else cache
    inp = as_input(task, prompt)
    full = resolve_edit_settings(world, settings, **overrides)
    key = edit_key(world, inp, seed, samples, full)

    def run() -> CachedEdit:
        first: list[EditStep] = []

        def keep_start(record: EditStep) -> None:
            if not first:
                first.append(record)

        start = time.perf_counter()
        result = edit(
            world, inp.image, inp.mask, inp.prompt, samples=samples, seed=seed, settings=full, callback=keep_start
        )
        x_k = first[0].x_t.detach().float().cpu()
        return CachedEdit(result, x_k, first[0].timestep, time.perf_counter() - start)

    return cache.get_or_run(key, run)


def chain_start(world: World, inp: EditInput, seed: int, settings: MethodSettings) -> tuple[torch.Tensor, int]:
    """Sample 0's start ``x_k = √ᾱ_k x + √(1-ᾱ_k) ε`` of an edit, (1, 3, S, S) on the CPU, and the original
    timestep of k: the first draw of stream ``(seed, 0)`` (:mod:`bdlib.runtime.randomness`), as the sampler makes it."""
    prepared = prepare_edit(world, inp.image, inp.mask, inp.prompt, settings)
    diffusion = world.diffusion(settings.respacing)
    k = resolve_k(diffusion, settings.k, has_init=True)
    noise = SampleStreams.for_edit(seed, [0], world.device).randn(prepared.init.shape[1:])  # (1, 3, S, S)
    start = torch.full((1,), k, dtype=torch.long, device=world.device)
    return diffusion.q_sample(prepared.init, start, noise).detach().float().cpu(), int(diffusion.timestep_map[k])


def cached_edit_grid(
    world: World,
    task: Any,
    field: str,
    values: Sequence[Any],
    *,
    prompt: str | None = None,
    seed: int = 0,
    settings: MethodSettings | None = None,
    cache: ResultCache | None = None,
    **overrides: Any,
) -> list[CachedEdit]:
    """One-sample edits of ``task`` for every value of ``field`` ("lam" or "k"), the missing ones in one batch
    (one call to the sampler), through the cache: ``result[i]`` is ``cached_edit(..., **{field: values[i]})``."""
    cache = DEFAULT_CACHE if cache is None else cache
    inp = as_input(task, prompt)
    full = {v: resolve_edit_settings(world, settings, **overrides, **{field: v}) for v in values}
    keys = {v: edit_key(world, inp, seed, 1, full[v]) for v in values}
    missing = [v for v in values if keys[v] not in cache]
    if missing:
        start = time.perf_counter()
        base = resolve_edit_settings(world, settings, **overrides)
        results = edit_grid(world, inp.image, inp.mask, inp.prompt, field, missing, seed=seed, settings=base)
        seconds = (time.perf_counter() - start) / len(missing)
        cache.misses += len(missing)
        for value, result in zip(missing, results, strict=True):
            x_k, timestep = chain_start(world, inp, seed, full[value])
            cache.put(keys[value], CachedEdit(result, x_k, timestep, seconds))
    return [cached_edit(world, inp, seed=seed, settings=full[v], cache=cache) for v in values]
