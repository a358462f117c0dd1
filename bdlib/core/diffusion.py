"""DDPM and DDIM math, numerically identical to OpenAI's guided-diffusion.

Forward process (Ho et al. 2020, eq. 4), with ``ᾱ_t = ∏_{s≤t} (1 - β_s)``::

    q(x_t | x_0) = N(√ᾱ_t · x_0, (1 - ᾱ_t) I)          x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε

Reverse process: a network predicts ``ε̂ = ε_θ(x_t, t)``, hence ``x̂_0`` and the posterior mean
(Ho et al. 2020, eqs. 6-7, 15)::

    x̂_0 = √(1/ᾱ_t) x_t - √(1/ᾱ_t - 1) ε̂
    μ(x_t, x̂_0) = β_t √ᾱ_{t-1} / (1-ᾱ_t) · x̂_0  +  (1-ᾱ_{t-1}) √α_t / (1-ᾱ_t) · x_t
    β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)

All coefficient arrays are computed in float64; a coefficient is cast to the tensor's dtype (float32)
*before* it multiplies, exactly as guided-diffusion's ``_extract_into_tensor`` does. Float64 tensors (a float64
world) keep float64 coefficients and stay float64 throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from bdlib.core.schedules import beta_schedule, respaced_betas, space_timesteps
from bdlib.runtime.precision import at_least_float32

VARIANCE_TYPES = ("learned_range", "fixed_small", "fixed_large")


@dataclass(frozen=True)
class MeanVariance:
    """The reverse-step Gaussian ``p(x_{t-1} | x_t) = N(mean, variance)`` and what it was built from."""

    mean: torch.Tensor  # (B, C, H, W)
    variance: torch.Tensor  # (B, C, H, W)
    log_variance: torch.Tensor  # (B, C, H, W)
    pred_x0: torch.Tensor  # (B, C, H, W)  x̂_0
    eps: torch.Tensor  # (B, C, H, W)  ε̂ as the network predicted it

    def detached(self) -> MeanVariance:
        """The same Gaussian, cut from the autograd graph."""
        return MeanVariance(
            *(value.detach() for value in (self.mean, self.variance, self.log_variance, self.pred_x0, self.eps))
        )


class Diffusion:
    """A (possibly respaced) Gaussian diffusion over ``num_steps`` steps.

    ``timestep_map[i]`` is the original step that respaced index ``i`` stands for; the network always
    receives original-scale timesteps (``timestep_map[i] · 1000 / original_num_steps``, as float32),
    which is guided-diffusion's ``rescale_timesteps=True`` convention.
    """

    def __init__(
        self,
        betas: np.ndarray,
        *,
        variance_type: str = "learned_range",
        timestep_map: np.ndarray | None = None,
        original_num_steps: int | None = None,
    ) -> None:
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {', '.join(VARIANCE_TYPES)}, got {variance_type!r}")
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D array with every value in (0, 1]")
        self.variance_type = variance_type
        self.betas = betas
        self.num_steps = len(betas)
        self.timestep_map = np.arange(self.num_steps) if timestep_map is None else np.asarray(timestep_map)
        self.original_num_steps = original_num_steps or self.num_steps

        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod_next = np.append(ac[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1.0)
        # β̃_t; at t = 0 it is 0, so its log is clipped to the value at t = 1.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - ac)
        self.log_betas = np.log(betas)
        # "fixed_large" uses β_t, except β̃_1 at t = 0 for a better log-likelihood (Ho et al. 2020).
        self.large_variance = np.append(self.posterior_variance[1], betas[1:])
        self.large_log_variance = np.log(self.large_variance)
        self.model_timestep_values = self.timestep_map.astype(np.float64) * (1000.0 / self.original_num_steps)
        self._tensor_cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def _table(self, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The float64 array ``name`` cast to ``dtype`` on ``device`` (cached: no copy per step).

        Casting the whole table and then indexing gives the same numbers as indexing and then casting.
        """
        key = (name, device, dtype)
        table = self._tensor_cache.get(key)
        if table is None:
            table = torch.as_tensor(getattr(self, name), dtype=torch.float64).to(device=device, dtype=dtype)
            self._tensor_cache[key] = table
        return table

    def _coef(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``array[t]`` as a ``(B, 1, 1, 1)`` tensor on ``like``'s device, float32 (or float64 for float64)."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        return self._table(name, like.device, dtype)[t].reshape(-1, *([1] * (like.ndim - 1)))

    def check_t(self, t: torch.Tensor, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``t`` is a (B,) integer tensor of valid indices for batch ``x``."""
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.dtype.is_floating_point:
            raise ValueError(f"t must be a 1-D integer tensor of respaced indices, got {t!r}")
        if t.shape[0] != x.shape[0]:
            raise ValueError(f"t has {t.shape[0]} entries but the batch x has {x.shape[0]}; give one t per image")
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise ValueError(f"t must lie in [0, {self.num_steps - 1}] for this {self.num_steps}-step diffusion")

    def model_timesteps(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The timesteps the network receives: original-scale steps ``map[t] · 1000 / T_orig`` (float32, or
        ``dtype``)."""
        return self._table("model_timestep_values", t.device, dtype)[t]

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` (Ho et al. 2020, eq. 4)."""
        _check_same_shape(x0=x0, noise=noise)
        self.check_t(t, x0)
        return (
            self._coef("sqrt_alphas_cumprod", t, x0) * x0 + self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)`` (Ho et al. 2020, eq. 7)."""
        _check_same_shape(x0=x0, x_t=x_t)
        mean = self._coef("posterior_mean_coef1", t, x_t) * x0 + self._coef("posterior_mean_coef2", t, x_t) * x_t
        variance = self._coef("posterior_variance", t, x_t)
        log_variance = self._coef("posterior_log_variance_clipped", t, x_t)
        return mean, variance, log_variance

    def pred_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x̂_0 = √(1/ᾱ_t) x_t - √(1/ᾱ_t - 1) ε̂`` (eq. 4 solved for x_0)."""
        return (
            self._coef("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self._coef("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def eps_from_pred_x0(self, x_t: torch.Tensor, t: torch.Tensor, pred_x0: torch.Tensor) -> torch.Tensor:
        """``ε̂ = (√(1/ᾱ_t) x_t - x̂_0) / √(1/ᾱ_t - 1)``, the inverse of :meth:`pred_x0_from_eps`."""
        return (self._coef("sqrt_recip_alphas_cumprod", t, x_t) * x_t - pred_x0) / self._coef(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    # ------------------------------------------------------------------ reverse process
    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False
    ) -> MeanVariance:
        """Turn the network output at ``(x_t, t)`` into ``p(x_{t-1} | x_t)``.

        With ``variance_type="learned_range"`` the output has ``2C`` channels: ``ε̂`` and ``v``, and the
        log-variance interpolates between the two extremes (Nichol & Dhariwal 2021, eq. 15)::

            log Σ = f · log β_t + (1 - f) · log β̃_t,    f = (v + 1) / 2
        """
        channels = x_t.shape[1]
        self.check_t(t, x_t)
        learned = self.variance_type == "learned_range"
        expected = 2 * channels if learned else channels
        if (
            model_output.shape[0] != x_t.shape[0]
            or model_output.shape[1] != expected
            or model_output.shape[2:] != x_t.shape[2:]
        ):
            raise ValueError(
                f"model_output has shape {tuple(model_output.shape)} but x_t {tuple(x_t.shape)} with variance_type "
                f"{self.variance_type!r} needs {expected} channels of the same batch and size"
            )
        if learned:
            eps, v = model_output.split(channels, dim=1)
            min_log = self._coef("posterior_log_variance_clipped", t, x_t)
            max_log = self._coef("log_betas", t, x_t)
            frac = (v + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            eps = model_output
            name = "posterior_variance" if self.variance_type == "fixed_small" else "large_variance"
            variance = self._coef(name, t, x_t).expand_as(x_t)
            log_name = "posterior_log_variance_clipped" if self.variance_type == "fixed_small" else "large_log_variance"
            log_variance = self._coef(log_name, t, x_t).expand_as(x_t)
        pred_x0 = self.pred_x0_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1, 1)
        mean, _, _ = self.q_posterior(pred_x0, x_t, t)
        return MeanVariance(mean=mean, variance=variance, log_variance=log_variance, pred_x0=pred_x0, eps=eps)

    def denoise(
        self,
        model: Callable[..., torch.Tensor],
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = False,
        **model_kwargs,
    ) -> MeanVariance:
        """Run ``model(x_t, original_timesteps, **model_kwargs)`` and return :meth:`p_mean_variance`."""
        return self.p_mean_variance(model(x_t, self.model_timesteps(t), **model_kwargs), x_t, t, clip_denoised)

    @staticmethod
    def guided_mean(mv: MeanVariance, grad: torch.Tensor) -> torch.Tensor:
        """Classifier-guidance mean shift ``μ + Σ · ∇_{x_t} log p(y | x_t)`` (Dhariwal & Nichol 2021, Alg. 1)."""
        dtype = at_least_float32(mv.mean.dtype)
        return mv.mean.to(dtype) + mv.variance * grad.to(dtype)

    def score_corrected(self, mv: MeanVariance, x_t: torch.Tensor, t: torch.Tensor, grad: torch.Tensor) -> MeanVariance:
        """Guidance for DDIM as a score correction ``ε' = ε̂ - √(1-ᾱ_t) · g`` (Dhariwal & Nichol 2021, Alg. 2).

        As in the official code, ``ε̂`` is first re-derived from the (possibly clipped) ``x̂_0``.
        """
        eps = self.eps_from_pred_x0(x_t, t, mv.pred_x0)
        eps = eps - (1 - self._coef("alphas_cumprod", t, x_t)).sqrt() * grad
        pred_x0 = self.pred_x0_from_eps(x_t, t, eps)
        mean, _, _ = self.q_posterior(pred_x0, x_t, t)
        return replace(mv, mean=mean, pred_x0=pred_x0, eps=eps)

    def ddpm_step(
        self, mv: MeanVariance, t: torch.Tensor, noise: torch.Tensor, grad: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One ancestral step ``x_{t-1} = μ (+ Σ g) + 1[t > 0] · exp(½ log Σ) · z``."""
        _check_same_shape(mean=mv.mean, noise=noise)
        mean = mv.mean if grad is None else self.guided_mean(mv, grad)
        nonzero = (t != 0).to(mean.dtype).reshape(-1, *([1] * (mean.ndim - 1)))
        return mean + nonzero * torch.exp(0.5 * mv.log_variance) * noise

    def ddim_step(
        self,
        mv: MeanVariance,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        eta: float = 0.0,
        grad: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step (Song et al. 2021, eq. 12); returns ``(x_{t-1}, x̂_0)``.

        ``σ_t = η √((1-ᾱ_{t-1})/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_{t-1})`` and
        ``x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1-ᾱ_{t-1}-σ_t²) ε̂ + σ_t z``. ``η = 0`` is deterministic.
        """
        if grad is not None:
            mv = self.score_corrected(mv, x_t, t, grad)
        eps = self.eps_from_pred_x0(x_t, t, mv.pred_x0)
        alpha_bar = self._coef("alphas_cumprod", t, x_t)
        alpha_bar_prev = self._coef("alphas_cumprod_prev", t, x_t)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        sample = mv.pred_x0 * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        if eta != 0:
            if noise is None:
                raise ValueError("noise is required when eta != 0: pass noise with the shape of x_t")
            _check_same_shape(x_t=x_t, noise=noise)
            nonzero = (t != 0).to(sample.dtype).reshape(-1, *([1] * (sample.ndim - 1)))
            sample = sample + nonzero * sigma * noise
        return sample, mv.pred_x0


def create_diffusion(
    steps: int = 1000,
    schedule: str = "linear",
    respacing: str | int | list[int] | None = None,
    learn_sigma: bool = True,
    sigma_small: bool = False,
) -> Diffusion:
    """Build a diffusion as guided-diffusion's ``create_gaussian_diffusion`` does.

    ``respacing`` keeps a subset of the ``steps`` (see :func:`bdlib.core.schedules.space_timesteps`); the
    respaced chain has betas ``1 - ᾱ_{S_i}/ᾱ_{S_{i-1}}`` and the same ``ᾱ`` on the kept steps.
    """
    betas = beta_schedule(schedule, steps)
    variance_type = "learned_range" if learn_sigma else ("fixed_small" if sigma_small else "fixed_large")
    if respacing is None or respacing == "":
        return Diffusion(betas, variance_type=variance_type)
    kept = space_timesteps(steps, respacing)
    base = Diffusion(betas, variance_type=variance_type)
    return Diffusion(
        respaced_betas(base.alphas_cumprod, kept),
        variance_type=variance_type,
        timestep_map=np.asarray(kept, dtype=np.int64),
        original_num_steps=steps,
    )


def _check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise a ValueError naming the arguments when the given tensors do not share one shape."""
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shape mismatch: {described}; these tensors must have the same shape")
