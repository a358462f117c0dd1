"""How far batching moves the samples of one edit: the same samples drawn in batches of different sizes.

    python benchmarks/batch_invariance.py --out benchmarks/results/batch_invariance_toy.json

Sample ``i`` draws its noise from its own stream ``(seed, i)`` (:mod:`bdlib.runtime.randomness`), so every batching
sees the same noise; what differs is the float rounding of kernels run at another batch size, which a guided chain can
amplify. For the shipped toy example and each batch size, the script records the largest pixel difference of each
sample to the one-batch run and whether the ranking is the same.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bdlib import edit, load_world
from bdlib.worlds.toy.tasks import example_task


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/batch_invariance_toy.json")
    args = parser.parse_args(argv)
    world, task = load_world("toy", dtype=torch.float32), example_task()  # float64 removes this: thread_invariance.py
    record = {"samples": args.samples, "date": time.strftime("%Y-%m-%d"), "runs": []}
    for seed in args.seeds:
        whole = edit(world, task.image, task.mask, task.prompt, samples=args.samples, seed=seed)
        by_index = whole.images[torch.argsort(whole.order)]  # in the order drawn
        for size in args.batch_sizes:
            part = edit(world, task.image, task.mask, task.prompt, samples=args.samples, seed=seed, batch_size=size)
            diff = (part.images[torch.argsort(part.order)] - by_index).abs().flatten(1).amax(dim=1)
            run = {
                "seed": seed,
                "batch_size": size,
                "max_abs_diff_per_sample": [round(float(d), 4) for d in diff],
                "same_ranking": bool(torch.equal(part.order, whole.order)),
            }
            record["runs"].append(run)
            print(run, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
