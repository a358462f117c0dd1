"""Removal recipes that the benchmark does not ship, measured on its 40 remove tasks (oracle: no object left).

    python benchmarks/removal_recipes.py --out benchmarks/results/removal_recipes_toy.json

The benchmark (``python -m bdlib evaluate``, rows "remove: ...") measures the paper's plain recipe (the empty
prompt: the prior alone refills the region) and the shipped one (a smooth fill, then the empty prompt from a low
k). This script measures two candidates of issue 12 that need their own loop:

- **resampling in the manner of RePaint** (Lugmayr et al. 2022): after each blended step, jump back one step by
  re-noising ``x_{t-1} → x_t`` and denoise again, ``jumps`` times, so the region is harmonised with the
  background over several passes;
- **guidance away from every object caption**: maximise the CLIP distance of the masked x̂_0 to the nearest of the
  21 toy object captions ("a red circle", ...), i.e. push the region towards "no known object".

Every random draw comes from the tasks' streams (:mod:`bdlib.runtime.randomness`), as in the benchmark.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bdlib import load_world
from bdlib.bench.evaluation import SettingRun, score
from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.losses import clip_distance
from bdlib.runtime.randomness import SampleStreams
from bdlib.worlds.toy.clip_model import CLASS_PROMPTS
from bdlib.worlds.toy.tasks import generate_tasks


def remove(world, tasks, k: int, jumps: int = 0, away: float = 0.0, views: int = 8, seed: int = 0) -> torch.Tensor:
    """Blended diffusion with the empty prompt from ``k``, with RePaint ``jumps`` and/or ``away`` guidance."""
    init = torch.stack([t.image for t in tasks])
    mask = torch.stack([t.mask for t in tasks])
    diffusion = world.diffusion()
    objects = world.clip.encode_text(list(CLASS_PROMPTS)).detach()  # (21, D)
    batch = len(tasks)
    streams = SampleStreams(seed, [(i, 0) for i in range(batch)], groups=list(range(batch)))
    augment = ExtendingAugmentations(views)
    shape = init.shape[1:]
    x = diffusion.q_sample(init, torch.full((batch,), k), streams.randn(shape))
    for index in range(k, -1, -1):
        t = torch.full((batch,), index)
        for jump in range(jumps + 1):
            with torch.enable_grad():
                leaf = x.detach().requires_grad_(away > 0)
                mv = diffusion.denoise(world.unet, leaf, t, clip_denoised=True)
                grad = torch.zeros_like(x)
                if away > 0:  # the distance to the nearest object caption, averaged over the views, pushed up
                    pooled = torch.nn.functional.adaptive_avg_pool2d(mv.pred_x0 * mask, world.clip.input_resolution)
                    embeds = world.clip.encode_pixels(world.clip.normalize(augment(pooled, streams).add(1).div(2)))
                    nearest = clip_distance(embeds.float()[:, None], objects[None]).min(dim=1).values
                    (grad,) = torch.autograd.grad(away * nearest.view(views, batch).mean(dim=0).sum(), leaf)
            foreground = diffusion.ddpm_step(mv.detached(), t, streams.randn(shape), grad=grad)
            background = diffusion.q_sample(init, t - 1, streams.randn(shape)) if index > 0 else init
            blended = foreground * mask + background * (1 - mask)
            if jump < jumps and index > 0:  # back to level t: one forward step of q(x_t | x_{t-1})
                beta = float(diffusion.betas[index])
                x = (1 - beta) ** 0.5 * blended + beta**0.5 * streams.randn(shape)
            else:
                x = blended
    return (x * mask + init * (1 - mask)).clamp(-1, 1)


RECIPES = {
    "prior only, k=18": dict(k=18),
    "prior only, k=24": dict(k=24),
    "RePaint 5 jumps, k=18": dict(k=18, jumps=5),
    "RePaint 5 jumps, k=24": dict(k=24, jumps=5),
    "away from object captions 300, k=18": dict(k=18, away=300.0),
    "away from object captions 1000, k=18": dict(k=18, away=1000.0),
    "away from object captions 1000, k=24": dict(k=24, away=1000.0),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="benchmark tasks to draw the remove tasks from")
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), help="run only these recipes")
    parser.add_argument("--out", default="benchmarks/results/removal_recipes_toy.json")
    args = parser.parse_args(argv)
    world = load_world("toy", dtype=torch.float32)  # as the benchmark runs
    tasks = [t for t in generate_tasks(args.tasks, 0) if t.kind == "remove"]
    record = {"tasks": len(tasks), "date": time.strftime("%Y-%m-%d"), "recipes": {}}
    for name in args.only or RECIPES:
        start = time.perf_counter()
        results = remove(world, tasks, **RECIPES[name])
        seconds = time.perf_counter() - start
        metrics = score(world, tasks, SettingRun(results, torch.full((len(tasks),), float("nan")), results, seconds))
        record["recipes"][name] = {"removed": metrics["text_match"], "seconds_per_edit": seconds / len(tasks)}
        print(f"{name:40s} removed {metrics['text_match']:.3f}  {seconds / len(tasks):.2f} s/edit", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
