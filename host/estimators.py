"""scikit-learn estimators: ``ZipMLRegressor`` and ``ZipMLClassifier``.

Both train with :func:`zipml.host.backends.train` on any backend (``reference`` by default;
``golden``, ``rtl``, ``sim`` and ``board`` for the engine, ``board=`` naming whose engine) and
predict on the CPU with the user-unit weights.  The classifier maps any two class labels to -1/+1; with more classes it
trains one binary model per class (one-vs-rest).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import backends
from .device import train_board
from .problem import TrainOptions, prepare, resolve

__all__ = ["ZipMLRegressor", "ZipMLClassifier"]


class _ZipMLBase(BaseEstimator):
    def _options(self, model):
        return TrainOptions(model=model, bits=self.bits, quantizer=self.quantizer,
                            levels=self.levels, epochs=self.epochs, lr=self.lr,
                            batch=self.batch, seed=self.seed, lam=self.lam, decay=self.decay,
                            intercept=self.fit_intercept, backend=self.backend, port=self.port,
                            board=self.board, precondition=self.precondition,
                            grid=self.grid, replay=self.replay, store_bits=self.store_bits)

    def _fit_binary(self, X, y, model, task):
        options = self._options(model)
        prepared = prepare(X, y, task, intercept=self.fit_intercept,
                           precondition=self.precondition)
        if self.backend == "board":
            # the serial link's rate is not a training option: the board backend takes it
            res = train_board(prepared, resolve(prepared, options.validate()), baud=self.baud)
        else:
            res = backends.train(prepared, options)
        trouble = res.trouble()
        if trouble is not None:
            warnings.warn(f"zipml: {trouble}", ConvergenceWarning, stacklevel=3)
        w = np.asarray(res.model, dtype=np.float64)
        d = X.shape[1]
        return w[:d], (float(w[d]) if self.fit_intercept else 0.0), res

    def _decision(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_


class ZipMLRegressor(RegressorMixin, _ZipMLBase):
    """Linear regression trained by ZipML low-precision SGD.

    Parameters
    ----------
    bits : int
        Bits per quantized value (1..32; engine backends 1..8).
    quantizer : {"double", "naive", "deterministic", "full"}
    levels : {"uniform", "optimal"}
    epochs : int
    lr : float or None
        Step in scaled units; None derives it from the data.
    batch : int
        Minibatch size.
    backend : str
        ``reference``, ``golden``, ``rtl``, ``sim`` or ``board``.
    port : str or None
        Serial port for ``board``.
    baud : int or None
        ``board``: the UART rate of its bitstream; None: the default of ``board``.
    board : {"icebreaker", "ulx3s"} or None
        ``golden``, ``rtl``, ``sim``: train that board's engine build (``sim`` at its clock and
        baud; `zipml.host.backend_engine.board_build`), None golden's default engine (W = 32).
        ``board``: which board, for the default ``baud`` (`zipml.host.device.board_baud`); the
        engine is the bitstream's. Not with ``reference``.
    seed : int
        Shuffle and rounding seed.
    lam : float
        L2 regularization.
    decay : float or None
        Per-epoch step multiplier; None derives it from ``epochs``.
    fit_intercept : bool
    precondition : {"whiten", "center", "none"}
    grid : {"floor", "symmetric"}
        The quantization grid (docs/engine.md, "Grids"); floor by default.
    replay : bool or None
        Engine backends: True trains in store mode (upload once, codes drawn on the board every
        epoch; docs/store.md), False streams, None (default) stores when the data fits.
    store_bits : int or None
        Store mode's stored precision (default: the largest up to 8 that fits).

    Attributes
    ----------
    coef_ : ndarray (n_features,)
    intercept_ : float
    mse_ : list of float
        Training MSE per epoch.
    result_ : zipml.host.problem.TrainResult
    """

    def __init__(self, bits=8, quantizer="double", levels="uniform", epochs=20, lr=None,
                 batch=1, backend="reference", port=None, baud=None, board=None, seed=0,
                 lam=0.0, decay=None, fit_intercept=True, precondition="whiten", grid="floor",
                 replay=None, store_bits=None):
        self.grid = grid
        self.replay = replay
        self.store_bits = store_bits
        self.bits = bits
        self.quantizer = quantizer
        self.levels = levels
        self.epochs = epochs
        self.lr = lr
        self.batch = batch
        self.backend = backend
        self.port = port
        self.baud = baud
        self.board = board
        self.seed = seed
        self.lam = lam
        self.decay = decay
        self.fit_intercept = fit_intercept
        self.precondition = precondition

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        coef, icpt, res = self._fit_binary(X, y, "linreg", "regression")
        self.coef_, self.intercept_ = coef, icpt
        self.mse_ = list(res.mse)
        self.result_ = res
        return self

    def predict(self, X):
        return self._decision(X)


class ZipMLClassifier(ClassifierMixin, _ZipMLBase):
    """Linear classifier (logistic, hinge/SVM or least-squares SVM) by ZipML low-precision SGD.

    Parameters are those of :class:`ZipMLRegressor` plus ``model`` in
    {"logistic", "svm", "lssvm"}.

    Attributes
    ----------
    classes_ : ndarray
    coef_ : ndarray (1, n_features) for two classes, (n_classes, n_features) otherwise
    intercept_ : ndarray
    """

    def __init__(self, model="logistic", bits=8, quantizer="double", levels="uniform",
                 epochs=20, lr=None, batch=1, backend="reference", port=None, baud=None,
                 board=None, seed=0, lam=0.0, decay=None, fit_intercept=True,
                 precondition="whiten", grid="floor", replay=None, store_bits=None):
        self.grid = grid
        self.replay = replay
        self.store_bits = store_bits
        self.model = model
        self.bits = bits
        self.quantizer = quantizer
        self.levels = levels
        self.epochs = epochs
        self.lr = lr
        self.batch = batch
        self.backend = backend
        self.port = port
        self.baud = baud
        self.board = board
        self.seed = seed
        self.lam = lam
        self.decay = decay
        self.fit_intercept = fit_intercept
        self.precondition = precondition

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if self.model not in ("logistic", "svm", "lssvm"):
            raise ValueError(f"model must be logistic, svm or lssvm, got {self.model!r}")
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"need samples of at least 2 classes, got 1 class: "
                             f"{self.classes_[0]!r}")
        # two classes: one model, +1 for classes_[1] (scikit-learn's convention)
        targets = self.classes_[1:] if self.classes_.size == 2 else self.classes_
        coefs, icpts = [], []
        for c in targets:
            yb = np.where(y == c, 1.0, -1.0)
            coef, icpt, _ = self._fit_binary(X, yb, self.model, "classification")
            coefs.append(coef)
            icpts.append(icpt)
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.asarray(icpts)
        return self

    def decision_function(self, X):
        z = self._decision(X)
        return z[:, 0] if self.classes_.size == 2 else z

    def predict(self, X):
        z = self.decision_function(X)
        if self.classes_.size == 2:
            return self.classes_[(z > 0).astype(int)]
        return self.classes_[np.argmax(z, axis=1)]
