"""Write the lessons' measured run times into their headers and into the README, from the runner's timings.

    python notebooks/record_times.py              # reads notebooks/_build/timings.json

``notebooks/run_notebooks.py`` records every lesson's wall time (fast and full mode) in
``notebooks/_build/timings.json``. This script rewrites, from those numbers only:

- the ``**Run time**`` line of each lesson's header;
- the times in README's lesson table (the column "fast / full") and the totals of the ``make notebooks`` lines.

It refuses to write a time that was not measured (a lesson missing from one mode), so no time is ever typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
README = NOTEBOOK_DIR.parent / "README.md"
RUN_TIME = re.compile(r"^# \*\*Run time\*\*.*$", re.MULTILINE)
TABLE_ROW = re.compile(r"^\| `(\d\d_[a-z_]+)\.py` \| ([^|]*) \|(.*)$", re.MULTILINE)
MAKE_LINE = re.compile(r"^(make notebooks(?:-full)?\s+# [^:]*: )[^\n]*$", re.MULTILINE)


def header_line(fast: float, full: float, note: str) -> str:
    return (
        f"# **Run time** (measured by `notebooks/run_notebooks.py`, {note}): fast mode {fast:.0f} s, "
        f"full mode {full:.0f} s."
    )


def update(
    timings: dict, note: str, dry_run: bool = False, notebook_dir: Path = NOTEBOOK_DIR, readme_path: Path = README
) -> list[str]:
    """Rewrite the headers and the README; return the files changed."""
    fast, full = timings.get("fast", {}), timings.get("full", {})
    lessons = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.py"))
    missing = [p.stem for p in lessons if p.stem not in fast or p.stem not in full]
    if missing:
        raise SystemExit(
            f"no measured time for {', '.join(missing)} in both modes: run `make notebooks` and "
            "`make notebooks-full` first"
        )
    failed = [f"{mode}/{name}" for mode in ("fast", "full") for name, t in timings[mode].items() if t["status"] != "ok"]
    if failed:
        raise SystemExit(f"lessons that failed in the last run: {', '.join(failed)}: fix them first")
    changed = []
    for path in lessons:
        text = path.read_text()
        line = header_line(fast[path.stem]["seconds"], full[path.stem]["seconds"], note)
        new, count = RUN_TIME.subn(line, text, count=1)
        if count != 1:
            raise SystemExit(f"{path.name} has no '# **Run time**' line in its header")
        if new != text:
            changed.append(path.name)
            if not dry_run:
                path.write_text(new)
    readme = readme_path.read_text()

    def row(match: re.Match) -> str:
        name = match.group(1)
        return f"| `{name}.py` | {fast[name]['seconds']:.0f} s / {full[name]['seconds']:.0f} s |{match.group(3)}"

    totals = {mode: sum(times[p.stem]["seconds"] for p in lessons) for mode, times in (("fast", fast), ("full", full))}

    def make_line(match: re.Match) -> str:
        mode = "full" if "notebooks-full" in match.group(1) else "fast"
        per = [(fast if mode == "fast" else full)[p.stem]["seconds"] for p in lessons]
        return f"{match.group(1)}{min(per):.0f}-{max(per):.0f} s each, {totals[mode] / 60:.1f} min in all ({note})"

    new_readme = MAKE_LINE.sub(make_line, TABLE_ROW.sub(row, readme))
    if new_readme != readme:
        changed.append(readme_path.name)
        if not dry_run:
            readme_path.write_text(new_readme)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", default=str(NOTEBOOK_DIR / "_build" / "timings.json"))
    parser.add_argument("--note", default="2-core CPU", help="where the times were measured, e.g. '2-core CPU'")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    args = parser.parse_args(argv)
    path = Path(args.timings)
    if not path.exists():
        print(f"error: {path} does not exist: run `make notebooks` and `make notebooks-full` first", file=sys.stderr)
        return 2
    changed = update(json.loads(path.read_text()), args.note, args.dry_run)
    print(("would change: " if args.dry_run else "updated: ") + (", ".join(changed) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
