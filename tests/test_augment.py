"""bdlib.core.augment: the extending augmentations (view 0 the input, warps from the caller's randomness)."""

from __future__ import annotations

import pytest
import torch

from bdlib.core.augment import ExtendingAugmentations
from bdlib.runtime.randomness import SampleStreams


def images(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(7))


def test_view_zero_is_the_input_and_the_layout_is_copy_major():
    x = images(batch=3)
    views = ExtendingAugmentations(5)(x, torch.Generator().manual_seed(0))
    assert views.shape == (15, 3, 16, 16)
    assert torch.equal(views[:3], x)
    assert all(not torch.equal(views[3 * c + i], x[i]) for c in range(1, 5) for i in range(3))


def test_with_probability_zero_every_view_is_the_input():
    x = images()
    identity = ExtendingAugmentations(4, p_affine=0.0, p_perspective=0.0)
    views = identity(x, torch.Generator().manual_seed(0))
    assert torch.allclose(views, x.repeat(4, 1, 1, 1), atol=1e-5)


def test_one_view_is_the_input_itself():
    x = images()
    assert ExtendingAugmentations(1)(x, torch.Generator()) is x


def test_the_shift_goes_both_ways_and_stays_within_its_range():
    augment = ExtendingAugmentations(2, degrees=0.0, p_affine=1.0, p_perspective=0.0)
    params = torch.rand(200, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    affine, _ = augment.maps(params, 32)
    shifts = affine[:, :2, 2]  # no rotation: the translation itself, in pixels
    assert shifts.abs().max() <= 0.1 * 32
    for axis in (0, 1):  # both signs on both axes (kornia's official warps never shift sideways)
        assert shifts[:, axis].min() < -1 and shifts[:, axis].max() > 1


def test_the_same_randomness_gives_the_same_views():
    x = images()
    augment = ExtendingAugmentations(4)
    first = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, augment(x, torch.Generator().manual_seed(4)))


def test_a_samples_views_do_not_depend_on_its_batch():
    x = images(batch=3)
    augment = ExtendingAugmentations(4)
    together = augment(x, SampleStreams(9, [(0,), (1,), (2,)]))
    alone = augment(x[1:2], SampleStreams(9, [(1,)]))
    assert torch.allclose(together[1::3], alone, atol=1e-6)


@pytest.mark.parametrize(
    ("views", "match"),
    [(0, "views must be an integer >= 1"), (2.5, "views must be an integer"), (True, "views must be an integer")],
)
def test_a_bad_number_of_views_is_refused(views, match):
    with pytest.raises(ValueError, match=match):
        ExtendingAugmentations(views)


def test_missing_randomness_and_non_square_images_are_refused():
    augment = ExtendingAugmentations(3)
    with pytest.raises(ValueError, match="generator"):
        augment(images(), None)
    with pytest.raises(ValueError, match="square"):
        augment(torch.zeros(1, 3, 8, 16), torch.Generator())
    with pytest.raises(ValueError, match="2 sample streams for a batch of 3"):
        augment(images(batch=3), SampleStreams(0, [(0,), (1,)]))
