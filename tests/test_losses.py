"""bdlib.core.losses: the CLIP distances, the range loss, the background MSE and what CLIP sees of a region."""

from __future__ import annotations

import math

import pytest
import torch

from bdlib.core.losses import (
    background_mse,
    clip_distance,
    cosine_distance,
    d_clip,
    masked_clip_pixels,
    range_loss,
    spherical_distance,
)


def at_angle(theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two vectors of different lengths at angle ``theta`` in a plane of R^4 (float64)."""
    a = torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    b = 0.5 * torch.tensor([math.cos(theta), math.sin(theta), 0.0, 0.0], dtype=torch.float64)
    return a, b


@pytest.mark.parametrize("theta", [1e-3, 0.1, 0.5, 1.0, math.pi / 2, 2.5, math.pi])
def test_the_spherical_distance_is_half_the_squared_angle(theta):
    a, b = at_angle(theta)
    assert float(spherical_distance(a, b)) == pytest.approx(theta**2 / 2, rel=1e-9, abs=1e-15)


def test_the_cosine_distance_agrees_for_small_angles_only():
    small = at_angle(0.05)
    assert float(cosine_distance(*small)) == pytest.approx(float(spherical_distance(*small)), rel=1e-3)  # θ⁴/24
    right = at_angle(math.pi / 2)
    assert float(cosine_distance(*right)) == pytest.approx(1.0)
    assert float(spherical_distance(*right)) == pytest.approx(math.pi**2 / 8)  # 1.23: grows faster far away


def test_distances_ignore_length_and_broadcast_rows():
    a = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    text = torch.randn(1, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for kind in ("spherical", "cosine"):
        d = clip_distance(a, text, kind)
        assert d.shape == (5,)
        assert torch.allclose(clip_distance(7 * a, text, kind), d)
        assert torch.allclose(clip_distance(a, a, kind), torch.zeros(5, dtype=a.dtype), atol=1e-7)
    with pytest.raises(ValueError, match="distance must be one of spherical, cosine, got 'euclid'"):
        clip_distance(a, text, "euclid")


def test_the_range_loss_counts_only_what_leaves_the_pixel_range():
    x = torch.zeros(2, 3, 4, 4)
    x[0] = 0.99  # inside [-1, 1]
    x[1, 0, 0, 0] = 1.5  # one value 0.5 above
    x[1, 1, 0, 0] = -3.0  # one value 2 below
    assert range_loss(x).tolist() == pytest.approx([0.0, (0.5**2 + 2.0**2) / 48])


def test_the_background_mse_ignores_the_region():
    image = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    inside = image + 5 * mask  # changed only inside the region
    assert float(background_mse(inside, image, mask)) == 0
    outside = image + 0.5 * (1 - mask)
    assert float(background_mse(outside, image, mask)) == pytest.approx(0.25 * 48 / 64)


class LinearClip:
    """A CLIP of one linear map over 4x4 pixels, normalisation ``(x - 0.5) / 0.5``."""

    input_resolution = 4

    def __init__(self):
        self.weight = torch.randn(48, 6, generator=torch.Generator().manual_seed(2))

    def normalize(self, images01):
        return (images01 - 0.5) / 0.5

    def encode_pixels(self, pixels):
        return pixels.flatten(1) @ self.weight


def test_clip_sees_the_region_on_mid_grey():
    clip = LinearClip()
    images = torch.full((1, 3, 8, 8), 0.8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1  # the top-left quarter: one pooled pixel of four... two by two
    pixels = masked_clip_pixels(clip, images, mask)
    assert pixels.shape == (1, 3, 4, 4)
    assert torch.allclose(pixels[..., :2, :2], torch.full((1, 3, 2, 2), 0.8))  # the region as it is
    assert torch.equal(pixels[..., 2:, 2:], torch.zeros(1, 3, 2, 2))  # outside: 0 in [-1, 1], mid-grey


def test_d_clip_averages_over_views_laid_out_copy_major():
    clip = LinearClip()
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(3, 1, 8, 8)
    text = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))  # one prompt per image
    one = d_clip(clip, images, mask, text)
    assert one.shape == (3,)
    same = d_clip(clip, images, mask, text, views=lambda pooled: pooled.repeat(4, 1, 1, 1))
    assert torch.allclose(same, one)  # four identical views: the same distance
    # copy 1 of every image replaced by image 0's: the average moves for images 1 and 2 only
    swapped = d_clip(clip, images, mask, text, views=lambda p: torch.cat([p, p[:1].expand_as(p)]))
    assert swapped[0] == pytest.approx(float(one[0]), rel=1e-6)
    assert not torch.allclose(swapped[1:], one[1:])
