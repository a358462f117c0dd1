"""The application recipes: what each one feeds to edit(), checked on a random-weights toy world."""

from __future__ import annotations

import pytest
import torch

from bdlib.applications import extend_canvas, extrapolate, paint_scribble, remove_object, replace_background
from bdlib.worlds.toy.tasks import example_task


@pytest.fixture(scope="module")
def example():
    task = example_task()
    return task.image, task.mask


def test_extend_canvas_shifts_and_masks_the_new_strip(example):
    image, _ = example
    shifted, mask = extend_canvas(image, "right", 0.25)
    assert mask[0, 0, :, 24:].min() == 1 and mask[0, 0, :, :24].max() == 0
    torch.testing.assert_close(shifted[0, :, :, :24], image[:, :, 8:])
    shifted, mask = extend_canvas(image, "up", 0.25)
    assert mask[0, 0, :8].min() == 1 and mask[0, 0, 8:].max() == 0
    torch.testing.assert_close(shifted[0, :, 8:], image[:, :24])
    with pytest.raises(ValueError, match="direction must be one of"):
        extend_canvas(image, "sideways")
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        extend_canvas(image, "left", 1.5)


def test_paint_scribble_only_inside_the_scribble(example):
    image, mask = example
    painted = paint_scribble(image, mask, (1.0, 0.0, 0.0))
    inside = mask.bool().expand(3, -1, -1)
    assert torch.allclose(painted[0][inside].view(3, -1)[0], torch.tensor(1.0))
    assert torch.equal(painted[0][~inside], image[~inside])


def test_recipes_keep_what_they_promise(random_toy_world, example):
    image, mask = example
    outpainted = extrapolate(random_toy_world, image, "a red circle", "left", 0.25)
    kept = outpainted.mask[0, 0] == 0
    assert torch.equal(outpainted.images[0][:, kept], outpainted.image[0][:, kept])
    background = replace_background(random_toy_world, image, mask, "a red circle")
    assert torch.equal(background.images[0][:, mask[0] == 1], image[:, mask[0] == 1])  # the object stays
    removed = remove_object(random_toy_world, image, mask)
    assert removed.settings.guidance_scale == 0 and removed.prompt == ""
