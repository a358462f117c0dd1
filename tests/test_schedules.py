"""bdlib.core.schedules: the noise schedules and the respacing of a chain (guided-diffusion's conventions)."""

from __future__ import annotations

import numpy as np
import pytest

from bdlib.core.schedules import beta_schedule, respaced_betas, space_timesteps


def test_the_linear_schedule_runs_from_1e4_to_0_02_at_1000_steps_and_scales_with_t():
    betas = beta_schedule("linear", 1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert (betas[0], betas[-1]) == pytest.approx((1e-4, 0.02))
    assert np.all(np.diff(betas) > 0)
    short = beta_schedule("linear", 100)
    assert (short[0], short[-1]) == pytest.approx((1e-3, 0.2))  # both ends times 1000 / T


def test_the_cosine_schedule_follows_its_alpha_bar_and_is_capped():
    betas = beta_schedule("cosine", 1000)
    alpha_bar = np.cumprod(1 - betas)
    expected = np.cos((np.arange(1, 1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    expected /= np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    assert np.allclose(alpha_bar[:990], expected[:990], rtol=1e-9)  # before the cap of 0.999 bites
    assert betas.max() == pytest.approx(0.999)


def test_unknown_schedules_and_step_counts_are_refused():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        beta_schedule("linear", 0)


def test_a_count_keeps_evenly_spaced_steps_with_both_ends():
    kept = space_timesteps(1000, "25")
    assert len(kept) == 25 and kept[0] == 0 and kept[-1] == 999
    assert 166 in kept and 167 not in kept  # Python's round, half to even, as the official code
    assert space_timesteps(1000, None) == list(range(1000)) == space_timesteps(1000, "")


def test_sections_and_ddim_strides():
    assert space_timesteps(10, "2,3") == [0, 4, 5, 7, 9]  # two sections of 5 steps: 2 and 3 steps from each
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(10, "ddim3") == [0, 4, 8]
    with pytest.raises(ValueError, match="no integer stride gives exactly 7 of 10 steps"):
        space_timesteps(10, "ddim7")
    with pytest.raises(ValueError, match="section 0 has 5 steps but asks for 6"):
        space_timesteps(10, "6,1")
    with pytest.raises(ValueError, match="'x' is not a positive integer"):
        space_timesteps(10, "x")


def test_respaced_betas_keep_alpha_bar_at_the_kept_steps():
    alpha_bar = np.cumprod(1 - beta_schedule("linear", 1000))
    kept = space_timesteps(1000, "25")
    assert np.allclose(np.cumprod(1 - respaced_betas(alpha_bar, kept)), alpha_bar[kept], rtol=1e-12)
