"""Quantization of values in [-1, 1] to q-bit codes (docs/design.md §2).

The uniform grid has ``2^q`` levels ``v(c) = (2c - (2^q - 1)) / (2^q - 1)``, so q = 1 is
{-1, +1} and +-1 lie on every grid (the intercept column costs no noise).  Stochastic rounding
picks one of the two neighbouring levels with the probability that makes it unbiased,
``E[v(c)] = a``; ``nearest`` picks the closest level (biased, the ``deterministic`` quantizer).

A level table (e.g. :func:`zipml.reference.levels.optimal_levels`) replaces the grid: codes then
index the table and stochastic rounding is between neighbouring table entries, still unbiased.

Everything is vectorized: one call quantizes a whole epoch of samples, in cache-sized blocks on
the grid (:func:`_grid_blocked`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_BITS", "QUANTIZERS", "STOCHASTIC", "GRIDS", "grid", "quantize", "dequantize", "variance", "code_dtype",
           "check_bits", "check_grid", "floor_split"]

#: the reference allows up to 32 bits (``full`` in hardware is 32-bit fixed point)
MAX_BITS = 32

METHODS = ("stochastic", "nearest")

#: the paper's quantizers, one name each (docs/design.md §2): two independent stochastic
#: copies, one stochastic copy used twice, the nearest level, no quantization
QUANTIZERS = ("double", "naive", "deterministic", "full")
#: the quantizers that round stochastically (the others round to nearest or not at all)
STOCHASTIC = ("double", "naive")

#: the two uniform grids (docs/engine.md, "Grids"): ``floor`` (the default of every backend:
#: 2^q + 1 levels 2c/2^q - 1, 0 and both ends included, a copy is the shared floor t plus a
#: carry bit) and ``symmetric`` (2^q levels (2c - (2^q-1))/(2^q-1), no level at 0)
GRIDS = ("floor", "symmetric")

#: stochastic rounding to up to 8 bits (the engine's q, uint8 codes) draws 32-bit uniforms
SMALL_BITS = 8
#: values per block of :func:`_grid_blocked` (whole rows, about this many): large enough that
#: a block's dozen NumPy calls cost little, small enough that its two float64 temporaries
#: (512 KiB each) stay in cache through them; 2^15..2^17 measured alike (docs/bench.md)
_BLOCK = 1 << 16


def check_bits(q) -> int:
    """q as an int, or one ValueError naming the problem."""
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
        raise ValueError(f"bits must be an integer in 1..{MAX_BITS}, got {q!r}")
    if not 1 <= int(q) <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {q}")
    return int(q)


def check_grid(grid) -> str:
    """``grid`` if it is one of :data:`GRIDS`, else one ValueError naming the choices."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    return grid


def floor_split(a, q: int, rng=None, method: str = "stochastic", *, rows=None, copies: int = 1):
    """The floor grid's copies of ``a`` (of ``a[rows]``) as the shared floor and the carries.

    ``t = min(floor((a + 1) 2^(q-1)), 2^q - 1)`` (exact in float64: a power-of-two scale) and,
    per copy, ``delta = [u < (a + 1) 2^(q-1) - t]`` with ``u = (s + 2^31) / 2^32`` for a uniform
    signed 32-bit s (:func:`_int32_draws`, one per value in C order, copy after copy), so
    ``t + delta`` is unbiased to within 2^-32 of a step; ``nearest``: ``delta = [frac >= 1/2]``
    (ties up).  The intercept (+1) is ``t = 2^q - 1``, ``delta = 1`` in every copy.

    Returns
    -------
    (t, deltas) : t of the shape of ``a[rows]`` (:func:`code_dtype`), deltas uint8 of shape
        ``(copies,) + t.shape``.
    """
    q = check_bits(q)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies must be a positive integer, got {copies!r}")
    a = np.asarray(a)
    if rows is not None:
        a = a[_check_rows(rows, a)]
    a = _check_values(a, -1.0, 1.0, "[-1, 1]").astype(np.float64, copy=False)
    pos = (a + 1.0) * float(2.0 ** (q - 1))
    t = np.minimum(np.floor(pos), float((1 << q) - 1))
    frac = pos - t
    if method == "nearest":
        deltas = np.broadcast_to(frac >= 0.5, (copies,) + a.shape).astype(np.uint8)
    else:
        rng = np.random.default_rng(rng)
        deltas = np.empty((copies,) + a.shape, dtype=np.uint8)
        for j in range(copies):
            u = (_int32_draws(rng, a.size).astype(np.float64) + 2.0 ** 31) * 2.0 ** -32
            deltas[j] = u.reshape(a.shape) < frac
    return t.astype(code_dtype(q)), deltas


def code_dtype(q: int):
    """uint8 for q <= 8, uint32 otherwise (the smallest type other engineers pack from)."""
    return np.uint8 if q <= 8 else np.uint32


def grid(q: int, grid: str = "symmetric") -> np.ndarray:
    """The uniform levels ``v(c)`` (float64, ascending): ``c = 0 .. 2^q - 1`` on the symmetric
    grid, ``c = 0 .. 2^q`` on the floor grid.

    q is limited to 24 here because the table has ``2^q`` entries; :func:`dequantize` computes
    larger grids arithmetically.
    """
    q = check_bits(q)
    if q > 24:
        raise ValueError(f"grid(q) builds a table of 2^q levels; q={q} is too large (max 24)")
    if check_grid(grid) == "floor":
        return 2.0 * np.arange((1 << q) + 1, dtype=np.float64) / (1 << q) - 1.0
    m = (1 << q) - 1
    return (2.0 * np.arange(m + 1, dtype=np.float64) - m) / m


_GRID_TABLE = grid   # dequantize's ``grid`` argument hides the function


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


#: bit generators whose ``random_raw`` is their next 64-bit integer (MT19937's is 32 bits)
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)
#: those whose ``advance(k)`` skips exactly k 64-bit draws (Philox counts blocks of four)
_JUMP64 = (np.random.PCG64, np.random.PCG64DXSM)


def _int32_draws(rng, k: int) -> np.ndarray:
    """k uniform signed 32-bit integers: the halves of ceil(k/2) 64-bit draws, low half first.

    Half a 64-bit draw per value halves the generator's time, most of a stochastic block's.
    """
    n64 = (k + 1) // 2
    bg = rng.bit_generator
    if type(bg) in _RAW64:
        # the same numbers as Generator.integers below, without its ~9 us per call
        raw = bg.random_raw(n64)
    else:
        raw = rng.integers(0, 2**64 - 1, n64, dtype=np.uint64, endpoint=True)
    return raw.astype("<u8", copy=False).view("<i4")[:k]


def _copy_streams(rng, copies: int, n64: int):
    """Generators whose draws are those of ``copies`` successive calls that take ``n64``
    64-bit draws each: copy j is ``rng`` advanced by ``j * n64``.  None if the bit generator
    cannot jump ahead (the caller then makes the calls one after the other)."""
    bg = rng.bit_generator
    if copies == 1:
        return [rng]
    if type(bg) not in _JUMP64:
        return None
    out = [rng]
    for j in range(1, copies):
        c = type(bg)()
        c.state = bg.state
        c.advance(j * n64)
        out.append(np.random.Generator(c))
    return out


def _grid_blocked(a, q: int, rng, method: str, rows=None, copies: int = 1) -> np.ndarray:
    """(copies, ...) codes of ``a[rows]`` on the q-bit grid, block by block (stochastic: q <= 8).

    A block is a few rows of ``a`` (gathered through ``rows`` into a buffer, never the whole
    ``a[rows]``), checked, then taken to its codes in a handful of passes that stay in cache.

    stochastic: ``c = floor(p + u)`` for the position ``p = (a + 1) m / 2``, ``m = 2^q - 1``,
    with ``u = 1/2 + s / 2^32`` and s a uniform signed 32-bit integer (:func:`_int32_draws`, one
    per value in C order, ``ceil(size / 2)`` 64-bit draws per copy).  So
    ``P(c = floor(p) + 1) = floor(2^32 frac(p)) / 2^32``: unbiased to within 2^-32 of a step
    (docs/reference.md).  It is computed as ``(a m/2 + (m+1)/2) + s 2^-32`` in float64, exact up
    to the rounding of ``a m/2``; at a = 1 the sum is at most ``m + 1 - 2^-32``: never m + 1.
    The copies share one pass over ``a``: copy j draws from ``rng`` advanced past the draws of
    copies 0..j-1 (:func:`_copy_streams`), so they equal successive calls.

    nearest: ``floor((a + 1) m/2 + 1/2)`` in the input's float type (float64 for q > 16); the
    copies are equal.
    """
    m = (1 << q) - 1
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    # rows of the first axis, each flattened (a 0-d or 1-d ``a``: rows of one value)
    rows2 = np.ascontiguousarray(a.reshape(a.shape[0], math.prod(a.shape[1:]))
                                 if a.ndim >= 2 else a.reshape(-1, 1))
    n_rows = rows2.shape[0] if rows is None else rows.size
    d = rows2.shape[1]
    shape = a.shape if rows is None else (n_rows,) + a.shape[1:]
    N = n_rows * d
    stochastic = method == "stochastic"
    if stochastic:
        streams = _copy_streams(rng, copies, (N + 1) // 2)
        if streams is None:                     # no jump ahead: one call per copy
            return np.stack([_grid_blocked(a, q, rng, method, rows)[0] for _ in range(copies)])
    out = np.empty((copies if stochastic else 1, N), dtype=code_dtype(q))
    # rows per block; even when d is odd, so every block but the last uses whole 64-bit draws
    # and the codes do not depend on the block size
    R = max(1, _BLOCK // max(d, 1))
    R += (R & 1) & (d & 1)
    R = min(R, max(n_rows, 1))
    # float64 whatever the input for stochastic: a float32 position would round away the
    # 32-bit draw; float32 has 24 bits: not enough for nearest at q > 16 either
    ftype = np.float64 if stochastic or q > 16 else a.dtype
    p = np.empty(R * d, dtype=ftype)
    if stochastic:
        u = np.empty(R * d, dtype=np.float64)
    if rows is not None:
        gathered = np.empty((R, d), dtype=a.dtype)
    for r0 in range(0, n_rows, R):
        r1 = min(n_rows, r0 + R)
        if rows is None:
            blk = rows2[r0:r1].reshape(-1)
        else:
            # rows are checked: mode="clip" changes nothing but skips take's buffered copy
            blk = np.take(rows2, rows[r0:r1], axis=0, out=gathered[:r1 - r0],
                          mode="clip").reshape(-1)
        k = blk.size
        if k:
            lo, hi = blk.min(), blk.max()       # NaN propagates into both
            if not (-1.0 <= lo and hi <= 1.0):
                # the message names the whole input's range, not the block's
                _check_values(a if rows is None else a[rows], -1.0, 1.0, "[-1, 1]")
        pk = p[:k]
        if stochastic:
            np.multiply(blk, 0.5 * m, out=pk, dtype=np.float64)
            pk += 0.5 * (m + 1)
            uk = u[:k]
            for j, g in enumerate(streams):
                np.multiply(_int32_draws(g, k), 2.0 ** -32, out=uk)
                uk += pk
                # uk >= 0: the cast truncates, which is floor
                np.copyto(out[j, r0 * d:r0 * d + k], uk, casting="unsafe")
        else:
            np.add(blk, 1.0, out=pk, dtype=ftype)
            pk *= 0.5 * m
            pk += 0.5
            np.copyto(out[0, r0 * d:r0 * d + k], pk, casting="unsafe")
    if stochastic and copies > 1:
        # leave rng where successive calls would: after the last copy's draws, with its own
        # buffered 32-bit half (advance() clears the copies')
        state = streams[-1].bit_generator.state
        state.update({key: rng.bit_generator.state[key] for key in ("has_uint32", "uinteger")})
        rng.bit_generator.state = state
    elif not stochastic and copies > 1:
        out = np.broadcast_to(out, (copies, N)).copy()
    return out.reshape((copies,) + shape)


def _check_rows(rows, a) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-d array of row indices, got shape {rows.shape} "
                         f"dtype {rows.dtype}")
    n = np.shape(a)[0] if np.ndim(a) else 0
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows must index the first axis of the values, 0..{n - 1}, got "
                         f"{int(rows.min())}..{int(rows.max())}")
    return rows.astype(np.intp, copy=False)


def quantize(a, q: int, rng=None, method: str = "stochastic", levels=None, *, rows=None,
             copies=None, grid: str = "symmetric") -> np.ndarray:
    """Codes of ``a`` on the q-bit grid (or on a level table).

    With ``grid="floor"`` the codes are ``t + delta`` of :func:`floor_split` (0 .. 2^q, one
    more level than q bits hold; dtype of :func:`code_dtype` at q + 1).

    Parameters
    ----------
    a : array_like of float
        Values in [-1, 1] (in ``[levels[0], levels[-1]]`` with a level table).
    q : int
        Bits per code, 1..32.
    rng : numpy.random.Generator or int or None
        Source of the uniform draws of stochastic rounding (a seed is accepted).
    method : {"stochastic", "nearest"}
        ``stochastic``: unbiased stochastic rounding, ``P(c = floor(p) + 1) = p - floor(p)``
        for the position ``p = (a + 1)(2^q - 1) / 2``; q <= 8: ``c = floor(p + u)`` with a
        32-bit uniform ``u`` per value (probability resolution 2^-32, :func:`_grid_blocked`);
        q > 8: ``c = floor(p) + [u < p - floor(p)]`` with a float64 uniform (resolution 2^-53);
        ``nearest``: the closest level (ties up).
    levels : array_like, optional
        Strictly increasing level table of at most ``2^q`` entries; codes index it.
    rows : 1-d int array, optional
        Quantize ``a[rows]`` (rows of the first axis, e.g. an epoch's sample order) without
        building that copy: the same codes.
    copies : int, optional
        Return ``copies`` independent code arrays stacked on a new first axis, the same as
        ``copies`` successive calls with the same ``rng`` (double sampling's Q1, Q2); on the
        grid they are drawn in one pass over ``a``.

    Returns
    -------
    ndarray
        Codes of the shape of ``a`` (``a[rows]``; ``(copies, ...)`` with ``copies``), uint8
        for q <= 8, else uint32.
    """
    q = check_bits(q)
    if check_grid(grid) == "floor" and levels is None:
        t, deltas = floor_split(a, q, rng, method, rows=rows, copies=1 if copies is None
                                else copies)
        codes = t.astype(code_dtype(min(q + 1, MAX_BITS))) + deltas
        return codes[0] if copies is None else codes
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    k = 1 if copies is None else copies
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"copies must be a positive integer, got {copies!r}")
    if method == "stochastic":
        rng = np.random.default_rng(rng)       # one stream through all the copies
    if rows is not None:
        rows = _check_rows(rows, a)
    if levels is None and (method == "nearest" or q <= SMALL_BITS):
        codes = _grid_blocked(a, q, rng, method, rows, int(k))
    else:
        if rows is not None:
            a = np.asarray(a)[rows]
        codes = np.stack([_quantize_whole(a, q, rng, method, levels) for _ in range(k)])
    return codes[0] if copies is None else codes


def _quantize_whole(a, q: int, rng, method: str, levels) -> np.ndarray:
    """:func:`quantize` of the whole array at once: level tables, stochastic q > 8."""
    dtype = code_dtype(q)
    if levels is None:
        a = _check_values(a, -1.0, 1.0, "[-1, 1]")
        if q > 16:
            a = a.astype(np.float64, copy=False)   # float32 has 24 bits: not enough for p
        m = float((1 << q) - 1)
        # p in [0, m]: the position of a on the grid in code units
        p = (a + 1.0) * (0.5 * m)
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
        j = j + (rng.random(a.shape) < t)
    return j.astype(dtype)


def dequantize(codes, q: int, levels=None, grid: str = "symmetric") -> np.ndarray:
    """Values (float64) of codes on the q-bit grid, or entries of the level table."""
    q = check_bits(q)
    c = np.asarray(codes)
    if not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {c.dtype}")
    if check_grid(grid) == "floor" and levels is None:
        if c.size and (c.min() < 0 or int(c.max()) > (1 << q)):
            raise ValueError(f"codes out of range 0..{1 << q} for q={q} on the floor grid")
        return 2.0 * c.astype(np.float64) / float(1 << q) - 1.0
    if levels is not None:
        lv = _check_levels(levels, q)
        if c.size and (c.min() < 0 or c.max() >= lv.size):
            raise ValueError(f"codes out of range for a table of {lv.size} levels")
        return lv[c]
    m = (1 << q) - 1
    if c.size and (c.min() < 0 or int(c.max()) > m):
        raise ValueError(f"codes out of range 0..{m} for q={q}")
    if q <= 16:
        return _GRID_TABLE(q)[c]
    return (2.0 * c.astype(np.float64) - m) / m


def variance(a, q: int, levels=None, grid: str = "symmetric") -> np.ndarray:
    """Variance of the stochastic rounding of each value: ``(a - lo)(hi - a)``.

    lo, hi are the neighbouring levels (grid or table); exact, not sampled.
    """
    q = check_bits(q)
    a = np.asarray(a, dtype=np.float64)
    if levels is None:
        a = _check_values(a, -1.0, 1.0, "[-1, 1]")
        m = float((1 << q) - (check_grid(grid) == "symmetric"))
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
