"""How far each precision moves a guided step from float32: the documented tolerance of ``precision``.

    python benchmarks/precision_tolerance.py --out benchmarks/results/precision_tolerance_toy.json

For the shipped toy world and its example task, at several respaced indices of the default chain, one
guided step runs in float32 and in each other precision on the same x_t, noise and augmentations, and
the record keeps the relative L2 difference ``‖g_p - g_fp32‖ / ‖g_fp32‖`` of the guidance gradient
``g = -∇_{x_t} L``, the largest difference of the per-sample CLIP distances, and that of x̂_0.
The end-to-end effect on edits is the benchmark's bf16 and bf16-clip rows (figures/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bdlib.augment import ExtendingAugmentations
from bdlib.blend import guided_step
from bdlib.precision import PRECISIONS
from bdlib.worlds.toy.tasks import example_task
from bdlib.worlds.toy.world import TOY_DEFAULTS, load_toy_world


def step_differences(precisions: list[str], indices: list[int], seed: int) -> list[dict]:
    world = load_toy_world()
    task = example_task()
    init, mask = task.image[None], task.mask[None]
    text = world.encode_prompt(task.prompt)
    diffusion = world.diffusion()
    augmentations = ExtendingAugmentations(world.defaults.augmentations)
    generator = torch.Generator().manual_seed(seed)
    records = []
    for index in indices:
        x_t = diffusion.q_sample(init, torch.tensor([index]), torch.randn(init.shape, generator=generator))
        noise = torch.randn(init.shape, generator=generator)
        aug_seed = int(torch.randint(0, 2**31, (1,), generator=generator))
        outputs = {}
        for precision in ["fp32", *precisions]:
            outputs[precision] = guided_step(
                world.unet, diffusion, world.clip, x_t, index, init=init, mask=mask, text_embed=text,
                settings=world.defaults.with_(precision=precision), noise=noise, bg_noise=noise,
                augment=lambda views, s=aug_seed: augmentations(views, torch.Generator().manual_seed(s)),
            )  # fmt: skip
        reference = outputs["fp32"]
        for precision in precisions:
            out = outputs[precision]
            records.append({
                "index": index,
                "precision": precision,
                "grad_relative_l2": float((out["grad"] - reference["grad"]).norm() / reference["grad"].norm()),
                "clip_distance_max_abs": float((out["clip_dists"] - reference["clip_dists"]).abs().max()),
                "pred_x0_max_abs": float((out["pred_x0"] - reference["pred_x0"]).abs().max()),
            })  # fmt: skip
            print(f"index {index:2d} {precision:10s} gradient {records[-1]['grad_relative_l2']:.4f} relative L2, "
                  f"x̂_0 max {records[-1]['pred_x0_max_abs']:.4f}", flush=True)  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["bf16-clip", "bf16"],
                        choices=[p for p in PRECISIONS if p != "fp32"])  # fmt: skip
    parser.add_argument("--indices", type=int, nargs="+", default=[18, 12, 6, 1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/precision_tolerance_toy.json")
    args = parser.parse_args(argv)
    if any(not 0 <= i <= TOY_DEFAULTS.start_index for i in args.indices):
        parser.error(f"--indices must lie in the default chain: 0..{TOY_DEFAULTS.start_index}")
    records = step_differences(args.precision, args.indices, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(records, indent=2))
    return records


if __name__ == "__main__":
    main()
