"""The hybrid DDPM training loss of Improved DDPM, as guided-diffusion trains its models.

``L = L_simple + L_vb`` (Nichol & Dhariwal 2021, section 3.1):

- ``L_simple = ‖ε - ε̂(x_t, t)‖²`` (Ho et al. 2020, eq. 14) trains the mean;
- ``L_vb`` is the variational bound term at ``t`` in bits per dimension, computed with the mean
  detached so that it trains only the variance interpolation ``v``::

      L_vb(t > 0) = KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t)) / ln 2
      L_vb(t = 0) = -log p(x_0 | x_1) / ln 2      (a Gaussian discretised to 256 bins)
"""

from __future__ import annotations

import math

import torch

from bdlib.core.diffusion import Diffusion


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = ½ (log σ₂²/σ₁² + σ₁²/σ₂² + (μ₁-μ₂)²/σ₂² - 1)``, elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """``Φ(x) ≈ ½ (1 + tanh(√(2/π) (x + 0.044715 x³)))`` (the tanh approximation of the normal CDF)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """``log P(x)`` of 8-bit data in [-1, 1] under ``N(means, exp(log_scales)²)`` integrated over each bin.

    Each of the 256 values owns a bin of width ``2/255``; the first and last bins extend to ∓∞
    (Ho et al. 2020, eq. 13).
    """
    if not (x.shape == means.shape == log_scales.shape):
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)}, means {tuple(means.shape)}, log_scales {tuple(log_scales.shape)}"
        )
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_upper = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_lower = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_upper = torch.log(cdf_upper.clamp(min=1e-12))
    log_survival_lower = torch.log((1.0 - cdf_lower).clamp(min=1e-12))
    log_bin = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_survival_lower, log_bin))


def _mean_over_pixels(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def vb_bits_per_dim(
    diffusion: Diffusion, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The variational-bound term ``L_vb`` at ``t`` in bits per dimension, one value per image."""
    true_mean, _, true_log_variance = diffusion.q_posterior(x0, x_t, t)
    mv = diffusion.p_mean_variance(model_output, x_t, t)
    kl = _mean_over_pixels(normal_kl(true_mean, true_log_variance, mv.mean, mv.log_variance)) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, mv.mean, 0.5 * mv.log_variance)
    nll = _mean_over_pixels(nll) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def hybrid_loss(
    diffusion: Diffusion,
    model_output: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-image ``{"loss", "mse", "vb"}`` for a learned-σ model output ``[ε̂, v]`` at ``x_t = q(x_t | x0, noise)``.

    The mean is detached inside ``L_vb``, so ``L_vb`` trains only ``v`` and ``L_simple`` only ``ε̂``.
    """
    if diffusion.variance_type != "learned_range":
        raise ValueError("hybrid_loss needs a learned-σ diffusion (variance_type='learned_range'); use mse for fixed σ")
    model_output = model_output.float()
    channels = x0.shape[1]
    eps, v = model_output.split(channels, dim=1)
    frozen = torch.cat([eps.detach(), v], dim=1)
    mse = _mean_over_pixels((noise - eps) ** 2)
    vb = vb_bits_per_dim(diffusion, frozen, x0, x_t, t)
    return {"loss": mse + vb, "mse": mse, "vb": vb}
