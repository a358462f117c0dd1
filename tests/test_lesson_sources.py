"""The lessons' sources (notebooks/NN_*.py, jupytext percent format): how their cells depend on each other."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
CELL = re.compile(r"^# %%(.*)$", re.MULTILINE)


def code_cells(path: Path) -> list[tuple[str, str]]:
    """``(tags, source)`` of every code cell of a jupytext percent file."""
    text = path.read_text()
    marks = list(CELL.finditer(text))
    cells = []
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        header = mark.group(1)
        if "[markdown]" in header:
            continue
        body = text[mark.end() : after.start() if after else len(text)]
        cells.append((header, body.replace("\n%", "\n#%")))  # a line magic is not Python
    return cells


def defined(source: str) -> set[str]:
    """The names a cell binds: assignments, loop targets, imports, functions and classes."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def read(source: str) -> set[str]:
    return {
        node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_the_checks_cell_does_not_read_what_only_a_solution_defines(lesson):
    cells = code_cells(lesson)
    checks = [source for tags, source in cells if '"checks"' in tags]
    assert len(checks) == 1, f"{lesson.name}: one cell tagged checks, found {len(checks)}"
    lesson_names = set(dir(builtins)).union(*(defined(s) for tags, s in cells if '"solution"' not in tags))
    solution_names = set().union(*(defined(s) for tags, s in cells if '"solution"' in tags))
    leaked = (read(checks[0]) & solution_names) - lesson_names
    assert not leaked, f"{lesson.name}: the checks cell reads {sorted(leaked)}, defined only in solution cells"
