"""bdlib.core.sampling: the chain, the start index k, and the sampler's draws and dtypes."""

from __future__ import annotations

import pytest
import torch

from bdlib.core.diffusion import create_diffusion
from bdlib.core.sampling import chain, resolve_k, sample, sample_progressive

DIFFUSION = create_diffusion(1000, "linear", respacing="10", learn_sigma=False)


class Eps(torch.nn.Module):
    """A network that predicts ε̂ = 0.1·x_t (fixed σ), in its parameters' dtype."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.1, dtype=dtype))

    def forward(self, x, timesteps):
        assert x.dtype == self.scale.dtype and timesteps.dtype == self.scale.dtype
        return self.scale * x


def test_the_chain_walks_from_k_down_to_0():
    seen = []

    def step(x_t, t):
        seen.append(t)
        record = type("Record", (), {"x_prev": x_t + 1})()
        return record

    records = list(chain(torch.zeros(1), 3, step))
    assert seen == [3, 2, 1, 0] and float(records[-1].x_prev) == 4


def test_k_defaults_to_the_top_and_is_checked():
    assert resolve_k(DIFFUSION, None, has_init=False) == 9
    assert resolve_k(DIFFUSION, 4, has_init=True) == 4
    with pytest.raises(ValueError, match="k"):
        resolve_k(DIFFUSION, 10, has_init=True)


def test_the_same_generator_gives_the_same_chain_and_none_is_refused():
    def final(seed):
        return sample(Eps(), DIFFUSION, (2, 3, 4, 4), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(final(1), final(1)) and not torch.equal(final(1), final(2))
    with pytest.raises(ValueError, match="never from the global RNG"):
        next(sample_progressive(Eps(), DIFFUSION, (1, 3, 4, 4), generator=None))


def test_ddim_with_eta_0_draws_only_the_start_noise():
    generator = torch.Generator().manual_seed(0)
    steps = list(sample_progressive(Eps(), DIFFUSION, (1, 3, 4, 4), generator=generator, ddim=True))
    assert len(steps) == 10
    start_only = torch.Generator().manual_seed(0)
    torch.randn(1, 3, 4, 4, generator=start_only)  # x_k, and nothing after it
    assert torch.equal(generator.get_state(), start_only.get_state())


def test_an_init_starts_the_chain_at_k_and_must_match_the_shape():
    init = torch.zeros(1, 3, 4, 4)
    steps = list(sample_progressive(Eps(), DIFFUSION, init=init, k=4, generator=torch.Generator().manual_seed(0)))
    assert [s.t for s in steps] == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="does not match init"):
        next(sample_progressive(Eps(), DIFFUSION, (1, 3, 8, 8), init=init, generator=torch.Generator()))


def test_the_chain_runs_in_the_models_dtype_with_the_same_noise():
    chains = {
        dtype: sample(Eps(dtype), DIFFUSION, (1, 3, 4, 4), generator=torch.Generator().manual_seed(5))
        for dtype in (torch.float32, torch.float64)
    }
    assert chains[torch.float64].dtype == torch.float64 and chains[torch.float32].dtype == torch.float32
    assert torch.allclose(chains[torch.float64], chains[torch.float32].double(), atol=1e-5)  # the same draws
