"""Measurements that the lessons make on a world: how one guided step moves the background, and how strongly the
network's guess x̂_0 responds to x_t.

Why a guided step can overshoot (notebook 04). Algorithm 1's background loss is a per-image mean over
``P = 3·S²`` values, ``D_bg = ‖(x̂_0 - x)⊙(1-m)‖² / P``, so ``∇_{x̂_0} λD_bg = 2λ/P · (x̂_0 - x)⊙(1-m)``. The guidance
shifts the mean of the step by ``Σ_t·∇_{x_t}``, and ``∇_{x_t} = Jᵀ∇_{x̂_0}`` with ``J = ∂x̂_0/∂x_t``. Along the
shift, x̂_0 moves by ``J Σ_t Jᵀ ∇_{x̂_0}``. If ``J`` were ``I/√ᾱ_t`` (what ``x̂_0 = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t`` gives
when ε̂ ignores x_t), one step would correct the background gap by the factor ``2λΣ_t/(Pᾱ_t)``: a full
correction at ``λ = Pᾱ_t/(2Σ_t)`` and a growing error beyond ``λ = Pᾱ_t/Σ_t``, the *naive bound*
(:func:`naive_lambda_bound`). A trained network's ε̂ does depend on x_t, so the naive J is wrong in
both directions: :func:`pred_x0_gain` measures ``g_t = ‖J δ‖·√ᾱ_t / ‖δ‖`` for a random δ (1 for the naive
assumption), which is small at high noise (x̂_0 is close to the average image whatever fine detail x_t has), but
the gradient's direction is not random, and along it the guess responds far more (``direction=``). The number
to trust is the measured one: :func:`background_step_ratio` takes the step and compares ``D_bg`` before and after,
and :func:`measured_lambda_bound` finds the λ where it first overshoots. Clamping x̂_0 to [-1, 1] sets J to 0 for
every saturated pixel, which caps how far an overshooting step can go.
"""

from __future__ import annotations

import torch

from bdlib.core.algorithms import EditStep, local_step
from bdlib.core.losses import background_mse
from bdlib.core.sampling import at
from bdlib.core.settings import MethodSettings
from bdlib.core.variants import denoiser_for, loss_for
from bdlib.runtime.randomness import randn_on
from bdlib.worlds.base import World


def _pred_x0(world: World, settings: MethodSettings, x_t: torch.Tensor, index: int) -> torch.Tensor:
    denoise, _ = denoiser_for(world, settings)
    x_t = world.tensor(x_t)
    with torch.no_grad():
        return denoise(x_t, at(index, x_t)).pred_x0


def _background_step(
    world: World,
    settings: MethodSettings,
    image: torch.Tensor,
    mask: torch.Tensor,
    x_t: torch.Tensor,
    index: int,
    lam: float,
) -> EditStep:
    """One noiseless Algorithm 1 step at ``index`` guided by ``λ·D_bg`` alone (no CLIP or range term, one view)."""
    local = settings.with_(algorithm="local", lam=lam)
    image, mask, x_t = (world.tensor(v) for v in (image, mask, x_t))
    denoise, diffusion = denoiser_for(world, local)
    loss = loss_for(world, local, image, mask, None, None)  # no prompt: the background term alone
    return local_step(denoise, diffusion, x_t, index, loss=loss, noise=torch.zeros_like(x_t))


def naive_lambda_bound(world: World, settings: MethodSettings, index: int) -> float:
    """``P·ᾱ_t / β_t``: the λ above which one step *grows* the background error if ``∂x̂_0/∂x_t = I/√ᾱ_t`` (and
    ``Σ_t ≤ β_t``). The measured bound is far larger (:func:`background_step_ratio`, :func:`pred_x0_gain`)."""
    diffusion = world.diffusion(settings.respacing)
    pixels = 3 * world.image_size**2
    return float(pixels * diffusion.alphas_cumprod[index] / diffusion.betas[index])


def background_step_ratio(
    world: World,
    settings: MethodSettings,
    image: torch.Tensor,
    mask: torch.Tensor,
    x_t: torch.Tensor,
    index: int,
    lam: float,
) -> float:
    """``D_bg`` of x̂_0 after one mean shift ``x_t + Σ_t·(-∇ λD_bg)`` over ``D_bg`` before it (no CLIP term, no
    noise): below 1 the step pulls the background towards the input, above 1 it overshoots."""
    before = float(background_mse(_pred_x0(world, settings, x_t, index), image, mask).mean())
    out = _background_step(world, settings, image, mask, x_t, index, lam)
    moved = x_t + out.variance * out.grad
    return float(background_mse(_pred_x0(world, settings, moved, index), image, mask).mean()) / before


def pred_x0_gain(
    world: World,
    settings: MethodSettings,
    x_t: torch.Tensor,
    index: int,
    generator: torch.Generator | None = None,
    size: float = 1e-2,
    direction: torch.Tensor | None = None,
) -> float:
    """``‖x̂_0(x_t + δ) - x̂_0(x_t)‖·√ᾱ_t / ‖δ‖`` for a small δ, random (drawn on the CPU) or along ``direction``:
    how strongly the guess responds to x_t, relative to the naive ``1/√ᾱ_t`` (1 = naive, 0 = not at all)."""
    if direction is None:
        delta = size * randn_on(x_t.shape, generator, x_t.device, x_t.dtype)  # a CPU generator is required here
    else:
        delta = direction * (size * x_t.numel() ** 0.5 / direction.norm())
    change = _pred_x0(world, settings, x_t + delta, index) - _pred_x0(world, settings, x_t, index)
    alpha_bar = float(world.diffusion(settings.respacing).alphas_cumprod[index])
    return float(change.norm() / delta.norm()) * alpha_bar**0.5


def measured_lambda_bound(
    world: World,
    settings: MethodSettings,
    image: torch.Tensor,
    mask: torch.Tensor,
    x_t: torch.Tensor,
    index: int,
    lams: list[float],
) -> float:
    """The smallest λ of ``lams`` (ascending) whose one step overshoots (:func:`background_step_ratio` > 1), or
    ``inf`` when none does."""
    for lam in lams:
        if background_step_ratio(world, settings, image, mask, x_t, index, lam) > 1:
            return lam
    return float("inf")


def background_gradient(
    world: World, settings: MethodSettings, image: torch.Tensor, mask: torch.Tensor, x_t: torch.Tensor, index: int
) -> torch.Tensor:
    """``-∇_{x_t} D_bg`` of one step (λ = 1, no CLIP term): the direction in which the background term moves x_t."""
    return _background_step(world, settings, image, mask, x_t, index, 1.0).grad
