"""Which parts of a guided step run under autocast at each precision: the networks, and nothing else."""

from __future__ import annotations

import pytest
import torch

from bdlib.core import variants
from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.diffusion import create_diffusion
from bdlib.core.settings import MethodSettings
from bdlib.runtime.precision import PRECISIONS, check_precision, network_autocast
from bdlib.worlds.base import World


class SpyClip:
    """A linear 'CLIP' that records what reaches its encoder and whether autocast was on."""

    input_resolution = 8

    def __init__(self) -> None:
        self.weight = torch.randn(3 * 8 * 8, 4, generator=torch.Generator().manual_seed(0))
        self.calls: list[tuple[torch.dtype, bool, torch.Tensor]] = []

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return images01 - 0.5

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls.append((pixels.dtype, torch.is_autocast_enabled("cpu"), pixels.detach().clone()))
        return pixels.flatten(1) @ self.weight.to(pixels.dtype)


def run_step(precision: str) -> tuple[SpyClip, list[bool]]:
    unet_autocast: list[bool] = []

    def unet(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        unet_autocast.append(torch.is_autocast_enabled("cpu"))
        return torch.cat([0.1 * x, torch.zeros_like(x)], dim=1)  # ε and the σ interpolation (learned σ)

    clip = SpyClip()
    x_t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    augment = ExtendingAugmentations(4)
    settings = MethodSettings(respacing="10", k=6, precision=precision, views=4, lpips_weight=0)
    world = World(
        name="spy",
        unet=unet,
        clip=clip,
        image_size=8,
        defaults=settings,
        check_prompt=lambda prompt: None,
        make_diffusion=lambda respacing: create_diffusion(1000, "linear", respacing=respacing, learn_sigma=True),
    )
    variants.step(
        world,
        settings,
        x_t,
        6,
        x=torch.zeros(2, 3, 8, 8),
        m=mask,
        text=torch.randn(1, 4),
        noise=torch.zeros_like(x_t),
        bg_noise=torch.zeros_like(x_t),
        views=lambda views: augment(views, torch.Generator().manual_seed(2)),
    )
    return clip, unet_autocast


@pytest.mark.parametrize(
    ("precision", "unet_low", "clip_low"),
    [
        ("fp32", False, False),
        ("bf16", True, True),
        ("bf16-clip", False, True),
    ],
)
def test_only_the_networks_run_in_low_precision(precision, unet_low, clip_low):
    clip, unet_autocast = run_step(precision)
    reference, _ = run_step("fp32")
    assert unet_autocast == [unet_low]
    ((dtype, clip_autocast, views),) = clip.calls
    assert clip_autocast == clip_low
    # the pooling and the augmentations before CLIP stay float32: its input is the float32 step's, bit for bit
    assert dtype == torch.float32 and torch.equal(views, reference.calls[0][2])
    assert views.shape[0] == 4 * 2  # 4 views of each of the 2 images


def test_precisions_name_their_networks_and_refuse_unknown_ones():
    assert set(PRECISIONS) == {"fp32", "bf16", "fp16", "bf16-clip", "fp16-clip"}
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int8")
    with pytest.raises(ValueError, match="network must be one of unet, guidance"):
        network_autocast("cpu", "bf16", "vae")
