"""Extending augmentations (paper, section 4.2): average the CLIP gradient over geometric copies of x̂_0.

A single CLIP view can be fooled by pixel-level noise (an adversarial example); a change that survives
small rotations, shifts and perspective warps has to be a real change of content. The official code uses
one clean copy plus ``N - 1`` copies through kornia's ``RandomAffine(15°, translate 0.1, p 0.7)`` and
``RandomPerspective(0.7, p 0.7)``, ``N = 8``.

Here both transforms of a copy are composed into one homography and applied with a single
``kornia.geometry.transform.warp_perspective`` call for the whole batch (border padding), with every
random draw taken from a ``torch.Generator`` so that a seed fixes the result.
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective


class ExtendingAugmentations:
    """``(B, C, S, S) → (N·B, C, S, S)``: copy 0 is the input, copies 1..N-1 are random warps of it."""

    def __init__(
        self,
        num: int = 8,
        degrees: float = 15.0,
        translate: float = 0.1,
        p_affine: float = 0.7,
        distortion: float = 0.7,
        p_perspective: float = 0.7,
    ) -> None:
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"the number of augmentations must be an integer >= 1 (1 = no augmentation), got {num!r}")
        self.num = num
        self.degrees, self.translate, self.p_affine = degrees, translate, p_affine
        self.distortion, self.p_perspective = distortion, p_perspective

    def homographies(self, count: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` random 3x3 maps (affine then perspective), in pixel coordinates of a ``size``² image."""

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

        centre = (size - 1) / 2
        # affine: rotation about the centre by θ ∈ [-deg, deg], shift by up to translate·size
        use_affine = torch.rand(count, generator=generator) < self.p_affine
        theta = uniform(-self.degrees, self.degrees, count) * math.pi / 180 * use_affine
        shift = uniform(-self.translate * size, self.translate * size, count, 2) * use_affine[:, None]
        cos, sin = theta.cos(), theta.sin()
        affine = torch.zeros(count, 3, 3, dtype=torch.float64)
        affine[:, 0, 0], affine[:, 0, 1], affine[:, 1, 0], affine[:, 1, 1] = cos, -sin, sin, cos
        affine[:, 0, 2] = centre - cos * centre + sin * centre + shift[:, 0]
        affine[:, 1, 2] = centre - sin * centre - cos * centre + shift[:, 1]
        affine[:, 2, 2] = 1
        # perspective: each corner moves inwards by up to distortion · size/2 along each axis
        use_persp = torch.rand(count, generator=generator) < self.p_perspective
        corners = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=torch.float64)
        inwards = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
        offsets = uniform(0, self.distortion * size / 2, count, 4, 2) * inwards * use_persp[:, None, None]
        src = corners.expand(count, 4, 2)
        perspective = get_perspective_transform(src, src + offsets)
        return perspective @ affine  # (count, 3, 3)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.num == 1:
            return images
        batch, _, height, width = images.shape
        if height != width:
            raise ValueError(f"augmentations expect square images, got {height}x{width}: pool to CLIP's size first")
        maps = self.homographies((self.num - 1) * batch, height, generator).to(images.device, images.dtype)
        copies = images.repeat(self.num - 1, 1, 1, 1)  # (N-1)·B, copy-major
        warped = warp_perspective(copies, maps, (height, width), padding_mode="border", align_corners=True)
        return torch.cat([images, warped], dim=0)  # (N·B, C, S, S)
