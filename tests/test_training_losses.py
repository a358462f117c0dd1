"""The hybrid training loss: zero where the model is exact, and each half trains only its own output."""

from __future__ import annotations

import math

import pytest
import torch

from bdlib.core.diffusion import create_diffusion
from bdlib.nets.training_losses import discretized_gaussian_log_likelihood, hybrid_loss, normal_kl


def _setup(t_values):
    d = create_diffusion(1000, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(len(t_values), 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor(t_values)
    return d, x0, noise, t, d.q_sample(x0, t, noise)


def test_exact_model_has_zero_loss_for_t_above_zero():
    d, x0, noise, t, x_t = _setup([1, 10, 500, 999])
    exact = torch.cat([noise, -torch.ones_like(noise)], 1)  # v = -1: log Σ = log β̃_t, the true variance
    terms = hybrid_loss(d, exact, x0, x_t, t, noise)
    assert terms["mse"].abs().max() < 1e-10
    assert terms["vb"].abs().max() < 1e-4


def test_vb_is_positive_for_a_wrong_variance_and_nll_at_t0():
    d, x0, noise, t, x_t = _setup([0, 1])  # at t = 1, β_1 is 3x β̃_1
    wrong = torch.cat([noise, torch.ones_like(noise)], 1)  # v = +1: β_t instead of β̃_t
    terms = hybrid_loss(d, wrong, x0, x_t, t, noise)
    assert terms["vb"][1] > 1e-3
    assert terms["vb"][0] > 0 and torch.isfinite(terms["vb"][0])


def test_vb_trains_only_the_variance_and_mse_only_the_mean():
    d, x0, noise, t, x_t = _setup([5, 400])
    output = torch.randn(2, 6, 8, 8, requires_grad=True)
    terms = hybrid_loss(d, output, x0, x_t, t, noise)
    (grad_vb,) = torch.autograd.grad(terms["vb"].sum(), output, retain_graph=True)
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), output)
    assert grad_vb[:, :3].abs().max() == 0 and grad_vb[:, 3:].abs().max() > 0
    assert grad_mse[:, 3:].abs().max() == 0 and grad_mse[:, :3].abs().max() > 0


def test_normal_kl_and_discretized_likelihood_known_values():
    zero = torch.zeros(1)
    assert normal_kl(zero, zero, zero, zero).item() == 0
    # KL(N(1, 1) || N(0, 1)) = 1/2
    assert normal_kl(torch.ones(1), zero, zero, zero).item() == pytest.approx(0.5)
    # a very narrow Gaussian on a bin centre puts all its mass in that bin
    x = torch.tensor([0.0, 1.0, -1.0])
    log_p = discretized_gaussian_log_likelihood(x, x.clone(), torch.full((3,), math.log(1e-4)))
    assert log_p.abs().max() < 1e-6
