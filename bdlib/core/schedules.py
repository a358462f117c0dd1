"""Noise schedules and timestep respacing, with guided-diffusion's exact semantics.

A DDPM (Ho et al. 2020) adds Gaussian noise in ``T`` steps with variances ``β_1 … β_T``. Everything
else in :mod:`bdlib.core.diffusion` is derived from these betas, in float64, as the official code does.

Respacing (Nichol & Dhariwal 2021, "Improved DDPM", section 4) keeps a subset ``S`` of the original
steps and defines a new, shorter chain on it whose cumulative products are unchanged:
``ᾱ'_i = ᾱ_{S_i}`` and therefore ``β'_i = 1 - ᾱ_{S_i} / ᾱ_{S_{i-1}}``.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("linear", "cosine")


def beta_schedule(name: str, num_steps: int) -> np.ndarray:
    """Return the float64 betas ``β_0 … β_{T-1}`` of a named schedule.

    - ``"linear"`` (Ho et al. 2020): ``β`` evenly spaced from ``1e-4`` to ``0.02`` for ``T = 1000``; for
      other ``T`` both ends are scaled by ``1000 / T`` so that the total noise stays comparable.
    - ``"cosine"`` (Nichol & Dhariwal 2021, eq. 17): ``ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2)`` with
      ``s = 0.008`` and ``β_t = min(1 - ᾱ(t+1)/ᾱ(t), 0.999)``.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if name == "linear":
        scale = 1000 / num_steps
        return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    if name == "cosine":

        def alpha_bar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999) for i in range(num_steps)]
        return np.array(betas, dtype=np.float64)
    raise ValueError(f"unknown schedule {name!r}: schedule must be one of {', '.join(SCHEDULES)}")


def space_timesteps(num_steps: int, spec: str | int | list[int] | None) -> list[int]:
    """The sorted original steps kept by a respacing ``spec`` (guided-diffusion's ``space_timesteps``).

    - ``None`` or ``""``: keep every step.
    - ``"ddimN"``: the steps ``0, s, 2s, …`` for the integer stride ``s`` that gives exactly ``N`` steps
      (DDIM's uniform skipping; the last step ``T-1`` is generally *not* included).
    - ``"a,b,c"`` (or an int or list): split ``0 … T-1`` into as many near-equal sections (the first
      ``T mod n`` sections one step longer) and take ``count`` evenly spaced steps from each, at positions
      ``round(j · (size-1)/(count-1))`` accumulated by repeated addition and rounded with Python's
      ``round`` (half to even), exactly as the official code does: for ``"25"`` the position 166.5
      becomes 166, not 167.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if spec is None or spec == "":
        return list(range(num_steps))
    if isinstance(spec, str) and spec.startswith("ddim"):
        wanted = _parse_count(spec[len("ddim") :], spec)
        for stride in range(1, num_steps):
            if len(range(0, num_steps, stride)) == wanted:
                return list(range(0, num_steps, stride))
        raise ValueError(
            f"respacing {spec!r}: no integer stride gives exactly {wanted} of {num_steps} steps; "
            f"choose N with {num_steps} // stride hitting N exactly (e.g. 'ddim25', 'ddim50', 'ddim100') "
            "or use a plain count such as '25'"
        )
    if isinstance(spec, int):
        counts = [spec]
    elif isinstance(spec, str):
        counts = [_parse_count(part, spec) for part in spec.split(",")]
    else:
        counts = [_parse_count(str(part), str(spec)) for part in spec]
    if len(counts) > num_steps:
        raise ValueError(
            f"respacing {spec!r} asks for {len(counts)} sections but there are only {num_steps} steps; "
            f"use at most {num_steps} comma-separated sections"
        )
    section_size, extra = divmod(num_steps, len(counts))
    kept: list[int] = []
    start = 0
    for index, count in enumerate(counts):
        size = section_size + (1 if index < extra else 0)
        if count > size:
            raise ValueError(
                f"respacing {spec!r}: section {index} has {size} steps but asks for {count}; each count "
                f"must be between 1 and its section's size (total steps {num_steps})"
            )
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return kept


def _parse_count(text: str, spec: object) -> int:
    """Parse one positive step count of a respacing string, or raise a ValueError naming the spec."""
    try:
        count = int(text.strip())
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"respacing {spec!r}: {text!r} is not a positive integer; allowed forms are '' (all steps), "
            "'100', '10,10,10' (steps per section) and 'ddim50'"
        )
    return count


def respaced_betas(alphas_cumprod: np.ndarray, kept: list[int]) -> np.ndarray:
    """Betas of the respaced chain: ``β'_i = 1 - ᾱ_{S_i} / ᾱ_{S_{i-1}}`` with ``ᾱ_{S_{-1}} = 1``."""
    kept_alphas = alphas_cumprod[np.asarray(kept)]
    previous = np.concatenate([[1.0], kept_alphas[:-1]])
    return 1.0 - kept_alphas / previous
