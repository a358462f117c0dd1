# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Forward noising: how a diffusion model destroys an image
#
# Blended Diffusion edits an image by noising it part of the way and denoising it again under guidance.
# Everything starts with the **forward process** $q$, which this notebook takes apart.
#
# **Learning goals.** After this notebook you can
#
# 1. write $q(x_t \mid x_0)$ in closed form and compute it with `bdlib.diffusion.Diffusion.q_sample`;
# 2. compare the linear and cosine schedules through $\bar\alpha_t$ and the signal-to-noise ratio;
# 3. see why the same $t$ looks less noisy on a large photo than on a 32x32 toy scene;
# 4. check numerically that the closed form and 1000 small steps give the same distribution;
# 5. read a respacing string ("100", "ddim50", "25") the way guided-diffusion does, rounding included.
#
# **Run time** (from a fresh kernel, busy 2-core laptop CPU): fast mode (`FAST = True`, the default)
# about 15 s; full mode about 40 s. No network runs here, so a GPU does not matter.
#
# Conventions of the whole course: images are tensors `(B, 3, H, W)` in $[-1, 1]$; timesteps are
# integer indices $t = 0 \dots T-1$ ($T = 1000$), with $t = 0$ the first (least noisy) step.

# %% tags=["parameters"]
FAST = True  # fast mode: fewer Monte-Carlo samples, a 64x64 photo (full mode: 256x256)
WORLD = "toy"  # both worlds share this schedule (linear, 1000 steps), kept for a uniform interface
DEVICE = "cpu"  # everything here is cheap array math
SEED = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from bdlib.diffusion import create_diffusion
from bdlib.imageio import load_image
from bdlib.schedules import beta_schedule, respaced_betas, space_timesteps
from bdlib.viz import show_grid
from bdlib.worlds.toy.ddpm import TOY_DIFFUSION_STEPS
from bdlib.worlds.toy.tasks import example_task

plt.rcParams["figure.dpi"] = 100  # figures below are at most ~4 inches = 400 px wide
torch.manual_seed(SEED)
NOTEBOOK_START = time.perf_counter()
N_MC = 2000 if FAST else 20000  # Monte-Carlo samples for the distribution checks
PHOTO_SIZE = 64 if FAST else 256
T = 1000
print(f"FAST={FAST}  WORLD={WORLD!r}  DEVICE={DEVICE!r}  SEED={SEED}  N_MC={N_MC}  PHOTO_SIZE={PHOTO_SIZE}")
assert TOY_DIFFUSION_STEPS == T, "the toy DDPM uses the paper's 1000-step schedule"

# %% [markdown]
# ## 1. One step, and all steps at once
#
# The forward process adds a little Gaussian noise at each step, with variances $\beta_1, \dots, \beta_T$:
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\!\left(\sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\right).$$
#
# Gaussians compose, so with $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s \le t} \alpha_s$ any
# step can be reached in one jump (Ho et al. 2020, eq. 4):
#
# $$q(x_t \mid x_0) = \mathcal N\!\left(\sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\right)
# \qquad\Longleftrightarrow\qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,
# \quad \varepsilon \sim \mathcal N(0, I).$$
#
# `bdlib.schedules.beta_schedule` gives the betas (float64, as guided-diffusion) and
# `bdlib.diffusion.create_diffusion` derives every other array from them.

# %%
betas = {name: beta_schedule(name, T) for name in ("linear", "cosine")}
diffusions = {name: create_diffusion(T, name, respacing=None) for name in ("linear", "cosine")}
for name, d in diffusions.items():
    alpha_bar = np.cumprod(1.0 - betas[name])  # the one-liner: ᾱ_t = ∏ (1 - β_s)
    assert np.allclose(d.alphas_cumprod, alpha_bar, rtol=0, atol=1e-15)
    print(
        f"{name:>6}: β_0 = {betas[name][0]:.2e}, β_T-1 = {betas[name][-1]:.3f}, "
        f"ᾱ_T-1 = {d.alphas_cumprod[-1]:.2e}, √ᾱ_T-1 = {d.sqrt_alphas_cumprod[-1]:.4f}"
    )
# The linear schedule of Ho et al.: β from 1e-4 to 0.02; at the last step ~0.6 % of the signal's amplitude is left.
assert np.isclose(betas["linear"][0], 1e-4) and np.isclose(betas["linear"][-1], 0.02)
assert diffusions["linear"].sqrt_alphas_cumprod[-1] < 0.01

# %% [markdown]
# ## 2. Linear vs cosine schedules: $\bar\alpha_t$ and the signal-to-noise ratio
#
# How much of $x_0$ survives at step $t$ is best read off the **signal-to-noise ratio**
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}$$
#
# (signal power over noise power in $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon$ for a unit
# signal). The **cosine** schedule (Nichol & Dhariwal 2021, eq. 17) sets
# $\bar\alpha(t) = \cos^2\!\big(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\big)$ with $s = 0.008$: its log-SNR falls
# almost linearly, whereas the **linear** schedule (used by the paper's 256x256 model and by our toy DDPM)
# destroys most of the information in the first half of the chain.

# %%
steps = np.arange(T)
fig, axes = plt.subplots(2, 1, figsize=(4, 4.4), sharex=True)
for name, d in diffusions.items():
    snr = d.alphas_cumprod / (1 - d.alphas_cumprod)
    axes[0].plot(steps, d.alphas_cumprod, label=name)
    axes[1].plot(steps, snr, label=name)
axes[0].set_ylabel(r"$\bar\alpha_t$")
axes[1].set_ylabel(r"SNR = $\bar\alpha/(1-\bar\alpha)$")
axes[1].set_yscale("log")
axes[1].axhline(1.0, color="grey", lw=0.5, ls="--")
axes[1].set_xlabel("t")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

snr = {name: d.alphas_cumprod / (1 - d.alphas_cumprod) for name, d in diffusions.items()}
half = {name: int(np.argmax(s < 1.0)) for name, s in snr.items()}  # first t where noise power > signal power
for name in diffusions:
    print(
        f"{name:>6}: ᾱ_500 = {diffusions[name].alphas_cumprod[500]:.3f}, SNR falls below 1 at t = {half[name]}, "
        f"log10 SNR from {np.log10(snr[name][0]):.1f} to {np.log10(snr[name][-1]):.1f}"
    )
# Claims of the text, checked: both decrease monotonically; the cosine schedule keeps more signal mid-chain.
for s in snr.values():
    assert np.all(np.diff(s) < 0)
assert diffusions["cosine"].alphas_cumprod[500] > 5 * diffusions["linear"].alphas_cumprod[500]
assert half["linear"] < half["cosine"]

# %% [markdown]
# ## 3. Noising a toy scene
#
# `Diffusion.q_sample(x0, t, noise)` is the closed form above. We noise the course's example scene
# (`bdlib.worlds.toy.tasks.example_task`: a blue square and a yellow triangle on a muted background) with
# one shared $\varepsilon$, so that only $t$ changes along a row.

# %%
x0_toy = example_task().image[None]  # (1, 3, 32, 32) in [-1, 1]
show_ts = [0, 50, 100, 200, 300, 500, 999]
generator = torch.Generator().manual_seed(SEED)
eps_toy = torch.randn(x0_toy.shape, generator=generator)


def noised_row(x0: torch.Tensor, eps: torch.Tensor, diffusion) -> list[torch.Tensor]:
    """x_t of one image at every t in show_ts, with one shared noise ε."""
    return [diffusion.q_sample(x0, torch.tensor([t]), eps) for t in show_ts]


rows = [noised_row(x0_toy, eps_toy, diffusions[name]) for name in ("linear", "cosine")]
show_grid(
    rows, titles=[[f"t={t}" for t in show_ts]] * 2, row_labels=["linear", "cosine"], panel_inches=0.56,
    suptitle="q(x_t | x_0) of a toy scene",
)  # fmt: skip
plt.show()

# How much of x_0 is left? The correlation of x_t with x_0 (over pixels) falls with √ᾱ_t.
for name, row in zip(("linear", "cosine"), rows, strict=True):
    corr = [float(np.corrcoef(x0_toy.flatten(), x.flatten())[0, 1]) for x in row]
    print(f"{name:>6} corr(x_t, x_0):", "  ".join(f"t={t}:{c:+.2f}" for t, c in zip(show_ts, corr, strict=True)))
    assert corr[0] > 0.999 and abs(corr[-1]) < 0.1 and corr[1] > corr[3] > corr[5]

# %% [markdown]
# ## 4. The same noise levels on a natural photo
#
# A photo (`skimage.data.chelsea()`, centre-cropped and resized to `PHOTO_SIZE`) noised with the *same*
# schedule. At the same $t$, a large photo stays recognisable much longer than a 32x32 scene: its
# neighbouring pixels are nearly equal, so averaging them (as the eye does, or as the second row does
# down to 32x32) removes noise but keeps the picture. Averaging $k \times k$ pixels
# keeps the (smooth) signal and divides the noise's standard deviation by $k$, which multiplies the SNR by
# $k^2$ (the "resolution shift" discussed by Hoogeboom et al. 2023, *simple diffusion*).

# %%
photo = skimage.data.chelsea()  # (300, 451, 3) uint8
side = min(photo.shape[:2])
top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
photo = load_image(photo[top : top + side, left : left + side])  # (1, 3, 300, 300) in [-1, 1]
x0_photo = F.interpolate(photo, size=(PHOTO_SIZE, PHOTO_SIZE), mode="bicubic", antialias=True).clamp(-1, 1)
eps_photo = torch.randn(x0_photo.shape, generator=generator)
row = noised_row(x0_photo, eps_photo, diffusions["linear"])
k = PHOTO_SIZE // 32  # pooling factor down to 32x32
pooled_row = [F.avg_pool2d(x, k) for x in row]  # (1, 3, 32, 32) each: what a 32x32 view of x_t shows
show_grid(
    [row, pooled_row], titles=[[f"t={t}" for t in show_ts], []], row_labels=[f"{PHOTO_SIZE}px", f"{k}x{k} avg"],
    panel_inches=0.56, suptitle="chelsea, linear schedule: x_t, and x_t averaged down to 32px",
)  # fmt: skip
plt.show()

# Pool the noise alone (ε at t = 300) down to 32x32: its std shrinks by the pooling factor k.
t_check = 300
noise_part = diffusions["linear"].sqrt_one_minus_alphas_cumprod[t_check] * eps_photo
pooled_std = float(F.avg_pool2d(noise_part, k).std())
expected = diffusions["linear"].sqrt_one_minus_alphas_cumprod[t_check] / k
print(f"t={t_check}: noise std {float(noise_part.std()):.3f} at {PHOTO_SIZE}px, {pooled_std:.3f} after {k}x{k} pooling "
      f"(expected √(1-ᾱ)/k = {expected:.3f}); the SNR seen at 32px is {k * k}x higher")  # fmt: skip
assert abs(pooled_std - expected) < 0.05 * expected + 0.01

# %% [markdown]
# ## 5. The closed form agrees with iterating single steps
#
# Iterating $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,z_t$ from $x_0$ must give the same *distribution*
# as one jump with `q_sample` (not the same sample: the noises differ). Two checks:
#
# * exactly, the recursions of the mean factor $m_t = \sqrt{1-\beta_t}\, m_{t-1}$ and of the variance
#   $v_t = (1-\beta_t)\, v_{t-1} + \beta_t$ reproduce $\sqrt{\bar\alpha_t}$ and $1-\bar\alpha_t$;
# * empirically, `N_MC` chains of single steps and `N_MC` closed-form draws have the same per-pixel
#   mean and standard deviation (up to Monte-Carlo error $\approx \sigma / \sqrt{N}$).

# %%
d = diffusions["linear"]
mean_factor, variance = 1.0, 0.0
for t in range(T):
    mean_factor = np.sqrt(1 - d.betas[t]) * mean_factor
    variance = (1 - d.betas[t]) * variance + d.betas[t]
    assert abs(mean_factor - d.sqrt_alphas_cumprod[t]) < 1e-12 and abs(variance - (1 - d.alphas_cumprod[t])) < 1e-12
print(f"after {T} steps: mean factor {mean_factor:.6f} = √ᾱ_T-1, variance {variance:.6f} = 1-ᾱ_T-1 (to 1e-12)")

t_stop = 200 if FAST else 600  # iterate this many single steps
gen_mc = torch.Generator().manual_seed(SEED + 1)
x0_small = x0_toy[:, :, ::4, ::4]  # (1, 3, 8, 8): 192 pixels keep the Monte-Carlo loop fast
chains = x0_small.expand(N_MC, -1, -1, -1).clone()  # (N, 3, 8, 8)
for t in range(t_stop + 1):
    beta = float(d.betas[t])
    chains = np.sqrt(1 - beta) * chains + np.sqrt(beta) * torch.randn(chains.shape, generator=gen_mc)
closed = d.q_sample(
    x0_small.expand(N_MC, -1, -1, -1),
    torch.full((N_MC,), t_stop),
    torch.randn((N_MC, *x0_small.shape[1:]), generator=gen_mc),
)
sigma = float(d.sqrt_one_minus_alphas_cumprod[t_stop])
target_mean = float(d.sqrt_alphas_cumprod[t_stop]) * x0_small[0]
se = sigma / np.sqrt(N_MC)  # standard error of a per-pixel mean
for label, xs in (("iterated", chains), ("closed form", closed)):
    mean_err = float((xs.mean(0) - target_mean).abs().max())
    std_err = float((xs.std(0) - sigma).abs().max())
    print(f"t={t_stop} {label:>11}: max |mean - √ᾱ x0| = {mean_err:.4f} ({mean_err / se:.1f} SE), "
          f"max |std - √(1-ᾱ)| = {std_err:.4f}  (σ = {sigma:.4f}, SE = {se:.4f})")  # fmt: skip
    assert mean_err < 5 * se and std_err < 5 * sigma / np.sqrt(2 * N_MC)
gap = float((chains.mean(0) - closed.mean(0)).abs().max())
print(f"iterated vs closed form: max per-pixel mean gap {gap:.4f} (< {5 * np.sqrt(2) * se:.4f} expected)")
assert gap < 5 * np.sqrt(2) * se

# %% [markdown]
# ## 6. Respacing: fewer steps, same $\bar\alpha$
#
# Sampling all 1000 steps is slow. Improved DDPM (Nichol & Dhariwal 2021, §4) keeps a subset
# $S = (S_0 < S_1 < \dots)$ of the steps and builds a shorter chain with the **same** $\bar\alpha$ on it:
#
# $$\bar\alpha'_i = \bar\alpha_{S_i}, \qquad \beta'_i = 1 - \frac{\bar\alpha_{S_i}}{\bar\alpha_{S_{i-1}}}.$$
#
# `bdlib.schedules.space_timesteps(T, spec)` reproduces guided-diffusion's rules exactly:
#
# * `"100"`: 100 steps spread evenly over $0 \dots 999$ at positions $j \cdot \frac{999}{99}$, rounded;
# * `"ddim50"`: the integer stride that gives exactly 50 steps: $0, 20, 40, \dots, 980$ (not 999!);
# * `"25"`: stride $999/24 = 41.625$; position $4 \times 41.625 = 166.5$ is rounded by Python's `round`,
#   which rounds half to **even**: 166, not 167.
#
# Blended Diffusion's official setting is `"100"` with `skip_timesteps = 25`: the edit starts at respaced
# index $k = 100 - 25 - 1 = 74$.

# %%
kept = {spec: space_timesteps(T, spec) for spec in ("100", "ddim50", "25", "10,10,10")}
for spec, s in kept.items():
    print(f"{spec!r:>11}: {len(s)} steps, first {s[:5]}, last {s[-3:]}")
assert kept["ddim50"] == list(range(0, 1000, 20)) and kept["ddim50"][-1] == 980
assert 166 in kept["25"] and 167 not in kept["25"], "half to even: 166.5 -> 166"
print("position 4 of '25':", 4 * 999 / 24, "-> round() ->", round(4 * 999 / 24))

respaced = create_diffusion(T, "linear", respacing="100")
assert np.allclose(respaced.alphas_cumprod, d.alphas_cumprod[kept["100"]], rtol=1e-12, atol=0)
assert np.allclose(respaced.betas, respaced_betas(d.alphas_cumprod, kept["100"]))
k_official = 100 - 25 - 1
print(f"official start index k = {k_official} = original t {respaced.timestep_map[k_official]} "
      f"(ᾱ = {respaced.alphas_cumprod[k_official]:.4f}); respaced β' from {respaced.betas[0]:.4f} "
      f"to {respaced.betas[-1]:.4f}")  # fmt: skip
assert int(respaced.timestep_map[k_official]) == 747

specs = ("100", "ddim50", "25", "10,10,10")
fig, ax = plt.subplots(figsize=(4, 1.8))
ax.eventplot([kept[spec] for spec in specs], lineoffsets=range(len(specs)), linelengths=0.7, linewidths=0.8)
ax.axvline(int(respaced.timestep_map[k_official]), color="red", lw=0.8, ls="--")
ax.set_yticks(range(len(specs)), [repr(spec) for spec in specs], fontsize=7)
ax.set_xlabel("original t kept by each respacing")
ax.set_title("red: where the official edit starts (k = 74 of '100', t = 747)", fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$: one jump replaces $t$ small steps,
#   exactly in distribution (section 5 checked mean and variance to $10^{-12}$ and by Monte Carlo).
# * The SNR $\bar\alpha/(1-\bar\alpha)$ tells how much of $x_0$ is left. The linear schedule (the paper's)
#   crosses SNR = 1 far earlier than the cosine schedule.
# * The same $t$ is "less noisy" on a big image: pooling $k\times k$ pixels multiplies the SNR by $k^2$.
# * Respacing keeps $\bar\alpha$ on a subset of steps; the rounding rules matter: `"ddim50"` ends at 980,
#   `"25"` keeps 166 (half to even), and the official edit starts at respaced index 74 = original $t$ 747.
#
# Next: notebook 02 runs the chain backwards with a network.
#
# ## Exercises
#
# 1. At which original $t$ does the linear schedule's SNR cross $10^{-2}$? And the cosine schedule's?
# 2. Noise the 256x256 photo (`PHOTO_SIZE = 256`) and find the $t$ at which, pooled to 32x32, it has the
#    same SNR as the toy scene at $t = 300$.
# 3. Which original timesteps does `"50,30,20"` keep? Predict the section sizes first (1000 split in 3).
# 4. Why does `"ddim45"` raise an error while `"45"` works?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. `int(np.argmax(snr["linear"] < 1e-2))` and the same for `"cosine"`: the linear one crosses it
#    hundreds of steps earlier.
# 2. Pooling 8x8 multiplies the SNR by 64: look for the first $t$ with
#    `64 * snr["linear"][t] <= snr["linear"][300]`.
# 3. Sections of 334, 333 and 333 steps (the first `1000 % 3 = 1` section is one longer):
#    `space_timesteps(1000, "50,30,20")` takes 50, 30 and 20 evenly spaced steps from them.
# 4. `"ddimN"` needs an integer stride $s$ with `len(range(0, 1000, s)) == N`: stride 22 gives 46 steps and
#    stride 23 gives 44, so no stride gives 45 (the error message says so). `"45"` spreads 45 steps at
#    fractional positions and rounds them, so any count up to 1000 works.
#
# </details>

# %%
elapsed = time.perf_counter() - NOTEBOOK_START
print(f"notebook ran in {elapsed:.1f} s (FAST={FAST})")
