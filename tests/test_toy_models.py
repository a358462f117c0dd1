"""The toy world's tokenizer, CLIP, noise-aware CLIP and oracle: interfaces, gradients and shipped weights.

The quality checks use the *shipped* weights on a few hundred fresh scenes (a seed never used in training);
each is also run on random weights, where it must fail, so the thresholds mean something. A missing weights
file fails (never skips): the package must ship them.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bdlib.nets.clip_adapter import ClipModel, normalize01, random_clip
from bdlib.runtime.download import sha256_of
from bdlib.worlds.toy import tokenizer as tok
from bdlib.worlds.toy import weights_io
from bdlib.worlds.toy.clip_model import (
    CLASS_PROMPTS,
    build_toy_clip,
    load_toy_clip,
    single_and_masked_sets,
    toy_clip_step_fn,
    zero_shot,
)
from bdlib.worlds.toy.corruptions import KINDS, make_examples
from bdlib.worlds.toy.ddpm import load_toy_ddpm, toy_diffusion
from bdlib.worlds.toy.noise_aware_clip import (
    build_toy_noise_aware_clip,
    load_toy_noise_aware_clip,
    toy_noise_aware_clip_step_fn,
)
from bdlib.worlds.toy.oracle import build_oracle, load_oracle, oracle_step_fn
from bdlib.worlds.toy.region_views import box_masks, empty_regions, object_regions, random_warp
from bdlib.worlds.toy.scenes import generate_scenes
from bdlib.worlds.toy.trainer import step_generator
from bdlib.worlds.toy.weight_checksums import SHIPPED_SHA256
from bdlib.worlds.toy.weights_io import load_weights, weights_path

TEST_SEED = 8_100_000_000  # disjoint from training seeds and from the evaluation seed of the model cards


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_and_padding() -> None:
    prompts = ["a red circle", "an orange square", "a red circle, a blue square and a white triangle", ""]
    tokens = tok.tokenize(prompts)
    assert tokens.shape == (4, tok.CONTEXT_LENGTH) and tokens.dtype == torch.long
    assert [tok.decode(row) for row in tokens] == prompts
    assert tokens[3].tolist() == [tok.END_ID] + [tok.PAD_ID] * (tok.CONTEXT_LENGTH - 1)  # empty = end token
    assert tok.tokenize(["A Red Circle."]).equal(tok.tokenize(["a red circle"]))
    assert (tok.end_positions(tokens) == torch.tensor([3, 3, 11, 0])).all()


def test_tokenizer_rejects_unknown_words_with_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="pink") as info:
        tok.tokenize(["a pink circle"])
    assert "red" in str(info.value) and "triangle" in str(info.value)
    with pytest.raises(TypeError):
        tok.tokenize("a red circle")


# ----------------------------------------------------------------------------- regions
def test_box_masks_and_empty_regions() -> None:
    mask = box_masks(torch.tensor([[10.5, 4.0, 18.5, 12.0]]), 2.0, 32)[0, 0]
    assert mask.sum() == 13 * 12 and mask[2, 8] == 1 and mask[14, 20] == 0 and mask[13, 21] == 0 and mask[13, 20] == 1
    batch = generate_scenes(16, seed=5)
    masks, ok = empty_regions(batch, torch.Generator().manual_seed(0))
    assert ok.any() and (masks[ok] * batch.masks[ok].sum(dim=1)).sum() == 0
    regions = object_regions(batch, torch.Generator().manual_seed(1), margin=(0, 3))
    assert ((regions.coverage > 0).float() * (1 - regions.masks)).sum() == 0  # the object lies in its region


def test_random_warp_identity_and_gradient() -> None:
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    assert torch.allclose(random_warp(x, torch.Generator().manual_seed(0), p=0.0), x, atol=1e-5)
    random_warp(x, torch.Generator().manual_seed(0), p=1.0).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- interfaces
def test_clip_adapter_and_toy_clip_share_normalize() -> None:
    tiny = random_clip(
        dict(
            embed_dim=32,
            image_resolution=32,
            vision_layers=1,
            vision_width=64,
            vision_patch_size=16,
            context_length=77,
            vocab_size=49408,
            transformer_width=64,
            transformer_heads=1,
            transformer_layers=1,
        )
    )
    x01 = torch.rand(2, 3, 32, 32)
    assert torch.equal(tiny.normalize(x01), normalize01(x01))
    toy = build_toy_clip()
    assert torch.allclose(toy.normalize(x01), x01 * 2 - 1)
    for name in (
        "input_resolution",
        "embed_dim",
        "encode_text",
        "normalize",
        "preprocess",
        "encode_pixels",
        "encode_image",
        "tokenize",
    ):
        assert hasattr(ClipModel, name) and hasattr(toy, name)


def test_toy_clip_interface() -> None:
    model = build_toy_clip().eval()
    assert model.input_resolution == 32 and model.embed_dim == 128
    assert model.encode_text(["a red circle", ""]).shape == (2, 128)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert model.preprocess(x).shape == (2, 3, 32, 32)
    assert model.encode_image(x).shape == (2, 128) and model.encode_image(x).dtype == torch.float32
    with pytest.raises(ValueError, match="32, 32"):
        model.encode_pixels(x)
    with pytest.raises(ValueError, match="pink"):
        model.encode_text(["a pink circle"])
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6


def test_noise_aware_clip_interface() -> None:
    fresh = build_toy_noise_aware_clip().eval()
    assert sum(p.numel() for p in fresh.parameters()) < 2e6
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(fresh.encode_image(x, 500.0), fresh.encode_image(x, 10.0))  # FiLM starts at zero
    model = load_toy_noise_aware_clip()
    a = model.encode_image(x, 500.0)
    assert a.shape == (3, 128) and torch.allclose(a, model.encode_image(x, torch.full((3,), 500.0)), atol=1e-5)
    assert not torch.allclose(a, model.encode_image(x, 10.0), atol=1e-3)  # the trained model reads t
    with pytest.raises(ValueError, match="timestep"):
        model.encode_image(x, torch.zeros(2))


def test_oracle_interface() -> None:
    model = build_oracle().eval()
    images, mask = torch.rand(4, 3, 32, 32) * 2 - 1, torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    verdict = model.judge(images, mask)
    for key in ("color", "shape", "present", "confidence", "clean"):
        assert verdict[key].shape == (4,)
    assert verdict["color"].dtype == torch.long and ((verdict["color"] >= -1) & (verdict["color"] < 7)).all()
    match = model.judge_text_match(images, mask, ["a red circle", ("blue", "square"), "", None])
    assert match["match"].dtype == torch.bool and match["score"].shape == (4,)
    with pytest.raises(ValueError, match="one object"):
        model.judge_text_match(images[:1], mask, ["a red circle and a blue square"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: (build_toy_clip(), toy_clip_step_fn(8)),
        lambda: (build_toy_noise_aware_clip(), toy_noise_aware_clip_step_fn(8)),
        lambda: (build_oracle(), oracle_step_fn(8)),
    ],
    ids=["clip", "noisy", "oracle"],
)
def test_step_functions_give_finite_losses(make) -> None:
    model, step = make()
    metrics = step(model.train(), 0, step_generator(0, 0))
    assert torch.isfinite(metrics["loss"]) and metrics["loss"].requires_grad


def test_oracle_examples_follow_the_label_table() -> None:
    batch = generate_scenes(len(KINDS) * 2, seed=11)
    ex = make_examples(batch, torch.Generator().manual_seed(0), torch.arange(len(KINDS)).repeat(2))
    assert ex.clean.tolist()[: len(KINDS)] == [1, 1, 1] + [0] * (len(KINDS) - 3)
    assert ex.present.tolist()[:3] == [1, 0, 0] and (ex.color[1:3] == -1).all()
    assert ex.images.min() >= -1 and ex.images.max() <= 1


# ----------------------------------------------------------------------------- shipped weights
def test_weights_files_exist_with_metadata() -> None:
    for name in ("toy_clip", "toy_noise_aware_clip", "oracle"):
        path = weights_path(name)
        assert path.exists(), f"missing shipped weights {path}; train them with python -m bdlib train"
        assert path.stat().st_size < 8e6
        _, meta = load_weights(path, "python -m bdlib train")
        assert {"config", "step", "metrics"} <= set(meta)


def _masked_gradient(model, x: torch.Tensor, mask: torch.Tensor, *t) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    image = F.normalize(model.encode_image(x * mask, *t), dim=-1)
    text = F.normalize(model.encode_text(["a red circle"] * x.shape[0]), dim=-1)
    loss = (2 * torch.arcsin((image - text).norm(dim=-1) / 2) ** 2).sum()  # spherical distance, as guidance
    loss.backward()
    return x.grad


def test_gradients_reach_the_pixels_for_both_clips() -> None:
    scenes = generate_scenes(2, seed=TEST_SEED)
    mask = box_masks(scenes.boxes[:, 0], 2.0, 32)
    grad = _masked_gradient(load_toy_clip(), scenes.images, mask)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0 and (grad * (1 - mask)).abs().sum() == 0
    x_t = toy_diffusion(None).q_sample(scenes.images, torch.tensor([300, 600]), torch.randn(2, 3, 32, 32))
    grad = _masked_gradient(load_toy_noise_aware_clip(), x_t, mask, torch.tensor([300.0, 600.0]))
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def _clip_accuracies(model, n: int = 200, t: int | None = None) -> tuple[float, float]:
    out = []
    for images, labels, masks in single_and_masked_sets(n, TEST_SEED).values():
        timesteps = None
        if t is not None:
            noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
            steps = torch.full((images.shape[0],), t)
            images = toy_diffusion(None).q_sample(images, steps, noise) * masks
            timesteps = steps.float()
        out.append(float((zero_shot(model, images, timesteps) == labels).float().mean()))
    return out[0], out[1]


def test_shipped_toy_clip_zero_shot() -> None:
    assert len(CLASS_PROMPTS) == 21
    single, masked = _clip_accuracies(load_toy_clip())
    assert single >= 0.90 and masked >= 0.85, (single, masked)
    single, masked = _clip_accuracies(build_toy_clip().eval(), n=60)
    assert single < 0.5 and masked < 0.5  # the same check fails on random weights


def test_shipped_noise_aware_clip_zero_shot() -> None:
    model = load_toy_noise_aware_clip()
    single, masked = _clip_accuracies(model, t=0)
    assert single >= 0.90 and masked >= 0.85, (single, masked)
    single, masked = _clip_accuracies(model, t=250)
    assert single >= 0.65 and masked >= 0.65, (single, masked)
    single, masked = _clip_accuracies(build_toy_noise_aware_clip().eval(), n=60, t=0)
    assert single < 0.5 and masked < 0.5


def _oracle_checks(model, n: int = 200) -> dict[str, float]:
    scenes = generate_scenes(n, seed=TEST_SEED)
    masks = box_masks(scenes.boxes[:, 0], 2.0, 32)
    verdict = model.judge(scenes.images, masks)
    empty, ok = empty_regions(scenes, torch.Generator().manual_seed(0), side=(12, 12))
    none = model.judge(scenes.images[ok], empty[ok])
    g = torch.Generator().manual_seed(TEST_SEED)
    noisy_kinds = torch.tensor([KINDS.index("noise_object"), KINDS.index("noise_region")]).repeat(n // 4)
    ex = make_examples(generate_scenes(len(noisy_kinds), generator=g), g, noisy_kinds)
    return {
        "color": float((verdict["color"] == scenes.labels[:, 0, 0]).float().mean()),
        "shape": float((verdict["shape"] == scenes.labels[:, 0, 1]).float().mean()),
        "clean_objects": float((verdict["clean"] >= 0.5).float().mean()),
        "none": float((none["present"] < 0.5).float().mean()),
        "flags_noise": float((model.judge(ex.images, ex.masks)["clean"] < 0.5).float().mean()),
    }


def test_shipped_oracle_quality() -> None:
    checks = _oracle_checks(load_oracle())
    assert checks["color"] >= 0.95 and checks["shape"] >= 0.95, checks
    assert checks["none"] >= 0.9 and checks["clean_objects"] >= 0.9 and checks["flags_noise"] >= 0.8, checks
    random = _oracle_checks(build_oracle().eval(), n=60)
    assert random["color"] < 0.5 and random["shape"] < 0.9 and min(random.values()) < 0.8


# ----------------------------------------------------------------------------- shipped weights: checksums (issue 16)
def test_every_shipped_weight_file_has_its_sha256_in_the_table_and_its_card() -> None:
    names = sorted(path.stem for path in weights_io.WEIGHTS_DIR.glob("*.safetensors"))
    assert names == sorted(SHIPPED_SHA256) == ["oracle", "toy_clip", "toy_ddpm", "toy_noise_aware_clip"]
    for name in names:
        digest = sha256_of(weights_path(name))
        assert SHIPPED_SHA256[name] == digest, f"{name}: the table does not match the shipped file"
        assert f"SHA-256 `{digest}`" in weights_io.model_card_path(name).read_text(), f"{name}: the model card"


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The shipped weights and model cards (and the checksum table) copied to ``tmp_path``; the loader reads there."""
    folder = tmp_path / "weights"
    shutil.copytree(weights_io.WEIGHTS_DIR, folder)
    monkeypatch.setattr(weights_io, "WEIGHTS_DIR", folder)
    if hasattr(weights_io, "CHECKSUMS_FILE"):
        shutil.copy(weights_io.CHECKSUMS_FILE, tmp_path / "weight_checksums.py")
        monkeypatch.setattr(weights_io, "CHECKSUMS_FILE", tmp_path / "weight_checksums.py")
        monkeypatch.setattr(weights_io, "SHIPPED_SHA256", dict(weights_io.SHIPPED_SHA256))
    return folder


def test_damaged_shipped_weights_are_refused_with_both_ways_to_restore_them(package_copy) -> None:
    path = package_copy / "toy_ddpm.safetensors"
    load_toy_ddpm()  # the intact copy loads (and is now known good in this process)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 256 * 1024] = np.random.default_rng(0).bytes(256 * 1024)  # the header stays valid
    path.write_bytes(bytes(data))
    expected = r"toy_ddpm\.safetensors are damaged.*reinstall bdlib.*python -m bdlib train toy-ddpm --export"
    with pytest.raises(ValueError, match=expected):
        load_toy_ddpm()
    header = package_copy / "toy_clip.safetensors"
    data = bytearray(header.read_bytes())
    data[8:40] = b"#" * 32  # the JSON header is no longer JSON
    header.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"toy_clip\.safetensors are damaged.*train toy-clip --export"):
        load_toy_clip()


def test_a_damaged_weight_file_outside_the_package_is_named(tmp_path) -> None:
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match=r"mine\.safetensors is damaged or not a safetensors file.*train oracle"):
        load_weights(path, "python -m bdlib train oracle")


def test_export_records_the_new_checksum_in_the_table_and_the_card(package_copy, tmp_path) -> None:
    from bdlib.worlds.toy.oracle import export_oracle

    trained = load_oracle().state_dict()
    state = {key: value + 0.01 if value.is_floating_point() else value for key, value in trained.items()}
    checkpoint = tmp_path / "oracle.pt"
    meta = json.dumps({"seed": 0})
    torch.save({"model": state, "ema": state, "step": 3, "elapsed_s": 60.0, "meta": meta}, checkpoint)
    old = weights_io.SHIPPED_SHA256["oracle"]
    path = export_oracle(checkpoint, {"score": 1.0})
    digest = sha256_of(path)
    assert path == package_copy / "oracle.safetensors" and digest != old
    table = weights_io.CHECKSUMS_FILE.read_text()
    assert f'"oracle": "{digest}"' in table and old not in table
    card = (package_copy / "oracle.md").read_text()
    assert f"SHA-256 `{digest}`" in card and old not in card
    assert torch.equal(load_oracle().state_dict()["stem.0.weight"], state["stem.0.weight"])  # checked: the new hash


def test_an_export_that_fails_midway_changes_no_file(package_copy, tmp_path, monkeypatch) -> None:
    from bdlib.worlds.toy.oracle import export_oracle

    trained = load_oracle().state_dict()
    torch.save({"model": trained, "ema": None, "step": 1, "elapsed_s": 6.0, "meta": "{}"}, tmp_path / "oracle.pt")
    before = {p.name: p.read_bytes() for p in [*package_copy.iterdir(), weights_io.CHECKSUMS_FILE]}

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights_io, "_card_with", full_disk)  # the last of the three files fails
    with pytest.raises(ValueError, match="No space left on device"):
        export_oracle(tmp_path / "oracle.pt", {})
    assert {p.name: p.read_bytes() for p in [*package_copy.iterdir(), weights_io.CHECKSUMS_FILE]} == before
