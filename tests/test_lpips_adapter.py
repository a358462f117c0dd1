"""Masked LPIPS (Algorithm 1's background term) with a random VGG trunk: nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from bdlib.lpips_adapter import load_lpips, masked_lpips

SIZE = 64


@pytest.fixture(scope="module")
def lpips_vgg():
    return load_lpips(pretrained=False)  # lpips.LPIPS(net="vgg", pnet_rand=True): offline


def box_mask(batch: int = 1) -> torch.Tensor:
    mask = torch.zeros(batch, 1, SIZE, SIZE)
    mask[..., 16:48, 20:44] = 1.0  # edit region
    return mask


def images(seed: int, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 2 - 1


def test_load_is_quiet_and_frozen(capsys) -> None:
    model = load_lpips(pretrained=False)
    assert capsys.readouterr().out == ""
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert type(model.net).__name__ == "vgg16"


def test_zero_when_images_differ_only_inside_the_mask(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()
    x = reference + mask * images(1)  # changes inside the edit region only
    assert masked_lpips(lpips_vgg, x, reference, mask).item() == 0.0


def test_positive_when_the_background_differs(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()
    x = reference + 0.3 * (1 - mask) * images(2)
    assert masked_lpips(lpips_vgg, x, reference, mask).item() > 0.0


def test_per_sample_values_and_the_official_formula(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()  # batch 1, broadcast to the batch of x
    x = torch.cat([reference + mask * images(1), reference + 0.3 * (1 - mask) * images(2)])
    distances = masked_lpips(lpips_vgg, x, reference, mask)
    assert distances.shape == (2,)
    assert distances[0] == 0.0 and distances[1] > 0.0
    official = lpips_vgg(x * (1 - mask), (reference * (1 - mask)).expand_as(x)).flatten()
    assert torch.equal(distances, official)


def test_gradient_flows_to_the_background_only(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()
    x = (reference + 0.3 * images(3)).requires_grad_(True)
    masked_lpips(lpips_vgg, x, reference, mask).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad * (1 - mask)).abs().sum() > 0  # the background is pulled towards the reference
    assert (x.grad * mask).abs().sum() == 0  # the edit region is free


def test_shape_errors_name_the_problem(lpips_vgg) -> None:
    x = images(0, batch=2)
    with pytest.raises(ValueError, match="resize the mask"):
        masked_lpips(lpips_vgg, x, x, torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="mask must be"):
        masked_lpips(lpips_vgg, x, x, torch.zeros(3, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="reference must be"):
        masked_lpips(lpips_vgg, x, images(0, batch=3), box_mask())
