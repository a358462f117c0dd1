"""What ties a lesson's executed outputs to the code that made them, for the course website's cache.

- :func:`library_digest`: a short digest of the ``bdlib`` package (code and shipped weights). The book puts it into
  every lesson it executes, and ``run_notebooks.py`` records it in the notebooks it executes.
- :func:`seed_cache`: puts lessons that ``run_notebooks.py`` (papermill) already executed into the book's
  jupyter-cache, so that the book does not execute them a second time. A lesson is taken only when it was run
  from the same code cells, with the same library and with the parameters of the build (fast or full mode, the
  toy world, the CPU, seed 0), and ran to its end; otherwise the book executes it as usual.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

NOTEBOOK_DIR = Path(__file__).resolve().parent
INJECTED = "injected-parameters"  # papermill's tag for the cell it adds after the 'parameters' cell


@functools.cache
def library_digest() -> str:
    """A short digest of the ``bdlib`` package (its code and shipped weights): part of every lesson's cache key, so
    a change of the library re-runs the lessons while a change of a lesson's prose does not."""
    package = NOTEBOOK_DIR.parent / "bdlib"
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".safetensors")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _code_cells(notebook: Any) -> list[Any]:
    return [c for c in notebook.cells if c.cell_type == "code" and INJECTED not in c.metadata.get("tags", [])]


def reusable(executed: Any, fast: bool) -> str | None:
    """Why papermill's executed notebook cannot stand for this build's run, or None when it can."""
    papermill = executed.metadata.get("papermill", {})
    wanted = {"FAST": fast, "WORLD": "toy", "DEVICE": "cpu", "SEED": 0}
    if papermill.get("parameters") != wanted:
        return f"run with {papermill.get('parameters')}, the book needs {wanted}"
    if papermill.get("exception"):
        return "its run failed"
    if executed.metadata.get("bdlib", {}).get("library") != library_digest():
        return "run with another version of bdlib"
    if any(c.execution_count is None for c in _code_cells(executed)):
        return "not every cell ran"
    return None


def seed_cache(
    cache_dir: Path, executed_dir: Path, fast: bool, read: Callable[[str], Any], names: list[str]
) -> dict[str, str]:
    """Cache the lessons ``names`` (stems) from ``executed_dir/<name>.ipynb`` where :func:`reusable`; returns, per
    lesson, "reused" or why not. ``read`` is the book's reader (the notebook exactly as the book would run it)."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_dir))
    report = {}
    for name in names:
        path = executed_dir / f"{name}.ipynb"
        if not path.exists():
            report[name] = "not executed"
            continue
        executed = nbformat.read(path, as_version=4)
        source = NOTEBOOK_DIR / f"{name}.py"
        wanted = read(source.read_text(encoding="utf-8"))
        mine, ran = _code_cells(wanted), _code_cells(executed)
        why = reusable(executed, fast)
        if why is None and [c.source for c in mine] != [c.source for c in ran]:
            why = "its code differs from the lesson's"
        if why is not None:
            report[name] = why
            continue
        for cell, done in zip(mine, ran, strict=True):
            cell.outputs, cell.execution_count = done.outputs, done.execution_count
        for cell in wanted.cells:  # the book's own injected cell ran too (its values equal papermill's)
            if cell.cell_type == "code" and cell.execution_count is None:
                cell.execution_count = 0
        if "widgets" in executed.metadata:
            wanted.metadata["widgets"] = executed.metadata["widgets"]
        cache.cache_notebook_bundle(CacheBundleIn(wanted, str(source)), check_validity=False, overwrite=True)
        report[name] = "reused"
    return report
