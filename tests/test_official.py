"""bdlib.core.official: the official code's choices that the step fixtures do not cover."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bdlib.core import official


class PixelSpy:
    """A 'CLIP' that keeps the pixels it is given and embeds them linearly."""

    input_resolution = 16

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []
        self.weight = torch.randn(3 * 16 * 16, 8, generator=torch.Generator().manual_seed(0))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        self.seen.append(pixels)
        return pixels.flatten(1) @ self.weight


def test_the_ranking_view_is_black_outside_unnormalised_and_resized_without_antialiasing():
    """unaugmented_clip_distance: x̂_0/2 + ½ clamped, times the mask (black), F.resize of torchvision 0.10 (bilinear,
    no antialiasing for tensors), no CLIP normalisation."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:40, 20:50] = 1
    clip = PixelSpy()
    official.rank_distances(clip, images, mask, torch.randn(1, 8))
    expected = F.interpolate((images / 2 + 0.5).clamp(0, 1) * mask, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(clip.seen[0], expected, rtol=0, atol=1e-7)
    smoothed = F.interpolate((images / 2 + 0.5).clamp(0, 1) * mask, size=(16, 16), mode="bilinear", antialias=True)
    assert (clip.seen[0] - smoothed).abs().max() > 0.05  # an antialiased resize would be a different view


def test_inputs_are_resized_as_the_official_code_does():
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    array = ((image[0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    lanczos = np.asarray(Image.fromarray(array).resize((32, 32), Image.LANCZOS))
    expected = torch.from_numpy(lanczos.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)
    torch.testing.assert_close(official.resize_image(image, 32), expected)
    mask = torch.zeros(1, 1, 40, 48)
    mask[..., 5:20, 7:30] = 1
    resized = official.resize_mask(mask, 32)
    assert resized.shape == (1, 1, 32, 32) and set(resized.unique().tolist()) == {0.0, 1.0}


def test_the_table_names_every_choice_in_both_modes():
    assert len({row.choice for row in official.DIFFERENCES}) == len(official.DIFFERENCES)
    for row in official.DIFFERENCES:
        assert all(cell.strip() for cell in (row.paper, row.official_code, row.bdlib_default, row.bdlib_official))
    table = official.differences_table()
    assert table.count("\n") == len(official.DIFFERENCES) + 1
    for choice in ("augmentation warps", "background noise", "512x512 class-conditional model", "8-bit output"):
        assert choice in table


@pytest.mark.parametrize("indices", [[0, 1, 2, 3, 4, 5, 6, 7], [5, 6, 7, 8, 9]])
def test_official_streams_group_samples_by_fours(indices):
    streams = official.group_streams(3, indices, "cpu")
    assert streams.groups == [i // 4 for i in indices]
