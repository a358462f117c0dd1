"""``python -m bdlib evaluate``: the toy editing benchmark, as JSON and trade-off figures under figures/."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Collection
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from bdlib.bench.evaluation import run_benchmark
from bdlib.bench.rows import default_settings
from bdlib.commands import arguments
from bdlib.course.viz import figure_writer
from bdlib.runtime import distributed
from bdlib.runtime.files import check_writable, write_files
from bdlib.worlds import load_world


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="run the toy editing benchmark (oracle-judged)")
    parser.add_argument(
        "--tasks", type=arguments.positive_int, default=200, help="number of seeded tasks (default 200)"
    )
    parser.add_argument("--seed", type=arguments.seed, default=0, help="an integer in [0, 2**63) (default 0)")
    parser.add_argument("--fast", action="store_true", help="fewer settings (for a quick look)")
    parser.add_argument("--batch-size", type=arguments.positive_int, default=64)
    parser.add_argument("--device", type=arguments.device, default="cpu")
    parser.add_argument("--out", type=Path, default=Path("figures/evaluation.json"))
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="ROW",
        default=None,
        help="run only these rows (names as in the table), updating them in --out (or starting it)",
    )
    parser.set_defaults(func=run)


def _rows(report: dict, prefix: str) -> list[dict]:
    return [row for row in report["settings"] if row["name"].startswith(prefix)]


def _lambda_panel(ax, report: dict) -> None:
    rows = [row for row in _rows(report, "alg1 lam=") if "scale=" not in row["name"]]
    xs = [max(row["settings"]["lam"], 1.0) for row in rows]
    ax.plot(xs, [row["bg_mean_abs"] for row in rows], "o-", label="background change")
    ax.plot(xs, [row["text_match"] for row in rows], "s-", label="text match")
    ax.plot(xs, [row["clean"] for row in rows], "^--", label="clean objects")
    ax.set_xscale("log")
    ax.set_xlabel("λ (Algorithm 1; λ = 0 drawn at 1)")
    ax.set_title("Algorithm 1: λ")


def _scale_panel(ax, report: dict) -> None:
    for views, marker in ((1, "o--"), (8, "s-")):
        rows = [row for row in _rows(report, "alg2 scale=") if row["settings"]["views"] == views]
        scales = [row["settings"]["guidance_scale"] for row in rows]
        ax.plot(scales, [row["text_match"] for row in rows], marker, label=f"text match, {views} view(s)")
        ax.plot(scales, [row["clean"] for row in rows], marker, alpha=0.5, label=f"clean, {views} view(s)")
    ax.set_xscale("log")
    ax.set_xlabel("guidance scale")
    ax.set_title("extending augmentations")


def _k_panel(ax, report: dict) -> None:
    rows = _rows(report, "alg2 k=")
    ks = [row["settings"]["k"] for row in rows]
    ax.plot(ks, [row["fg_mean_abs"] for row in rows], "o-", label="change in mask")
    ax.plot(ks, [row["text_match"] for row in rows], "s-", label="text match")
    ax.set_xlabel("start index k (respaced)")
    ax.set_title("Algorithm 2: k")


def _bars(ax, rows: list[dict], keys: dict[str, str], title: str) -> None:
    width = 0.8 / len(keys)
    for j, (key, label) in enumerate(keys.items()):
        values = [row.get(key) or 0.0 for row in rows]
        ax.bar([i + j * width for i in range(len(rows))], values, width, label=label)
    labels = [row["name"].split(": ")[-1].replace("alg2 ", "") for row in rows]
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(rows))], labels, rotation=20, ha="right")
    ax.set_title(title)


def tradeoff_figure(report: dict):
    """Five panels: λ (Algorithm 1), guidance scale with 1 vs 8 views, k, removal recipes, blending ablation."""
    fig, axes = plt.subplots(3, 2, figsize=(9, 9.6))
    _lambda_panel(axes[0][0], report)
    _scale_panel(axes[0][1], report)
    _k_panel(axes[1][0], report)
    _bars(axes[1][1], _rows(report, "remove: "), {"text_match": "object removed"}, "removal recipes (remove tasks)")
    ablation = [row for row in report["settings"] if row["name"] in ABLATION_ROWS]
    _bars(
        axes[2][0],
        ablation,
        {"clean": "clean objects", "seam": "seam jump", "bg_mean_before_paste": "background change before the paste"},
        "blending at every step vs once",
    )
    axes[2][1].axis("off")
    for ax in axes.flat:
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


ABLATION_ROWS = ("alg2 default", "alg2 paste once at the end", "alg2 no blending, no paste")


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def results_table(report: dict) -> str:
    """A markdown table of every setting: overall metrics, and text match on add/replace/recolor/remove."""
    kinds = ("add", "replace", "recolor", "remove")
    head = [
        "setting",
        "tasks",
        "text match",
        "clean",
        "bg max",
        "bg mean",
        "bg before paste",
        "change in mask",
        "seam (input)",
        "CLIP dist",
        "s/edit",
    ]
    head += [f"match: {kind}" for kind in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["settings"]:
        seam = f"{_fmt(row.get('seam'))} ({_fmt(row.get('seam_input'))})"
        cells = [
            row["name"],
            row.get("n", report["n_tasks"]),
            row["text_match"],
            row["clean"],
            row["bg_max_abs"],
            row["bg_mean_abs"],
            row.get("bg_mean_before_paste"),
            row["fg_mean_abs"],
            seam,
            row["clip_distance"],
            row["seconds_per_edit"],
        ]
        cells += [row["per_kind"].get(kind, {}).get("text_match") for kind in kinds]
        lines.append("| " + " | ".join(_fmt(cell) for cell in cells) + " |")
    per_kind = report["settings"][0]["per_kind"]
    counts = ", ".join(f"{kind} {value['n']}" for kind, value in per_kind.items())
    return (
        f"{report['n_tasks']} seeded toy editing tasks (seed {report['seed']}; {counts}), judged by the oracle; "
        f"{report.get('minutes', '?')} min in all"
        + "".join(
            f"; rows {', '.join(u['rows'])} rerun on {u['date']} ({u['minutes']} min)"
            for u in report.get("updates", [])
        )
        + ".\n\n"
        + "\n".join(lines)
        + "\n"
    )


#: What every row of a report holds: results_table and tradeoff_figure read these.
ROW_KEYS = (
    "name",
    "text_match",
    "clean",
    "bg_max_abs",
    "bg_mean_abs",
    "fg_mean_abs",
    "clip_distance",
    "seconds_per_edit",
    "settings",
    "per_kind",
)


def _row_problem(rows: object) -> str | None:
    """What is wrong with a report's rows (None: each is a dict with :data:`ROW_KEYS`)."""
    if not isinstance(rows, list):
        return f"'settings' is a {type(rows).__name__}, not a list of rows"
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            return f"row {number} is a {type(row).__name__}, not a dict"
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            return f"row {row.get('name', number)!r} lacks {', '.join(missing)}"
        if not isinstance(row["settings"], dict) or not isinstance(row["per_kind"], dict):
            return f"row {row['name']!r} has settings or per_kind that are not dicts"
    return None


def _drawing_problem(report: dict) -> str | None:
    """What stops the table or the figure of ``report`` (None: both draw)."""
    if not report["settings"]:
        return None
    try:
        results_table(report)
        plt.close(tradeoff_figure(report))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as error:
        return f"it cannot be drawn: {type(error).__name__}: {error}"
    return None


def read_report(path: Path, rerun: Collection[str] = ()) -> dict:
    """A report written by this command (``--only`` updates one; ``figures`` draws one), read and checked whole
    before any work: a missing or damaged one raises an error that says how to make a new one. Rows named in
    ``rerun`` are not checked: ``--only`` replaces them."""
    if not path.exists():
        raise FileNotFoundError(f"no report at {path}: make one with python -m bdlib evaluate")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        report["n_tasks"], report["seed"], report["settings"]  # noqa: B018 (the keys --only relies on)
        kept = report["settings"]
        if isinstance(kept, list):
            kept = [row for row in kept if not (isinstance(row, dict) and row.get("name") in rerun)]
        problem = _row_problem(kept) or _drawing_problem({**report, "settings": kept})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        problem = f"{type(error).__name__}: {error}"
    except OSError as error:  # a folder, no permission, ...
        raise ValueError(f"cannot read the report {path}: {error.strerror or error}") from None
    if problem:
        raise ValueError(
            f"{path} is not a bdlib evaluation report ({problem}): make a new one with python -m bdlib evaluate "
            "(without --only)"
        )
    return report


def rows_to_update(world, args: argparse.Namespace) -> tuple[dict, list]:
    """The report that ``--only`` updates (or a new one) and the benchmark's rows, checked before any work: the
    report's tasks and seed must be the ones asked, and every row named must exist."""
    if args.out.exists():
        report = read_report(args.out, args.only)
    else:
        report = {"world": world.name, "n_tasks": args.tasks, "seed": args.seed, "settings": [], "minutes": None}
    if (report["n_tasks"], report["seed"]) != (args.tasks, args.seed):
        raise ValueError(
            f"{args.out} holds {report['n_tasks']} tasks with seed {report['seed']}, not {args.tasks} with seed "
            f"{args.seed}: pass the same --tasks and --seed, or run without --only"
        )
    rows = default_settings(world, args.fast)
    unknown = sorted(set(args.only) - {row.name for row in rows})
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}: the rows are {[row.name for row in rows]}")
    return report, rows


def update_rows(
    world,
    args: argparse.Namespace,
    start: float,
    context: distributed.Context | None = None,
    checked: tuple[dict, list] | None = None,
) -> dict | None:
    """Run the rows named in ``args.only`` and put them into the report in ``args.out`` (same tasks and seed), or
    into a new report of those rows alone when ``args.out`` does not exist yet (``checked``: what
    :func:`rows_to_update` returned, when it ran already)."""
    report, rows = checked or rows_to_update(world, args)
    fresh = run_benchmark(
        world,
        args.tasks,
        args.seed,
        batch_size=args.batch_size,
        settings=[row for row in rows if row.name in args.only],
        context=context,
    )
    if fresh is None:  # not rank 0
        return None
    fresh = fresh["settings"]
    by_name = {row["name"]: row for row in report["settings"]} | {row["name"]: row for row in fresh}
    order = [row.name for row in rows] + [row["name"] for row in report["settings"]]  # then rows no longer listed
    report["settings"] = [by_name[name] for name in dict.fromkeys(order) if name in by_name]
    minutes = round((time.time() - start) / 60, 2)
    if report.get("minutes") is None:  # a new report: this run made all of it
        report["minutes"] = minutes
    report.setdefault("updates", []).append(
        {"rows": list(args.only), "minutes": minutes, "date": time.strftime("%Y-%m-%d")}
    )
    return report


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def run(args: argparse.Namespace) -> int:
    """Check the arguments, the outputs, the report to update and the rows named before joining torchrun's group
    (a bad input stops every rank at once), then run the benchmark and write the report, its table and figure."""
    if args.tasks < 5:
        raise ValueError(f"--tasks must be at least 5 (one per task kind), got {args.tasks}")
    if args.out.suffix.lower() != ".json":
        raise ValueError(f"--out must name a .json file (the .md table and .png figure go next to it), got {args.out}")
    figure, table = args.out.with_suffix(".png"), args.out.with_suffix(".md")
    for path in (args.out, figure, table):  # before the long run, not after it
        check_writable(path, "report", example="evaluation.json")
    if args.only and args.out.exists():
        read_report(args.out, args.only)
    context = distributed.from_environment()
    # float32: three times faster than the toy world's float64 default; over 200 tasks the rounding noise that
    # float64 removes from single pictures averages out (benchmarks/thread_invariance.py)
    world = load_world("toy", device=context.device(args.device), dtype=torch.float32)
    checked = rows_to_update(world, args) if args.only else None
    context = distributed.init(args.device)
    start = time.time()
    try:
        if args.only:
            report = update_rows(world, args, start, context, checked)
        else:
            report = run_benchmark(world, args.tasks, args.seed, args.fast, args.batch_size, context=context)
            if report is not None:
                report["minutes"] = round((time.time() - start) / 60, 2)
    finally:
        distributed.close(context)
    if report is None:  # a rank other than 0: rank 0 writes
        return 0
    if context.distributed:
        report["processes"] = context.size
    fig = tradeoff_figure(report)
    try:
        write_files(
            {
                args.out: lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"),
                table: lambda tmp: tmp.write_text(results_table(report), encoding="utf-8"),
                figure: figure_writer(fig),
            }
        )
    finally:
        plt.close(fig)
    print(f"wrote {args.out}, {table} and {figure} in {_duration(time.time() - start)}")
    return 0
