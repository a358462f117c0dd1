"""Tests of bdlib's ADM UNet against numbers produced by the official guided-diffusion code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bdlib.nets.unet import PAPER_UNET_CONFIG, UNetModel, paper_unet
from bdlib.nets.unet_blocks import GroupNorm32, timestep_embedding


@pytest.fixture(scope="module")
def ref(fixtures_dir: Path) -> dict[str, Any]:
    """The small official UNet: kwargs, state dict, input, outputs."""
    return torch.load(fixtures_dir / "guided_diffusion" / "unet_small_seed0.pt", weights_only=True)


def _small(ref: dict[str, Any], **overrides: Any) -> UNetModel:
    model = UNetModel(**{**ref["unet_kwargs"], **overrides})
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small(ref: dict[str, Any]) -> UNetModel:
    return _small(ref)


# --- parity with the official model -------------------------------------------------------------------


def test_state_dict_layout_matches_official(ref: dict[str, Any], small: UNetModel) -> None:
    ours = small.state_dict()
    assert list(ours) == list(ref["state_dict"])
    assert all(ours[k].shape == v.shape for k, v in ref["state_dict"].items())
    assert sum(p.numel() for p in small.parameters()) == ref["num_parameters"]


def test_timestep_embedding_and_time_mlp(ref: dict[str, Any], small: UNetModel) -> None:
    torch.testing.assert_close(timestep_embedding(ref["timesteps"], 32), ref["timestep_embedding"])
    with torch.no_grad():
        emb = small.time_embedding(ref["timesteps"])
    torch.testing.assert_close(emb, ref["time_embed_output"], rtol=0, atol=1e-5)


def test_output_legacy_attention_order_fp32(ref: dict[str, Any], small: UNetModel) -> None:
    with torch.no_grad():
        out = small(ref["x"], ref["timesteps"])
    assert out.dtype == torch.float32
    assert (out - ref["output"]).abs().max().item() < 1e-4  # measured 6.4e-6
    with torch.no_grad():  # float timesteps give the same result (the diffusion passes float32)
        out_f = small(ref["x"], ref["timesteps"].float())
    assert (out_f - ref["output"]).abs().max().item() < 1e-4


def test_output_new_attention_order_fp32(ref: dict[str, Any]) -> None:
    model = _small(ref, use_new_attention_order=True)
    with torch.no_grad():
        out = model(ref["x"], ref["timesteps"])
    assert (out - ref["output_new_attention_order"]).abs().max().item() < 1e-4  # measured 6.6e-6


def test_channels_last_input(ref: dict[str, Any], small: UNetModel) -> None:
    x = ref["x"].to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = small(x, ref["timesteps"])
    assert (out - ref["output"]).abs().max().item() < 1e-4  # measured 2.3e-5 (other conv kernels)


def test_autocast_bf16_and_fp16(ref: dict[str, Any], small: UNetModel) -> None:
    # Measured on CPU (torch 2.15, 1 and 2 threads): bf16 max 0.229, mean 0.0247; fp16 max 0.0227.
    # The official fp16 mode (convert_to_fp16) is off by 0.023 on the same input, so our fp16 autocast
    # matches it, and bf16 is about 10x worse as expected from 3 fewer mantissa bits (8 vs 11).
    # This fixture is deliberately sensitive (sharp attention, output std 0.48, |max| 2.4).
    # Bounds are about 3x the measured errors.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = small(ref["x"], ref["timesteps"])
    err = (out - ref["output"]).abs()
    assert out.dtype == torch.float32
    assert err.max().item() < 0.7 and err.mean().item() < 0.075
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        out16 = small(ref["x"], ref["timesteps"])
    assert (out16 - ref["output"]).abs().max().item() < 0.07
    assert (out16 - ref["output_fp16_cpu"]).abs().max().item() < 5e-2  # README's suggested atol


# --- the paper's 256x256 model ------------------------------------------------------------------------


def test_paper_config_matches_official_layout(fixtures_dir: Path) -> None:
    spec = json.loads((fixtures_dir / "guided_diffusion" / "adm256_uncond_keys.json").read_text())
    with torch.device("meta"):
        model = UNetModel(**PAPER_UNET_CONFIG)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(e["key"], e["shape"]) for e in spec["keys"]]
    assert sum(p.numel() for p in model.parameters()) == spec["total_parameters"] == 552_814_086
    assert list(model.channel_mult) == spec["derived"]["channel_mult"]
    assert sorted(model.attention_resolutions) == spec["derived"]["attention_resolutions_ds"]


def test_paper_unet_builds_model_and_diffusion_on_meta() -> None:
    model, diffusion = paper_unet("100", device="meta")
    assert next(model.parameters()).device.type == "meta"
    assert model.out_channels == 6 and model.image_size == 256
    assert diffusion.num_steps == 100
    x = torch.empty(1, 3, 256, 256, device="meta")
    out = model(x, torch.zeros(1, device="meta"))  # shapes flow through the whole network
    assert out.shape == (1, 6, 256, 256)


# --- gradients ----------------------------------------------------------------------------------------


def _input_grad(model: UNetModel, ref: dict[str, Any], dtype: torch.dtype | None) -> torch.Tensor:
    x = ref["x"].clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = model(x, ref["timesteps"]).float().square().mean()
    (grad,) = torch.autograd.grad(loss, x)
    return grad


@pytest.mark.parametrize("use_checkpoint", [False, True])
def test_gradient_reaches_input_with_frozen_parameters(ref: dict[str, Any], use_checkpoint: bool) -> None:
    model = _small(ref, use_checkpoint=use_checkpoint).requires_grad_(False)
    g32 = _input_grad(model, ref, None)
    g16 = _input_grad(model, ref, torch.bfloat16)
    assert g32.shape == ref["x"].shape and torch.isfinite(g32).all() and g32.abs().sum() > 0
    assert torch.isfinite(g16).all() and g16.abs().sum() > 0
    # bf16 gradient vs float32 on this deliberately sensitive fixture, measured: cosine 0.819 (relative
    # L2 error 0.59); fp16 autocast gives 0.998, so this is bf16's 8-bit mantissa in the convolutions
    # (running the attention core in float32 changes nothing). Bound: 3x the measured 1 - cos.
    cos = torch.nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim=0)
    assert cos > 0.45
    assert all(p.grad is None for p in model.parameters())


def test_checkpointing_recomputes_and_matches(ref: dict[str, Any]) -> None:
    plain = _small(ref).requires_grad_(False)
    ckpt = _small(ref, use_checkpoint=True).requires_grad_(False)
    calls = []
    ckpt.middle_block[1].qkv.register_forward_hook(lambda *_: calls.append(1))
    ckpt.middle_block[0].in_layers[2].register_forward_hook(lambda *_: calls.append(2))
    g_ckpt = _input_grad(ckpt, ref, None)
    assert calls.count(1) == 2 and calls.count(2) == 2  # forward + recomputation in backward
    torch.testing.assert_close(g_ckpt, _input_grad(plain, ref, None))


@pytest.mark.parametrize("conv_resample", [True, False])
def test_plain_resampling_and_additive_embedding(conv_resample: bool) -> None:
    # resblock_updown=False, use_scale_shift_norm=False: the other official code paths.
    model = UNetModel(
        image_size=8,
        in_channels=3,
        model_channels=32,
        out_channels=3,
        num_res_blocks=1,
        attention_resolutions=(),
        channel_mult=(1, 2),
        conv_resample=conv_resample,
    ).eval()
    keys = set(model.state_dict())
    assert ("input_blocks.2.0.op.weight" in keys) == conv_resample
    assert ("output_blocks.1.1.conv.weight" in keys) == conv_resample
    assert model.input_blocks[1][0].emb_layers[1].out_features == 32  # additive: no scale/shift pair
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8), torch.tensor([0, 999])).shape == (2, 3, 8, 8)


# --- class conditioning -------------------------------------------------------------------------------


def test_class_conditional_model() -> None:
    kw = dict(
        image_size=8,
        in_channels=3,
        model_channels=32,
        out_channels=3,
        num_res_blocks=1,
        attention_resolutions=(2,),
        channel_mult=(1, 2),
        num_classes=5,
    )
    model = UNetModel(**kw).eval()
    keys = list(model.state_dict())
    assert keys[4] == "label_emb.weight" and model.label_emb.weight.shape == (5, 128)
    with torch.no_grad():  # zero-initialised residual branches and head would hide the label
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 500])
    with torch.no_grad():
        a, b = model(x, t, y=torch.tensor([0, 1])), model(x, t, y=torch.tensor([2, 3]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="y must be"):
        model(x, t)


# --- bad input ----------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_error(small: UNetModel) -> None:
    t = torch.tensor([3, 917])
    with pytest.raises(ValueError, match="in_channels=3"):
        small(torch.randn(2, 4, 32, 32), t)
    with pytest.raises(ValueError, match="multiples of 8"):
        small(torch.randn(2, 3, 36, 32), t)
    with pytest.raises(ValueError, match=r"timesteps must be a tensor of shape \(2,\)"):
        small(torch.randn(2, 3, 32, 32), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="timesteps"):
        small(torch.randn(2, 3, 32, 32), 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must be a \(B, 3, H, W\)"):
        small(torch.randn(3, 32, 32), t)
    with pytest.raises(ValueError, match="unconditional"):
        small(torch.randn(2, 3, 32, 32), t, y=torch.tensor([0, 1]))


def test_bad_constructor_arguments_raise_value_error(ref: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="dims=3"):
        UNetModel(**{**ref["unet_kwargs"], "dims": 3})
    with pytest.raises(ValueError, match="downsample rates"):
        UNetModel(**{**ref["unet_kwargs"], "attention_resolutions": "16,8"})
    with pytest.raises(ValueError, match="num_head_channels"):
        UNetModel(**{**ref["unet_kwargs"], "num_head_channels": 24})


def test_scalar_timestep_is_broadcast(ref: dict[str, Any], small: UNetModel) -> None:
    x = ref["x"]
    with torch.no_grad():
        a = small(x, torch.tensor(917))
        b = small(x, torch.tensor([917, 917]))
    torch.testing.assert_close(a, b)


def test_norm_groups_change_only_the_normalisation(ref: dict[str, Any], small: UNetModel) -> None:
    regrouped = _small(ref, norm_groups=8)  # same keys and shapes, so the official weights load
    assert all(m.num_groups == 8 for m in regrouped.modules() if isinstance(m, GroupNorm32))
    assert all(m.num_groups == 32 for m in small.modules() if isinstance(m, GroupNorm32))
    with torch.no_grad():
        assert not torch.allclose(regrouped(ref["x"], ref["timesteps"]), small(ref["x"], ref["timesteps"]))
    with pytest.raises(ValueError, match="norm groups=5 must be a positive divisor"):
        UNetModel(**{**ref["unet_kwargs"], "norm_groups": 5})


def test_one_channel_per_group_erases_each_channels_mean() -> None:
    """Why narrow networks need fewer groups: an instance norm cannot pass a per-channel offset on."""
    features, offset = torch.randn(2, 8, 6, 6), torch.randn(1, 8, 1, 1)
    instance, grouped = GroupNorm32(8, groups=8), GroupNorm32(8, groups=2)
    torch.testing.assert_close(instance(features + offset), instance(features), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(grouped(features + offset), grouped(features), atol=1e-3)
