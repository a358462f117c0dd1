"""Time complete blended edits end to end (``bdlib.edit``) and write one JSON record per configuration.

    python benchmarks/bench_edit.py --world toy --device cpu --out benchmarks/results/edit_toy_cpu.json
    python benchmarks/bench_edit.py --world paper --device cuda --out benchmarks/results/edit_paper_cuda.json

Each configuration is a batch size (samples per edit, ranked) at the world's default settings (8
augmentations). ``--official`` adds, in the same run, the official code's choices (two network passes
per step, CLIP on the x_in mix, background at level t) for a side-by-side ratio. The paper world uses
random weights (same cost as the real ones). ``--precision fp32 bf16`` times each precision of the
networks. On a slow device ``--max-steps N`` times only the first N steps of each edit and extrapolates
to the whole chain (the record says so).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bdlib.edit import edit
from bdlib.precision import PRECISIONS
from bdlib.worlds.base import World, load_world
from bdlib.worlds.toy.tasks import example_task


class StopAfter(Exception):
    """Raised by the step callback to end an edit after ``--max-steps`` steps."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return (peak / 2**20 if sys.platform == "darwin" else peak / 2**10), "process_peak_rss"


def inputs_for(world: World) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The shipped toy example, scaled up to the world's size (nearest for the mask)."""
    task = example_task()
    image, mask = task.image[None], task.mask[None]
    if world.image_size != image.shape[-1]:
        image = torch.nn.functional.interpolate(image, size=world.image_size, mode="bicubic").clamp(-1, 1)
        mask = torch.nn.functional.interpolate(mask, size=world.image_size, mode="nearest")
    return image, mask, task.prompt if world.name == "toy" else "a red ball"


def time_edit(
    world: World, batch: int, official: bool, repeats: int, max_steps: int | None, seed: int, precision: str = "fp32"
) -> dict:
    """Median seconds of ``repeats`` edits (after one warm-up) and the steps each one ran."""
    image, mask, prompt = inputs_for(world)
    settings = world.defaults.with_(official=official, precision=precision)
    steps = settings.start_index + 1
    timed_steps = min(steps, max_steps) if max_steps else steps
    device = world.device

    def one() -> float:
        counter = {"n": 0}

        def callback(_record: dict) -> None:
            counter["n"] += 1
            if counter["n"] >= timed_steps and timed_steps < steps:
                raise StopAfter

        synchronize(device)
        start = time.perf_counter()
        try:
            edit(world, image, mask, prompt, samples=batch, seed=seed, settings=settings, callback=callback)
        except StopAfter:
            pass
        synchronize(device)
        return time.perf_counter() - start

    one()  # warm-up: caches, allocator, kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [one() for _ in range(repeats)]
    seconds = statistics.median(times)
    per_step = seconds / timed_steps
    return {
        "steps": steps,
        "timed_steps": timed_steps,
        "extrapolated": timed_steps < steps,
        "seconds_per_step": per_step,
        "seconds_per_edit": per_step * steps if timed_steps < steps else seconds,
        "seconds_all": times,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for a GPU but torch sees none: use --device cpu")
    kwargs: dict[str, Any] = {"device": device}
    if args.world == "paper":
        kwargs["random_weights"] = True
    world = load_world(args.world, **kwargs)
    if args.channels_last:
        for network in (world.unet, world.clip):
            network.to(memory_format=torch.channels_last)
    records: list[dict[str, Any]] = []
    for precision, batch in [(p, b) for p in args.precision for b in args.batch]:
        record: dict[str, Any] = {
            "world": args.world,
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "batch": batch,
            "precision": precision,
            "channels_last": args.channels_last,
            "augmentations": world.defaults.augmentations,
            "respacing": world.defaults.respacing,
            "start_index": world.defaults.start_index,
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
        }
        record.update(time_edit(world, batch, False, args.repeats, args.max_steps, args.seed, precision))
        record["images_per_second"] = batch / record["seconds_per_edit"]
        record["peak_memory_mb"], record["peak_memory_kind"] = peak_memory_mb(device)
        if args.official:
            official = time_edit(world, batch, True, args.repeats, args.max_steps, args.seed, precision)
            record["official_two_pass_seconds_per_edit"] = official["seconds_per_edit"]
            record["speedup_vs_official"] = official["seconds_per_edit"] / record["seconds_per_edit"]
        records.append(record)
        print(
            f"{args.world} {device.type} {precision} batch {batch}: {record['seconds_per_edit']:.3f} s/edit, "
            f"{1000 * record['seconds_per_step']:.1f} ms/step, {record['images_per_second']:.2f} img/s"
            + (f", official x{record['speedup_vs_official']:.2f}" if args.official else ""),
            flush=True,
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2))
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=("toy", "paper"), default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=["fp32"],
                        help="networks' autocast, one record each (default fp32)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="time only the first N steps and extrapolate")
    parser.add_argument("--official", action="store_true", help="also time the official two-pass step")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels-last", action="store_true", help="convolution weights in channels-last layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/edit.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
