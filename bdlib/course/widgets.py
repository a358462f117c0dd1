"""Interactive panels for the notebooks, built on *pure* render functions that tests call directly.

Two sweeps teach the two knobs of the paper:

- :func:`render_lambda` / :func:`lambda_panel`: Algorithm 1 (local CLIP guidance) at background weight λ in
  ``L = D_CLIP(x̂_0 ⊙ m, text) + λ·D_bg(x, x̂_0, m)``; the figure's title prints the background change.
- :func:`render_k` / :func:`k_panel`: Algorithm 2 (blended diffusion) started at respaced index k, i.e. from
  ``x_k = √ᾱ_k x + √(1-ᾱ_k) ε``; the title prints how far the region moved from the input.

A render function returns a matplotlib ``Figure`` and nothing else happens: its edit comes from the cache of
:mod:`bdlib.course.edit_cache` (:func:`cached_edit`, re-exported here with :func:`cached_edit_grid`, which fills a whole
grid of λ or k in one call to the sampler), so revisiting a value never reruns the sampler.

A panel (:class:`~bdlib.course.sweep_panel.SweepPanel`) is an ``ipywidgets.VBox`` with a slider over a fixed grid of
values, controls for guidance scale, views, seed and prompt, a status line and one picture per grid value. The
pictures travel with the notebook's widget state and the slider swaps them in the browser, so a panel works in
a built site or with the kernel stopped; with a kernel, a new setting is computed (and says so while it is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import torch

from bdlib.bench.evaluation import background_error, region_change  # noqa: F401 (the lessons import them from here)
from bdlib.bench.rows import k_values, lam_values
from bdlib.core.settings import MethodSettings
from bdlib.course.edit_cache import (  # noqa: F401 (the notebooks import the cache from here)
    DEFAULT_CACHE,
    CachedEdit,
    EditInput,
    ResultCache,
    as_input,
    cached_edit,
    cached_edit_grid,
    chain_start,
)
from bdlib.course.sweep_panel import Frame, SweepPanel, figure_png, png_size, text_width  # noqa: F401
from bdlib.course.viz import show_grid
from bdlib.edit import resolve_edit_settings
from bdlib.worlds.base import World

DIFF_GAIN = 4.0  # |result - input| is drawn ×4 so that small background drift is visible
PANEL_INCHES = 1.4  # each of a figure's four images: 140 px for a 32 px toy image (nearest-neighbour)


def oracle_scores(
    world: World, images: torch.Tensor, mask: torch.Tensor, prompt: str
) -> dict[str, torch.Tensor] | None:
    """The oracle's verdict on the masked region of each image (``match``, ``score``, ``clean`` ...), or None
    when the world has no oracle. ``prompt`` is one prompt for all images or one per image; the empty prompt asks for
    "nothing" (a removal)."""
    if world.oracle is None:
        return None
    masks = mask.expand(images.shape[0], 1, *mask.shape[-2:]).to(images)
    targets = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * images.shape[0]
    return world.oracle.judge_text_match(images.float(), masks, [target or None for target in targets])


def figure_title(fig) -> str:
    """The text of a figure's title (``suptitle``), or "" (``Figure.get_suptitle`` needs matplotlib 3.8)."""
    title = getattr(fig, "_suptitle", None)
    return title.get_text() if title is not None else ""


def diff_picture(result: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``DIFF_GAIN · mean_c |result - input|`` as a (1, H, W) picture in [0, 1]."""
    return ((result - image).abs().mean(dim=0, keepdim=True) * DIFF_GAIN / 2).clamp(0, 1)


def render_lambda(
    world: World,
    task: Any,
    lam: float,
    *,
    prompt: str | None = None,
    seed: int = 0,
    guidance_scale: float | None = None,
    views: int | None = None,
    settings: MethodSettings | None = None,
    cache: ResultCache | None = None,
    panel_inches: float = PANEL_INCHES,
    **overrides: Any,
):
    """Algorithm 1 at background weight ``lam``: input, mask, result and ``4·|result - input|``.

    The title prints λ, the background change (mean |Δ| outside the mask; never 0 for Algorithm 1) and the
    masked CLIP distance to the prompt.
    """
    inp = as_input(task, prompt)
    done = cached_edit(
        world,
        inp,
        seed=seed,
        settings=settings,
        cache=cache,
        algorithm="local",
        lam=float(lam),
        guidance_scale=guidance_scale,
        views=views,
        **overrides,
    )
    result = done.result
    error = float(background_error(result.best, inp.image, inp.mask)[0])
    fig = show_grid(
        [[inp.image[0], inp.mask[0], result.best[0], diff_picture(result.best[0], inp.image[0])]],
        titles=[["input", "mask", "result", f"|Δ|×{DIFF_GAIN:g}"]],
        panel_inches=panel_inches,
        suptitle=f"Algorithm 1, λ = {lam:g}: background change {error:.4f}\n"
        f"CLIP distance {float(result.distances[0]):.3f} to {inp.prompt!r}",
    )
    fig.bdlib_values = {"lam": float(lam), "background_error": error, "clip_distance": float(result.distances[0])}
    return fig


def render_k(
    world: World,
    task: Any,
    k: int,
    *,
    prompt: str | None = None,
    seed: int = 0,
    guidance_scale: float | None = None,
    views: int | None = None,
    settings: MethodSettings | None = None,
    cache: ResultCache | None = None,
    panel_inches: float = PANEL_INCHES,
    **overrides: Any,
):
    """Algorithm 2 started at respaced index ``k``: input, x_k, result and ``4·|result - input|``.

    The title prints k (and the original timestep), the change inside the mask (closeness to the input), the
    largest change outside it (0: the background is exact) and the masked CLIP distance.
    """
    inp = as_input(task, prompt)
    done = cached_edit(
        world,
        inp,
        seed=seed,
        settings=settings,
        cache=cache,
        algorithm="blended",
        k=int(k),
        guidance_scale=guidance_scale,
        views=views,
        **overrides,
    )
    result = done.result
    inside = float(region_change(result.best, inp.image, inp.mask)[0])
    outside = float(((result.best - inp.image).abs() * (1 - inp.mask)).max())
    start = done.start[result.order[0]]
    fig = show_grid(
        [[inp.image[0], start, result.best[0], diff_picture(result.best[0], inp.image[0])]],
        titles=[["input", f"x_k (t={done.timestep})", "result", f"|Δ|×{DIFF_GAIN:g}"]],
        panel_inches=panel_inches,
        suptitle=f"Algorithm 2, k = {k}: change inside the mask {inside:.3f}, outside {outside:g}\n"
        f"CLIP distance {float(result.distances[0]):.3f} to {inp.prompt!r}",
    )
    fig.bdlib_values = {
        "k": int(k),
        "region_change": inside,
        "background_max": outside,
        "clip_distance": float(result.distances[0]),
    }
    return fig


# ----------------------------------------------------------------------------------------------- panels


def _controls(base: MethodSettings, seed: int, prompt: str) -> dict[str, Any]:
    """Dropdowns for guidance scale, augmentations and seed (starting at ``base``), a text box for the prompt."""
    w = ipywidgets
    scale, augs = float(base.guidance_scale), int(base.views)
    layout = w.Layout(width="170px")
    return {
        "guidance_scale": w.Dropdown(
            options=sorted({100.0, 300.0, 1000.0, 3000.0, 10000.0, scale}),
            value=scale,
            description="scale",
            layout=layout,
        ),
        "views": w.Dropdown(options=sorted({1, 4, 8, augs}), value=augs, description="views", layout=layout),
        "seed": w.Dropdown(options=sorted({0, 1, 2, 3, seed}), value=seed, description="seed", layout=layout),
        "prompt": w.Text(
            value=prompt, description="prompt", continuous_update=False, layout=w.Layout(width=text_width(prompt))
        ),
    }


def _sweep_panel(
    world: World,
    task: Any,
    field: str,
    render: Callable[..., Any],
    values: Sequence[Any],
    start: Any,
    base: MethodSettings,
    seed: int,
    precompute: bool,
    cache: ResultCache | None,
) -> SweepPanel:
    """A :class:`SweepPanel` over ``render(world, task, value, ...)``; missing grids from :func:`cached_edit_grid`."""

    def draw(value: Any, options: dict[str, Any]) -> Frame:
        fig = render(world, task, value, settings=base, cache=cache, panel_inches=PANEL_INCHES, **options)
        return Frame(figure_png(fig), figure_title(fig), dict(fig.bdlib_values))

    def draw_many(grid: Sequence[Any], options: dict[str, Any]) -> list[Frame]:
        cached_edit_grid(world, task, field, grid, settings=base, cache=cache, **options)
        return [draw(value, options) for value in grid]

    controls = _controls(base, seed, as_input(task).prompt)
    label = "λ" if field == "lam" else field
    return SweepPanel(values, start, label, controls, draw, draw_many, precompute=precompute)


def lambda_panel(
    world: World,
    task: Any,
    values: Sequence[float] | None = None,
    *,
    value: float | None = None,
    seed: int = 0,
    settings: MethodSettings | None = None,
    precompute: bool = True,
    cache: ResultCache | None = None,
    **overrides: Any,
) -> SweepPanel:
    """A λ slider over :func:`render_lambda` (Algorithm 1), by default over lesson 04's λ values
    (:func:`bdlib.bench.rows.lam_values`, fast: 0, then 10 to 10⁵), starting at the world's λ, with controls
    for guidance scale, views, seed and prompt. The grid is computed up front in one batch (``precompute``;
    values already in the cache are reused), so moving the slider only swaps pictures, with or without a
    kernel; ``overrides`` change single settings (``respacing="25"``, ``guidance_scale=3000``...)."""
    base = resolve_edit_settings(world, settings, algorithm="local", **overrides)
    values = [float(v) for v in (lam_values(fast=True) if values is None else values)]
    if value is None:
        value = base.lam if base.lam in values else values[len(values) // 2]
    start = float(value)
    return _sweep_panel(world, task, "lam", render_lambda, values, start, base, seed, precompute, cache)


def k_panel(
    world: World,
    task: Any,
    values: Sequence[int] | None = None,
    *,
    value: int | None = None,
    seed: int = 0,
    settings: MethodSettings | None = None,
    precompute: bool = True,
    cache: ResultCache | None = None,
    **overrides: Any,
) -> SweepPanel:
    """A k slider over :func:`render_k` (Algorithm 2), by default over the six values of lesson 05's transition
    (:func:`bdlib.bench.rows.k_values`, fast), with the same controls as :func:`lambda_panel`; the default
    value is the nearest to the settings' k."""
    base = resolve_edit_settings(world, settings, algorithm="blended", **overrides)
    if values is None:
        values = k_values(world, fast=True, respacing=base.respacing)
    values = [int(v) for v in values]
    start = int(value) if value is not None else min(values, key=lambda v: abs(v - base.k))
    return _sweep_panel(world, task, "k", render_k, values, start, base, seed, precompute, cache)
