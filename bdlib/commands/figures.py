"""``python -m bdlib figures``: regenerate every key figure of the README and the notebooks, on CPU.

Writes into ``--out`` (default ``figures/``), each image at least 128 px wide and each figure at most about
1000 px wide:

- ``demo.png``: forward noising and a reverse chain of the toy DDPM (``python -m bdlib demo``);
- ``edit_example*.png``: the README's blended edit, four ranked samples (``python -m bdlib edit``);
- ``lambda_sweep.png``: Algorithm 1 on the example over λ (0 to the unstable end), at Algorithm 1's defaults;
- ``k_sweep.png``: Algorithm 2 on the example across the transition of the start index k;
- ``augmentations.png``: one CLIP view against eight, at the default guidance scale and at ten times it;
- ``evaluation.png``: the benchmark's trade-off curves, re-drawn from ``evaluation.json`` when it exists
  (``python -m bdlib evaluate`` makes it; it takes tens of minutes, so it is not re-run here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bdlib.bench.rows import k_values, lam_values
from bdlib.commands import arguments
from bdlib.commands.evaluate import read_report, tradeoff_figure
from bdlib.course.viz import save_figure, show_grid
from bdlib.course.widgets import background_error, cached_edit, diff_picture, region_change
from bdlib.grid import edit_grid
from bdlib.runtime.files import check_folder_writable
from bdlib.worlds import load_world
from bdlib.worlds.base import World
from bdlib.worlds.toy.tasks import example_task

PANEL_INCHES = 1.4  # 140 px per 32-px image
MAX_WIDTH = 8.4  # inches: at most six images a row, 840 px (the λ sweep keeps its seven in one row)


def register(subparsers) -> None:
    parser = subparsers.add_parser("figures", help="regenerate the README's and notebooks' figures (CPU, ~1 min)")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default figures/)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="an integer in [0, 2**63) (default 0)")
    parser.set_defaults(func=run)


def lambda_sweep(world: World, seed: int):
    """Results and ``|Δ|`` of Algorithm 1 (the world's Algorithm 1 defaults) over
    :func:`bdlib.course.widgets.lambda_grid`,
    all λ in one batch (:func:`bdlib.grid.edit_grid`)."""
    task = example_task()
    values = lam_values(fast=True)
    grid = edit_grid(world, task.image, task.mask, task.prompt, "lam", values, seed=seed, algorithm="local")
    results = [result.best[0] for result in grid]
    diffs = [diff_picture(image, task.image) for image in results]
    titles = [
        f"λ={lam:g}\nbg {float(background_error(r.best, task.image[None], task.mask[None])[0]):.3f}"
        for lam, r in zip(values, grid, strict=True)
    ]
    return show_grid(
        [results, diffs],
        titles=[titles, [""] * len(diffs)],
        row_labels=["result", "|Δ|×4"],
        panel_inches=PANEL_INCHES,
        max_width_inches=PANEL_INCHES * len(values),
        suptitle=f"Algorithm 1: {task.prompt!r}",
    )


def k_sweep(world: World, seed: int):
    """Algorithm 2 across the transition of k (:func:`bdlib.bench.rows.k_values`, fast), in one batch."""
    task = example_task()
    values = k_values(world, fast=True)
    grid = edit_grid(world, task.image, task.mask, task.prompt, "k", values, seed=seed)
    row, titles = [task.image], ["input"]
    for k, result in zip(values, grid, strict=True):
        change = float(region_change(result.best, task.image[None], task.mask[None])[0])
        row.append(result.best[0])
        titles.append(f"k={k}\nchange {change:.2f}")
    return show_grid(
        [row],
        titles=[titles],
        panel_inches=PANEL_INCHES,
        max_width_inches=PANEL_INCHES * len(row),
        suptitle=f"Algorithm 2: {task.prompt!r}",
    )


def augmentation_figure(world: World, seed: int, scales: tuple[float, ...] = (1000.0, 10000.0)):
    """Four samples with 1 CLIP view and with 8 (extending augmentations), at the default and a 10x scale."""
    task = example_task()
    rows, labels = [], []
    for scale in scales:
        for views in (1, 8):
            done = cached_edit(world, task, seed=seed, samples=4, guidance_scale=scale, views=views)
            rows.append(list(done.result.images))
            labels.append(f"{scale:g}, {views} view{'s' if views > 1 else ''}")
    return show_grid(
        rows,
        row_labels=labels,
        panel_inches=PANEL_INCHES,
        max_width_inches=MAX_WIDTH,
        suptitle=f"guidance scale and CLIP views: {task.prompt!r}",
    )


def run(args: argparse.Namespace) -> int:
    from bdlib.__main__ import main as bdlib_main

    start = time.time()
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the figures")
    check_folder_writable(out, f"the figures into {out}")
    report = out / "evaluation.json"
    evaluation = read_report(report) if report.exists() else None  # a damaged one stops us before any figure
    examples = Path(__file__).resolve().parent.parent / "examples"
    written = []
    code = bdlib_main(["demo", "--out", str(out / "demo.png"), "--seed", str(args.seed)])
    if code != 0:
        return code  # the sub-command printed why (or was stopped)
    code = bdlib_main(
        [
            "edit",
            "--world",
            "toy",
            "--image",
            str(examples / "scene.png"),
            "--mask",
            str(examples / "scene_mask.png"),
            "--prompt",
            "a red circle",
            "--samples",
            "4",
            "--seed",
            str(args.seed),
            "--out",
            str(out / "edit_example.png"),
        ]
    )
    if code != 0:
        return code
    world = load_world("toy")
    for name, make in (("lambda_sweep", lambda_sweep), ("k_sweep", k_sweep), ("augmentations", augmentation_figure)):
        written.append(save_figure(make(world, args.seed), out / f"{name}.png"))
    if evaluation is not None:
        written.append(save_figure(tradeoff_figure(evaluation), out / "evaluation.png"))
    else:
        print(f"no {report}: run `python -m bdlib evaluate` to make the benchmark and its figure")
    print(f"wrote {', '.join(str(p) for p in written)} in {time.time() - start:.0f} s")
    return 0
