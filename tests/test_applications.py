"""The application recipes: what each one feeds to edit(), checked on a random-weights toy world."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bdlib.applications import (
    default_removal_k,
    extend_canvas,
    extrapolate,
    paint_scribble,
    removal_input,
    remove_object,
    replace_background,
)
from bdlib.edit import edit
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
    assert removed.prompt == "" and removed.settings.k == default_removal_k(random_toy_world) == 2
    assert torch.equal(removed.images[0][:, mask[0] == 0], image[:, mask[0] == 0])  # the background is exact
    assert torch.isnan(removed.distances).all()  # nothing to rank by


def test_removal_input_is_the_harmonic_fill(example):
    image, mask = example
    filled = removal_input(image, mask)[0]
    hole = mask[0].bool()
    assert torch.equal(filled[:, ~hole], image[:, ~hole])  # outside the region: the input
    cross = (filled.roll(1, 1) + filled.roll(-1, 1) + filled.roll(1, 2) + filled.roll(-1, 2)) / 4
    inner = hole & ~torch.nn.functional.max_pool2d((~hole).float()[None], 3, 1, 1)[0].bool()  # away from the border
    assert (filled - cross)[:, inner].abs().max() < 0.02  # each filled pixel ≈ the mean of its neighbours


class CountingClip(torch.nn.Module):
    """A CLIP that counts how often it encodes pixels."""

    def __init__(self, clip):
        super().__init__()
        self.clip, self.calls = clip, 0
        self.input_resolution = clip.input_resolution

    def normalize(self, images01):
        return self.clip.normalize(images01)

    def encode_text(self, prompts):
        return self.clip.encode_text(prompts)

    def encode_pixels(self, pixels):
        self.calls += 1
        return self.clip.encode_pixels(pixels)


@pytest.mark.parametrize("official", [False, True])
def test_the_empty_prompt_has_no_clip_term(random_toy_world, example, official):
    image, mask = example
    world = dataclasses.replace(random_toy_world, clip=CountingClip(random_toy_world.clip))
    records = []
    ranking = 1 if official else 0  # the official code still ranks by the distance to "": one CLIP call per edit
    edit(world, image, mask, "", official=official, callback=records.append)
    assert world.clip.calls == ranking and all(float(r.losses.total.sum()) == 0 for r in records)
    records.clear()
    edit(world, image, mask, "", official=official, algorithm="local", lam=100.0, callback=records.append)
    assert world.clip.calls == 2 * ranking
    # Algorithm 1 keeps its background loss in paper mode; the official cond_fn returns 0 for an empty prompt
    assert all((float(r.losses.total.sum()) == 0) == official for r in records)


def test_an_official_prompt_of_spaces_guides_and_the_empty_prompt_still_ranks(random_toy_world, example):
    """The official cond_fn tests ``prompt == ""``: a prompt of spaces is a prompt. It ranks every result by CLIP's
    distance to the embedding of the prompt, "" included (image_editor.py:166, 282)."""
    image, mask = example
    world = dataclasses.replace(random_toy_world, clip=CountingClip(random_toy_world.clip))
    edit(world, image, mask, " ", official=True)
    assert world.clip.calls > 1  # guidance at every step, then the ranking
    world.clip.calls = 0
    edit(world, image, mask, " ")
    assert world.clip.calls == 0  # the paper's mode: spaces are the empty prompt
    ranked = edit(world, image, mask, "", official=True, samples=3, seed=2)
    assert torch.isfinite(ranked.distances).all() and torch.all(ranked.distances[:-1] <= ranked.distances[1:])
    assert torch.isnan(edit(world, image, mask, "", samples=3, seed=2).distances).all()
