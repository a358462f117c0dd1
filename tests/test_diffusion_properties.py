"""Properties of the DDPM math that hold for any schedule, and the errors bad input gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdlib.core.diffusion import Diffusion, create_diffusion
from bdlib.core.sampling import sample, sample_progressive
from bdlib.core.schedules import beta_schedule, space_timesteps

SETTINGS = [
    ("linear", None),
    ("linear", "100"),
    ("cosine", None),
    ("cosine", "ddim50"),
    ("linear", "10,20,30"),
]


@pytest.mark.parametrize("schedule,respacing", SETTINGS)
def test_alpha_bar_decreasing_in_unit_interval(schedule, respacing):
    d = create_diffusion(1000, schedule, respacing)
    ac = d.alphas_cumprod
    assert ((ac > 0) & (ac <= 1)).all()
    assert (np.diff(ac) < 0).all()
    assert (d.posterior_variance >= 0).all() and d.posterior_variance[0] == 0
    assert (d.betas > 0).all() and (d.betas <= 1).all()
    assert np.isfinite(d.posterior_log_variance_clipped).all()


@pytest.mark.parametrize("schedule,respacing", SETTINGS)
def test_noiseless_round_trip_recovers_x0(schedule, respacing):
    d = create_diffusion(1000, schedule, respacing)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, d.num_steps // 3, d.num_steps // 2, d.num_steps - 1])
    # float64 tensors use the float64 coefficients: at the last cosine step √(1/ᾱ) is ~3e4, which would
    # amplify float32 rounding of x_t beyond any useful tolerance
    x_t = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.pred_x0_from_eps(x_t, t, eps), x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(d.eps_from_pred_x0(x_t, t, x0), eps, rtol=0, atol=1e-9)
    # in float32 the error is bounded by the conditioning at the middle step
    mid = t[1:3]
    x_t32 = d.q_sample(x0[1:3].float(), mid, eps[1:3].float())
    torch.testing.assert_close(d.pred_x0_from_eps(x_t32, mid, eps[1:3].float()), x0[1:3].float(), rtol=0, atol=1e-5)


def test_posterior_of_true_x0_matches_forward_marginals():
    """E[x_{t-1}] under q(x_{t-1}|x_t,x_0), averaged over x_t, equals √ᾱ_{t-1} x_0."""
    d = create_diffusion(1000, "linear", "50")
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    t = torch.full((20000,), 30)
    x_t = d.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    mean, _, _ = d.q_posterior(x0, x_t, t)
    expected = np.sqrt(d.alphas_cumprod_prev[30]) * 0.7
    assert abs(mean.mean().item() - expected) < 0.01


def test_fixed_variances():
    small = create_diffusion(1000, "linear", "100", learn_sigma=False, sigma_small=True)
    large = create_diffusion(1000, "linear", "100", learn_sigma=False)
    x = torch.zeros(2, 3, 4, 4)
    t = torch.tensor([0, 50])
    eps = torch.randn(2, 3, 4, 4)
    v_small = small.p_mean_variance(eps, x, t).variance[:, 0, 0, 0].double().numpy()
    v_large = large.p_mean_variance(eps, x, t).variance[:, 0, 0, 0].double().numpy()
    np.testing.assert_allclose(v_small, small.posterior_variance[[0, 50]], rtol=1e-6)
    np.testing.assert_allclose(v_large, [large.posterior_variance[1], large.betas[50]], rtol=1e-6)


def test_learned_range_endpoints():
    d = create_diffusion(1000, "linear", "100")
    x = torch.zeros(1, 3, 2, 2)
    t = torch.tensor([40])
    ones = torch.ones(1, 3, 2, 2)
    at_beta = d.p_mean_variance(torch.cat([ones * 0, ones], 1), x, t).log_variance
    at_tilde = d.p_mean_variance(torch.cat([ones * 0, -ones], 1), x, t).log_variance
    assert at_beta.flatten()[0].item() == pytest.approx(np.log(d.betas[40]), rel=1e-6)
    assert at_tilde.flatten()[0].item() == pytest.approx(d.posterior_log_variance_clipped[40], rel=1e-6)


class ZeroEps:
    """A network that predicts zero noise (and v = 0): a deterministic stand-in for tests."""

    def __init__(self) -> None:
        self.timesteps: list[float] = []

    def __call__(self, x, timesteps):
        self.timesteps.append(float(timesteps[0]))
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])


def test_progressive_sampler_from_noised_input_starts_at_k_and_yields_each_step():
    d = create_diffusion(1000, "linear", "100")
    init = torch.rand(2, 3, 8, 8) * 2 - 1
    model = ZeroEps()
    records = list(sample_progressive(model, d, init=init, k=74, generator=torch.Generator().manual_seed(0)))
    assert [r.t for r in records] == list(range(74, -1, -1))
    assert model.timesteps[0] == float(d.timestep_map[74]) == 747.0
    assert records[0].timestep == 747
    for before, after in zip(records[:-1], records[1:], strict=True):
        assert after.x_t is before.x_prev


def test_sampler_is_reproducible_and_ddim_eta0_deterministic():
    d = create_diffusion(1000, "linear", "ddim25")
    init = torch.rand(1, 3, 8, 8) * 2 - 1
    model = ZeroEps()
    a = sample(model, d, init=init, k=10, generator=torch.Generator().manual_seed(3))
    b = sample(model, d, init=init, k=10, generator=torch.Generator().manual_seed(3))
    c = sample(model, d, init=init, k=10, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # DDIM with eta = 0 and ε̂ = 0 maps x_k to x_k/√ᾱ_k: the only randomness is the start noise
    ddim = sample(model, d, init=init, k=0, ddim=True, generator=torch.Generator().manual_seed(3))
    x0_noised = d.q_sample(init, torch.tensor([0]), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(ddim, x0_noised * d.sqrt_recip_alphas_cumprod[0], rtol=1e-5, atol=1e-6)


def test_sampler_applies_guidance_as_mean_shift_and_score_correction():
    d = create_diffusion(1000, "linear", "25")
    init = torch.rand(1, 3, 4, 4) * 2 - 1
    g = torch.randn(1, 3, 4, 4)

    def first_step(**kwargs):
        gen = torch.Generator().manual_seed(0)
        return next(sample_progressive(ZeroEps(), d, init=init, k=12, generator=gen, **kwargs))

    plain, guided = first_step(), first_step(cond_fn=lambda x, t, mv: g)
    variance = float(np.exp(0.5 * np.log(d.betas[12]) + 0.5 * d.posterior_log_variance_clipped[12]))
    torch.testing.assert_close(guided.x_prev - plain.x_prev, variance * g, rtol=1e-4, atol=1e-6)
    plain, guided = first_step(ddim=True), first_step(ddim=True, cond_fn=lambda x, t, mv: g)
    # ε' = ε̂ - √(1-ᾱ) g and x̂_0 = (x_t - √(1-ᾱ) ε)/√ᾱ, so x̂_0 moves by (1-ᾱ)/√ᾱ · g
    ac = d.alphas_cumprod[12]
    moved = (guided.pred_x0 - plain.pred_x0) * np.sqrt(ac) / (1 - ac)
    torch.testing.assert_close(moved, g, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------- bad input
def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="schedule must be one of linear, cosine"):
        beta_schedule("quadratic", 1000)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("2000", "section 0 has 1000 steps but asks for 2000"),
        ("ddim37", "no integer stride gives exactly 37"),
        ("10,,10", "is not a positive integer"),
        ("abc", "is not a positive integer"),
        ("0", "is not a positive integer"),
    ],
)
def test_bad_respacing(spec, match):
    with pytest.raises(ValueError, match=match):
        space_timesteps(1000, spec)


def test_more_sections_than_steps():
    with pytest.raises(ValueError, match="sections but there are only 3 steps"):
        space_timesteps(3, "1,1,1,1")


def test_start_index_out_of_range_and_without_init():
    d = create_diffusion(1000, "linear", "100")
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 99\]"):
        next(sample_progressive(ZeroEps(), d, init=torch.zeros(1, 3, 4, 4), k=100, generator=torch.Generator()))
    with pytest.raises(ValueError, match="needs an input image"):
        next(sample_progressive(ZeroEps(), d, (1, 3, 4, 4), k=50, generator=torch.Generator()))


def test_mismatched_shapes():
    d = create_diffusion(1000, "linear", "100")
    with pytest.raises(ValueError, match=r"shape mismatch: x0 \(1, 3, 4, 4\), noise \(1, 3, 5, 5\)"):
        d.q_sample(torch.zeros(1, 3, 4, 4), torch.tensor([3]), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="t has 2 entries but the batch x has 1"):
        d.q_sample(torch.zeros(1, 3, 4, 4), torch.tensor([3, 4]), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 99\]"):
        d.q_sample(torch.zeros(1, 3, 4, 4), torch.tensor([100]), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="needs 6 channels"):
        d.p_mean_variance(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.tensor([3]))
    with pytest.raises(ValueError, match="variance_type must be one of"):
        Diffusion(np.full(10, 0.01), variance_type="learned")
