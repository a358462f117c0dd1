"""Algorithms 1 and 2 of Blended Diffusion as one progressive sampler with switches.

One guided step at respaced index ``t`` (paper, Algorithms 1-2; official ``cond_fn``/``postprocess_fn``)::

    ε̂, v = UNet(x_t, t)                      → μ, Σ, x̂_0                (Diffusion.p_mean_variance)
    L = g·D_CLIP(aug(x̂_0 ⊙ m), text) + r·range(x̂_0) [+ λ·D_bg(x̂_0, x, m)   Algorithm 1 only]
    x_{t-1,fg} ~ N(μ - Σ·∇_{x_t} L, Σ)                                  (a DDPM step; DDIM: score correction)
    Algorithm 2:  x_{t-1} = x_{t-1,fg} ⊙ m + q(x_{t-1} | x) ⊙ (1 - m)   (blend with the noised input)

and at the end of Algorithm 2 the original background is pasted back, so it is preserved exactly.

An empty prompt (``text_embed=None``) has no CLIP term and no range loss: the region is filled by the prior
alone, as in the official code, whose ``cond_fn`` returns a zero gradient then (and, in official mode, also
drops Algorithm 1's background loss). ``settings.gradient="pred_x0"`` takes ∇L with respect to x̂_0 instead
of x_t, as the paper's algorithms are written: no backward pass through the UNet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch

from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.diffusion import Diffusion, MeanVariance
from bdlib.core.losses import (
    ClipLike,
    background_mse,
    clip_distance,
    clip_guidance_loss,
    official_background_mse,
    range_loss,
    tile_text,
)
from bdlib.core.sampling import resolve_start_index
from bdlib.core.settings import MethodSettings
from bdlib.nets.lpips_adapter import background_lpips
from bdlib.runtime.precision import guidance_networks, network_autocast
from bdlib.runtime.randomness import SampleStreams


def _detached(mv: MeanVariance) -> MeanVariance:
    return MeanVariance(*(value.detach() for value in (mv.mean, mv.variance, mv.log_variance, mv.pred_x0, mv.eps)))


def guided_step(
    unet: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    clip: ClipLike,
    x_t: torch.Tensor,
    index: int,
    *,
    init: torch.Tensor,
    mask: torch.Tensor,
    text_embed: torch.Tensor | None,
    settings: MethodSettings,
    noise: torch.Tensor,
    bg_noise: torch.Tensor | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    lpips: Callable[..., torch.Tensor] | None = None,
    background_weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One guided reverse step at respaced index ``index`` for a batch that shares it.

    Returns the intermediates (``pred_x0``, ``clip_input``, ``clip_dists``, the loss terms, ``grad`` =
    ``-∇ L``, ``mean``, ``sample`` = x_{t-1,fg}) and, for Algorithm 2, ``background`` and ``blended``.
    ``text_embed=None`` is the empty prompt: no CLIP term (``clip_dists`` are NaN). ``background_weights``
    (B,) gives each image its own λ, as if it were alone in its edit (a grid of λ values in one batch).
    """
    batch = x_t.shape[0]
    t = torch.full((batch,), index, dtype=torch.long, device=x_t.device)
    timesteps = diffusion.model_timesteps(t)
    device, precision = x_t.device, settings.precision
    clip, lpips = guidance_networks(clip, lpips, device, precision)  # only the networks in low precision
    has_prompt = text_embed is not None
    guided = has_prompt or (settings.algorithm == "local" and not settings.official)

    def model_output(x_in: torch.Tensor) -> MeanVariance:
        with network_autocast(device, precision, "unet"):
            out = unet(x_in, timesteps).float()  # the head is float32 already; a custom UNet may not be
        return diffusion.p_mean_variance(out, x_in, t, settings.clamps_pred_x0)

    terms: dict[str, torch.Tensor] = {}
    dists = torch.full((batch,), float("nan"), device=device)
    through_unet = guided and settings.gradient == "x_t" and not settings.noise_aware
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(through_unet or settings.noise_aware)
        if through_unet:
            mv = model_output(x)
            pred_x0 = mv.pred_x0
        else:
            with torch.no_grad():
                mv = model_output(x_t)
            pred_x0 = mv.pred_x0.detach().requires_grad_(guided and not settings.noise_aware)
        leaf = x if (through_unet or settings.noise_aware) else pred_x0
        clip_input = pred_x0
        if settings.noise_aware and has_prompt:
            clip_input = x
            clip_sum, dists = _noise_aware_clip_loss(clip, x, timesteps, mask, text_embed, augment, settings)
            terms["clip_loss"] = settings.guidance_scale * clip_sum
        elif guided:
            if settings.clip_sees_mix:  # official: x_in = x̂_0·s + x_t·(1-s), s = √(1-ᾱ_t) (respaced)
                fac = float(diffusion.sqrt_one_minus_alphas_cumprod[index])
                clip_input = pred_x0 * fac + x * (1 - fac)
            if has_prompt:
                clip_sum, dists = clip_guidance_loss(clip, clip_input, mask, text_embed, augment, settings.distance)
                terms["clip_loss"] = settings.guidance_scale * clip_sum
                if settings.range_scale:
                    terms["range_loss"] = settings.range_scale * range_loss(pred_x0).sum()
            if settings.algorithm == "local":
                terms.update(_background_terms(clip_input, init, mask, settings, lpips, background_weights))
        if terms:
            loss = sum(terms.values())
            (grad,) = torch.autograd.grad(loss, leaf)
            grad = -grad
        else:  # the empty prompt: nothing guides
            loss = torch.zeros((), device=device)
            grad = torch.zeros_like(x_t)
    if settings.two_pass and through_unet:  # the official code's separate no-grad pass
        with torch.no_grad():
            mv = model_output(x_t)
    mv = _detached(mv)
    with torch.no_grad():
        if settings.ddim:
            sample, pred_x0 = diffusion.ddim_step(mv, x_t, t, noise, eta=settings.eta, grad=grad)
        else:
            sample, pred_x0 = diffusion.ddpm_step(mv, t, noise, grad=grad), mv.pred_x0
    out: dict[str, Any] = {
        "t": index,
        "pred_x0": pred_x0,
        "clip_input": clip_input.detach(),
        "clip_dists": dists.detach(),
        "loss": loss.detach(),  # tensors, not floats: no host-device sync inside the sampling loop
        **{name: value.detach() for name, value in terms.items()},
        "grad": grad,
        "mean": mv.mean,
        "variance": mv.variance,
        "guided_mean": Diffusion.guided_mean(mv, grad),
        "sample": sample,
    }
    if settings.algorithm == "blended":
        out["background"] = _noised_background(diffusion, init, index, bg_noise, settings)
        out["blended"] = sample * mask + out["background"] * (1 - mask)
    return out


def _noise_aware_clip_loss(clip, x, timesteps, mask, text_embed, augment, settings):
    """CLIP distance of a noise-aware CLIP that reads ``(x_t ⊙ m, t)``: the gradient skips the UNet."""
    batch = x.shape[0]
    pooled = torch.nn.functional.adaptive_avg_pool2d(x * mask, clip.input_resolution)
    views = pooled if augment is None else augment(pooled)
    copies = views.shape[0] // batch
    embeds = clip.encode_pixels(clip.normalize(views.add(1).div(2)), timesteps.repeat(copies)).float()
    dists = clip_distance(embeds, tile_text(text_embed, copies), settings.distance).view(-1, batch).mean(dim=0)
    return dists.sum(), dists


def _background_terms(x, init, mask, settings: MethodSettings, lpips, weights=None) -> dict[str, torch.Tensor]:
    """Algorithm 1's ``λ·D_bg``: MSE (+ weighted LPIPS) between the background of x and of the input. ``weights``
    (B,): one λ per image, each weighted as in an edit of its own (batch 1)."""
    if weights is not None:
        if settings.official:  # the official mean over one image's elements, against the full input
            mse = (x * (1 - mask) - init).pow(2).mean(dim=(1, 2, 3))
        else:
            mse = background_mse(x, init, mask)
        terms = {"bg_mse_loss": (weights * mse).sum()}
        if settings.lpips_share and lpips is not None:
            value = weights * background_lpips(lpips, x, init, mask, settings.official)
            terms["bg_lpips_loss"] = settings.lpips_share * value.sum()
        return terms
    lam = settings.background_weight
    if settings.official:  # λ on the mean over the whole batch: λ/B per image (image_editor.py:204-208)
        terms = {"bg_mse_loss": lam * official_background_mse(x, init, mask)}
    else:
        terms = {"bg_mse_loss": lam * background_mse(x, init, mask).sum()}
    if settings.lpips_share and lpips is not None:
        value = background_lpips(lpips, x, init, mask, settings.official).sum()
        terms["bg_lpips_loss"] = lam * settings.lpips_share * value
    return terms


def _noised_background(diffusion, init, index, bg_noise, settings) -> torch.Tensor:
    """The input noised to the level of the blend: t (official) or t-1 (paper; the clean input at t = 0)."""
    level = index if settings.background_at_t else index - 1
    if level < 0:
        return init.clone()
    t = torch.full((init.shape[0],), level, dtype=torch.long, device=init.device)
    if bg_noise is None:
        raise ValueError("bg_noise is required for blended diffusion: the noise that takes the input to level t")
    noise = bg_noise if bg_noise.shape[0] == init.shape[0] else bg_noise[:1].expand_as(init)
    return diffusion.q_sample(init, t, noise)



def edit_progressive(
    unet: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    clip: ClipLike,
    init: torch.Tensor,
    mask: torch.Tensor,
    text_embed: torch.Tensor | None,
    settings: MethodSettings,
    streams: SampleStreams,
    *,
    lpips: Callable[..., torch.Tensor] | None = None,
    start_indices: Sequence[int] | None = None,
    background_weights: Sequence[float] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run Algorithm 1 or 2 from ``x_k = q(x_k | init)`` down to ``t = 0``, yielding a record per step.

    The batch has one sample per stream of ``streams`` (sample ``i`` draws all its noise from its own stream,
    :mod:`bdlib.runtime.randomness`). Each record holds ``t``, ``x_t`` (the step's input), ``pred_x0``, ``fg`` (the
    guided sample), ``bg`` (the noised input, Algorithm 2), ``mask`` and ``sample`` (what the next step starts
    from). The last record also has ``unpasted``, the last sample (official mode: the last x̂_0), and ``result``:
    the same with the input's background pasted back exactly for Algorithm 2.

    A grid of edits in one batch: ``start_indices`` gives each sample its own k (a sample waits, and draws nothing,
    until the chain reaches its k; the records of those steps hold only the ``rows`` that ran) and
    ``background_weights`` its own λ (Algorithm 1).
    """
    batch = len(streams)
    starts = list(start_indices) if start_indices is not None else [settings.start_index] * batch
    if len(starts) != batch:
        raise ValueError(f"{len(starts)} start indices for {batch} samples")
    k = max(resolve_start_index(diffusion, start, has_init=True) for start in starts)
    if init.shape[0] not in (1, batch):
        raise ValueError(f"init holds {init.shape[0]} images but there are {batch} sample streams: pass 1 or {batch}")
    shape = (batch, *init.shape[1:])
    per_sample = shape[1:]
    device = init.device
    init_b = init.expand(shape) if init.shape[0] == 1 else init
    weights = None if background_weights is None else torch.tensor(background_weights, device=device).float()
    augmentations = ExtendingAugmentations(settings.augmentations, official=settings.official)
    start = torch.tensor(starts, dtype=torch.long, device=device)
    x = diffusion.q_sample(init_b, start, streams.randn(per_sample))
    for index in range(k, -1, -1):
        rows = [i for i, s in enumerate(starts) if s >= index]  # the samples whose chain has started
        part = _Rows(rows, batch, device)
        active = streams if part.whole else streams.subset(rows)
        noise = active.randn(per_sample)
        bg_noise = None
        if settings.algorithm == "blended":  # the official code shares one background noise across the batch
            draw = active.randn_shared if settings.shared_background_noise else active.randn
            bg_noise = draw(per_sample)
        augment_fn = None if settings.augmentations == 1 else partial(augmentations, randomness=active)
        step = guided_step(
            unet, diffusion, clip, part.take(x), index, init=part.take(init_b), mask=part.take(mask),
            text_embed=part.take(text_embed), settings=settings, noise=noise, bg_noise=bg_noise, augment=augment_fn,
            lpips=lpips, background_weights=part.take(weights),
        )
        each_step = settings.algorithm == "blended" and settings.blending == "each step"
        nxt = part.put(x, step["blended"] if each_step else step["sample"])
        record = {
            "t": index,
            "timestep": int(diffusion.timestep_map[index]),
            "rows": rows,
            "x_t": part.take(x),
            "pred_x0": step["pred_x0"],
            "fg": step["sample"],
            "bg": step.get("background"),
            "mask": part.take(mask),
            "sample": part.take(nxt),
            "clip_dists": step["clip_dists"],
            "loss": step["loss"],
        }
        if index == 0:
            final = step["pred_x0"] if settings.result_from_pred_x0 else nxt
            record["unpasted"] = final  # the chain's own result, before the final paste
            pasted = settings.algorithm == "blended" and settings.blending != "none"
            record["result"] = final * mask + init_b * (1 - mask) if pasted else final
        yield record
        x = nxt


class _Rows:
    """The rows of a batch that take part in a step: all of them (the tensors pass through untouched), or some."""

    def __init__(self, rows: list[int], batch: int, device: torch.device) -> None:
        self.whole = len(rows) == batch
        self.index = None if self.whole else torch.tensor(rows, dtype=torch.long, device=device)

    def take(self, value: torch.Tensor | None) -> torch.Tensor | None:
        """The rows of a per-sample tensor (tensors with one row, shared by all samples, pass unchanged)."""
        if self.whole or value is None or value.shape[0] == 1:
            return value
        return value[self.index]

    def put(self, full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """``full`` with the rows of ``part`` written in."""
        if self.whole:
            return part
        out = full.clone()
        out[self.index] = part
        return out
