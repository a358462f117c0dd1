"""Samples per second of ``python -m bdlib edit`` in 1 and in N processes (torchrun), and a GPU estimate.

    python benchmarks/bench_distributed.py --samples 16 --processes 1 2
    python benchmarks/bench_distributed.py --device cuda --world paper --samples 64 --processes 1 4 8 ...

Each configuration runs the same edit (the shipped toy example, or the paper configuration with random weights)
as a fresh command: one process without torchrun, or ``torchrun --nproc_per_node N``. On the CPU the cores are
shared out (``OMP_NUM_THREADS = cores / N``). The edit's own time (printed by the command: model loading and
process start excluded) and the whole command's wall time are recorded; configurations are timed round-robin.

``--estimate-step-seconds S`` (the measured seconds of one guided step of one sample on one GPU, e.g. from
``benchmarks/bench_edit.py``) adds an *estimate* of the time of ``--estimate-samples`` samples on 1, 4 and 8
GPUs: samples split evenly, ideal scaling, plus the measured one-process start-up; it is labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDITED = re.compile(r"edited in ([0-9.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(processes: int, args: argparse.Namespace, out: Path) -> list[str]:
    edit = [
        "-m",
        "bdlib",
        "edit",
        "--world",
        args.world,
        "--device",
        args.device,
        "--samples",
        str(args.samples),
        "--image",
        str(ROOT / "bdlib/examples/scene.png"),
        "--mask",
        str(ROOT / "bdlib/examples/scene_mask.png"),
        "--prompt",
        "a red circle",
        "--out",
        str(out),
    ]
    if args.world == "paper":
        edit.append("--random-weights")
    if args.k is not None:
        edit += ["--k", str(args.k)]
    if processes == 1:
        return [sys.executable, *edit]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *edit,
    ]


def run_once(processes: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    cores = os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes))}
    start = time.perf_counter()
    done = subprocess.run(command(processes, args, out), cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = EDITED.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{processes} process(es) failed (exit {done.returncode}): {done.stderr[-1500:]}")
    return {"edit_seconds": float(found.group(1)), "wall_seconds": wall}


def estimate(step_seconds: float, steps: int, samples: int, startup: float) -> dict[str, float]:
    """Seconds for ``samples`` samples on 1, 4 and 8 GPUs: even split, ideal scaling, one start-up each."""
    return {f"{gpus}_gpus": round(startup + step_seconds * steps * -(-samples // gpus), 1) for gpus in (1, 4, 8)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=("toy", "paper"), default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="start index (default: the world's; for the paper world on a CPU a few steps are enough)",
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--estimate-step-seconds",
        type=float,
        default=None,
        help="measured seconds per guided step per sample on one GPU: adds the 1/4/8-GPU estimate",
    )
    parser.add_argument("--estimate-samples", type=int, default=64)
    parser.add_argument("--estimate-steps", type=int, default=75, help="guided steps of the edit (paper: 75)")
    parser.add_argument("--out", default="benchmarks/results/distributed_toy_cpu.json")
    args = parser.parse_args(argv)
    scratch = Path(args.out).with_suffix("")
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.processes}
    for repeat in range(args.repeats):  # round-robin: a drifting machine affects every configuration alike
        for n in args.processes:
            runs[n].append(run_once(n, args, scratch / f"p{n}_r{repeat}" / "out.png"))
    record = {
        "world": args.world,
        "device": args.device,
        "samples": args.samples,
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "configurations": [
            {
                "processes": n,
                "threads_per_process": max(1, (os.cpu_count() or 1) // n),
                "edit_seconds": statistics.median(r["edit_seconds"] for r in runs[n]),
                "wall_seconds": statistics.median(r["wall_seconds"] for r in runs[n]),
                "samples_per_second": args.samples / statistics.median(r["edit_seconds"] for r in runs[n]),
                "runs": runs[n],
            }
            for n in args.processes
        ],
    }
    if args.estimate_step_seconds is not None:
        one = record["configurations"][0]
        record["estimate"] = {
            "label": "ESTIMATE, not measured: even split over GPUs, ideal scaling, plus one measured start-up",
            "step_seconds_per_sample": args.estimate_step_seconds,
            "samples": args.estimate_samples,
            "steps": args.estimate_steps,
            "startup_seconds": round(one["wall_seconds"] - one["edit_seconds"], 1),
            **estimate(
                args.estimate_step_seconds,
                args.estimate_steps,
                args.estimate_samples,
                one["wall_seconds"] - one["edit_seconds"],
            ),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    for config in record["configurations"]:
        print(
            f"{config['processes']} process(es): edit {config['edit_seconds']:.2f} s, "
            f"{config['samples_per_second']:.2f} samples/s, wall {config['wall_seconds']:.1f} s"
        )
    return record


if __name__ == "__main__":
    main()
