# Two entry points a newcomer needs: `make run` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean test-container

# What `hookbot serve` needs and nothing more: `make run` on a fresh clone installs no test tools.
$(BIN)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# `make test` adds the test tools to the same venv. The example plugin is installed too (not named in any config,
# so it does not run): the tests then prove that an installed third-party plugin changes nothing until it is
# named, and examples/labeler's own test keeps the plugin contract honest.
$(BIN)/.installed: $(BIN)/.runtime pyproject.toml examples/labeler/pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps -e examples/labeler
	touch $@

run: $(BIN)/.runtime
	$(BIN)/hookbot serve

lint: $(BIN)/.installed
	$(BIN)/ruff check bot handlers tests bench examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The Dockerfile built and run for real with podman (installed through apt when missing), as `docker run` would run
# it: see tests/deploy/container/run.py. Where podman cannot run it says so and exits 0, having tested nothing.
test-container: $(BIN)/.installed
	$(BIN)/python -m tests.deploy.container.run

# A benchmark, not a test: CI never runs it. It installs wrk (apt), the `fast` extra, matplotlib and py-spy into the
# venv, and the Node.js peers (Probot, @octokit/webhooks) into bench/node when Node.js is there, then measures
# them, a bare aiohttp handler and a bedevere-style peer beside `hookbot serve`, and rewrites BENCHMARKS.md's table.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--rounds 1 --duration 5" or "--breakdown".
bench: $(BIN)/.installed
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m pip install --quiet -e '.[test,fast]' matplotlib py-spy
	if command -v npm >/dev/null; then npm ci --prefix bench/node --no-audit --no-fund --silent; fi
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
