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


@pytest.fixture(scope="session")
def diabetes_prepared():
    """scikit-learn's diabetes (442 x 10), prepared for regression as the CLI does."""
    from sklearn.datasets import load_diabetes

    from zipml.host.problem import prepare
    X, y = load_diabetes(return_X_y=True)
    return prepare(X, y, "regression")
