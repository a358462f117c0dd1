"""A smooth fill of a masked region from its border: the start of the removal recipe.

``smooth_fill`` replaces the masked pixels by the *harmonic* interpolation of the pixels around them: the
solution of Laplace's equation ``Δu = 0`` inside the mask with the image as the boundary value, the smoothest
surface that meets the border (each filled pixel is the mean of its four neighbours). It is solved on an image
pyramid: the hole is filled at a coarse scale first, where a few Jacobi sweeps cross it, then refined level by
level, so the cost does not grow with the square of the hole's size as plain Jacobi iteration does.

Removing an object is then "paint the hole with the background, then let blended diffusion make it look
real" from a low noise level: the same idea as the paper's scribble-guided editing, with the background's
own colours as the scribble (:func:`bdlib.applications.remove_object`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NEIGHBOURS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])


def _jacobi(x: torch.Tensor, known: torch.Tensor, hole: torch.Tensor, sweeps: int) -> torch.Tensor:
    """``sweeps`` Jacobi sweeps of Laplace's equation inside ``hole`` (bool, broadcast over channels)."""
    channels = x.shape[1]
    kernel = _NEIGHBOURS.to(x).view(1, 1, 3, 3).repeat(channels, 1, 1, 1)
    for _ in range(sweeps):
        mean = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
        x = torch.where(hole, mean, known)
    return x


def smooth_fill(image: torch.Tensor, mask: torch.Tensor, sweeps: int = 40, coarsest: int = 4) -> torch.Tensor:
    """``image`` (B, C, H, W) with the pixels where ``mask`` (B or 1, 1, H, W) is 1 replaced by the harmonic
    interpolation of the pixels around them. Pixels outside the mask are returned unchanged."""
    hole = mask.expand(image.shape[0], 1, *image.shape[-2:]) > 0.5  # (B, 1, H, W)
    if not bool(hole.any()):
        return image.clone()
    if bool(hole.all()):
        raise ValueError("the mask covers the whole image: there is no border to fill the region from")
    height, width = image.shape[-2:]
    if min(height, width) > coarsest:
        # the coarse level: a mean of the known pixels only, so the hole does not leak into the average
        keep = (~hole).to(image.dtype)
        size = ((height + 1) // 2, (width + 1) // 2)
        weight = F.adaptive_avg_pool2d(keep, size)
        coarse_image = F.adaptive_avg_pool2d(image * keep, size) / weight.clamp(min=1e-8)
        coarse_hole = (weight < 0.5).to(image.dtype)
        if bool((coarse_hole > 0.5).all()):  # nothing known at the coarse level: start from the known mean
            coarse = (image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True)
            start = coarse.expand_as(image)
        else:
            coarse = smooth_fill(coarse_image, coarse_hole, sweeps, coarsest)
            start = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    else:
        keep = (~hole).to(image.dtype)
        start = ((image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True)).expand_as(image)
    x = torch.where(hole, start, image)
    return _jacobi(x, image, hole, sweeps)
