# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Local CLIP-guided diffusion (Algorithm 1): the baseline and its trade-off
#
# Notebook 03 steered a whole image towards a prompt with the CLIP gradient. To edit only a *region*, the
# paper's first attempt (section 4.1, Algorithm 1) does two things: CLIP looks only at the masked region of
# the network's guess $\hat x_0$, and a second loss holds the rest of $\hat x_0$ close to the input. One
# weight, $\lambda$, decides which of the two wins. This notebook shows why no $\lambda$ is right, which is
# the reason for Algorithm 2 (notebook 05).
#
# **Learning goals.** After this notebook you can
#
# 1. write the loss of Algorithm 1,
#    $\mathcal L = D_{CLIP}(\hat x_0 \odot m, \text{text}) + \lambda\, D_{bg}(x, \hat x_0, m)$, and find each term in
#    the output of `bdlib.blend.guided_step`;
# 2. explain why the background changes even at $\lambda = 0$ and why it is never kept exactly;
# 3. see a guided step as a gradient step of size $\Sigma_t$, and compute the $\lambda$ at which it overshoots;
# 4. read the trade-off curve: background error and text match as $\lambda$ varies (and move a $\lambda$ slider).
#
# **Run time** (fresh kernel, busy 2-core laptop CPU): fast mode about 60 s; full mode about 4 min.
#
# **About the numbers.** Edits depend on the trained toy weights and the seed, so quality is printed, not
# asserted. The notebook asserts structural facts (the loss terms, where gradients act, that the background
# error is never zero, that small steps reduce the background loss) and *prints* quality numbers.

# %% tags=["parameters"]
FAST = True  # fast mode: 25-step chains, 5 values of λ, one sample each (full mode: the world's chain, 2 seeds)
WORLD = "toy"  # "toy" (offline, CPU) or "paper" (downloaded 256x256 models, a GPU)
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from bdlib import load_world
from bdlib.blend import guided_step
from bdlib.clip_guidance import background_mse, clip_guidance_loss, range_loss
from bdlib.viz import show_grid
from bdlib.widgets import (
    background_error,
    cached_edit,
    figure_title,
    lambda_bound,
    lambda_grid,
    lambda_panel,
    oracle_scores,
    render_lambda,
)
from bdlib.worlds.toy.tasks import make_task

plt.rcParams["figure.dpi"] = 100
NOTEBOOK_START = time.perf_counter()
world = load_world(WORLD, device=DEVICE)
RUN = {"respacing": "25", "start_index": 18} if FAST else {}  # fast mode: a shorter chain, same k/T ratio
SEEDS = [SEED] if FAST else [SEED, SEED + 1]
settings = world.defaults.with_(algorithm="local", **RUN)
diffusion = world.diffusion(settings.respacing)
k = settings.start_index
print(world.description)
print(f"chain: respacing {settings.respacing!r}, start index k = {k} (original t = {diffusion.timestep_map[k]})")

task = make_task("replace", SEED)  # an object to turn into another one
image, mask, prompt = task.image[None].to(DEVICE), task.mask[None].to(DEVICE), task.prompt
print(f"task: {task.kind} · prompt {prompt!r} · mask covers {float(mask.mean()):.0%} of the image")
show_grid([[image[0], mask[0], image[0] * mask[0]]], titles=[["input x", "mask m", "x ⊙ m"]], panel_inches=0.9)
plt.show()

# %% [markdown]
# ## 1. The loss of Algorithm 1, term by term
#
# At every step $t$ the network's guess of the clean image is
# $\hat x_0 = \big(x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon(x_t, t)\big)/\sqrt{\bar\alpha_t}$.
# Algorithm 1 scores it with
#
# $$\mathcal L(x_t) = g\cdot D_{CLIP}(\hat x_0 \odot m,\ \text{text}) \;+\; r\cdot \text{range}(\hat x_0)
#   \;+\; \lambda\, D_{bg}(x, \hat x_0, m),$$
#
# * $D_{CLIP}$: the squared spherical distance $2\arcsin(\lVert a-b\rVert/2)^2$ between the normalised CLIP
#   embeddings of the masked guess (outside the mask: mid-grey) and of the prompt; $g$ is the guidance scale;
# * $\text{range}(\hat x_0) = \text{mean}\,(\hat x_0 - \text{clamp}(\hat x_0, -1, 1))^2$ keeps the guess in the
#   pixel range;
# * $D_{bg} = \text{MSE}\big((\hat x_0 - x)\odot(1-m)\big)$ (+ LPIPS on the background in the paper world).
#
# and shifts the mean of the step: $x_{t-1} \sim \mathcal N\big(\mu - \Sigma\,\nabla_{x_t}\mathcal L,\ \Sigma\big)$.
# `guided_step` returns every term; below we recompute each with the functions of `bdlib.clip_guidance`
# (one CLIP view here, so that the numbers are exactly reproducible).

# %%
lam = 10.0
one_view = settings.with_(lam=lam, augmentations=1)
text_embed = world.encode_prompt(prompt).to(DEVICE)
gen = torch.Generator(device=DEVICE).manual_seed(SEED)
t_k = torch.full((1,), k, dtype=torch.long, device=DEVICE)
x_k = diffusion.q_sample(image, t_k, torch.randn(image.shape, generator=gen, device=DEVICE))  # x_k ~ q(x_k | x)
step = guided_step(world.unet, diffusion, world.clip, x_k, k, init=image, mask=mask, text_embed=text_embed,
                   settings=one_view, noise=torch.zeros_like(x_k), lpips=world.lpips)  # fmt: skip
pred_x0 = step["pred_x0"]
clip_sum, _ = clip_guidance_loss(world.clip, pred_x0, mask, text_embed)
by_hand = {
    "clip_loss": one_view.guidance_scale * float(clip_sum),
    "range_loss": one_view.range_scale * float(range_loss(pred_x0).sum()),
    "bg_mse_loss": lam * float(background_mse(pred_x0, image, mask).sum()),
}
for name, value in by_hand.items():
    print(f"{name:12s} guided_step {step[name]:12.4f}   recomputed {value:12.4f}")
    assert np.isclose(step[name], value, rtol=1e-4, atol=1e-5)
print(f"world.lpips: {world.lpips!r} -> D_bg is {'MSE + LPIPS' if world.lpips is not None else 'the MSE alone'}")
show_grid(
    [[x_k[0], pred_x0[0], (pred_x0 * mask)[0]]],
    titles=[[f"x_k (t={diffusion.timestep_map[k]})", "x̂_0", "x̂_0 ⊙ m: CLIP's view"]], panel_inches=0.9,
)  # fmt: skip
plt.show()

# %% [markdown]
# The toy world has no LPIPS: its VGG trunk is trained on ImageNet and cannot ship with the package, so
# $D_{bg}$ is the MSE alone (`lpips_weight = 0`). In the paper world `world.lpips` is the masked LPIPS-VGG
# and `guided_step` adds `bg_lpips_loss`.
#
# ## 2. Where the gradient acts
#
# $D_{CLIP}$ reads only $\hat x_0 \odot m$, yet its gradient with respect to $x_t$ is not confined to the
# mask: $\hat x_0$ at a pixel depends on $x_t$ everywhere (the UNet mixes pixels). And the sample is drawn
# from the whole noisy $x_t$: outside the mask nothing pastes the input back. Only $\lambda D_{bg}$ pulls the
# background towards $x$, and only softly.

# %%
def gradient_split(**changes) -> tuple[float, float]:
    """Mean |∇_{x_t} L| inside and outside the mask for one guided step from x_k (one CLIP view)."""
    out = guided_step(world.unet, diffusion, world.clip, x_k, k, init=image, mask=mask, text_embed=text_embed,
                      settings=settings.with_(augmentations=1, range_scale=0.0, **changes),
                      noise=torch.zeros_like(x_k), lpips=world.lpips)  # fmt: skip
    grad = out["grad"].abs()
    return float((grad * mask).sum() / (3 * mask.sum())), float((grad * (1 - mask)).sum() / (3 * (1 - mask).sum()))


clip_in, clip_out = gradient_split(lam=0.0)
bg_in, bg_out = gradient_split(lam=lam, guidance_scale=0.0)
print(f"g·D_CLIP alone (g = {settings.guidance_scale:g}): mean |∇| inside the mask {clip_in:.2e}, out {clip_out:.2e}")
print(f"λ·D_bg alone   (λ = {lam:g}):     mean |∇| inside the mask {bg_in:.2e}, out {bg_out:.2e}")
assert clip_out > 0, "the CLIP term reads only x̂_0 ⊙ m, yet it moves background pixels of x_t (through the UNet)"
assert bg_out > 0, "the background term acts on the background"

# %% [markdown]
# ## 3. A guided step is a gradient step of size $\Sigma_t$, and it can overshoot
#
# The shifted mean $\mu - \Sigma_t \nabla_{x_t}\mathcal L$ is one step of gradient descent on $\mathcal L$ with step
# size $\Sigma_t$. For the background term, $D_{bg}$ is a mean over $P = 3S^2$ values and
# $\partial \hat x_0/\partial x_t \approx 1/\sqrt{\bar\alpha_t}$, so one step moves the background of $\hat x_0$ by
# about
# $2\lambda\Sigma_t/(P\bar\alpha_t)$ times its gap to the input. That is a full correction at
# $\lambda = \lambda_{max}/2$ and a *growing* error beyond
#
# $$\lambda_{max}(t) = \frac{P\,\bar\alpha_t}{\beta_t}\qquad(\Sigma_t \le \beta_t),$$
#
# `bdlib.widgets.lambda_bound`. Early steps (small $\bar\alpha_t$) have the smallest bound; small images (small
# $P$) too: the same $\lambda$ is 64 times stronger per pixel at 32x32 than at 256x256. We check the picture
# directly: take one step $x_t + \Sigma_t(-\nabla D_{bg})$ and measure $D_{bg}$ of the new guess $\hat x_0$.

# %%
def bg_loss_of_guess(x_t: torch.Tensor, index: int) -> float:
    """D_bg(x, x̂_0(x_t), m): the MSE on the background of the network's guess."""
    t = torch.full((1,), index, dtype=torch.long, device=DEVICE)
    with torch.no_grad():
        mv = diffusion.p_mean_variance(world.unet(x_t, diffusion.model_timesteps(t)), x_t, t)
    return float(background_mse(mv.pred_x0, image, mask))


pixels = 3 * world.image_size**2
print(f"P = {pixels}; λ_max(t) along the chain (same ᾱ_t at 256x256: ×{(256 / world.image_size) ** 2:g}):")
along = [f"t={diffusion.timestep_map[i]}: {lambda_bound(world, settings, i):,.0f}" for i in range(k, -1, -6)]
print("  " + "  ".join(along))
paper_chain = world.diffusion("100")  # both worlds use the linear 1000-step schedule
paper_bound = 3 * 256**2 * paper_chain.alphas_cumprod[74] / paper_chain.betas[74]
print(f"paper world (256x256, respacing '100', k = 74): λ_max = {paper_bound:,.0f}; the official λ is 10,000")
one_step = {}
for index in (k, k // 2):
    t_i = torch.full((1,), index, dtype=torch.long, device=DEVICE)
    x_i = diffusion.q_sample(image, t_i, torch.randn(image.shape, generator=gen, device=DEVICE))
    before, bound = bg_loss_of_guess(x_i, index), lambda_bound(world, settings, index)
    ratios = {}
    for factor in (0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
        s = settings.with_(lam=factor * bound, guidance_scale=0.0, range_scale=0.0, augmentations=1)
        out = guided_step(world.unet, diffusion, world.clip, x_i, index, init=image, mask=mask, text_embed=text_embed,
                          settings=s, noise=torch.zeros_like(x_i))  # fmt: skip
        ratios[factor] = bg_loss_of_guess(x_i + out["variance"] * out["grad"], index) / before
    one_step[index] = ratios
    print(f"t={diffusion.timestep_map[index]} (λ_max = {bound:,.0f}): D_bg after / before one step, λ = factor·λ_max:",
          "  ".join(f"{f:g}: {r:.3f}" for f, r in ratios.items()))  # fmt: skip
    assert ratios[0.03] < 1 + 1e-5 and ratios[0.1] < 1 + 1e-5, "a small gradient step does not raise D_bg"

# %% [markdown]
# Small $\lambda$: the background loss falls a little each step. Between $\lambda_{max}/3$ and $\lambda_{max}$: the
# largest single-step gain. Well above $\lambda_{max}$ (with a network whose $\hat x_0$ responds to $x_t$ as
# assumed): the loss grows, and over a chain the first steps can blow up. A constant $\lambda$ is therefore
# either too weak at the end of the chain ($\lambda \ll \lambda_{max}$ there) or unstable at its start. The
# official $\lambda = 10^4$ at 256x256 is about twice the start bound of its 100-step chain (printed above); at
# 32x32 the same number would be 64 times stronger per pixel. The bound assumes the full sensitivity
# $1/\sqrt{\bar\alpha_t}$; a well-trained network predicts an average at high noise, so its $\hat x_0$ may respond
# less to $x_t$ there, which makes every ratio of the first row closer to 1 (a larger real bound).
#
# ## 4. The trade-off curve: background error and text match against $\lambda$
#
# We run Algorithm 1 to the end for a grid of $\lambda$ around the bound at the start index
# (`bdlib.widgets.lambda_grid`: $0, \lambda_{max}/10, \lambda_{max}/3, \lambda_{max}, 10\lambda_{max}$) and measure
#
# * the **background error** $\frac{1}{|1-m|}\sum |\,\text{result} - x\,| \odot (1-m)$ (mean absolute difference outside
#   the mask, `bdlib.widgets.background_error`; pixel range $[-1, 1]$);
# * the **text match**: the masked CLIP distance to the prompt (lower is better), and the oracle's verdict
#   (an independent judge, never used for guidance) when the world has one.
#
# Results are cached (`bdlib.widgets.cached_edit`), so the λ slider of section 5 reuses them.

# %%
LAMBDAS = lambda_grid(world, settings)
print("λ grid:", LAMBDAS)
rows = []
for seed in SEEDS:
    for lam_value in LAMBDAS:
        done = cached_edit(world, task, seed=seed, settings=settings, lam=lam_value)
        result = done.result
        verdict = oracle_scores(world, result.best, result.mask, prompt)
        error = float(background_error(result.best, result.image, result.mask)[0])
        rows.append({
            "seed": seed, "lam": lam_value, "bg_error": error, "clip": float(result.distances[0]),
            "seconds": done.seconds,
            "oracle": None if verdict is None else float(verdict["score"][0]),
        })  # fmt: skip
print(f"{'seed':>4} {'λ':>9} {'bg error':>9} {'CLIP d':>7} {'oracle':>7} {'time':>6}")
for r in rows:
    oracle = "  -   " if r["oracle"] is None else f"{r['oracle']:7.3f}"
    print(f"{r['seed']:4d} {r['lam']:9g} {r['bg_error']:9.4f} {r['clip']:7.3f} {oracle} {r['seconds']:5.1f}s")
errors = np.array([[r["bg_error"] for r in rows if r["seed"] == s] for s in SEEDS]).mean(axis=0)  # (len(LAMBDAS),)
clips = np.array([[r["clip"] for r in rows if r["seed"] == s] for s in SEEDS]).mean(axis=0)
assert np.all(errors > 0), "Algorithm 1 never keeps the background exactly, whatever λ"
stable = slice(0, 4)  # λ = 0, λ_max/10, λ_max/3, λ_max
print(f"background error from λ = 0 to λ_max: {errors[0]:.4f} → {errors[3]:.4f}; at 10·λ_max: {errors[4]:.4f}; "
      f"falls monotonically up to λ_max: {bool(np.all(np.diff(errors[stable]) <= 0))}")  # fmt: skip

fig, axes = plt.subplots(1, 2, figsize=(4.0, 1.8))
xs = np.arange(len(LAMBDAS))
axes[0].plot(xs, errors, "o-")
axes[0].set_ylabel("background error", fontsize=7)
axes[1].plot(xs, clips, "o-", color="C1")
axes[1].set_ylabel("CLIP distance", fontsize=7)
for ax in axes:
    ax.set_xticks(xs, [f"{v:g}" for v in LAMBDAS], fontsize=6)
    ax.set_xlabel("λ", fontsize=7)
    ax.tick_params(labelsize=6)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the curve looks like depends on how well the toy DDPM is trained, so read the numbers rather than
# trust a rule. At $\lambda = 0$ the background is regenerated freely from $x_k$ (SDEdit with a CLIP push);
# larger $\lambda$ pulls it towards the input, but only where the step is neither too weak (late in the
# chain) nor overshooting (early), so the end-to-end curve need not be monotone; past $\lambda_{max}$ the
# first steps overshoot (pixels leave $[-1, 1]$ and are clamped at the end). In every case the error stays
# above zero: the background is only *encouraged* to match. That is the weakness Algorithm 2 removes.
#
# ## 5. Move λ yourself
#
# `render_lambda(world, task, λ)` draws one result (input, mask, result, and the absolute difference ×4)
# with its background error in the title. `lambda_panel` puts a slider over the same grid; its results were
# computed above, so moving it only draws. Below is the figure for the default, then the live panel (in a
# static copy of this notebook only the figure is meaningful).

# %%
default_lam = LAMBDAS[2]
fig = render_lambda(world, task, default_lam, seed=SEED, settings=settings)
assert f"λ = {default_lam:g}" in figure_title(fig)
plt.show()
panel = lambda_panel(world, task, values=LAMBDAS, value=default_lam, seed=SEED, settings=settings)
display(panel)

# %% [markdown]
# ## Summary
#
# * Algorithm 1 guides with $g\,D_{CLIP}(\hat x_0\odot m) + r\,\text{range}(\hat x_0) + \lambda D_{bg}$; `guided_step`
#   reports each term and they match the functions of `bdlib.clip_guidance` exactly.
# * The CLIP term moves background pixels too (through the UNet), and the whole image is re-sampled.
# * A guided step is gradient descent with step $\Sigma_t$: a small $\lambda$ never raises $D_{bg}$ in one step; above
#   about $\lambda_{max}(t) = P\bar\alpha_t/\beta_t$ it overshoots, and the bound is smallest at the start of the chain.
# * Background error is never zero, for any $\lambda$: fidelity and edit strength trade against each other, and
#   with a constant $\lambda$ the end-to-end curve need not be monotone (printed above).
#
# Next: notebook 05 keeps the background *exactly* by blending with the noised input at every step.
#
# ## Exercises
#
# 1. Rerun section 4 with `settings.with_(official=True)`. The official L2 term is a mean over the whole
#    batch (`official_background_mse`); with one sample, does anything change?
# 2. Use a λ that grows along the chain, e.g. $\lambda_t = \lambda_{max}(t)/4$. Which bdlib function would you
#    call at every step, and what happens to the background error?
# 3. In section 3, why is the bound at $t = $ `diffusion.timestep_map[k // 2]` so much larger than at $k$?
# 4. Set the guidance scale to 0 and λ to 0. What is left of Algorithm 1, and how large is the background error?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. `official_background_mse(x, init, mask) = mse(x ⊙ (1-m), x)` averaged over `B·3·H·W`: with `B = 1` the
#    gradient equals the paper's per-image MSE (the masked region only adds a constant), so the curve is the
#    same up to the other official switches (CLIP sees the $x_t$ mix; two network passes).
# 2. Drive the chain yourself: a loop over `range(k, -1, -1)` calling `guided_step(...)` with
#    `settings.with_(lam=lambda_bound(world, settings, t) / 4)`, and `diffusion.q_sample` for the start. No step
#    overshoots and the late steps still pull, so expect a lower background error than the constant-λ curve;
#    measure it with `background_error` (it is still not zero).
# 3. $\lambda_{max} = P\bar\alpha_t/\beta_t$: $\bar\alpha_t$ grows fast as $t$ falls (less noise) and $\beta_t$ shrinks.
# 4. SDEdit: the input noised to $k$ and denoised by the unguided model. The error is the model's own drift,
#    typically similar to the λ = 0 row above.
#
# </details>

# %%
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.1f} s (FAST={FAST})")
