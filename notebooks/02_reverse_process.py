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
# Notebook 01 destroyed images with $q$. A diffusion model learns to undo one step at a time. Blended
# Diffusion never trains anything: it takes such a model and steers its reverse steps, so we first need
# to know exactly what one reverse step computes.
#
# **Learning goals.** After this notebook you can
#
# 1. explain what the network predicts ($\hat\varepsilon$, and the variance value $v$) and turn it into
#    $\hat x_0$ and the posterior mean, with `bdlib.diffusion.Diffusion`;
# 2. plot the two variance extremes $\beta_t$ and $\tilde\beta_t$ and see where the learned $\Sigma$ lies;
# 3. run DDPM (ancestral) and DDIM ($\eta$) sampling with `bdlib.sampling.sample_progressive`, respaced;
# 4. draw a trajectory of $x_t$ and of the network's running guess $\hat x_0$.
#
# **Run time** (fresh kernel, busy 2-core laptop CPU): fast mode about 40 s; full mode about 2.5 min.
# On a GPU (`DEVICE = "cuda"`) full mode takes seconds.
#
# **About the pictures.** The toy DDPM (`bdlib.worlds.toy.ddpm.load_toy_ddpm`, 1.9 M parameters, trained
# on 32x32 procedural scenes; its model card gives the training and the oracle's verdict on 512 samples)
# generates scenes like the data's. This notebook asserts shapes, ranges, identities and determinism, which
# hold for any weights, and *prints* quality numbers, which depend on the weights and the seed.

# %% tags=["parameters"]
FAST = True  # fast mode: small batches and short chains (full mode: more samples, 100-step chains)
WORLD = "toy"  # this notebook always uses the toy DDPM (notebook 09 runs the paper's 256x256 model)
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from bdlib.sampling import sample_progressive
from bdlib.viz import show_grid
from bdlib.worlds.toy.ddpm import TOY_UNET_CONFIG, load_toy_ddpm, toy_diffusion
from bdlib.worlds.toy.scenes import generate_scenes
from bdlib.worlds.toy.weights_io import load_weights, weights_path

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(SEED)
NOTEBOOK_START = time.perf_counter()
if WORLD != "toy":
    print(f"WORLD={WORLD!r}: this notebook teaches with the toy DDPM; see notebook 09 for the paper's models.")
N_SAMPLES = 8 if FAST else 16  # images generated in section 6
SAMPLE_RESPACING = "25" if FAST else "100"


def generator(seed: int) -> torch.Generator:
    """A fresh generator on DEVICE: every random draw below comes from one of these."""
    return torch.Generator(device=DEVICE).manual_seed(seed)


unet = load_toy_ddpm().to(DEVICE)
_, meta = load_weights(weights_path("toy_ddpm"), "python -m bdlib train toy-ddpm")
n_params = sum(p.numel() for p in unet.parameters())
print(f"toy DDPM: {n_params:,} parameters, trained {meta.get('step', '?')} steps ({meta.get('minutes', '?')} min); "
      f"out_channels = {TOY_UNET_CONFIG['out_channels']} (ε̂ and v for 3 colour channels)")  # fmt: skip
assert TOY_UNET_CONFIG["out_channels"] == 6

# %% [markdown]
# ## 1. What the network predicts: $\hat\varepsilon$, then $\hat x_0$
#
# The network $\varepsilon_\theta(x_t, t)$ is trained to recover the noise that made $x_t$ (Ho et al. 2020,
# $L_\text{simple} = \lVert \varepsilon - \varepsilon_\theta(x_t, t)\rVert^2$). Solving
# $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ for $x_0$ gives its guess of the clean image:
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}}
# = \sqrt{1/\bar\alpha_t}\;x_t - \sqrt{1/\bar\alpha_t - 1}\;\hat\varepsilon
# \qquad(\texttt{Diffusion.pred\_x0\_from\_eps}).$$
#
# With the *true* $\varepsilon$ this returns $x_0$ exactly; with $\hat\varepsilon$ it is the network's denoised
# estimate. Blended Diffusion's CLIP loss is computed on this $\hat x_0$.

# %%
full = toy_diffusion(respacing=None)  # all 1000 steps
scenes = generate_scenes(4, seed=SEED).images.to(DEVICE)  # (4, 3, 32, 32)
eps = torch.randn(scenes.shape, generator=generator(SEED + 1), device=DEVICE)
probe_ts = [50, 300, 700]
rows, titles = [], []
for t_value in probe_ts:
    t = torch.full((4,), t_value, device=DEVICE)
    x_t = full.q_sample(scenes, t, eps)
    # identity: the true ε gives back x_0 (up to float32 rounding)
    assert torch.allclose(full.pred_x0_from_eps(x_t, t, eps), scenes, atol=1e-4)
    with torch.no_grad():
        out = unet(x_t, full.model_timesteps(t))  # (4, 6, 32, 32)
    assert out.shape == (4, 6, 32, 32) and torch.isfinite(out).all()
    eps_hat = out[:, :3]
    x0_hat = full.pred_x0_from_eps(x_t, t, eps_hat)
    print(f"t={t_value:>3}: MSE(ε̂, ε) = {float((eps_hat - eps).pow(2).mean()):.4f} (predicting 0 scores 1.0); "
          f"MSE(x̂_0, x_0) = {float((x0_hat - scenes).pow(2).mean()):.4f}")  # fmt: skip
    rows.append([scenes[0], x_t[0], x0_hat[0]])
    titles.append(["x_0", f"x_t, t={t_value}", "x̂_0"])
show_grid(rows, titles=titles, panel_inches=0.9, suptitle="the network's guess x̂_0 from one x_t")
plt.show()

# %% [markdown]
# ## 2. The posterior $q(x_{t-1} \mid x_t, x_0)$ and the reverse mean
#
# Given $x_0$, one step back is Gaussian with a closed form (Ho et al. 2020, eqs. 6–7):
#
# $$\tilde\mu_t(x_t, x_0) = \frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}\,x_0
#   + \frac{(1-\bar\alpha_{t-1})\sqrt{\alpha_t}}{1-\bar\alpha_t}\,x_t,
# \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# The model's reverse step $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta, \Sigma_\theta)$ plugs the guess
# $\hat x_0$ into it: $\mu_\theta = \tilde\mu_t(x_t, \hat x_0)$ (`Diffusion.q_posterior`,
# `Diffusion.p_mean_variance`).

# %%
t_value = 300
t = torch.full((4,), t_value, device=DEVICE)
x_t = full.q_sample(scenes, t, eps)
mean, variance, _ = full.q_posterior(scenes, x_t, t)
# the same coefficients written out (a one-liner each, float64 arrays of the diffusion)
ab, ab_prev, beta = (float(a[t_value]) for a in (full.alphas_cumprod, full.alphas_cumprod_prev, full.betas))
by_hand = beta * np.sqrt(ab_prev) / (1 - ab) * scenes + (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab) * x_t
assert torch.allclose(mean, by_hand, atol=1e-5)
assert np.isclose(float(variance[0]), (1 - ab_prev) / (1 - ab) * beta, rtol=1e-6)
print(f"t={t_value}: posterior mean coefficients {beta * np.sqrt(ab_prev) / (1 - ab):.4f}·x_0 + "
      f"{(1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab):.4f}·x_t, variance β̃ = {float(variance[0]):.6f} "
      f"(β = {beta:.6f})")  # fmt: skip

# p_mean_variance with the *true* ε as "network output" gives exactly the true posterior mean
fake_output = torch.cat([eps, torch.zeros_like(eps)], dim=1)  # ε and v = 0
mv = full.p_mean_variance(fake_output, x_t, t)
assert torch.allclose(mv.mean, mean, atol=1e-5) and torch.allclose(mv.pred_x0, scenes, atol=1e-4)
print("p_mean_variance(true ε) reproduces the true posterior mean: max diff", float((mv.mean - mean).abs().max()))

# %% [markdown]
# ## 3. The learned variance: between $\tilde\beta_t$ and $\beta_t$
#
# Ho et al. fixed $\Sigma$ to either $\beta_t$ or $\tilde\beta_t$ (both work about equally for samples). Improved
# DDPM (Nichol & Dhariwal 2021, eq. 15) lets the network choose *between* them: its second output half
# $v \in [-1, 1]$ interpolates the log-variance,
#
# $$\log\Sigma_\theta = f\,\log\beta_t + (1-f)\,\log\tilde\beta_t, \qquad f = \frac{v+1}{2}.$$
#
# Both the paper's model and the toy DDPM use this (`variance_type="learned_range"`). The two extremes
# differ only for small $t$: for most of the chain they are practically equal.

# %%
curve_ts = np.unique(np.geomspace(1, 999, 14 if FAST else 30).astype(int))
learned, v_means = [], []
for t_value in curve_ts:
    t = torch.full((4,), int(t_value), device=DEVICE)
    x_t = full.q_sample(scenes, t, eps)
    with torch.no_grad():
        mv = full.denoise(unet, x_t, t)
        v = unet(x_t, full.model_timesteps(t))[:, 3:]
    learned.append(float(mv.variance.mean()))
    v_means.append(float(v.mean()))
    # identity of the formula: where v is in [-1, 1] the variance lies between β̃_t and β_t
    inside = v.abs() <= 1
    lo, hi = full.posterior_variance[max(int(t_value), 1)], full.betas[int(t_value)]
    assert bool(((mv.variance >= lo * (1 - 1e-4)) & (mv.variance <= hi * (1 + 1e-4)))[inside].all())

all_t = np.arange(1, 1000)
fig, axes = plt.subplots(2, 1, figsize=(4, 4), sharex=True)
axes[0].loglog(all_t, full.betas[1:], label=r"$\beta_t$ (upper)")
axes[0].loglog(all_t, full.posterior_variance[1:], label=r"$\tilde\beta_t$ (lower)")
axes[0].loglog(curve_ts, learned, "k.", label=r"learned $\Sigma_\theta$ (mean)")
axes[0].set_ylabel("variance")
axes[0].legend(fontsize=7)
axes[1].semilogx(all_t, full.posterior_variance[1:] / full.betas[1:])
axes[1].set_ylabel(r"$\tilde\beta_t / \beta_t$")
axes[1].set_xlabel("t")
fig.tight_layout()
plt.show()

ratio = full.posterior_variance[1:] / full.betas[1:]
print("β̃/β at t = 1, 10, 100, 999:", " ".join(f"{ratio[i - 1]:.3f}" for i in (1, 10, 100, 999)))
print("mean v per t:", " ".join(f"{t}:{v:+.2f}" for t, v in zip(curve_ts, v_means, strict=True)))
assert np.all(ratio <= 1 + 1e-12) and ratio[-1] > 0.99 and ratio[0] < 0.6

# %% [markdown]
# ## 4. One reverse step: DDPM and DDIM
#
# **DDPM** (ancestral sampling) draws $x_{t-1} = \mu_\theta(x_t) + \sqrt{\Sigma_\theta}\,z$ with fresh noise $z$
# (`Diffusion.ddpm_step`; no noise at the last step $t = 0$).
#
# **DDIM** (Song et al. 2021, eq. 12) keeps $\hat x_0$ and $\hat\varepsilon$ and re-noises to level $t-1$:
#
# $$x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\hat\varepsilon + \sigma_t z,$$
#
# $$\sigma_t = \eta\sqrt{\tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_{t-1}}}.$$
#
# With $\eta = 0$ it is deterministic: the same $x_T$ always gives the same image. With $\eta = 1$,
# $\sigma_t^2 = \tilde\beta_t$: a DDPM step with the small fixed variance.

# %%
d25 = toy_diffusion("25")
sigma_eta1 = np.sqrt((1 - d25.alphas_cumprod_prev) / (1 - d25.alphas_cumprod)) * np.sqrt(
    1 - d25.alphas_cumprod / d25.alphas_cumprod_prev
)  # σ_t at η = 1, as a one-liner
assert np.allclose(sigma_eta1[1:] ** 2, d25.posterior_variance[1:], rtol=1e-10)
print("η = 1: σ_t² equals β̃_t of the respaced chain at every step (max rel. diff "
      f"{np.max(np.abs(sigma_eta1[1:] ** 2 / d25.posterior_variance[1:] - 1)):.1e})")  # fmt: skip

# The same x_T, stepped by hand through the library's step functions, with two different step noises.
x_T = torch.randn((2, 3, 32, 32), generator=generator(SEED + 2), device=DEVICE)


def run_chain(diffusion, x, ddim: bool, eta: float, noise_seed: int) -> torch.Tensor:
    """Walk t = T-1 ... 0 with Diffusion.denoise and ddpm_step / ddim_step (what sample_progressive does)."""
    g = generator(noise_seed)
    for index in range(diffusion.num_steps - 1, -1, -1):
        t = torch.full((x.shape[0],), index, device=DEVICE)
        with torch.no_grad():
            mv = diffusion.denoise(unet, x, t)
        z = torch.randn(x.shape, generator=g, device=DEVICE)
        x = diffusion.ddim_step(mv, x, t, z, eta=eta)[0] if ddim else diffusion.ddpm_step(mv, t, z)
    return x


chain_steps = toy_diffusion("10")
ddim_a, ddim_b = (run_chain(chain_steps, x_T, True, 0.0, s) for s in (1, 2))
ddpm_a, ddpm_b = (run_chain(chain_steps, x_T, False, 0.0, s) for s in (1, 2))
print(f"same x_T, different step noise: DDIM(η=0) max diff {float((ddim_a - ddim_b).abs().max()):.2e}, "
      f"DDPM max diff {float((ddpm_a - ddpm_b).abs().max()):.2f}")  # fmt: skip
assert torch.equal(ddim_a, ddim_b), "DDIM with η = 0 ignores the step noise"
assert float((ddpm_a - ddpm_b).abs().max()) > 0.1, "DDPM draws fresh noise at every step"

# sample_progressive runs the same loop (and draws x_T from its generator first)
records = list(sample_progressive(unet, chain_steps, (2, 3, 32, 32), generator=generator(7), device=DEVICE, ddim=True))
x_T_used = records[0]["x_t"]
assert torch.allclose(records[-1]["sample"], run_chain(chain_steps, x_T_used, True, 0.0, 0), atol=1e-5)
print("sample_progressive(ddim=True) == the hand-written DDIM loop from its own x_T")

# %% [markdown]
# ## 5. Respacing at sampling time
#
# A respaced chain (notebook 01) has fewer, larger steps: the network is called once per kept step,
# with the *original* timestep (`Diffusion.model_timesteps`), so the same trained network serves every
# respacing. Below, one $x_T$ through 10 and 25 steps (and 100 in full mode), DDPM and DDIM.

# %%
specs = ["10", "25"] if FAST else ["10", "25", "100"]
x_T = torch.randn((1, 3, 32, 32), generator=generator(SEED + 3), device=DEVICE)
rows, row_labels, timings = [], [], {}
for ddim in (False, True):
    row = []
    for spec in specs:
        d = toy_diffusion(spec)
        start = time.perf_counter()
        result = run_chain(d, x_T, ddim, 0.0, SEED + 4)
        timings[(ddim, spec)] = time.perf_counter() - start
        assert result.shape == (1, 3, 32, 32) and torch.isfinite(result).all()
        row.append(result[0])
    rows.append(row)
    row_labels.append("DDIM η=0" if ddim else "DDPM")
show_grid(rows, titles=[[f"'{s}' steps" for s in specs]] * 2, row_labels=row_labels, panel_inches=0.9)
plt.show()
for (ddim, spec), seconds in timings.items():
    print(f"{'DDIM' if ddim else 'DDPM'} '{spec}': {seconds:.2f} s, {1000 * seconds / int(spec):.0f} ms per step")
first_t = {spec: int(toy_diffusion(spec).timestep_map[-1]) for spec in specs}
print("the first network call sees original t =", first_t)

# %% [markdown]
# ## 6. The toy DDPM generates scenes
#
# `bdlib.sampling.sample_progressive(model, diffusion, shape, generator=...)` yields one record per step:
# `t` (respaced index), `timestep` (original $t$), `x_t`, `pred_x0`, `mean` and `sample` ($x_{t-1}$). The last
# record's `sample` is the generated image. As guided-diffusion's sampling script does by default, we clamp
# $\hat x_0$ to $[-1, 1]$ at every step (`clip_denoised=True`): a small network's guesses at high noise can
# leave the data range, and without the clamp the chain drifts into saturated colours (exercise 1).

# %%
start = time.perf_counter()
d_sample = toy_diffusion(SAMPLE_RESPACING)
records = list(
    sample_progressive(unet, d_sample, (N_SAMPLES, 3, 32, 32), generator=generator(SEED), device=DEVICE,
                       clip_denoised=True)
)  # fmt: skip
samples = records[-1]["sample"]
elapsed = time.perf_counter() - start
assert samples.shape == (N_SAMPLES, 3, 32, 32) and torch.isfinite(samples).all()
assert len(records) == d_sample.num_steps and [r["t"] for r in records] == list(range(d_sample.num_steps - 1, -1, -1))
inside = float(((samples >= -1) & (samples <= 1)).float().mean())
print(f"{N_SAMPLES} samples, '{SAMPLE_RESPACING}' steps, DDPM: {elapsed:.1f} s; "
      f"pixels in [-1, 1]: {100 * inside:.1f} %, min {float(samples.min()):.2f}, "
      f"max {float(samples.max()):.2f}, mean {float(samples.mean()):+.3f}")  # fmt: skip
show_grid([list(samples[: N_SAMPLES // 2]), list(samples[N_SAMPLES // 2 :])], panel_inches=0.5,
          suptitle=f"toy DDPM samples ('{SAMPLE_RESPACING}' steps; clipped to [-1, 1] for display)")  # fmt: skip
plt.show()

# Determinism: the same seed gives the same samples, bit for bit (on the same device).
again = list(sample_progressive(unet, d_sample, (N_SAMPLES, 3, 32, 32), generator=generator(SEED), device=DEVICE,
                                clip_denoised=True))  # fmt: skip
assert torch.equal(again[-1]["sample"], samples)
print("same seed -> identical samples: True")

# %% [markdown]
# ### The trajectory: $x_t$ and the running guess $\hat x_0$
#
# Early on $\hat x_0$ is a blurry average (the network cannot know the details yet); layout and colours
# settle in the middle of the chain; the last steps only sharpen. This is why Blended Diffusion starts an
# edit part-way down the chain (at $k$): the coarse layout of the input survives, the details are redrawn.

# %%
picks = np.linspace(0, len(records) - 1, 7).round().astype(int)
show_grid(
    [[records[i]["x_t"][0] for i in picks], [records[i]["pred_x0"][0] for i in picks]],
    titles=[[f"t={records[i]['timestep']}" for i in picks], []],
    row_labels=["x_t", "x̂_0"], panel_inches=0.56,
)  # fmt: skip
plt.show()
# how fast does x̂_0 settle? distance of each step's x̂_0 to the final image
dist = [float((r["pred_x0"][0] - samples[0]).pow(2).mean().sqrt()) for r in records]
print("RMS(x̂_0 - final) along the chain:", " ".join(f"{records[i]['timestep']}:{dist[i]:.2f}" for i in picks))
assert dist[picks[0]] > dist[picks[3]] > dist[picks[-2]] > 0, "x̂_0 converges to the final sample along the chain"

# %% [markdown]
# ## Summary
#
# * The network predicts $\hat\varepsilon$ (and $v$);
#   $\hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t-1}\,\hat\varepsilon$ and the posterior mean
#   $\tilde\mu_t(x_t, \hat x_0)$ follow in closed form (checked against the true $\varepsilon$: exact).
# * The learned variance interpolates (in log space) between $\tilde\beta_t$ and $\beta_t$; the two only differ
#   near $t = 0$.
# * DDPM steps draw fresh noise; DDIM with $\eta = 0$ is a deterministic map $x_T \mapsto x_0$; $\eta = 1$ gives
#   the variance $\tilde\beta_t$.
# * Respacing changes how many network calls a sample costs, not the network.
# * `sample_progressive` exposes every step, which is how later notebooks draw what guidance does.
#
# Next: notebook 03 brings in CLIP and its gradient, the force that steers these steps.
#
# ## Exercises
#
# 1. Sample with `clip_denoised=False` (no clamp of $\hat x_0$). How does the fraction of pixels inside
#    $[-1, 1]$ change, and what do the samples look like?
# 2. Run DDIM with $\eta = 0.5$ and $\eta = 1$ from the same $x_T$ as in section 4. Which is closer to DDPM?
# 3. Replace the learned variance by $\beta_t$: `create_diffusion(1000, "linear", "25", learn_sigma=False)`
#    gives `fixed_large`, but the toy network has 6 output channels. What do you have to pass to `ddpm_step`?
# 4. Starting from a *real* scene noised to $t = 500$ instead of from pure noise, how much of the scene
#    survives? (Hint: `sample_progressive(..., init=scene, start_index=k)`.) This is SDEdit, and the first
#    half of Blended Diffusion.
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. `sample_progressive(unet, d_sample, shape, generator=generator(SEED), clip_denoised=False)`: the
#    fraction falls, most visibly for an undertrained network: one wild $\hat x_0$ at high noise pulls the
#    posterior mean out of the data range, and the chain never comes back (saturated colours).
# 2. `run_chain(chain_steps, x_T, True, eta, 1)` for both; with $\eta = 1$ the step noise matters again and
#    the result moves towards a DDPM sample (with the smaller variance $\tilde\beta_t$).
# 3. Split the output yourself: `out = unet(x, d.model_timesteps(t))`, then
#    `fixed.p_mean_variance(out[:, :3], x, t)` with `fixed = create_diffusion(1000, "linear", "25", learn_sigma=False)`,
#    and `fixed.ddpm_step(mv, t, z)`.
# 4. With `d = toy_diffusion("50")`, `k = 24` is about original $t = 490$:
#    `sample_progressive(unet, d, init=scenes[:1], start_index=24, generator=generator(0))`; the layout and
#    colours mostly survive, the edges are redrawn. Lower $k$ keeps more.
#
# </details>

# %%
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.1f} s (FAST={FAST})")
