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
# # 02 · The reverse process: from noise back to an image
#
# Lesson 01 destroyed images with $q$. A diffusion model learns to undo one step at a time. Blended
# Diffusion never trains anything: it takes such a model and steers its reverse steps, so we first need
# to know exactly what one reverse step computes.
#
# In particular we will highlight:
#
# * what the network predicts ($\hat\varepsilon$, and a variance value $v$), and how `bdlib.core.diffusion.Diffusion`
#   turns it into the guess $\hat x_0$, the posterior mean and a variance $\Sigma_\theta$ that is not confined
#   to the interval it is said to interpolate;
# * DDPM (ancestral) and DDIM ($\eta$) steps, respaced chains, and `bdlib.core.sampling.sample_progressive`;
# * the trajectory of $x_t$ and of the running guess $\hat x_0$, and why that guess is saturated noise early on.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 21 s, full mode 45 s.
#
# > **About the pictures.** The toy DDPM (`bdlib.worlds.toy.ddpm.load_toy_ddpm`, the paper's UNet class at a
# > small width, trained on 32x32 procedural scenes; its model card `bdlib/worlds/toy/weights/toy_ddpm.md` gives
# > the training and the oracle's verdict on 512 samples) generates scenes like the data's. Numbers that depend
# > on its weights and on the seed are printed by the run, not written in the text.

# %% tags=["parameters"]
FAST = True  # fast mode: 8 samples of 25 steps (full mode: 16 samples of 100 steps, denser t grids)
WORLD = "toy"  # this lesson always uses the toy DDPM (lesson 09 runs the paper's 256x256 model)
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from bdlib.course.viz import show_grid, table
from bdlib.runtime.randomness import randn_on
from bdlib.worlds.toy.ddpm import load_toy_ddpm, toy_diffusion
from bdlib.worlds.toy.scenes import generate_scenes

plt.rcParams["figure.dpi"] = 100
N_SAMPLES = 8 if FAST else 16  # images generated in section 6
SAMPLE_RESPACING = "25" if FAST else "100"


def generator(seed: int) -> torch.Generator:
    """A CPU generator: every random draw of this lesson comes from one and is then moved to DEVICE."""
    return torch.Generator().manual_seed(seed)


unet = load_toy_ddpm().to(DEVICE)
sum(p.numel() for p in unet.parameters())  # parameters of the toy DDPM

# %% [markdown]
# ## 1. What the network predicts: $\hat\varepsilon$, then $\hat x_0$
#
# The network $\varepsilon_\theta(x_t, t)$ is trained to recover the noise that made $x_t$ (Ho et al. 2020,
# $L_\text{simple} = \lVert \varepsilon - \varepsilon_\theta(x_t, t)\rVert^2$). Solving
# $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ for $x_0$ gives its guess of the clean image:
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}}
# = \sqrt{1/\bar\alpha_t}\;x_t - \sqrt{1/\bar\alpha_t - 1}\;\hat\varepsilon$$
#
# (`Diffusion.pred_x0_from_eps`).
# With the *true* $\varepsilon$ this returns $x_0$ exactly; with $\hat\varepsilon$ it is the network's denoised
# estimate. Blended Diffusion's CLIP loss is computed on this $\hat x_0$. The network has 6 output channels:
# $\hat\varepsilon$ for the 3 colour channels, then the variance values $v$ of section 3. Below, one scene at three
# noise levels: compare the last column with the first.

# %%
full = toy_diffusion(respacing=None)  # all 1000 steps
scenes = generate_scenes(8, seed=SEED).images.to(DEVICE)  # (8, 3, 32, 32)
eps = randn_on(scenes.shape, generator(SEED + 1), DEVICE)
probe_ts = [50, 300, 700]
guesses = {}
for t_value in probe_ts:
    t = torch.full((len(scenes),), t_value, device=DEVICE)
    x_t = full.q_sample(scenes, t, eps)  # x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε
    with torch.no_grad():
        eps_hat = unet(x_t, full.model_timesteps(t))[:, :3]  # ε̂: the first 3 of 6 channels
    guesses[t_value] = (x_t, eps_hat, full.pred_x0_from_eps(x_t, t, eps_hat))  # x̂_0
_ = show_grid(
    [[scenes[0], x_t[0], x0_hat[0]] for x_t, _, x0_hat in guesses.values()],
    titles=[["x_0", f"x_t, t = {t}", "x̂_0"] for t in probe_ts],
)

# %% [markdown]
# At $t = 50$ the guess is almost the scene; at $t = 300$ it is close (with a wrong shade here and there); at
# $t = 700$ it is a noisy colour texture in which the objects are hard to make out. Measured over 8 scenes
# (predicting $\hat\varepsilon = 0$ would score an ε error of 1), with the factor that links the two errors:

# %%
table(
    [
        {
            "t": t,
            "MSE(ε̂, ε)": float((e_hat - eps).pow(2).mean()),
            "MSE(x̂_0, x_0)": float((x0h - scenes).pow(2).mean()),
            "√(1/ᾱ_t - 1)": float(full.sqrt_recipm1_alphas_cumprod[t]),
        }
        for t, (_, e_hat, x0h) in guesses.items()
    ],
    digits=4,
)

# %% [markdown]
# The error of $\hat\varepsilon$ is small at every $t$ (smallest at high noise, where $\varepsilon$ is almost all of
# $x_t$), yet the error of $\hat x_0$ grows with $t$: an error in $\hat\varepsilon$ reaches $\hat x_0$ multiplied by
# $\sqrt{1/\bar\alpha_t - 1}$, the last column. Section 6 comes back to this factor.
#
# ## 2. The posterior $q(x_{t-1} \mid x_t, x_0)$ and the reverse mean
#
# Given $x_0$, one step back is Gaussian with a closed form (Ho et al. 2020, eqs. 6-7):
#
# $$\tilde\mu_t(x_t, x_0) = \frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}\,x_0
#   + \frac{(1-\bar\alpha_{t-1})\sqrt{\alpha_t}}{1-\bar\alpha_t}\,x_t,
# \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# The model's reverse step $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta, \Sigma_\theta)$ plugs the guess
# $\hat x_0$ into it: $\mu_\theta = \tilde\mu_t(x_t, \hat x_0)$ (`Diffusion.q_posterior`, `Diffusion.p_mean_variance`).
# The two coefficients at $t = 300$, written out:

# %%
t_value = 300
t = torch.full((len(scenes),), t_value, device=DEVICE)
x_t = full.q_sample(scenes, t, eps)
ab, ab_prev, beta = (float(a[t_value]) for a in (full.alphas_cumprod, full.alphas_cumprod_prev, full.betas))
coef_x0 = beta * np.sqrt(ab_prev) / (1 - ab)  # β_t √ᾱ_{t-1} / (1-ᾱ_t)
coef_xt = (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab)  # (1-ᾱ_{t-1}) √α_t / (1-ᾱ_t)
mean, variance, _ = full.q_posterior(scenes, x_t, t)
coef_x0, coef_xt, float((mean - (coef_x0 * scenes + coef_xt * x_t)).abs().max())

# %% [markdown]
# One step back from $t = 300$ keeps almost all of $x_t$ (0.9930) and adds a little of $x_0$ (0.0063); the
# library's mean agrees with the written-out formula (the last number is the largest difference). Given the true
# $\varepsilon$ as its "network output", `p_mean_variance` rebuilds $x_0$ and this exact posterior mean (checked
# at the end of the lesson).
#
# ## 3. The learned variance, and what the model really does with it
#
# Ho et al. fixed $\Sigma$ to either $\beta_t$ or $\tilde\beta_t$ (both work about equally for samples). Improved
# DDPM (Nichol & Dhariwal 2021, eq. 15) lets the network choose: its second output half $v$ sets
#
# $$\log\Sigma_\theta = f\,\log\beta_t + (1-f)\,\log\tilde\beta_t, \qquad f = \frac{v+1}{2}.$$
#
# For $v \in [-1, 1]$ this interpolates between $\tilde\beta_t$ ($v = -1$) and $\beta_t$ ($v = 1$). But nothing
# keeps $v$ in that range: guided-diffusion (and bdlib, which copies it) does not clamp $v$, so a value outside
# *extrapolates* past the ends. Both the paper's model and the toy DDPM use this `variance_type="learned_range"`.
# We run the network on 8 noised scenes at $t$ from 1 to 999 and compare $\Sigma_\theta$ with $\tilde\beta_t$. In the
# left plot the shaded band is the interval $[\tilde\beta_t, \beta_t]$ divided by $\tilde\beta_t$: look at where the
# learned $\Sigma_\theta$ sits relative to it. The right plot counts the pixels whose $v$ leaves $[-1, 1]$.

# %%
curve_ts = [1, 2, 5, 10, 20, 50, 100, 200, 500, 999]
curve_ts = curve_ts if FAST else sorted(set(curve_ts) | {int(t) for t in np.geomspace(1, 999, 30)})
ratios, v_values = {}, {}
for t_value in curve_ts:
    t = torch.full((len(scenes),), t_value, device=DEVICE)
    with torch.no_grad():
        out = unet(full.q_sample(scenes, t, eps), full.model_timesteps(t))  # (8, 6, 32, 32)
    sigma = full.p_mean_variance(out, full.q_sample(scenes, t, eps), t).variance  # Σ_θ, per pixel
    ratios[t_value] = (sigma / full.posterior_variance[t_value]).cpu()  # Σ_θ / β̃_t
    v_values[t_value] = out[:, 3:].cpu()
upper = full.betas[curve_ts] / full.posterior_variance[curve_ts]  # β_t / β̃_t: the top of the interval
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
axes[0].fill_between(curve_ts, 1, upper, color="C0", alpha=0.2, label=r"$[\tilde\beta_t, \beta_t]$")
axes[0].plot(curve_ts, [float(r.median()) for r in ratios.values()], "k.-", label="median")
axes[0].plot(curve_ts, [float(r.min()) for r in ratios.values()], "rv", label="smallest pixel")
axes[0].axhline(1.0, color="grey", ls="--")
axes[0].set(xscale="log", xlabel="t", ylabel=r"$\Sigma_\theta / \tilde\beta_t$")
axes[0].legend(fontsize="small")
axes[1].plot(curve_ts, [float((v < -1).float().mean()) for v in v_values.values()], "C3.-", label="v < -1")
axes[1].plot(curve_ts, [float((v > 1).float().mean()) for v in v_values.values()], "C2.-", label="v > 1")
axes[1].axhline(0.0, color="grey", ls="--")
axes[1].set(xscale="log", xlabel="t", ylabel="fraction of pixels")
axes[1].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# The band is wide only near $t = 0$ ($\beta_1 / \tilde\beta_1 = 2.2$) and shrinks to a line: $\beta_t$ and
# $\tilde\beta_t$ differ by less than 4 % from $t = 50$ on. The learned $\Sigma_\theta$ sits at or near the
# *bottom* of the band at every $t$ (its median is within 20 % of $\tilde\beta_t$), and at most $t$ a large share
# of the pixels has $v < -1$, which puts $\Sigma_\theta$ *below* $\tilde\beta_t$: the red triangles. Hardly any pixel has
# $v > 1$: a fraction of a percent at the smallest $t$, none from $t = 20$ on. The table gives the numbers for a few $t$:

# %%
table(
    [
        {
            "t": t,
            "mean v": float(v_values[t].mean()),
            "share v < -1": float((v_values[t] < -1).float().mean()),
            "share v > 1": float((v_values[t] > 1).float().mean()),
            "β_t/β̃_t": float(full.betas[t] / full.posterior_variance[t]),
            "Σ/β̃ where v < -1": float(ratios[t][v_values[t] < -1].mean()),
            "smallest Σ/β̃": float(ratios[t].min()),
        }
        for t in (1, 10, 100, 500, 999)
    ],
    digits=4,
)

# %% [markdown]
# What the model actually does:
#
# * **From $t \approx 100$ on**, the mean $v$ is below $-1$ and most pixels extrapolate below $\tilde\beta_t$. It
#   hardly matters: the band is so narrow there ($\beta_t/\tilde\beta_t \le 1.02$ from $t = 100$ on) that even
#   $v = -3$ moves $\Sigma_\theta$ by 2 % at most, so the model in effect uses the small variance $\tilde\beta_t$
#   (Ho et al.'s "fixed small"). Only the $L_\text{vb}$ term of the training loss trains $v$ (the mean is detached
#   in it), and where $\beta_t \approx \tilde\beta_t$ that term barely depends on $v$: nothing pulls $v$ back to
#   $[-1, 1]$.
# * **Near $t = 0$**, where the choice matters, the model also stays near $\tilde\beta_t$: at $t = 1$ the median
#   $\Sigma_\theta$ is about $\tilde\beta_1$, a large share of the pixels has $v < -1$ and the smallest pixel's
#   $\Sigma_\theta$ is well under $\tilde\beta_1$, although $\beta_1$ is 2.2 times larger.
#
# So "$\Sigma_\theta$ between $\tilde\beta_t$ and $\beta_t$" describes the formula for $|v| \le 1$, not the trained
# model: this one prefers the lower end and often goes past it.
#
# ## 4. One reverse step: DDPM and DDIM
#
# **DDPM** (ancestral sampling) draws $x_{t-1} = \mu_\theta(x_t) + \sqrt{\Sigma_\theta}\,z$ with fresh noise $z$
# (`Diffusion.ddpm_step`; no noise at the last step $t = 0$).
#
# **DDIM** (Song et al. 2021, eq. 12) keeps $\hat x_0$ and $\hat\varepsilon$ and re-noises to level $t-1$:
#
# $$x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\hat\varepsilon + \sigma_t z,
# \qquad \sigma_t = \eta\sqrt{\tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_{t-1}}}.$$
#
# With $\eta = 0$ it is deterministic: the same $x_T$ always gives the same image. With $\eta = 1$,
# $\sigma_t^2 = \tilde\beta_t$: a DDPM step with the small variance. The loop below walks a respaced chain the way
# `sample_progressive` does, one network call and one step function per index. It clamps $\hat x_0$ to $[-1, 1]$
# at every step, as guided-diffusion's sampling script does by default (section 6 shows why; exercise 1 drops it).


# %%
def run_chain(diffusion, x, ddim: bool, eta: float, noise_seed: int, clip_denoised: bool = True):
    """Walk t = T-1 ... 0 with Diffusion.denoise and ddpm_step / ddim_step (what sample_progressive does)."""
    g = generator(noise_seed)
    for index in range(diffusion.num_steps - 1, -1, -1):
        t = torch.full((x.shape[0],), index, device=DEVICE)
        with torch.no_grad():
            mv = diffusion.denoise(unet, x, t, clip_denoised)  # μ_θ, Σ_θ, x̂_0 from one network call
        z = randn_on(x.shape, g, DEVICE)  # fresh step noise, drawn on the CPU
        x = diffusion.ddim_step(mv, x, t, z, eta=eta)[0] if ddim else diffusion.ddpm_step(mv, t, z)
    return x


chain_steps = toy_diffusion("10")
x_T = randn_on((1, 3, 32, 32), generator(SEED + 2), DEVICE)
runs = {
    (name, s): run_chain(chain_steps, x_T, name == "DDIM η=0", 0.0, s) for name in ("DDIM η=0", "DDPM") for s in (1, 2)
}
_ = show_grid(
    [[runs[name, 1][0], runs[name, 2][0]] for name in ("DDIM η=0", "DDPM")],
    titles=[["step noise 1", "step noise 2"]] * 2,
    row_labels=["DDIM η=0", "DDPM"],
)

# %% [markdown]
# Same $x_T$, two different streams of step noise, 10 steps: the two DDIM images are identical, the two DDPM
# images differ. The largest pixel difference of each pair:

# %%
{name: float((runs[name, 1] - runs[name, 2]).abs().max()) for name in ("DDIM η=0", "DDPM")}

# %% [markdown]
# ## 5. Respacing at sampling time
#
# A respaced chain (lesson 01) has fewer, larger steps: the network is called once per kept step, with the
# *original* timestep (`Diffusion.model_timesteps`), so the same trained network serves every respacing. Below,
# four $x_T$ (columns) through DDIM with $\eta = 0$ on 10 and 25 steps (and 100 in full mode). Look down each column.

# %%
specs = ["10", "25"] if FAST else ["10", "25", "100"]
x_T = randn_on((4, 3, 32, 32), generator(SEED + 3), DEVICE)
ddim_runs = {spec: run_chain(toy_diffusion(spec), x_T, True, 0.0, SEED + 4) for spec in specs}
_ = show_grid([list(images) for images in ddim_runs.values()], row_labels=[f"'{spec}' steps" for spec in specs])

# %% [markdown]
# Within a column the layout and colours often carry over from one step count to the next: DDIM is a
# deterministic map of $x_T$, and respacing changes how finely it is followed (the answer checks assert that the
# same $x_T$ at two step counts is closer than two different $x_T$). The images are grainier than the DDPM
# samples of section 6: DDIM adds no fresh noise that could cover this small network's errors, and an $x_T$ can
# end as colour noise at every step count. In every chain the first network call sees original $t = 999$:

# %%
{spec: int(toy_diffusion(spec).timestep_map[-1]) for spec in specs}

# %% [markdown]
# ## 6. The toy DDPM generates scenes
#
# `bdlib.core.sampling.sample_progressive(model, diffusion, shape, generator=...)` yields one record per step, a
# `SampleStep`: `t` (respaced index), `timestep` (original $t$), `x_t`, `pred_x0`, `mean` and `x_prev` ($x_{t-1}$).
# The last record's `x_prev` is the generated image. Its `generator` must be a CPU generator (it draws there and moves
# the noise to `device`), so a seed gives the same chain on every device. As guided-diffusion's sampling script
# does by default, we clamp $\hat x_0$ to $[-1, 1]$ at every step (`clip_denoised=True`).

# %%
from bdlib.core.sampling import sample_progressive

d_sample = toy_diffusion(SAMPLE_RESPACING)
shape = (N_SAMPLES, 3, 32, 32)
records = list(sample_progressive(unet, d_sample, shape, generator=generator(SEED), device=DEVICE, clip_denoised=True))
samples = records[-1].x_prev
_ = show_grid([list(samples[i : i + 4]) for i in range(0, N_SAMPLES, 4)])

# %% [markdown]
# Scenes like the training data's: muted backgrounds with up to three coloured circles, squares and triangles
# (some scenes empty, some objects imperfect: the oracle's verdict on 512 samples is in the model card).
#
# ### The trajectory: $x_t$ and the running guess $\hat x_0$
#
# Each record carries the step's $\hat x_0$. Look at the second row from left (the start of the chain, $t = 999$)
# to right ($t = 0$).

# %%
show_at = [999, 875, 750, 500, 0]
picks = [min(range(len(records)), key=lambda i: abs(records[i].timestep - t)) for t in show_at]
_ = show_grid(
    [[records[i].x_t[0] for i in picks], [records[i].pred_x0[0] for i in picks]],
    titles=[[f"t = {records[i].timestep}" for i in picks], []],
    row_labels=["x_t", "x̂_0"],
)

# %% [markdown]
# Early on $\hat x_0$ is **not** a blurry average: it is saturated colour noise. The reason is the factor of
# section 1. At $t = 999$, $\hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t - 1}\,\hat\varepsilon$ with both
# coefficients about 157: $\hat x_0 \approx 157\,(x_t - \hat\varepsilon)$. The best possible guess at that noise level
# would be a blurry average of the data, but to produce it $\hat\varepsilon$ would have to match $x_t$ to within a
# few thousandths per pixel; the network's small errors, times 157, push most pixels far outside $[-1, 1]$, and
# the clamp turns them into pure reds, greens and blues. The factor falls to 17 at $t = 749$ and 3.4 at
# $t = 500$. The plot measures both effects along the chain of all the samples above: the share of $\hat x_0$'s pixels
# that the clamp hit (they sit exactly at $\pm 1$), and the distance from $\hat x_0$ to the final image (the chain
# runs from left to right).

# %%
timesteps = [r.timestep for r in records]
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
axes[0].plot(timesteps, [float((r.pred_x0.abs() == 1).float().mean()) for r in records], ".-")
axes[0].set(ylabel=r"share of $\hat x_0$ clamped")
axes[1].plot(timesteps, [float((r.pred_x0 - samples).pow(2).mean().sqrt()) for r in records], ".-")
axes[1].set(ylabel=r"RMS($\hat x_0$ - final)")
for ax in axes:
    ax.axhline(0.0, color="grey", ls="--")
    ax.set(xlabel="t", xlim=(1010, -10))
fig.tight_layout()
plt.show()

# %% [markdown]
# Most of $\hat x_0$ is clamped at $t = 999$; the share falls fast, to a few percent at $t \approx 750$ and near 0 from
# $t \approx 700$ on. At $t \approx 750$ $\hat x_0$ is a grainy texture (the trajectory figure above); by $t = 500$ it is a blurry layout of the final
# objects, and the distance to the final image shrinks steadily to 0: the last steps only sharpen. So the blurry
# average one might expect appears only in the middle of the chain, once the factor has fallen to a few units.
# This is also why Blended Diffusion starts an edit part-way down the chain (at $k$, original $t = 747$ in the
# official setting): the input noised to that level still carries its coarse layout, and the clamp hardly acts on
# the guesses $\hat x_0$ that CLIP judges from there on.
#
# ## Summary
#
# In this lesson we have:
#
# * turned the network's $\hat\varepsilon$ into $\hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t-1}\,\hat\varepsilon$
#   and the posterior mean $\tilde\mu_t(x_t, \hat x_0)$, exact with the true $\varepsilon$;
# * measured the learned variance: the formula interpolates between $\tilde\beta_t$ and $\beta_t$ only for
#   $|v| \le 1$; the trained model sits at $\tilde\beta_t$ and, with $v < -1$ on many pixels, a little below it;
# * run DDPM steps (fresh noise) and DDIM steps ($\eta = 0$: a deterministic map $x_T \mapsto x_0$; $\eta = 1$:
#   variance $\tilde\beta_t$), on respaced chains that call the same network fewer times, with $\hat x_0$ clamped;
# * drawn a trajectory with `sample_progressive` and seen that $\hat x_0$ is clamped noise at the start of the
#   chain, because an error in $\hat\varepsilon$ enters it multiplied by $\sqrt{1/\bar\alpha_t - 1}$ (157 at $t = 999$).
#
# Next: lesson 03 brings in CLIP and its gradient, the force that steers these steps.
#
# ## Exercises
#
# 1. Drop the clamp (`clip_denoised=False`): sample the images of section 6 again, and run the four DDIM chains
#    of section 5 on 10 steps again. Report the share of pixels inside $[-1, 1]$ and the largest $|x|$ of each.
# 2. From four $x_T$ and one stream of step noise (10 steps), run DDPM and DDIM with $\eta = 0$, 0.5 and 1.
#    Report the RMS distance of each DDIM result to the DDPM result: which $\eta$ gives DDPM's images?
# 3. Replace the learned variance by $\beta_t$: `create_diffusion(1000, "linear", "10", learn_sigma=False)` gives
#    `"fixed_large"`, but the toy network has 6 output channels. Write the step, check that its variance is
#    $\beta_t$, sample the four $x_T$ of exercise 2 with the same step noise, and report the RMS distance to the
#    learned-variance DDPM samples. What do the samples look like, and why?
# 4. Start from a *real* scene noised part of the way instead of from pure noise (SDEdit, and the first half of
#    Blended Diffusion): `sample_progressive(..., init=scene, k=k)` on `toy_diffusion("50")`. Report
#    the RMS distance of the result to the scene for $k = 12$, 24 and 36 (original $t \approx 245$, 490, 734).

# %% [markdown]
# ## Solutions
#
# **1.** The same seeds and chains, without the clamp:

# %% tags=["solution"] jupyter={"source_hidden": true}
unclamped = {
    f"'{SAMPLE_RESPACING}' DDPM, section 6": list(
        sample_progressive(unet, d_sample, shape, generator=generator(SEED), device=DEVICE)
    )[-1].x_prev,
    "'10' DDIM, section 5": run_chain(toy_diffusion("10"), x_T, True, 0.0, SEED + 4, clip_denoised=False),
}
table(
    [
        {"chain": name, "share in [-1, 1]": float((x.abs() <= 1).float().mean()), "largest |x|": float(x.abs().max())}
        for name, x in unclamped.items()
    ],
    digits=4,
)

# %% [markdown] tags=["solution"]
# **Answer.** On the DDPM chain of section 6 the clamp hardly matters with the shipped weights: almost every pixel
# stays inside $[-1, 1]$ and the largest $|x|$ is barely above 1 (the table). On the short deterministic chain it
# matters: without it some DDIM images leave the range far (the largest $|x|$ in the table is several times 1).
# The early $\hat x_0$ are the wild ones (multiplied by up to 157, section 6); DDPM adds large fresh noise at
# those steps, while DDIM with $\eta = 0$ adds none and follows the early guesses deterministically to the end.
# The answer checks assert both observations.
#
# **2.** The same four $x_T$ and the same step noise for every sampler:

# %% tags=["solution"] jupyter={"source_hidden": true}
x_T4 = randn_on((4, 3, 32, 32), generator(SEED + 2), DEVICE)
ddpm4 = run_chain(chain_steps, x_T4, False, 0.0, 1)
to_ddpm = {
    eta: float((run_chain(chain_steps, x_T4, True, eta, 1) - ddpm4).pow(2).mean().sqrt()) for eta in (0.0, 0.5, 1.0)
}
table([{"DDIM η": eta, "RMS distance to DDPM": d} for eta, d in to_ddpm.items()], digits=4)

# %% [markdown] tags=["solution"]
# **Answer.** DDIM with $\eta = 1$ gives DDPM's images: its RMS distance to them is tiny next to those of $\eta = 0$
# and 0.5 (the table; the answer checks assert that it is below a tenth of theirs). With $\eta = 1$,
# $\sigma_t^2 = \tilde\beta_t$, and section 3 showed that this model's $\Sigma_\theta$ is $\tilde\beta_t$ to within a
# few percent: the two samplers take nearly the same steps with the same noise. Smaller $\eta$ replaces part of
# the fresh noise by the network's own $\hat\varepsilon$ and lands elsewhere.
#
# **3.** Hand the first 3 channels (ε̂ alone) to a diffusion with `learn_sigma=False`:

# %% tags=["solution"] jupyter={"source_hidden": true}
from bdlib.core.diffusion import create_diffusion

fixed = create_diffusion(1000, "linear", "10", learn_sigma=False)
x, g, variance_ratios = x_T4, generator(1), []
for index in range(fixed.num_steps - 1, -1, -1):
    t = torch.full((4,), index, device=DEVICE)
    with torch.no_grad():
        mv = fixed.p_mean_variance(unet(x, fixed.model_timesteps(t))[:, :3], x, t, clip_denoised=True)
    variance_ratios.append(float(mv.variance.flatten()[0] / fixed.betas[index]))  # Σ / β_t (β̃_1 at t = 0)
    x = fixed.ddpm_step(mv, t, randn_on(x.shape, g, DEVICE))
_ = show_grid([list(ddpm4), list(x)], row_labels=["learned Σ", "Σ = β_t"])
(
    variance_ratios[:-1],
    float((x - ddpm4).pow(2).mean().sqrt()),
    int(fixed.timestep_map[1]),
    fixed.betas[1] / fixed.posterior_variance[1],
)

# %% [markdown] tags=["solution"]
# **Answer.** Pass `out[:, :3]` to the fixed-variance diffusion's `p_mean_variance`, then `ddpm_step` as before.
# Its variance is exactly $\beta_t$ at every step with noise (the list of ones). The samples come out covered in
# colour noise, far from the learned-variance ones (the second number). The reason is in the last two: on this
# 10-step chain the respaced $\beta_t$ at index 1 (original $t = 111$) is over a thousand times $\tilde\beta_t$, so
# the step before the last adds a lot of noise, and the last step adds none and cannot remove it. On 1000 steps
# the two variances hardly differ (section 3), which is why Ho et al. found both fine; on short chains they do
# not, which is one reason Improved DDPM learns $\Sigma_\theta$.
#
# **4.** SDEdit from three depths $k$ of a 50-step chain:

# %% tags=["solution"] jupyter={"source_hidden": true}
d50 = toy_diffusion("50")
scene = scenes[:1]
sdedit = {
    k: list(
        sample_progressive(unet, d50, init=scene, k=k, generator=generator(SEED), device=DEVICE, clip_denoised=True)
    )[-1].x_prev
    for k in (12, 24, 36)
}
_ = show_grid(
    [[scene[0]] + [s[0] for s in sdedit.values()]],
    titles=[["input"] + [f"k = {k} (t = {d50.timestep_map[k]})" for k in sdedit]],
)
{k: float((s - scene).pow(2).mean().sqrt()) for k, s in sdedit.items()}

# %% [markdown] tags=["solution"]
# **Answer.** The RMS distance to the input grows with $k$ (printed; the answer checks assert it). In the figure, the
# scene survives almost unchanged from $k = 12$; from $k = 24$ the white objects survive but the layout is redrawn
# and the yellow triangle is gone; from $k = 36$ ($t = 734$) the result is a new scene. Blended Diffusion starts at
# about this depth (official $t = 747$), which on its own would redraw everything; it keeps the background by
# blending, so that only the masked region is redrawn (lesson 05).

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
ddpm_free, ddim_free = unclamped.values()
assert float((ddpm_free.abs() <= 1).float().mean()) > 0.99 and float(ddpm_free.abs().max()) < 1.1, "exercise 1: DDPM"
assert float(ddim_free.abs().max()) > 2, "exercise 1: without the clamp some DDIM images leave the range far"
assert to_ddpm[1.0] < 0.1 * min(to_ddpm[0.0], to_ddpm[0.5]), "exercise 2: η = 1 gives DDPM's images"
assert all(r == 1.0 for r in variance_ratios[:-1]), "exercise 3: the variance is β_t"
assert int(fixed.timestep_map[1]) == 111, "exercise 3: index 1 is original t = 111"
assert float(fixed.betas[1] / fixed.posterior_variance[1]) > 1000, "exercise 3: over a thousand times β̃_t"
assert float((x - ddpm4).pow(2).mean().sqrt()) > 0.2, "exercise 3: far from the learned-variance samples"
sd = [float((s - scene).pow(2).mean().sqrt()) for s in sdedit.values()]
assert sd[0] < sd[1] < sd[2], "exercise 4: the distance to the input grows with k"

# %% tags=["checks"] jupyter={"source_hidden": true}
# Checks: each claim of the lesson that must never regress, with the sentence it backs.
assert unet(scenes[:1], full.model_timesteps(torch.tensor([1], device=DEVICE))).shape[1] == 6, "§1: 6 output channels"
t300 = torch.full((len(scenes),), 300, device=DEVICE)
x_300 = full.q_sample(scenes, t300, eps)
assert torch.allclose(full.pred_x0_from_eps(x_300, t300, eps), scenes, atol=1e-4), "§1: the true ε gives x_0 back"
mse_x0 = [float((g_[2] - scenes).pow(2).mean()) for g_ in guesses.values()]
assert mse_x0[0] < mse_x0[1] < mse_x0[2], "§1: the error of x̂_0 grows with t"
assert max(float((g_[1] - eps).pow(2).mean()) for g_ in guesses.values()) < 0.2, "§1: the error of ε̂ stays small"
assert round(coef_x0, 4) == 0.0063 and round(coef_xt, 4) == 0.9930, "§2: the coefficients 0.0063 and 0.9930"
assert np.isclose(float(variance[0]), (1 - ab_prev) / (1 - ab) * beta, rtol=1e-6), "§2: β̃_t"
true_mv = full.p_mean_variance(torch.cat([eps, torch.zeros_like(eps)], dim=1), x_300, t300)
assert torch.allclose(true_mv.mean, mean, atol=1e-5), "§2: p_mean_variance(true ε) gives the posterior mean"
assert round(float(full.betas[1] / full.posterior_variance[1]), 1) == 2.2, "§3: β_1/β̃_1 = 2.2"
assert all(full.betas[t_] / full.posterior_variance[t_] < 1.04 for t_ in range(50, 1000)), "§3: < 4 % from t = 50"
assert all(full.betas[t_] / full.posterior_variance[t_] <= 1.02 for t_ in range(100, 1000)), "§3: ≤ 1.02 from 100"
for t_ in curve_ts:  # the formula, extrapolation included: log Σ = f log β + (1-f) log β̃ for every pixel
    f = (v_values[t_] + 1) / 2
    log_sigma = f * np.log(full.betas[t_]) + (1 - f) * np.log(full.posterior_variance[max(t_, 1)])
    assert torch.allclose(ratios[t_].log(), log_sigma - np.log(full.posterior_variance[t_]), atol=1e-4), "§3: formula"
    assert bool((ratios[t_][v_values[t_] < -1] <= 1 + 1e-5).all()), "§3: v < -1 puts Σ below β̃_t"
    assert float(ratios[t_].median()) < 1.2, "§3: the learned Σ sits at the bottom of the band, at β̃_t"
later = [t_ for t_ in curve_ts if t_ >= 100]
assert all(float(v_values[t_].mean()) < -1 for t_ in later), "§3: from t ≈ 100 on the mean v is below -1"
assert all(float((v_values[t_] < -1).float().mean()) > 0.5 for t_ in later), "§3: most pixels extrapolate below β̃"
assert all(float((v_values[t_] > 1).float().mean()) < 0.005 for t_ in curve_ts), "§3: v > 1: a fraction of a percent"
assert all(float((v_values[t_] > 1).float().mean()) == 0 for t_ in curve_ts if t_ >= 20), "§3: none from t = 20 on"
assert all(float(ratios[t_].min()) > 0.98 for t_ in later), "§3: it moves Σ by 2 % at most"
assert float((v_values[1] < -1).float().mean()) > 0.2 and float(ratios[1].min()) < 0.8, "§3: at t = 1 well under β̃_1"
assert torch.equal(runs["DDIM η=0", 1], runs["DDIM η=0", 2]), "§4: DDIM with η = 0 ignores the step noise"
assert float((runs["DDPM", 1] - runs["DDPM", 2]).abs().max()) > 0.1, "§4: DDPM draws fresh noise at every step"
d25 = toy_diffusion("25")
sigma_eta1_sq = (
    (1 - d25.alphas_cumprod_prev) / (1 - d25.alphas_cumprod) * (1 - d25.alphas_cumprod / d25.alphas_cumprod_prev)
)
assert np.allclose(sigma_eta1_sq[1:], d25.posterior_variance[1:], rtol=1e-10), "§4: η = 1 gives σ_t² = β̃_t"
progressive = list(
    sample_progressive(
        unet, chain_steps, (2, 3, 32, 32), generator=generator(7), device=DEVICE, ddim=True, clip_denoised=True
    )
)
assert torch.allclose(progressive[-1].x_prev, run_chain(chain_steps, progressive[0].x_t, True, 0.0, 0), atol=1e-5), (
    "§4: sample_progressive runs the same loop as run_chain"
)
assert all(toy_diffusion(s).timestep_map[-1] == 999 for s in specs), "§5: the first call sees t = 999"
pairs = [float((a - b).pow(2).mean().sqrt()) for a, b in zip(ddim_runs["10"], ddim_runs["25"], strict=True)]
others = [float((ddim_runs["25"][i] - ddim_runs["25"][j]).pow(2).mean().sqrt()) for i in range(4) for j in range(i)]
assert np.mean(pairs) < np.mean(others), "§5: the same x_T at two step counts is closer than two different x_T"
assert len(records) == d_sample.num_steps and torch.isfinite(samples).all(), "§6: one record per step"
again = [
    list(sample_progressive(unet, chain_steps, (2, 3, 32, 32), generator=generator(SEED), device=DEVICE))[-1].x_prev
    for _ in range(2)
]
assert torch.equal(again[0], again[1]), "§6: the same seed gives the same samples"
clamped = [float((r.pred_x0.abs() == 1).float().mean()) for r in records]
assert clamped[0] > 0.5, "§6: most of x̂_0 is clamped at t = 999"
assert max(c for r, c in zip(records, clamped, strict=True) if r.timestep <= 760) < 0.06, "§6: a few % at 750"
assert max(c for r, c in zip(records, clamped, strict=True) if r.timestep <= 700) < 0.02, "§6: near 0 from 700 on"
assert [round(float(full.sqrt_recipm1_alphas_cumprod[t_])) for t_ in (999, 749)] == [157, 17], "§6: 157 and 17"
assert round(float(full.sqrt_recipm1_alphas_cumprod[500]), 1) == 3.4, "§6: the factor is 3.4 at t = 500"
dist = [float((r.pred_x0 - samples).pow(2).mean().sqrt()) for r in records]
assert dist[0] > dist[len(dist) // 2] > dist[-2], "§6: the distance to the final image shrinks along the chain"
