"""Real datasets that work offline: a registry of sets shipped inside installed packages, and
LIBSVM/svmlight files read with :func:`sklearn.datasets.load_svmlight_file`.

Bundled (scikit-learn ships them in its wheel; nothing is downloaded):

=============  ==============  =========  =============================================
name           task            n x d      labels
=============  ==============  =========  =============================================
diabetes       regression      442 x 10   disease progression after one year
breast_cancer  classification  569 x 30   +1 malignant, -1 benign
digits         classification  1797 x 64  +1 digits 5-9, -1 digits 0-4
wine           classification  178 x 13   +1 cultivar 0, -1 the others
iris           classification  100 x 4    +1 virginica, -1 versicolor (not separable)
linnerud       regression      20 x 3     weight from exercise counts
fair           regression      6366 x 8   time in affairs (statsmodels, optional)
fair_any       classification  6366 x 8   +1 any affair, -1 none (statsmodels, optional)
randhie        regression      20190 x 9  outpatient visits, RAND health insurance
                                          experiment (statsmodels, optional)
=============  ==============  =========  =============================================

The larger sets ship inside statsmodels' wheel (``pip install statsmodels``); without it they
give one clear error.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris,
                              load_linnerud, load_svmlight_file, load_wine)

from .problem import MAX_FEATURES, Dataset

__all__ = ["BUNDLED", "load", "load_bundled", "load_svmlight", "names"]


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, y, "regression"


def _breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X, np.where(y == 0, 1.0, -1.0), "classification"     # target 0 = malignant


def _digits():
    X, y = load_digits(return_X_y=True)
    return X, np.where(y >= 5, 1.0, -1.0), "classification"


def _wine():
    X, y = load_wine(return_X_y=True)
    return X, np.where(y == 0, 1.0, -1.0), "classification"


def _iris():
    X, y = load_iris(return_X_y=True)
    keep = y > 0
    return X[keep], np.where(y[keep] == 2, 1.0, -1.0), "classification"


def _linnerud():
    d = load_linnerud()
    return d.data, d.target[:, 0], "regression"


def _statsmodels(name):
    try:
        # lazy: statsmodels is optional (the `data` extra); only these sets need it
        from statsmodels import datasets as smd
    except ImportError:
        raise ValueError(f"dataset {name!r} ships with statsmodels, which is not installed "
                         f"(pip install statsmodels)") from None
    d = getattr(smd, name).load_pandas()
    return np.asarray(d.exog, dtype=np.float64), np.asarray(d.endog, dtype=np.float64)


def _fair():
    X, y = _statsmodels("fair")
    return X, y, "regression"


def _fair_any():
    X, y = _statsmodels("fair")
    return X, np.where(y > 0, 1.0, -1.0), "classification"


def _randhie():
    X, y = _statsmodels("randhie")
    return X, y, "regression"


BUNDLED = {
    "diabetes": _diabetes,
    "breast_cancer": _breast_cancer,
    "digits": _digits,
    "wine": _wine,
    "iris": _iris,
    "linnerud": _linnerud,
    "fair": _fair,
    "fair_any": _fair_any,
    "randhie": _randhie,
}


def names() -> list[str]:
    return sorted(BUNDLED)


def load_bundled(name: str) -> Dataset:
    """A bundled dataset by name."""
    if name not in BUNDLED:
        raise ValueError(f"unknown dataset {name!r}: not a file and not one of "
                         f"{', '.join(names())}")
    X, y, task = BUNDLED[name]()
    return Dataset(X=np.asarray(X, dtype=np.float64), y=np.asarray(y, dtype=np.float64),
                   name=name, task=task)


#: the largest dense copy of a file (the sparse file is checked against it before the copy)
MAX_DENSE_BYTES = 4 << 30


def load_svmlight(path: str, task: str | None = None) -> Dataset:
    """A LIBSVM/svmlight file (dense copy of the sparse matrix).

    ``task`` None guesses: labels all in {-1, +1} -> classification, else regression.
    Raises ValueError naming the file for a missing, empty or malformed file.
    """
    if not os.path.exists(path):
        raise ValueError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an svmlight file")
    try:
        X, y = load_svmlight_file(path)
    except (ValueError, IndexError, UnicodeDecodeError, RuntimeError) as exc:
        msg = str(exc)
        msg = msg if len(msg) <= 120 else msg[:117] + "..."
        raise ValueError(f"{path} is not a valid svmlight file: {msg}") from None
    if X.shape[0] == 0:
        raise ValueError(f"{path} holds no samples")
    n, d = X.shape
    if d > MAX_FEATURES:
        raise ValueError(f"{path}: feature indices up to {d}, more than zipml trains "
                         f"({MAX_FEATURES} features; a board's engine takes its D_MAX, 1024 "
                         f"to 4096)")
    if n * d * 8 > MAX_DENSE_BYTES:
        raise ValueError(f"{path}: {n} x {d} is {n * d * 8 / 2**30:.1f} GiB as dense floats, "
                         f"more than the {MAX_DENSE_BYTES / 2**30:.0f} GiB zipml copies a file "
                         f"into: train on a subset")
    X = X.toarray()
    y = np.asarray(y, dtype=np.float64)
    if task is None:
        task = "classification" if np.isin(y, (-1.0, 1.0)).all() else "regression"
    return Dataset(X=X, y=y, name=os.path.basename(path), task=task)


def load(spec: str, task: str | None = None) -> Dataset:
    """A bundled name or an svmlight file path (a path wins if both exist)."""
    if os.path.exists(spec) or os.sep in spec or spec.endswith((".svm", ".txt", ".libsvm")):
        return load_svmlight(spec, task)
    ds = load_bundled(spec)
    if task is not None and task != ds.task:
        raise ValueError(f"dataset {spec!r} is a {ds.task} set, the model needs {task}")
    return ds
