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
# Notebooks 01–07 ran in the toy world. Everything there was written once against a `World`, so the
# paper's own networks plug into the same code: guided-diffusion's unconditional 256x256 ImageNet UNet
# (Dhariwal & Nichol 2021), CLIP ViT-B/16 and, for Algorithm 1, LPIPS-VGG.
#
# **Learning goals.** After this notebook you can
#
# 1. fetch the official checkpoints and load them with `load_world("paper")`;
# 2. check the architecture (552,814,086 parameters) and estimate what one guided step costs;
# 3. call the very same `bdlib.edit.edit` on a 256x256 photo with a mask;
# 4. predict how long the official configuration takes on your CPU or GPU;
# 5. say which network may run in bf16 during guidance, and why.
#
# **Run time** (fresh kernel). The 256x256 UNet needs about 2.2 TFLOP per forward pass, so what runs
# depends on the device:
#
# | mode | device | network resolution | chain | time |
# |---|---|---|---|---|
# | fast (default) | CPU | 64x64 (same weights) | `"10"`, 1 step, 2 views | about 60 s (busy 2-core CPU) |
# | full | CPU | 128x128 | `"10"`, 2 steps, 2 views | about 2 min |
# | fast | GPU | 256x256 | `"10"`, 3 steps, 2 views | seconds |
# | full | GPU | 256x256 | official: `"100"`, k = 74 (75 steps), 8 views, 4 samples | about 1–2 min on an H100 |
#
# On a CPU the UNet runs at a lower resolution (it is fully convolutional, with attention at fixed
# downsampling rates) so that the notebook finishes; every other line is the same. Without the official
# checkpoints, and **always in fast mode on a CPU**, the networks get **random weights**: the pictures are
# meaningless, but the architecture, the code path and the timings are real.

# %% tags=["parameters"]
FAST = True  # fast mode: a 1-step edit at reduced resolution on CPU (full mode: see the table above)
WORLD = "toy"  # ignored here: this notebook always loads the paper's world (the toy world is notebooks 01-07)
DEVICE = "cpu"  # "cuda" for a GPU: full mode then runs the official configuration at 256x256
SEED = 0

# %%
import dataclasses
import time

import matplotlib.pyplot as plt
import skimage.data
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bdlib.edit import edit
from bdlib.imageio import load_image
from bdlib.unet import PAPER_UNET_CONFIG, paper_unet
from bdlib.viz import show_grid
from bdlib.worlds.base import load_world
from bdlib.worlds.paper import PAPER_FILES, checkpoint_path, fetch_command, resolve_cache_dir

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(SEED)
NOTEBOOK_START = time.perf_counter()
ON_CPU = torch.device(DEVICE).type == "cpu"

# What runs where (the table above).
if ON_CPU:
    NET_SIZE = 64 if FAST else 128
    EDIT = dict(respacing="10", start_index=0 if FAST else 1, augmentations=2)
    SAMPLES = 1
elif FAST:
    NET_SIZE, EDIT, SAMPLES = 256, dict(respacing="10", start_index=2, augmentations=2), 1
else:
    NET_SIZE, EDIT, SAMPLES = 256, {}, 4  # {} = the world's defaults: the official settings


def sync() -> None:
    """Wait for the GPU (timings of asynchronous CUDA work are otherwise meaningless)."""
    if torch.device(DEVICE).type == "cuda":
        torch.cuda.synchronize()


print(f"FAST={FAST} DEVICE={DEVICE!r}: network at {NET_SIZE}x{NET_SIZE}, edit overrides {EDIT or 'none (official)'}, "
      f"{SAMPLES} sample(s)")  # fmt: skip

# %% [markdown]
# ## 1. Where the weights live, and how to get them
#
# Nothing in bdlib downloads by itself. One explicit command fetches the two official files into the
# cache (`~/.cache/bdlib`, or `$BDLIB_CACHE`, or `--cache-dir`), resumes interrupted downloads and checks
# SHA-256; it also makes torchvision fetch LPIPS's VGG-16 trunk:
#
# ```bash
# .venv/bin/python -m bdlib download paper
# ```

# %%
cache = resolve_cache_dir()
print("cache folder:", cache)
present = {}
for part, entry in PAPER_FILES.items():
    path = checkpoint_path(part, must_exist=False)
    present[part] = path.is_file()
    size = f"{entry.size / 1e9:.2f} GB" if entry.size else "size not pinned"
    print(f"  {part:<5} {entry.filename:<30} {'present' if present[part] else 'missing':<8} {size}, "
          f"sha256 {entry.sha256[:12]}...")  # fmt: skip
print("fetch them with:", fetch_command())
USE_RANDOM = not all(present.values()) or (FAST and ON_CPU)

# %% [markdown]
# ## 2. Loading the world
#
# `load_world("paper")` builds the UNet (`bdlib.unet.paper_unet`), loads the state dict with
# `torch.load(..., weights_only=True)` after checking every key and shape, loads CLIP ViT-B/16 and wraps
# them in a `World`. `random_weights=True` builds the same architectures with random weights.

# %%
start = time.perf_counter()
world = load_world("paper", device=DEVICE, random_weights=USE_RANDOM, with_lpips=False, seed=SEED)
load_seconds = time.perf_counter() - start
LABEL = "RANDOM WEIGHTS — architecture and timing only" if USE_RANDOM else "official checkpoints"
print(f"loaded in {load_seconds:.1f} s: {world.description}")
print("=" * 60 + f"\n{LABEL}\n" + "=" * 60)
if USE_RANDOM and all(present.values()):
    print("(the checkpoints are present, but fast mode on a CPU always uses random weights)")

unet_params = sum(p.numel() for p in world.unet.parameters())
clip_params = sum(p.numel() for p in world.clip.parameters())
print(f"UNet: {unet_params:,} parameters; CLIP ViT-B/16: {clip_params:,} parameters")
assert unet_params == 552_814_086, "the 256x256 unconditional ADM model has exactly 552,814,086 parameters"
print("UNet config:", {k: PAPER_UNET_CONFIG[k] for k in ("model_channels", "channel_mult", "attention_resolutions",
                                                          "num_res_blocks", "num_head_channels", "out_channels")})
print("default settings (the official ones):", world.defaults)

# %% [markdown]
# ## 3. What one guided step costs
#
# A guided step runs the UNet forward **with autograd on** and back-propagates the CLIP loss through it to
# $x_t$ (weights frozen: only input gradients, which cost about one more forward). We count the
# floating-point operations with `torch.utils.flop_counter.FlopCounterMode` on the `meta` device (no
# memory, no compute), then time one forward+backward on `DEVICE` at the resolution this run uses.

# %%
meta_unet, _ = paper_unet("100", device="meta")
meta_unet.requires_grad_(False)


def unet_flops(size: int) -> tuple[float, float]:
    """(forward, forward + input-gradient backward) FLOPs of one 256-model pass on a size x size image."""
    x = torch.zeros(1, 3, size, size, device="meta")
    t = torch.full((1,), 500.0, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_unet(x, t)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        meta_unet(x.requires_grad_(True), t).sum().backward()
    return float(forward), float(counter.get_total_flops())


flops_256 = unet_flops(256)
flops_net = flops_256 if NET_SIZE == 256 else unet_flops(NET_SIZE)
print(f"256x256: {flops_256[0] / 1e12:.2f} TFLOP forward, {flops_256[1] / 1e12:.2f} TFLOP forward+backward")
print(f"{NET_SIZE}x{NET_SIZE}: {flops_net[0] / 1e12:.3f} TFLOP forward ({flops_256[0] / flops_net[0]:.1f}x cheaper)")
assert 2.1e12 < flops_256[0] < 2.4e12 and 1.9 < flops_256[1] / flops_256[0] < 2.1

x = torch.randn(1, 3, NET_SIZE, NET_SIZE, device=DEVICE, requires_grad=True)
t = torch.full((1,), 747.0, device=DEVICE)
sync()
start = time.perf_counter()
out = world.unet(x, t)
out[:, :3].square().sum().backward()
sync()
pass_seconds = time.perf_counter() - start
throughput = flops_net[1] / pass_seconds
assert out.shape == (1, 6, NET_SIZE, NET_SIZE) and x.grad is not None and torch.isfinite(x.grad).all()
print(f"one UNet forward+backward at {NET_SIZE}x{NET_SIZE} on {DEVICE}: {pass_seconds:.2f} s "
      f"({throughput / 1e12:.3f} TFLOP/s achieved)")  # fmt: skip
step_256 = flops_256[1] / throughput
official = 75 * 4 * step_256  # 75 steps (k = 74), batch 4, one pass per step (the official code adds a forward)
print(f"estimate at this throughput: one 256x256 UNet forward+backward ≈ {step_256:.1f} s; the official edit "
      f"(75 steps x 4 samples) ≈ {official / 60:.1f} min of UNet time, plus CLIP on 8 views per sample "
      "and step")  # fmt: skip
del out, x

# %% [markdown]
# ## 4. The same edit API at 256x256
#
# The input is a 256x256 photo (`skimage.data.chelsea()`, centre-cropped) and a binary mask over the cat's
# left eye (1 = edit). `edit()` resizes both to `world.image_size`, runs Algorithm 2 (blended diffusion),
# resizes back and pastes the input's background back exactly: outside the mask the result *is* the input.
#
# On a CPU we hand `edit()` a copy of the world whose `image_size` is `NET_SIZE`: the same networks, the
# UNet evaluated at a lower resolution. On a GPU `NET_SIZE` is 256.

# %%
photo = skimage.data.chelsea()  # (300, 451, 3) uint8
side = min(photo.shape[:2])
top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
image = F.interpolate(load_image(photo[top : top + side, left : left + side]), size=(256, 256), mode="bicubic",
                      antialias=True).clamp(-1, 1)  # fmt: skip
mask = torch.zeros(1, 1, 256, 256)
mask[..., 55:135, 40:125] = 1.0  # the left eye
prompt = "a blue cat eye"
edit_world = world if NET_SIZE == world.image_size else dataclasses.replace(world, image_size=NET_SIZE)

step_times: list[float] = []
last = [time.perf_counter()]


def timer(record: dict) -> None:
    """edit()'s per-step callback: record the wall time of every step."""
    sync()
    now = time.perf_counter()
    step_times.append(now - last[0])
    last[0] = now
    print(f"  step t={record['t']} (original t {record['timestep']}): {step_times[-1]:.2f} s", flush=True)


start = time.perf_counter()
last[0] = start
result = edit(edit_world, image, mask, prompt, samples=SAMPLES, seed=SEED, callback=timer, **EDIT)
edit_seconds = time.perf_counter() - start
settings = result.settings
print(f"edit: {len(step_times)} steps ('{settings.respacing}' from k = {settings.start_index}), "
      f"{settings.augmentations} CLIP views, {SAMPLES} sample(s): {edit_seconds:.1f} s in all "
      f"({edit_seconds - sum(step_times):.1f} s outside the steps: resizing, ranking)")  # fmt: skip
print("CLIP distances of the ranked samples:", [round(float(d), 4) for d in result.distances])

assert result.images.shape == (SAMPLES, 3, 256, 256) and torch.isfinite(result.images).all()
assert len(step_times) == settings.start_index + 1
keep = 1 - mask
assert torch.equal(result.images * keep, image.expand_as(result.images) * keep), "background preserved exactly"
print("outside the mask every pixel equals the input: True")

show_grid(
    [[image, mask[0], result.best, (result.best - image).abs().mul(2).sub(1)]],
    titles=[["input 256px", "mask", "result", "|result - input|"]], panel_inches=1.0,
    suptitle=f"{prompt!r} — {LABEL}",
)  # fmt: skip
plt.show()

# %% [markdown]
# With random weights the edited region is structured noise; with the official checkpoints on a GPU
# (`FAST = False`, `DEVICE = "cuda"`) the same cell runs the official configuration (100 respaced steps
# from k = 74, 8 augmented CLIP views, guidance scale 1000, range loss 50, 4 samples ranked by CLIP) and
# paints a blue eye. The exact pixels outside the mask hold either way.
#
# ## 5. Cheaper steps: which network may run in bf16?
#
# Mixed precision halves the cost of the big matmuls and convolutions, but not every network tolerates it.
# `precision="bf16"` runs the UNet and CLIP under bf16 autocast; `"bf16-clip"` keeps the UNet in float32
# and runs only CLIP (and LPIPS) in bf16. Why should that matter? Guidance differentiates
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon(x_t)) / \sqrt{\bar\alpha_t}$, whose Jacobian
# $(I - \sqrt{1-\bar\alpha_t}\,\partial\hat\epsilon/\partial x_t)/\sqrt{\bar\alpha_t}$ is, at high noise, a difference
# of two nearly equal terms divided by a small $\sqrt{\bar\alpha_t}$: a small relative error in the UNet's
# backward pass becomes a large one in the gradient. The trained toy world measures it on one guided step
# (same $x_t$, noise and augmentations in every precision; `bdlib.precision_effect`):

# %%
from bdlib.precision_effect import guided_step_change  # noqa: E402
from bdlib.worlds.toy.tasks import example_task  # noqa: E402

toy = load_world("toy")
task = example_task()
toy_text = toy.encode_prompt(task.prompt)
toy_diffusion = toy.diffusion()
precision_change = {}
for index in (18, 6) if FAST else (18, 12, 6, 1):
    precision_change[index] = guided_step_change(toy, task.image[None], task.mask[None], toy_text, index,
                                                 ["bf16-clip", "bf16"], torch.Generator().manual_seed(SEED))  # fmt: skip
    changes = precision_change[index]
    print(f"respaced index {index:2d} (t = {toy_diffusion.timestep_map[index]}, √ᾱ_t = "
          f"{toy_diffusion.sqrt_alphas_cumprod[index]:.2f}): gradient moved by "
          + ", ".join(f"{c['grad_relative_l2']:.1%} ({p})" for p, c in changes.items()))  # fmt: skip
first = precision_change[18]
assert all(c["bf16-clip"]["pred_x0_max_abs"] == 0 for c in precision_change.values()), "bf16-clip: UNet untouched"
# 8 seeds (benchmarks/precision_tolerance.py): bf16 moved the first step's gradient 3.7x-58x more than bf16-clip
assert first["bf16"]["grad_relative_l2"] > 2 * first["bf16-clip"]["grad_relative_l2"], "the UNet is the sensitive one"

# %% [markdown]
# At the first step of an edit (high noise) a bf16 UNet moves the guidance gradient far more than a bf16 CLIP
# (over 8 seeds: 16-64 % against 0.3-7 %, `benchmarks/README.md`); near the end of the chain the two come close. On the 200-task toy benchmark neither changes the
# text match beyond its noise (`figures/evaluation.md`: 0.56 float32, 0.59 bf16, 0.56 bf16-clip), and
# `benchmarks/README.md` has what each saves in time. The library's default stays float32, so the same seed
# gives the same edit on every machine.
#
# ## Summary
#
# * `load_world("paper")` gives the paper's networks behind the same interface as the toy world; the UNet
#   has 552,814,086 parameters and needs about 2.2 TFLOP per forward at 256x256 (4.5 TFLOP with the
#   input gradient guidance needs).
# * On this machine one 256x256 forward+backward is estimated above; the official edit multiplies it by
#   75 steps and 4 samples, which is why the course develops everything in the 32x32 toy world.
# * `bdlib.edit.edit` is unchanged between worlds; background preservation is exact by construction.
# * Low precision belongs in CLIP, not in the UNet: x̂_0's Jacobian at high noise amplifies the UNet's
#   rounding errors in the guidance gradient (`precision="bf16-clip"` against `"bf16"`).
#
# ## Exercises
#
# 1. Using the throughput measured in section 3, how many seconds would `respacing="25"`, `start_index=18`
#    (the same fraction of the chain as the official k) take per sample at 256x256?
# 2. Compare the cost of the official code's two passes per step (a no-grad forward for the mean, then
#    forward+backward for the gradient) with bdlib's one pass (`official=False`). What fraction is saved?
# 3. With the checkpoints downloaded and a GPU, run the edit with `official=True` and with the default
#    paper mode and compare the results (notebook 05 explains the three differences).
# 4. Compute $\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}$ at each respaced index of the toy chain: how does it follow the
#    bf16 column of section 5?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. 19 steps x `step_256` seconds of UNet time (plus CLIP): `19 * step_256`.
# 2. Official: forward + (forward + backward) ≈ 3 forward-equivalents; bdlib: forward + backward ≈ 2. About a
#    third of the UNet time is saved: `1 - flops_256[1] / (flops_256[0] + flops_256[1])`.
# 3. `edit(world, image, mask, prompt, samples=4, official=True)`: on the real model the two settings give
#    different samples of similar quality; the official one blends the background one noise level higher.
# 4. `d = toy.diffusion(); (d.sqrt_one_minus_alphas_cumprod / d.sqrt_alphas_cumprod)[[18, 12, 6, 1]]`: it
#    falls from 17.2 at index 18 (t = 749) to 3.4, 0.96 and 0.15 at indices 12, 6 and 1, the same direction
#    as the bf16 column (an error in ε̂ enters x̂_0, and its gradient, multiplied by this ratio).
#
# </details>

# %%
total = time.perf_counter() - NOTEBOOK_START
print(f"notebook ran in {total:.1f} s (FAST={FAST}, DEVICE={DEVICE!r}, {LABEL})")
