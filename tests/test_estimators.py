"""scikit-learn estimators: scikit-learn's own check_estimator on the reference backend, and a
fit close to least squares / to scikit-learn's linear models."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import zipml
from zipml.host.estimators import ZipMLClassifier, ZipMLRegressor


def _check(est):
    res = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in res
              if r["status"] == "failed"]
    assert not failed, failed
    assert len(res) > 40


# The whole scikit-learn battery with few epochs: a few seconds.
@pytest.mark.parametrize("est", [ZipMLRegressor(epochs=5), ZipMLClassifier(epochs=5),
                                 ZipMLClassifier(model="svm", epochs=3, bits=2)],
                         ids=["regressor", "logistic", "svm-q2"])
def test_check_estimator(est):
    _check(est)


@pytest.mark.slow
@pytest.mark.parametrize("est", [ZipMLRegressor(), ZipMLClassifier(),
                                 ZipMLClassifier(model="lssvm", quantizer="naive")],
                         ids=["regressor", "classifier", "lssvm-naive"])
def test_check_estimator_defaults(est):
    _check(est)


def test_root_exports_are_the_estimators():
    assert zipml.ZipMLRegressor is ZipMLRegressor and zipml.ZipMLClassifier is ZipMLClassifier


def test_regressor_fits_close_to_least_squares():
    X, y = load_diabetes(return_X_y=True)
    ls = LinearRegression().fit(X, y)
    best = np.mean((ls.predict(X) - y) ** 2)
    for bits in (2, 8):
        m = ZipMLRegressor(bits=bits, epochs=20, seed=1).fit(X, y)
        mse = np.mean((m.predict(X) - y) ** 2)
        assert mse <= best * (1.05 if bits == 2 else 1.01)
        assert m.mse_[-1] == pytest.approx(mse, rel=1e-9)
    assert m.get_params()["bits"] == 8
    m.set_params(bits=3)
    assert m.bits == 3


def test_classifier_matches_sklearn_accuracy_with_string_labels():
    X, y = load_breast_cancer(return_X_y=True)
    names = np.array(["benign", "malignant"])[y]
    ref = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, names).score(X, names)
    m = ZipMLClassifier(bits=4, epochs=10).fit(X, names)
    assert set(m.predict(X[:20])) <= set(names)
    assert m.score(X, names) >= ref - 0.04
    assert m.decision_function(X).shape == (X.shape[0],)


def test_multiclass_one_vs_rest():
    X, y = load_iris(return_X_y=True)
    m = ZipMLClassifier(model="lssvm", bits=8, epochs=20).fit(X, y)
    assert m.coef_.shape == (3, 4) and m.score(X, y) >= 0.8


def test_bad_parameters_raise_on_fit():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="bits"):
        ZipMLRegressor(bits=0).fit(X, y)
    with pytest.raises(ValueError, match="backend"):
        ZipMLRegressor(backend="nope").fit(X, y)


def test_board_chooses_the_engine_of_the_engine_backends():
    """``board=`` trains that board's engine on golden (the iCEBreaker's W = 8 serial engine,
    without L2), equal to golden on that config; L2 there is refused; not on reference."""
    from zipml.host.backend_engine import train_golden
    from zipml.host.problem import TrainOptions, prepare, resolve
    from zipml.hw.boards import BOARDS
    from zipml.reference.golden import EngineConfig
    X, y = load_diabetes(return_X_y=True)
    m = ZipMLRegressor(backend="golden", board="icebreaker", bits=3, epochs=2).fit(X, y)
    engine = dict(BOARDS["icebreaker"].engine)
    l2 = engine.pop("L2")
    assert m.result_.extra["config"] == {"ARCH": "parallel", **engine}
    assert m.result_.extra["L2"] is l2
    prepared = prepare(X, y, "regression")
    gold = train_golden(prepared, resolve(prepared, TrainOptions(bits=3, epochs=2)),
                        config=EngineConfig(**engine))
    assert m.result_.model_raw == gold.model_raw
    with pytest.raises(ValueError, match="built without L2"):
        ZipMLRegressor(backend="golden", board="icebreaker", lam=0.01, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="reference backend has none"):
        ZipMLRegressor(board="icebreaker", epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="unknown board 'de10'"):
        ZipMLRegressor(backend="golden", board="de10", epochs=1).fit(X, y)
