# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,boards,data
BOARD  ?= icebreaker
PYTEST_ARGS ?=


.PHONY: install demo test test-slow bench bench-host pnr bitstream flash clean
.PHONY: experiments

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

# The test suite CI runs: the linter, then everything but the `slow` matrices, one worker per
# core (pytest-xdist; a test file stays on one worker, so its fixtures are built once).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -n auto --dist loadfile $(PYTEST_ARGS)

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

# The paper's claims and the datasets as experiments (issue 9): engine runs on golden with exact
# cycles (a, b, datasets, scaling) and float-reference sweeps (a, c, d), minutes each, then
# docs/results.md from their JSON
XP := $(VENV)/bin/zipml experiment
XR := results/experiments
experiments: $(STAMP)
	$(XP) svmlight-example build/experiments/lowrank_2000x20.svm
	$(XP) diabetes --bits 1,2,3,4,5,6,7,8 --claim a,b --json $(XR)/engine_diabetes.json --plots $(XR)/engine_diabetes --quiet
	$(XP) breast_cancer --claim b,datasets --json $(XR)/engine_classification.json --plots $(XR)/engine_classification --quiet
	$(XP) build/experiments/lowrank_2000x20.svm --quantizers double,naive,full --seeds 2 --claim b,datasets --json $(XR)/engine_svmlight.json --plots $(XR)/engine_svmlight --quiet
	$(XP) $(foreach D,15 63 255 1023 4095,--synthetic 4096,$(D),0) --quantizers double,naive,full --epochs 1 --seeds 1 --claim scaling --json $(XR)/engine_scaling.json --plots $(XR)/engine_scaling --quiet
	$(XP) sweep diabetes build/experiments/lowrank_2000x20.svm --seeds 5 --claim a --json $(XR)/reference_bias.json --plots $(XR)/reference_bias --quiet
	$(XP) sweep diabetes build/experiments/lowrank_2000x20.svm --variants double,double:grid=symmetric,double:levels=optimal --claim c --json $(XR)/reference_levels.json --plots $(XR)/reference_levels --quiet
	$(XP) sweep breast_cancer digits --model svm,logistic --variants double,naive,naive:refetch,full --bits 2,3,4,6,8 --claim d --json $(XR)/reference_nonlinear.json --plots $(XR)/reference_nonlinear --quiet
	$(XP) report $(XR)/*.json --md docs/results.md

clean:
	rm -rf build sim_build .pytest_cache
