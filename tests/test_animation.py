"""bdlib.course.animation: chains of per-step records as GIF/WebP animations, pixel-exact and small enough."""

from __future__ import annotations

import base64
import io

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from bdlib.core.sampling import SampleStep
from bdlib.course.animation import GAP, HEADER, animate_chain, chain_frames, enlarge, pick_steps
from bdlib.course.viz import to_numpy_image


def fake_chain(steps: int = 12, batch: int = 2, size: int = 32, seed: int = 0) -> list[SampleStep]:
    """A chain's records: x_t noise shrinking towards a flat image, x̂_0 and the step's output."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, 3, size, size, generator=g) * 0.2 - 0.1
    records = []
    for i, t in enumerate(range(steps - 1, -1, -1)):
        level = t / max(steps - 1, 1)
        x_t = clean + level * torch.randn(batch, 3, size, size, generator=g)
        records.append(SampleStep(t, 40 * t, x_t, clean + 0.01 * i, x_t, x_t * 0.9))
    return records


def test_pick_steps_keeps_first_and_last():
    assert pick_steps(5, 30) == [0, 1, 2, 3, 4]
    picked = pick_steps(100, 30)
    assert picked[0] == 0 and picked[-1] == 99 and len(picked) == 30 and picked == sorted(set(picked))
    with pytest.raises(ValueError, match="no records"):
        pick_steps(0, 30)


def test_enlarge_is_nearest_neighbour():
    picture = np.array([[0.0, 1.0], [0.5, 0.25]])
    block = enlarge(picture, 3)
    assert block.shape == (6, 6, 3) and block.dtype == np.uint8
    assert (block[:3, :3] == 0).all() and (block[:3, 3:] == 255).all() and (block[3:, :3] == 128).all()


def test_frames_place_each_image_pixel_for_pixel():
    records = fake_chain(steps=4, batch=2)
    frames = chain_frames(records, ("x_t", "pred_x0"), samples=(0, 1))
    assert len(frames) == 4
    height, width, channels = frames[0].shape
    assert channels == 3 and width >= 2 * 160 and height >= 2 * 160  # 32 px images drawn at x5: 160 px each
    expected = enlarge(to_numpy_image(records[2].pred_x0[1]), 5)  # column 1, row 1 of frame 2
    top, left = HEADER + 160 + GAP, GAP + 160 + GAP
    assert np.array_equal(frames[2][top : top + 160, left : left + 160], expected), "placed without resampling"


def test_gif_round_trip_and_display():
    records = fake_chain(steps=40)
    animation = animate_chain(records, max_frames=10, fps=5)
    assert animation.format == "gif" and animation.frames == 10
    decoded = iio.imread(io.BytesIO(animation.data), index=None, extension=".gif")
    assert decoded.shape[0] == 10 and (decoded.shape[2], decoded.shape[1]) == animation.size
    gif = Image.open(io.BytesIO(animation.data))
    assert gif.info.get("loop") == 0 and gif.info["duration"] == 200  # 5 frames per second, looping
    bundle = animation._repr_mimebundle_()
    assert base64.b64decode(bundle["image/gif"]) == animation.data and "10 frames" in bundle["text/plain"]


def test_webp_and_save(tmp_path):
    animation = animate_chain(fake_chain(steps=6), fmt="webp", path=tmp_path / "chain" / "edit.webp")
    assert animation.path.read_bytes() == animation.data and animation.data[8:12] == b"WEBP"
    assert "image/webp" in animation._repr_mimebundle_()
    with pytest.raises(ValueError, match="format"):
        animate_chain(fake_chain(steps=2), fmt="mp3")
    with pytest.raises(KeyError, match="'fg'"):
        animate_chain(fake_chain(steps=2), keys=("fg",))


def test_a_chain_of_pure_noise_stays_under_two_megabytes():
    """The worst case for compression: 30 frames of three noise images, 160 px each."""
    g = torch.Generator().manual_seed(1)
    records = [
        SampleStep(r.t, r.timestep, *(torch.randn(r.x_t.shape, generator=g) for _ in range(4)))
        for r in fake_chain(steps=30, batch=1)
    ]
    animation = animate_chain(records)
    assert animation.frames == 30 and len(animation.data) < 2 * 1024 * 1024
