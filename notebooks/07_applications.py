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
# # 07 · Applications: add, replace, remove, new backgrounds, scribbles, outpainting, ranking
#
# The paper's applications are all the same method with a different mask, prompt or input: Algorithm 2 with an
# exact background. `bdlib.applications` writes each one as a small recipe over `bdlib.edit`. This lesson runs
# them in the toy world, and says plainly which ones work there and which do not, with the oracle's numbers.
#
# In particular we will:
#
# * add and replace objects, and measure how often the region shows the prompted object;
# * remove an object: the paper's recipe (the empty prompt, the prior alone) and the one bdlib ships (a smooth fill,
#   then the empty prompt from a low noise level), and why the first fails here;
# * replace the background with an inverted mask, guide with a scribble, and extend an image (outpainting);
# * draw many samples and rank them by CLIP distance.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 78 s, full mode 201 s.

# %% tags=["parameters"]
FAST = True  # fast mode: 4 tasks per application, 4 ranked samples (full mode: 12 tasks, 12 samples)
# this lesson always uses the toy world: its tasks, oracle and benchmark (lesson 09 runs the paper's models)
WORLD = "toy"
DEVICE = "cpu"  # "cuda" for a GPU
SEED = 0

# %%
import torch

from bdlib import edit, load_world
from bdlib.bench.evaluation import load_report, report_rows, run_setting, score
from bdlib.bench.rows import Setting
from bdlib.course.viz import show_grid, table
from bdlib.worlds.toy.tasks import generate_tasks

world = load_world("toy", device=DEVICE)
settings = world.defaults
N = 4 if FAST else 12
report = load_report()  # the benchmark's 200 tasks, for the numbers one lesson cannot afford

# %% [markdown]
# ## 1. Add and replace
#
# The toy tasks (`bdlib.worlds.toy.tasks`) give an input, a mask (1 = edit) and a prompt. **Add**: the mask is an
# empty patch of background and the prompt names a new object. **Replace**: the mask is an object's box (grown by
# 2 px) and the prompt names another colour and shape. We edit $N$ of each in one batch and let the oracle judge.

# %%
tasks = {kind: generate_tasks(N, SEED, kinds=(kind,)) for kind in ("add", "replace")}
runs = {kind: run_setting(world, kind_tasks, Setting(kind, settings), seed=SEED) for kind, kind_tasks in tasks.items()}
fig = show_grid(
    [row for kind in tasks for row in ([t.image for t in tasks[kind]], list(runs[kind].results))],
    titles=[row for kind in tasks for row in ([t.prompt for t in tasks[kind]], [])],
    row_labels=[label for kind in tasks for label in (f"{kind}: input", "result")],
    panel_inches=1.3,
)

# %% [markdown]
# Look at the two kinds separately. An added object sits in an empty patch of background; a replaced one is drawn
# where another object was, whose colour survives the noising to $k$ in part: some replace results keep a remnant of
# the old object next to the new one, or take a colour between the two. The oracle's text match (the prompted
# colour *and* shape) and clean score for these tasks, then the benchmark's per-kind numbers for 40 tasks each (the
# default row, one sample, and the best of four ranked samples):

# %%
table(
    [
        {
            "kind": kind,
            "text match": score(world, tasks[kind], run)["text_match"],
            "clean": score(world, tasks[kind], run)["clean"],
        }
        for kind, run in runs.items()
    ]
)

# %%
table(
    report_rows(
        report,
        ("alg2 default", "alg2 top-1 of 4 ranked"),
        ("add:text_match", "replace:text_match", "recolor:text_match", "add:clean", "replace:clean"),
    )
)

# %% [markdown]
# ## 2. Remove an object
#
# The paper removes an object with an **empty prompt**: no CLIP term at all (the official code's guidance returns
# zero for it), so what fills the region is the diffusion prior continuing the background it is blended with
# (`edit(..., prompt="")`). bdlib's `remove_object` does one thing more: it first fills the region *smoothly from its
# border* (`bdlib.inpaint.smooth_fill`, a harmonic interpolation), then runs the same empty-prompt edit from a low
# noise level ($k$ = a quarter of the chain), so the prior only has to make the fill look like background. It is
# the paper's scribble idea with the background's own colours as the scribble.

# %%
from bdlib.applications import removal_input, remove_object

remove_tasks = generate_tasks(N, SEED, kinds=("remove",))
plain = [edit(world, t.image, t.mask, "", seed=SEED).best[0] for t in remove_tasks]
filled = [removal_input(t.image, t.mask)[0] for t in remove_tasks]
recipe = [remove_object(world, t.image, t.mask, seed=SEED).best[0] for t in remove_tasks]
fig = show_grid(
    [[t.image for t in remove_tasks], plain, filled, recipe],
    row_labels=["input", "empty prompt", "smooth fill", "fill + blend"],
    panel_inches=1.3,
)

# %% [markdown]
# With the empty prompt alone, some regions still hold an object, often the removed object's own shape in another
# colour (in this figure a blue triangle comes back orange, and so does a red circle). From the default $k$ the
# input's coarse layout survives the noise (lesson 02), and the unguided prior, which has only ever seen scenes with
# one to three objects, completes it into an object again. Filled first and
# blended from a low $k$, the hole stays background. The oracle (does it find *no* object in the region?), here and on
# the benchmark's 40 remove tasks, recipe by recipe:

# %%
from bdlib.course.widgets import oracle_scores

masks = torch.stack([t.mask for t in remove_tasks])
removed = {
    name: oracle_scores(world, torch.stack(images), masks, "")["match"].float().mean().item()
    for name, images in (("empty prompt (paper)", plain), ("fill + blend (bdlib)", recipe))
}
removed

# %%
table(report_rows(report, "remove: ", ("text_match", "bg_max_abs", "fg_mean_abs")))

# %% [markdown]
# `text_match` here is the fraction of remove tasks where the oracle finds no object left; `bg_max_abs` 0 means the
# background stayed exact. `benchmarks/removal_recipes.py` measured two more candidates on the same tasks
# (resampling in the manner of RePaint, and guidance away from every object caption; README, "What the toy benchmark
# measures").
#
# ## 3. A new background: the inverted mask
#
# To keep the objects and redraw everything else, mark the *objects* and pass `invert_mask=True`
# (`bdlib.applications.replace_background`). The toy vocabulary has no words for backgrounds, so a prompt can only
# name objects. We try the caption of the kept objects, and the empty prompt (the prior draws a new background):

# %%
from bdlib.applications import replace_background

background_tasks = generate_tasks(N, SEED, kinds=("background",))
captioned = [replace_background(world, t.image, 1 - t.mask, t.prompt, seed=SEED).best[0] for t in background_tasks]
unprompted = [replace_background(world, t.image, 1 - t.mask, "", seed=SEED).best[0] for t in background_tasks]
fig = show_grid(
    [[t.image for t in background_tasks], captioned, unprompted],
    row_labels=["input", "objects' caption", "empty prompt"],
    panel_inches=1.3,
)

# %% [markdown]
# The objects survive exactly in both rows, with a ring of the old background around each (the kept mask is the
# objects grown by 2 px). With the objects' caption, the guidance pushes the whole *background* towards a description
# of objects and paints coloured noise and stray shapes into it; with no prompt, the prior draws a new smooth
# background (now and then with a new object of its own). The oracle's clean score of the redrawn region (1 = a proper
# toy background or object, 0 = noise):

# %%
regions = torch.stack([t.mask for t in background_tasks])
{
    name: oracle_scores(world, torch.stack(images), regions, None)["clean"].mean().item()
    for name, images in (("objects' caption", captioned), ("empty prompt", unprompted))
}

# %% [markdown]
# ## 4. Scribble-guided editing
#
# Paint a rough colour scribble into the input, then edit from a middle noise level
# (`bdlib.applications.scribble_edit`: $k$ half the default): the scribble's colour and placement survive as a hint.
# We give the edit a large region (the task's box grown by 4 px) and paint a small blob of the prompted colour into
# one of its corners: does the object go where the scribble is?

# %%
from bdlib.applications import paint_scribble, scribble_edit
from bdlib.edit import dilate_mask
from bdlib.worlds.toy.vocab import COLOR_RGB

task = generate_tasks(1, SEED + 1, kinds=("add",))[0]
colour = tuple(c / 255 for c in COLOR_RGB[task.target[0]])
region = dilate_mask(task.mask[None], 4)[0]  # (1, H, W): a large region
ys, xs = region[0].nonzero(as_tuple=True)
blob = torch.zeros_like(region)
blob[..., ys.min() + 1 : ys.min() + 7, xs.min() + 1 : xs.min() + 7] = 1  # a 6x6 blob in the region's corner
scribbled = scribble_edit(world, task.image, blob, colour, task.prompt, region=region, seed=SEED)
unscribbled = edit(world, task.image, region, task.prompt, seed=SEED, k=scribbled.settings.k)
fig = show_grid(
    [[task.image, region, paint_scribble(task.image, blob, colour)[0], unscribbled.best[0], scribbled.best[0]]],
    titles=[["input", "region", "scribble", "no scribble", "with scribble"]],
    suptitle=repr(task.prompt),
)

# %% [markdown]
# Without the scribble the object lands elsewhere in the region (and may take another colour); with it, the object
# grows out of the scribble. The share of the scribble's pixels that the new object covers (pixels whose colour moved by more than 0.3 from
# the input), with and without the scribble:


# %%
def covered(result) -> float:
    changed = ((result.best[0] - task.image).abs().amax(dim=0) > 0.3).float()
    return float((changed * blob[0]).sum() / blob.sum())


{"no scribble": covered(unscribbled), "with scribble": covered(scribbled)}

# %% [markdown]
# ## 5. Extrapolation (outpainting)
#
# `bdlib.applications.extrapolate` shifts the image by a fraction, fills the strip that appears smoothly from the
# picture's edge (a placeholder) and edits the strip, so that it continues the picture: with the empty prompt, or with
# an object for the strip.

# %%
from bdlib.applications import extrapolate

outpaint_tasks = generate_tasks(N, SEED, kinds=("replace",))
extended = {
    prompt_kind: [
        extrapolate(world, t.image, t.prompt if prompt_kind == "object" else "", "right", 1 / 3, seed=SEED)
        for t in outpaint_tasks
    ]
    for prompt_kind in ("empty", "object")
}
fig = show_grid(
    [
        [t.image for t in outpaint_tasks],
        [r.image[0] for r in extended["empty"]],
        [r.best[0] for r in extended["empty"]],
        [r.best[0] for r in extended["object"]],
    ],
    titles=[[t.prompt for t in outpaint_tasks], [], [], []],
    row_labels=["input", "shifted + fill", "empty prompt", "the object prompt"],
    panel_inches=1.3,
)

# %% [markdown]
# The oracle on the strip: with the empty prompt, is the strip clean and free of objects; with the object prompt, does
# it hold the prompted object?

# %%
strips = torch.cat([r.mask for r in extended["empty"]])
{
    "empty prompt: no object, clean": oracle_scores(world, torch.cat([r.best for r in extended["empty"]]), strips, "")[
        "match"
    ]
    .float()
    .mean()
    .item(),
    "object prompt: the object": oracle_scores(
        world, torch.cat([r.best for r in extended["object"]]), strips, [t.prompt for t in outpaint_tasks]
    )["match"]
    .float()
    .mean()
    .item(),
}

# %% [markdown]
# With the empty prompt the strip holds no object and roughly continues the picture's colours, though a faint
# vertical seam often remains at its edge (look closely at the third row); with an object prompt the
# tall, narrow strip rarely holds the prompted object cleanly (the second number), and the guidance paints noise into
# the rest of the strip.
#
# ## 6. Many samples, ranked
#
# The same input, mask and prompt give different results with different noise. The paper draws several samples and
# ranks them by the CLIP distance between the masked result and the prompt (lower is better): `edit(...,
# samples=N)` returns them best first (`result.distances` ascending, `result.order` the index of each as drawn).

# %%
SAMPLES = 4 if FAST else 12
task = tasks["add"][0]
ranked = edit(world, task.image, task.mask, task.prompt, samples=SAMPLES, seed=SEED)
verdict = oracle_scores(world, ranked.images, ranked.mask.expand(SAMPLES, -1, -1, -1), task.prompt)
fig = show_grid(
    [[task.image] + list(ranked.images)],
    titles=[
        ["input"]
        + [
            f"#{i + 1} d={d:.2f}\n{'match' if m else 'no match'}"
            for i, (d, m) in enumerate(zip(ranked.distances.tolist(), verdict["match"].tolist(), strict=True))
        ]
    ],
    panel_inches=1.3,
    suptitle=f"ranked by CLIP distance to {task.prompt!r}",
)

# %% [markdown]
# The titles give each sample's CLIP distance and the oracle's verdict. The benchmark's top-1 of 4 raises the text
# match over one sample (section 1's second table); how often the guiding CLIP's first choice is one the oracle
# rejects is a limitation of ranking, measured in notebook 08.
#
# ## Summary
#
# What works in the toy world, and what does not (this lesson's numbers and the benchmark's):
#
# * **Add** works most of the time; **replace** is harder: the old object's colour survives the noising in part, and
#   some results keep a remnant of it. Ranking four samples by CLIP raises both (section 1's second table).
# * **Remove** with the empty prompt alone fails about half the time: from the default $k$ the old object's layout
#   survives the noise and the toy prior, trained on scenes with one to three objects, completes an object there. A smooth fill from the border, then the empty prompt from a low $k$,
#   removes the object in every one of the benchmark's 40 remove tasks with the background exact (section 2).
# * **A new background** can only be asked for with the empty prompt (the toy vocabulary names objects only): with the
#   objects' caption the guidance paints noise into the background.
# * **Scribbles** work as placement hints: the object grows out of the scribble.
# * **Outpainting** continues the picture with the empty prompt (a faint seam can remain at the strip's edge); with
#   an object prompt the tall strip rarely holds a clean object.
#
# ## Exercises
#
# 1. Remove with the fill but from the default $k$ (`remove_object(..., k=settings.k)`). How many of the
#    $N$ regions still hold no object?
# 2. Compose two edits: remove an object, then add another in the same place (feed `result.best` of the first into
#    the second). Does the oracle find the new object?
# 3. Scribble with the *wrong* colour (the prompt says red, the scribble is blue). Which wins at $k$ half the
#    default, and at the default $k$?
# 4. Outpaint to the left instead (`direction="left"`). Is the background exact outside the strip?

# %% tags=["solution"] jupyter={"source_hidden": true}
late = [remove_object(world, t.image, t.mask, seed=SEED, k=settings.k).best[0] for t in remove_tasks]
first = remove_tasks[0]
cleared = remove_object(world, first.image, first.mask, seed=SEED).best
added = edit(world, cleared, first.mask, "a red circle", seed=SEED)
blue = tuple(c / 255 for c in COLOR_RGB["blue"])
wrong = {
    k_name: scribble_edit(world, task.image, blob, blue, "a red circle", region=region, seed=SEED, k=k_value)
    for k_name, k_value in (("half k", settings.k // 2), ("default k", settings.k))
}
left = extrapolate(world, outpaint_tasks[0].image, "", direction="left", fraction=1 / 3, seed=SEED)
keep = (1 - left.mask).bool().expand_as(left.best)
answers = {
    "1: no object left (fill, default k)": oracle_scores(world, torch.stack(late), masks, "")["match"]
    .float()
    .mean()
    .item(),
    "2: oracle finds 'a red circle'": bool(oracle_scores(world, added.best, added.mask, "a red circle")["match"][0]),
    **{
        f"3: {name}: oracle sees": str(world.oracle.judge(r.best, r.mask)["color"].tolist())
        for name, r in wrong.items()
    },
    "4: largest change outside the strip": float((left.best - left.image).abs()[keep].max()),
}
answers

# %% [markdown] tags=["solution"]
# **Answers** (seed 0; printed above; colours are indices into `bdlib.worlds.toy.vocab.COLORS`).
#
# 1. From the default $k$ the fill is noised almost away and the prior can invent an object again: compare the printed
#    fraction with the recipe's in section 2.
# 2. Whether the oracle finds the new object is printed (with seed 0 it does not): the second edit is an
#    add like any other, and one add in five fails in the benchmark (section 1), so one try can miss.
# 3. The colour index the oracle sees is printed for each $k$ (0 is red, 2 blue, 5 orange): in this run the prompt's
#    red wins at the default $k$; at half $k$ the region ends orange, neither the prompt's red nor the scribble's
#    blue. A scribble steers the colour only as far as the chain keeps it, and here it did not.
# 4. 0: outpainting is an edit with an exact background like any other.

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
assert answers["4: largest change outside the strip"] == 0.0, "exercise 4"
assert not answers["2: oracle finds 'a red circle'"], "exercise 2: this try misses"
assert (answers["3: default k: oracle sees"], answers["3: half k: oracle sees"]) == ("[0]", "[5]"), "exercise 3"

# %% tags=["checks"] jupyter={"source_hidden": true}
for kind, run in runs.items():
    assert (
        float(
            (
                (run.results - torch.stack([t.image for t in tasks[kind]])).abs()
                * (1 - torch.stack([t.mask for t in tasks[kind]]))
            ).max()
        )
        == 0.0
    ), f"§1: exact background ({kind})"
assert removed["fill + blend (bdlib)"] >= removed["empty prompt (paper)"], "§2: the fill removes at least as often"
bench = {row["setting"]: row for row in report_rows(report, "remove: ", ("text_match",))}
assert bench["remove: fill, k=6"]["text_match"] == 1.0, "summary: the recipe removes every benchmark object"
assert 0.3 < bench["remove: prior only, k=18"]["text_match"] < 0.7, "summary: the prior alone fails about half the time"
for r in extended["empty"] + extended["object"]:
    assert torch.equal(r.best[0][:, r.mask[0, 0] == 0], r.image[0][:, r.mask[0, 0] == 0]), "§5: exact outside the strip"
assert torch.all(ranked.distances[:-1] <= ranked.distances[1:]), "§6: best first"
add_match = report_rows(report, ("alg2 default",), ("add:text_match",))[0]["add:text_match"]
assert round(add_match, 1) == 0.8, "exercise 2: one add in five fails"
assert covered(scribbled) > covered(unscribbled), "§4: the object goes where the scribble is"
