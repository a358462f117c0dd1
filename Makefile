# bdlib: every target creates the local virtual environment (.venv) first when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bdlib-installed

.PHONY: setup demo test lint unit notebooks notebooks-full figures benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev]"
	touch $(STAMP)

## The main job: a short demo on CPU that writes figures/demo.png.
demo: setup
	$(PY) -m bdlib demo --out figures/demo.png

## Everything CI checks: lint, unit tests.
test: setup lint unit

lint: setup
	$(PY) -m ruff check bdlib tests benchmarks

unit: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
