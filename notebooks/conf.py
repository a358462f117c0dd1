"""Sphinx configuration of the course website (``make book``; see ``notebooks/build_book.py``).

Sources: ``index.md`` (landing page), the lessons ``NN_*.py`` (jupytext py:percent, read by
``build_book.read_lesson`` and executed by myst-nb through jupyter-cache), ``README.md`` (the teacher's guide,
when present) and ``benchmarks.md``. Every script and style sheet a page loads is served from the site itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # build_book.read_lesson, run_notebooks

from book_cache import library_digest  # noqa: E402
from build_book import ASSETS, FAST_ENV, ONLY_ENV, build_dir  # noqa: E402

FAST = os.environ.get(FAST_ENV) == "1"
bdlib_digest = library_digest()  # a changed library changes the config: Sphinx re-reads every page (the lessons re-run)
GUIDE = (HERE / "README.md").exists()

project = "bdlib: Blended Diffusion, step by step"
author = "the bdlib authors"
copyright = "the bdlib authors (MIT licence)"

extensions = ["myst_nb"]
root_doc = "index"
LESSONS = [f"{n}_*.py" for n in os.environ.get(ONLY_ENV, "").split()] or ["[0-9][0-9]_*.py"]  # --only 04 05
include_patterns = ["index.md", "benchmarks.md", *LESSONS] + (["README.md"] if GUIDE else [])
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "**/*.ipynb"]

# The lessons: jupytext py:percent files, each executed once with its outputs cached by jupyter-cache.
nb_custom_formats = {".py": ["build_book.read_lesson", {}, False]}
nb_execution_mode = "cache"
nb_execution_cache_path = str(build_dir(FAST) / "jupyter_cache")
nb_execution_timeout = 3600  # seconds per cell; a full-mode cell takes up to a few minutes on a laptop CPU
nb_execution_raise_on_error = False  # a failing cell is a warning: with -W the build fails, naming every lesson
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (bdlib.course.viz.table, Markdown(...)) with tables and $math$
# An animation's GIF becomes a file of the site (not inline HTML); widgets come from the saved widget state.
nb_mime_priority_overrides = [("html", "image/gif", 25), ("html", "image/webp", 26)]
# ipywidgets' HTML manager (the built-in widgets; no require.js), from the site's own _static folder.
nb_ipywidgets_js = {"html-manager/embed.js": {}}

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "bdlib course"
html_static_path = [str(ASSETS), "site_static"]  # html-manager/ and mathjax/ (make book-assets); our CSS
html_css_files = ["bdlib.css"]  # figures keep their pixels (notebooks/site_static/bdlib.css)
mathjax_path = "mathjax/tex-chtml.js"
mathjax_config_path = "mathjax_config.js"  # MathJax 3, plus the MathJax 2 call the widgets' labels make
html_favicon = "../bdlib/examples/scene.png"  # a toy scene (browsers ask for a favicon: without one, a 404)
html_context = {"default_mode": "light"}
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_last_updated_fmt = ""


def _teachers_guide(app, docname: str, source: list[str]) -> None:
    """List the teacher's guide (README.md) on the landing page when it exists."""
    if docname == "index":
        source[0] = source[0].replace("TEACHERS_GUIDE\n", "README\n" if GUIDE else "")


def setup(app) -> dict[str, bool]:
    app.add_config_value("bdlib_digest", "", "env")
    app.connect("source-read", _teachers_guide)
    return {"parallel_read_safe": False}
