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
# # 06 · Adversarial results and the extending augmentations
#
# Push the CLIP gradient hard enough and the region stops looking like anything, yet the guiding CLIP scores it
# as a match: the sampler has found an *adversarial example*, a pixel pattern aimed at one network. The paper's fix
# ("extending augmentations") is to compute the CLIP loss on several randomly warped copies of $\hat x_0$ and
# average: a pattern that fools CLIP from one exact viewpoint rarely survives a rotation, a shift and a
# perspective warp; a real object does.
#
# In particular we will:
#
# * draw the views that `bdlib.core.augment.ExtendingAugmentations` makes;
# * compare one view with eight at the default guidance scale, where the views make the difference, and at ten
#   times it, where both fail;
# * recognise an adversarial result by numbers: a good score for the guiding CLIP's clean view, a worse one under
#   warps, and the independent oracle's verdict;
# * see what happens to the pixel range and the range loss when $\hat x_0$ is not clamped.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 94 s, full mode 395 s.

# %% tags=["parameters"]
FAST = True  # fast mode: 6 tasks, one sample each (full mode: 16 tasks)
# this lesson always uses the toy world: its tasks, oracle and benchmark (lesson 09 runs the paper's models)
WORLD = "toy"
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import matplotlib.pyplot as plt
import torch

from bdlib import load_world
from bdlib.course.viz import show_grid, table
from bdlib.worlds.toy.tasks import generate_tasks

world = load_world("toy", device=DEVICE)
settings = world.defaults  # Algorithm 2: guidance scale 1000, 8 views
tasks = generate_tasks(6 if FAST else 16, SEED, kinds=("add", "replace"))

# %% [markdown]
# ## 1. The views
#
# `ExtendingAugmentations(N)` maps a batch of CLIP-sized images to $N$ copies: copy 0 is the image itself, copies
# $1..N-1$ go through a random affine map (rotation up to 15°, shift up to 10 %, probability 0.7) and a random
# perspective warp (distortion 0.7, probability 0.7), as in the official code. The loss is the mean over the views,
#
# $$D_{CLIP}^{aug}(\hat x_0) = \frac1N\sum_{n=0}^{N-1} D_{CLIP}\big(\text{aug}_n(\hat x_0 \odot m),\ \text{text}\big),$$
#
# so its gradient is the mean of the $N$ gradients. The views of a whole scene show the warps best:

# %%
from bdlib.core.augment import ExtendingAugmentations

views = ExtendingAugmentations(8)(tasks[0].image[None], torch.Generator().manual_seed(SEED))  # (8, 3, 32, 32)
fig = show_grid(
    [list(views[:4]), list(views[4:])],
    titles=[["clean"] + [f"view {i}" for i in range(1, 4)], [f"view {i}" for i in range(4, 8)]],
    panel_inches=2.0,
)

# %% [markdown]
# The views are rotated, shifted or squeezed in perspective (a view escapes both warps with probability
# $0.3 \times 0.3 = 0.09$); where a warp uncovers the edge, the border pixels are repeated.
#
# ## 2. One view against eight
#
# We edit every task with one CLIP view (`views=1`) and with eight, at the default scale 1000 and at
# 10,000, one sample per task (`bdlib.bench.evaluation.run_setting`: the benchmark's batched runner, the same seeds for
# every setting). The oracle, a network that never guides anything, judges each region.

# %%
from bdlib.bench.evaluation import run_setting, score
from bdlib.bench.rows import Setting

SCALES = (settings.guidance_scale, 10 * settings.guidance_scale)
runs = {
    (scale, views): run_setting(
        world, tasks, Setting(f"{scale:g}/{views}", settings.with_(guidance_scale=scale, views=views)), seed=SEED
    )
    for scale in SCALES
    for views in (1, 8)
}
fig = show_grid(
    [[t.image for t in tasks]] + [list(run.results) for run in runs.values()],
    row_labels=["input"] + [f"{scale:g}, {views} view{'s' * (views > 1)}" for scale, views in runs],
    titles=[[t.prompt for t in tasks]] + [[]] * len(runs),
    panel_inches=1.3,
)

# %% [markdown]
# At the default scale, eight views give objects; one view gives more regions with multicoloured speckles. At ten
# times the scale both rows turn into noise. The oracle's numbers (text match: the prompted colour and shape;
# clean: a proper toy object rather than noise):

# %%
scores = {key: score(world, tasks, run) for key, run in runs.items()}
table(
    [
        {"scale": scale, "views": views, "text match": s["text_match"], "clean": s["clean"]}
        for (scale, views), s in scores.items()
    ]
)

# %% [markdown]
# The benchmark ran the same comparison on its 200 tasks, 40 of each kind (plus a scale of 100); the table shows the
# clean score and the text match of the three kinds that draw an object:

# %%
from bdlib.bench.evaluation import load_report, report_rows

scale_rows = report_rows(
    load_report(), "alg2 scale=", ("clean", "add:text_match", "replace:text_match", "recolor:text_match")
)
table(scale_rows)

# %% [markdown]
# The benchmark says the same with 40 tasks of each kind: at the default scale, eight views raise the clean score
# and the text match of every kind over one view; at ten times the scale both settings are noise (clean near 0); at a
# tenth of the default scale (100, eight views) the regions are clean but match less often: too weak a push.
#
# ## 3. What the guiding CLIP believes
#
# An adversarial result fools the view it was optimised for. We score each result with the guiding CLIP twice: on
# its clean masked view (what one-view guidance pushed down) and averaged over 32 fresh warped views
# (`bdlib.core.losses.d_clip` with a 32-view augmentation at a fixed seed). The gap between the two is
# the signature of a pattern that only works from one viewpoint.

# %%
from bdlib.core.losses import d_clip


def clip_views(images: torch.Tensor, n_views: int, tasks=tasks) -> torch.Tensor:
    """The guiding CLIP's distance of each image's masked region to its prompt, over 1 or n warped views."""
    check = ExtendingAugmentations(n_views)
    masks = world.tensor(torch.stack([t.mask for t in tasks]))  # on the world's device, in its dtype (float64)
    text = torch.cat([world.encode_prompt(t.prompt) for t in tasks])
    augment = None if n_views == 1 else (lambda v: check(v, torch.Generator().manual_seed(1234)))
    with torch.no_grad():
        return d_clip(world.clip, world.tensor(images), masks, text, augment).cpu()


gaps = [
    {
        "scale": scale,
        "views": views,
        "clean view": float(clip_views(run.results, 1).mean()),
        "32 warped views": float(clip_views(run.results, 32).mean()),
    }
    for (scale, views), run in runs.items()
]
for row in gaps:
    row["gap"] = row["32 warped views"] - row["clean view"]
table(gaps)

# %% [markdown]
# The clean-view column alone does not separate one view from eight: at the default scale the two are close in some
# runs, and in others one view's is lower (this number moves from run to run; a different thread count is enough).
# The gap does: with one view the 32 warped views score clearly worse than the clean one, with eight views much less
# (the sampler had to lower the loss of warped copies as well). At ten times the scale, the one-view results have by
# far the largest gap: a pattern made for one viewpoint. And section 2's oracle found fewer clean objects with one
# view: do not let the network that guided an edit judge it.
#
# ## 4. The pixel range and the range loss
#
# The official code adds a *range loss* $r\cdot\text{mean}(\hat x_0 - \text{clamp}(\hat x_0, -1, 1))^2$ ($r = 50$) that pulls the
# guess back into the pixel range. The toy world clamps $\hat x_0$ to $[-1, 1]$ at every step (`clip_denoised=True`),
# so there the range loss is always 0 and every result is in range. Without the clamp (`clip_denoised=False`, the
# paper world's and the official setting) we follow the largest $|\hat x_0|$ and the range loss along the chain:

# %%
from bdlib import edit
from bdlib.core.losses import range_loss

task = tasks[0]
ranges = {}
for clamp in (True, False):
    records = []
    result = edit(world, task.image, task.mask, task.prompt, seed=SEED, clip_denoised=clamp, callback=records.append)
    ranges[clamp] = {
        "t": [r.timestep for r in records],
        "max |x̂_0|": [float(r.pred_x0.abs().max()) for r in records],
        "range loss": [settings.range_scale * float(range_loss(r.pred_x0).sum()) for r in records],
        "result": result.best,
    }
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
for clamp, run in ranges.items():
    label = "clamped (toy default)" if clamp else "not clamped"
    axes[0].plot(run["t"], run["max |x̂_0|"], "o-", label=label)
    axes[1].plot(run["t"], run["range loss"], "o-", label=label)
axes[0].axhline(1, color="k", lw=0.8)
axes[0].set_ylabel("max |x̂_0|")
axes[1].set_ylabel("range loss (× r)")
for ax in axes:
    ax.set_xlabel("t")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Clamped, the guess never leaves $[-1, 1]$ and the range loss is 0 at every step. Not clamped, the guess leaves the
# range far during the first steps (the left end of the curves: high noise, strong guidance) and comes back, pulled by
# the range loss and by the chain itself, to end within it. The two results:

# %%
fig = show_grid(
    [[task.image, ranges[True]["result"][0], ranges[False]["result"][0]]],
    titles=[["input", "clamped", "not clamped"]],
    suptitle=repr(task.prompt),
)

# %% [markdown]
# ## Summary
#
# * The CLIP loss of one clean view can be lowered by pixel patterns that are not objects; at the default scale of
#   the toy world, one view already finds them often, and eight views turn most of them into objects (section 2's
#   tables, and the benchmark's scale rows).
# * At ten times the scale both fail: the views delay the collapse into adversarial noise, they do not prevent it.
# * An adversarial region scores well on the guiding CLIP's clean view and worse under warps (the gap of section
#   3); judge edits with something that did not guide them, here the oracle, in the paper a user study.
# * With $\hat x_0$ clamped, as in the toy world, the range loss is always 0; without the clamp it is what keeps the
#   guess in range.
#
# Next: notebook 07 puts the method to work: adding, replacing and removing objects, new backgrounds, scribbles,
# outpainting, and ranking many samples.
#
# ## Exercises
#
# 1. Raise the scale to 30 times the default with 1 and 8 views. Report the oracle's clean score of each.
# 2. Use 32 views for guidance. How much longer does an edit take than with 8 views, and does the gap shrink?
# 3. Guide with the noise-aware CLIP (`noise_aware=True`: it reads $x_t$, no gradient through the UNet). Report its
#    text match and clean score at the default scale.
# 4. Make every view the clean image: `ExtendingAugmentations(8, degrees=0, translate=0, distortion=0)`. What
#    happens to the gap, and why?

# %% tags=["solution"] jupyter={"source_hidden": true}
import time

exercise_tasks = tasks[:3] if FAST else tasks  # fast mode: the first three tasks (five settings to run)


def oracle_of(**changes) -> dict:
    start = time.perf_counter()
    run = run_setting(world, exercise_tasks, Setting("x", settings.with_(**changes)), seed=SEED)
    s = score(world, exercise_tasks, run)
    seconds = (time.perf_counter() - start) / len(exercise_tasks)
    gap = clip_views(run.results, 32, exercise_tasks) - clip_views(run.results, 1, exercise_tasks)
    return {"text match": s["text_match"], "clean": s["clean"], "s/edit": seconds, "gap": float(gap.mean())}


answers = {
    "1: 30x, 1 view": oracle_of(guidance_scale=30 * settings.guidance_scale, views=1),
    "1: 30x, 8 views": oracle_of(guidance_scale=30 * settings.guidance_scale),
    "2: 8 views": oracle_of(),
    "2: 32 views": oracle_of(views=32),
    "3: noise-aware": oracle_of(noise_aware=True),
}
identical = ExtendingAugmentations(8, degrees=0, translate=0, distortion=0)(tasks[0].image[None], torch.Generator())
answers["4: largest difference between the views"] = float((identical - identical[:1]).abs().max())
answers

# %% [markdown] tags=["solution"]
# **Answers** (seed 0; the numbers printed above: three tasks in fast mode, sixteen in full mode).
#
# 1. At 30 times the scale both settings produce noise: the clean scores printed for `1: 30x` are at or near 0.
# 2. The time per edit printed for 32 views against 8: the CLIP passes grow with the number of views, the UNet pass
#    does not; compare the gaps printed next to them.
# 3. The noise-aware CLIP's text match and clean score are printed; its gradient skips the UNet, and in the
#    benchmark it is the best guide of the toy world (README's claims table).
# 4. All eight views are the clean image (largest difference 0): the loss is the one-view loss, and the results and
#    the gap behave like `views=1`.

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
assert answers["4: largest difference between the views"] == 0.0, "exercise 4"

# %% tags=["checks"] jupyter={"source_hidden": true}
assert torch.equal(views[0], tasks[0].image), "§1: view 0 is the clean image"
bench = {row["setting"]: row for row in scale_rows}
one_b, eight_b = bench["alg2 scale=1000 aug=1"], bench["alg2 scale=1000 aug=8"]
assert all(
    eight_b[key] > one_b[key] for key in ("clean", "add:text_match", "replace:text_match", "recolor:text_match")
), "§2: eight views win at the default scale"
assert max(bench["alg2 scale=10000 aug=1"]["clean"], bench["alg2 scale=10000 aug=8"]["clean"]) < 0.05, "§2: 10x fails"
assert bench["alg2 scale=100 aug=8"]["clean"] > eight_b["clean"], "§2: scale 100 is clean ..."
assert bench["alg2 scale=100 aug=8"]["add:text_match"] < eight_b["add:text_match"], "§2: ... but matches less"
for scale in SCALES:
    one, eight = (next(r for r in gaps if (r["scale"], r["views"]) == (scale, v)) for v in (1, 8))
    assert one["gap"] > 2 * eight["gap"], f"§3: eight views shrink the gap (scale {scale:g})"
assert scores[(SCALES[0], 1)]["clean"] < scores[(SCALES[0], 8)]["clean"], "§3: one view, fewer clean objects"
high = [r for r in gaps if r["scale"] == SCALES[1] and r["views"] == 1][0]
assert high["gap"] == max(r["gap"] for r in gaps), "§3: one view at ten times the scale has the largest gap"
assert scores[(SCALES[1], 1)]["clean"] < scores[(SCALES[0], 1)]["clean"], "§3: the oracle's clean score falls"
assert max(ranges[True]["max |x̂_0|"]) <= 1.0 and max(ranges[True]["range loss"]) == 0.0, "§4: clamped, no range loss"
assert max(ranges[False]["max |x̂_0|"]) > 1.0 and max(ranges[False]["range loss"]) > 0, "§4: unclamped, out of range"
assert ranges[False]["max |x̂_0|"][-1] < 1.1, "§4: the unclamped guess ends (nearly) within the range"
