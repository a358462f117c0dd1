"""Execute the course notebooks from fresh kernels, as CI does: ``python notebooks/run_notebooks.py``.

Each ``notebooks/NN_*.py`` (jupytext py:percent, the source of truth) is converted to ``.ipynb`` in
``notebooks/_build/``, executed there by papermill with the parameters ``FAST``, ``WORLD``, ``DEVICE`` and
``SEED`` injected after the cell tagged ``parameters``, and saved with its outputs
(``notebooks/_build/NN_*.ipynb``). Wall times go to ``notebooks/_build/timings.json``.

The kernel is *this* Python (the one running the script, normally ``.venv/bin/python``): a kernel spec
named ``bdlib-venv`` that points at ``sys.executable`` is written into ``notebooks/_build/kernels/`` and put
first on ``JUPYTER_PATH``, so a ``python3`` kernel elsewhere on the machine can never be picked by mistake.

Exit status: 0 when every notebook ran; 1 when any failed (the notebook, the failing cell and its error
are printed); 2 for bad arguments.

Examples::

    .venv/bin/python notebooks/run_notebooks.py                 # all notebooks, fast mode, CPU
    .venv/bin/python notebooks/run_notebooks.py --full          # full mode
    .venv/bin/python notebooks/run_notebooks.py --only 01 03    # some of them
    .venv/bin/python notebooks/run_notebooks.py --device cuda --full
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
BUILD_DIR = NOTEBOOK_DIR / "_build"
KERNEL_NAME = "bdlib-venv"
FAST_BUDGET_S = 90.0  # every notebook must finish within this in fast mode on a laptop CPU
NAME_PATTERN = re.compile(r"^\d\d_.+\.py$")


def find_notebooks(only: list[str] | None) -> list[Path]:
    """The notebook sources ``NN_*.py`` in order; ``only`` keeps those whose number (or name) is listed."""
    paths = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py") if NAME_PATTERN.match(p.name))
    if not only:
        return paths
    wanted = [w.removesuffix(".py") for w in only]
    picked = [p for p in paths if any(p.stem == w or p.stem.startswith(f"{w}_") for w in wanted)]
    missing = [w for w in wanted if not any(p.stem == w or p.stem.startswith(f"{w}_") for p in paths)]
    if missing:
        names = ", ".join(p.stem for p in paths) or "none"
        raise SystemExit(f"error: no notebook matches {', '.join(missing)}; the notebooks are: {names}")
    return picked


def install_kernel_spec(build_dir: Path) -> None:
    """Write a kernel spec for this interpreter into ``build_dir/kernels`` and put it first on JUPYTER_PATH."""
    spec_dir = build_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"bdlib ({sys.executable})",
        "language": "python",
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    paths = [str(build_dir), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)


def choose_threads(requested: str) -> int | None:
    """Threads per kernel: a number, or "auto" (one thread when the CPU is already fully loaded, else default).

    On an oversubscribed CPU (load average at or above the core count, e.g. while models train in the
    background), torch's worker threads wait on each other and one thread is several times faster.
    """
    if requested != "auto":
        return int(requested)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return 1 if load >= cores - 0.5 else None


def convert(source: Path, build_dir: Path) -> Path:
    """jupytext ``source`` (py:percent) -> ``build_dir/<name>.ipynb`` (no outputs)."""
    import jupytext
    from book_cache import library_digest

    notebook = jupytext.read(source)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{source.name} must have exactly one cell tagged 'parameters', found {len(tagged)}")
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "bdlib", "language": "python"}
    notebook.metadata["bdlib"] = {"library": library_digest()}  # lets the course book reuse this run (book_cache.py)
    target = build_dir / f"{source.stem}.ipynb"
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def describe_failure(error: BaseException) -> str:
    """One readable paragraph for a papermill error: the failing cell, the exception and its message."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        trace = "\n".join(error.traceback[-6:]) if error.traceback else ""
        trace = re.sub(r"\x1b\[[0-9;]*m", "", trace)  # strip ANSI colours
        return f"cell {error.cell_index} (execution count {error.exec_count}): {error.ename}: {error.evalue}\n{trace}"
    return f"{type(error).__name__}: {error}"


def run(args: argparse.Namespace) -> int:
    import papermill

    build_dir = Path(args.build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    install_kernel_spec(build_dir)
    threads = choose_threads(args.threads)
    if threads is not None:  # the kernels inherit this environment
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    parameters = {"FAST": not args.full, "WORLD": args.world, "DEVICE": args.device, "SEED": args.seed}
    mode = "full" if args.full else "fast"
    notebooks = find_notebooks(args.only)
    if not notebooks:
        print("no notebooks found in", NOTEBOOK_DIR)
        return 1
    timings_path = build_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    failures: list[tuple[str, str]] = []
    print(
        f"running {len(notebooks)} notebook(s), {mode} mode, parameters {parameters}, kernel {sys.executable}, "
        f"threads {threads or 'default'}"
    )
    total_start = time.perf_counter()
    for source in notebooks:
        start = time.perf_counter()
        status, detail = "ok", ""
        try:
            built = convert(source, build_dir)
            papermill.execute_notebook(
                str(built),
                str(built),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=False,
                log_output=args.verbose,
                execution_timeout=args.cell_timeout,
            )
        except Exception as error:  # every failure is reported, none is hidden
            where = f"{build_dir / (source.stem + '.ipynb')}, "  # the executed copy, with outputs up to the error
            status, detail = "failed", where + describe_failure(error)
            failures.append((source.name, detail))
        seconds = time.perf_counter() - start
        over = " (over the fast-mode budget of 90 s)" if not args.full and seconds > FAST_BUDGET_S else ""
        print(f"  {source.stem:<32} {status:<6} {seconds:7.1f} s{over}", flush=True)
        if detail:
            print("    " + detail.replace("\n", "\n    "), flush=True)
        timings.setdefault(mode, {})[source.stem] = {
            "seconds": round(seconds, 1),
            "status": status,
            "parameters": parameters,
            "threads": threads,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True))
        if failures and args.fail_fast:
            break
    print(f"total {time.perf_counter() - total_start:.1f} s; timings in {timings_path}")
    if failures:
        print(f"FAILED: {len(failures)} notebook(s): " + ", ".join(name for name, _ in failures), file=sys.stderr)
        for name, detail in failures:
            print(f"--- {name}: {detail.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full mode (FAST=False): longer chains, more samples")
    parser.add_argument("--device", default="cpu", help="DEVICE parameter: cpu (default), cuda, cuda:1, mps")
    parser.add_argument(
        "--world",
        default="toy",
        choices=("toy", "paper", "paper-random"),
        help="WORLD parameter (default toy); today no lesson changes with it: 01's schedule is the "
        "same in both worlds, 02-08 always use the toy world, 09 always the paper's",
    )
    parser.add_argument("--seed", type=int, default=0, help="SEED parameter (default 0)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, by number: --only 01 03")
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help="where executed notebooks go (notebooks/_build)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds allowed per cell (default: none)")
    parser.add_argument(
        "--threads", default="auto", help="CPU threads per kernel: a number, or auto (1 on a fully loaded CPU)"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    parser.add_argument("--verbose", action="store_true", help="stream the notebooks' outputs while they run")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
