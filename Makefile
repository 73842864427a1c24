# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,boards,data
BOARD  ?= icebreaker
PYTEST_ARGS ?=


.PHONY: install demo test test-slow bench bench-host pnr bitstream flash clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

# The main job: train a bundled real dataset on the simulated board (the board system in
# Verilator, over the framed UART link) and write the loss plot and figures.
demo: $(STAMP)
	$(VENV)/bin/zipml demo --backend sim --out results/demo

# The test suite CI runs: the linter, then everything but the `slow` matrices.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Every q, every d, both boards placed and routed.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/zipml bench engine --json results/bench_engine.json --md results/bench_engine.md

bench-host: $(STAMP)
	$(VENV)/bin/zipml bench host --json results/bench_host.json

# Timing of the engine alone (LFSR-fed top), per board.
pnr: $(STAMP)
	$(VENV)/bin/zipml build --board $(BOARD) --target engine --json results/pnr_$(BOARD)_engine.json

bitstream: $(STAMP)
	$(VENV)/bin/zipml build --board $(BOARD) --json results/build_$(BOARD).json

flash: $(STAMP)
	$(VENV)/bin/zipml flash --board $(BOARD)

clean:
	rm -rf build sim_build .pytest_cache
