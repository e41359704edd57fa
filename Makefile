# Two entry points a newcomer needs: `make run` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean test-container

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/hookbot serve

lint: $(BIN)/.installed
	$(BIN)/ruff check bot handlers tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The Dockerfile built and run for real with podman (installed through apt when missing), as `docker run` would run
# it: see tests/container/run.py. Where podman cannot run it says so and exits 0, having tested nothing.
test-container: $(BIN)/.installed
	$(BIN)/python -m tests.container.run

# A benchmark, not a test: CI never runs it. It installs wrk (apt) and the `fast` extra, matplotlib and py-spy
# into the venv, then measures bare aiohttp and a bedevere-style peer against `hookbot serve` and rewrites
# BENCHMARKS.md's table.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--rounds 1 --duration 5" or "--breakdown".
bench: $(BIN)/.installed
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m pip install --quiet -e '.[test,fast]' matplotlib py-spy
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
