"""Time complete blended edits end to end (``bdlib.edit``) and write one JSON record per configuration.

    python benchmarks/bench_edit.py --world toy --device cpu --out benchmarks/results/edit_toy_cpu.json
    python benchmarks/bench_edit.py --world paper --device cuda --out benchmarks/results/edit_paper_cuda.json

Each configuration is a batch size (samples per edit, ranked) at the world's default settings (8
augmentations). ``--official`` adds, in the same run, the official code's choices (two network passes
per step, CLIP on the x_in mix, background at level t) for a side-by-side ratio. The paper world uses
random weights (same cost as the real ones). ``--precision fp32 bf16`` times each precision of the
networks. On a slow device ``--max-steps N`` times only the first N steps of each edit and extrapolates
to the whole chain (the record says so).

Every record also has the counted FLOPs of an edit (``torch.utils.flop_counter``'s formulas for
convolutions, matmuls and attention, forward and input-gradient backward; element-wise ops not counted),
the achieved TFLOP/s, this device's measured GEMM peak per dtype, and the *arithmetic floor*: the seconds
an edit would take if every counted FLOP ran at that peak. ``--compile`` also times every configuration
with the UNet through ``torch.compile`` (``World.compile_unet``; ``first_edit_seconds`` shows the compile
time). After one warm-up edit each, the configurations are timed round-robin, ``--repeats`` rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, also when imported by path
from bench_common import FlopCount, device_name, device_peaks, peak_memory_mb, synchronize  # noqa: E402

from bdlib.edit import edit
from bdlib.runtime.precision import PRECISIONS
from bdlib.worlds import load_world
from bdlib.worlds.base import World
from bdlib.worlds.toy.tasks import example_task


class StopAfter(Exception):
    """Raised by the step callback to end an edit after ``--max-steps`` steps."""


def inputs_for(world: World) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The shipped toy example, scaled up to the world's size (nearest for the mask)."""
    task = example_task()
    image, mask = task.image[None], task.mask[None]
    if world.image_size != image.shape[-1]:
        image = torch.nn.functional.interpolate(image, size=world.image_size, mode="bicubic").clamp(-1, 1)
        mask = torch.nn.functional.interpolate(mask, size=world.image_size, mode="nearest")
    return image, mask, task.prompt if world.name == "toy" else "a red ball"


@dataclass
class Timing:
    """One configuration's edit, and what its runs measured."""

    run: Callable[[], float]  # one timed edit (seconds)
    steps: int  # guided steps of a whole edit
    timed_steps: int  # steps each run times (fewer with --max-steps)
    first: float = 0.0  # the warm-up run: caches, allocator, kernels, compilation
    times: list[float] = field(default_factory=list)
    peak_memory: tuple[float, str] = (0.0, "")

    def fields(self) -> dict[str, Any]:
        seconds = statistics.median(self.times)
        per_step = seconds / self.timed_steps
        return {
            "first_edit_seconds": self.first,
            "steps": self.steps,
            "timed_steps": self.timed_steps,
            "extrapolated": self.timed_steps < self.steps,
            "seconds_per_step": per_step,
            "seconds_per_edit": per_step * self.steps if self.timed_steps < self.steps else seconds,
            "seconds_all": self.times,
        }


def edit_timing(
    world: World, batch: int, official: bool, max_steps: int | None, seed: int, precision: str = "fp32"
) -> Timing:
    """A :class:`Timing` whose ``run`` times one default edit (its first ``max_steps`` steps if given)."""
    image, mask, prompt = inputs_for(world)
    settings = world.defaults.with_(official=official, precision=precision)
    steps = settings.k + 1
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

    return Timing(one, steps, timed_steps)


def measure(timings: dict[tuple, Timing], repeats: int, device: torch.device, after_round: Callable[[], None]) -> None:
    """Warm every configuration up, then time them round-robin ``repeats`` times.

    Interleaving puts slow drifts of a shared machine on every configuration alike (on the 2-core machine of
    benchmarks/README.md one edit measured 4.57 s in one run and 5.40 s in another), so the ratios between
    configurations of one run hold even when the absolute times move.
    """
    for timing in timings.values():
        timing.first = timing.run()
    for _ in range(repeats):
        for timing in timings.values():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            timing.times.append(timing.run())
            timing.peak_memory = max(timing.peak_memory, peak_memory_mb(device))
        after_round()


def counted_flops_per_step(world: World, batch: int, precision: str, seed: int) -> float:
    """FLOPs of the first guided step of a default edit (every step has the same shapes, so the same count)."""
    first_step = edit_timing(world, batch, False, 1, seed, precision)
    with FlopCount() as counter:
        first_step.run()
    return counter.flops


def add_flop_fields(record: dict[str, Any], flops_per_step: float, peaks: dict[str, float]) -> None:
    """Counted TFLOP per edit (steps × one step; the final ranking's CLIP pass is not counted), achieved
    TFLOP/s, and the arithmetic floor: seconds per edit if every counted FLOP ran at the GEMM peak."""
    tflop = flops_per_step * record["steps"] / 1e12
    record["counted_tflop_per_edit"] = tflop
    record["achieved_tflops"] = tflop / record["seconds_per_edit"]
    record["gemm_peak_tflops"] = peaks
    record["floor_seconds_per_edit"] = {name: round(tflop / peak, 4) for name, peak in peaks.items()}


def config_record(
    args: argparse.Namespace,
    world: World,
    compiled: bool,
    precision: str,
    batch: int,
    timings: dict[tuple, Timing],
    flops_per_step: dict[tuple, float],
    peaks: dict[str, float],
) -> dict[str, Any]:
    """The JSON record of one configuration from what its timings measured so far."""
    timing = timings[compiled, precision, batch, False]
    device = world.device
    record: dict[str, Any] = {
        "world": args.world,
        "device": device.type,
        "device_name": device_name(device),
        "batch": batch,
        "precision": precision,
        "channels_last": args.channels_last,
        "compiled_unet": compiled,
        "views": world.defaults.views,
        "respacing": world.defaults.respacing,
        "k": world.defaults.k,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "repeats": len(timing.times),
        **timing.fields(),
    }
    record["images_per_second"] = batch / record["seconds_per_edit"]
    add_flop_fields(record, flops_per_step[precision, batch], peaks)
    record["peak_memory_mb"], record["peak_memory_kind"] = timing.peak_memory
    official = timings.get((compiled, precision, batch, True))
    if official is not None:
        record["official_two_pass_seconds_per_edit"] = official.fields()["seconds_per_edit"]
        record["speedup_vs_official"] = record["official_two_pass_seconds_per_edit"] / record["seconds_per_edit"]
    return record


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for a GPU but torch sees none: use --device cpu")
    if device.type == "cuda":  # float32 means true float32, in the peaks and in the edits
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    kwargs: dict[str, Any] = {"device": device}
    if args.world == "paper":
        kwargs["random_weights"] = True
    else:  # the precisions compared here are autocasts of float32 networks
        kwargs["dtype"] = torch.float32
    world = load_world(args.world, **kwargs)
    if args.channels_last:
        for network in (world.unet, world.clip):
            network.to(memory_format=torch.channels_last)
    peaks = device_peaks(device)
    print(f"GEMM peak TFLOP/s on {device.type}: {peaks}", flush=True)
    configs = [
        (c, p, b) for c in ([False, True] if args.compile else [False]) for p in args.precision for b in args.batch
    ]
    flops_per_step = {(p, b): counted_flops_per_step(world, b, p, args.seed) for _, p, b in configs}
    worlds = {False: world}
    if args.compile:  # a second copy of the networks, so that eager and compiled run side by side
        worlds[True] = load_world(args.world, **kwargs).compile_unet(backend=args.compile_backend)
    timings = {
        (compiled, precision, batch, official): edit_timing(
            worlds[compiled], batch, official, args.max_steps, args.seed, precision
        )
        for compiled, precision, batch in configs
        for official in ([False, True] if args.official else [False])
    }
    records: list[dict[str, Any]] = []

    def write_records() -> None:
        records[:] = [
            config_record(args, worlds[compiled], compiled, precision, batch, timings, flops_per_step, peaks)
            for compiled, precision, batch in configs
        ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2))

    measure(timings, args.repeats, device, write_records)
    for record in records:
        print(
            f"{args.world} {device.type} {'compiled' if record['compiled_unet'] else 'eager'} {record['precision']} "
            f"batch {record['batch']}: {record['seconds_per_edit']:.3f} s/edit, "
            f"{1000 * record['seconds_per_step']:.1f} ms/step, {record['images_per_second']:.2f} img/s, "
            f"{1000 * record['achieved_tflops']:.1f} GFLOP/s (floor {record['floor_seconds_per_edit']})"
            + (f", official x{record['speedup_vs_official']:.2f}" if args.official else ""),
            flush=True,
        )
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=("toy", "paper"), default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=sorted(PRECISIONS),
        default=["fp32"],
        help="networks' autocast, one record each (default fp32)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="time only the first N steps and extrapolate")
    parser.add_argument("--official", action="store_true", help="also time the official two-pass step")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels-last", action="store_true", help="convolution weights in channels-last layout")
    parser.add_argument(
        "--compile", action="store_true", help="also time every configuration with the UNet through torch.compile"
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile's backend (default inductor)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/edit.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
