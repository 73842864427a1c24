import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root():
    return ROOT


# The suite's simulations are short: a model compiled at -O0 builds in half the time of -O2
# and runs them as fast overall (sim/verilator.py `sim_opt`; benchmarks keep -O2).
os.environ.setdefault("ZIPML_SIM_OPT", "-O0")
