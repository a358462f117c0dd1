"""bdlib.core.diffusion against numbers produced by OpenAI's guided-diffusion (tests/fixtures/guided_diffusion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdlib.core.diffusion import create_diffusion
from bdlib.core.schedules import space_timesteps

ARRAYS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "alphas_cumprod_next",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
RESPACINGS = ("25", "50", "100", "250", "ddim25", "ddim50")


@pytest.fixture(scope="module")
def schedule_ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "guided_diffusion" / "diffusion_linear1000_respaced100.npz"))


@pytest.fixture(scope="module")
def pmv_ref(fixtures_dir):
    data = np.load(fixtures_dir / "guided_diffusion" / "p_mean_variance_learned_sigma.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files}


@pytest.mark.parametrize("name", ARRAYS)
def test_full_schedule_arrays(schedule_ref, name):
    ours = getattr(create_diffusion(1000, "linear"), name)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, schedule_ref[f"full_{name}"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ARRAYS)
def test_respaced_100_arrays(schedule_ref, name):
    ours = getattr(create_diffusion(1000, "linear", respacing="100"), name)
    np.testing.assert_allclose(ours, schedule_ref[f"r100_{name}"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", RESPACINGS)
def test_respacing_maps_and_arrays(schedule_ref, spec):
    diffusion = create_diffusion(1000, "linear", respacing=spec)
    np.testing.assert_array_equal(diffusion.timestep_map, schedule_ref[f"timestep_map_{spec}"])
    np.testing.assert_allclose(diffusion.betas, schedule_ref[f"betas_{spec}"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diffusion.alphas_cumprod, schedule_ref[f"alphas_cumprod_{spec}"], rtol=1e-4, atol=1e-5)


def test_respacing_rounds_half_to_even():
    kept = space_timesteps(1000, "25")
    assert 166 in kept and 167 not in kept
    assert 832 in kept and 833 not in kept
    assert space_timesteps(1000, "10,10,10")[:3] == [0, 37, 74]  # section of 334 steps: stride 333/9 = 37


def test_model_timesteps_are_original_scale(schedule_ref):
    diffusion = create_diffusion(1000, "linear", respacing="100")
    t = torch.arange(100)
    got = diffusion.model_timesteps(t)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), schedule_ref["r100_timestep_map"].astype(np.float32))


class RecordingModel:
    """A fake network that returns a fixed output and records the timesteps it is called with."""

    def __init__(self, output: torch.Tensor) -> None:
        self.output = output
        self.calls: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls.append(timesteps.clone())
        return self.output


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prefix", ["", "edge_"])
def test_p_mean_variance_learned_sigma(pmv_ref, prefix):
    R = pmv_ref
    diffusion = create_diffusion(1000, "linear", respacing="100", learn_sigma=True)
    t = R[f"{prefix}t"]
    x = R["x"]
    model = RecordingModel(R["model_output"])
    mv = diffusion.denoise(model, x, t)
    torch.testing.assert_close(model.calls[0], R[f"{prefix}model_timesteps"], rtol=0, atol=0)
    _close(mv.mean, R[f"{prefix}mean"])
    _close(mv.variance, R[f"{prefix}variance"])
    _close(mv.log_variance, R[f"{prefix}log_variance"])
    _close(mv.pred_x0, R[f"{prefix}pred_xstart"])
    clipped = diffusion.denoise(model, x, t, clip_denoised=True)
    _close(clipped.mean, R[f"{prefix}clipped_mean"])
    _close(clipped.pred_x0, R[f"{prefix}clipped_pred_xstart"])
    _close(clipped.variance, R[f"{prefix}variance"])

    _close(diffusion.q_sample(R["x_start"], t, R["noise"]), R[f"{prefix}q_sample"])

    # guidance as a mean shift, and the DDPM step with and without it
    _close(diffusion.guided_mean(mv, R["grad"]), R[f"{prefix}condition_mean"])
    _close(diffusion.ddpm_step(mv, t, R["step_noise"], grad=R["grad"]), R[f"{prefix}p_sample_cond"])
    _close(diffusion.ddpm_step(mv, t, R["step_noise"]), R[f"{prefix}p_sample_nocond"])
    # the guidance function receives the same original-scale timesteps as the model
    torch.testing.assert_close(diffusion.model_timesteps(t), R[f"{prefix}cond_fn_timesteps"], rtol=0, atol=0)

    # DDIM: deterministic, with a score correction, and with eta = 1
    sample, pred = diffusion.ddim_step(mv, x, t)
    _close(sample, R[f"{prefix}ddim_sample"])
    _close(pred, R[f"{prefix}ddim_pred_xstart"])
    sample, pred = diffusion.ddim_step(mv, x, t, grad=R["grad"])
    _close(sample, R[f"{prefix}ddim_sample_cond_score"])
    _close(pred, R[f"{prefix}ddim_sample_cond_score_pred_xstart"])
    sample, _ = diffusion.ddim_step(mv, x, t, R["step_noise"], eta=1.0)
    _close(sample, R[f"{prefix}ddim_sample_eta1"])


def test_edge_case_has_no_noise_at_t0(pmv_ref):
    diffusion = create_diffusion(1000, "linear", respacing="100")
    t = pmv_ref["edge_t"]
    assert t.tolist() == [0, 99]
    mv = diffusion.p_mean_variance(pmv_ref["model_output"], pmv_ref["x"], t)
    sample = diffusion.ddpm_step(mv, t, pmv_ref["step_noise"])
    torch.testing.assert_close(sample[0], mv.mean[0], rtol=0, atol=0)
    assert not torch.allclose(sample[1], mv.mean[1])
