"""How long a λ or k panel takes to answer a control change, on this machine.

    python benchmarks/bench_panel.py --out benchmarks/results/panel_cpu.json
    python benchmarks/bench_panel.py --threads 2 --repeats 3 --strategies batch sequential

The panels are built as notebooks 04 (λ: Algorithm 1 on a "replace" task, 7 values) and 05 (k: Algorithm 2 on an
"add" task, 6 values across the transition) build them, with the panels' own default grids, with the toy world's
default chain (25 respaced steps from k = 18, 8 views). Then each control is changed as a user changes it
(``panel.controls[name].value = new``, which is what a browser's comm message does in the kernel) and two
times are taken from that moment:

- **current**: until the picture of the slider's current value is redrawn (one edit, rendered to PNG);
- **grid**: until every value of the grid is drawn (the other values in one batch).

``--strategies sequential`` also times the grid computed one edit after another (the panels before the batch
grid), for comparison. Every change is a new setting, so every number includes the sampler (the result cache
is cleared between repeats). JSON goes to ``--out``, with the machine, its load and the threads used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import device_name  # noqa: E402

CHANGES = [("seed", 1), ("guidance_scale", 3000.0), ("views", 4), ("prompt", "a green triangle")]


def sequential_grid(world, image, mask, prompt, field, values, *, seed=0, settings=None, **overrides):
    """One edit per value, one after another (how the panels computed a grid before the batch)."""
    from bdlib.edit import edit

    results = []
    for value in values:
        one = {field: value, **overrides}
        results.append(edit(world, image, mask, prompt, seed=seed, settings=settings, samples=1, **one))
    return results


def build_panel(kind: str, world, smoke: bool, cache):
    """The λ panel of notebook 04 or the k panel of notebook 05 (full-mode grids; smaller ones in smoke mode)."""
    from bdlib.course.widgets import k_panel, lambda_panel
    from bdlib.worlds.toy.tasks import make_task

    run = {"respacing": "10", "k": 6, "views": 1} if smoke else {}
    if kind == "lambda":
        settings = world.defaults_for("local").with_(**run)
        values = (0.0, 3000.0) if smoke else None  # None: the panel's own grid, as lesson 04 shows it
        return lambda_panel(world, make_task("replace", 0), values=values, settings=settings, cache=cache)
    settings = world.defaults.with_(algorithm="blended", **run)
    values = [4, 6] if smoke else None  # None: the panel's own grid, as lesson 05 shows it
    return k_panel(world, make_task("add", 0), values=values, settings=settings, cache=cache)


def measure(kind: str, strategy: str, world, repeats: int, smoke: bool) -> list[dict]:
    """Build one panel, then change each control ``repeats`` times; one row per change."""
    import bdlib.course.edit_cache as edit_cache
    import bdlib.course.widgets as bw

    original = edit_cache.edit_grid
    edit_cache.edit_grid = sequential_grid if strategy == "sequential" else original
    rows = []
    try:
        cache = bw.ResultCache()
        start = time.perf_counter()
        panel = build_panel(kind, world, smoke, cache)
        common = {"panel": kind, "strategy": strategy, "grid_size": len(panel.grid)}
        rows.append({**common, "control": "(build)", "grid_s": time.perf_counter() - start})
        defaults = panel.options()
        for repeat in range(repeats):
            cache.clear()
            for name, new in CHANGES[:1] if smoke else CHANGES:
                value = new if repeat % 2 == 0 else defaults[name]  # alternate, so every change is a change
                start = time.perf_counter()
                panel.controls[name].value = value
                wall = time.perf_counter() - start
                if "ready" not in panel.status.value:
                    raise RuntimeError(f"{kind} panel, {name} = {value!r}: {panel.status.value}")
                current, grid = panel.timings["current"], panel.timings["grid"]
                rows.append(
                    {
                        **common,
                        "control": name,
                        "value": value,
                        "repeat": repeat,
                        "current_s": current,
                        "grid_s": grid,
                        "handler_s": wall,
                    }
                )
                print(
                    f"  {kind:6s} {strategy:10s} {name:15s} -> {value!r:20}: current {current:5.2f} s, "
                    f"grid of {len(panel.grid)} {grid:5.2f} s",
                    flush=True,
                )
    finally:
        edit_cache.edit_grid = original
    return rows


def summarise(rows: list[dict]) -> dict:
    """Median, min and max of both times, per panel and strategy (the build rows left out)."""
    groups: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row["control"] != "(build)":
            group = groups.setdefault(f"{row['panel']}/{row['strategy']}", {"current_s": [], "grid_s": []})
            group["current_s"].append(row["current_s"])
            group["grid_s"].append(row["grid_s"])
    stats = {"median": statistics.median, "min": min, "max": max}
    return {
        key: {f"{name}_{stat}": round(fn(values), 3) for name, values in times.items() for stat, fn in stats.items()}
        for key, times in groups.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", nargs="+", default=["k", "lambda"], choices=["k", "lambda"])
    parser.add_argument("--strategies", nargs="+", default=["batch"], choices=["batch", "sequential"])
    parser.add_argument("--repeats", type=int, default=2, help="rounds of control changes per panel")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--smoke", action="store_true", help="10-step chains, 2-value grids, one change (a test)")
    parser.add_argument("--out", default="benchmarks/results/panel_cpu.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    from bdlib import load_world

    world = load_world("toy")
    load_before = os.getloadavg()
    rows = []
    for kind in args.panels:
        for strategy in args.strategies:
            rows += measure(kind, strategy, world, args.repeats, args.smoke)
    record = {
        "what": "seconds from a control change to the redrawn current value and to the whole grid (bench_panel.py)",
        "device_name": device_name("cpu"),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch_version": torch.__version__,
        "smoke": args.smoke,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "summary": summarise(rows),
        "runs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["summary"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
