# bdlib: every target creates the local virtual environment (.venv) first when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bdlib-installed

FORMATTED := bdlib tests benchmarks notebooks/*.py

.PHONY: format setup setup-book setup-browser demo figures evaluate test lint unit notebooks notebooks-full \
	gpu-check book book-fast book-assets test-browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev]"
	touch $(STAMP)

## The course website's tools (Sphinx, myst-nb, sphinx-book-theme) and the browser tests' (Playwright).
BOOK_STAMP := $(VENV)/.bdlib-book-installed
BROWSER_STAMP := $(VENV)/.bdlib-browser-installed
setup-book: $(BOOK_STAMP)
setup-browser: $(BROWSER_STAMP)

$(BOOK_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e ".[notebooks,dev,book]"
	touch $(BOOK_STAMP)

$(BROWSER_STAMP): pyproject.toml $(BOOK_STAMP)
	$(PY) -m pip install --quiet -e ".[notebooks,dev,book,browser]"
	touch $(BROWSER_STAMP)

## The main job: a blended edit of the shipped toy example (figures/edit_example*.png) and the
## forward/reverse diffusion figure (figures/demo.png), on CPU.
demo: setup
	$(PY) -m bdlib edit --world toy --image bdlib/examples/scene.png --mask bdlib/examples/scene_mask.png \
		--prompt "a red circle" --samples 4 --out figures/edit_example.png
	$(PY) -m bdlib demo --out figures/demo.png

## Every figure of the README and the notebooks, regenerated from the code (CPU: 80 s on 2 cores, 2026-12-06).
figures: setup
	$(PY) -m bdlib figures --out figures

## The toy editing benchmark (200 oracle-judged tasks, every setting; about 40 minutes on 2 CPU cores).
evaluate: setup
	$(PY) -m bdlib evaluate --out figures/evaluation.json

## Everything CI checks: lint, unit tests, and every notebook in fast mode (CPU; measured times: README, Notebooks).
test: setup lint unit notebooks

## ruff's lint rules and its formatter (the same checks as .pre-commit-config.yaml).
lint: setup
	$(PY) -m ruff check bdlib tests benchmarks
	$(PY) -m ruff check --extend-ignore E402,E501,B018 --extend-exclude notebooks/_build notebooks
	$(PY) -m ruff format --check $(FORMATTED)

## Format the code (ruff format) and sort its imports; run before a commit.
format: setup
	$(PY) -m ruff check --select I --fix $(FORMATTED)
	$(PY) -m ruff format $(FORMATTED)

unit: setup
	$(PY) -m pytest -q

## The notebooks (notebooks/NN_*.py), each executed from a fresh kernel by papermill; outputs and
## timings in notebooks/_build/. Fast mode is the CPU CI configuration; full mode is the course's.
## Pass options through ARGS, e.g. `make notebooks ARGS="--only 01 03"` or ARGS="--device cuda".
notebooks: setup
	$(PY) notebooks/run_notebooks.py $(ARGS)

notebooks-full: setup
	$(PY) notebooks/run_notebooks.py --full $(ARGS)

## The course website: every lesson executed in full mode on CPU (outputs cached by jupyter-cache: a rebuild
## after a change of prose takes seconds), built by Sphinx + myst-nb into notebooks/_build/book/html. Prints the
## path of the site's index.html last. `make book-fast` builds the fast-mode site (notebooks/_build/book-fast).
## Lessons that `make notebooks` (fast) or `make notebooks-full` already ran from the same code are not run again.
book: setup-book book-assets
	$(PY) notebooks/build_book.py --reuse $(ARGS)

book-fast: setup-book book-assets
	$(PY) notebooks/build_book.py --fast --reuse $(ARGS)

## What the pages load, served by the site itself (no CDN): ipywidgets' HTML manager (draws the panels from the
## saved widget state) and MathJax, fetched once from the npm registry (needs npm).
HTML_MANAGER_VERSION := 1.0.15
MATHJAX_VERSION := 3.2.2
BOOK_ASSETS := notebooks/_build/book-assets
ASSETS_STAMP := $(BOOK_ASSETS)/.html-manager-$(HTML_MANAGER_VERSION)-mathjax-$(MATHJAX_VERSION)
book-assets: $(ASSETS_STAMP)

$(ASSETS_STAMP):
	@command -v npm >/dev/null || { echo "make book needs npm to fetch its scripts: apt-get install -y npm" >&2; exit 2; }
	rm -rf $(BOOK_ASSETS) && mkdir -p $(BOOK_ASSETS)/npm $(BOOK_ASSETS)/html-manager $(BOOK_ASSETS)/mathjax
	cd $(BOOK_ASSETS)/npm && npm pack --silent @jupyter-widgets/html-manager@$(HTML_MANAGER_VERSION) \
		mathjax@$(MATHJAX_VERSION) >/dev/null
	tar xzf $(BOOK_ASSETS)/npm/jupyter-widgets-html-manager-$(HTML_MANAGER_VERSION).tgz -C $(BOOK_ASSETS)/html-manager \
		--strip-components=2 --exclude='*.map' --exclude='*-amd.js' package/dist
	tar xzf $(BOOK_ASSETS)/npm/mathjax-$(MATHJAX_VERSION).tgz -C $(BOOK_ASSETS)/mathjax --strip-components=2 \
		package/es5/tex-chtml.js package/es5/input package/es5/output/chtml package/es5/a11y package/es5/ui \
		package/es5/adaptors
	rm -rf $(BOOK_ASSETS)/npm
	touch $@

## Real-browser tests (Playwright for Python driving Debian's chromium, installed with apt when missing): every page
## of the built site loads offline with no console error and no missing image, and the λ and k panels change their
## picture when dragged or arrow-keyed, with no kernel; notebook 05 in a live JupyterLab on 127.0.0.1. BOOK picks the
## site: book (full mode, the default) or book-fast (fast mode, what CI builds to stay within its time).
CHROMIUM ?= /usr/bin/chromium
BOOK ?= book
test-browser: setup-browser $(BOOK)
	@test -x $(CHROMIUM) || { echo "installing chromium (apt)"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	BDLIB_CHROMIUM=$(CHROMIUM) BDLIB_SITE=notebooks/_build/$(BOOK)/html $(PY) -m pytest -q tests/browser $(TEST_ARGS)

## On a machine with a CUDA GPU: tests, every notebook on the GPU (toy, and the paper world with random weights),
## the paper-configuration benchmarks; one results file (benchmarks/gpu_check.py; its CPU dry run is a test).
gpu-check: setup
	$(PY) benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check_cuda.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache notebooks/_build
