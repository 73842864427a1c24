import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root():
    return ROOT


# The suite's models are compiled at -O1: faster to build than -O2 and, on the fuzz of the board
# system, as fast to run (-O0 builds faster still but runs 3x slower; sim/verilator.py `sim_opt`;
# benchmarks keep -O2).
os.environ.setdefault("ZIPML_SIM_OPT", "-O1")


@pytest.fixture(scope="session")
def diabetes_prepared():
    """scikit-learn's diabetes (442 x 10), prepared for regression as the CLI does."""
    from sklearn.datasets import load_diabetes

    from zipml.host.problem import prepare
    X, y = load_diabetes(return_X_y=True)
    return prepare(X, y, "regression")
