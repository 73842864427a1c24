"""The blocked grid quantizer: 32-bit draws at q <= 8, copies, rows, blocks (docs/reference.md,
"Grid and rounding")."""

import math
from fractions import Fraction

import numpy as np
import pytest

from zipml.reference import quantize as qz
from zipml.reference.quantize import quantize


def _successive(a, q, rng, k, **kw):
    return np.stack([quantize(a, q, rng, **kw) for _ in range(k)])


def test_stochastic_codes_follow_the_32_bit_draws():
    """q <= 8: c = floor(p + 1/2 + s / 2^32), p = (a + 1) m / 2, with s the signed halves of
    the 64-bit draws, low half first (written from docs/reference.md in exact rationals, not
    from the code; the code's float64 rounding of a m/2 matters only within 2^-45 of a code
    boundary, which these values are not near)."""
    a = np.random.default_rng(0).uniform(-1, 1, 9)            # odd: the last half is unused
    q, m = 5, 31
    raw = np.random.default_rng(3).bit_generator.random_raw(5).tolist()
    halves = [(r >> (32 * h)) & 0xFFFFFFFF for r in raw for h in (0, 1)]
    s = [x - (1 << 32) if x >= 1 << 31 else x for x in halves]
    expect = [math.floor((Fraction(a_i) + 1) * m / 2 + Fraction(1, 2) + Fraction(s_i, 2**32))
              for a_i, s_i in zip(a.tolist(), s)]
    assert quantize(a, q, np.random.default_rng(3)).tolist() == expect


def test_probability_resolution_is_finer_than_16_bits():
    """A value 2^-17 of a step above a level rounds up with probability 2^-17: 32 of 2^22
    draws on average (a 16-bit draw would never round it up)."""
    q, m = 8, 255
    c = 100
    a = (2 * (c + 2.0**-17) - m) / m
    assert (2 * c - m) / m < a
    codes = quantize(np.full(1 << 22, a), q, np.random.default_rng(1))
    assert set(np.unique(codes).tolist()) <= {c, c + 1}
    ups = int((codes == c + 1).sum())
    assert 32 - 6 * 5.7 < ups < 32 + 6 * 5.7          # Poisson(32): 6 sigma


@pytest.mark.parametrize("bg", [np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64,
                                np.random.Philox, np.random.MT19937])
@pytest.mark.parametrize("q", [1, 4, 8, 12])
def test_copies_are_successive_calls(bg, q):
    a = np.random.default_rng(q).uniform(-1, 1, (17, 9))         # odd size: halves carry over
    g1, g2 = np.random.Generator(bg(5)), np.random.Generator(bg(5))
    g1.integers(0, 9, 3, dtype=np.uint32)                         # a buffered 32-bit half
    g2.integers(0, 9, 3, dtype=np.uint32)
    got = quantize(a, q, g1, copies=3)
    assert got.shape == (3, 17, 9)
    np.testing.assert_array_equal(got, _successive(a, q, g2, 3))
    # rng left where the successive calls leave it, buffered half included
    np.testing.assert_array_equal(g1.integers(0, 2**31, 6, dtype=np.uint32),
                                  g2.integers(0, 2**31, 6, dtype=np.uint32))


@pytest.mark.parametrize("method", ["stochastic", "nearest"])
@pytest.mark.parametrize("q", [2, 8, 32])
def test_rows_quantize_the_gathered_rows(method, q):
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (30, 7))
    rows = rng.integers(0, 30, 45)                                # repeats, any order
    got = quantize(a, q, np.random.default_rng(4), method, rows=rows, copies=2)
    np.testing.assert_array_equal(
        got, _successive(a[rows], q, np.random.default_rng(4), 2, method=method))
    lv = np.array([-1.0, -0.3, 0.4, 1.0])
    np.testing.assert_array_equal(
        quantize(a, 2, np.random.default_rng(4), method, levels=lv, rows=rows),
        quantize(a[rows], 2, np.random.default_rng(4), method, levels=lv))


@pytest.mark.parametrize("shape", [(1001,), (40, 33), (3, 4, 5), (2, 0), (0,), ()])
def test_codes_do_not_depend_on_the_block_size(shape, monkeypatch):
    a = np.random.default_rng(1).uniform(-1, 1, shape)
    ref = quantize(a, 6, np.random.default_rng(8), copies=2)
    near = quantize(a, 6, None, "nearest")
    for block in (1, 2, 64):
        monkeypatch.setattr(qz, "_BLOCK", block)
        np.testing.assert_array_equal(quantize(a, 6, np.random.default_rng(8), copies=2), ref)
        np.testing.assert_array_equal(quantize(a, 6, None, "nearest"), near)
        assert ref.shape == (2,) + shape


def test_float32_and_integer_input():
    a = np.random.default_rng(0).uniform(-1, 1, 500).astype(np.float32)
    np.testing.assert_array_equal(quantize(a, 7, np.random.default_rng(1)),
                                  quantize(a.astype(np.float64), 7, np.random.default_rng(1)))
    np.testing.assert_array_equal(quantize(np.array([-1, 0, 1]), 2, None, "nearest"), [0, 2, 3])


@pytest.mark.parametrize("rows", [None, np.arange(3000)])
def test_a_bad_value_in_a_later_block_raises_for_the_whole_input(rows, monkeypatch):
    monkeypatch.setattr(qz, "_BLOCK", 64)
    a = np.zeros((3000, 4))
    a[2999, 3] = 1.5
    with pytest.raises(ValueError, match=r"\[-1, 1\], found \[0, 1.5\]"):
        quantize(a, 3, np.random.default_rng(0), rows=rows)
    a[2999, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        quantize(a, 3, None, "nearest", rows=rows)


@pytest.mark.parametrize("kw, match", [
    ({"copies": 0}, "copies"),
    ({"copies": 1.5}, "copies"),
    ({"copies": True}, "copies"),
    ({"rows": [[0, 1]]}, "rows must be a 1-d"),
    ({"rows": [0.5]}, "rows must be a 1-d"),
    ({"rows": [0, 5]}, r"rows must index .* 0\.\.4"),
    ({"rows": [-1]}, "rows must index"),
])
def test_bad_copies_and_rows(kw, match):
    with pytest.raises(ValueError, match=match):
        quantize(np.zeros((5, 2)), 3, np.random.default_rng(0), **kw)
