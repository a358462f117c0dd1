"""Extending augmentations (paper, section 4.2): average the CLIP gradient over geometric copies of x̂_0.

A single CLIP view can be fooled by pixel-level noise (an adversarial example); a change that survives
small rotations, shifts and perspective warps has to be a real change of content. The official code uses
one clean copy plus ``N - 1`` copies through kornia's ``RandomAffine(15°, translate 0.1, p 0.7)`` and
``RandomPerspective(0.7, p 0.7)``, ``N = 8``.

Here both transforms of a copy are composed into one homography and applied with a single
``kornia.geometry.transform.warp_perspective`` call for the whole batch (border padding), and the shift goes both
ways (the official warps, kornia's two modules with their quirk of never shifting sideways, are in
:mod:`bdlib.core.official`). Every random number is drawn on the CPU from the caller's generator, or from each
sample's own stream (:class:`bdlib.runtime.randomness.SampleStreams`), so a seed fixes the views on every device.
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective

from bdlib.runtime.randomness import SampleStreams, check_cpu_generator

PARAMS_PER_VIEW = 13  # uniform numbers per warped view: use-affine, angle, 2 shifts, use-perspective, 8 offsets


class ExtendingAugmentations:
    """``(B, C, S, S) → (N·B, C, S, S)``: copy 0 is the input, copies 1..N-1 are random warps of it (copy-major)."""

    def __init__(
        self,
        views: int = 8,
        degrees: float = 15.0,
        translate: float = 0.1,
        p_affine: float = 0.7,
        distortion: float = 0.7,
        p_perspective: float = 0.7,
    ) -> None:
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise ValueError(f"views must be an integer >= 1 (1 = the clean view alone), got {views!r}")
        self.views = views
        self.degrees, self.translate, self.p_affine = degrees, translate, p_affine
        self.distortion, self.p_perspective = distortion, p_perspective

    def maps(self, params: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine and the perspective 3x3 maps ``(count, 3, 3)`` (pixel coordinates of a ``size``² image) from
        ``params`` ``(count, 13)`` of uniform [0, 1) numbers (float64)."""
        count = params.shape[0]
        centre = (size - 1) / 2
        # affine: with probability p, rotation about the centre by θ ∈ [-deg, deg] and a shift by up to translate·size
        use_affine = params[:, 0] < self.p_affine
        theta = (params[:, 1] * 2 - 1) * self.degrees * math.pi / 180 * use_affine
        shift = (params[:, 2:4] * 2 - 1) * self.translate * size * use_affine[:, None]
        cos, sin = theta.cos(), theta.sin()
        affine = torch.zeros(count, 3, 3, dtype=torch.float64)
        affine[:, 0, 0], affine[:, 0, 1], affine[:, 1, 0], affine[:, 1, 1] = cos, -sin, sin, cos
        affine[:, 0, 2] = centre - cos * centre + sin * centre + shift[:, 0]
        affine[:, 1, 2] = centre - sin * centre - cos * centre + shift[:, 1]
        affine[:, 2, 2] = 1
        # perspective: with probability p, each corner moves inwards by up to distortion · size/2 along each axis
        use_persp = params[:, 4] < self.p_perspective
        corners = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=torch.float64)
        inwards = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
        offsets = params[:, 5:].reshape(count, 4, 2) * self.distortion * size / 2 * inwards * use_persp[:, None, None]
        src = corners.expand(count, 4, 2)
        return affine, get_perspective_transform(src, src + offsets)

    def __call__(self, images: torch.Tensor, randomness: torch.Generator | SampleStreams | None = None) -> torch.Tensor:
        """The views of ``images``; ``randomness`` is a CPU generator for the whole batch, or the batch's
        :class:`~bdlib.runtime.randomness.SampleStreams` (image ``i``'s warps then come from sample ``i``'s stream)."""
        if not isinstance(randomness, SampleStreams):
            check_cpu_generator(randomness)  # a missing generator is refused even for one view
        if self.views == 1:
            return images
        batch, _, height, width = images.shape
        if height != width:
            raise ValueError(f"augmentations expect square images, got {height}x{width}: pool to CLIP's size first")
        copies = self.views - 1
        if isinstance(randomness, SampleStreams):
            if len(randomness) != batch:
                raise ValueError(f"{len(randomness)} sample streams for a batch of {batch} images")
            per_sample = randomness.uniform_params((copies, PARAMS_PER_VIEW))  # (B, N-1, 13)
            params = per_sample.transpose(0, 1).reshape(copies * batch, PARAMS_PER_VIEW)  # copy-major
        else:
            params = torch.rand(copies * batch, PARAMS_PER_VIEW, generator=randomness, dtype=torch.float64)
        affine, perspective = (m.to(images.device, images.dtype) for m in self.maps(params, height))
        warped = images.repeat(copies, 1, 1, 1)  # (N-1)·B, copy-major
        warped = warp_perspective(
            warped, perspective @ affine, (height, width), padding_mode="border", align_corners=True
        )
        return torch.cat([images, warped], dim=0)  # (N·B, C, S, S)
