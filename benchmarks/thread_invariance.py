"""Does the example edit give the same picture at every CPU thread count and batch size? (float32 against float64)

    python benchmarks/thread_invariance.py --out benchmarks/results/thread_invariance_toy.json
    python benchmarks/thread_invariance.py --smoke --out /tmp/smoke.json          # seconds: one step, two configs

The README's example edit (``"a red circle"``, 4 samples, seed 5) runs in a fresh process per configuration: the
toy world in float32 or float64, at 1, 2 and 4 threads with all samples in one batch, and at 2 threads in batches
of 1 and 2. Every configuration is compared with float32 or float64 at 2 threads in one batch: the largest
difference of the 8-bit pictures (in 1/255), the share of each sample's pixels more than 8/255 apart, and the
largest difference of the chain after each step (where a difference is born and how the guided chain grows it).
Each run's edit time is recorded too (configurations interleaved; a loaded machine slows all alike).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CONFIGS = [(threads, 4) for threads in (1, 2, 4)] + [(2, 1), (2, 2)]  # (threads, batch size); reference: (2, 4)
SAMPLES, SEED, PROMPT = 4, 5, "a red circle"


def run_one(dtype: str, threads: int, batch: int, out: Path, smoke: bool) -> None:
    """The edit in this process (called through ``--one``): save the drawn-order pictures and the chain."""
    torch.set_num_threads(threads)
    import bdlib
    from bdlib.worlds.toy.tasks import example_task

    world = bdlib.load_world("toy", dtype=getattr(torch, dtype))
    task = example_task()
    steps: list[torch.Tensor] = []
    extra = {"respacing": "25", "k": 1} if smoke else {}
    start = time.perf_counter()
    result = bdlib.edit(
        world,
        task.image,
        task.mask,
        PROMPT,
        samples=SAMPLES,
        seed=SEED,
        batch_size=batch,
        callback=lambda r: steps.append(r.x_prev.detach().double().cpu()),
        **extra,
    )
    seconds = time.perf_counter() - start
    images = torch.empty_like(result.images)
    images[result.order] = result.images  # back to the order drawn
    per_batch = len(steps) // (SAMPLES // batch)
    chain = [torch.cat([steps[b * per_batch + s] for b in range(SAMPLES // batch)]) for s in range(per_batch)]
    torch.save({"images": images, "chain": chain, "seconds": seconds}, out)


def compare(reference: dict, other: dict) -> dict:
    eight_bit = [((run["images"].clamp(-1, 1) + 1) * 127.5).round() for run in (reference, other)]
    diff = (eight_bit[0] - eight_bit[1]).abs()
    return {
        "max_abs_255": int(diff.max()),
        "share_over_8_per_sample": [round(float((d > 8).float().mean()), 4) for d in diff],
        "chain_max_abs_per_step": [
            float(f"{(a - b).abs().max():.3g}") for a, b in zip(reference["chain"], other["chain"], strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--smoke", action="store_true", help="two steps, two configurations (for the tests)")
    parser.add_argument("--one", nargs=4, metavar=("DTYPE", "THREADS", "BATCH", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        dtype, threads, batch, path = args.one
        run_one(dtype, int(threads), int(batch), Path(path), args.smoke)
        return {}
    configs = [(1, 4)] if args.smoke else CONFIGS
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "samples": SAMPLES,
        "seed": SEED,
        "prompt": PROMPT,
        "reference": "2 threads, one batch",
        "dtypes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[tuple[str, int, int], dict] = {}
        for threads, batch in [(2, 4), *configs]:  # interleaved: float32, then float64, per configuration
            for dtype in ("float32", "float64"):
                path = Path(tmp) / f"{dtype}_{threads}_{batch}.pt"
                cmd = [
                    sys.executable,
                    __file__,
                    "--out",
                    str(args.out),
                    "--one",
                    dtype,
                    str(threads),
                    str(batch),
                    str(path),
                ] + (["--smoke"] if args.smoke else [])
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                runs[dtype, threads, batch] = torch.load(path, weights_only=True)
        for dtype in ("float32", "float64"):
            reference = runs[dtype, 2, 4]
            rows = {"2 threads, batch 4": {"seconds": round(reference["seconds"], 2)}}
            for threads, batch in configs:
                run = runs[dtype, threads, batch]
                name = f"{threads} threads, batch {batch}"
                rows[name] = {"seconds": round(run["seconds"], 2), **compare(reference, run)}
            record["dtypes"][dtype] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    for dtype, rows in record["dtypes"].items():
        for name, row in rows.items():
            print(f"{dtype} {name:20s} {row.get('max_abs_255', 0):4d}/255  {row['seconds']:.2f} s")
    return record


if __name__ == "__main__":
    main()
