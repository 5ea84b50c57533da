# geoseg: the two commands of README.md.
#   make demo   install everything into .venv and run workflows/demo.yaml
#   make test   install everything (with test tools) and run the test suite
#   make lint   ruff (lint + format check) and mypy --strict; CI runs it before the tests
# PYTEST_ARGS='-m "not slow"' skips the slow end-to-end tests during development.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test lint

$(BIN)/geoseg: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/geoseg

demo: install
	$(BIN)/geoseg run workflows/demo.yaml --overwrite

test: install
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check geoseg tests samples benchmarks qgis
	$(BIN)/ruff format --check geoseg tests samples benchmarks qgis
	$(BIN)/mypy geoseg
