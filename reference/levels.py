"""Variance-optimal quantization levels (ZipML §3, "optimal quantization points").

Stochastic rounding of a value ``a`` between neighbouring levels ``l <= a <= h`` has variance
``(a - l)(h - a)``.  Given the data and a budget of ``s`` levels, :func:`optimal_levels` picks
the levels that minimize the summed variance over the data.  The levels are chosen among
candidate points (the distinct data values, or quantiles of the data when there are many); the
two extreme candidates (min and max of the data) are always levels, so every value can be
rounded.  The search is the paper's dynamic programme over candidates:

    D[k][j] = min_{i < j} D[k-1][i] + cost(i, j)

where ``D[k][j]`` is the least variance of the data in ``[c_0, c_j]`` with ``k+1`` levels, the
last at ``c_j``, and ``cost(i, j)`` is the variance of the data between ``c_i`` and ``c_j``
rounded to those two.  ``cost`` comes in closed form from prefix sums of 1, a and a² over the
sorted data, so each DP step is one vectorized (M x M) min: O(s M²) work, no Python loop over
data or candidates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["optimal_levels", "total_variance", "interval_costs"]

#: at most this many candidate points (quantiles when the data has more distinct values)
MAX_CANDIDATES = 512


def _candidates(v: np.ndarray, max_candidates: int) -> np.ndarray:
    u = np.unique(v)
    if u.size <= max_candidates:
        return u
    c = np.quantile(v, np.linspace(0.0, 1.0, max_candidates))
    return np.unique(np.concatenate([[u[0]], c, [u[-1]]]))


def interval_costs(values, cand) -> np.ndarray:
    """cost[i, j] (i < j) = sum over values in [c_i, c_j] of (a - c_i)(c_j - a); inf for i >= j.

    Values outside ``[c_i, c_j]`` do not belong to the interval; values exactly on a candidate
    contribute 0 to either neighbouring interval, so counting them in both is harmless.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    c = np.asarray(cand, dtype=np.float64)
    # prefix sums of 1, a, a^2 over the sorted values, evaluated at each candidate boundary
    s1 = np.concatenate([[0.0], np.cumsum(np.ones_like(v))])
    sa = np.concatenate([[0.0], np.cumsum(v)])
    s2 = np.concatenate([[0.0], np.cumsum(v * v)])
    lo = np.searchsorted(v, c, side="left")      # first value >= c_i
    hi = np.searchsorted(v, c, side="right")     # one past the last value <= c_j
    n = s1[hi][None, :] - s1[lo][:, None]
    sum_a = sa[hi][None, :] - sa[lo][:, None]
    sum_a2 = s2[hi][None, :] - s2[lo][:, None]
    ci, cj = c[:, None], c[None, :]
    # sum (a - ci)(cj - a) = -sum a^2 + (ci + cj) sum a - n ci cj
    cost = -sum_a2 + (ci + cj) * sum_a - n * ci * cj
    cost = np.maximum(cost, 0.0)                 # rounding of the closed form
    i, j = np.indices(cost.shape)
    cost[i >= j] = np.inf
    return cost


def optimal_levels(values, s: int, max_candidates: int = MAX_CANDIDATES) -> np.ndarray:
    """The ``s`` levels of least total stochastic-rounding variance on ``values``.

    Parameters
    ----------
    values : array_like of float
        The data to be quantized (any shape; finite).
    s : int
        Number of levels, >= 2 (``2^q`` for q bits).
    max_candidates : int
        Candidate points: the distinct values, or this many quantiles.

    Returns
    -------
    ndarray
        Strictly increasing float64 levels, the first ``min(values)``, the last ``max(values)``.
        Fewer than ``s`` when the data has fewer distinct values (then every value is a level
        and the variance is 0).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2:
        raise ValueError(f"the number of levels s must be an integer >= 2, got {s!r}")
    if v.size == 0:
        raise ValueError("optimal_levels needs at least one value")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite (found NaN or inf)")
    cand = _candidates(v, max(int(max_candidates), 2))
    M = cand.size
    if M <= s:
        return cand
    cost = interval_costs(v, cand)
    # D[j]: best variance of the data in [c_0, c_j] with the current number of levels, last at c_j
    D = cost[0].copy()
    D[0] = np.inf                          # two levels need c_0 < c_j
    back = []
    for _ in range(s - 2):                 # add one interior level per step
        tot = D[:, None] + cost            # (i, j): previous last level i, new last level j
        arg = np.argmin(tot, axis=0)
        D = tot[arg, np.arange(M)]
        back.append(arg)
    # the last level must be c_{M-1}; walk the argmins back
    idx = [M - 1]
    for arg in reversed(back):
        idx.append(int(arg[idx[-1]]))
    idx.append(0)
    return cand[np.array(idx[::-1])]


def total_variance(values, levels) -> float:
    """Summed variance ``(a - l)(h - a)`` of stochastically rounding ``values`` to ``levels``."""
    lv = np.asarray(levels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.min() < lv[0] or v.max() > lv[-1]:
        raise ValueError("values outside the level range")
    if lv.size == 1:
        return 0.0
    j = np.clip(np.searchsorted(lv, v, side="right") - 1, 0, lv.size - 2)
    return float(np.maximum((v - lv[j]) * (lv[j + 1] - v), 0.0).sum())
