"""How far each precision moves a guided step from float32: the documented tolerance of ``precision``.

    python benchmarks/precision_tolerance.py --out benchmarks/results/precision_tolerance_toy.json

For the shipped toy world and its example task, at several respaced indices of the default chain,
``bdlib.course.precision_effect.guided_step_change`` runs one guided step in float32 and in each other precision on
the same x_t, noise and augmentations; a record per (index, precision) keeps the relative L2 difference
``‖g_p - g_fp32‖ / ‖g_fp32‖`` of the guidance gradient ``g = -∇_{x_t} L``, the largest difference of the
per-sample CLIP distances, and that of x̂_0.
The end-to-end effect on edits is the benchmark's bf16 and bf16-clip rows (figures/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bdlib.course.precision_effect import guided_step_change
from bdlib.runtime.precision import PRECISIONS
from bdlib.worlds.toy.tasks import example_task
from bdlib.worlds.toy.world import TOY_DEFAULTS, load_toy_world


def step_differences(precisions: list[str], indices: list[int], seeds: list[int]) -> list[dict]:
    """A record per (seed, index, precision); each seed draws its own x_t, noise and augmentations."""
    world = load_toy_world(dtype=torch.float32)  # the precisions are autocasts of float32 networks
    task = example_task()
    init, mask = task.image[None], task.mask[None]
    text = world.encode_prompt(task.prompt)
    records = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        for index in indices:
            changes = guided_step_change(world, init, mask, text, index, precisions, generator)
            for precision, change in changes.items():
                records.append({"seed": seed, "index": index, "precision": precision, **change})
    for index in indices:
        for precision in precisions:
            values = [r["grad_relative_l2"] for r in records if (r["index"], r["precision"]) == (index, precision)]
            print(
                f"index {index:2d} {precision:10s} gradient moved {min(values):.4f}-{max(values):.4f} "
                f"(relative L2, {len(values)} seeds)",
                flush=True,
            )
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--precision", nargs="+", default=["bf16-clip", "bf16"], choices=[p for p in PRECISIONS if p != "fp32"]
    )
    parser.add_argument("--indices", type=int, nargs="+", default=[18, 12, 6, 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--out", default="benchmarks/results/precision_tolerance_toy.json")
    args = parser.parse_args(argv)
    if any(not 0 <= i <= TOY_DEFAULTS.k for i in args.indices):
        parser.error(f"--indices must lie in the default chain: 0..{TOY_DEFAULTS.k}")
    records = step_differences(args.precision, args.indices, args.seeds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(records, indent=2))
    return records


if __name__ == "__main__":
    main()
