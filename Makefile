# One command to run the studio, one to test it; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama-cpp-python compiles llama.cpp; its native CPU detection crashes on some CPUs (AMX),
# so build a portable binary. pip caches the wheel: later installs take a second.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup run chat test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: set up, then start the studio in the terminal (embedded Postgres, no setup needed)
run: setup
	$(BIN)/creative-studio chat

## test: set up, then lint, type-check and run the whole test suite
test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.models
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.comfyui

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
