"""The training problem every backend sees: scaled data, options, result.

:func:`prepare` turns user data into the scaled problem of docs/design.md §2 (each feature column
divided by its max |value| into [-1, 1]; regression labels by max |y|; classification labels
+-1; an intercept column of ones, last).  :class:`Prepared` keeps the scales so a model found in
scaled units maps back to the user's units (:meth:`Prepared.to_user`), and measures MSE and
accuracy in the user's units.  :class:`TrainOptions` is what ``zipml train`` takes;
:class:`TrainResult` is what every backend returns.  :func:`default_lr` and
:func:`sample_order` are shared by all backends so they train the same problem the same way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..reference.order import order_function, sample_order
from ..reference.quantize import GRIDS, QUANTIZERS, STOCHASTIC, check_grid, variance

__all__ = ["MODELS", "PRECONDITIONS", "QUANTIZERS", "LEVELS", "TASKS", "Dataset", "Prepared", "prepare",
           "TrainOptions", "TrainResult", "default_lr", "default_decay", "resolve",
           "sample_order", "task_of", "GRIDS"]

MODELS = ("linreg", "lssvm", "svm", "logistic")
LEVELS = ("uniform", "optimal")
TASKS = ("regression", "classification")
#: feature preprocessing of :func:`prepare` before max-abs scaling (docs/reference.md)
PRECONDITIONS = ("whiten", "center", "none")


def task_of(model: str) -> str:
    """linreg is regression; lssvm, svm and logistic classify +-1 labels."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    return "regression" if model == "linreg" else "classification"


@dataclass
class Dataset:
    """User data: ``X`` (n, d) features, ``y`` (n,) labels, a name and a task."""

    X: np.ndarray
    y: np.ndarray
    name: str
    task: str

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")


@dataclass
class Prepared:
    """The scaled problem.

    Attributes
    ----------
    A : ndarray (n, d')
        Features scaled per column by max |value| into [-1, 1]; with ``intercept`` a last
        column of ones (d' = d + 1).
    b : ndarray (n,)
        Labels: regression ``y / b_scale``; classification +-1.
    col_scale : ndarray (d,)
        The max |value| of each centred user column (1 for a constant column).
    b_scale : float
        max |y - b_offset| for regression (1 if that is zero), 1 for classification.
    col_offset : ndarray (d,)
        Column means subtracted before scaling (zeros without intercept).
    b_offset : float
        Label mean subtracted before scaling (regression with intercept; else 0).
    intercept : bool
    task : str
    """

    A: np.ndarray
    b: np.ndarray
    col_scale: np.ndarray
    b_scale: float
    intercept: bool
    task: str
    name: str = ""
    col_offset: np.ndarray | None = None
    b_offset: float = 0.0
    transform: np.ndarray | None = None

    def __post_init__(self):
        if self.col_offset is None:
            self.col_offset = np.zeros_like(self.col_scale)

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        """Features the engine sees, intercept included."""
        return self.A.shape[1]

    def to_user(self, x) -> np.ndarray:
        """Scaled model -> weights in the user's units (intercept last when present).

        The scaled prediction is ``A x`` with ``A_j = (X_j - m_j) / s_j``; in user units
        ``y ~ b_offset + b_scale * A x``, so the weight of column j is ``b_scale * x_j / s_j``
        and the intercept is ``b_offset + b_scale * x_last - sum_j w_j m_j``.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.d,):
            raise ValueError(f"model must have {self.d} weights, got shape {x.shape}")
        if self.transform is not None:
            r = self.transform.shape[1]
            x = np.concatenate([self.transform @ x[:r], x[r:]])
        w = x * self.b_scale
        k = self.col_scale.size
        w[:k] = w[:k] / self.col_scale
        if self.intercept:
            w[k] = w[k] + self.b_offset - float(w[:k] @ self.col_offset)
        return w

    def from_user(self, w) -> np.ndarray:
        """User-unit weights -> scaled model (inverse of :meth:`to_user`)."""
        w = np.asarray(w, dtype=np.float64)
        k = self.col_scale.size
        if w.shape != (k + int(self.intercept),):
            raise ValueError(f"model must have {k + int(self.intercept)} weights, "
                             f"got shape {w.shape}")
        w = w.copy()
        if self.intercept:
            w[k] = w[k] - self.b_offset + float(w[:k] @ self.col_offset)
        x = w / self.b_scale
        x[:k] = x[:k] * self.col_scale
        if self.transform is not None:
            # least squares back through the transform (exact when nothing was dropped)
            z, *_ = np.linalg.lstsq(self.transform, x[:k], rcond=None)
            x = np.concatenate([z, x[k:]])
        return x

    def predict_user(self, X, w) -> np.ndarray:
        """Predictions (regression) or decision values (classification) for user data."""
        X = np.asarray(X, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        k = self.col_scale.size
        out = X @ w[:k]
        if self.intercept:
            out = out + w[k]
        return out

    def predict_scaled(self, x) -> np.ndarray:
        """Training predictions of the scaled model in the user's units."""
        return self.A @ np.asarray(x, dtype=np.float64) * self.b_scale + self.b_offset

    def mse(self, x) -> float:
        """Training MSE of the scaled model ``x`` in the user's units."""
        r = self.A @ np.asarray(x, dtype=np.float64) - self.b
        return float(np.mean(r * r) * self.b_scale ** 2)

    def accuracy(self, x) -> float:
        """Share of training samples whose sign of ``A x`` matches the +-1 label."""
        z = self.A @ np.asarray(x, dtype=np.float64)
        return float(np.mean(np.where(z >= 0, 1.0, -1.0) == self.b))

    def least_squares(self, lam: float = 0.0) -> np.ndarray:
        """Closed-form optimum of ``mean((A x - b)^2) + lam |x|^2`` in scaled units.

        The regularized minimizer is what squared-loss SGD with the L2 shrink ``lr*lam*x`` per
        sample converges to; with ``lam = 0`` it is ordinary least squares (lstsq, so rank
        deficient data gives the minimum-norm solution).
        """
        if lam:
            n, d = self.A.shape
            H = self.A.T @ self.A / n + lam * np.eye(d)
            return np.linalg.solve(H, self.A.T @ self.b / n)
        x, *_ = np.linalg.lstsq(self.A, self.b, rcond=None)
        return x

    def optimum_mse(self, lam: float = 0.0) -> float:
        """User-unit MSE of :meth:`least_squares`."""
        return self.mse(self.least_squares(lam))


def _as_float_2d(X, what="X") -> np.ndarray:
    try:
        if sp.issparse(X):
            X = X.toarray()
    except ImportError:          # scipy comes with scikit-learn; dense input works without it
        pass
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numeric: {exc}") from None
    return X


#: above this many features whitening (a d x d eigendecomposition) falls back to centring
WHITEN_MAX_FEATURES = 2048


#: the widest model trained (above every board's D_MAX; the reference's least-squares optimum
#: and the dense copy of a file grow with it)
MAX_FEATURES = 1 << 16
#: the largest |feature| or |label|: centring and scaling square them (float64 overflows near
#: 1.3e154 squared sums)
MAX_ABS_VALUE = 1e100


def prepare(X, y, task: str, intercept: bool = True, name: str = "",
            precondition: str = "whiten") -> Prepared:
    """Scale user data into the problem of docs/design.md §2.

    Raises ValueError (one message) for empty data, mismatched shapes, NaN/inf, or labels that
    are not +-1 for classification.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    X = _as_float_2d(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d (samples x features), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be 1-d, got shape {y.shape}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise ValueError(f"need at least one sample and one feature, got {n} x {d}")
    if y.shape[0] != n:
        raise ValueError(f"X has {n} samples but y has {y.shape[0]} labels")
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("labels must be numeric") from None
    if not np.isfinite(X).all():
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        raise ValueError(f"features contain NaN or inf (first in sample {bad})")
    if not np.isfinite(y).all():
        bad = int(np.argwhere(~np.isfinite(y))[0][0])
        raise ValueError(f"labels contain NaN or inf (first in sample {bad})")
    if d > MAX_FEATURES:
        raise ValueError(f"{d} features: more than zipml trains ({MAX_FEATURES}; a board's engine "
                         f"takes its D_MAX, 1024 to 4096)")
    for what, v in (("features", X), ("labels", y)):
        big = np.abs(v) > MAX_ABS_VALUE
        if big.any():
            at = np.argwhere(big)[0]
            raise ValueError(f"{what} beyond +-{MAX_ABS_VALUE:g} (first in sample {int(at[0])}: "
                             f"{float(v[tuple(at)]):g}): scaling squares them, which would "
                             f"overflow; rescale the data")
    # With an intercept, centring is free (the intercept absorbs the means, to_user maps them
    # back) and it is what makes SGD converge: a column with a large offset is nearly parallel
    # to the ones column (condition numbers of 1e4 and more), and after max-abs scaling its
    # values would crowd into a corner of the grid.  Without an intercept the model must pass
    # through the user's origin, so the data is only scaled.
    if precondition not in PRECONDITIONS:
        raise ValueError(f"precondition must be one of {PRECONDITIONS}, got {precondition!r}")
    col_offset = X.mean(axis=0) if intercept and precondition != "none" else np.zeros(d)
    Xc = X - col_offset
    col_scale = np.abs(Xc).max(axis=0)
    col_scale[col_scale == 0] = 1.0            # a constant column stays zero
    A = Xc / col_scale
    transform = None
    if precondition == "whiten" and d <= WHITEN_MAX_FEATURES:
        A, transform = _whiten(A)
    if task == "classification":
        bad = ~np.isin(y, (-1.0, 1.0))
        if bad.any():
            vals = np.unique(y[bad])[:5]
            raise ValueError(f"a classifier needs labels -1/+1, found {', '.join(f'{v:g}' for v in vals)}"
                             + (" ..." if np.unique(y[bad]).size > 5 else ""))
        b, b_scale, b_offset = y.copy(), 1.0, 0.0
    else:
        b_offset = float(y.mean()) if intercept else 0.0
        m = float(np.abs(y - b_offset).max())
        b_scale = m if m > 0 else 1.0
        b = (y - b_offset) / b_scale
    if intercept:
        A = np.hstack([A, np.ones((n, 1))])
    # max-abs division can leave 1 + 1ulp nowhere, but clip to be exact for the quantizer
    np.clip(A, -1.0, 1.0, out=A)
    return Prepared(A=np.ascontiguousarray(A), b=b, col_scale=col_scale, b_scale=b_scale,
                    intercept=bool(intercept), task=task, name=name, col_offset=col_offset,
                    b_offset=b_offset, transform=transform)


def _whiten(A):
    """Rotate A onto its principal axes, drop null directions, scale each by max |value|.

    Returns (A @ T, T) with T (d, r): columns of A @ T are uncorrelated (decorrelated, not
    exactly white, because each is then max-abs scaled into [-1, 1]).
    """
    n, d = A.shape
    H = A.T @ A / n
    lam, V = np.linalg.eigh(H)
    keep = lam > lam.max() * 1e-10 if lam.max() > 0 else np.zeros(d, dtype=bool)
    if not keep.any():
        return A, None
    V = V[:, keep][:, ::-1]                   # largest variance first
    Z = A @ V
    s = np.abs(Z).max(axis=0)
    s[s == 0] = 1.0
    T = V / s
    return np.clip(Z / s, -1.0, 1.0), T


@dataclass
class TrainOptions:
    """Options of ``zipml train`` (docs/cli.md); every backend reads the ones it supports.

    ``lr=None`` and ``decay=None`` mean "derive from the data": :func:`resolve` fills them in
    (the CLI and the estimators call it before any backend, so all backends train with the same
    numbers).  ``decay`` is the per-epoch multiplier of the step (1 = constant).  ``board``
    names the board whose engine the engine backends run (golden, rtl, sim: its build,
    `zipml.host.backend_engine.board_build`; board: its default baud); None: golden's config.
    """

    model: str = "linreg"
    bits: int = 8
    quantizer: str = "double"
    levels: str = "uniform"
    grid: str = "floor"
    epochs: int = 10
    lr: float | None = None
    batch: int = 1
    seed: int = 0
    lam: float = 0.0
    decay: float | None = None
    intercept: bool = True
    backend: str = "reference"
    port: str | None = None
    board: str | None = None
    q_model: int | None = None
    q_grad: int | None = None
    degree: int = 7
    refetch: bool = False
    #: store mode (docs/store.md): True uploads once and draws codes on chip every epoch,
    #: False streams every epoch, None (default) stores when the data fits the build's store
    #: on the floor grid and streams otherwise
    replay: bool | None = None
    store_bits: int | None = None
    #: golden and rtl: model a sample store of this many W-bit words instead of the build's
    #: (e.g. the SDRAM store a board does not have yet); None: the build's store
    store_words: int | None = None
    #: sample order of streamed epochs: ``shuffle`` (fresh every epoch) or ``fixed`` (epoch 0's
    #: every epoch, as store mode visits its store)
    order: str = "shuffle"
    precondition: str = "whiten"
    #: engine backends: save the state after every epoch to this path / start from the one
    #: saved there (`zipml.host.checkpoint`)
    checkpoint: str | None = None
    resume: str | None = None

    def validate(self, max_bits: int = 32) -> "TrainOptions":
        """Raise ValueError with one message naming the first bad option; return self."""
        task_of(self.model)
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, "
                             f"got {self.quantizer!r}")
        check_grid(self.grid)
        order_function(self.order)
        if self.store_words is not None:
            _check_int("store_words", self.store_words, 1, None)
            if self.backend in ("sim", "board"):
                raise ValueError(f"store_words models a store on golden and rtl; the "
                                 f"{self.backend} backend has the build's own store")
        if self.levels not in LEVELS:
            raise ValueError(f"levels must be one of {', '.join(LEVELS)}, got {self.levels!r}")
        _check_int("bits", self.bits, 1, max_bits)
        _check_int("epochs", self.epochs, 1, None)
        _check_int("batch", self.batch, 1, None)
        _check_int("seed", self.seed, 0, None)
        _check_int("degree", self.degree, 1, 15)
        if self.lr is not None and not (_is_real(self.lr) and math.isfinite(self.lr)
                                        and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (_is_real(self.lam) and math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be >= 0, got {self.lam!r}")
        if self.decay is not None and not (_is_real(self.decay) and 0 < self.decay <= 1):
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")
        for name in ("q_model", "q_grad"):
            v = getattr(self, name)
            if v is not None:
                _check_int(name, v, 1, 32)
        if self.precondition not in PRECONDITIONS:
            raise ValueError(f"precondition must be one of {', '.join(PRECONDITIONS)}, "
                             f"got {self.precondition!r}")
        if (self.checkpoint or self.resume) and self.backend == "reference":
            flag = "--checkpoint" if self.checkpoint else "--resume"
            raise ValueError(f"{flag} saves and restores the engine's model words: use an "
                             f"engine backend (golden, rtl, sim, board)")
        if self.levels == "optimal" and self.quantizer == "full":
            raise ValueError("levels optimal needs a quantizer that rounds (not full)")
        if self.board is not None:
            from zipml.hw.boards import board_spec  # lazy: amaranth, only for --board
            board_spec(self.board)             # an unknown name: one error naming the boards
            if self.backend == "reference":
                raise ValueError(f"board {self.board!r} chooses the engine of golden, rtl, sim "
                                 f"and board; the reference backend has none")
        return self


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_int(name, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, got {v}")


@dataclass
class TrainResult:
    """What every backend returns (the JSON of ``zipml train --json``, docs/cli.md).

    Attributes
    ----------
    mse : list of float
        Training MSE after each epoch, user's units.
    model : list of float
        Final weights in user's units, intercept last.
    model_raw : list of int or None
        The engine's integer model words (hardware backends), None for the float reference.
    bits_moved : int
        Sample bits streamed in total.
    cycles : int or None
        Engine cycles (backends with a clock).
    extra : dict
        Backend-specific figures (JSON-serializable).
    """

    mse: list
    model: list
    model_raw: list | None = None
    bits_moved: int = 0
    cycles: int | None = None
    extra: dict = field(default_factory=dict)

    def trouble(self):
        """What went wrong with the numbers, or None: the engine saturated (its overflow
        flag: a model word hit the fixed-point range) or the loss or the model is not finite
        (the float reference diverged)."""
        if self.extra.get("overflow"):
            return ("the engine saturated (overflow: a model word reached the fixed-point "
                    "range), so the model is clipped: lower --lr or check the data's scale")
        if not (np.all(np.isfinite(self.mse)) and np.all(np.isfinite(self.model))):
            return "training diverged (the loss or the model is not finite): lower --lr"
        return None


# Fraction of the stability limit the default step uses.  Sequential SGD on the squared loss
# is stable for lr * |a|^2 < 2 per sample; 1/2 of the worst sample's |Q(a)|^2 leaves a margin
# for the quantization noise and for minibatch sums.
LR_SAFETY = 0.5


def _expected_sq_norm(A: np.ndarray, q: int, quantizer: str) -> np.ndarray:
    """E|Q(a)|^2 per row = |a|^2 + the stochastic-rounding variance (uniform grid)."""
    sq = np.einsum("ij,ij->i", A, A)
    if quantizer in STOCHASTIC:
        # one column at a time would loop over features; chunks of rows keep memory bounded
        tot = np.empty(A.shape[0])
        step = max(1, 1_000_000 // max(A.shape[1], 1))
        for s in range(0, A.shape[0], step):
            tot[s:s + step] = variance(A[s:s + step], q).sum(axis=1)
        sq = sq + tot
    return sq


def default_lr(prepared: Prepared, options: TrainOptions) -> float:
    """A step size that converges without tuning (scaled units).

    ``LR_SAFETY / (B * max_i E|Q(a_i)|^2)``: the largest expected squared row norm of the
    quantized data (row norm plus rounding variance, which is what the update multiplies the
    model by), times the minibatch because the engine sums B gradients.  Logistic loss has a
    4x smaller curvature (sigma' <= 1/4), so its step is 4x larger; L2 adds lam to the
    curvature.
    """
    q = int(getattr(options, "bits", 8) or 8)
    quantizer = getattr(options, "quantizer", "double")
    B = int(getattr(options, "batch", 1) or 1)
    model = getattr(options, "model", "linreg")
    r2 = float(_expected_sq_norm(prepared.A, min(q, 32), quantizer).max())
    lam = float(getattr(options, "lam", 0.0) or 0.0)
    curv = (r2 / 4.0 if model == "logistic" else r2) + lam
    return LR_SAFETY / (B * max(curv, 1e-12))


def default_decay(options: TrainOptions) -> float:
    """Per-epoch step multiplier: the step ends at about 1/1000 of its start after all epochs.

    Constant-step SGD stalls at a noise floor proportional to the step (and quantization adds
    noise); decaying geometrically to 0.1% removes that floor while the early epochs still move
    at full speed.  Kept in [0.5, 0.95] (the engine's decay is 1 - 2^-k, k >= 1).
    """
    E = int(getattr(options, "epochs", 1) or 1)
    if E <= 1:
        return 1.0
    return float(min(0.95, max(0.5, 0.001 ** (1.0 / (E - 1)))))


def resolve(prepared: Prepared, options: TrainOptions) -> TrainOptions:
    """A copy of ``options`` with ``lr`` and ``decay`` derived from the data where None."""
    lr = options.lr if options.lr is not None else default_lr(prepared, options)
    decay = options.decay if options.decay is not None else default_decay(options)
    return dataclasses.replace(options, lr=float(lr), decay=float(decay))
