"""Float64 SGD of ZipML (docs/design.md §2): the maths every other layer is checked against.

One epoch: the samples in the seeded order, quantized for the whole epoch in one vectorized
call per code set, then minibatches of B samples:

    x <- x - lr_e * (sum_{i in batch} g_i + lam * x),      lr_e = lr * decay^e

(gradients summed, the L2 shrink once per batch: the engine's semantics, docs/engine.md).  The
gradient of sample i with quantized copies Q1 (gradient side) and Q2 (dot side):

- squared loss (linreg, lssvm):   g = Q1(a) (Q2(a)^T x - b)
  ``double``: Q1, Q2 independent, unbiased; ``naive``: Q1 = Q2 (biased by the rounding
  variance times x); ``deterministic``: nearest level; ``full``: a itself.
- hinge (svm) and logistic: g = Q1(a) f(b, a^T x) with the scalar f of the loss
  (hinge: -b [b z < 1]; logistic: -b sigma(-b z)).  With ``double``, ``a^T x`` enters f
  non-linearly, so one Q2 is not enough for an unbiased estimate.  Two estimators:

  * Chebyshev (default): f(b, .) is interpolated by a degree-K Chebyshev polynomial on
    [-r, r] (r bounds |a^T x| over the data, re-measured each epoch) and rewritten in powers,
    ``P(z) = sum_k c_k z^k``; ``z^k`` is estimated by ``prod_{j<=k} Q_{2,j}(a)^T x`` with K
    independent dot copies, so each power, hence P, is unbiased and the only bias left is the
    polynomial's approximation error (bounded).
  * refetch: the dot of one copy has ``|Q2(a)^T x - a^T x| <= delta |x|_1`` (delta the grid
    step).  When that interval decides f exactly (hinge: the whole interval on one side of the
    kink; logistic: f varies by less than ``REFETCH_TOL`` over it) the low-precision dot is
    used, otherwise the sample is fetched at full precision (counted in ``refetches`` and in
    bits moved).  For hinge this is exact: the gradient stays unbiased.

- end-to-end (``q_model``, ``q_grad``): the model the dots see is stochastically rounded to
  q_model bits (scale max |x|) at every batch, and the summed gradient to q_grad bits (scale
  max |g|) before the update; both unbiased, the master model stays float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import Chebyshev, Polynomial

from .quantize import QUANTIZERS, check_bits, check_grid, dequantize, quantize
from .order import sample_order

__all__ = ["LOSSES", "SGDConfig", "SGDResult", "sgd", "scalar_grad", "loss_value",
           "chebyshev_power_coeffs", "quantized_copies"]

LOSSES = ("squared", "hinge", "logistic")
#: model name -> loss
MODEL_LOSS = {"linreg": "squared", "lssvm": "squared", "svm": "hinge", "logistic": "logistic"}

#: batches between re-measurements of the Chebyshev interval
POLY_REFRESH = 16

#: refetch for logistic when f may vary by more than this over the dot's error interval
REFETCH_TOL = 0.02


@dataclass
class SGDConfig:
    """Everything :func:`sgd` needs besides the data (scaled units)."""

    loss: str = "squared"
    q: int = 8
    quantizer: str = "double"
    levels: np.ndarray | None = None
    grid: str = "floor"
    epochs: int = 10
    lr: float = 0.1
    batch: int = 1
    seed: int = 0
    lam: float = 0.0
    decay: float = 1.0
    q_model: int | None = None
    q_grad: int | None = None
    degree: int = 7
    refetch: bool = False


@dataclass
class SGDResult:
    x: np.ndarray
    history: list = field(default_factory=list)     # model after each epoch
    refetches: int = 0
    bits_moved: int = 0


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def scalar_grad(loss: str, z, b):
    """f(b, z) with gradient = a * f: the derivative of the loss in the dot product z."""
    if loss == "squared":
        return z - b
    if loss == "hinge":
        return np.where(b * z < 1.0, -b, 0.0)
    if loss == "logistic":
        return -b * _sigmoid(-b * z)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def loss_value(loss: str, A, b, x, lam: float = 0.0) -> float:
    """Mean loss (plus lam/2 |x|^2) of the model x on scaled data."""
    z = A @ x
    if loss == "squared":
        v = 0.5 * np.mean((z - b) ** 2)
    elif loss == "hinge":
        v = np.mean(np.maximum(0.0, 1.0 - b * z))
    elif loss == "logistic":
        v = np.mean(np.logaddexp(0.0, -b * z))
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return float(v + 0.5 * lam * np.dot(x, x))


def chebyshev_power_coeffs(loss: str, degree: int, r: float):
    """Power coefficients (c_0..c_K) of the Chebyshev interpolant of t -> f(+1, t) on [-r, r].

    f(b, z) = b * h(b z) for hinge and logistic (h(t) = -[t < 1], -sigma(-t)), so one
    polynomial P ~ h serves both labels: f(b, z) ~ b * P(b z) = sum_k c_k b^(k+1) z^k.
    """

    def h(t):
        return scalar_grad(loss, t, 1.0)

    cheb = Chebyshev.interpolate(h, degree, domain=[-r, r])
    coef = cheb.convert(kind=Polynomial).coef
    # convert() trims zero top coefficients (e.g. by symmetry): pad back to degree + 1
    return np.pad(coef, (0, degree + 1 - coef.size))


def quantized_copies(a, cfg: SGDConfig, rng, copies: int):
    """``copies`` independent quantized value copies of the rows ``a`` (float64)."""
    if cfg.quantizer == "full":
        return [a] * copies
    g = cfg.grid
    if cfg.quantizer == "deterministic":
        c = dequantize(quantize(a, cfg.q, rng, "nearest", cfg.levels, grid=g), cfg.q,
                       cfg.levels, grid=g)
        return [c] * copies
    if cfg.quantizer == "naive":
        c = dequantize(quantize(a, cfg.q, rng, "stochastic", cfg.levels, grid=g), cfg.q,
                       cfg.levels, grid=g)
        return [c] * copies
    return [dequantize(quantize(a, cfg.q, rng, "stochastic", cfg.levels, grid=g), cfg.q,
                       cfg.levels, grid=g)
            for _ in range(copies)]


def _round_vector(v, q, rng):
    """Unbiased stochastic rounding of a vector to q bits on [-max|v|, max|v|]."""
    s = float(np.max(np.abs(v)))
    if s == 0.0:
        return v
    return dequantize(quantize(np.clip(v / s, -1.0, 1.0), q, rng), q) * s


def _check(A, b, cfg: SGDConfig):
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if A.ndim != 2 or b.shape != (A.shape[0],) or A.shape[0] < 1:
        raise ValueError(f"A must be (n, d) and b (n,), got {A.shape} and {b.shape}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    if cfg.quantizer not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {cfg.quantizer!r}")
    check_bits(cfg.q)
    check_grid(cfg.grid)
    if not (cfg.lr > 0 and np.isfinite(cfg.lr)):
        raise ValueError(f"lr must be positive, got {cfg.lr!r}")
    if cfg.epochs < 1 or cfg.batch < 1:
        raise ValueError("epochs and batch must be >= 1")
    return A, b


def sgd(A, b, cfg: SGDConfig, order=None, callback=None, x0=None) -> SGDResult:
    """Train on scaled data ``A`` (n, d) in [-1, 1] and labels ``b`` (n,).

    Parameters
    ----------
    order : callable (n, epoch, seed) -> permutation, optional
        The shuffle (default :func:`zipml.reference.order.sample_order`, the one all backends use).
    callback : callable (epoch, x), optional
        Called after each epoch with the current model.

    Quantization draws come from ``default_rng([seed, epoch])`` per epoch, the gradient copy
    Q1 first, then the dot copies, like the golden model's job builder.
    """
    A, b = _check(A, b, cfg)
    if order is None:
        order = sample_order
    n, d = A.shape
    x = np.zeros(d) if x0 is None else np.array(x0, dtype=np.float64)
    res = SGDResult(x=x)
    B = int(cfg.batch)
    copies_moved = 2 if cfg.quantizer == "double" else 1
    if cfg.quantizer == "full":
        value_bits = 32
    elif cfg.grid == "floor" and cfg.levels is None:
        # the copies share the floor t (q bits) and add a carry bit each
        value_bits = cfg.q + copies_moved
    else:
        value_bits = cfg.q * copies_moved
    nonlinear = cfg.loss != "squared"
    use_poly = nonlinear and cfg.quantizer == "double" and not cfg.refetch
    use_refetch = nonlinear and cfg.refetch and cfg.quantizer != "full"
    K = int(cfg.degree)
    # grid step (largest gap of a level table): bounds |Q(a) - a| per value
    if cfg.levels is not None:
        delta = float(np.max(np.diff(cfg.levels))) if len(cfg.levels) > 1 else 0.0
    else:
        delta = 2.0 / ((1 << cfg.q) - (cfg.grid == "symmetric"))
    for e in range(cfg.epochs):
        lr = cfg.lr * cfg.decay ** e
        perm = np.asarray(order(n, e, cfg.seed))
        a = A[perm]
        bb = b[perm]
        rng = np.random.default_rng([cfg.seed, e])
        if use_poly:
            Q = quantized_copies(a, cfg, rng, 1 + K)
            Qg, Qd = Q[0], Q[1:]
            r = 0.0
        else:
            Q = quantized_copies(a, cfg, rng, 2 if cfg.quantizer == "double" else 1)
            Qg, Qd = Q[0], Q[-1:]
        mrng = np.random.default_rng([cfg.seed, e, 0xE2E])   # end-to-end rounding draws
        res.bits_moved += n * d * value_bits
        for k, s in enumerate(range(0, n, B)):
            sl = slice(s, s + B)
            if use_poly and k % POLY_REFRESH == 0:
                # the interval the polynomial must cover: |a^T x| over the data with headroom;
                # re-measured every POLY_REFRESH batches because outside [-r, r] the polynomial
                # grows like z^K and SGD would blow up.  A float pass over A: the reference
                # knows the data; it is the "known bound on the dot" the paper assumes.
                need = max(1.0, 1.5 * float(np.max(np.abs(A @ x))) + 1.0)
                if need > r or need < 0.5 * r:
                    r = need
                    coef = chebyshev_power_coeffs(cfg.loss, K, r)
            xm = x if cfg.q_model is None else _round_vector(x, cfg.q_model, mrng)
            bs = bb[sl]
            if use_poly:
                # z_j = Q_{2,j}(a)^T x, independent for j = 1..K; P(bz) via running products
                Z = np.stack([Qd[j][sl] @ xm for j in range(K)])     # (K, batch)
                prod = np.cumprod(Z * bs, axis=0)                     # (b z)^k estimates
                t = coef[0] + np.einsum("k,kb->b", coef[1:1 + K], prod)
                f = bs * t
            else:
                z = Qd[0][sl] @ xm
                if use_refetch:
                    err = delta * float(np.sum(np.abs(xm)))
                    f = scalar_grad(cfg.loss, z, bs)
                    if cfg.loss == "hinge":
                        unsure = np.abs(1.0 - bs * z) <= err
                    else:   # logistic: |f'| <= 1/4, so f moves by at most err/4 over the interval
                        unsure = np.full(z.shape, err / 4.0 > REFETCH_TOL)
                    if unsure.any():
                        zf = a[sl][unsure] @ xm
                        f[unsure] = scalar_grad(cfg.loss, zf, bs[unsure])
                        res.refetches += int(unsure.sum())
                else:
                    f = scalar_grad(cfg.loss, z, bs)
            g = Qg[sl].T @ f
            if cfg.q_grad is not None:
                g = _round_vector(g, cfg.q_grad, mrng)
            if cfg.lam:
                g = g + cfg.lam * x
            x -= lr * g
        if not np.isfinite(x).all():
            raise FloatingPointError(
                f"SGD diverged in epoch {e} (lr={cfg.lr:g}): try a smaller --lr")
        res.history.append(x.copy())
        if callback is not None:
            callback(e, x)
    res.bits_moved += res.refetches * d * 32
    return res
