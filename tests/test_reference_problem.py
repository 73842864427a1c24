"""prepare / Prepared: scaling, preconditioning, user units, bad input; sample order."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

from zipml.host.problem import (PRECONDITIONS, TrainOptions, default_decay, default_lr,
                                prepare, resolve, sample_order)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) * [1, 10, 100, 0.1, 5, 1]
    X = X + [0, 50, -3, 7, 0, 1000]
    y = X @ rng.standard_normal(6) + 3 + rng.standard_normal(300)
    return X, y


@pytest.mark.parametrize("prec", PRECONDITIONS)
def test_closed_form_in_user_units_matches_sklearn(data, prec):
    X, y = data
    p = prepare(X, y, "regression", precondition=prec)
    assert p.A.min() >= -1 and p.A.max() <= 1
    assert np.all(p.A[:, -1] == 1)                 # intercept column last, exactly 1
    w = p.to_user(p.least_squares())
    ls = LinearRegression().fit(X, y)
    assert np.allclose(w[:-1], ls.coef_, rtol=1e-6, atol=1e-8)
    assert w[-1] == pytest.approx(ls.intercept_, rel=1e-6)
    assert p.optimum_mse() == pytest.approx(np.mean((ls.predict(X) - y) ** 2), rel=1e-9)
    x = p.least_squares()
    assert np.allclose(p.from_user(p.to_user(x)), x)
    assert p.predict_user(X, w) == pytest.approx(p.predict_scaled(x))


def test_whitening_decorrelates(data):
    X, y = data
    A = prepare(X, y, "regression").A[:, :-1]
    C = np.corrcoef(A, rowvar=False)
    assert np.max(np.abs(C - np.eye(C.shape[0]))) < 1e-8
    raw = np.corrcoef(prepare(X, y, "regression", precondition="none").A[:, :-1], rowvar=False)
    assert np.max(np.abs(raw - np.eye(raw.shape[0]))) > 0.3


def test_no_intercept_keeps_the_origin(data):
    X, y = data
    p = prepare(X, y, "regression", intercept=False, precondition="none")
    assert p.d == X.shape[1]
    w = p.to_user(p.least_squares())
    ref, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.allclose(w, ref, rtol=1e-6)


def test_rank_deficient_columns(data):
    X, y = data
    Xd = np.hstack([X, X[:, :1] * 2, np.full((X.shape[0], 1), 4.0)])   # duplicate + constant
    p = prepare(Xd, y, "regression")
    assert p.d == X.shape[1] + 1                   # null directions dropped
    w = p.to_user(p.least_squares())
    assert w.shape == (Xd.shape[1] + 1,)
    pred = Xd @ w[:-1] + w[-1]
    assert np.mean((pred - y) ** 2) == pytest.approx(
        np.mean((LinearRegression().fit(X, y).predict(X) - y) ** 2), rel=1e-6)


def test_classification_labels():
    X, y = load_diabetes(return_X_y=True)
    yb = np.where(y > 140, 1, -1)
    p = prepare(X, yb, "classification")
    assert set(p.b) == {-1.0, 1.0} and p.b_scale == 1
    with pytest.raises(ValueError, match="-1/\\+1"):
        prepare(X, (yb > 0).astype(int), "classification")


@pytest.mark.parametrize("X, y, match", [
    (np.array([[1.0, np.nan]]), np.array([1.0]), "NaN or inf"),
    (np.array([[1.0, np.inf]]), np.array([1.0]), "NaN or inf"),
    (np.array([[1.0, 2.0]]), np.array([np.nan]), "labels contain"),
    (np.ones((3, 2)), np.ones(4), "3 samples but y has 4"),
    (np.ones((0, 2)), np.ones(0), "at least one sample"),
    (np.ones(3), np.ones(3), "2-d"),
])
def test_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        prepare(X, y, "regression")


def test_sample_order_is_a_seeded_permutation_per_epoch():
    a = sample_order(1000, 0, 5)
    assert np.array_equal(np.sort(a), np.arange(1000))
    assert np.array_equal(a, sample_order(1000, 0, 5))
    assert not np.array_equal(a, sample_order(1000, 1, 5))
    assert not np.array_equal(a, sample_order(1000, 0, 6))


def test_default_lr_follows_the_worst_row_and_the_batch(data):
    X, y = data
    p = prepare(X, y, "regression")
    # full: no rounding variance, 0.5 / max |a|^2 (formula of docs/reference.md)
    full = default_lr(p, TrainOptions(quantizer="full"))
    assert full == pytest.approx(0.5 / np.max(np.sum(p.A ** 2, axis=1)))
    assert default_lr(p, TrainOptions(quantizer="full", batch=4)) == pytest.approx(full / 4)
    # rounding variance makes the step smaller, more at fewer bits
    assert default_lr(p, TrainOptions(bits=2)) < default_lr(p, TrainOptions(bits=8)) < full
    assert default_lr(p, TrainOptions(model="logistic", quantizer="full")) == pytest.approx(4 * full)


def test_resolve_fills_lr_and_decay_only_when_missing(data):
    X, y = data
    p = prepare(X, y, "regression")
    r = resolve(p, TrainOptions(epochs=30))
    assert r.lr > 0 and r.decay == pytest.approx(0.001 ** (1 / 29))
    assert resolve(p, TrainOptions(lr=0.01, decay=1.0)).lr == 0.01
    assert default_decay(TrainOptions(epochs=1)) == 1.0


@pytest.mark.parametrize("kw, match", [
    (dict(bits=0), "bits"), (dict(epochs=0), "epochs"), (dict(model="x"), "model"),
    (dict(quantizer="x"), "quantizer"), (dict(lr=-1.0), "lr"), (dict(decay=1.5), "decay"),
    (dict(batch=0), "batch"), (dict(levels="optimal", quantizer="full"), "optimal"),
])
def test_options_validate(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainOptions(**kw).validate()
