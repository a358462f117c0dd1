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
# # 03 · CLIP guidance: a gradient that points towards a sentence
#
# Blended Diffusion has no text-conditioned diffusion model. The text enters through **CLIP**: an image
# encoder and a text encoder trained so that matching pairs have nearby embeddings. The distance between
# the embedding of (the masked part of) $\hat x_0$ and that of the prompt is a loss, and its gradient with
# respect to the pixels steers every reverse step.
#
# In particular we will highlight:
#
# * embeddings and zero-shot labels of the toy CLIP, and where it is *uncertain*: noisy inputs, partial
#   views, and prompts that share a colour or a shape with the right one;
# * the paper's cosine distance and the official code's spherical distance (`bdlib.core.losses`), and
#   the gradient $\nabla_x D_\text{CLIP}$ that a guidance function (`cond_fn`) adds to the sampler of lesson 02;
# * adversarial examples: pixel patterns that CLIP scores as a match although they show nothing, and how
#   the extending augmentations weaken them.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 36 s, full mode 86 s.
#
# The toy CLIP (`bdlib.worlds.toy.clip_model`) was trained contrastively on toy scenes and on masked single
# objects, with the 21 prompts "a COLOUR SHAPE" (7 colours x 3 shapes) among its captions.

# %% tags=["parameters"]
FAST = True  # fast mode: smaller evaluation sets, shorter optimisations and chains
WORLD = "toy"  # this lesson always uses the toy CLIP (lesson 09 runs the paper's CLIP ViT-B/16)
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from bdlib.core.losses import d_clip
from bdlib.course.viz import show_grid, table
from bdlib.worlds.toy.clip_model import CLASS_PROMPTS, load_toy_clip

plt.rcParams["figure.dpi"] = 100
N_EVAL = 420 if FAST else 2100  # scenes in the zero-shot evaluation
N_CURVE = 240 if FAST else 1050  # masked views behind each point of the noise and partial-view curves
ADV_STEPS = 150 if FAST else 400  # optimisation steps of each adversarial example
GUIDED_BATCH, GUIDED_RESPACING = (4, "25") if FAST else (8, "50")
clip = load_toy_clip(DEVICE)
sum(p.numel() for p in clip.parameters()), clip.embed_dim  # parameters, embedding dimension D

# %% [markdown]
# ## 1. Embeddings
#
# CLIP maps an image $x$ to $f(x) \in \mathbb R^D$ and a prompt $c$ to $g(c) \in \mathbb R^D$. Only directions
# matter: everything below uses the normalised embeddings $\hat a = f(x)/\lVert f(x)\rVert$ and
# $\hat b = g(c)/\lVert g(c)\rVert$, and their cosine similarity $\hat a\cdot\hat b = \cos\theta$.
# `encode_text(prompts)` returns `(N, D)`; `encode_image(images)` takes `(B, 3, H, W)` in $[-1, 1]$ and returns
# `(B, D)`. The course's example scene (a blue square and a yellow triangle) against the 21 single-object
# prompts, the four nearest:

# %%
from bdlib.worlds.toy.tasks import example_task

task = example_task()  # a blue square, a yellow triangle, an empty 12x12 region (the mask)
with torch.no_grad():
    text_emb = F.normalize(clip.encode_text(list(CLASS_PROMPTS)), dim=-1)  # (21, D)
    image_emb = F.normalize(clip.encode_image(task.image[None].to(DEVICE)), dim=-1)  # (1, D)
sims = (image_emb @ text_emb.T)[0]  # (21,) cosines
table([{"prompt": CLASS_PROMPTS[i], "cos θ": float(sims[i])} for i in sims.argsort(descending=True)[:4]])

# %% [markdown]
# The four nearest prompts are the four pairings of the scene's two colours (blue, yellow) with its two shapes
# (square, triangle). CLIP sees which colours and shapes are in the scene, but a one-object prompt cannot say
# which colour goes with which shape, and "a yellow square" ranks above "a yellow triangle", the object that is
# actually there. Wrong pairings of right words are one place where CLIP is unsure; section 2 finds more.
#
# ## 2. Zero-shot labels, and where CLIP is uncertain
#
# Zero-shot classification: label an image with the prompt of highest cosine similarity
# (`bdlib.worlds.toy.clip_model.zero_shot`). Two evaluation sets (`single_and_masked_sets`): scenes with one
# object (the whole image), and every object of three-object scenes seen through its box mask, everything else
# set to 0 (mid-grey), which is what guidance shows CLIP.

# %%
from bdlib.worlds.toy.clip_model import class_metrics, single_and_masked_sets, zero_shot

sets = single_and_masked_sets(N_EVAL, seed=SEED + 12345)
set_metrics = {
    name: class_metrics(zero_shot(clip, images.to(DEVICE)), labels) for name, (images, labels, _) in sets.items()
}
table([{"set": name, "views": len(sets[name][1]), **m} for name, m in set_metrics.items()])

# %% [markdown]
# On clean views the toy CLIP is right about (almost) every colour and shape: a 21x21 table of these views would
# show 1.00 on its diagonal and teach nothing. Its uncertainty shows elsewhere. First, how close the *wrong* prompts come. For one
# clean rendering of each of the 21 classes (an object centred on mid-grey), the cosine to its own prompt and
# to the nearest prompt that gets the colour right but the shape wrong, the shape right but the colour wrong, or
# both wrong (mean, min and max over the 21 classes), and the probability CLIP gives its own prompt among the
# 21 at its trained temperature:

# %%
from bdlib.worlds.toy.scenes import ToyObject, render_scene
from bdlib.worlds.toy.vocab import COLORS, SHAPES

grey = torch.zeros(3, 32, 32)
prototypes = torch.cat([render_scene(grey, [ToyObject(c, s, 16, 16, 7)]).images for c in COLORS for s in SHAPES])
with torch.no_grad():
    proto_sims = F.normalize(clip.encode_image(prototypes.to(DEVICE)), dim=-1) @ text_emb.T  # (21 images, 21 prompts)
colour, shape = torch.arange(21) // 3, torch.arange(21) % 3
same_colour, same_shape = colour[:, None] == colour[None, :], shape[:, None] == shape[None, :]
kinds = {
    "own prompt": same_colour & same_shape,
    "colour right, shape wrong": same_colour & ~same_shape,
    "shape right, colour wrong": ~same_colour & same_shape,
    "both wrong": ~same_colour & ~same_shape,
}
nearest = {kind: proto_sims.cpu().masked_fill(~which, -2).amax(dim=1) for kind, which in kinds.items()}
own_probability = (clip.logit_scale.exp().clamp(max=100) * proto_sims).softmax(dim=1).diag().cpu()
table(
    [
        {"prompt": kind, "mean cos": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
        for kind, v in nearest.items()
    ]
    + [
        {
            "prompt": "P(own prompt) at CLIP's temperature",
            "mean cos": float(own_probability.mean()),
            "min": float(own_probability.min()),
            "max": float(own_probability.max()),
        }
    ]
)

# %% [markdown]
# The embedding has structure: a prompt that shares the colour or the shape sits clearly nearer than one that
# shares neither, and the own prompt is nearer still. At CLIP's temperature the own prompt wins almost all the
# probability on these clean renderings.
#
# Guidance does not show CLIP clean renderings. Early in an edit CLIP judges blurry or noisy guesses, and a mask
# may cut an object. We take the masked views of the second set and (1) add the forward noise of lesson 01 at a
# level $t$ (noising the view and then masking it is the same as masking the noised scene), or (2) show only the
# left part of each region. The strip shows one view under both; the plots give the accuracy over all views, with
# dotted lines at chance (1/21 for the pair, 1/7 for the colour, 1/3 for the shape).

# %%
from bdlib.worlds.toy.ddpm import toy_diffusion

views, labels, masks = (part[:N_CURVE] for part in sets["masked"])
full = toy_diffusion(None)
eps = torch.randn(views.shape, generator=torch.Generator().manual_seed(SEED))  # CPU generator, as always
noise_ts = [0, 100, 200, 300, 400, 500, 750]
noisy = {t: full.q_sample(views, torch.full((len(views),), t), eps) * masks for t in noise_ts}


def left_part(masks: torch.Tensor, fraction: float) -> torch.Tensor:
    """Each mask cut to the left ``fraction`` of its columns (the rest of the region becomes grey)."""
    columns = masks.amax(dim=2, keepdim=True)  # (B, 1, 1, W): the region's columns
    keep = columns.cumsum(dim=-1) <= torch.ceil(fraction * columns.sum(dim=-1, keepdim=True))
    return masks * keep


fractions = [1.0, 0.75, 0.5, 0.25]
partial = {f: views * left_part(masks, f) for f in fractions}
_ = show_grid(
    [[noisy[t][0] for t in (0, 100, 200, 300, 500)], [partial[f][0] for f in fractions]],
    titles=[[f"t = {t}" for t in (0, 100, 200, 300, 500)], [f"{f:.0%} shown" for f in fractions]],
)

# %%
accuracy_noise = {t: class_metrics(zero_shot(clip, x.to(DEVICE)), labels) for t, x in noisy.items()}
accuracy_partial = {f: class_metrics(zero_shot(clip, x.to(DEVICE)), labels) for f, x in partial.items()}
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6), sharey=True)
for key, label, chance, style in (
    ("acc", "colour and shape", 1 / 21, "C0"),
    ("color_acc", "colour", 1 / 7, "C1"),
    ("shape_acc", "shape", 1 / 3, "C2"),
):
    axes[0].plot(noise_ts, [m[key] for m in accuracy_noise.values()], ".-", color=style, label=label)
    axes[0].axhline(chance, color=style, ls=":")
    axes[1].plot(fractions, [m[key] for m in accuracy_partial.values()], ".-", color=style)
axes[0].set(xlabel="noise level t", ylabel="zero-shot accuracy")
axes[1].set(xlabel="share of the region shown", xlim=(1.05, 0.2))
axes[0].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# Noise is what confuses this CLIP. Its accuracy is still about 0.9 at $t = 100$, falls steeply by $t = 200$-$300$ and
# is close to chance from about $t = 500$ on; colour survives longer than shape (at $t = 200$ the colour is still
# almost always right while the shape is right only about half the time). Cutting the view hurts far less: half
# of the region is enough, and with a quarter the colour is still mostly right while the shape is right only
# about half the time. Keep
# the noise curve in mind: the official code shows CLIP a mix of $\hat x_0$ and the noisy $x_t$, and lesson 02 showed
# that $\hat x_0$ itself is noisy early in the chain. (Exercise 1 tries a CLIP trained on noisy images.)
#
# ## 3. The paper's distance and the official code's
#
# With $\theta$ the angle between $\hat a$ and $\hat b$, the chord is $\lVert\hat a-\hat b\rVert = 2\sin(\theta/2)$. The paper
# (section 4.1) defines $D_\text{CLIP}$ with the **cosine distance** $D_c$. The official code, after Katherine
# Crowson's CLIP-guided diffusion, uses the **squared great-circle (spherical) distance**:
#
# $$d_\text{cos}(a, b) = 1 - \cos\theta \qquad\text{(paper)}, \qquad
# d_\text{sph}(a, b) = 2\arcsin\!\left(\tfrac{\lVert\hat a-\hat b\rVert}{2}\right)^{2} = \tfrac{\theta^2}{2} \qquad\text{(official code)}.$$
#
# bdlib implements both (`cosine_distance`, `spherical_distance`); its default follows the official code
# (`distance="spherical"`), and `distance="cosine"` gives the paper's. For small angles both are $\theta^2/2$. Their
# slopes differ far away: $\sin\theta$ for the cosine distance, which vanishes as $\theta \to \pi$, and $\theta$ for the
# spherical one. Both push the embedding along the same great circle; only the strength of the push differs, by
# the factor $\theta/\sin\theta$.

# %%
from bdlib.core.losses import cosine_distance, spherical_distance

theta = torch.linspace(0, math.pi, 181, dtype=torch.float64)
a = torch.stack([torch.ones_like(theta), torch.zeros_like(theta)], dim=1)  # (181, 2) unit vectors
b = torch.stack([theta.cos(), theta.sin()], dim=1)  # at angle θ from a
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
axes[0].plot(theta, spherical_distance(a, b), label="spherical θ²/2 (official)")
axes[0].plot(theta, cosine_distance(a, b), label="cosine 1 - cos θ (paper)")
axes[1].plot(theta, theta / theta.sin(), color="C2")
axes[1].axhline(1.0, color="grey", ls="--")
axes[0].set(xlabel="θ (rad)", ylabel="distance")
axes[1].set(xlabel="θ (rad)", ylabel="slope ratio θ / sin θ", ylim=(0.9, 5))
axes[0].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# The ratio of the slopes starts at 1 and only grows large near $\theta = \pi$. Where do real pairs sit? The angles
# of the 21 prototypes to their own prompts and to the other 20:

# %%
angles = proto_sims.clamp(-1, 1).acos().cpu()
pair_angles = {"own prompt": angles.diag(), "other prompts": angles[~torch.eye(21, dtype=torch.bool)]}
table(
    [
        {
            "pairs": name,
            "mean θ (rad)": float(v.mean()),
            "largest θ": float(v.max()),
            "θ / sin θ at the largest": float(v.max() / v.max().sin()),
        }
        for name, v in pair_angles.items()
    ]
)

# %% [markdown]
# An image and its own prompt sit near $\theta = 0.35$ rad, where the two distances agree (the ratio is about 1.03).
# The other prompts sit between about 0.9 and 1.8 rad, where the spherical distance pushes up to about 1.8 times
# harder than the cosine one. So the official code's choice changes the strength of the push most for images far
# from their prompt, which is where an edit starts; the direction is the same for both.
#
# ## 4. The guidance gradient $\nabla_x D_\text{CLIP}$
#
# Blended Diffusion scores only the edit region: CLIP sees $x \odot m$ (outside the mask the image is 0, mid-grey),
# reduced to CLIP's input size (`bdlib.core.losses.d_clip`, one distance per image):
#
# $$D_\text{CLIP}(x, m, c) = d\big(\mathrm{CLIP}_\text{img}(x\odot m),\ \mathrm{CLIP}_\text{txt}(c)\big).$$
#
# Autograd gives its gradient with respect to every pixel. Because of the $\odot m$, pixels outside the mask get
# exactly zero gradient; inside, the negative gradient is the direction that makes the region look more like the
# prompt to CLIP, to first order. The example's region is empty and its prompt is "a red circle":

# %%
x = task.image[None].to(DEVICE).clone().requires_grad_(True)  # (1, 3, 32, 32)
mask = task.mask[None].to(DEVICE)  # (1, 1, 32, 32), 1 = edit
target = clip.encode_text([task.prompt])  # "a red circle"
per_sample = d_clip(clip, x, mask, target)
loss = per_sample.sum()
(grad,) = torch.autograd.grad(loss, x)
float(loss.detach()), float((grad * (1 - mask)).abs().max())  # D_CLIP, and the largest gradient outside the mask

# %% [markdown]
# The gradient outside the mask is exactly 0. Now two ways to follow it, 40 steps of length 0.5 (in the L2 norm
# over all pixels): along the *first* gradient all the way, or recomputing the gradient after each step (and
# keeping the pixels in $[-1, 1]$), which is what guidance does over a chain. For comparison, the dashed line is
# the distance of the same scene with a real red circle drawn in the region.


# %%
def distance(image: torch.Tensor, region=mask, text=target) -> float:
    with torch.no_grad():
        return float(d_clip(clip, image, region, text)[0])


step = 0.5 * grad / grad.norm()
along_first = [distance(x.detach() - k * step) for k in range(41)]
descent, path = task.image[None].to(DEVICE), [float(loss.detach())]
for _ in range(40):
    current = descent.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d_clip(clip, current, mask, target).sum(), current)
    descent = (current - 0.5 * g / g.norm()).clamp(-1, 1).detach()  # a fresh gradient at every step
    path.append(distance(descent))
with_circle = render_scene(task.scene.background, [*task.scene.objects, ToyObject("red", "circle", 24, 9, 5)]).images
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot(along_first, label="along the first gradient")
ax.plot(path, label="fresh gradient at every step")
ax.axhline(distance(with_circle.to(DEVICE)), color="grey", ls="--", label="a real red circle")
ax.set(xlabel="steps of length 0.5", ylabel=r"$D_\mathrm{CLIP}$")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# Along the first gradient the distance falls a little for two steps and then *rises*, ending far above where it
# started: the gradient is a local direction, and after a few steps it no longer points downhill. With a fresh
# gradient at every step the distance falls (not at every step: a step of fixed length can overshoot) and ends
# below that of a real red circle. The pictures show what the pixels became:

# %%
magnitude = grad.abs().sum(dim=1, keepdim=True)[0]  # (1, 32, 32)
_ = show_grid(
    [
        [task.image, magnitude / magnitude.max(), (-grad[0] / grad.abs().max()).clamp(-1, 1)],
        [(x - 40 * step)[0].detach(), descent[0], with_circle[0]],
    ],
    titles=[["image", "|∇| (bright = large)", "-∇ as colour"], ["40 along the first", "40 fresh", "real circle"]],
)

# %% [markdown]
# Neither path draws a red circle: both paint multicoloured high-frequency texture into the region. The independent
# oracle (a detector of colour and shape that never guides) gives the region its score for "a red circle"
# (1 = sure):

# %%
from bdlib.worlds.toy.oracle import load_oracle

oracle = load_oracle(DEVICE)
{
    name: float(oracle.judge_text_match(image.to(DEVICE), mask, [task.prompt])["score"][0])
    for name, image in (("40 fresh steps", descent), ("real circle", with_circle))
}

# %% [markdown]
# Low CLIP distance, no red circle: the raw pixel gradient finds patterns that CLIP *reads* as the prompt. Section
# 6 builds such an adversarial example on purpose; first, the gradient inside a diffusion chain.
#
# ## 5. Global CLIP guidance from noise
#
# Classifier guidance (Dhariwal & Nichol 2021) shifts the reverse mean by the variance times a gradient:
#
# $$\mu \;\to\; \mu + \Sigma\,\nabla_{x_t}\log p(c\mid x_t), \qquad
# \nabla_{x_t}\log p(c\mid x_t) \approx -\lambda\,\nabla_{x_t} D_\text{CLIP}\big(\hat x_0(x_t), c\big).$$
#
# `sample_progressive(..., cond_fn=...)` does the shift; `cond_fn(x_t, t, mv)` returns the gradient. CLIP judges
# $\hat x_0$ (not the noisy $x_t$), so the gradient flows back **through the UNet**: one extra forward and backward
# pass per step. Here the mask is the whole image ("global" guidance) and $\lambda = 500$. The two rows start from
# the same noise and draw the same step noise; only the guidance differs.

# %%
from bdlib.core.sampling import sample_progressive
from bdlib.worlds.toy.ddpm import load_toy_ddpm

unet = load_toy_ddpm().to(DEVICE)
guided_diffusion = toy_diffusion(GUIDED_RESPACING)
guide_target = clip.encode_text(["a blue square"])
whole = torch.ones(1, 1, 32, 32, device=DEVICE)


def make_cond_fn(scale: float, norms: list | None = None):
    """g = -λ ∇_{x_t} D_CLIP(x̂_0(x_t)): rerun the UNet with autograd on, through x̂_0 to CLIP."""

    def cond_fn(x_t, t, mv):
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            pred_x0 = guided_diffusion.pred_x0_from_eps(x_in, t, unet(x_in, guided_diffusion.model_timesteps(t))[:, :3])
            (g,) = torch.autograd.grad(scale * d_clip(clip, pred_x0, whole, guide_target).sum(), x_in)
        if norms is not None:
            norms.append(float(g.norm()))
        return -g

    return cond_fn


def sample(cond_fn=None) -> torch.Tensor:
    records = sample_progressive(
        unet,
        guided_diffusion,
        (GUIDED_BATCH, 3, 32, 32),
        generator=torch.Generator().manual_seed(SEED),
        device=DEVICE,
        clip_denoised=True,
        cond_fn=cond_fn,
    )
    return list(records)[-1].x_prev


def rows_of_4(**named):
    """Rows of at most 4 images per batch, labelled on their first row."""
    rows = [
        (name if i == 0 else "", list(batch[i : i + 4]))
        for name, batch in named.items()
        for i in range(0, len(batch), 4)
    ]
    return dict(rows=[r for _, r in rows], row_labels=[label for label, _ in rows])


grad_norms = []
plain, guided = sample(), sample(make_cond_fn(500.0, grad_norms))
_ = show_grid(**rows_of_4(unguided=plain, **{"λ = 500": guided}))

# %% [markdown]
# Every guided sample holds a blue square (some a second object too); the unguided samples are whatever the prior
# draws. The guided samples keep the toy world's look (flat colours, crisp shapes): guidance can
# only pick among, and push towards, scenes the toy DDPM can draw. The CLIP distance of each sample to
# "a blue square":

# %%
with torch.no_grad():
    d_plain, d_guided = (d_clip(clip, s.clamp(-1, 1), whole, guide_target).cpu() for s in (plain, guided))
table(
    [
        {"sample": i, "unguided": float(p), "λ = 500": float(g)}
        for i, (p, g) in enumerate(zip(d_plain, d_guided, strict=True))
    ]
)

# %% [markdown]
# ## 6. An adversarial example, made on purpose
#
# Section 4 found patterns that satisfy CLIP without drawing anything. Here we look for one within a small budget:
# a perturbation $\delta$ with $\lVert\delta\rVert_\infty \le 0.1$ (about 13 of 255 grey levels) on a plain mid-grey
# image, optimised directly against the toy CLIP:
#
# $$\min_{w}\; d_\text{sph}\big(\mathrm{CLIP}_\text{img}(\text{grey} + \delta),
# \ \mathrm{CLIP}_\text{txt}(\text{"a red circle"})\big), \qquad \delta = B\tanh(w),\ B = 0.1.$$
#
# The $\tanh$ keeps every pixel of $\delta$ inside $[-B, B]$ whatever $w$ is.

# %%
adv_target = clip.encode_text(["a red circle"])
grey_image = torch.zeros(1, 3, 32, 32, device=DEVICE)
real_circle = render_scene(grey, [ToyObject("red", "circle", 16, 16, 7)]).images.to(DEVICE)


def attack(bound: float, augment=None) -> torch.Tensor:
    """grey + δ with |δ| ≤ bound that minimises D_CLIP to "a red circle" (Adam on w, δ = bound·tanh(w))."""
    w = torch.zeros_like(grey_image, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=0.1)
    for step_index in range(ADV_STEPS):
        views = None if augment is None else (lambda v, i=step_index: augment(v, torch.Generator().manual_seed(i)))
        loss = d_clip(clip, grey_image + bound * torch.tanh(w), whole, adv_target, views=views).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (grey_image + bound * torch.tanh(w)).detach()


adversarial = attack(0.1)
_ = show_grid(
    [[grey_image[0], adversarial[0], (adversarial[0] / 0.1).clamp(-1, 1), real_circle[0]]],
    titles=[["grey", "grey + δ", "δ x10 (contrast)", "a real red circle"]],
)

# %% [markdown]
# The perturbed image looks like plain grey; multiplied by ten, $\delta$ is a fine multicoloured pattern, nothing like
# a circle. How CLIP scores it comes in the next table, next to the real circle.
#
# ### The same pattern through the extending augmentations
#
# Section 4.2 of the paper averages the CLIP loss over several random geometric copies of $\hat x_0$
# (`bdlib.core.augment.ExtendingAugmentations`: one clean copy plus rotations up to 15°, shifts up to 10 % and
# perspective warps, each applied with probability 0.7; lesson 06 studies them in edits). A real red circle is
# still a red circle after a small rotation; a pixel-exact adversarial pattern is resampled and falls apart. We
# measure the mean distance over 32 warped copies and how much of its *gain* over plain grey each image keeps,
# $\text{kept} = (\bar d_\text{aug}(\text{grey}) - \bar d_\text{aug}(x)) / (d(\text{grey}) - d(x))$:

# %%
from bdlib.core.augment import ExtendingAugmentations

warp_32 = ExtendingAugmentations(views=33)  # copy 0 is the clean image; we keep the 32 warped copies


def augmented_distance(image: torch.Tensor) -> float:
    views = warp_32(image, torch.Generator().manual_seed(SEED))[1:]  # (32, 3, 32, 32)
    with torch.no_grad():
        return float(spherical_distance(clip.encode_pixels(clip.normalize(views.add(1).div(2))), adv_target).mean())


def distances(image: torch.Tensor) -> dict:
    return {"clean": distance(image, whole, adv_target), "32 warped copies": augmented_distance(image)}


scores = {
    name: distances(image)
    for name, image in (("grey", grey_image), ("grey + δ", adversarial), ("real red circle", real_circle))
}
kept = {
    name: (scores["grey"]["32 warped copies"] - s["32 warped copies"]) / (scores["grey"]["clean"] - s["clean"])
    for name, s in scores.items()
    if name != "grey"
}
table([{"image": name, **s, "gain kept": kept.get(name, "")} for name, s in scores.items()])

# %% [markdown]
# Clean, the adversarial pattern beats the real circle: CLIP is fooled. Through the warps it keeps only a small
# part of its gain, while the real circle keeps all of it (its warped copies score as well as the clean one). This
# is why Blended Diffusion averages over augmentations, and why edits in this course are judged by an independent
# oracle, not by the guiding CLIP. Exercise 2 shows that the augmentations weaken the attack but do not make it
# impossible.

# %% [markdown]
# ## Summary
#
# In this lesson we have:
#
# * embedded images and prompts in one space and seen where the toy CLIP is certain (clean views, even cut in
#   half) and where it is not (noisy views: near chance from $t \approx 500$; prompts that share a colour or a shape
#   come closer than others);
# * compared the paper's cosine distance with the official code's spherical distance $\theta^2/2$ (bdlib's default):
#   the same near 0, and for this CLIP's angles gradients of the same direction within a factor of two;
# * computed $\nabla_x D_\text{CLIP}$, which lives inside the mask only, and added $\Sigma\cdot g$ to every reverse
#   mean, with $g$ back-propagated through the UNet via $\hat x_0$;
# * fooled CLIP with noise twice (a free pixel path in section 4, $\pm 0.1$ of noise in section 6), and seen that
#   averaging over random warps removes most of the fake match but keeps the real one.
#
# Next: lesson 04 combines guidance with the mask: local CLIP-guided diffusion, the paper's Algorithm 1.
#
# ## Exercises
#
# 1. The noise-aware toy CLIP (`bdlib.worlds.toy.noise_aware_clip.load_toy_noise_aware_clip`) reads $(x_t, t)$. Repeat the
#    noise curve of section 2 with it (`zero_shot(model, images, timesteps)`) and report its accuracy next to
#    the plain CLIP's at $t = 200$, 300 and 500.
# 2. Optimise the adversarial noise *through* the augmentations (`attack(0.1, ExtendingAugmentations(8))`, a new
#    draw of warps per step). Report its clean and augmented distances next to the real circle's, and the
#    oracle's score for "a red circle" in the central box. What does $\delta$ look like now?
# 3. Raise the budget to $B = 0.5$, with and without the augmentations. Report the same numbers. Does the image
#    start to look like a red circle?
# 4. In section 5, try $\lambda = 5000$. Report the largest $|x|$ of the samples, the share of pixels outside
#    $[-1, 1]$, their CLIP distance to "a blue square", and how rough they are (the mean absolute difference
#    between horizontally neighbouring pixels) next to $\lambda = 500$. What do the samples look like?

# %% [markdown]
# ## Solutions
#
# **1.** The same noisy views, with their $t$ given to the noise-aware CLIP:

# %% tags=["solution"] jupyter={"source_hidden": true}
from bdlib.worlds.toy.noise_aware_clip import load_toy_noise_aware_clip

noise_aware_clip = load_toy_noise_aware_clip(DEVICE)
noise_aware = {
    t: class_metrics(zero_shot(noise_aware_clip, noisy[t].to(DEVICE), torch.full((len(views),), float(t))), labels)
    for t in (200, 300, 500)
}
table([{"t": t, "plain CLIP": accuracy_noise[t]["acc"], "noise-aware CLIP": m["acc"]} for t, m in noise_aware.items()])

# %% [markdown] tags=["solution"]
# **Answer.** The noise-aware CLIP stays accurate much deeper into the chain: it is far above the plain CLIP at
# each of the three levels (the table; the answer checks assert that it is ahead at every level and above 0.5 at
# $t = 300$). Told $t$, it has learned what a noised object looks like. This is the GLIDE-style alternative to
# judging $\hat x_0$: its gradient is taken on $x_t$ directly, without a backward pass through the UNet (lesson 06,
# exercise 3, guides edits with it).
#
# **2.** The attack through a fresh draw of 8 views per step:

# %% tags=["solution"] jupyter={"source_hidden": true}
centre_box = torch.zeros(1, 1, 32, 32, device=DEVICE)
centre_box[..., 7:25, 7:25] = 1.0  # the oracle judges the region around the real circle


def oracle_score(image: torch.Tensor) -> float:
    return float(oracle.judge_text_match(image, centre_box, ["a red circle"])["score"][0])


robust = attack(0.1, ExtendingAugmentations(8))
_ = show_grid(
    [[adversarial[0], robust[0], (robust[0] / 0.1).clamp(-1, 1)]], titles=[["B = 0.1", "through views", "its δ x10"]]
)
table(
    [
        {"image": name, **distances(image), "oracle score": oracle_score(image)}
        for name, image in (
            ("B = 0.1", adversarial),
            ("B = 0.1, through views", robust),
            ("real red circle", real_circle),
        )
    ]
)

# %% [markdown] tags=["solution"]
# **Answer.** Through the views the attack keeps much more of its match under warping: its augmented distance is
# far below the plain attack's, though still above the real circle's; clean, it still beats the real circle. Its
# $\delta$ is no longer a pixel-fine pattern but larger smooth streaks and blobs, the kind of structure that survives
# a warp. The oracle's score stays near 0 (the real circle scores near 1): CLIP is still fooled, the oracle is not.
# The answer checks assert each of these comparisons.
#
# **3.** Five times the budget:

# %% tags=["solution"] jupyter={"source_hidden": true}
big = {"B = 0.5": attack(0.5), "B = 0.5, through views": attack(0.5, ExtendingAugmentations(8))}
_ = show_grid([[image[0] for image in big.values()] + [real_circle[0]]], titles=[[*big, "real red circle"]])
table([{"image": name, **distances(image), "oracle score": oracle_score(image)} for name, image in big.items()])

# %% [markdown] tags=["solution"]
# **Answer.** No. With $B = 0.5$ the plain attack paints strong colour noise: the lowest clean distance of all, and
# an augmented distance *above* plain grey's. Through the views, the larger budget reaches the real circle's
# augmented distance, so even the averaged CLIP is fooled, yet the picture is noise with a reddish smear and the
# oracle's score stays near 0. Augmentations raise the price of an adversarial pattern; they do not rule it out.
# (The answer checks assert these comparisons.)
#
# **4.** Section 5's samples at ten times the guidance scale:

# %% tags=["solution"] jupyter={"source_hidden": true}
strong = sample(make_cond_fn(5000.0))
_ = show_grid(**rows_of_4(**{"λ = 500": guided, "λ = 5000": strong}))
with torch.no_grad():
    d_strong = d_clip(clip, strong.clamp(-1, 1), whole, guide_target).cpu()
table(
    [
        {
            "λ": lam,
            "largest |x|": float(s.abs().max()),
            "share outside [-1, 1]": float((s.abs() > 1).float().mean()),
            "mean D_CLIP": float(d.mean()),
            "roughness": float((s[..., 1:] - s[..., :-1]).abs().mean()),
        }
        for lam, s, d in ((500, guided, d_guided), (5000, strong, d_strong))
    ],
    digits=4,
)

# %% [markdown] tags=["solution"]
# **Answer.** The samples hardly leave $[-1, 1]$: the largest $|x|$ is barely above 1 and only a fraction of a percent of
# the pixels lie outside (the clamp of $\hat x_0$ keeps the chain in range; only the last step's guidance shift,
# $\Sigma\cdot g$ with a small $\Sigma$, pushes a few pixels out). What breaks is the content: grainy multicoloured
# noise over the whole image around blue blobs or squares, more than four times rougher (the printed roughness)
# than at $\lambda = 500$, while the CLIP distance is no worse than at $\lambda = 500$: CLIP accepts the noise.
# The sampler has found adversarial patterns for CLIP, as in sections 4 and 6. The paper's remedies are the
# extending augmentations (lesson 06) and the range loss (lesson 04). The answer checks assert these comparisons.

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
assert noise_aware[300]["acc"] > 0.5 and all(noise_aware[t]["acc"] > accuracy_noise[t]["acc"] for t in noise_aware), (
    "ex. 1"
)
robust_d, adv_d, real_d = distances(robust), scores["grey + δ"], scores["real red circle"]
assert robust_d["32 warped copies"] < adv_d["32 warped copies"] - 0.1, "exercise 2: keeps much more under warping"
assert robust_d["32 warped copies"] > real_d["32 warped copies"], "exercise 2: still above the real circle's"
assert robust_d["clean"] < real_d["clean"], "exercise 2: clean, it still beats the real circle"
assert oracle_score(robust) < 0.01 and oracle_score(real_circle) > 0.9, "exercise 2: the oracle is not fooled"
big_d = {name: distances(image) for name, image in big.items()}
assert big_d["B = 0.5"]["clean"] < min(adv_d["clean"], robust_d["clean"]), "exercise 3: the lowest clean distance"
assert big_d["B = 0.5"]["32 warped copies"] > scores["grey"]["32 warped copies"], "exercise 3: above plain grey's"
assert big_d["B = 0.5, through views"]["32 warped copies"] < real_d["32 warped copies"] + 0.02, "exercise 3: reaches it"
assert all(oracle_score(image) < 0.01 for image in big.values()), "exercise 3: the oracle's score stays near 0"
assert float(strong.abs().max()) < 1.05 and float((strong.abs() > 1).float().mean()) < 0.01, "exercise 4: hardly leave"
rough = [float((s[..., 1:] - s[..., :-1]).abs().mean()) for s in (guided, strong)]
assert rough[1] > 4 * rough[0], "exercise 4: more than four times rougher"
assert float(d_strong.mean()) < 1.25 * float(d_guided.mean()), "exercise 4: the distance is no worse than at λ = 500"

# %% tags=["checks"] jupyter={"source_hidden": true}
# Checks: each claim of the lesson that must never regress, with the sentence it backs.
assert text_emb.shape == (21, clip.embed_dim) and image_emb.shape == (1, clip.embed_dim), "§1: (N, D) embeddings"
top4 = [CLASS_PROMPTS[i] for i in sims.argsort(descending=True)[:4]]
assert set(top4) == {"a blue square", "a yellow square", "a blue triangle", "a yellow triangle"}, "§1: the 4 pairings"
assert top4.index("a yellow square") < top4.index("a yellow triangle"), "§1: a yellow square ranks above"
assert all(m["acc"] > 0.99 for m in set_metrics.values()), "§2: right about (almost) every view"
assert bool((nearest["own prompt"] > nearest["colour right, shape wrong"]).all()), "§2: the own prompt is nearer still"
assert bool((nearest["own prompt"] > nearest["shape right, colour wrong"]).all()), "§2: the own prompt is nearer still"
sharing = torch.maximum(nearest["colour right, shape wrong"], nearest["shape right, colour wrong"])
assert float(sharing.mean()) > float(nearest["both wrong"].mean()) + 0.05, "§2: sharing a word sits clearly nearer"
assert float(own_probability.min()) > 0.95, "§2: the own prompt wins almost all the probability"
assert accuracy_noise[100]["acc"] > 0.85, "§2: still about 0.9 at t = 100"
assert accuracy_noise[300]["acc"] < 0.5, "§2: falls steeply by t = 200-300"
assert all(accuracy_noise[t]["acc"] < 3 / 21 for t in (500, 750)), "§2: at chance from about t = 500 on"
assert accuracy_noise[200]["color_acc"] > 0.9 and 0.35 < accuracy_noise[200]["shape_acc"] < 0.7, "§2: at t = 200"
assert accuracy_partial[0.5]["acc"] > 0.95, "§2: half of the region is enough"
assert accuracy_partial[0.25]["color_acc"] > 0.85 and 0.4 < accuracy_partial[0.25]["shape_acc"] < 0.75, "§2: a quarter"
assert torch.allclose(spherical_distance(a, b), theta**2 / 2, atol=1e-9), "§3: d_sph = θ²/2"
assert torch.allclose(cosine_distance(a, b), 1 - theta.cos(), atol=1e-12), "§3: d_cos = 1 - cos θ"
small = (theta > 0) & (theta < 0.2)
assert torch.allclose(spherical_distance(a, b)[small], cosine_distance(a, b)[small], rtol=0.01), "§3: same near 0"
own_max, other = float(angles.diag().max()), pair_angles["other prompts"]
assert abs(float(angles.diag().mean()) - 0.35) < 0.03 and own_max / math.sin(own_max) < 1.05, (
    "§3: near 0.35, about 1.03"
)
assert 0.8 < float(other.min()) and float(other.max()) < 1.85, "§3: the others sit between about 0.9 and 1.8 rad"
assert 1.6 < float(other.max() / other.max().sin()) < 2.0, "§3: up to about 1.8 times harder"
assert float((grad * (1 - mask)).abs().max()) == 0.0, "§4: no gradient outside the mask"
assert along_first[1] < along_first[0], "§4: one small step lowers the distance"
assert along_first[1] < along_first[0] and along_first[2] < along_first[0], "§4: falls a little for two steps"
assert along_first[-1] > along_first[0] + 0.2, "§4: then rises, ending far above where it started"
d_circle = distance(with_circle.to(DEVICE))
assert path[-1] < d_circle < path[0], "§4: with fresh gradients the distance falls below a real red circle's"
score_fresh = float(oracle.judge_text_match(descent, mask, [task.prompt])["score"][0])
score_circle = float(oracle.judge_text_match(with_circle.to(DEVICE), mask, [task.prompt])["score"][0])
assert score_fresh < 0.01 < 0.9 < score_circle, (
    "§4: the oracle sees no red circle after the descent, and sees the real one"
)
assert len(grad_norms) == guided_diffusion.num_steps and all(math.isfinite(n) and n > 0 for n in grad_norms), "§5"
assert float(d_guided.max()) < float(d_plain.min()), "§5: every guided sample is nearer to the prompt"
assert float(adversarial.abs().max()) <= 0.1 + 1e-6, "§6: |δ| ≤ 0.1"
assert scores["grey + δ"]["clean"] < scores["real red circle"]["clean"], "§6: the noise beats the real circle, clean"
assert kept["grey + δ"] < 0.5 < 0.9 < kept["real red circle"], "§6: a small part kept, the real circle keeps it all"
