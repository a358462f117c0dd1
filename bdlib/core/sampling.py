"""The reverse chain, one step at a time, with a record of every step.

A chain starts either from pure noise at the last index ``T-1`` or, as in SDEdit and Blended Diffusion, from an
input noised to a start index ``k``: ``x_k = √ᾱ_k x_0 + √(1-ᾱ_k) ε``. :func:`chain` then walks ``t = k, k-1, …, 0``:
a step function turns ``x_t`` into a record whose ``x_prev`` is ``x_{t-1}``, the next step's input. Every sampler
of bdlib (:func:`sample_progressive` here, Algorithms 1 and 2 in :mod:`bdlib.core.algorithms`) is this loop with
its own step function, so a lesson draws the trajectory of any of them from the records alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bdlib.core.diffusion import Diffusion, MeanVariance
from bdlib.runtime.precision import at_least_float32, network_autocast
from bdlib.runtime.randomness import check_cpu_generator, randn_on

# A guidance function of guided-diffusion's kind: (x_t, t, p(x_{t-1}|x_t)) -> g = ∇_{x_t} log p(y | x_t).
CondFn = Callable[[torch.Tensor, torch.Tensor, MeanVariance], torch.Tensor]


class Denoiser(Protocol):
    """The network and the diffusion together: ``(x_t, t) -> p(x_{t-1} | x_t)`` with ε̂ and x̂_0."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> MeanVariance: ...


class Record(Protocol):
    """What :func:`chain` needs of a step's record: the step's output, the next step's input."""

    @property
    def x_prev(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class SampleStep:
    """One step of a plain (or cond_fn-guided) reverse chain. Tensors are (B, 3, H, W)."""

    t: int  # the (respaced) index of the step
    timestep: int  # the original step it stands for, timestep_map[t]
    x_t: torch.Tensor  # the step's input
    pred_x0: torch.Tensor  # x̂_0
    mean: torch.Tensor  # μ of p(x_{t-1} | x_t), unguided
    x_prev: torch.Tensor  # x_{t-1}: the step's output


def denoiser(
    unet: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    clip_denoised: bool = False,
    precision: str = "fp32",
    **model_kwargs: Any,
) -> Denoiser:
    """The :class:`Denoiser` of ``unet`` under ``diffusion``: the network sees the original timesteps (in its
    autocast when ``precision`` asks for one), x̂_0 is clamped to [-1, 1] when ``clip_denoised``."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> MeanVariance:
        with network_autocast(x_t.device, precision, "unet"):
            out = unet(x_t, diffusion.model_timesteps(t, x_t.dtype), **model_kwargs)
        out = out.to(at_least_float32(x_t.dtype))  # a custom UNet may answer in half precision
        return diffusion.p_mean_variance(out, x_t, t, clip_denoised)

    return denoise


def at(t: int, like: torch.Tensor) -> torch.Tensor:
    """The index ``t`` for every image of the batch ``like``: a (B,) long tensor on its device."""
    return torch.full((like.shape[0],), t, dtype=torch.long, device=like.device)


def chain(x_k: torch.Tensor, k: int, step: Callable[[torch.Tensor, int], Record]) -> Iterator[Record]:
    """The reverse chain from ``x_k``: for ``t = k, …, 0``, ``record = step(x_t, t)`` and ``x_{t-1} = record.x_prev``.

    Yields every record; the last one's ``x_prev`` is the chain's ``x_0``.
    """
    x_t = x_k
    for t in range(k, -1, -1):
        record = step(x_t, t)
        yield record
        x_t = record.x_prev


def resolve_k(diffusion: Diffusion, k: int | None, has_init: bool) -> int:
    """Check the start index ``k`` (respaced) and default it to the last step, ``T-1``."""
    last = diffusion.num_steps - 1
    if k is None:
        return last
    if not isinstance(k, int) or not 0 <= k <= last:
        raise ValueError(
            f"k must be an integer in [0, {last}] for this {diffusion.num_steps}-step diffusion, got {k!r}"
        )
    if k < last and not has_init:
        raise ValueError(
            f"k={k} starts part-way down the chain, which needs an input image: pass init, "
            f"or leave k at {last} to start from pure noise"
        )
    return k


def model_dtype(model: Callable[..., torch.Tensor]) -> torch.dtype:
    """The dtype of ``model``'s parameters if it is a network with parameters, else float32."""
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return parameter.dtype if parameter is not None else torch.float32


def sample_progressive(
    model: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    shape: tuple[int, ...] | None = None,
    *,
    init: torch.Tensor | None = None,
    k: int | None = None,
    generator: torch.Generator | None = None,  # required: a CPU generator (None is refused)
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    ddim: bool = False,
    eta: float = 0.0,
    clip_denoised: bool = False,
    cond_fn: CondFn | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Iterator[SampleStep]:
    """Yield a :class:`SampleStep` for each step ``t = k … 0`` of a DDPM (or DDIM) chain.

    With ``init`` (B or 1, C, H, W) the chain starts from ``q(x_k | init)``; otherwise from ``N(0, I)`` of ``shape``.
    ``cond_fn`` adds guidance: a mean shift ``μ + Σ g`` for DDPM, a score correction ``ε̂ - √(1-ᾱ_t) g`` for DDIM.
    All noise comes from ``generator``, a CPU generator (drawn on the CPU and moved to ``device``: the same seed gives
    the same chain on every device). The chain runs in ``dtype``: by default ``init``'s, else the model's parameters'
    (float64 for the default toy world), else float32.
    """
    check_cpu_generator(generator)
    k = resolve_k(diffusion, k, init is not None)
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
    dtype = dtype or (init.dtype if init is not None else model_dtype(model))
    denoise = denoiser(model, diffusion, clip_denoised, **(model_kwargs or {}))

    def step(x_t: torch.Tensor, t: int) -> SampleStep:
        ts = at(t, x_t)
        with torch.no_grad():
            out = denoise(x_t, ts)
        grad = None if cond_fn is None else cond_fn(x_t, ts, out)
        noise = randn_on(shape, generator, device, dtype) if (not ddim or eta != 0) else None
        if ddim:
            x_prev, pred_x0 = diffusion.ddim_step(out, x_t, ts, noise, eta=eta, grad=grad)
        else:
            x_prev, pred_x0 = diffusion.ddpm_step(out, ts, noise, grad=grad), out.pred_x0
        return SampleStep(t, int(diffusion.timestep_map[t]), x_t, pred_x0, out.mean, x_prev)

    if init is None:
        x_k = randn_on(shape, generator, device, dtype)
    else:
        x_k = diffusion.q_sample(
            init.to(device, dtype).expand(shape), at(k, init.expand(shape)), randn_on(shape, generator, device, dtype)
        )
    yield from chain(x_k, k, step)


def sample(model: Callable[..., torch.Tensor], diffusion: Diffusion, shape=None, **kwargs) -> torch.Tensor:
    """Run :func:`sample_progressive` to the end and return the final ``x_0``."""
    *_, last = sample_progressive(model, diffusion, shape, **kwargs)
    return last.x_prev
