"""``bdlib.edit``: the user-facing edit. Image, mask and prompt in; ranked edited images out.

1. Read the image and the mask (files, PIL, arrays or tensors; the mask thresholded at half range,
   optionally inverted and dilated), check them, and resize both to the world's size.
2. Run Algorithm 2 (or 1) for ``samples`` images (:func:`bdlib.core.variants.run`), ``batch_size`` at a time.
   Sample ``i`` draws all its noise from its own stream seeded by ``(seed, i)`` (:mod:`bdlib.runtime.randomness`),
   so the samples do not depend on the batch size.
3. Bring the results back to the input's size and paste the input's background back: outside the mask
   the result *is* the input, pixel for pixel (Algorithm 2). Official mode keeps the model's size and the resized
   input's background, as the official code does.
4. Rank the samples by the CLIP distance of their masked region to the prompt, best first. An empty prompt
   (plain inpainting, no CLIP guidance) has nothing to rank by: its samples stay in the order drawn (official mode
   ranks them by the distance to the embedding of "", as the official code does).

The three steps are also separate functions (:func:`prepare_edit`, :func:`draw_samples`, :func:`finish_edit`)
so that samples can be drawn in pieces, e.g. by several processes, and ranked together.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bdlib.core import official, variants
from bdlib.core.algorithms import EditStep
from bdlib.core.losses import clip_distance, masked_clip_pixels
from bdlib.core.settings import MethodSettings
from bdlib.runtime.devices import deterministic_algorithms
from bdlib.runtime.imageio import ImageLike, load_image, load_mask
from bdlib.runtime.memory import check_edit_memory
from bdlib.runtime.randomness import SampleStreams, check_seed
from bdlib.worlds.base import World


@dataclass
class EditResult:
    """Edited images ranked best first, at the input's size, with what was needed to make them."""

    images: torch.Tensor  # (N, 3, H, W) in [-1, 1], best first
    distances: torch.Tensor  # (N,) masked CLIP distance to the prompt, ascending (NaN: the empty prompt, paper mode)
    order: torch.Tensor  # (N,) index of each ranked image among the samples as drawn
    image: torch.Tensor  # (1, 3, H, W) the input
    mask: torch.Tensor  # (1, 1, H, W) the mask used (after invert/dilate), 1 = edit
    prompt: str
    settings: MethodSettings

    @property
    def best(self) -> torch.Tensor:
        """The best-ranked image (1, 3, H, W)."""
        return self.images[:1]


@dataclass
class PreparedEdit:
    """Checked inputs of one edit: at the input's size (CPU) and at the world's size (on its device)."""

    image: torch.Tensor  # (1, 3, H, W) the input
    mask: torch.Tensor  # (1, 1, H, W) 1 = edit
    init: torch.Tensor  # (1, 3, S, S) on the world's device
    mask_world: torch.Tensor  # (1, 1, S, S) on the world's device
    prompt: str
    settings: MethodSettings

    @property
    def has_prompt(self) -> bool:
        """False for the empty prompt (plain inpainting: no CLIP term, no ranking): :func:`guides`."""
        return guides(self.prompt, self.settings.official)


def guides(prompt: str, official: bool = False) -> bool:
    """Whether ``prompt`` guides an edit with CLIP: not the empty prompt, nor a prompt of spaces, except in official
    mode, which tests ``prompt == ""`` as the official code does."""
    return prompt != "" if official else bool(prompt.strip())


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a binary mask by ``pixels`` >= 0 (a square structuring element)."""
    if isinstance(pixels, bool) or not isinstance(pixels, (int, np.integer)) or pixels < 0:
        raise ValueError(f"dilate must be a whole number of pixels, 0 or more, got {pixels!r}")
    if pixels == 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


def prepare_inputs(
    image: ImageLike, mask: ImageLike, invert_mask: bool = False, dilate: int = 0, official: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check an image and its mask; raise a ValueError that says what is wrong and how to fix it."""
    image_t = load_image(image)
    mask_t = dilate_mask(load_mask(mask, invert=invert_mask, red_above_zero=official), dilate)
    if image_t.shape[-2:] != mask_t.shape[-2:]:
        raise ValueError(
            f"the mask is {mask_t.shape[-1]}x{mask_t.shape[-2]} but the image is {image_t.shape[-1]}x"
            f"{image_t.shape[-2]} (width x height): make them the same size"
        )
    steps = [" inverted (invert_mask, --invert-mask)"] if invert_mask else []
    steps += [f" dilated by {dilate} pixels (dilate, --dilate)"] if dilate else []
    check_mask_coverage(mask_t, where=" once" + " and".join(steps) if steps else "")
    return image_t, mask_t


def check_mask_coverage(mask: torch.Tensor, where: str = "") -> None:
    """Refuse an empty mask (nothing to edit) or a full one (no background to keep)."""
    covered = float(mask.mean())
    if covered == 0:
        raise ValueError(f"the mask is empty{where}, so there is nothing to edit: mark the region to change in white")
    if covered == 1:
        raise ValueError(
            f"the mask covers the whole image{where}, so there is no background to keep: that is text-to-image "
            "generation, not an edit. Leave some of the image unmasked (or invert the mask if it is reversed)"
        )


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``x`` at ``size x size`` (images: antialiased bicubic; masks: nearest)."""
    if x.shape[-2:] == (size, size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


@torch.no_grad()
def rank_distances(
    world: World, images: torch.Tensor, mask: torch.Tensor, text_embed: torch.Tensor, official_view: bool
) -> torch.Tensor:
    """Masked CLIP distance of each final image to the prompt (lower is better), by the plain CLIP: the guidance
    view (mask → mid-grey, CLIP normalisation, no augmentation), or the official one (:mod:`bdlib.core.official`)."""
    if official_view:
        return official.rank_distances(world.clip, images, mask, text_embed)
    pixels = masked_clip_pixels(world.clip, images, mask)
    embeds = world.clip.encode_pixels(pixels).to(images.dtype)
    return clip_distance(embeds, text_embed.to(images.dtype), world.defaults.distance)


def resolve_edit_settings(world: World, settings: MethodSettings | None = None, **overrides: Any) -> MethodSettings:
    """``settings``, or the world's defaults for the algorithm asked (``World.defaults_for``), with single fields
    changed (an unknown name is refused, with the closest known one); overrides that are None are ignored (so
    optional values, e.g. a widget's, can be passed straight through)."""
    if not isinstance(world, World):
        raise ValueError(f"world must be a World (bdlib.load_world('toy') makes one), got {type(world).__name__}")
    if settings is not None and not isinstance(settings, MethodSettings):
        raise ValueError(
            f"settings must be a MethodSettings (bdlib.MethodSettings(...)), got {type(settings).__name__}: or pass "
            "single settings as keywords (k=3, views=4, ...)"
        )
    overrides = {name: value for name, value in overrides.items() if value is not None}
    known = {field.name for field in fields(MethodSettings)}
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown setting {name!r}{hint}: the settings are {', '.join(sorted(known))}")
    base = settings or world.defaults_for(overrides.get("algorithm", world.defaults.algorithm))
    return base.with_(**overrides)


#: Settings that change nothing in some edits: name -> (does it change nothing for (algorithm, whether the prompt
#: guides)?, why, the other setting that would make it count, or None). Shared by :func:`edit` and
#: ``python -m bdlib edit``.
_NO_EFFECT: dict[str, tuple[Callable[[str, bool], bool], str, tuple[str, str] | None]] = {
    "lam": (
        lambda algorithm, guided: algorithm != "local",
        "λ weighs Algorithm 1's background loss, and Algorithm 2 (blended) has none: it keeps the background by "
        "blending",
        ("algorithm", "local"),
    ),
    **{
        name: (lambda algorithm, guided: not guided, f"the empty prompt edits without CLIP guidance, {why}", None)
        for name, why in (
            ("guidance_scale", "so there is nothing to scale"),
            ("views", "so CLIP sees no views"),
            ("noise_aware", "so no CLIP guides"),
        )
    },
}


def settings_without_effect(given: Sequence[str], algorithm: str, guided: bool) -> list[tuple[str, str, tuple | None]]:
    """The settings among ``given`` that change nothing in an edit with ``algorithm`` and a prompt that ``guided``
    (:func:`guides`) or not, each with why and the setting that would make it count (``(name, value)`` or None)."""
    return [
        (name, _NO_EFFECT[name][1], _NO_EFFECT[name][2])
        for name in given
        if name in _NO_EFFECT and _NO_EFFECT[name][0](algorithm, guided)
    ]


def _check_overrides_count(overrides: dict[str, Any], settings: MethodSettings, prompt: object) -> None:
    """Refuse a keyword override that changes nothing in this edit (``lam`` without Algorithm 1, ...)."""
    given = [name for name, value in overrides.items() if value is not None and value is not False]
    guided = guides(prompt, settings.official) if isinstance(prompt, str) else True  # not a string: refused later
    for name, why, other in settings_without_effect(given, settings.algorithm, guided):
        instead = f", or pass {other[0]}={other[1]!r}" if other else ""
        raise ValueError(f"{name}={overrides[name]!r} has no effect in this edit: {why}; drop it{instead}")


def check_k(world: World, settings: MethodSettings, name: str = "k=") -> None:
    """Refuse a start index k outside the world's chain for ``settings.respacing``; ``name`` spells k in the message
    (``"k="`` for Python, ``"--k "`` for the command line)."""
    last = world.diffusion(settings.respacing).num_steps - 1
    if not 0 <= settings.k <= last:
        raise ValueError(
            f"{name}{settings.k} is outside the chain: with respacing {settings.respacing!r} it has {last + 1} steps, "
            f"so give {name.strip('= ')} from 0 (the least noise) to {last} (the most)"
        )


def check_settings(world: World, settings: MethodSettings, name: str = "k=") -> None:
    """Refuse settings the world cannot run: a start index k outside its chain (:func:`check_k`), or a lower
    precision (an autocast of float32 networks) in a float64 world, where it would do nothing."""
    check_k(world, settings, name)
    if settings.precision != "fp32" and world.dtype == torch.float64:
        raise ValueError(
            f"precision={settings.precision!r} is an autocast of float32 networks, but this world's networks are "
            "float64: load it with load_world('toy', dtype=torch.float32) to compare precisions"
        )


def prepare_edit(
    world: World,
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    settings: MethodSettings,
    invert_mask: bool = False,
    dilate: int = 0,
) -> PreparedEdit:
    """Check the prompt and the inputs and bring them to the world's size and device (step 1)."""
    if not isinstance(prompt, str):
        raise ValueError(f'the prompt must be a string ("" for plain inpainting), got {type(prompt).__name__}')
    world.check_prompt(prompt)
    image_t, mask_t = prepare_inputs(image, mask, invert_mask, dilate, official=settings.official)
    size = world.image_size
    if settings.official:
        init, mask_w = official.resize_image(image_t, size), official.resize_mask(mask_t, size)
    else:
        init, mask_w = _resize(image_t, size, "bicubic"), (_resize(mask_t, size, "nearest") > 0.5).float()
    check_mask_coverage(mask_w, where=f" at the world's {size}x{size} resolution (use a larger or smaller region)")
    return PreparedEdit(image_t, mask_t, world.tensor(init), world.tensor(mask_w), prompt, settings)


class DivergedError(ValueError):
    """The chain left float32's range (inf or NaN): the settings push it too hard."""


DIVERGED_MAGNITUDE = 1e30
"""A chain value beyond this has diverged. With x̂_0 clamped, the largest accepted weights (MAX_WEIGHT on every
weight) keep the toy chain below 4e10; without the clamp a runaway chain grows about 1e4-fold a step, so a float32
chain overflows to inf soon after, while a float64 one would reach 1e44 and still look finite."""


def check_finite_step(record: EditStep, settings: MethodSettings) -> None:
    """Stop an edit whose chain produced a non-finite value, naming the step and what to lower. (Reading the check's
    answer waits for the device once per step: a host-device synchronisation, cheap beside a guided step.)"""
    finite = (record.x_prev.abs() <= DIVERGED_MAGNITUDE).flatten(1).all(dim=1)  # (B,); False for NaN and inf too
    if bool(finite.all()):
        return
    bad = (~finite).nonzero().flatten().tolist()
    weights = f"guidance scale {settings.guidance_scale:g}, range scale {settings.range_scale:g}"
    if settings.algorithm == "local":
        weights += f", λ {settings.lam:g}" if settings.lam is not None else ", λ (the default)"
    clamps = settings.clip_denoised and not settings.official
    clamp = "" if clamps else " (x̂_0 is not clamped in this mode, so large weights feed back)"
    raise DivergedError(
        f"the edit diverged: sample(s) {bad} of the batch reached inf/NaN or a magnitude above "
        f"{DIVERGED_MAGNITUDE:g} at t={record.t} with {weights}{clamp}: lower these weights"
    )


def draw_samples(
    world: World,
    prepared: PreparedEdit,
    seed: int,
    indices: Sequence[int],
    callback: Callable[[EditStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``indices`` of the edit in one batch (step 2): ``(results (n, 3, S, S), distances (n,))`` on the CPU,
    at the world's size, in the order of ``indices``. The distances are NaN for the empty prompt (official mode: the
    distances to the embedding of "", as the official code ranks)."""
    settings = prepared.settings
    text_embed = None  # the empty prompt: no CLIP term
    if prepared.has_prompt:
        text_embed = world.encode_prompt(prepared.prompt, settings.noise_aware).to(world.device)
    if settings.official:  # one background noise per official batch of 4 samples
        streams = official.group_streams(seed, indices, world.device)
    else:
        streams = SampleStreams.for_edit(seed, indices, world.device)
    init = prepared.init.expand(len(indices), -1, -1, -1)

    def checked(record: EditStep) -> None:
        check_finite_step(record, settings)
        if callback is not None:
            callback(record)

    with deterministic_algorithms(settings.deterministic):
        result, _ = variants.run(world, settings, init, prepared.mask_world, text_embed, streams, callback=checked)
    if prepared.has_prompt or settings.official:  # the official code ranks by the distance to "" too
        rank_embed = world.encode_prompt(prepared.prompt).to(world.device)
        distances = rank_distances(world, result, prepared.mask_world, rank_embed, settings.official).float().cpu()
    else:
        distances = torch.full((len(indices),), float("nan"))
    return result.float().cpu().clamp(-1, 1), distances


def check_memory(world: World, prepared: PreparedEdit, samples: int, batch_size: int | None = None) -> None:
    """Refuse ``samples`` drawn ``batch_size`` at a time if a batch cannot fit in memory (bdlib.runtime.memory)."""
    step = min(batch_size or samples, samples)
    views = max(1.0, prepared.settings.views / 8)  # measured at 8 views; more views cost more
    per_sample = int(world.sample_bytes_per_pixel * world.image_size**2 * views)
    check_edit_memory(
        per_sample,
        samples,
        step,
        tuple(prepared.image.shape[-2:]),
        world.image_size,
        world.device,
        prepared.settings.views,
    )


def draw_in_batches(
    world: World,
    prepared: PreparedEdit,
    seed: int,
    indices: Sequence[int],
    batch_size: int | None = None,
    callback: Callable[[EditStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`draw_samples` of ``indices``, ``batch_size`` at a time (default: all at once); the pieces concatenated."""
    indices = list(indices)
    size = prepared.init.shape[-1]
    if not indices:
        return torch.empty(0, 3, size, size), torch.empty(0)
    step = batch_size or len(indices)
    batches = [indices[i : i + step] for i in range(0, len(indices), step)]
    pieces = [draw_samples(world, prepared, seed, batch, callback) for batch in batches]
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])


def finish_edit(prepared: PreparedEdit, results: torch.Tensor, distances: torch.Tensor) -> EditResult:
    """Bring samples (drawn in order 0..N-1) back to the input's size, paste its background, rank (steps 3-4).

    Official mode keeps the model's size and the background of the resized input, as the official code writes its
    results (:mod:`bdlib.core.official`)."""
    image_t, mask_t = prepared.image, prepared.mask
    if prepared.settings.official:
        image_t, mask_t = prepared.init.float().cpu(), prepared.mask_world.float().cpu()
    if results.shape[-2:] != image_t.shape[-2:]:  # back to the input's size (and aspect ratio)
        results = F.interpolate(results, size=image_t.shape[-2:], mode="bicubic", antialias=True).clamp(-1, 1)
    settings = prepared.settings
    if settings.algorithm == "blended" and settings.blending != "none":  # exact background at the input's size
        # a selection, not arithmetic (NaN * 0 is NaN): nothing in the results, not even NaN, reaches the background
        results = torch.where(mask_t > 0.5, results, image_t)
    order = torch.argsort(distances, stable=True)  # NaN (no prompt) sorts last: the order drawn
    return EditResult(results[order], distances[order], order, image_t, mask_t, prepared.prompt, prepared.settings)


def edit(
    world: World,
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    *,
    samples: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
    invert_mask: bool = False,
    dilate: int = 0,
    settings: MethodSettings | None = None,
    callback: Callable[[EditStep], None] | None = None,
    **overrides: Any,
) -> EditResult:
    """Edit the masked region of ``image`` to match ``prompt``; return ``samples`` results ranked best first.

    ``settings`` defaults to the world's; keyword ``overrides`` change single fields (``k=`` is an alias
    of ``k``, ``lam=`` is λ, ``algorithm="local"`` runs Algorithm 1). ``batch_size`` (default: all
    samples at once) only trades memory for speed: sample ``i`` is the same whatever the batches. ``callback``
    receives every step's :class:`~bdlib.core.algorithms.EditStep` (``t``, ``x_t``, ``pred_x0``, ``fg``, ``bg``,
    ``blend``, ...), batch after batch. ``prompt=""`` is plain inpainting by the prior (no CLIP guidance).

    Everything is checked before the first step: the arguments, the inputs (NaN, infinities and empty pictures
    are refused), the prompt, and the memory a batch needs (:func:`bdlib.runtime.memory.check_edit_memory`; the error
    names a ``batch_size`` that fits). A chain that reaches inf/NaN stops with a :class:`DivergedError` naming
    the weights to lower.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (or None for all samples at once), got {batch_size!r}")
    seed = check_seed(seed)
    settings = resolve_edit_settings(world, settings, **overrides)
    _check_overrides_count(overrides, settings, prompt)
    if settings.noise_aware:
        world.guidance_clip(noise_aware=True)  # refuses a world without a noise-aware CLIP
    check_settings(world, settings)
    prepared = prepare_edit(world, image, mask, prompt, settings, invert_mask, dilate)
    check_memory(world, prepared, samples, batch_size)
    return finish_edit(prepared, *draw_in_batches(world, prepared, seed, range(samples), batch_size, callback))
