"""The guidance losses of Blended Diffusion: CLIP distance on the masked region, range and background terms.

Paper, section 4.1 (Algorithm 1)::

    L = D_CLIP(x̂_0 ⊙ m, text) + λ · D_bg(x, x̂_0, m)          D_bg = MSE + LPIPS on the background (1 - m)

The CLIP distance is the squared spherical (great-circle) distance between normalized embeddings, as in
the official code: ``d(a, b) = 2 · arcsin(‖â - b̂‖ / 2)²``; the paper's cosine distance ``1 - cos θ`` is the other
choice (both ≈ θ²/2 for small angles). Every function here returns one value per sample (B,); the algorithms
(:mod:`bdlib.core.algorithms`) weigh the terms and sum them over the batch, so the gradient that sample ``i``
receives does not depend on the other samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from bdlib.runtime.precision import at_least_float32

DISTANCES = ("spherical", "cosine")


class ClipLike(Protocol):
    """What guidance needs of a CLIP: the paper's (``bdlib.nets.clip_adapter.ClipModel``) or the toy one."""

    input_resolution: int

    def normalize(self, images01: torch.Tensor) -> torch.Tensor: ...

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, prompts: list[str]) -> torch.Tensor: ...


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2 · arcsin(‖â - b̂‖ / 2)²`` for L2-normalized ``â, b̂`` (rows broadcast): half the squared angle."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cos(a, b)`` (rows broadcast)."""
    return 1 - F.cosine_similarity(a, b, dim=-1)


def clip_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "spherical") -> torch.Tensor:
    """The distance named ``kind`` ("spherical" or "cosine")."""
    if kind == "spherical":
        return spherical_distance(a, b)
    if kind == "cosine":
        return cosine_distance(a, b)
    raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {kind!r}")


def range_loss(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``(x - clamp(x, -1, 1))²``: keeps x̂_0 inside the valid pixel range."""
    return (x - x.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))


def masked_clip_pixels(clip: ClipLike, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What CLIP sees during guidance: ``normalize(pool(x ⊙ m) / 2 + ½)`` (the official preprocessing).

    Outside the mask ``x ⊙ m = 0``, which is mid-grey after the shift to [0, 1]. The image is reduced
    to CLIP's input size by adaptive average pooling (uneven windows at 256 → 224, exact at 32 → 32).
    """
    pooled = F.adaptive_avg_pool2d(images * mask, clip.input_resolution)  # (B, 3, R, R)
    return clip.normalize(pooled.add(1).div(2))


def d_clip(
    clip: ClipLike,
    images: torch.Tensor,
    mask: torch.Tensor,
    text_embed: torch.Tensor,
    views: Callable[[torch.Tensor], torch.Tensor] | None = None,
    distance: str = "spherical",
) -> torch.Tensor:
    """``D_CLIP(x ⊙ m, d)`` per sample (B,): the distance of CLIP's view of the masked region to the prompt,
    averaged over the ``views`` of the region (the extending augmentations of section 4.2).

    ``views`` maps ``(B, 3, R, R)`` to ``(N·B, 3, R, R)`` laid out copy-major (``[copy][sample]``), the first copy
    clean. ``text_embed`` is (1, D) for one prompt or (B, D) for one prompt per image.
    """
    batch = images.shape[0]
    pooled = F.adaptive_avg_pool2d(images * mask, clip.input_resolution)  # (B, 3, R, R)
    copies = pooled if views is None else views(pooled)  # (N·B, 3, R, R)
    embeds = clip.encode_pixels(clip.normalize(copies.add(1).div(2)))  # (N·B, D)
    embeds = embeds.to(at_least_float32(images.dtype))
    dists = clip_distance(embeds, tile_text(text_embed, copies.shape[0] // batch), distance).view(-1, batch)  # (N, B)
    return dists.mean(dim=0)  # (B,)


def tile_text(text_embed: torch.Tensor, copies: int) -> torch.Tensor:
    """Text embeddings (1 or B, D) laid out like the copy-major views: (1 or N·B, D), float32 at least."""
    text_embed = text_embed.to(at_least_float32(text_embed.dtype))
    return text_embed if text_embed.shape[0] == 1 else text_embed.repeat(copies, 1)


def background_mse(images: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``((x - x_ref) ⊙ (1 - m))²``: the MSE half of ``D_bg``."""
    return ((images - reference) * (1 - mask)).pow(2).mean(dim=(1, 2, 3))
