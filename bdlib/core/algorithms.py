"""Algorithms 1 and 2 of Blended Diffusion (Avrahami, Lischinski, Fried, CVPR 2022), as the paper writes them.

Both start from the input ``x`` noised to level ``k`` and walk down the chain. At every step a network predicts
``ε̂``, hence ``x̂_0``, the mean ``μ`` and the variance ``Σ`` of ``p(x_{t-1} | x_t)`` (:mod:`bdlib.core.diffusion`);
a loss ``L`` judges ``x̂_0``, and the step's mean moves against its gradient (guided-diffusion's classifier
guidance). The two algorithms differ in what keeps the background::

    Algorithm 1 (local CLIP-guided diffusion):  L = s·D_CLIP(x̂_0 ⊙ m, d) + r·range(x̂_0) + λ·D_bg(x, x̂_0, m)
                                                x_{t-1} ~ N(μ - Σ∇L, Σ)
    Algorithm 2 (blended diffusion):            L = s·D_CLIP(x̂_0 ⊙ m, d) + r·range(x̂_0)
                                                x_{t-1,fg} ~ N(μ - Σ∇L, Σ)
                                                x_{t-1,b}  ~ q(x_{t-1} | x)     (the input, noised to the same level)
                                                x_{t-1} = x_{t-1,fg} ⊙ m + x_{t-1,b} ⊙ (1 - m)

and Algorithm 2 ends by pasting the input's background back, so it is preserved exactly. ``D_CLIP`` is averaged
over the extending augmentations of x̂_0 (``views``, :mod:`bdlib.core.augment`); ``range`` keeps x̂_0 in [-1, 1];
``D_bg = MSE + w·LPIPS`` on the background (:mod:`bdlib.core.losses`). The loss is ``L`` summed over the batch, so
the gradient each sample receives does not depend on the others.

This module is the paper path and nothing else. What the course varies is passed in: ``guide`` (which gradient:
through the network, the default; w.r.t. x̂_0 as the algorithms are written; none for an empty prompt), ``update``
(a DDPM step, the default, or DDIM) and ``blend`` (the blending ablations); :mod:`bdlib.core.variants` builds them
from :class:`~bdlib.core.settings.MethodSettings`, and :mod:`bdlib.core.official` holds the official code's step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from bdlib.core.diffusion import Diffusion, MeanVariance
from bdlib.core.losses import ClipLike, background_mse, d_clip, range_loss
from bdlib.core.sampling import Denoiser, at, chain


@dataclass(frozen=True)
class Losses:
    """The terms of ``L`` for each sample: ``terms[name]`` is a weighted term (B,); ``clip_dists`` is D_CLIP itself."""

    terms: dict[str, torch.Tensor]
    clip_dists: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        """``L`` per sample (B,): the sum of the terms (0 when nothing guides)."""
        return sum(self.terms.values(), torch.zeros(()))

    def detached(self) -> Losses:
        dists = None if self.clip_dists is None else self.clip_dists.detach()
        return Losses({name: value.detach() for name, value in self.terms.items()}, dists)


#: A loss: ``(x_t, x̂_0, t) -> Losses``; the algorithms' losses read x̂_0 only, a noise-aware one reads ``x_t, t``.
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Losses]
#: Which gradient guides: ``(denoise, x_t, t, loss) -> (p(x_{t-1} | x_t), g = -∇L, the losses)``.
Guide = Callable[[Denoiser, torch.Tensor, torch.Tensor, Loss], "tuple[MeanVariance, torch.Tensor, Losses]"]
#: The reverse step with guidance ``g``: ``(diffusion, p, x_t, t, noise, g) -> (x_{t-1}, x̂_0)``.
Update = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


class Noise(Protocol):
    """Where a chain's noise comes from: ``randn(shape)`` is (B, *shape), row ``i`` from sample ``i``'s own stream
    (:class:`bdlib.runtime.randomness.SampleStreams`)."""

    def randn(self, shape) -> torch.Tensor: ...


@dataclass(frozen=True)
class EditStep:
    """One step of Algorithm 1 or 2, as the callback of an edit receives it. Tensors are (B, 3, S, S)."""

    t: int  # the (respaced) index of the step: k, k-1, ..., 0
    timestep: int  # the original step it stands for (timestep_map[t])
    x_t: torch.Tensor  # the step's input
    pred_x0: torch.Tensor  # x̂_0, the network's guess of the clean image
    mean: torch.Tensor  # μ of p(x_{t-1} | x_t), before guidance
    variance: torch.Tensor  # Σ
    grad: torch.Tensor  # g = -∇L: the guided mean is μ + Σ·g
    losses: Losses  # the terms of L
    fg: torch.Tensor  # x_{t-1,fg}: the guided step (Algorithm 1's x_{t-1})
    bg: torch.Tensor | None = None  # x_{t-1,b}: the input noised to the level of x_{t-1} (Algorithm 2)
    blend: torch.Tensor | None = None  # x_{t-1} = x_{t-1,fg} ⊙ m + x_{t-1,b} ⊙ (1 - m) (Algorithm 2)
    extra: dict = field(default_factory=dict)  # what a variant adds (the official code's CLIP input, ...)

    @property
    def x_prev(self) -> torch.Tensor:
        """x_{t-1}, the next step's input: the blend (Algorithm 2) or the guided step (Algorithm 1)."""
        return self.fg if self.blend is None else self.blend


# ------------------------------------------------------------------------------------------------ the losses
def blended_loss(
    clip: ClipLike,
    text: torch.Tensor,
    m: torch.Tensor,
    views=None,
    *,
    s: float = 1000.0,
    r: float = 50.0,
    distance: str = "spherical",
) -> Loss:
    """Algorithm 2's ``L = s·D_CLIP(x̂_0 ⊙ m, d) + r·range(x̂_0)`` (``views``: the extending augmentations)."""

    def loss(x_t: torch.Tensor, pred_x0: torch.Tensor, t: torch.Tensor) -> Losses:
        dists = d_clip(clip, pred_x0, m, text, views, distance)  # D_CLIP(x̂_0 ⊙ m, d), (B,)
        return Losses({"clip": s * dists, "range": r * range_loss(pred_x0)}, dists)

    return loss


def background_loss(x: torch.Tensor, m: torch.Tensor, lam, lpips=None, w: float = 0.0) -> Loss:
    """Algorithm 1's ``λ·D_bg(x, x̂_0, m)``, ``D_bg = MSE + w·LPIPS`` of x̂_0 against x on the background ``1 - m``.
    ``lam`` is a number or one λ per sample (B,); LPIPS only where a network is given."""

    def loss(x_t: torch.Tensor, pred_x0: torch.Tensor, t: torch.Tensor) -> Losses:
        d_bg = background_mse(pred_x0, x, m)  # ‖(x̂_0 - x) ⊙ (1-m)‖² / P, (B,)
        if lpips is not None:
            d_bg = d_bg + w * lpips(pred_x0, x, m)  # + w·LPIPS(x̂_0 ⊙ (1-m), x ⊙ (1-m))
        return Losses({"bg": lam * d_bg})

    return loss


def local_loss(clip_loss: Loss, bg_loss: Loss) -> Loss:
    """Algorithm 1's ``L``: Algorithm 2's terms plus ``λ·D_bg``."""

    def loss(x_t: torch.Tensor, pred_x0: torch.Tensor, t: torch.Tensor) -> Losses:
        clip, bg = clip_loss(x_t, pred_x0, t), bg_loss(x_t, pred_x0, t)
        return Losses({**clip.terms, **bg.terms}, clip.clip_dists)

    return loss


# ------------------------------------------------------------------------------------------------ one step
def guidance(denoise: Denoiser, x_t: torch.Tensor, t: torch.Tensor, loss: Loss):
    """``p(x_{t-1} | x_t)`` and ``g = -∇_{x_t} L``, through the network (guided-diffusion's ``cond_fn``)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_()
        out = denoise(x, t)  # ε̂, v = UNet(x_t, t) → μ, Σ, x̂_0
        losses = loss(x, out.pred_x0, t)  # L(x̂_0)
        (grad,) = torch.autograd.grad(losses.total.sum(), x)  # ∇_{x_t} L, through x̂_0 and the UNet
    return out.detached(), -grad, losses.detached()


def unguided(denoise: Denoiser, x_t: torch.Tensor, t: torch.Tensor, loss=None):
    """No guidance (an empty prompt in Algorithm 2): ``p(x_{t-1} | x_t)`` and ``g = 0``; the prior fills the region."""
    with torch.no_grad():
        out = denoise(x_t, t)
    return out, torch.zeros_like(x_t), Losses({})


def ddpm_update(diffusion: Diffusion, out: MeanVariance, x_t, t, noise, grad):
    """``x_{t-1} ~ N(μ + Σ·g, Σ)``: the guided mean plus ``σ_t·z`` (no noise at t = 0); x̂_0 unchanged."""
    return diffusion.ddpm_step(out, t, noise, grad=grad), out.pred_x0


def noised_input(diffusion: Diffusion, x: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
    """``q(x_level | x) = √ᾱ_level·x + √(1-ᾱ_level)·ε``; below level 0, the clean input itself."""
    if level < 0:
        return x.clone()
    return diffusion.q_sample(x, at(level, x), noise)


def blend_images(fg: torch.Tensor, bg: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``fg ⊙ m + bg ⊙ (1 - m)``."""
    return fg * m + bg * (1 - m)


def blended_step(
    denoise: Denoiser,
    diffusion: Diffusion,
    x_t: torch.Tensor,
    t: int,
    *,
    x: torch.Tensor,
    m: torch.Tensor,
    loss: Loss,
    noise: torch.Tensor,
    bg_noise: torch.Tensor,
    guide: Guide = guidance,
    update: Update = ddpm_update,
    blend=blend_images,
) -> EditStep:
    """One step of Algorithm 2 at index ``t``: a guided step for the foreground, blended with the noised input."""
    ts = at(t, x_t)
    # μ, Σ ← μ_θ(x_t), Σ_θ(x_t);  x̂_0 from ε̂;  L = s·D_CLIP(x̂_0 ⊙ m, d) + r·range(x̂_0);  g = -∇L
    out, grad, losses = guide(denoise, x_t, ts, loss)
    # x_{t-1,fg} ~ N(μ + Σ·g, Σ)
    fg, pred_x0 = update(diffusion, out, x_t, ts, noise, grad)
    # x_{t-1,b} ~ q(x_{t-1} | x): the input noised to the level of x_{t-1} (at t = 0: the input itself)
    bg = noised_input(diffusion, x, t - 1, bg_noise)
    # x_{t-1} = x_{t-1,fg} ⊙ m + x_{t-1,b} ⊙ (1 - m)
    x_prev = blend(fg, bg, m)
    return EditStep(
        t, int(diffusion.timestep_map[t]), x_t, pred_x0, out.mean, out.variance, grad, losses, fg, bg, x_prev
    )


def local_step(
    denoise: Denoiser,
    diffusion: Diffusion,
    x_t: torch.Tensor,
    t: int,
    *,
    loss: Loss,
    noise: torch.Tensor,
    guide: Guide = guidance,
    update: Update = ddpm_update,
) -> EditStep:
    """One step of Algorithm 1 at index ``t``: a guided step whose loss also asks for the input's background."""
    ts = at(t, x_t)
    # μ, Σ ← μ_θ(x_t), Σ_θ(x_t);  x̂_0 from ε̂;  L = s·D_CLIP + r·range + λ·D_bg(x, x̂_0, m);  g = -∇L
    out, grad, losses = guide(denoise, x_t, ts, loss)
    # x_{t-1} ~ N(μ + Σ·g, Σ)
    x_prev, pred_x0 = update(diffusion, out, x_t, ts, noise, grad)
    return EditStep(t, int(diffusion.timestep_map[t]), x_t, pred_x0, out.mean, out.variance, grad, losses, x_prev)


# ------------------------------------------------------------------------------------------------ the loops
def blended_diffusion(
    denoise: Denoiser,
    diffusion: Diffusion,
    x: torch.Tensor,
    m: torch.Tensor,
    k: int,
    loss: Loss,
    noise: Noise,
    *,
    callback=None,
    **step_options,
) -> torch.Tensor:
    """Algorithm 2: edit the region ``m`` of ``x`` (B, 3, S, S); returns x_0 with the input's background."""
    shape = x.shape[1:]
    # x_k ~ N(√ᾱ_k x, (1-ᾱ_k) I)
    x_k = diffusion.q_sample(x, at(k, x), noise.randn(shape))

    def step(x_t: torch.Tensor, t: int) -> EditStep:
        step_noise, bg_noise = noise.randn(shape), noise.randn(shape)
        return blended_step(
            denoise, diffusion, x_t, t, x=x, m=m, loss=loss, noise=step_noise, bg_noise=bg_noise, **step_options
        )

    # for t = k, ..., 0: a guided foreground, blended with the noised input (blended_step)
    for record in chain(x_k, k, step):
        if callback is not None:
            callback(record)
    # x_0 ⊙ m + x ⊙ (1 - m): the input's background, exactly
    return blend_images(record.blend, x, m)


def local_diffusion(
    denoise: Denoiser,
    diffusion: Diffusion,
    x: torch.Tensor,
    k: int,
    loss: Loss,
    noise: Noise,
    *,
    callback=None,
    **step_options,
) -> torch.Tensor:
    """Algorithm 1: a guided chain from ``x`` noised to level ``k``; returns its x_0 (the background is not exact)."""
    shape = x.shape[1:]
    # x_k ~ N(√ᾱ_k x, (1-ᾱ_k) I)
    x_k = diffusion.q_sample(x, at(k, x), noise.randn(shape))

    def step(x_t: torch.Tensor, t: int) -> EditStep:
        return local_step(denoise, diffusion, x_t, t, loss=loss, noise=noise.randn(shape), **step_options)

    # for t = k, ..., 0: x_{t-1} ~ N(μ + Σ·g, Σ) (local_step)
    for record in chain(x_k, k, step):
        if callback is not None:
            callback(record)
    return record.fg
