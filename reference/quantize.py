"""Quantization of values in [-1, 1] to q-bit codes (DESIGN.md §2).

The uniform grid has ``2^q`` levels ``v(c) = (2c - (2^q - 1)) / (2^q - 1)``, so q = 1 is
{-1, +1} and +-1 lie on every grid (the intercept column costs no noise).  Stochastic rounding
picks one of the two neighbouring levels with the probability that makes it unbiased,
``E[v(c)] = a``; ``nearest`` picks the closest level (biased, the ``deterministic`` quantizer).

A level table (e.g. :func:`zipml.reference.levels.optimal_levels`) replaces the grid: codes then
index the table and stochastic rounding is between neighbouring table entries, still unbiased.

Everything is vectorized: one call quantizes a whole epoch of samples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_BITS", "grid", "quantize", "dequantize", "variance", "code_dtype",
           "check_bits"]

#: the reference allows up to 32 bits (``full`` in hardware is 32-bit fixed point)
MAX_BITS = 32

METHODS = ("stochastic", "nearest")


def check_bits(q) -> int:
    """q as an int, or one ValueError naming the problem."""
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
        raise ValueError(f"bits must be an integer in 1..{MAX_BITS}, got {q!r}")
    if not 1 <= int(q) <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {q}")
    return int(q)


def code_dtype(q: int):
    """uint8 for q <= 8, uint32 otherwise (the smallest type other engineers pack from)."""
    return np.uint8 if q <= 8 else np.uint32


def grid(q: int) -> np.ndarray:
    """The uniform levels ``v(c)`` for ``c = 0 .. 2^q - 1`` (float64, ascending).

    q is limited to 24 here because the table has ``2^q`` entries; :func:`dequantize` computes
    larger grids arithmetically.
    """
    q = check_bits(q)
    if q > 24:
        raise ValueError(f"grid(q) builds a table of 2^q levels; q={q} is too large (max 24)")
    m = (1 << q) - 1
    return (2.0 * np.arange(m + 1, dtype=np.float64) - m) / m


def _check_levels(levels, q: int) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size < 1:
        raise ValueError(f"levels must be a 1-d table with at least one level, got shape {lv.shape}")
    if lv.size > (1 << q):
        raise ValueError(f"{lv.size} levels do not fit q={q} bits (at most {1 << q})")
    if not np.isfinite(lv).all():
        raise ValueError("levels must be finite")
    if lv.size > 1 and not (np.diff(lv) > 0).all():
        raise ValueError("levels must be strictly increasing")
    return lv


def _check_values(a, lo: float, hi: float, what: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if a.size:
        amin, amax = a.min(), a.max()      # NaN propagates into both
        if not (np.isfinite(amin) and np.isfinite(amax)):
            raise ValueError("values to quantize must be finite (found NaN or inf)")
        if amin < lo or amax > hi:
            raise ValueError(f"values to quantize must lie in {what}, found "
                             f"[{float(amin):.6g}, {float(amax):.6g}]")
    return a


def quantize(a, q: int, rng=None, method: str = "stochastic", levels=None) -> np.ndarray:
    """Codes of ``a`` on the q-bit grid (or on a level table).

    Parameters
    ----------
    a : array_like of float
        Values in [-1, 1] (in ``[levels[0], levels[-1]]`` with a level table).
    q : int
        Bits per code, 1..32.
    rng : numpy.random.Generator or int or None
        Source of the uniform draws of stochastic rounding (a seed is accepted).
    method : {"stochastic", "nearest"}
        ``stochastic``: ``c = floor(p) + [u < p - floor(p)]``, unbiased;
        ``nearest``: the closest level (ties up).
    levels : array_like, optional
        Strictly increasing level table of at most ``2^q`` entries; codes index it.

    Returns
    -------
    ndarray
        Codes of the shape of ``a``, uint8 for q <= 8, else uint32.
    """
    q = check_bits(q)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    dtype = code_dtype(q)
    if levels is None:
        a = _check_values(a, -1.0, 1.0, "[-1, 1]")
        if q > 16 and a.dtype != np.float64:
            a = a.astype(np.float64)       # float32 has 24 bits: not enough for p at q > 16
        m = float((1 << q) - 1)
        # p in [0, m]: the position of a on the grid in code units
        p = (a + 1.0) * (0.5 * m)
        if method == "nearest":
            c = np.floor(p + 0.5)
        else:
            rng = np.random.default_rng(rng)
            c = np.floor(p)
            # float64 draws: the probability resolution 2^-53 keeps q = 32 unbiased too
            c += rng.random(a.shape) < (p - c)
        # p == m exactly gives floor(p) = m and p - c = 0: never m + 1
        return c.astype(dtype)

    lv = _check_levels(levels, q)
    a = _check_values(a, lv[0], lv[-1], f"the level range [{lv[0]:.6g}, {lv[-1]:.6g}]")
    if lv.size == 1:
        return np.zeros(a.shape, dtype=dtype)
    # interval index j with lv[j] <= a <= lv[j+1]
    j = np.clip(np.searchsorted(lv, a, side="right") - 1, 0, lv.size - 2)
    lo = lv[j]
    t = (a - lo) / (lv[j + 1] - lo)
    if method == "nearest":
        j = j + (t >= 0.5)
    else:
        rng = np.random.default_rng(rng)
        j = j + (rng.random(a.shape) < t)
    return j.astype(dtype)


def dequantize(codes, q: int, levels=None) -> np.ndarray:
    """Values (float64) of codes on the q-bit grid, or entries of the level table."""
    q = check_bits(q)
    c = np.asarray(codes)
    if not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {c.dtype}")
    if levels is not None:
        lv = _check_levels(levels, q)
        if c.size and (c.min() < 0 or c.max() >= lv.size):
            raise ValueError(f"codes out of range for a table of {lv.size} levels")
        return lv[c]
    m = (1 << q) - 1
    if c.size and (c.min() < 0 or int(c.max()) > m):
        raise ValueError(f"codes out of range 0..{m} for q={q}")
    if q <= 16:
        return grid(q)[c]
    return (2.0 * c.astype(np.float64) - m) / m


def variance(a, q: int, levels=None) -> np.ndarray:
    """Variance of the stochastic rounding of each value: ``(a - lo)(hi - a)``.

    lo, hi are the neighbouring levels (grid or table); exact, not sampled.
    """
    q = check_bits(q)
    a = np.asarray(a, dtype=np.float64)
    if levels is None:
        a = _check_values(a, -1.0, 1.0, "[-1, 1]")
        m = float((1 << q) - 1)
        p = (a + 1.0) * (0.5 * m)
        f = p - np.floor(p)
        step = 2.0 / m
        return f * (1.0 - f) * step * step
    lv = _check_levels(levels, q)
    a = _check_values(a, lv[0], lv[-1], f"the level range [{lv[0]:.6g}, {lv[-1]:.6g}]")
    if lv.size == 1:
        return np.zeros_like(a)
    j = np.clip(np.searchsorted(lv, a, side="right") - 1, 0, lv.size - 2)
    return np.maximum((a - lv[j]) * (lv[j + 1] - a), 0.0)
