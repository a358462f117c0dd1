"""How far a precision moves one guided step away from float32: the tolerance each ``precision`` documents."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bdlib.core.algorithms import blended_step
from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.variants import denoiser_for, loss_for, step_options
from bdlib.runtime.randomness import randn_on
from bdlib.worlds.base import World


def guided_step_change(
    world: World,
    init: torch.Tensor,
    mask: torch.Tensor,
    text_embed: torch.Tensor,
    index: int,
    precisions: Sequence[str],
    generator: torch.Generator,
) -> dict[str, dict[str, float]]:
    """One guided step of the world's default edit at respaced ``index``, in float32 and in each of ``precisions``.

    Every run sees the same x_t (``init`` noised to ``index``), noise and augmentations. Returns, per precision,
    ``grad_relative_l2`` = ‖g - g_fp32‖ / ‖g_fp32‖ of the guidance gradient g = -∇_{x_t} L, and the largest
    absolute change of the CLIP distances (``clip_distance_max_abs``) and of x̂_0 (``pred_x0_max_abs``).
    """
    diffusion = world.diffusion()
    init, mask, text_embed = (world.tensor(v) for v in (init, mask, text_embed))
    device = init.device
    t = torch.full((init.shape[0],), index, device=device)
    x_t = diffusion.q_sample(init, t, randn_on(init.shape, generator, device, init.dtype))
    noise = randn_on(init.shape, generator, device, init.dtype)
    augment_seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    augment = ExtendingAugmentations(world.defaults.views)

    def views(pooled: torch.Tensor) -> torch.Tensor:
        return augment(pooled, torch.Generator().manual_seed(augment_seed))

    def run(precision: str):
        settings = world.defaults.with_(precision=precision)
        denoise, _ = denoiser_for(world, settings)
        loss = loss_for(world, settings, init, mask, text_embed, views)
        return blended_step(
            denoise,
            diffusion,
            x_t,
            index,
            x=init,
            m=mask,
            loss=loss,
            noise=noise,
            bg_noise=noise,
            **step_options(settings, text_embed),
        )

    reference = run("fp32")
    changes = {}
    for precision in precisions:
        out = run(precision)
        changes[precision] = {
            "grad_relative_l2": float((out.grad - reference.grad).norm() / reference.grad.norm()),
            "clip_distance_max_abs": float((out.losses.clip_dists - reference.losses.clip_dists).abs().max()),
            "pred_x0_max_abs": float((out.pred_x0 - reference.pred_x0).abs().max()),
        }
    return changes
