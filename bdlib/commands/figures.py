"""``python -m bdlib figures``: regenerate every key figure of the README and the notebooks, on CPU.

Writes into ``--out`` (default ``figures/``), each figure at most about 400 px wide:

- ``demo.png``: forward noising and a reverse chain of the toy DDPM (``python -m bdlib demo``);
- ``edit_example*.png``: the README's blended edit, four ranked samples (``python -m bdlib edit``);
- ``lambda_sweep.png``: Algorithm 1 on the example at five λ around its stability bound;
- ``k_sweep.png``: Algorithm 2 on the example from four start indices k;
- ``augmentations.png``: guidance scale 10000 with one CLIP view vs eight (extending augmentations);
- ``evaluation.png``: the benchmark's trade-off curves, re-drawn from ``evaluation.json`` when it exists
  (``python -m bdlib evaluate`` makes it; it takes tens of minutes, so it is not re-run here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bdlib.commands import arguments
from bdlib.files import check_folder_writable
from bdlib.viz import save_figure, show_grid
from bdlib.widgets import background_error, cached_edit, diff_picture, lambda_grid, region_change
from bdlib.worlds.base import World, load_world
from bdlib.worlds.toy.tasks import example_task

PANEL_INCHES = 0.75  # at 100 dpi: five panels ≈ 375 px


def register(subparsers) -> None:
    parser = subparsers.add_parser("figures", help="regenerate the README's and notebooks' figures (CPU, ~1 min)")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default figures/)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="an integer in [0, 2**63) (default 0)")
    parser.set_defaults(func=run)


def lambda_sweep(world: World, seed: int):
    """Results and ``|Δ|`` of Algorithm 1 for λ in :func:`bdlib.widgets.lambda_grid`."""
    task = example_task()
    results, diffs, titles = [], [], []
    for lam in lambda_grid(world):
        best = cached_edit(world, task, seed=seed, algorithm="local", lam=lam).result.best
        results.append(best[0])
        diffs.append(diff_picture(best[0], task.image))
        titles.append(f"λ={lam:g}\nbg err {float(background_error(best, task.image[None], task.mask[None])[0]):.3f}")
    return show_grid([results, diffs], titles=[titles, [""] * len(diffs)], row_labels=["result", "|Δ|×4"],
                     panel_inches=PANEL_INCHES, suptitle=f"Algorithm 1: {task.prompt!r}")  # fmt: skip


def k_sweep(world: World, seed: int):
    """Algorithm 2 from four start indices: the later the start, the freer the edit."""
    task = example_task()
    last = world.diffusion().num_steps - 1
    row, titles = [task.image], ["input"]
    for k in sorted({round(last * f) for f in (0.25, 0.5, 0.75, 1.0)}):
        done = cached_edit(world, task, seed=seed, k=k)
        change = float(region_change(done.result.best, task.image[None], task.mask[None])[0])
        row.append(done.result.best[0])
        titles.append(f"k={k} (t={done.timestep})\nchange {change:.2f}")
    return show_grid([row], titles=[titles], panel_inches=PANEL_INCHES, suptitle=f"Algorithm 2: {task.prompt!r}")


def augmentation_figure(world: World, seed: int, scale: float = 10000.0):
    """Four samples at a high guidance scale with 1 view (adversarial) and 8 views (extending augmentations)."""
    task = example_task()
    rows, labels = [], []
    for views in (1, 8):
        done = cached_edit(world, task, seed=seed, samples=4, guidance_scale=scale, augmentations=views)
        rows.append(list(done.result.images))
        labels.append(f"{views} view{'s' if views > 1 else ''}")
    return show_grid(rows, row_labels=labels, panel_inches=PANEL_INCHES,
                     suptitle=f"guidance scale {scale:g}: {task.prompt!r}")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from bdlib.__main__ import main as bdlib_main

    start = time.time()
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the figures")
    check_folder_writable(out, f"the figures into {out}")
    examples = Path(__file__).resolve().parent.parent / "examples"
    written = []
    code = bdlib_main(["demo", "--out", str(out / "demo.png"), "--seed", str(args.seed)])
    if code != 0:
        return code  # the sub-command printed why (or was stopped)
    code = bdlib_main(["edit", "--world", "toy", "--image", str(examples / "scene.png"), "--mask",
                       str(examples / "scene_mask.png"), "--prompt", "a red circle", "--samples", "4",
                       "--seed", str(args.seed), "--out", str(out / "edit_example.png")])  # fmt: skip
    if code != 0:
        return code
    torch.manual_seed(args.seed)
    world = load_world("toy")
    for name, make in (("lambda_sweep", lambda_sweep), ("k_sweep", k_sweep), ("augmentations", augmentation_figure)):
        written.append(save_figure(make(world, args.seed), out / f"{name}.png"))
    report = out / "evaluation.json"
    if report.exists():
        from bdlib.commands.evaluate import read_report, tradeoff_figure

        written.append(save_figure(tradeoff_figure(read_report(report)), out / "evaluation.png"))
    else:
        print(f"no {report}: run `python -m bdlib evaluate` to make the benchmark and its figure")
    print(f"wrote {', '.join(str(p) for p in written)} in {time.time() - start:.0f} s")
    return 0
