"""bdlib.edit with a random-weights toy world: exact background, ranking, batches, seeds and errors."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from bdlib.core.settings import MAX_WEIGHT, MethodSettings
from bdlib.edit import PreparedEdit, edit, finish_edit
from bdlib.runtime.imageio import load_image, load_mask, save_image
from bdlib.worlds import load_world
from bdlib.worlds.toy.tasks import example_task
from bdlib.worlds.toy.world import load_toy_world


@pytest.fixture(scope="module")
def example():
    task = example_task()
    return task.image, task.mask


def test_blended_edit_keeps_the_background_exactly_and_ranks(random_toy_world, example):
    image, mask = example
    records = []
    result = edit(random_toy_world, image, mask, "a red circle", samples=3, seed=1, callback=records.append)
    assert result.images.shape == (3, 3, 32, 32)
    keep = (1 - result.mask).bool().expand_as(result.images)
    assert (result.images - image[None])[keep].abs().max() == 0  # Algorithm 2: exact background
    assert (result.images - image[None])[~keep].abs().max() > 0.05  # and the region did change
    assert torch.all(result.distances[:-1] <= result.distances[1:])
    assert sorted(result.order.tolist()) == [0, 1, 2]
    assert [r.t for r in records] == list(range(6, -1, -1))
    assert all(r.x_prev is r.blend for r in records)  # Algorithm 2: the next step starts from the blend


def test_same_seed_same_result_other_seed_differs(random_toy_world, example):
    image, mask = example
    a = edit(random_toy_world, image, mask, "a red circle", seed=5).images
    b = edit(random_toy_world, image, mask, "a red circle", seed=5).images
    c = edit(random_toy_world, image, mask, "a red circle", seed=6).images
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_algorithm1_changes_the_background(random_toy_world, example):
    image, mask = example
    result = edit(random_toy_world, image, mask, "a red circle", algorithm="local", lam=1000.0)
    keep = (1 - result.mask).bool().expand_as(result.images)
    assert (result.images - image[None])[keep].abs().max() > 0


def test_files_and_inversion(random_toy_world, example, tmp_path):
    image, mask = example
    save_image(image, tmp_path / "in.png")
    Image.fromarray((mask[0].numpy() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    result = edit(random_toy_world, tmp_path / "in.png", tmp_path / "mask.png", "a blue square")
    assert torch.equal(result.mask, load_mask(tmp_path / "mask.png"))
    inverted = edit(random_toy_world, tmp_path / "in.png", tmp_path / "mask.png", "a blue square", invert_mask=True)
    assert torch.equal(inverted.mask, 1 - result.mask)


def test_mask_threshold_is_half_range():
    array = np.array([[0, 1, 127], [128, 200, 255]], dtype=np.uint8)
    assert load_mask(array)[0, 0].tolist() == [[0, 0, 0], [1, 1, 1]]


@pytest.mark.parametrize(
    "mask,match",
    [
        (torch.zeros(1, 1, 32, 32), "the mask is empty"),
        (torch.ones(1, 1, 32, 32), "covers the whole image"),
        (torch.ones(1, 1, 16, 16), "the mask is 16x16 but the image is 32x32"),
    ],
)
def test_bad_masks(random_toy_world, example, mask, match):
    with pytest.raises(ValueError, match=match):
        edit(random_toy_world, example[0], mask, "a red circle")


def test_bad_prompt_k_and_files(random_toy_world, example, tmp_path):
    image, mask = example
    with pytest.raises(ValueError, match="pink"):
        edit(random_toy_world, image, mask, "a pink circle")
    with pytest.raises(ValueError, match=r"k=10 is outside the chain.* give k from 0 .* to 9"):
        edit(random_toy_world, image, mask, "a red circle", k=10)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="is not an image"):
        edit(random_toy_world, tmp_path / "notes.png", mask, "a red circle")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        edit(random_toy_world, tmp_path / "missing.png", mask, "a red circle")
    with pytest.raises(ValueError, match="is a folder"):
        edit(random_toy_world, tmp_path, mask, "a red circle")


def test_bf16_networks_give_close_distances_and_an_exact_background(example):
    # trained weights (a random UNet's zero-initialised head would hide its precision), in float32: the precisions
    # are autocasts of float32 networks, refused in the float64 default
    world = load_toy_world(dtype=torch.float32)
    image, mask = example
    with pytest.raises(ValueError, match=r"precision='bf16'.*float64.*dtype=torch.float32"):
        edit(load_toy_world(), image, mask, "a red circle", precision="bf16")
    first = {}
    for precision in ("fp32", "bf16", "bf16-clip"):
        records = []
        result = edit(world, image, mask, "a red circle", seed=3, k=2, precision=precision, callback=records.append)
        first[precision] = records[0]
        keep = (1 - result.mask).bool().expand_as(result.images)
        assert (result.images - image[None])[keep].abs().max() == 0
    for precision in ("bf16", "bf16-clip"):
        change = (first[precision].losses.clip_dists - first["fp32"].losses.clip_dists).abs().max()
        assert 0 < change < 0.01  # CLIP did run in bf16, and its distances moved only at bf16's precision
    # "bf16-clip" keeps the UNet in float32: the first x̂_0 is bit-identical to fp32's; "bf16" moves it.
    assert torch.equal(first["bf16-clip"].pred_x0, first["fp32"].pred_x0)
    assert not torch.equal(first["bf16"].pred_x0, first["fp32"].pred_x0)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, bf16-clip, fp16-clip"):
        edit(world, image, mask, "a red circle", precision="fp8")


def test_a_compiled_unet_gives_the_same_edit(random_toy_world, example):
    image, mask = example
    world = dataclasses.replace(random_toy_world)  # a copy: the session's world stays eager
    eager = edit(world, image, mask, "a red circle", seed=5, k=2)
    world.compile_unet(backend="eager")  # dynamo's graph capture without inductor's slow code generation
    compiled = world.unet
    world.compile_unet(backend="eager")
    assert world.unet is compiled and compiled._orig_mod is random_toy_world.unet  # wrapped once
    again = edit(world, image, mask, "a red circle", seed=5, k=2)
    torch.testing.assert_close(again.images, eager.images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("ddim", [True, False])
def test_whole_edit_in_both_modes_ddim_and_ddpm(random_toy_world, example, official, ddim):
    image, mask = example
    records = []
    result = edit(
        random_toy_world,
        image,
        mask,
        "a red circle",
        samples=2,
        seed=2,
        ddim=ddim,
        official=official,
        callback=records.append,
    )
    for record in records:  # the blend at every step
        blend = record.fg * mask + record.bg * (1 - mask)
        torch.testing.assert_close(record.blend, blend)
    last = records[-1]
    # paper: the last sample (its background is the clean input); official: x̂_0 of the last step, pasted
    final = last.pred_x0 if official else last.blend
    expected = (final * mask + image[None] * (1 - mask)).clamp(-1, 1)[result.order]
    torch.testing.assert_close(result.images, expected)
    if not ddim:  # a DDPM step at t = 0 ends at the guided mean, not at x̂_0: the two modes differ there
        assert not torch.equal(last.pred_x0, last.fg)


# ----------------------------------------------------------------------------- bad input (issue 16)
def test_non_finite_inputs_are_refused(random_toy_world, example):
    image, mask = example
    for value in (float("nan"), float("inf")):
        bad = image.clone()
        bad[0, 5, 5] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            edit(random_toy_world, bad, mask, "a red circle")
        array = ((image.permute(1, 2, 0).numpy() + 1) / 2).astype(np.float32)
        array[3, 3, 1] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            edit(random_toy_world, array, mask, "a red circle")
        bad_mask = mask.clone()
        bad_mask[0, 0, 0] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            edit(random_toy_world, image, bad_mask, "a red circle")


def test_the_final_paste_never_carries_nan_into_the_background(example):
    image, mask = example
    prepared = PreparedEdit(image[None], mask[None], image[None], mask[None], "a red circle", MethodSettings())
    results = torch.full((2, 3, 32, 32), float("nan"))  # two samples gone wrong everywhere
    finished = finish_edit(prepared, results, torch.zeros(2))
    keep = (mask[None] == 0).expand_as(finished.images)
    assert torch.equal(finished.images[keep], image[None].expand_as(finished.images)[keep])


def test_a_diverging_chain_is_stopped_with_what_to_lower(example):
    image, mask = example
    world = load_toy_world()  # official mode does not clamp x̂_0: a range scale of 1e6 feeds back into inf/NaN
    with pytest.raises(ValueError, match=r"the edit diverged.*range scale 1e\+06.*lower these weights"):
        edit(world, image, mask, "a red circle", official=True, range_scale=1e6, seed=1)


def test_the_largest_accepted_weights_stay_finite_in_the_toy_world(example):
    image, mask = example
    world = load_toy_world()  # x̂_0 clamped (the toy default): MAX_WEIGHT on every weight at once stays finite
    big = dict(guidance_scale=MAX_WEIGHT, range_scale=MAX_WEIGHT, seed=1)
    for extra in ({}, {"algorithm": "local", "lam": MAX_WEIGHT}):
        result = edit(world, image, mask, "a red circle", **big, **extra)
        assert torch.isfinite(result.images).all()
    with pytest.raises(ValueError, match=r"guidance_scale must be in \[0, 1e\+12\]"):
        edit(world, image, mask, "a red circle", guidance_scale=MAX_WEIGHT * 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": True}, "samples must be a positive integer"),
        ({"samples": 0}, "samples must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"dilate": -5}, "dilate must be a whole number of pixels, 0 or more"),
        ({"dilate": 1.5}, "dilate must be a whole number of pixels, 0 or more"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": 2**64}, r"seed must be in \[0, 2\*\*63\)"),
        ({"prompt": None}, "the prompt must be a string"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(random_toy_world, example, kwargs, match):
    image, mask = example
    arguments = {"prompt": "a red circle", **kwargs}
    with pytest.raises(ValueError, match=match):
        edit(random_toy_world, image, mask, **arguments)


@pytest.mark.parametrize(
    "empty", [torch.zeros(1, 3, 0, 0), np.zeros((0, 0, 3), np.uint8), Image.new("RGB", (0, 0)), torch.zeros(3, 32, 0)]
)
def test_an_image_without_pixels_is_refused(random_toy_world, empty):
    with pytest.raises(ValueError, match="pixels"):
        edit(random_toy_world, empty, torch.ones(1, 1, 4, 4), "a red circle")


def test_seeds_equal_modulo_2_to_the_32_give_different_edits(random_toy_world, example):
    image, mask = example
    a = edit(random_toy_world, image, mask, "a red circle", seed=7, k=2).images
    b = edit(random_toy_world, image, mask, "a red circle", seed=7 + 2**32, k=2).images
    c = edit(random_toy_world, image, mask, "a red circle", seed=7 + 2**62, k=2).images
    assert not torch.equal(a, b) and not torch.equal(a, c)


def test_a_batch_that_cannot_fit_in_memory_is_refused_with_a_batch_size_that_fits(
    random_toy_world, example, monkeypatch
):
    image, mask = example
    world = dataclasses.replace(random_toy_world, sample_bytes_per_pixel=40 * 2**10)  # 40 MiB per 32x32 sample
    monkeypatch.setattr("bdlib.runtime.memory.available_memory", lambda: 100 * 2**20)  # 100 MiB free
    with pytest.raises(ValueError, match=r"3 samples in one batch need about 0\.1 GiB.*batch_size=2"):
        edit(world, image, mask, "a red circle", samples=3, k=1)
    assert len(edit(world, image, mask, "a red circle", samples=3, batch_size=2, k=1).images) == 3
    with pytest.raises(ValueError, match=r"100000 samples at 32x32 need about .* GiB .* the input and the results"):
        edit(world, image, mask, "a red circle", samples=100_000)


def test_a_device_this_machine_lacks_is_refused_before_loading():
    with pytest.raises(ValueError, match="cuda:99"):
        load_world("toy", device="cuda:99")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        load_world("toy", device="gpu")


def test_official_samples_share_background_noise_in_batches_of_four(random_toy_world, example):
    """The official code draws one background noise per step for each batch of 4 (its --batch_size), new for every
    batch (iteration): samples 0-3 share theirs, 4-7 theirs, whatever bdlib's own batch size."""
    image, mask = example
    drawn = {}
    for batch_size in (8, 3):
        records = []
        edit(
            random_toy_world,
            image,
            mask,
            "a red circle",
            samples=8,
            seed=1,
            official=True,
            batch_size=batch_size,
            callback=records.append,
        )
        drawn[batch_size] = torch.cat([r.bg for r in records if r.t == 3])  # the first step of each batch
    bg = drawn[8]
    assert all(torch.equal(bg[0], bg[i]) for i in range(1, 4)) and all(torch.equal(bg[4], bg[i]) for i in range(5, 8))
    assert not torch.equal(bg[0], bg[4])
    torch.testing.assert_close(drawn[3], bg)  # the same noise in batches of 3


def test_official_results_keep_the_model_size_and_the_resized_background(random_toy_world, example):
    """The official code writes the model-size result with the background of its LANCZOS-resized input."""
    from bdlib.core import official

    image, mask = example
    big_image = torch.nn.functional.interpolate(image[None], size=(48, 40), mode="bilinear")[0]
    big_mask = torch.nn.functional.interpolate(mask[None], size=(48, 40), mode="nearest")[0]
    result = edit(random_toy_world, big_image, big_mask, "a red circle", official=True, samples=2)
    assert result.images.shape == (2, 3, 32, 32) and result.image.shape == (1, 3, 32, 32)
    resized = official.resize_image(big_image[None], 32)
    keep = (result.mask < 0.5).expand_as(result.images)
    assert torch.equal(result.images[keep], resized.expand_as(result.images)[keep])
    paper = edit(random_toy_world, big_image, big_mask, "a red circle", samples=2)
    assert paper.images.shape == (2, 3, 48, 40)  # the paper's mode: the input's own size and background


def test_deterministic_kernels_are_on_during_the_edit_only(random_toy_world, example):
    image, mask = example
    seen = []
    plain = edit(
        random_toy_world,
        image,
        mask,
        "a red circle",
        seed=4,
        callback=lambda r: seen.append(torch.are_deterministic_algorithms_enabled()),
    )
    on = edit(
        random_toy_world,
        image,
        mask,
        "a red circle",
        seed=4,
        deterministic=True,
        callback=lambda r: seen.append(torch.are_deterministic_algorithms_enabled()),
    )
    half = len(seen) // 2
    assert not any(seen[:half]) and all(seen[half:]) and not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(plain.images, on.images)  # CPU kernels are deterministic already


def test_the_input_counts_in_the_memory_estimate(random_toy_world, monkeypatch):
    """A 3-megapixel input: its decoded copies (48 bytes a pixel, measured: 45) count besides the results (36 a pixel
    and sample), so 200 MiB free cannot take it; the refusal comes before any sample is drawn."""
    monkeypatch.setattr("bdlib.runtime.memory.available_memory", lambda: 200 * 2**20)
    monkeypatch.setattr(importlib.import_module("bdlib.edit"), "draw_samples", lambda *a, **k: pytest.fail("started"))
    image = np.zeros((1500, 2000, 3), np.uint8)
    mask = np.zeros((1500, 2000), np.uint8)
    mask[500:1000, 500:1000] = 255
    with pytest.raises(ValueError, match=r"1 samples at 2000x1500 need about 0\.2 GiB .* the input and the results"):
        edit(random_toy_world, image, mask, "a red circle", k=1)


def test_a_picture_is_refused_before_decoding_when_memory_cannot_take_it(tmp_path, monkeypatch):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0)  # 81 megapixels, under Pillow's limit
    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    monkeypatch.setattr("bdlib.runtime.memory.available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match=r"9000x9000 .* needs about 3\.6 GiB of memory to read, and 1\.0 GiB are free"):
        load_image(tmp_path / "big.png")
