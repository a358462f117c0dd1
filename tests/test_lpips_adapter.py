"""Masked LPIPS (Algorithm 1's background term) with a random VGG trunk: nothing is downloaded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bdlib.core.settings import MethodSettings
from bdlib.core.variants import loss_for
from bdlib.nets.lpips_adapter import background_lpips, load_lpips

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
    assert background_lpips(lpips_vgg, x, reference, mask).item() == 0.0


def test_positive_when_the_background_differs(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()
    x = reference + 0.3 * (1 - mask) * images(2)
    assert background_lpips(lpips_vgg, x, reference, mask).item() > 0.0


def lpips_by_hand(model, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS written out from its definition (Zhang et al. 2018, eq. 1), on the package's VGG features and
    linear weights: Σ_l mean_hw ‖w_l ⊙ (f̂_l(a) - f̂_l(b))‖², f̂ = features scaled to unit length per pixel."""
    shift, scale = model.scaling_layer.shift, model.scaling_layer.scale
    feats_a, feats_b = model.net((a - shift) / scale), model.net((b - shift) / scale)
    total = torch.zeros(a.shape[0])
    for layer, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
        unit_a = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        unit_b = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        weight = model.lins[layer].model[-1].weight.view(1, -1, 1, 1)  # the 1x1 conv of the linear head
        total += ((unit_a - unit_b).pow(2) * weight).sum(dim=1).mean(dim=(1, 2))
    return total


def _background_terms(world, x, reference, mask, settings):
    """Algorithm 1's background terms of ``x`` (as x̂_0 and x_t: the official mix of the two is x itself)."""
    size = x.shape[-1]
    world = dataclasses.replace(world, image_size=size)
    loss = loss_for(world, settings, reference.expand_as(x), mask, None, None)
    return loss(x, x, torch.full((x.shape[0],), 10)).terms


def test_both_modes_against_lpips_written_by_hand(lpips_vgg, random_toy_world) -> None:
    reference, mask = images(0), box_mask()  # batch 1, broadcast to the batch of x
    x = torch.cat([reference + mask * images(1), reference + 0.3 * (1 - mask) * images(2)])
    keep = 1 - mask
    paper = background_lpips(lpips_vgg, x, reference, mask)
    world = dataclasses.replace(random_toy_world, lpips=lpips_vgg)
    settings = MethodSettings(algorithm="local", official=True, lam=10.0, lpips_weight=1.0, respacing="100")
    official = _background_terms(world, x, reference, mask, settings)["bg_lpips"] / 10.0
    torch.testing.assert_close(paper, lpips_by_hand(lpips_vgg, x * keep, (reference * keep).expand_as(x)))
    torch.testing.assert_close(official, lpips_by_hand(lpips_vgg, x * keep, reference.expand_as(x)))
    assert paper[0] == 0.0 and paper[1] > 0.0  # paper mode: only the background counts
    assert official[0] > 0.0  # official mode: the input's region is compared with grey, a term no edit can lower


def test_the_loss_weights_lpips_as_each_mode_says(lpips_vgg, random_toy_world) -> None:
    reference, mask = images(0), box_mask()
    x = reference + 0.3 * images(3, batch=2)
    keep = 1 - mask
    world = dataclasses.replace(random_toy_world, lpips=lpips_vgg)
    paper = _background_terms(world, x, reference, mask, MethodSettings(algorithm="local", respacing="100"))
    official = _background_terms(
        world, x, reference, mask, MethodSettings(algorithm="local", official=True, respacing="100", lam=10000.0)
    )
    by_hand_paper = lpips_by_hand(lpips_vgg, x * keep, (reference * keep).expand_as(x))
    by_hand_official = lpips_by_hand(lpips_vgg, x * keep, reference.expand_as(x)).sum()
    mse = ((x - reference) * keep).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(paper["bg"].sum(), 2500 * (mse + 0.4 * by_hand_paper).sum())  # λ·(MSE + w·LPIPS)
    torch.testing.assert_close(official["bg_lpips"].sum(), 1000 * by_hand_official)  # lpips_sim_lambda, summed
    torch.testing.assert_close(official["bg"].sum(), 10000 * (x * keep - reference).pow(2).mean())  # batch mean


def test_gradient_flows_to_the_background_only(lpips_vgg) -> None:
    reference, mask = images(0), box_mask()
    x = (reference + 0.3 * images(3)).requires_grad_(True)
    background_lpips(lpips_vgg, x, reference, mask).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad * (1 - mask)).abs().sum() > 0  # the background is pulled towards the reference
    assert (x.grad * mask).abs().sum() == 0  # the edit region is free


def test_shape_errors_name_the_problem(lpips_vgg) -> None:
    x = images(0, batch=2)
    with pytest.raises(ValueError, match="resize the mask"):
        background_lpips(lpips_vgg, x, x, torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="mask must be"):
        background_lpips(lpips_vgg, x, x, torch.zeros(3, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="reference must be"):
        background_lpips(lpips_vgg, x, images(0, batch=3), box_mask())
