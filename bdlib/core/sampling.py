"""A progressive DDPM/DDIM sampler that shows every step.

The chain starts either from pure noise at the last index ``T-1`` or, as in SDEdit and Blended
Diffusion, from an input image noised to a chosen start index ``k``: ``x_k = √ᾱ_k x_0 + √(1-ᾱ_k) ε``.
It then walks ``t = k, k-1, …, 0`` and yields a record per step, so notebooks can draw trajectories
without touching sampler code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from bdlib.core.diffusion import Diffusion, MeanVariance
from bdlib.runtime.randomness import check_cpu_generator, randn_on

# A guidance function: (x_t, t, p(x_{t-1}|x_t)) -> g = ∇_{x_t} log p(y | x_t), same shape as x_t.
CondFn = Callable[[torch.Tensor, torch.Tensor, MeanVariance], torch.Tensor]


def resolve_start_index(diffusion: Diffusion, start_index: int | None, has_init: bool) -> int:
    """Check the start index ``k`` (respaced) and default it to the last step, ``T-1``."""
    last = diffusion.num_steps - 1
    if start_index is None:
        return last
    if not isinstance(start_index, int) or not 0 <= start_index <= last:
        raise ValueError(
            f"start_index must be an integer in [0, {last}] for this {diffusion.num_steps}-step diffusion, "
            f"got {start_index!r}"
        )
    if start_index < last and not has_init:
        raise ValueError(
            f"start_index={start_index} starts part-way down the chain, which needs an input image: pass init, "
            f"or leave start_index at {last} to start from pure noise"
        )
    return start_index


def sample_progressive(
    model: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    shape: tuple[int, ...] | None = None,
    *,
    init: torch.Tensor | None = None,
    start_index: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    ddim: bool = False,
    eta: float = 0.0,
    clip_denoised: bool = False,
    cond_fn: CondFn | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``{t, timestep, x_t, pred_x0, mean, sample}`` for each step ``t = k … 0``.

    ``x_t`` is the step's input and ``sample`` its output ``x_{t-1}``; the last record's ``sample`` is
    the result. With ``init`` (B or 1, C, H, W) the chain starts from ``q(x_k | init)``; otherwise from
    ``N(0, I)`` of ``shape``. ``cond_fn`` adds guidance: a mean shift ``μ + Σ g`` for DDPM, a score
    correction ``ε̂ - √(1-ᾱ_t) g`` for DDIM. All noise comes from ``generator``, a CPU generator (the
    noise is drawn on the CPU and moved to ``device``: the same seed gives the same chain on every device).
    """
    check_cpu_generator(generator)
    model_kwargs = model_kwargs or {}
    k = resolve_start_index(diffusion, start_index, init is not None)
    if init is not None:
        if init.ndim != 4:
            raise ValueError(f"init must be a (B, C, H, W) image tensor, got shape {tuple(init.shape)}")
        if shape is not None and tuple(shape[1:]) != tuple(init.shape[1:]):
            raise ValueError(
                f"shape {tuple(shape)} does not match init {tuple(init.shape)}: give one or make them agree"
            )
        shape = (shape[0] if shape is not None else init.shape[0], *init.shape[1:])
        device = init.device if device is None else device
    if shape is None:
        raise ValueError("give either shape (B, C, H, W) or an init image")
    device = torch.device(device or "cpu")

    def randn() -> torch.Tensor:
        return randn_on(shape, generator, device)

    if init is None:
        x = randn()
    else:
        t_start = torch.full((shape[0],), k, dtype=torch.long, device=device)
        x = diffusion.q_sample(init.to(device).expand(shape), t_start, randn())
    for index in range(k, -1, -1):
        t = torch.full((shape[0],), index, dtype=torch.long, device=device)
        with torch.no_grad():
            mv = diffusion.denoise(model, x, t, clip_denoised, **model_kwargs)
        grad = None if cond_fn is None else cond_fn(x, t, mv)
        noise = randn() if (not ddim or eta != 0) else None
        if ddim:
            sample, pred_x0 = diffusion.ddim_step(mv, x, t, noise, eta=eta, grad=grad)
        else:
            sample, pred_x0 = diffusion.ddpm_step(mv, t, noise, grad=grad), mv.pred_x0
        yield {
            "t": index,
            "timestep": int(diffusion.timestep_map[index]),
            "x_t": x,
            "pred_x0": pred_x0,
            "mean": mv.mean,
            "sample": sample,
        }
        x = sample


def sample(model: Callable[..., torch.Tensor], diffusion: Diffusion, shape=None, **kwargs) -> torch.Tensor:
    """Run :func:`sample_progressive` to the end and return the final ``x_0``."""
    *_, last = sample_progressive(model, diffusion, shape, **kwargs)
    return last["sample"]
