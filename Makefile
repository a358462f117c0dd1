# bdlib: every target creates the local virtual environment (.venv) first when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bdlib-installed

.PHONY: setup demo figures evaluate test lint unit notebooks notebooks-full gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev]"
	touch $(STAMP)

## The main job: a blended edit of the shipped toy example (figures/edit_example*.png) and the
## forward/reverse diffusion figure (figures/demo.png), on CPU.
demo: setup
	$(PY) -m bdlib edit --world toy --image bdlib/examples/scene.png --mask bdlib/examples/scene_mask.png \
		--prompt "a red circle" --samples 4 --out figures/edit_example.png
	$(PY) -m bdlib demo --out figures/demo.png

## Every figure of the README and the notebooks, regenerated from the code (CPU, about a minute).
figures: setup
	$(PY) -m bdlib figures --out figures

## The toy editing benchmark (200 oracle-judged tasks, every setting; about 40 minutes on 2 CPU cores).
evaluate: setup
	$(PY) -m bdlib evaluate --out figures/evaluation.json

## Everything CI checks: lint, unit tests, and every notebook in fast mode (CPU, 5-20 s each).
test: setup lint unit notebooks

lint: setup
	$(PY) -m ruff check bdlib tests benchmarks
	$(PY) -m ruff check --extend-ignore E402,E501,B018 --extend-exclude notebooks/_build notebooks

unit: setup
	$(PY) -m pytest -q

## The notebooks (notebooks/NN_*.py), each executed from a fresh kernel by papermill; outputs and
## timings in notebooks/_build/. Fast mode is the CPU CI configuration; full mode is the course's.
## Pass options through ARGS, e.g. `make notebooks ARGS="--only 01 03"` or ARGS="--device cuda".
notebooks: setup
	$(PY) notebooks/run_notebooks.py $(ARGS)

notebooks-full: setup
	$(PY) notebooks/run_notebooks.py --full $(ARGS)

## On a machine with a CUDA GPU: tests, every notebook on the GPU (toy, and the paper world with random weights),
## the paper-configuration benchmarks; one results file (benchmarks/gpu_check.py; its CPU dry run is a test).
gpu-check: setup
	$(PY) benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check_cuda.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache notebooks/_build
