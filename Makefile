# One command to run the studio, one to test it; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
# llama-cpp-python compiles llama.cpp; its native CPU detection crashes on some CPUs (AMX),
# so build a portable binary. pip caches the wheel: later installs take a second.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export NEXT_TELEMETRY_DISABLED := 1

.PHONY: setup web-setup web run chat test lint pytest web-test chromium bench screenshots clean workers

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

web-setup: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

## web: build the web app (a static export in web/out, served by `creative-studio serve`)
web: web-setup
	cd web && npm run build

## run: set up, build the web app, then serve the studio on http://127.0.0.1:8420
run: setup web
	$(BIN)/creative-studio serve

## chat: the studio in the terminal
chat: setup
	$(BIN)/creative-studio chat

## test: set up, then lint, type-check and run every test (Python, web components, browser)
test: setup lint pytest web-test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p .mypy_root && ln -sfn .. .mypy_root/creative_studio
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/pytest

# Browser tests drive Debian's Chromium (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

web-test: setup web-setup chromium
	cd web && npm run lint && npm test && npm run build && npm run e2e

## screenshots: regenerate docs/screenshots/*.png in headless Chromium
screenshots: setup web chromium
	cd web && npm run screenshots

bench: setup
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.models
	$(BIN)/python -m bench.model_client
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.comfyui

## workers: N studio workers on one PostgreSQL (embedded unless CREATIVE_STUDIO_DATABASE_URL)
N ?= 2
workers: setup
	scripts/workers.sh $(N)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache web/node_modules web/.next web/out
