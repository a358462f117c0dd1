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
# # 09 · The paper's models: the same edit at 256x256
#
# Lessons 01-07 ran in the toy world. Everything there was written once against a `World`, so the paper's own
# networks plug into the same code: guided-diffusion's unconditional 256x256 ImageNet UNet (Dhariwal & Nichol
# 2021), CLIP ViT-B/16 and, for Algorithm 1, LPIPS-VGG.
#
# In particular we will highlight:
#
# * fetching the official checkpoints and loading them with `load_world("paper")`, and checking the architecture
#   (552,814,086 parameters in the UNet);
# * what one guided step costs: counted FLOPs, a pass timed on this machine, and what has been measured so far;
# * the very same `bdlib.edit.edit` on a 256x256 photo with a mask, and which network may run in bf16 during
#   guidance.
#
# **Run time** (measured by `notebooks/run_notebooks.py`, 2-core CPU, 2 threads, 2026-12-06): fast mode 29 s, full mode 71 s.
#
# What runs depends on the device, because the 256x256 UNet needs about 2.2 TFLOP per forward pass:
#
# | mode | device | UNet evaluated at | edit |
# |---|---|---|---|
# | fast (default) | CPU | 64x64 (same weights) | `"10"`, 1 step, 2 views, 1 sample |
# | full | CPU | 128x128 | `"10"`, 2 steps, 2 views, 1 sample |
# | fast | GPU | 256x256 | `"10"`, 3 steps, 2 views, 1 sample |
# | full | GPU | 256x256 | `official=True`: `"100"`, k = 74 (75 steps), 8 views, 4 samples (one official batch) |
#
# On a CPU the UNet runs at a lower resolution (it is fully convolutional, with attention at fixed downsampling
# rates) so that the lesson finishes; every other line is the same. Without the official checkpoints, and always
# in fast mode on a CPU, the networks get **random weights**: the pictures are meaningless, but the architecture,
# the code path and the timings are real. No GPU has been available to this project, so no GPU time in this lesson
# is measured; the CPU times it quotes come from the benchmark files named next to them.

# %% tags=["parameters"]
FAST = True  # fast mode: a 1-step edit at reduced resolution on CPU (full mode: see the table above)
WORLD = "toy"  # ignored here: this lesson always loads the paper's world (the toy world is lessons 01-08)
DEVICE = "cpu"  # "cuda" for a GPU: full mode then runs the official code's choices at 256x256
SEED = 0

# %%
import dataclasses
import json
import time
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import bdlib
from bdlib.course.viz import show_grid, table

plt.rcParams["figure.dpi"] = 100
ON_CPU = torch.device(DEVICE).type == "cpu"
if ON_CPU:  # what runs where: the table above
    NET_SIZE, EDIT, SAMPLES = (64 if FAST else 128), dict(respacing="10", k=0 if FAST else 1, views=2), 1
elif FAST:
    NET_SIZE, EDIT, SAMPLES = 256, dict(respacing="10", k=2, views=2), 1
else:
    NET_SIZE, EDIT, SAMPLES = 256, {"official": True}, 4  # the official code's choices, one batch of 4
RESULTS = Path(bdlib.__file__).resolve().parents[1] / "benchmarks" / "results"  # measured benchmark runs


@contextmanager
def timed(record: dict, key: str):
    """Store the wall time of the block in record[key] (waiting for the GPU before and after)."""
    if torch.device(DEVICE).type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield
    if torch.device(DEVICE).type == "cuda":
        torch.cuda.synchronize()
    record[key] = time.perf_counter() - start


# %% [markdown]
# ## 1. Where the weights live, and how to get them
#
# Nothing in bdlib downloads by itself. One explicit command fetches the two official files into the cache
# (`~/.cache/bdlib`, or `$BDLIB_CACHE`, or `--cache-dir`), resumes interrupted downloads and checks SHA-256; it also
# makes torchvision fetch LPIPS's VGG-16 trunk:
#
# ```bash
# .venv/bin/python -m bdlib download paper
# ```
#
# The files this lesson looks for, and whether this machine has them:

# %%
from bdlib.worlds.paper.checkpoints import PAPER_FILES, checkpoint_path, resolve_cache_dir

present = {part: checkpoint_path(part, must_exist=False).is_file() for part in PAPER_FILES}
USE_RANDOM = not all(present.values()) or (FAST and ON_CPU)
table(
    [
        {
            "part": part,
            "file": entry.filename,
            "here": present[part],
            "size": f"{entry.size / 1e9:.2f} GB" if entry.size else "not pinned",
            "sha256": entry.sha256[:12] + "...",
        }
        for part, entry in PAPER_FILES.items()
    ]
)

# %% [markdown]
# The cache folder on this machine, and whether the run below uses random weights:

# %%
str(resolve_cache_dir()), USE_RANDOM

# %% [markdown]
# ## 2. Loading the world
#
# `load_world("paper")` builds the UNet (`bdlib.nets.unet.paper_unet`), loads the state dict with
# `torch.load(..., weights_only=True)` after checking every key and shape, loads CLIP ViT-B/16 and wraps them in a
# `World`. `random_weights=True` builds the same architectures with random weights. The parameter counts of the
# two networks:

# %%
from bdlib.worlds import load_world

world = load_world("paper", device=DEVICE, random_weights=USE_RANDOM, with_lpips=False, seed=SEED)
LABEL = "RANDOM WEIGHTS: architecture and timing only" if USE_RANDOM else "official checkpoints"
unet_params = sum(p.numel() for p in world.unet.parameters())
{"UNet": unet_params, "CLIP ViT-B/16": sum(p.numel() for p in world.clip.parameters()), "weights": LABEL}

# %% [markdown]
# The UNet has exactly the 552,814,086 parameters of guided-diffusion's 256x256 unconditional model, built from
# `bdlib.nets.unet.PAPER_UNET_CONFIG`:

# %%
from bdlib.nets.unet import PAPER_UNET_CONFIG

{
    k: PAPER_UNET_CONFIG[k]
    for k in (
        "model_channels",
        "channel_mult",
        "attention_resolutions",
        "num_res_blocks",
        "num_head_channels",
        "out_channels",
    )
}

# %% [markdown]
# ## 3. What one guided step costs
#
# A guided step runs the UNet forward **with autograd on** and back-propagates the CLIP loss through it to $x_t$
# (weights frozen: only input gradients, which cost about one more forward). We count the floating-point
# operations with `torch.utils.flop_counter.FlopCounterMode` on the `meta` device (no memory, no compute); the
# counts depend on the architecture alone.

# %%
from torch.utils.flop_counter import FlopCounterMode

from bdlib.nets.unet import paper_unet

meta_unet = paper_unet("100", device="meta")[0].requires_grad_(False)


def unet_tflop(size: int) -> tuple[float, float]:
    """(forward, forward + input-gradient backward) TFLOP of one 256-model pass on a size x size image."""
    x, t = torch.zeros(1, 3, size, size, device="meta"), torch.full((1,), 500.0, device="meta")
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        meta_unet(x, t)
    with FlopCounterMode(display=False) as both:
        meta_unet(x.requires_grad_(True), t).sum().backward()
    return forward.get_total_flops() / 1e12, both.get_total_flops() / 1e12


flops = {size: unet_tflop(size) for size in dict.fromkeys((256, NET_SIZE))}
table([{"image": f"{s}x{s}", "forward (TFLOP)": f, "forward + backward (TFLOP)": fb} for s, (f, fb) in flops.items()])

# %% [markdown]
# At 256x256 one forward pass is 2.24 TFLOP and forward plus input gradient 4.49: a guided step costs two
# forwards. Now one forward+backward pass timed on `DEVICE` at the resolution this run uses (after one untimed
# pass that pays the one-off set-up costs), and what the throughput reached here would mean at 256x256: for an edit
# of 4 samples in bdlib's default mode (75 steps, one forward+backward pass per step), and for the official code's
# default run (75 steps, a forward pass without gradient plus a forward+backward pass per step, 8 batches of 4 =
# 32 samples). CLIP's 8 views per sample and step come on top of both:

# %%
x = torch.randn(1, 3, NET_SIZE, NET_SIZE, generator=torch.Generator().manual_seed(SEED)).to(DEVICE).requires_grad_(True)
t = torch.full((1,), 747.0, device=DEVICE)
seconds = {}
for key in ("warm-up", "pass"):  # the first pass sets up kernels and memory; the second is timed
    with timed(seconds, key):
        world.unet(x, t)[:, :3].square().sum().backward()
throughput = flops[NET_SIZE][1] / seconds["pass"]  # TFLOP/s reached in this pass
step_256 = flops[256][1] / throughput  # seconds for one 256x256 forward+backward at that throughput
forward_256 = flops[256][0] / throughput  # the official code's extra pass without gradient
{
    "device": DEVICE,
    f"seconds at {NET_SIZE}x{NET_SIZE}": seconds["pass"],
    "TFLOP/s": throughput,
    "estimated s per 256x256 pass": step_256,
    "estimated min, bdlib edit of 4 samples (UNet only)": 75 * 4 * step_256 / 60,
    "estimated min, official run of 32 samples (UNet only)": 75 * 32 * (forward_256 + step_256) / 60,
}

# %% [markdown]
# These are estimates from one pass on whatever else this machine is doing right now. What has been measured
# end to end so far, all on this project's 2-core CPU with random weights (`benchmarks/README.md` gives the
# commands and the conditions), read from the benchmark files:

# %%
measured = []
for name in ("edit_paper_cpu_1step.json", "guided_step_cpu.json"):
    for run in json.loads((RESULTS / name).read_text()):
        measured.append(
            {
                "file": f"benchmarks/results/{name}",
                "precision": run["precision"],
                "batch": run["batch"],
                "s per 256x256 guided step": run["seconds_per_step"],
                "s per 75-step edit": run.get("seconds_per_edit", "not measured"),
                "TFLOP/s": run["achieved_tflops"],
                "load (1 min)": run.get("load_average_1m", "not recorded"),
            }
        )
table(measured)

# %% [markdown]
# A complete guided step at 256x256 (UNet forward and input gradient, CLIP ViT-B/16 on 8 views) took 36 s in
# the `bench_edit` run, at 0.14 TFLOP/s, whose edit time (about 45 min for one sample) is extrapolated from that
# one timed step; the `bench_guided_step` runs took 149-156 s per step while other jobs loaded the machine (a load
# average above the core count). If the pass timed above reached fewer TFLOP/s than the benchmark's 0.14, as it
# does on this project's CPU, where a small image comes in small pieces that keep the CPU far from its peak,
# its estimate overstates the 256x256 time. **GPU: not measured.** The command that would measure it is in `benchmarks/README.md`
# (`bench_edit.py --world paper --device cuda ...`). This cost is why the course develops everything in the 32x32
# toy world.
#
# ## 4. The same edit API at 256x256
#
# The input is a 256x256 photo (`skimage.data.chelsea()`, centre-cropped) and a binary mask over the cat's eye on the left of the picture
# (1 = edit). `edit()` resizes both to `world.image_size`, runs Algorithm 2 (blended diffusion), resizes back and
# pastes the input's background back exactly: outside the mask the result *is* the input. On a CPU we hand `edit()`
# a copy of the world whose `image_size` is `NET_SIZE`: the same networks, the UNet evaluated at a lower resolution.
# A forward hook counts the UNet's passes.

# %%
import skimage.data
import torch.nn.functional as F

from bdlib.edit import edit
from bdlib.runtime.imageio import load_image

photo = skimage.data.chelsea()  # (300, 451, 3) uint8
left = (photo.shape[1] - photo.shape[0]) // 2
image = F.interpolate(
    load_image(photo[:, left : left + photo.shape[0]]), size=(256, 256), mode="bicubic", antialias=True
).clamp(-1, 1)
mask = torch.zeros(1, 1, 256, 256)
mask[..., 90:170, 40:125] = 1.0  # the cat's eye on the left of the picture
edit_world = world if NET_SIZE == world.image_size else dataclasses.replace(world, image_size=NET_SIZE)
passes, steps = [], []
hook = world.unet.register_forward_hook(lambda module, inputs, output: passes.append(1))
result = edit(edit_world, image, mask, "a blue cat eye", samples=SAMPLES, seed=SEED, callback=steps.append, **EDIT)
hook.remove()
_ = show_grid(
    [[image, mask[0], result.best, (result.best - image).abs().mul(2).sub(1)]],
    titles=[["input", "mask", "result", "|result - input|"]],
    panel_inches=2.56,
)

# %% [markdown]
# The difference is black outside the mask: there every pixel of the result equals the input's. Inside, the
# result differs from the input as much as this run's short chain lets it (the steps are counted below), and
# with random weights the change means nothing: this is a test of the pipeline and its cost, not an edit. With the
# official checkpoints on a GPU (`FAST = False`, `DEVICE = "cuda"`) the same cell runs with the official code's
# choices (`official=True`: 100 respaced steps from k = 74, 8 augmented CLIP views, guidance scale 1000, range
# loss 50, two UNet passes per step, 4 samples ranked by CLIP); what it paints has not been run in this project.
# Steps, UNet passes (one per step in bdlib's default mode, two in official mode) and the CLIP distances of the
# ranked samples:

# %%
{"steps": len(steps), "UNet passes": len(passes), "CLIP distances": [round(float(d), 4) for d in result.distances]}

# %% [markdown]
# ## 5. Cheaper steps: which network may run in bf16?
#
# Mixed precision halves the cost of the big matmuls and convolutions, but not every network tolerates it.
# `precision="bf16"` runs the UNet and CLIP under bf16 autocast; `"bf16-clip"` keeps the UNet in float32 and runs
# only CLIP (and LPIPS) in bf16. Why should that matter? Guidance differentiates
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon(x_t)) / \sqrt{\bar\alpha_t}$, whose Jacobian
# $(I - \sqrt{1-\bar\alpha_t}\,\partial\hat\epsilon/\partial x_t)/\sqrt{\bar\alpha_t}$ is, at high noise, a difference of two
# nearly equal terms divided by a small $\sqrt{\bar\alpha_t}$: a small relative error in the UNet's backward pass becomes
# a large one in the gradient. The trained toy world measures it on one guided step (same $x_t$, noise and
# augmentations in every precision; `bdlib.course.precision_effect`), as the relative change of the guidance gradient:

# %%
from bdlib.course.precision_effect import guided_step_change
from bdlib.worlds.toy.tasks import example_task

toy, task = load_world("toy", dtype=torch.float32), example_task()  # precisions are studied from float32
toy_text, toy_chain = toy.encode_prompt(task.prompt), toy.diffusion()
indices = (18, 6) if FAST else (18, 12, 6, 1)
change = {
    i: guided_step_change(
        toy, task.image[None], task.mask[None], toy_text, i, ["bf16-clip", "bf16"], torch.Generator().manual_seed(SEED)
    )
    for i in indices
}
table(
    [
        {
            "respaced index": i,
            "t": int(toy_chain.timestep_map[i]),
            "√(1-ᾱ_t)/√ᾱ_t": float(toy_chain.sqrt_one_minus_alphas_cumprod[i] / toy_chain.sqrt_alphas_cumprod[i]),
            "bf16-clip": c["bf16-clip"]["grad_relative_l2"],
            "bf16": c["bf16"]["grad_relative_l2"],
        }
        for i, c in change.items()
    ]
)

# %% [markdown]
# At the first step of an edit (index 18, high noise) the bf16 UNet moves the gradient far more than the bf16 CLIP
# does; `bf16-clip` leaves $\hat x_0$ untouched, since the UNet stays in float32. One seed is one draw; the
# benchmark repeated this for 8 seeds (`benchmarks/precision_tolerance.py`), median and range over them:

# %%
from statistics import median

runs = json.loads((RESULTS / "precision_tolerance_toy.json").read_text())
spread = {}
for run in runs:
    spread.setdefault((run["index"], run["precision"]), []).append(run["grad_relative_l2"])
table(
    [
        {
            "file": "precision_tolerance_toy.json",
            "respaced index": i,
            "precision": p,
            "seeds": len(v),
            "median": median(v),
            "min": min(v),
            "max": max(v),
        }
        for (i, p), v in sorted(spread.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
    ]
)

# %% [markdown]
# Over 8 seeds, the first step's gradient moves by 16-64 % with a bf16 UNet against 0.3-7 % with bf16 in CLIP only;
# near the end of the chain the two come close. Does it matter for the edits? The 200-task toy benchmark
# (`figures/evaluation.json`, its table in `figures/evaluation.md`) ran the default edit in each precision:

# %%
evaluation = json.loads((RESULTS.parents[1] / "figures" / "evaluation.json").read_text())
rows = {row["name"]: row for row in evaluation["settings"]}
table(
    [
        {
            "row of figures/evaluation.json": name,
            "precision": rows[name]["settings"]["precision"],
            "text match": rows[name]["text_match"],
            "clean": rows[name]["clean"],
        }
        for name in ("alg2 default", "alg2 bf16", "alg2 bf16-clip")
    ]
)

# %% [markdown]
# Neither low precision moves the text match or the clean score beyond the benchmark's noise. With 160 scored tasks
# one score has a standard error of about 0.04, and the difference of two scores about 0.06 ($\sqrt 2$ times); the
# largest move in the table is bf16's clean score, 0.08 *above* float32's, under two of those. So the large gradient
# error of a bf16 UNet at the first step does not show in these scores. `benchmarks/README.md` has what each
# precision saves in time. The library's default stays
# float32, so that the same seed gives the same edit on every machine.
#
# ## Summary
#
# In this lesson we have:
#
# * loaded the paper's networks behind the same interface as the toy world (the UNet has 552,814,086 parameters)
#   and counted 2.24 TFLOP per 256x256 forward, 4.49 with the input gradient guidance needs;
# * estimated a guided step from one pass on this machine and read what was measured on the project's 2-core CPU
#   (36 s per 256x256 guided step; GPU not measured), which is why the course works in the 32x32 toy world;
# * run the unchanged `bdlib.edit.edit` at 256x256, with the background preserved exactly by construction;
# * seen that low precision belongs in CLIP, not in the UNet: $\hat x_0$'s Jacobian at high noise amplifies the
#   UNet's rounding errors in the guidance gradient (`precision="bf16-clip"` against `"bf16"`).
#
# ## Exercises
#
# 1. `respacing="25"` with `k=18` covers the same fraction of the chain as the official k. How many
#    seconds of guided steps would one sample take at 256x256: at the speed measured in
#    `benchmarks/results/edit_paper_cpu_1step.json`, and at this run's estimated pass time?
# 2. The official code runs the UNet twice per step (a forward without grad for the mean, then forward+backward for
#    the gradient); bdlib runs it once. What fraction of the UNet's FLOPs does one pass save, and what fraction of
#    the time did the CPU benchmark measure?
# 3. Run the edit of section 4 with `official=True` and count the UNet passes per step. Is the background still
#    exact?
# 4. Compute $\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}$ at respaced indices 18, 12, 6 and 1 of the toy chain. How does it
#    follow the bf16 column of section 5?

# %% [markdown]
# ## Solutions
#
# **1.** 19 guided steps (indices 18 down to 0), at the two speeds:

# %% tags=["solution"] jupyter={"source_hidden": true}
bench = json.loads((RESULTS / "edit_paper_cpu_1step.json").read_text())[0]
{
    "benchmark s per step": bench["seconds_per_step"],
    "19 steps at the benchmark's speed (s)": 19 * bench["seconds_per_step"],
    "19 steps at this run's estimate (s, UNet only)": 19 * step_256,
}

# %% [markdown] tags=["solution"]
# **Answer.** At the benchmark's 36.0 s per guided step, 19 steps take 685 s, about 11 minutes per sample on the
# project's 2-core CPU. This run's estimate (the last number) counts the UNet's pass alone at whatever throughput the
# machine gave just now (section 3 says why it overstates the time on a CPU). On a GPU: not measured.
#
# **2.** One forward+backward against a forward plus a forward+backward, counted and measured:

# %% tags=["solution"] jupyter={"source_hidden": true}
forward, both = flops[256]
{
    "FLOPs saved": 1 - both / (forward + both),
    "official two-pass / one pass (measured)": bench["speedup_vs_official"],
    "time saved (measured)": 1 - 1 / bench["speedup_vs_official"],
}

# %% [markdown] tags=["solution"]
# **Answer.** One pass saves a third of the UNet's FLOPs (1 - 4.49 / (2.24 + 4.49) = 0.333). The CPU benchmark
# measured the official two-pass step 1.44 times slower, so one pass saved 30 % of the time: a little less than a
# third, because CLIP's 8 views cost the same in both.
#
# **3.** The same edit in official mode, counting passes again:

# %% tags=["solution"] jupyter={"source_hidden": true}
official_passes, official_steps = [], []
hook = world.unet.register_forward_hook(lambda module, inputs, output: official_passes.append(1))
official = edit(
    edit_world,
    image,
    mask,
    "a blue cat eye",
    samples=SAMPLES,
    seed=SEED,
    callback=official_steps.append,
    **{**EDIT, "official": True},
)
hook.remove()
outside = (1 - official.mask).bool().expand_as(official.images)  # the official result keeps the model's size
{
    "passes per step (official)": len(official_passes) / len(official_steps),
    "passes per step (default)": len(passes) / len(steps),
    "official result size": tuple(official.images.shape[-2:]),
    "largest change outside the mask (official)": float((official.images - official.image)[outside].abs().max()),
}

# %% [markdown] tags=["solution"]
# **Answer.** Two UNet passes per step in official mode against one in bdlib's default, as the official code does;
# the background is still exact (the largest change outside the mask is 0), because both modes paste the input back
# at the end; the official result stays at the model's size (printed) with the background of the input resized to
# it, as the official code writes its results, where bdlib's default returns the input's own size. With the official checkpoints the two modes give different samples (the official one blends the
# background one noise level higher and lets CLIP see a mix of $\hat x_0$ and $x_t$; lesson 05); with random weights
# there is nothing to compare.
#
# **4.** The factor at the four indices (from the schedule alone):

# %% tags=["solution"] jupyter={"source_hidden": true}
factor = {
    i: float(toy_chain.sqrt_one_minus_alphas_cumprod[i] / toy_chain.sqrt_alphas_cumprod[i]) for i in (18, 12, 6, 1)
}
table(
    [
        {
            "respaced index": i,
            "t": int(toy_chain.timestep_map[i]),
            "√(1-ᾱ_t)/√ᾱ_t": f,
            "bf16 median (8 seeds)": median(spread[i, "bf16"]),
            "bf16-clip median": median(spread[i, "bf16-clip"]),
        }
        for i, f in factor.items()
    ]
)

# %% [markdown] tags=["solution"]
# **Answer.** It falls from 17.2 at index 18 ($t = 749$) to 3.4, 0.96 and 0.15 at indices 12, 6 and 1, and the
# bf16 medians of section 5 fall the same way (26 %, 13 %, 7 %, 6 % over 8 seeds, the table): an error in $\hat\varepsilon$ enters
# $\hat x_0$, and its gradient, multiplied by this factor. The bf16 change falls much less than the factor
# because the CLIP part of the error (the `bf16-clip` column, 1-5 %) does not shrink with it.

# %% tags=["solution", "answer-checks"] jupyter={"source_hidden": true}
# The exercises' answers, checked (removed with the solutions in a student edition).
assert round(19 * bench["seconds_per_step"]) == 685, "exercise 1: 685 s, about 11 minutes"
assert round(bench["speedup_vs_official"], 2) == 1.44 and round(1 - 1 / bench["speedup_vs_official"], 2) == 0.30, (
    "ex. 2"
)
assert len(official_passes) == 2 * len(official_steps), "exercise 3: two UNet passes per step in official mode"
assert float((official.images - official.image)[outside].abs().max()) == 0.0, "exercise 3: the background is exact"
assert official.images.shape[-1] == edit_world.image_size, "exercise 3: the official result keeps the model's size"
assert [round(factor[i], 1 if i > 6 else 2) for i in (18, 12, 6, 1)] == [17.2, 3.4, 0.96, 0.15], "exercise 4: factors"

# %% tags=["checks"] jupyter={"source_hidden": true}
# Checks: each claim of the lesson that must never regress, with the sentence it backs.
measured = json.loads((RESULTS / "edit_paper_cpu_1step.json").read_text())[0]  # the benchmark §3 quotes
assert round(measured["seconds_per_step"]) == 36 and round(measured["seconds_per_edit"] / 60) == 45, "§3: 36 s, 45 min"
assert measured["extrapolated"] and measured["timed_steps"] == 1, "§3: extrapolated from one timed step"
assert round(measured["achieved_tflops"], 2) == 0.14, "§3: at 0.14 TFLOP/s"
assert unet_params == 552_814_086, "§2: the 256x256 unconditional ADM model has exactly 552,814,086 parameters"
assert round(flops[256][0], 2) == 2.24 and round(flops[256][1], 2) == 4.49, "§3: 2.24 and 4.49 TFLOP"
assert 1.9 < flops[256][1] / flops[256][0] < 2.1, "§3: a guided step costs two forwards"
step_bench = {
    run["precision"]: run["seconds_per_step"] for run in json.loads((RESULTS / "guided_step_cpu.json").read_text())
}
assert all(149 < s < 157 for s in step_bench.values()), "§3: the bench_guided_step runs took 149-156 s"
assert all(
    run["load_average_1m"] > run["cpu_count"] for run in json.loads((RESULTS / "guided_step_cpu.json").read_text())
), "§3: other jobs loaded the machine (a load average above the core count)"
assert result.images.shape == (SAMPLES, 3, 256, 256) and torch.isfinite(result.images).all(), "§4: the edit ran"
assert torch.equal(result.images * (1 - mask), image.expand_as(result.images) * (1 - mask)), "§4: background exact"
assert len(steps) == result.settings.k + 1, "§4: the steps counted"
assert len(passes) == (2 if result.settings.official else 1) * len(steps), "§4: one UNet pass per step (official: two)"
assert all(c["bf16-clip"]["pred_x0_max_abs"] == 0 for c in change.values()), "§5: bf16-clip leaves x̂_0 untouched"
matches = [rows[name]["text_match"] for name in ("alg2 default", "alg2 bf16", "alg2 bf16-clip")]
cleans = [rows[name]["clean"] for name in ("alg2 default", "alg2 bf16", "alg2 bf16-clip")]
scored = sum(kind["n"] for kind in rows["alg2 default"]["per_kind"].values() if kind["text_match"] is not None)
assert scored == 160 and round((0.56 * 0.44 / scored) ** 0.5, 2) == 0.04, (
    "§5: 160 scored tasks, a standard error of 0.04"
)
difference_se = 2**0.5 * (0.56 * 0.44 / scored) ** 0.5
assert round(difference_se, 2) == 0.06, "§5: the standard error of a difference"
moves = [abs(v - values[0]) for values in (matches, cleans) for v in values[1:]]
assert max(moves) == cleans[1] - cleans[0] and round(max(moves), 2) == 0.08, "§5: the largest move: bf16's clean, up"
assert max(moves) < 2 * difference_se, "§5: within the benchmark's noise"
assert change[18]["bf16"]["grad_relative_l2"] > 2 * change[18]["bf16-clip"]["grad_relative_l2"], (
    "§5: several times more"
)
first = {p: spread[18, p] for p in ("bf16", "bf16-clip")}
assert (round(min(first["bf16"]), 2), round(max(first["bf16"]), 2)) == (0.16, 0.64), "§5: 16-64 % over 8 seeds"
assert (round(min(first["bf16-clip"]), 3), round(max(first["bf16-clip"]), 2)) == (0.003, 0.07), "§5: 0.3-7 %"
medians = {p: [round(100 * median(spread[i, p])) for i in (18, 12, 6, 1)] for p in ("bf16", "bf16-clip")}
assert medians == {"bf16": [26, 13, 7, 6], "bf16-clip": [1, 1, 4, 5]}, "exercise 4: 26, 13, 7, 6 % and 1-5 %"
assert round(1 - flops[256][1] / sum(flops[256]), 3) == 0.333, "exercise 2: a third of the FLOPs"
