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
# Blended Diffusion edits an image by noising it part of the way and then denoising it again under guidance.
# Everything starts with the **forward process** $q$, which this lesson takes apart.
#
# In particular we will highlight:
#
# * $q(x_t \mid x_0)$ in closed form, computed by `bdlib.core.diffusion.Diffusion.q_sample`, and why one jump
#   equals 1000 small steps;
# * the linear and cosine schedules, read through $\bar\alpha_t$ and the signal-to-noise ratio, on a toy
#   scene and on a photo;
# * respacing strings ("100", "ddim50", "25") read the way guided-diffusion reads them, rounding included.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 7 s, full mode 16 s.
#
# Conventions of the whole course: images are tensors `(B, 3, H, W)` in $[-1, 1]$; timesteps are
# integer indices $t = 0 \dots T-1$ ($T = 1000$), with $t = 0$ the first (least noisy) step.

# %% tags=["parameters"]
FAST = True  # fast mode: fewer Monte-Carlo samples and a shorter chain in section 5
WORLD = "toy"  # both worlds share this schedule (linear, 1000 steps), kept for a uniform interface
DEVICE = "cpu"  # unused: everything here is cheap array math on the CPU
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from bdlib.core.diffusion import create_diffusion
from bdlib.course.viz import show_grid, table

plt.rcParams["figure.dpi"] = 100
N_MC = 2000 if FAST else 20000  # Monte-Carlo samples for the distribution check of section 5
T = 1000

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
# `create_diffusion` takes the betas of a named schedule (float64, as guided-diffusion) and derives every
# other array from them. The table shows both ends of each schedule.

# %%
diffusions = {name: create_diffusion(T, name, respacing=None) for name in ("linear", "cosine")}
# ᾱ_t = ∏_{s≤t} (1 - β_s): the one-liner behind d.alphas_cumprod
alpha_bar = {name: np.cumprod(1.0 - d.betas) for name, d in diffusions.items()}
table(
    [
        {
            "schedule": name,
            "β_0": d.betas[0],
            "β_999": d.betas[-1],
            "ᾱ_999": d.alphas_cumprod[-1],
            "√ᾱ_999": d.sqrt_alphas_cumprod[-1],
        }
        for name, d in diffusions.items()
    ],
    digits=4,
)

# %% [markdown]
# The linear schedule of Ho et al. runs β from $10^{-4}$ to $0.02$; after the last step only 0.6 % of the
# signal's amplitude is left ($\sqrt{\bar\alpha_{999}} = 0.0064$). The cosine schedule ends with β = 0.999, a
# step that wipes out what little is left.
#
# ## 2. Linear vs cosine: $\bar\alpha_t$ and the signal-to-noise ratio
#
# How much of $x_0$ survives at step $t$ is best read off the **signal-to-noise ratio**
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}$$
#
# (signal power over noise power in $x_t$ for a unit signal). The **cosine** schedule (Nichol & Dhariwal
# 2021, eq. 17) sets $\bar\alpha(t) = \cos^2\!\big(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\big)$ with $s = 0.008$.
# In the plot, look at where each SNR curve crosses the dashed line SNR = 1 (as much noise as signal).

# %%
snr = {name: d.alphas_cumprod / (1 - d.alphas_cumprod) for name, d in diffusions.items()}
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
for name, d in diffusions.items():
    axes[0].plot(d.alphas_cumprod, label=name)
    axes[1].semilogy(snr[name], label=name)
axes[1].axhline(1.0, color="grey", ls="--")
axes[0].set(xlabel="t", ylabel=r"$\bar\alpha_t$")
axes[1].set(xlabel="t", ylabel="SNR (log scale)")
axes[0].legend()
fig.tight_layout()
plt.show()

# %%
half = {name: int(np.argmax(s < 1.0)) for name, s in snr.items()}  # first t with more noise than signal
table(
    [
        {"schedule": name, "ᾱ_500": diffusions[name].alphas_cumprod[500], "SNR < 1 from t =": half[name]}
        for name in diffusions
    ]
)

# %% [markdown]
# The linear schedule (used by the paper's 256x256 model and by our toy DDPM) has more noise than signal
# from $t = 259$ on; the cosine schedule only from $t = 496$, and at $t = 500$ it keeps $\bar\alpha = 0.49$
# against 0.078. The cosine log-SNR falls almost linearly over most of the chain, while the linear schedule spends
# three quarters of its steps below SNR = 1 (the linear SNR spans about 8 decades, the cosine one 13, hence the log
# axis).
#
# ## 3. Noising a toy scene
#
# `Diffusion.q_sample(x0, t, noise)` is the closed form above. We noise the course's example scene
# (`bdlib.worlds.toy.tasks.example_task`: a blue square and a yellow triangle on a muted background) with
# one shared $\varepsilon$, so that only $t$ changes along a row. Compare the two rows at $t = 250$ and 500.

# %%
from bdlib.worlds.toy.tasks import example_task

x0_toy = example_task().image[None]  # (1, 3, 32, 32) in [-1, 1]
show_ts = [0, 100, 250, 500, 999]
generator = torch.Generator().manual_seed(SEED)  # every random draw of this lesson: a CPU generator
eps_toy = torch.randn(x0_toy.shape, generator=generator)


def noised_row(x0, eps, diffusion, ts=show_ts):
    """x_t of one image at every t in ts, with one shared noise ε."""
    return [diffusion.q_sample(x0, torch.tensor([t]), eps) for t in ts]


rows = [noised_row(x0_toy, eps_toy, diffusions[name]) for name in ("linear", "cosine")]
_ = show_grid(rows, titles=[[f"t = {t}" for t in show_ts]] * 2, row_labels=["linear", "cosine"])

# %% [markdown]
# At $t = 100$ both rows show the two objects. At $t = 250$ the cosine row still shows them while the linear
# row keeps only a faint triangle; at $t = 500$ the cosine row keeps a faint triangle and the linear row looks
# like pure noise.
#
# How much of $x_0$ is left can be measured: the correlation (over pixels) between $x_t$ and $x_0$, for
# every tenth $t$, with the same $\varepsilon$. The dashed line marks 0: nothing left.

# %%
every_10 = list(range(0, T, 10))
corr = {
    name: [float(np.corrcoef(x0_toy.flatten(), x.flatten())[0, 1]) for x in noised_row(x0_toy, eps_toy, d, every_10)]
    for name, d in diffusions.items()
}
fig, ax = plt.subplots(figsize=(7, 2.6))
for name, values in corr.items():
    ax.plot(every_10, values, label=name)
ax.axhline(0.0, color="grey", ls="--")
ax.set(xlabel="t", ylabel=r"corr$(x_t, x_0)$")
ax.legend()
plt.show()

# %% [markdown]
# Both curves start at 1. The linear one has fallen to about 0.1 by $t = 500$ (the cosine one is still near
# 0.3 there) and stays near 0 from about $t = 700$ on; the cosine one reaches 0 only at the end of the chain.
#
# ## 4. The same noise levels on a natural photo
#
# A 256x256 photo (`skimage.data.chelsea()`, centre-cropped) noised with the *same* linear schedule. At the same
# $t$, a large photo stays recognisable much longer than a 32x32 scene: neighbouring pixels are nearly equal,
# so averaging $k \times k$ of them keeps the (smooth) signal and divides the noise's standard deviation by
# $k$, which multiplies the SNR by $k^2$ (the "resolution shift" discussed by Hoogeboom et al. 2023, *simple
# diffusion*). The first row is the 256x256 photo noised to level $t$; the second row is $x_t$
# averaged down to 32x32 ($k = 8$). The toy scene of section 3 was pure noise at $t = 500$: look for the cat there.

# %%
import skimage.data
import torch.nn.functional as F

from bdlib.runtime.imageio import load_image

photo = skimage.data.chelsea()  # (300, 451, 3) uint8
left = (photo.shape[1] - photo.shape[0]) // 2
photo = load_image(photo[:, left : left + photo.shape[0]])  # (1, 3, 300, 300) in [-1, 1]
x0_photo = F.interpolate(photo, size=(256, 256), mode="bicubic", antialias=True).clamp(-1, 1)
eps_photo = torch.randn(x0_photo.shape, generator=generator)
photo_ts = [250, 500, 750]
row = noised_row(x0_photo, eps_photo, diffusions["linear"], photo_ts)
k = 256 // 32  # averaging factor down to 32x32
_ = show_grid(
    [row, [F.avg_pool2d(x, k) for x in row]],
    titles=[[f"t = {t}" for t in photo_ts], []],
    row_labels=["256 px", f"{k}x{k} average"],
    panel_inches=2.56,
)

# %% [markdown]
# At $t = 250$, where the toy scene kept only a faint triangle, the cat is clear in both rows. At $t = 500$,
# where the toy scene was pure noise, an eye and the nose still show faintly; at $t = 750$ both rows are noise.
# The averaged row is the cleaner one. The noise part alone at $t = 300$, before and after averaging:

# %%
t_check = 300
noise_std = diffusions["linear"].sqrt_one_minus_alphas_cumprod[t_check]  # √(1-ᾱ_t)
pooled_std = float(F.avg_pool2d(noise_std * eps_photo, k).std())
table(
    [
        {
            "t": t_check,
            "noise std at 256 px": float((noise_std * eps_photo).std()),
            f"after {k}x{k} averaging": pooled_std,
            "√(1-ᾱ_t) / k": noise_std / k,
        }
    ]
)

# %% [markdown]
# The averaged noise has the predicted standard deviation $\sqrt{1-\bar\alpha_t}/k$, so a 32x32 view of the
# photo's $x_t$ has $k^2$ times the SNR of a 32x32 image at the same $t$.
#
# ## 5. The closed form agrees with iterating single steps
#
# Iterating $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,z_t$ from $x_0$ must give the same *distribution*
# as one jump with `q_sample` (not the same sample: the noises differ). First exactly: the mean factor
# obeys $m_t = \sqrt{1-\beta_t}\, m_{t-1}$ and the variance $v_t = (1-\beta_t)\, v_{t-1} + \beta_t$. After all
# 1000 steps they should equal $\sqrt{\bar\alpha_{999}}$ and $1-\bar\alpha_{999}$:

# %%
d = diffusions["linear"]
mean_factor, variance = 1.0, 0.0
for beta in d.betas:
    mean_factor = np.sqrt(1 - beta) * mean_factor  # m_t = √(1-β_t) m_{t-1}
    variance = (1 - beta) * variance + beta  # v_t = (1-β_t) v_{t-1} + β_t
mean_factor - d.sqrt_alphas_cumprod[-1], variance - (1 - d.alphas_cumprod[-1])

# %% [markdown]
# Both differences are at the level of float64 rounding. Now empirically: `N_MC` chains of single steps up
# to `t_stop` and `N_MC` closed-form draws should have the per-pixel mean $\sqrt{\bar\alpha_t}\,x_0$ and
# standard deviation $\sqrt{1-\bar\alpha_t}$, up to Monte-Carlo error (the standard error of a mean is
# $\mathrm{SE} = \sigma/\sqrt{N}$; the table gives the largest error over the pixels in SE units).

# %%
t_stop = 200 if FAST else 600
x0_small = x0_toy[:, :, ::4, ::4].expand(N_MC, -1, -1, -1)  # (N_MC, 3, 8, 8): 192 pixels keep the loop fast
chains = x0_small.clone()
for beta in d.betas[: t_stop + 1]:  # one small step at a time
    chains = np.sqrt(1 - beta) * chains + np.sqrt(beta) * torch.randn(chains.shape, generator=generator)
closed = d.q_sample(x0_small, torch.full((N_MC,), t_stop), torch.randn(x0_small.shape, generator=generator))
sigma = float(d.sqrt_one_minus_alphas_cumprod[t_stop])
se_mean, se_std = sigma / np.sqrt(N_MC), sigma / np.sqrt(2 * N_MC)  # standard errors of a mean and of a std
errors = {
    label: (
        float((xs.mean(0) - d.sqrt_alphas_cumprod[t_stop] * x0_small[0]).abs().max()) / se_mean,
        float((xs.std(0) - sigma).abs().max()) / se_std,
    )
    for label, xs in (("iterated", chains), ("closed form", closed))
}
table(
    [
        {"t": t_stop, "x_t from": label, "max mean error (SE)": m, "max std error (SE)": s}
        for label, (m, s) in errors.items()
    ]
)

# %% [markdown]
# Both ways stay below 5 standard errors on every one of the 192 pixels, as two samplers of the same
# distribution should (for a correct sampler, an error above 5 SE on any of 192 pixels has a chance of about
# 1 in 10,000): the two distributions agree.
#
# ## 6. Respacing: fewer steps, same $\bar\alpha$
#
# Sampling all 1000 steps is slow. Improved DDPM (Nichol & Dhariwal 2021, §4) keeps a subset
# $S = (S_0 < S_1 < \dots)$ of the steps and builds a shorter chain with the **same** $\bar\alpha$ on it:
#
# $$\bar\alpha'_i = \bar\alpha_{S_i}, \qquad \beta'_i = 1 - \frac{\bar\alpha_{S_i}}{\bar\alpha_{S_{i-1}}}.$$
#
# `bdlib.core.schedules.space_timesteps(T, spec)` reproduces guided-diffusion's rules exactly:
#
# * `"100"`: 100 steps spread evenly over $0 \dots 999$ at positions $j \cdot \frac{999}{99}$, rounded;
# * `"ddim50"`: the integer stride that gives exactly 50 steps: $0, 20, 40, \dots, 980$ (not 999!);
# * `"25"`: stride $999/24 = 41.625$; position $4 \times 41.625 = 166.5$ is rounded by Python's `round`,
#   which rounds half to **even**: 166, not 167.
#
# Look for these three details in the table.

# %%
from bdlib.core.schedules import space_timesteps

specs = ("100", "ddim50", "25", "10,10,10")
kept = {spec: space_timesteps(T, spec) for spec in specs}
table([{"spec": repr(spec), "steps": len(s), "first five": s[:5], "last three": s[-3:]} for spec, s in kept.items()])

# %% [markdown]
# `"ddim50"` ends at 980, `"25"` keeps 166 (`round(166.5)` is 166), and `"10,10,10"` takes 10 steps from each
# third of the chain. Blended Diffusion's official setting is `"100"` with `skip_timesteps = 25`: the edit
# starts at respaced index $k = 100 - 25 - 1 = 74$, which is original $t = 747$. The respaced diffusion keeps
# $\bar\alpha$ on its steps and remembers which original step each index stands for (`timestep_map`). In the
# plot, each tick is a kept step; the red line is where the official edit starts.

# %%
respaced = create_diffusion(T, "linear", respacing="100")
k_official = 100 - 25 - 1
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.eventplot([kept[spec] for spec in specs], lineoffsets=range(len(specs)), linelengths=0.7)
ax.axvline(int(respaced.timestep_map[k_official]), color="red", ls="--")
ax.set_yticks(range(len(specs)), [repr(spec) for spec in specs])
ax.set_xlabel("original t kept by each respacing")
plt.show()

# %% [markdown]
# ## Summary
#
# In this lesson we have:
#
# * written $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ and checked that one jump equals $t$
#   small steps in distribution (the recursions to float64 rounding, and by Monte Carlo);
# * compared the schedules through the SNR $\bar\alpha/(1-\bar\alpha)$: the linear one (the paper's) crosses
#   SNR = 1 at $t = 259$, the cosine one at $t = 496$; and seen that the same $t$ is less noisy on a big photo,
#   because averaging $k\times k$ pixels multiplies the SNR by $k^2$;
# * read respacing strings the way guided-diffusion does: `"ddim50"` ends at 980, `"25"` keeps 166 (half to
#   even), and the official edit starts at respaced index 74 = original $t$ 747.
#
# Next: lesson 02 runs the chain backwards with a network.
#
# ## Exercises
#
# 1. At which original $t$ does the SNR first fall below $10^{-2}$, for the linear and for the cosine schedule?
# 2. A 256x256 photo averaged down to 32x32 ($k = 8$) gains a factor 64 in SNR. At which $t$ does it have,
#    averaged, the SNR that a 32x32 image has at $t = 300$ (linear schedule)?
# 3. Which original timesteps does `"50,30,20"` keep? Report the size of each of the three sections and
#    the first steps taken from each.
# 4. Why does `"ddim45"` raise an error while `"45"` works? Report the step counts of the two strides
#    nearest to 45 steps.

# %% [markdown]
# ## Solutions
#
# **1.** The first $t$ with SNR below $10^{-2}$:

# %% tags=["solution"] jupyter={"source_hidden": true}
crossing = {name: int(np.argmax(s < 1e-2)) for name, s in snr.items()}
table([{"schedule": name, "SNR < 1e-2 from t =": t} for name, t in crossing.items()])

# %% [markdown] tags=["solution"]
# **Answer.** The linear schedule crosses SNR = $10^{-2}$ at $t = 674$, the cosine one at $t = 936$: the
# linear schedule leaves its last third of steps at SNR below $10^{-2}$, where almost nothing of $x_0$ is left.
#
# **2.** We look for the first $t$ with $64 \cdot \mathrm{SNR}(t) \le \mathrm{SNR}(300)$:

# %% tags=["solution"] jupyter={"source_hidden": true}
int(np.argmax(64 * snr["linear"] <= snr["linear"][300]))

# %% [markdown] tags=["solution"]
# **Answer.** $t = 673$: a 256x256 photo seen at 32x32 is as noisy at $t = 673$ as a 32x32 image at $t = 300$.
# A given $t$ destroys much less of a 256x256 photo, at the scale of its objects, than of a 32x32 toy scene.
#
# **3.** Three sections of $1000 = 334 + 333 + 333$ steps (the first `1000 % 3 = 1` section is one longer):

# %% tags=["solution"] jupyter={"source_hidden": true}
steps_50_30_20 = space_timesteps(T, "50,30,20")
table(
    [
        {"section": i, "steps taken": n, "first steps": [s for s in steps_50_30_20 if lo <= s < lo + size][:4]}
        for i, (n, lo, size) in enumerate(((50, 0, 334), (30, 334, 333), (20, 667, 333)))
    ]
)

# %% [markdown] tags=["solution"]
# **Answer.** 50 steps from $0 \dots 333$ (0, 7, 14, 20, ...), 30 from $334 \dots 666$ (334, 345, 357, ...) and
# 20 from $667 \dots 999$ (667, 684, 702, ...): 100 steps, dense at the start of the chain.
#
# **4.** `"ddimN"` needs an integer stride $s$ with `len(range(0, 1000, s)) == N`:

# %% tags=["solution"] jupyter={"source_hidden": true}
try:
    space_timesteps(T, "ddim45")
except ValueError as error:
    print(error)
{stride: len(range(0, T, stride)) for stride in (22, 23)}

# %% [markdown] tags=["solution"]
# **Answer.** Stride 22 gives 46 steps and stride 23 gives 44, so no stride gives 45 and `"ddim45"` is
# refused with the message above. `"45"` spreads 45 steps at fractional positions and rounds them, so any
# count up to 1000 works.

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
assert crossing == {"linear": 674, "cosine": 936}, "exercise 1: t = 674 and 936"
assert steps_50_30_20[50:53] == [334, 345, 357] and steps_50_30_20[80:83] == [667, 684, 702], "exercise 3"

# %% tags=["checks"] jupyter={"source_hidden": true}
# Checks: each claim of the lesson that must never regress, with the sentence it backs.
lin, cos = diffusions["linear"], diffusions["cosine"]
for name, d_ in diffusions.items():
    assert np.allclose(d_.alphas_cumprod, alpha_bar[name], rtol=0, atol=1e-15), "§1: ᾱ_t is the cumulative product"
assert np.isclose(lin.betas[0], 1e-4) and np.isclose(lin.betas[-1], 0.02), "§1: β runs from 1e-4 to 0.02"
assert round(float(lin.sqrt_alphas_cumprod[-1]), 4) == 0.0064, "§1: 0.6 % of the amplitude is left"
assert np.isclose(cos.betas[-1], 0.999), "§1: the cosine schedule ends with β = 0.999"
assert all(np.all(np.diff(s) < 0) for s in snr.values()), "§2: the SNR falls monotonically"
assert half == {"linear": 259, "cosine": 496}, "§2: SNR = 1 is crossed at t = 259 and 496"
assert round(float(cos.alphas_cumprod[500]), 2) == 0.49 and round(float(lin.alphas_cumprod[500]), 3) == 0.078, (
    "§2: ᾱ_500 is 0.49 (cosine) against 0.078 (linear)"
)
assert round(np.log10(snr["linear"][0] / snr["linear"][-1])) == 8, "§2: the linear SNR spans about 8 decades"
assert round(np.log10(snr["cosine"][0] / snr["cosine"][-1])) == 13, "§2: the cosine SNR about 13"
assert corr["linear"][0] > 0.999 and corr["cosine"][0] > 0.999, "§3: the correlation starts at 1"
assert 0.05 < corr["linear"][50] < 0.15 and 0.2 < corr["cosine"][50] < 0.4, "§3: at t = 500 about 0.1 against 0.3"
assert max(abs(c) for c in corr["linear"][70:]) < 0.1, "§3: the linear curve reaches the noise floor long before 999"
assert abs(pooled_std - noise_std / k) < 0.05 * noise_std / k, "§4: the averaged noise std is √(1-ᾱ)/k"
assert abs(mean_factor - lin.sqrt_alphas_cumprod[-1]) < 1e-12, "§5: the mean recursion gives √ᾱ"
assert abs(variance - (1 - lin.alphas_cumprod[-1])) < 1e-12, "§5: the variance recursion gives 1 - ᾱ"
assert all(m < 5 and s < 5 for m, s in errors.values()), "§5: within a few standard errors on every pixel"
assert kept["ddim50"] == list(range(0, 1000, 20)), "§6: 'ddim50' is 0, 20, ..., 980"
assert 166 in kept["25"] and 167 not in kept["25"] and round(166.5) == 166, "§6: half to even: 166.5 -> 166"
assert np.allclose(respaced.alphas_cumprod, lin.alphas_cumprod[kept["100"]], rtol=1e-12, atol=0), "§6: same ᾱ"
assert int(respaced.timestep_map[k_official]) == 747, "§6: the official edit starts at original t = 747"
assert int(np.argmax(64 * snr["linear"] <= snr["linear"][300])) == 673, "exercise 2: t = 673"
assert len(range(0, T, 22)) == 46 and len(range(0, T, 23)) == 44, "exercise 4: strides 22 and 23 give 46 and 44"
