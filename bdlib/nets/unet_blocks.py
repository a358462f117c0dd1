"""Building blocks of the ADM UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", arXiv 2105.05233).

Own implementation, written to be *state-dict compatible* with the official guided-diffusion code
(openai/guided-diffusion): the sub-module names and their registration order reproduce the official
parameter keys (``in_layers.0`` is the GroupNorm, ``in_layers.2`` the conv, ``emb_layers.1`` the Linear,
``out_layers.0``/``out_layers.3`` the GroupNorm/conv, ``qkv``/``proj_out`` are Conv1d, ...), so official
checkpoints load without renaming. Attention lives in :mod:`bdlib.nets.unet_attention`.

Mixed precision follows the caller's ``torch.autocast``. The official fp16 mode keeps GroupNorm, the
timestep MLPs and the output head in float32; we do the same by computing GroupNorm in float32
(:class:`GroupNorm32`) and by running the embedding projections with autocast switched off
(:func:`autocast_off`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bdlib.runtime.precision import at_least_float32

__all__ = [
    "timestep_embedding",
    "autocast_off",
    "maybe_checkpoint",
    "zero_init",
    "GroupNorm32",
    "TimestepBlock",
    "TimestepEmbedSequential",
    "Upsample",
    "Downsample",
    "ResBlock",
]


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Sinusoidal timestep features (Vaswani et al. 2017; as used by Ho et al. 2020 and ADM).

    With ``half = dim // 2`` and frequencies ``f_i = exp(-ln(max_period) * i / half)``, ``i < half``::

        emb(t) = [cos(t * f_0), ..., cos(t * f_{half-1}), sin(t * f_0), ..., sin(t * f_{half-1})]

    Note the order: cosines first, then sines (guided-diffusion's convention). An odd ``dim`` gets one
    extra zero column. Computed in ``dtype`` (float32 by default) whatever the dtype of ``timesteps``.

    Args:
        timesteps: (B,) timesteps, may be fractional.
        dim: number of output features.
        max_period: the longest period of the sinusoids.

    Returns:
        (B, dim) tensor of ``dtype``.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=dtype, device=timesteps.device)
    freqs = torch.exp(exponent / half)  # (half,)
    args = timesteps[:, None].to(dtype) * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, dim)
    return emb


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A context that disables ``torch.autocast`` on ``device`` (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def maybe_checkpoint(fn: Callable[..., torch.Tensor], *args: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Run ``fn(*args)``, with activation checkpointing when ``enabled`` and autograd is recording.

    Uses non-reentrant ``torch.utils.checkpoint``: activations are recomputed in the backward pass
    instead of stored, and gradients reach the inputs even when every parameter is frozen (the official
    reentrant ``CheckpointFunction`` fails in that case).
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def zero_init(module: nn.Module) -> nn.Module:
    """Set all parameters of ``module`` to zero (ADM initialises residual output layers this way)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm (32 groups, as guided-diffusion), computed in float32 at least and cast back to the input dtype.

    ``y = (x - mean_g) / sqrt(var_g + eps) * gamma + beta`` with statistics per group ``g`` of channels.
    Keeps the normalisation statistics accurate under bf16/fp16 autocast (as guided-diffusion does).
    ``groups`` changes the group count for narrow networks: with one channel per group GroupNorm is an
    instance norm that erases every channel's spatial mean, and a network whose output head sees only
    such features cannot reproduce the mean colour of its input (the toy DDPM uses 8 groups).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, groups: int = 32) -> None:
        if groups < 1 or num_channels % groups:
            raise ValueError(f"norm groups={groups} must be a positive divisor of the channel count {num_channels}")
        super().__init__(groups, num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x.device):
            dtype = at_least_float32(x.dtype)
            out = F.group_norm(x.to(dtype), self.num_groups, self.weight.to(dtype), self.bias.to(dtype), self.eps)
        return out.to(x.dtype)


class TimestepBlock(nn.Module):
    """A module whose ``forward`` takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``emb`` to the children that are :class:`TimestepBlock`.

    Children are numbered by position, which gives the official keys ``input_blocks.{i}.{j}``.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling, optionally followed by a 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if not use_conv and self.out_channels != channels:
            raise ValueError("Upsample without conv cannot change the channel count")
        self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x) if self.conv is not None else x


class Downsample(nn.Module):
    """x2 downsampling: a stride-2 3x3 conv, or 2x2 average pooling without conv (key ``op``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        elif self.out_channels != channels:
            raise ValueError("Downsample without conv cannot change the channel count")
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)  # (B, C_out, H/2, W/2)


class ResBlock(TimestepBlock):
    """ADM residual block conditioned on the timestep embedding (Dhariwal & Nichol 2021, Sec. 3).

    ``h = conv(SiLU(GN(x)))``; with adaptive group normalisation (``use_scale_shift_norm``, "AdaGN")
    ``[s, b] = Linear(SiLU(emb))`` and ``h = conv(Dropout(SiLU(GN(h) * (1 + s) + b)))``; otherwise
    ``h = conv(Dropout(SiLU(GN(h + Linear(SiLU(emb))))))``. Output ``skip(x) + h``.

    With ``up``/``down`` (BigGAN-style resampling) both ``x`` and ``h`` are resampled *between* the
    in-layers' SiLU and their conv (nearest x2 up, or 2x2 average pool down; no parameters).
    The skip is an identity when the channel count is kept, else a 1x1 conv (3x3 with ``use_conv``).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.updown = up or down
        # Registration order below fixes the state-dict key order of the official model.
        self.in_layers = nn.Sequential(
            GroupNorm32(channels, groups=norm_groups), nn.SiLU(), nn.Conv2d(channels, self.out_channels, 3, padding=1)
        )
        if up:
            self.h_upd: nn.Module = Upsample(channels, use_conv=False)
            self.x_upd: nn.Module = Upsample(channels, use_conv=False)
        elif down:
            self.h_upd = Downsample(channels, use_conv=False)
            self.x_upd = Downsample(channels, use_conv=False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(self.out_channels, groups=norm_groups),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_init(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, emb, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W), emb: (B, E)
        if self.updown:
            h = self.in_layers[1](self.in_layers[0](x))  # SiLU(GN(x)), (B, C_in, H, W)
            h = self.h_upd(h)  # (B, C_in, H', W'), H' = 2H (up) or H/2 (down)
            x = self.x_upd(x)  # (B, C_in, H', W')
            h = self.in_layers[2](h)  # (B, C_out, H', W')
        else:
            h = self.in_layers(x)  # (B, C_out, H, W)
        with autocast_off(emb.device):
            emb_out = self.emb_layers(emb.to(at_least_float32(emb.dtype)))  # (B, C_out) or (B, 2*C_out), float32+
        emb_out = emb_out.to(h.dtype)[:, :, None, None]  # (B, *, 1, 1)
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)  # each (B, C_out, 1, 1)
            h = self.out_layers[0](h) * (1 + scale) + shift  # AdaGN
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h  # (B, C_out, H', W')
