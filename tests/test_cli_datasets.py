"""Dataset registry (bundled sets, offline) and svmlight files."""

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

from zipml.host import datasets

SHAPES = {"diabetes": (442, 10, "regression"), "breast_cancer": (569, 30, "classification"),
          "digits": (1797, 64, "classification"), "wine": (178, 13, "classification"),
          "iris": (100, 4, "classification"), "linnerud": (20, 3, "regression")}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bundled(name):
    ds = datasets.load(name)
    n, d, task = SHAPES[name]
    assert ds.X.shape == (n, d) and ds.y.shape == (n,) and ds.task == task
    assert np.isfinite(ds.X).all()
    if task == "classification":
        assert set(np.unique(ds.y)) == {-1.0, 1.0}


@pytest.mark.parametrize("name, n, d", [("fair", 6366, 8), ("randhie", 20190, 9)])
def test_statsmodels_sets(name, n, d):
    pytest.importorskip("statsmodels")
    ds = datasets.load(name)
    assert ds.X.shape == (n, d) and ds.task == "regression"
    assert set(np.unique(datasets.load("fair_any").y)) == {-1.0, 1.0}


def test_svmlight_roundtrip_and_task_guess(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 7))
    X[X < 0.5] = 0                                 # sparse, as LIBSVM files are
    p = tmp_path / "r.svm"
    dump_svmlight_file(X, rng.standard_normal(50), str(p))
    ds = datasets.load(str(p))
    assert ds.task == "regression" and ds.name == "r.svm"
    assert np.allclose(ds.X[:, :ds.X.shape[1]], X[:, :ds.X.shape[1]])
    c = tmp_path / "c.svm"
    dump_svmlight_file(X, np.where(rng.random(50) < 0.5, -1, 1), str(c))
    assert datasets.load(str(c)).task == "classification"


def test_unknown_name_lists_the_registry():
    with pytest.raises(ValueError, match="diabetes"):
        datasets.load("not_a_set")


def test_a_classifier_rejects_a_regression_set():
    with pytest.raises(ValueError, match="regression"):
        datasets.load("diabetes", task="classification")
