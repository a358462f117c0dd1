"""What the course varies, composed around the paper's algorithms, and the one place that reads the settings.

Each variant is a piece passed into :mod:`bdlib.core.algorithms` (as guided-diffusion passes ``cond_fn``), never a
branch inside it:

- which gradient guides (``guide``): through the network (:func:`~bdlib.core.algorithms.guidance`, the default),
  with respect to x̂_0 as Algorithms 1-2 are written (:func:`guidance_at_pred_x0`), with respect to x_t without the
  network for a noise-aware CLIP (:func:`guidance_without_unet`), or none for an empty prompt (``unguided``);
- the loss: the paper's, or a noise-aware CLIP's (:func:`noise_aware_loss`);
- the step (``update``): DDPM, or DDIM (:func:`ddim_update`);
- the blend: at every step (the paper), or not at all, with the input's background pasted once at the end or never
  (the ablations of lesson 05: :func:`keep_foreground`);
- precision: the networks in an autocast (:mod:`bdlib.runtime.precision`).

:func:`run` reads :class:`~bdlib.core.settings.MethodSettings` and assembles the edit; ``official=True`` hands it to
:mod:`bdlib.core.official`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from bdlib.core import official
from bdlib.core.algorithms import (
    EditStep,
    Losses,
    background_loss,
    blended_diffusion,
    blended_loss,
    blended_step,
    ddpm_update,
    guidance,
    local_diffusion,
    local_loss,
    local_step,
    unguided,
)
from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.diffusion import Diffusion
from bdlib.core.losses import clip_distance, tile_text
from bdlib.core.sampling import denoiser
from bdlib.core.settings import PAPER_LAM, PAPER_LPIPS_WEIGHT, MethodSettings
from bdlib.nets.lpips_adapter import background_lpips
from bdlib.runtime.precision import at_least_float32, guidance_networks
from bdlib.runtime.randomness import SampleStreams


def guidance_at_pred_x0(denoise, x_t: torch.Tensor, t: torch.Tensor, loss):
    """``g = -∇_{x̂_0} L``, as Algorithms 1 and 2 write it: the loss's gradient at x̂_0, with no backward pass through
    the network (the mean moves by ``Σ·g`` all the same)."""
    with torch.no_grad():
        out = denoise(x_t, t)
    with torch.enable_grad():
        pred_x0 = out.pred_x0.detach().requires_grad_()
        losses = loss(x_t, pred_x0, t)
        (grad,) = torch.autograd.grad(losses.total.sum(), pred_x0)
    return out, -grad, losses.detached()


def guidance_without_unet(denoise, x_t: torch.Tensor, t: torch.Tensor, loss):
    """``g = -∇_{x_t} L`` of a loss that reads x_t itself (a noise-aware CLIP): no backward pass through the network."""
    with torch.no_grad():
        out = denoise(x_t, t)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_()
        losses = loss(x, out.pred_x0, t)
        (grad,) = torch.autograd.grad(losses.total.sum(), x)
    return out, -grad, losses.detached()


def noise_aware_loss(
    clip,
    text: torch.Tensor,
    m: torch.Tensor,
    diffusion: Diffusion,
    views=None,
    *,
    s: float,
    distance: str = "spherical",
):
    """``s·D_CLIP`` of a noise-aware CLIP (GLIDE's idea) that reads ``(x_t ⊙ m, t)`` instead of x̂_0."""

    def loss(x_t: torch.Tensor, pred_x0: torch.Tensor, t: torch.Tensor) -> Losses:
        batch = x_t.shape[0]
        pooled = F.adaptive_avg_pool2d(x_t * m, clip.input_resolution)  # (B, 3, R, R)
        copies = pooled if views is None else views(pooled)  # (N·B, 3, R, R)
        n = copies.shape[0] // batch
        timesteps = diffusion.model_timesteps(t, x_t.dtype).repeat(n)
        embeds = clip.encode_pixels(clip.normalize(copies.add(1).div(2)), timesteps).to(at_least_float32(x_t.dtype))
        dists = clip_distance(embeds, tile_text(text, n), distance).view(-1, batch).mean(dim=0)  # (B,)
        return Losses({"clip": s * dists}, dists)

    return loss


def ddim_update(eta: float):
    """A DDIM step (η = 0: deterministic) with guidance as a score correction ``ε' = ε̂ - √(1-ᾱ_t)·g``."""

    def update(diffusion: Diffusion, out, x_t, t, noise, grad):
        return diffusion.ddim_step(out, x_t, t, noise, eta=eta, grad=grad)

    return update


def keep_foreground(fg: torch.Tensor, bg: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """No blend: the guided step goes on as it is (the ablations "end" and "none" of Algorithm 2)."""
    return fg


@dataclass(frozen=True)
class Parts:
    """What the loops of an edit are made of: the network, the chain, the loss and the step's options."""

    denoise: Callable
    diffusion: Diffusion
    loss: Callable | None  # None: nothing guides (the empty prompt of Algorithm 2)
    options: dict  # guide, update (and blend) of the step functions


def denoiser_for(world, settings: MethodSettings):
    """The world's UNet and diffusion as ``settings`` asks: respacing, clamping of x̂_0, precision."""
    diffusion = world.diffusion(settings.respacing)
    clamps = settings.clip_denoised and not settings.official  # the official code never clamps x̂_0
    return denoiser(world.unet, diffusion, clamps, settings.precision), diffusion


def loss_for(world, settings: MethodSettings, x, m, text, views, lam: torch.Tensor | None = None):
    """The loss of Algorithm 1 or 2 as ``settings`` asks (None: nothing guides, the empty prompt of Algorithm 2).
    ``views``: the extending augmentations (None: the clean view alone); ``lam`` (B,): one λ per sample."""
    clip, lpips = guidance_networks(
        world.guidance_clip(settings.noise_aware), world.lpips, x.device, settings.precision
    )
    if settings.official:
        return _official_loss(world, settings, clip, lpips, x, m, text, views, lam)
    if text is not None and settings.noise_aware:
        diffusion = world.diffusion(settings.respacing)
        return noise_aware_loss(clip, text, m, diffusion, views, s=settings.guidance_scale, distance=settings.distance)
    clip_loss = None
    if text is not None:
        clip_loss = blended_loss(
            clip, text, m, views, s=settings.guidance_scale, r=settings.range_scale, distance=settings.distance
        )
    if settings.algorithm != "local":
        return clip_loss
    weight = settings.lpips_weight if settings.lpips_weight is not None else PAPER_LPIPS_WEIGHT
    lpips_term = partial(background_lpips, lpips) if lpips is not None and weight else None
    bg = background_loss(x, m, _lam(settings, lam), lpips_term, weight)
    return bg if clip_loss is None else local_loss(clip_loss, bg)


def _official_loss(world, settings, clip, lpips, x, m, text, views, lam):
    """The official loss: the x_in mix, and Algorithm 1's background terms with the official weights."""
    mse_weights = lpips_weights = None
    if settings.algorithm == "local" and (settings.lam is not None or lam is not None):  # the preservation flag
        weight = settings.lpips_weight if settings.lpips_weight is not None else official.OFFICIAL_LPIPS_WEIGHT
        if lam is None:  # λ on the mean over the batch: λ/B per image
            lam = torch.full((x.shape[0],), float(settings.lam), device=x.device)
            mse_weights = lam / x.shape[0]
        else:  # a grid: every image an edit of its own
            mse_weights = lam
        lpips_weights = lam * weight
    diffusion = world.diffusion(settings.respacing)
    return official.official_loss(
        clip,
        text,
        x,
        m,
        diffusion,
        views,
        s=settings.guidance_scale,
        r=settings.range_scale,
        mse_weights=mse_weights,
        lpips_weights=lpips_weights,
        lpips=lpips,
    )


def _lam(settings: MethodSettings, lam: torch.Tensor | None):
    """λ of the paper's Algorithm 1: one per sample when given, else ``settings.lam``, else 2500 per image."""
    if lam is not None:
        return lam
    return settings.lam if settings.lam is not None else PAPER_LAM


def step_options(settings: MethodSettings, text) -> dict:
    """``guide``, ``update`` and ``blend`` of the steps as ``settings`` asks (``text`` None: the empty prompt)."""
    if text is None and (settings.algorithm == "blended" or settings.official):
        guide = unguided
    elif settings.official:
        guide = official.two_pass_guidance
    elif settings.noise_aware:
        guide = guidance_without_unet
    else:
        guide = {"x_t": guidance, "pred_x0": guidance_at_pred_x0}[settings.gradient]
    options = {"guide": guide, "update": ddim_update(settings.eta) if settings.ddim else ddpm_update}
    if settings.algorithm == "blended" and settings.blending != "each step":
        options["blend"] = keep_foreground
    return options


def views_for(settings: MethodSettings, streams: SampleStreams):
    """The extending augmentations of each step, drawn from the samples' streams (None: the clean copy alone)."""
    if settings.views == 1:
        return None
    views = official.OfficialViews if settings.official else ExtendingAugmentations
    return partial(views(settings.views), randomness=streams)


def parts(world, settings: MethodSettings, x, m, text, views, lam: torch.Tensor | None = None) -> Parts:
    """The pieces of an edit of ``x`` (B, 3, S, S) as ``settings`` asks."""
    denoise, diffusion = denoiser_for(world, settings)
    return Parts(denoise, diffusion, loss_for(world, settings, x, m, text, views, lam), step_options(settings, text))


def step(world, settings: MethodSettings, x_t, t: int, *, x, m, text, noise, bg_noise=None, views=None) -> EditStep:
    """One step of the edit ``settings`` describe, at index ``t`` (what a lesson or a test computes by hand). The
    tensors are brought to the world's device and dtype."""
    x_t, x, m, noise = (world.tensor(v) for v in (x_t, x, m, noise))
    text = None if text is None else world.tensor(text)
    bg_noise = None if bg_noise is None else world.tensor(bg_noise)
    p = parts(world, settings, x, m, text, views)
    if settings.algorithm == "local":
        options = {k: v for k, v in p.options.items() if k != "blend"}
        return local_step(p.denoise, p.diffusion, x_t, t, loss=p.loss, noise=noise, **options)
    blended = official.blended_step if settings.official else blended_step
    return blended(p.denoise, p.diffusion, x_t, t, x=x, m=m, loss=p.loss, noise=noise, bg_noise=bg_noise, **p.options)


def run(
    world,
    settings: MethodSettings,
    x: torch.Tensor,
    m: torch.Tensor,
    text: torch.Tensor | None,
    streams: SampleStreams,
    *,
    lam: torch.Tensor | None = None,
    callback=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 or 2 on ``x`` (B, 3, S, S) as ``settings`` asks: ``(result, the chain's own x_0 before the final
    paste)``. ``text`` (1 or B, D) is None for the empty prompt; ``lam`` (B,) gives each sample its own λ."""
    p = parts(world, settings, x, m, text, views_for(settings, streams), lam)
    k = settings.k
    if settings.official:
        return official.edit(
            p.denoise,
            p.diffusion,
            x,
            m,
            k,
            p.loss,
            streams,
            algorithm=settings.algorithm,
            callback=callback,
            **p.options,
        )
    last: list[EditStep] = []

    def record(step: EditStep) -> None:
        last[:] = [step]
        if callback is not None:
            callback(step)

    if settings.algorithm == "local":
        result = local_diffusion(p.denoise, p.diffusion, x, k, p.loss, streams, callback=record, **p.options)
        return result, result
    result = blended_diffusion(p.denoise, p.diffusion, x, m, k, p.loss, streams, callback=record, **p.options)
    unpasted = last[0].x_prev
    return (unpasted if settings.blending == "none" else result), unpasted
