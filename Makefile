# Everything is created from a clean checkout: `make setup` builds .venv from the registries.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
PRESET ?= tiny-random
BUILD  ?= build
REPO   ?= $(BUILD)/$(PRESET)/model_repository

.PHONY: setup test lint export serve demo eval-shapes clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

test: setup
	$(PYTHON) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check vhs export client benchmarks tests model_repository

clean:
	rm -rf $(BUILD)
