"""Build the course website: ``python notebooks/build_book.py`` (what ``make book`` runs).

Sphinx with myst-nb and the sphinx-book-theme turns ``notebooks/`` into a static site: the landing page
(``index.md``), one page per lesson (``NN_*.py``, read through jupytext and executed with its outputs), the
teacher's guide (``README.md``, when present) and the benchmark results (``benchmarks.md``). The configuration is
``notebooks/conf.py``; this script checks what the build needs, runs Sphinx with warnings as errors, and prints
the path of the site's ``index.html`` as its last line.

- **Full mode.** Each lesson is read with ``FAST = False`` injected after its ``parameters`` cell (papermill's
  convention: a cell tagged ``injected-parameters``), so the site shows the course's full-mode outputs.
  ``--fast`` builds a fast-mode site into ``notebooks/_build/book-fast`` instead, and ``--only 04 05`` builds
  some lessons only (both for quick checks).
- **Cached outputs.** myst-nb executes through jupyter-cache (``notebooks/_build/book/jupyter_cache``), keyed by
  the lessons' code cells and a digest of ``bdlib`` (code and weights): after a change of prose only, a rebuild
  reuses every output and takes seconds; a lesson whose code changed, or any lesson after the library changed,
  runs again. ``--reuse`` first takes the lessons that ``run_notebooks.py`` already executed with the same code,
  library and parameters (``make notebooks`` then ``make book-fast``: nothing runs twice; see ``book_cache.py``).
- **Offline.** Everything a page loads is served by the site itself: ipywidgets' HTML manager (which draws the
  λ and k panels from the widget state saved in the executed lessons) and MathJax, both fetched from the npm
  registry by ``make book`` into ``notebooks/_build/book-assets`` (``--assets``).

Exit status: 0 when the site was built; 1 when Sphinx failed (a lesson's cell raised, a link points at a page
that does not exist, any other warning: every one is printed); 2 when something the build needs is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from book_cache import library_digest, seed_cache
from run_notebooks import BUILD_DIR, KERNEL_NAME, choose_threads, install_kernel_spec

NOTEBOOK_DIR = Path(__file__).resolve().parent
BUILD_ROOT = NOTEBOOK_DIR / "_build"
ASSETS = BUILD_ROOT / "book-assets"  # html-manager/ and mathjax/, from `make book-assets`
REQUIRED_ASSETS = ("html-manager/embed.js", "mathjax/tex-chtml.js")
FAST_ENV = "BDLIB_BOOK_FAST"  # "1": the reader injects FAST = True (the fast-mode site)
ONLY_ENV = "BDLIB_BOOK_ONLY"  # lesson numbers to build ("04 05"); empty: all of them
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # targets of Markdown links
LESSON_NAME = re.compile(r"`(\d\d_[A-Za-z0-9_]+)(?:\.py)?`")  # a lesson named in code style: `05_blended_diffusion`


def build_dir(fast: bool) -> Path:
    """Where a site and its caches go: ``notebooks/_build/book`` (full mode) or ``book-fast``."""
    return BUILD_ROOT / ("book-fast" if fast else "book")


def read_lesson(text: str) -> Any:
    """myst-nb's reader for a lesson (jupytext py:percent): the notebook, run on the project's kernel, with the
    mode of this build injected after the cell tagged ``parameters`` (``FAST = False`` unless a fast build) and the
    library's digest in a comment (jupyter-cache keys a notebook by its code cells)."""
    import jupytext
    import nbformat

    notebook = jupytext.reads(text, fmt="py:percent")
    fast = os.environ.get(FAST_ENV) == "1"
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"a lesson needs exactly one cell tagged 'parameters', found {len(tagged)}")
    mode = "fast" if fast else "full"
    injected = nbformat.v4.new_code_cell(
        f"# Injected by the course book: this page ran in {mode} mode, with bdlib {library_digest()}\nFAST = {fast}",
        metadata={"tags": ["injected-parameters"]},
    )
    notebook.cells.insert(tagged[0] + 1, injected)
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "bdlib", "language": "python"}
    return notebook


def guide_problems(guide: Path) -> list[str]:
    """Pages the teacher's guide lists that do not exist: relative links to ``.py``/``.md``/``.ipynb`` files, and
    lessons named in code style (`` `05_blended_diffusion` `` must be ``notebooks/05_blended_diffusion.py``)."""
    if not guide.exists():
        return []
    text = guide.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(text):
        if "://" not in target and target.endswith((".py", ".md", ".ipynb")) and not (guide.parent / target).exists():
            problems.append(f"{guide.name} links to {target}, which does not exist")
    for name in dict.fromkeys(LESSON_NAME.findall(text)):
        if not (guide.parent / f"{name}.py").exists():
            problems.append(f"{guide.name} lists the lesson {name}, but there is no {name}.py")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fast-mode lessons, into notebooks/_build/book-fast")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these lessons (by number), e.g. --only 04 05")
    parser.add_argument("--clean", action="store_true", help="forget Sphinx's state (the execution cache is kept)")
    parser.add_argument(
        "--reuse",
        nargs="?",
        const=str(BUILD_DIR),
        metavar="DIR",
        help="take lessons that run_notebooks.py executed (DIR, default notebooks/_build) when they match this build",
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors from Sphinx")
    args = parser.parse_args(argv)

    missing = [name for name in REQUIRED_ASSETS if not (ASSETS / name).exists()]
    if missing:
        print(f"error: {', '.join(missing)} missing in {ASSETS}: run `make book-assets` (npm) first", file=sys.stderr)
        return 2
    problems = guide_problems(NOTEBOOK_DIR / "README.md")
    if problems:
        print("error: the teacher's guide lists pages that are missing:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    from sphinx.cmd.build import build_main

    out = build_dir(args.fast)
    if args.reuse:
        wanted = [p.stem for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))]
        wanted = [n for n in wanted if not args.only or n[:2] in args.only]
        os.environ[FAST_ENV] = "1" if args.fast else "0"  # the reader builds the notebook as this build runs it
        report = seed_cache(out / "jupyter_cache", Path(args.reuse), args.fast, read_lesson, wanted)
        for name, verdict in report.items():
            print(f"  {name}: {'output of run_notebooks.py reused' if verdict == 'reused' else 'executed: ' + verdict}")
    install_kernel_spec(out)  # the lessons run on this interpreter's kernel, never another python3
    threads = choose_threads("auto")
    if threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ[FAST_ENV] = "1" if args.fast else "0"
    os.environ[ONLY_ENV] = " ".join(args.only or [])
    html = out / "html"
    shutil.rmtree(html, ignore_errors=True)  # no page of a renamed or removed lesson survives (rewriting takes seconds)
    options = ["-b", "html", "-W", "--keep-going", "-d", str(out / "doctrees"), "-j", "1"]
    options += ["-q"] if args.quiet else []
    options += ["-E"] if args.clean else []
    status = build_main([*options, str(NOTEBOOK_DIR), str(html)])
    if status != 0:
        print(f"error: Sphinx failed ({status}); the messages above name the page and the cell", file=sys.stderr)
        return 1
    index = html / "index.html"
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
