"""CLIP adapter: ViT-B/16 with random weights from the clip package's class, prompts, preprocessing.

Tolerance of the differentiable preprocessing against ``clip.clip._transform(224)`` (PIL) on
``skimage.data.chelsea()`` (300 x 451 -> 224 x 336 -> crop 224), in CLIP-normalised units, measured:
max |diff| 0.0223, mean |diff| 0.0044. One 8-bit grey level is 1 / 255 / 0.2613 = 0.0150 in these units
(the smallest std); PIL resizes in 8 bits, so it rounds each value by up to half a level and clips
overshoot at 0 and 255, while torch keeps floats. The bounds below, 0.03 (two levels) and 0.006, hold
that with a little margin. Torch's bicubic *without* antialias differs by up to 0.31.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bdlib.nets.clip_adapter import (
    CLIP_MEAN,
    CLIP_STD,
    ClipModel,
    count_tokens,
    load_clip,
    normalize01,
    random_clip,
    resize_and_center_crop,
)
from bdlib.worlds.paper.checkpoints import DOWNLOAD_COMMAND, MissingCheckpointError

TINY = dict(  # a small CLIP of the same family (the text vocabulary must stay the real one)
    embed_dim=32,
    image_resolution=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=16,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=2,
)


@pytest.fixture(scope="module")
def vit() -> ClipModel:
    return random_clip("ViT-B/16", seed=0)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.chelsea()  # (300, 451, 3) uint8, bundled with scikit-image


def test_random_vit_b16_has_the_paper_architecture(vit: ClipModel) -> None:
    import clip.model

    assert isinstance(vit.model, clip.model.CLIP)
    assert (vit.input_resolution, vit.embed_dim, vit.context_length) == (224, 512, 77)
    assert vit.model.visual.conv1.weight.shape == (768, 3, 16, 16)
    assert len(vit.model.visual.transformer.resblocks) == 12
    assert len(vit.model.transformer.resblocks) == 12
    assert not any(p.requires_grad for p in vit.parameters())
    assert not vit.training


def test_random_clip_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = random_clip(TINY, seed=1), random_clip(TINY, seed=1), random_clip(TINY, seed=2)
    assert torch.rand(1) == expected_next
    assert torch.equal(a.model.text_projection, b.model.text_projection)
    assert not torch.equal(a.model.text_projection, c.model.text_projection)
    with pytest.raises(ValueError, match="ViT-B/16"):
        random_clip("ViT-H/14")


def test_encode_text_shape(vit: ClipModel) -> None:
    out = vit.encode_text(["a photo of a cat", "a red ball"])
    assert out.shape == (2, 512) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_prompt_longer_than_77_tokens_raises(vit: ClipModel) -> None:
    assert count_tokens("a " * 75) == 77  # 75 words + start + end: exactly at the limit
    assert vit.tokenize(["a " * 75]).shape == (1, 77)
    with pytest.raises(ValueError, match=r"78 tokens.*limit is 77"):
        vit.tokenize(["fine", "a " * 76])
    with pytest.raises(ValueError, match="too long"):
        vit.encode_text(["a very long prompt " * 30])
    with pytest.raises(TypeError):
        vit.tokenize("a single string")


def test_preprocess_matches_the_clip_package_on_a_real_image(vit: ClipModel, chelsea: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip

    reference = clip.clip._transform(224)(Image.fromarray(chelsea))  # (3, 224, 224), PIL bicubic
    x01 = torch.from_numpy(chelsea).permute(2, 0, 1)[None].float() / 255
    ours = vit.preprocess(x01 * 2 - 1)[0]
    error = (ours - reference).abs()
    assert ours.shape == reference.shape == (3, 224, 224)
    assert error.max() < 0.03, error.max()
    assert error.mean() < 0.006, error.mean()

    # Why antialias matters: torch's plain bicubic (a = -0.75, no widening) is far off.
    plain = F.interpolate(x01, size=(224, 336), mode="bicubic", align_corners=False)[..., :, 56:280]
    assert (normalize01(plain)[0] - reference).abs().max() > 0.1


def test_resize_and_crop_geometry() -> None:
    portrait = torch.rand(1, 3, 400, 300)
    assert resize_and_center_crop(portrait, 224).shape == (1, 3, 224, 224)
    small = torch.rand(2, 3, 20, 30)
    assert resize_and_center_crop(small, 32).shape == (2, 3, 32, 32)
    square = torch.rand(1, 3, 224, 224)
    assert torch.equal(resize_and_center_crop(square, 224), square)  # already the right size
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    grey = normalize01(torch.full((1, 3, 2, 2), 0.5))
    assert torch.allclose(grey[0, :, 0, 0], (0.5 - mean) / std)


def test_gradient_flows_through_preprocess_and_encode_image(vit: ClipModel) -> None:
    text = F.normalize(vit.encode_text(["a photo of a dog"]), dim=-1)
    x = (torch.rand(1, 3, 256, 256) * 2 - 1).requires_grad_(True)
    image = F.normalize(vit.encode_image(x), dim=-1)
    assert image.shape == (1, 512)
    (image * text).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_encode_pixels_is_the_official_path_after_own_preprocessing() -> None:
    tiny = random_clip(TINY, seed=0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(tiny.encode_image(x), tiny.encode_pixels(normalize01((x + 1) / 2)))
    with pytest.raises(ValueError, match="32x32"):
        tiny.encode_pixels(torch.zeros(1, 3, 64, 64))


def test_load_clip_never_downloads(tmp_path) -> None:
    with pytest.raises(MissingCheckpointError, match=DOWNLOAD_COMMAND):
        load_clip("ViT-B/16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="local checkpoint"):
        load_clip("RN50", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_clip(tmp_path / "nothing.pt")


@pytest.mark.parametrize("file_format", ["state_dict", "torchscript"])
def test_load_clip_from_a_local_file_is_exact(tmp_path, file_format: str) -> None:
    tiny = random_clip(TINY, seed=3)
    path = tmp_path / "tiny_clip.pt"
    if file_format == "state_dict":
        torch.save(tiny.model.state_dict(), path)
    else:  # the official files are traced TorchScript archives
        example = (torch.zeros(1, 3, 32, 32), tiny.tokenize(["a red circle"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(tiny.model, example).save(str(path))
    loaded = load_clip(path)
    assert loaded.model.text_projection.dtype == torch.float32
    prompts = ["a red circle", "a blue square"]
    assert torch.equal(loaded.encode_text(prompts), tiny.encode_text(prompts))
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    assert torch.equal(loaded.encode_image(x), tiny.encode_image(x))


# ----------------------------------------------------------------------------- loading runs no code (issue 16)
class _CodeInTheFile(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` prints: torch.jit.load runs it while loading the file."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("CODE FROM THE FILE RAN")
        self.weight = state[0]
        self.training = state[1]


def _traced_tiny_clip(path) -> ClipModel:
    tiny = random_clip(TINY, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(tiny.model, (torch.zeros(1, 3, 32, 32), tiny.tokenize(["a red circle"]))).save(str(path))
    return tiny


def _never(*args, **kwargs):
    raise AssertionError("the file was deserialised")


def test_load_clip_never_runs_code_stored_in_the_file(tmp_path, capfd) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_CodeInTheFile()).save(str(tmp_path / "code.pt"))
    with pytest.raises(ValueError, match=r"code\.pt (does not hold CLIP weights|lacks)"):
        load_clip(tmp_path / "code.pt")
    assert "CODE FROM THE FILE RAN" not in capfd.readouterr().out


def test_the_cached_clip_is_checked_against_its_sha256_before_anything_reads_it(tmp_path, monkeypatch) -> None:
    _traced_tiny_clip(tmp_path / "ViT-B-16.pt")  # a TorchScript file, but not OpenAI's
    monkeypatch.setattr(torch.jit, "load", _never)
    monkeypatch.setattr(torch, "load", _never)
    monkeypatch.setattr("bdlib.nets.clip_adapter.read_torchscript_tensors", _never, raising=False)
    with pytest.raises(ValueError, match="is not the official CLIP ViT-B/16 file") as info:
        load_clip("ViT-B/16", cache_dir=tmp_path)
    assert f"{DOWNLOAD_COMMAND} --cache-dir {tmp_path}" in str(info.value)


def test_the_pinned_archive_is_read_as_data(tmp_path, monkeypatch) -> None:
    from bdlib.worlds.paper import checkpoints as paper

    tiny = _traced_tiny_clip(tmp_path / "ViT-B-16.pt")
    digest = hashlib.sha256((tmp_path / "ViT-B-16.pt").read_bytes()).hexdigest()
    monkeypatch.setitem(paper.PAPER_FILES, "clip", dataclasses.replace(paper.PAPER_FILES["clip"], sha256=digest))
    monkeypatch.setattr(torch.jit, "load", _never)  # no TorchScript interpreter involved
    loaded = load_clip("ViT-B/16", cache_dir=tmp_path)
    assert torch.equal(loaded.encode_text(["a blue square"]), tiny.encode_text(["a blue square"]))


def test_a_damaged_clip_archive_is_named(tmp_path) -> None:
    _traced_tiny_clip(tmp_path / "clip.pt")
    data = (tmp_path / "clip.pt").read_bytes()
    (tmp_path / "clip.pt").write_bytes(data[: len(data) // 2])  # cut in half: the zip directory is gone
    with pytest.raises(ValueError, match=r"clip\.pt"):
        load_clip(tmp_path / "clip.pt")
