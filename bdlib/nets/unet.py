"""The ADM UNet of Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs", arXiv 2105.05233).

Own implementation, state-dict compatible with openai/guided-diffusion's ``UNetModel``: same constructor
keywords, same parameter names, order and shapes, so released checkpoints such as
``256x256_diffusion_uncond.pt`` (the model Blended Diffusion uses) load with ``load_state_dict`` as is.

The network maps a noisy image and its timestep to the model output of the diffusion process::

    emb = MLP(sinusoid(t)) [+ Embedding(y)]                        # (B, 4*model_channels)
    h_0 = conv_in(x_t);  h_i = InputBlock_i(h_{i-1}, emb)           # encoder, every h_i is kept
    h   = Middle(h, emb)                                            # ResBlock, Attention, ResBlock
    h   = OutputBlock_j(concat(h, h_popped), emb)                   # decoder with skip connections
    out = conv_out(SiLU(GN(h)))                                     # (B, out_channels, H, W)

With a learned variance (``out_channels = 2 * in_channels``) the output holds ε̂ in its first half and
the variance interpolation value v in the second half (Nichol & Dhariwal 2021).

Mixed precision: call the model inside ``torch.autocast`` (bf16 or fp16). Convolutions and attention then
run in the low precision while GroupNorm, the timestep/class embeddings and the output head stay float32,
which mirrors the official fp16 mode without converting any weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bdlib.nets.unet_attention import AttentionBlock
from bdlib.nets.unet_blocks import (
    Downsample,
    GroupNorm32,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    autocast_off,
    timestep_embedding,
    zero_init,
)
from bdlib.runtime.precision import at_least_float32

if TYPE_CHECKING:  # pragma: no cover
    from bdlib.core.diffusion import Diffusion

__all__ = ["UNetModel", "PAPER_UNET_CONFIG", "paper_unet"]

#: ``UNetModel`` keywords of guided-diffusion's 256x256 unconditional ImageNet model as configured by
#: Blended Diffusion: attention at the 32, 16 and 8 pixel maps (downsample rates 8, 16, 32), 256 channels,
#: 64 channels per head, 2 res blocks per level, BigGAN up/down ResBlocks, AdaGN (scale-shift norm),
#: learned sigma (6 output channels). 552,814,086 parameters.
PAPER_UNET_CONFIG: dict[str, Any] = {
    "image_size": 256,
    "in_channels": 3,
    "model_channels": 256,
    "out_channels": 6,
    "num_res_blocks": 2,
    "attention_resolutions": (8, 16, 32),
    "dropout": 0.0,
    "channel_mult": (1, 1, 2, 2, 4, 4),
    "conv_resample": True,
    "dims": 2,
    "num_classes": None,
    "use_checkpoint": False,
    "use_fp16": False,  # has no effect here; use torch.autocast (see UNetModel)
    "num_heads": 4,  # unused: num_head_channels wins
    "num_head_channels": 64,
    "num_heads_upsample": -1,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "use_new_attention_order": False,
}


class UNetModel(nn.Module):
    """The ADM UNet with timestep (and optional class) conditioning (Dhariwal & Nichol 2021, Sec. 3).

    Args (same names and meanings as guided-diffusion's ``UNetModel``):
        image_size: nominal input size (kept as an attribute; any size divisible by
            ``2 ** (len(channel_mult) - 1)`` is accepted by ``forward``).
        in_channels: channels of ``x``.
        model_channels: base width; level ``i`` has ``channel_mult[i] * model_channels`` channels.
        out_channels: channels of the output (``2 * in_channels`` with a learned variance).
        num_res_blocks: ResBlocks per level in the encoder (the decoder has one more).
        attention_resolutions: downsample *rates* (1, 2, 4, ...) at which attention blocks are added,
            i.e. ``image_size // resolution`` for resolutions given in pixels.
        dropout: dropout probability inside the ResBlocks.
        channel_mult: width multiplier per level.
        conv_resample: use learned 3x3 convs in Upsample/Downsample (ignored with ``resblock_updown``).
        dims: only 2 (images) is supported.
        num_classes: if set, the model is class-conditional and ``forward`` needs ``y``.
        use_checkpoint: recompute ResBlock/attention activations in the backward pass (non-reentrant
            ``torch.utils.checkpoint``) to save memory; works with frozen parameters.
        use_fp16: accepted for signature compatibility only; weights are never converted. For mixed
            precision call the model inside ``torch.autocast(device_type, dtype=torch.bfloat16)``.
        num_heads: attention heads when ``num_head_channels == -1``.
        num_head_channels: channels per head (overrides ``num_heads``), -1 to use ``num_heads``.
        num_heads_upsample: heads in the decoder's attention blocks; -1 means ``num_heads``.
        use_scale_shift_norm: AdaGN, ``GN(h) * (1 + s) + b`` with ``[s, b]`` from the embedding.
        resblock_updown: resample inside ResBlocks (BigGAN style) instead of Upsample/Downsample.
        use_new_attention_order: qkv channel layout ``[{q,k,v}, head, ch]`` instead of the legacy
            ``[head, {q,k,v}, ch]`` used by the released checkpoints.
        norm_groups: GroupNorm groups of every normalisation (guided-diffusion: 32). Not one of the
            official keywords; narrow networks need fewer (see :class:`bdlib.nets.unet_blocks.GroupNorm32`).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError(f"dims={dims} is not supported: only dims=2 (images) is implemented")
        if isinstance(attention_resolutions, str):
            raise ValueError(
                "attention_resolutions must be a sequence of downsample rates such as (8, 16, 32), "
                f"not the string {attention_resolutions!r}; convert pixel sizes r with image_size // r"
            )
        if len(channel_mult) == 0:
            raise ValueError("channel_mult must hold at least one level multiplier, e.g. (1, 2, 4, 8)")
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.dropout = dropout
        self.channel_mult = tuple(channel_mult)
        self.conv_resample = conv_resample
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.use_fp16 = use_fp16
        self.num_heads = num_heads
        self.num_head_channels = num_head_channels
        self.num_heads_upsample = num_heads if num_heads_upsample == -1 else num_heads_upsample
        self.norm_groups = norm_groups

        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(ch_in: int, ch_out: int, up: bool = False, down: bool = False) -> ResBlock:
            return ResBlock(
                ch_in,
                emb_dim,
                dropout,
                ch_out,
                use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm,
                up=up,
                down=down,
                norm_groups=norm_groups,
            )

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(
                ch, heads, num_head_channels, use_checkpoint, use_new_attention_order, norm_groups=norm_groups
            )

        # Encoder. `skip_chans` records the width of every kept activation for the decoder's concats.
        ch = int(self.channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1  # current downsample rate
        for level, mult in enumerate(self.channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in self.attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(self.channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))

        # Decoder: num_res_blocks + 1 blocks per level, each eating one encoder activation.
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(self.channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in self.attention_resolutions:
                    layers.append(attn(ch, self.num_heads_upsample))
                if level and i == num_res_blocks:
                    up = res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch)
                    layers.append(up)
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch, groups=norm_groups), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this: ``2 ** (len(channel_mult) - 1)``."""
        return 2 ** (len(self.channel_mult) - 1)

    def _check_inputs(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None) -> None:
        """Raise ``ValueError`` naming the bad argument and what is allowed."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, {self.in_channels}, H, W) tensor, got {shape}")
        b, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"x has {c} channels but the model takes in_channels={self.in_channels}")
        m = self.size_multiple
        if h % m or w % m or h == 0 or w == 0:
            raise ValueError(
                f"x has spatial size {h}x{w}; height and width must be positive multiples of {m} "
                f"(2 ** (len(channel_mult) - 1) for {len(self.channel_mult)} levels), e.g. {self.image_size}"
            )
        if not isinstance(timesteps, torch.Tensor) or timesteps.shape not in ((b,), ()):
            got = tuple(timesteps.shape) if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
            raise ValueError(f"timesteps must be a tensor of shape ({b},) (one per image) or a 0-dim tensor, got {got}")
        if self.num_classes is None and y is not None:
            raise ValueError("y (class labels) was given but the model is unconditional (num_classes=None)")
        if self.num_classes is not None:
            if y is None or not isinstance(y, torch.Tensor) or y.shape != (b,):
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else y
                raise ValueError(f"y must be a ({b},) tensor of class indices in [0, {self.num_classes}), got {got}")

    def time_embedding(self, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``emb = Linear(SiLU(Linear(sinusoid(t)))) [+ Embedding(y)]``: float32 (float64 for a float64 network),
        (B, 4*model_channels)."""
        dtype = at_least_float32(self.time_embed[0].weight.dtype)
        with autocast_off(timesteps.device):
            emb = self.time_embed(timestep_embedding(timesteps, self.model_channels, dtype=dtype))  # (B, 4C)
            if self.num_classes is not None and y is not None:
                emb = emb + self.label_emb(y)
        return emb

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the UNet.

        Args:
            x: (B, in_channels, H, W) noisy images x_t (any memory format, e.g. channels_last).
            timesteps: (B,) timesteps on the original 0..999 scale (int or float), or a 0-dim tensor
                shared by the whole batch.
            y: (B,) class labels, required exactly when ``num_classes`` is set.

        Returns:
            (B, out_channels, H, W) tensor of ``x``'s dtype.
        """
        self._check_inputs(x, timesteps, y)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])  # (B,)
        emb = self.time_embedding(timesteps.to(x.device), y)  # (B, 4C)
        skips: list[torch.Tensor] = []
        h = x  # (B, C_in, H, W)
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)  # (B, C_max, H / size_multiple, W / size_multiple)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # concat along channels
        # The output head runs in its weights' dtype with autocast off, as in the official fp16 mode.
        with autocast_off(x.device):
            out = self.out(h.to(self.out[2].weight.dtype))  # (B, out_channels, H, W)
        return out.to(x.dtype)


def paper_unet(respacing: str = "100", device: str | torch.device | None = None) -> tuple[UNetModel, Diffusion]:
    """Build the paper's 256x256 unconditional ADM model and its diffusion process.

    The model is :data:`PAPER_UNET_CONFIG` with freshly initialised weights (load
    ``256x256_diffusion_uncond.pt`` into it with ``load_state_dict``); the diffusion is the linear
    1000-step schedule with learned sigma, respaced by ``respacing`` (Blended Diffusion uses "100").

    Args:
        respacing: timestep respacing string, e.g. "100", "25", "ddim50".
        device: where to create the parameters; ``"meta"`` builds the architecture without memory.

    Returns:
        ``(model, diffusion)``.
    """
    from bdlib.core.diffusion import create_diffusion  # lazy: keeps this module importable on its own

    ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with ctx:
        model = UNetModel(**PAPER_UNET_CONFIG)
    diffusion = create_diffusion(steps=1000, schedule="linear", respacing=respacing, learn_sigma=True)
    return model, diffusion
