"""Toy world: vocabulary, procedural scenes and editing tasks."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from bdlib.worlds.toy.scenes import BackgroundSpec, ToyObject, generate_scenes, render_scene, render_spec
from bdlib.worlds.toy.tasks import TASK_KINDS, example_task, generate_tasks, make_examples, make_task
from bdlib.worlds.toy.vocab import (
    COLOR_RGB,
    COLORS,
    SHAPES,
    build_caption,
    color_table,
    object_phrase,
    parse_prompt,
)


@pytest.fixture(scope="module")
def scenes():
    return generate_scenes(500, seed=123)


@pytest.fixture(scope="module")
def tasks():
    return generate_tasks(60, seed=7)


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_sizes_and_distinct_colours():
    assert len(COLORS) == 7 and len(SHAPES) == 3
    rgb = color_table()
    assert rgb.shape == (7, 3) and rgb.min() >= -1 and rgb.max() <= 1
    distances = torch.cdist(rgb, rgb) + 10 * torch.eye(7)
    assert distances.min() > 0.5  # every pair of colours far apart (in [-1, 1] units)
    assert set(COLOR_RGB) == set(COLORS)


def test_caption_grammar():
    assert object_phrase("red", "circle") == "a red circle"
    assert object_phrase("orange", "square") == "an orange square"
    assert build_caption([("red", "circle"), ("blue", "triangle")]) == "a red circle and a blue triangle"
    three = [("red", "circle"), ("blue", "square"), ("white", "triangle")]
    assert build_caption(three) == "a red circle, a blue square and a white triangle"
    two_orange = [("orange", "circle"), ("orange", "square")]
    assert build_caption(two_orange) == "an orange circle and an orange square"
    assert build_caption([]) == ""


def test_scene_captions_grammar(scenes):
    phrase = r"(?:a (?:red|green|blue|yellow|purple|white)|an orange) (?:circle|square|triangle)"
    pattern = re.compile(rf"^{phrase}(?:(?:, {phrase})? and {phrase})?$")
    for caption in scenes.captions:
        assert pattern.match(caption), caption
    assert any(c.startswith("an orange") for c in scenes.captions)
    assert any(" and an orange" in c for c in scenes.captions)


def test_parse_prompt_round_trips_every_caption(scenes):
    for i, caption in enumerate(scenes.captions):
        labels = scenes.labels[i, : int(scenes.counts[i])].tolist()
        assert parse_prompt(caption) == [(COLORS[c], SHAPES[s]) for c, s in labels]
    assert parse_prompt("a red circle") == [("red", "circle")]
    assert parse_prompt("  A Red Circle. ") == [("red", "circle")]
    assert parse_prompt("") == [] and parse_prompt("   ") == []


@pytest.mark.parametrize(
    "prompt, word",
    [("a pink circle", "pink"), ("a red hexagon", "hexagon"), ("a red circle and a teal square", "teal")],
)
def test_parse_prompt_unknown_word_lists_vocabulary(prompt, word):
    with pytest.raises(ValueError) as info:
        parse_prompt(prompt)
    message = str(info.value)
    assert repr(word) in message
    assert all(c in message for c in COLORS) and all(s in message for s in SHAPES)


@pytest.mark.parametrize("prompt", ["red", "a circle red", "a red circle and", "a red red circle"])
def test_parse_prompt_malformed(prompt):
    with pytest.raises(ValueError, match="COLOUR SHAPE"):
        parse_prompt(prompt)


# ---------------------------------------------------------------- scenes


def test_shapes_and_range(scenes):
    b = len(scenes)
    assert scenes.images.shape == (b, 3, 32, 32) and scenes.backgrounds.shape == (b, 3, 32, 32)
    assert scenes.masks.shape == (b, 3, 1, 32, 32)
    assert scenes.labels.shape == (b, 3, 2) and scenes.boxes.shape == (b, 3, 4)
    assert scenes.images.min() >= -1 and scenes.images.max() <= 1
    assert scenes.masks.min() >= 0 and scenes.masks.max() <= 1
    assert set(scenes.counts.tolist()) == {1, 2, 3}


def test_determinism_and_seeds_differ():
    a, b, c = generate_scenes(32, seed=5), generate_scenes(32, seed=5), generate_scenes(32, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(generate_scenes(8, generator=g1).images, generate_scenes(8, generator=g2).images)


def test_empty_slots(scenes):
    for m in range(3):
        empty = scenes.counts <= m
        assert (scenes.labels[empty, m] == -1).all()
        assert (scenes.masks[empty, m] == 0).all()
        assert (scenes.labels[~empty, m] >= 0).all()
        assert (scenes.masks[~empty, m].flatten(1).max(dim=1).values == 1).all()


def test_masks_match_object_colours(scenes):
    table = color_table()
    for m in range(3):
        for i in torch.nonzero(scenes.counts > m).flatten().tolist()[:100]:
            inside = scenes.masks[i, m, 0] == 1  # (H, W): full coverage
            expected = table[scenes.labels[i, m, 0]].view(3, 1)
            pixels = scenes.images[i][:, inside]  # (3, N)
            assert torch.allclose(pixels, expected.expand_as(pixels), atol=1e-4)
    outside = scenes.masks.sum(dim=1) == 0  # (B, 1, H, W)
    assert (scenes.images - scenes.backgrounds).abs().amax(1, keepdim=True)[outside].max() == 0


def test_no_overlap_and_inside_image(scenes):
    support = (scenes.masks > 0).float().sum(dim=1)
    assert support.max() <= 1  # no pixel is touched by two objects
    for i in range(len(scenes)):
        boxes = scenes.boxes[i, : int(scenes.counts[i])]
        assert (boxes[:, :2] >= 1 - 1e-4).all() and (boxes[:, 2:] <= 31 + 1e-4).all()
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                gap_x = max(boxes[a, 0], boxes[b, 0]) - min(boxes[a, 2], boxes[b, 2])
                gap_y = max(boxes[a, 1], boxes[b, 1]) - min(boxes[a, 3], boxes[b, 3])
                assert max(gap_x, gap_y) >= 1 - 1e-4


def test_masks_stay_in_boxes(scenes):
    centres = torch.arange(32) + 0.5
    for i in range(50):
        for m in range(int(scenes.counts[i])):
            x0, y0, x1, y1 = scenes.boxes[i, m].tolist()
            out_x = (centres < x0 - 0.5) | (centres > x1 + 0.5)
            out_y = (centres < y0 - 0.5) | (centres > y1 + 0.5)
            outside = out_y.view(32, 1) | out_x.view(1, 32)
            assert (scenes.masks[i, m, 0][outside] == 0).all()


def test_sizes_and_distinct_pairs(scenes):
    half = (scenes.boxes[..., 2] - scenes.boxes[..., 0]) / 2
    present = scenes.labels[..., 0] >= 0
    assert half[present].min() >= 4 - 1e-4 and half[present].max() <= 8 + 1e-4
    for i in range(len(scenes)):
        pairs = [tuple(p) for p in scenes.labels[i, : int(scenes.counts[i])].tolist()]
        assert len(set(pairs)) == len(pairs)
    big = generate_scenes(4, seed=1, size=64)
    assert big.images.shape == (4, 3, 64, 64)
    big_half = (big.boxes[..., 2] - big.boxes[..., 0]) / 2
    assert big_half[big.labels[..., 0] >= 0].min() >= 8 - 1e-4


def test_count_probs():
    only_three = generate_scenes(50, seed=0, count_probs=(0, 0, 1))
    assert (only_three.counts == 3).all()
    singles = generate_scenes(20, seed=0, min_objects=1, max_objects=1)
    assert (singles.counts == 1).all() and singles.masks.shape[1] == 1
    with pytest.raises(ValueError):
        generate_scenes(4, seed=0, count_probs=(1.0, 0.0))


def test_render_scene_reproduces_generated(scenes):
    for i in range(20):
        again = render_spec(scenes.scene(i))
        assert torch.allclose(again.images[0], scenes.images[i], atol=1e-5)
        assert torch.allclose(again.masks[0, :, 0], scenes.masks[i, : int(scenes.counts[i]), 0], atol=1e-5)
        assert again.captions[0] == scenes.captions[i]


def test_render_scene_explicit():
    bg = BackgroundSpec((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    batch = render_scene(bg, [ToyObject("red", "square", 16.0, 16.0, 4.0)])
    assert batch.captions == ["a red square"] and batch.masks.shape == (1, 1, 1, 32, 32)
    assert batch.masks[0, 0, 0].sum() == 64  # an 8x8 square on the pixel grid, no partial pixels
    assert torch.allclose(batch.images[0, :, 16, 16], color_table()[0])
    assert render_scene(bg, []).captions == [""]
    with pytest.raises(ValueError, match="pink"):
        ToyObject("pink", "square", 16.0, 16.0, 4.0)


# ---------------------------------------------------------------- tasks


def test_tasks_balanced_deterministic_and_prefix_stable(tasks):
    counts = Counter(t.kind for t in tasks)
    assert set(counts) == set(TASK_KINDS) and max(counts.values()) - min(counts.values()) <= 1
    again = generate_tasks(10, seed=7)
    for a, b in zip(again, tasks[:10], strict=True):
        assert a.kind == b.kind and a.prompt == b.prompt and torch.equal(a.image, b.image)
        assert torch.equal(a.mask, b.mask)
    other = generate_tasks(10, seed=8)
    assert any(not torch.equal(a.image, b.image) for a, b in zip(other, tasks[:10], strict=True))
    only = generate_tasks(6, seed=1, kinds=["remove", "add"])
    assert [t.kind for t in only] == ["remove", "add"] * 3
    with pytest.raises(ValueError, match="unknown task kind"):
        make_task("paint", seed=0)


def test_task_masks_binary_and_boxes(tasks):
    for t in tasks:
        assert t.image.shape == (3, 32, 32) and t.mask.shape == (1, 32, 32)
        assert set(t.mask.unique().tolist()) <= {0.0, 1.0} and t.mask.sum() > 0
        x0, y0, x1, y1 = t.region_box
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        ys, xs = torch.nonzero(t.mask[0], as_tuple=True)
        assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == t.region_box
        assert torch.allclose(render_spec(t.scene).images[0], t.image, atol=1e-5)
        parsed = parse_prompt(t.prompt)
        if t.kind == "background":
            assert t.target is None and parsed == [(o.color, o.shape) for o in t.scene.objects]
        elif t.kind == "remove":
            assert t.target is None and t.prompt == ""
        else:
            assert parsed == [t.target]


def test_task_semantics(tasks):
    for t in tasks:
        masks = render_spec(t.scene).masks[0, :, 0]  # (M, H, W)
        support = masks > 0
        if t.kind == "add":
            assert not (support & (t.mask[0] > 0)).any()
            assert t.target not in [(o.color, o.shape) for o in t.scene.objects]
            assert len(t.scene.objects) <= 2 and t.mask.sum() == 144
            expected = t.expected_scene().objects
            assert (expected[-1].color, expected[-1].shape) == t.target and len(expected) == len(support) + 1
        elif t.kind == "background":
            assert not (support.any(0) & (t.mask[0] > 0)).any() and t.expected_scene() is None
        else:
            edited = t.scene.objects[t.object_index]
            assert (t.mask[0][support[t.object_index]] == 1).all()  # covers the object fully
            others = [k for k in range(len(t.scene.objects)) if k != t.object_index]
            assert not (support[others].any(0) & (t.mask[0] > 0)).any()  # and nothing else
            if t.kind == "replace":
                assert t.target[0] != edited.color and t.target[1] != edited.shape
            if t.kind == "recolor":
                assert t.target[0] != edited.color and t.target[1] == edited.shape
            expected = t.expected_scene()
            assert len(expected.objects) == len(t.scene.objects) - (t.kind == "remove")


def test_make_examples(tmp_path):
    task = make_examples(tmp_path)
    image = np.array(Image.open(tmp_path / "scene.png"))
    mask = np.array(Image.open(tmp_path / "scene_mask.png"))
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert np.array_equal(mask > 127, task.mask[0].numpy() > 0.5)
    support = render_spec(task.scene).masks[0, :, 0].sum(0) > 0
    assert not (support.numpy() & (mask > 127)).any()
    assert task.prompt == "a red circle" and example_task().region_box == task.region_box
