"""Spatial self-attention of the ADM UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs").

Own implementation on ``torch.nn.functional.scaled_dot_product_attention``; the parameters keep the
official guided-diffusion names and shapes: ``norm`` (GroupNorm), ``qkv`` (Conv1d, weight ``[3C, C, 1]``)
and ``proj_out`` (Conv1d, weight ``[C, C, 1]``), so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bdlib.nets.unet_blocks import GroupNorm32, maybe_checkpoint, zero_init

__all__ = ["qkv_attention", "AttentionBlock"]


def qkv_attention(qkv: torch.Tensor, num_heads: int, legacy_order: bool = True) -> torch.Tensor:
    """Multi-head attention over the positions of a packed ``qkv`` tensor.

    Per head, with ``q, k, v`` of shape (T, ch)::

        Attention(q, k, v) = softmax(q k^T / sqrt(ch)) v          (Vaswani et al. 2017, Eq. 1)

    The 3C channels of ``qkv`` are split in one of two layouts (guided-diffusion has both):

    - legacy (``QKVAttentionLegacy``, used by every released checkpoint): ``[head, {q,k,v}, ch]``;
    - new (``QKVAttention``, ``use_new_attention_order=True``): ``[{q,k,v}, head, ch]``.

    The output puts heads contiguously, ``[head, ch]``, in both cases.

    Args:
        qkv: (B, 3*H*ch, T) packed queries, keys and values.
        num_heads: number of heads H.
        legacy_order: choose the legacy layout (True) or the new one (False).

    Returns:
        (B, H*ch, T) attention output.
    """
    b, width, length = qkv.shape
    if width % (3 * num_heads):
        raise ValueError(f"qkv has {width} channels, not divisible by 3 * num_heads = {3 * num_heads}")
    ch = width // (3 * num_heads)
    if legacy_order:
        parts = qkv.reshape(b, num_heads, 3, ch, length).unbind(dim=2)  # 3 x (B, H, ch, T)
    else:
        parts = qkv.reshape(b, 3, num_heads, ch, length).unbind(dim=1)  # 3 x (B, H, ch, T)
    q, k, v = (p.transpose(-1, -2) for p in parts)  # each (B, H, T, ch)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, ch), scale 1/sqrt(ch)
    return out.transpose(-1, -2).reshape(b, num_heads * ch, length)  # (B, H*ch, T)


class AttentionBlock(nn.Module):
    """Residual self-attention over all spatial positions: ``x + proj_out(Attn(qkv(GN(x))))``.

    The number of heads is ``channels // num_head_channels`` when ``num_head_channels != -1``, else
    ``num_heads`` (Dhariwal & Nichol 2021, Sec. 3: "64 channels per head" in the final models).
    ``proj_out`` starts at zero, so a fresh block is the identity.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        elif num_head_channels > 0 and channels % num_head_channels == 0:
            self.num_heads = channels // num_head_channels
        else:
            raise ValueError(
                f"num_head_channels={num_head_channels} must be -1 or a positive divisor of the "
                f"attention block's channel count {channels}"
            )
        if self.num_heads < 1 or channels % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a positive divisor of channels={channels}")
        self.use_checkpoint = use_checkpoint
        self.legacy_order = not use_new_attention_order
        self.norm = GroupNorm32(channels, groups=norm_groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape  # (B, C, H, W)
        x = x.reshape(b, c, -1)  # (B, C, T) with T = H*W
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        h = qkv_attention(qkv, self.num_heads, self.legacy_order)  # (B, C, T)
        h = self.proj_out(h)  # (B, C, T)
        return (x + h).reshape(b, c, *spatial)  # (B, C, H, W)
