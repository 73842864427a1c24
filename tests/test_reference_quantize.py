"""Quantization: the grid, unbiased stochastic rounding, nearest, level tables, bad input."""

import numpy as np
import pytest

from zipml.reference.quantize import dequantize, grid, quantize, variance


@pytest.mark.parametrize("q", [1, 2, 3, 8])
def test_grid_is_the_symmetric_uniform_grid(q):
    m = 2 ** q - 1
    # written from docs/design.md §2, not from the code: v(c) = (2c - m)/m
    expect = np.array([(2 * c - m) / m for c in range(m + 1)])
    assert np.array_equal(grid(q), expect)
    assert grid(q)[0] == -1 and grid(q)[-1] == 1


def test_grid_one_bit_is_plus_minus_one():
    assert grid(1).tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("q", [1, 2, 4, 8, 32])
def test_stochastic_rounding_is_unbiased(q):
    rng = np.random.default_rng(q)
    a = np.array([-1.0, -0.77, -0.1, 0.0, 0.123, 0.5, 0.999, 1.0])
    N = 40000
    v = dequantize(quantize(np.tile(a, (N, 1)), q, rng), q)
    mean = v.mean(axis=0)
    # exact variance of one rounding (a-lo)(hi-a); 5 sigma bound (+ tiny slack for q=32)
    sd = np.sqrt(variance(a, q) / N)
    assert np.all(np.abs(mean - a) <= 5 * sd + 1e-12)


def test_stochastic_rounding_only_uses_the_neighbouring_levels():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, 10000)
    q = 3
    v = dequantize(quantize(a, q, rng), q)
    step = 2 / 7
    assert np.all(np.abs(v - a) < step + 1e-12)
    lo = -1 + np.floor((a + 1) / step) * step
    assert np.all(np.isclose(v, lo) | np.isclose(v, lo + step))


def test_values_on_the_grid_are_exact():
    q = 4
    g = grid(q)
    c = quantize(np.tile(g, 50), q, np.random.default_rng(1))
    assert np.array_equal(c, np.tile(np.arange(16), 50))


def test_nearest_rounds_to_the_closest_level():
    q = 2           # levels -1, -1/3, 1/3, 1
    a = np.array([-0.9, -0.5, -0.2, 0.1, 0.5, 0.8])
    c = quantize(a, q, None, method="nearest")
    assert c.tolist() == [0, 1, 1, 2, 2, 3]


@pytest.mark.parametrize("q, dtype", [(1, np.uint8), (8, np.uint8), (9, np.uint32), (32, np.uint32)])
def test_code_dtype(q, dtype):
    c = quantize(np.array([-1.0, 0.3, 1.0]), q, np.random.default_rng(0))
    assert c.dtype == dtype
    assert c[0] == 0 and int(c[-1]) == 2 ** q - 1


def test_level_table_stochastic_is_unbiased_and_indexes_the_table():
    lv = np.array([-1.0, -0.9, -0.5, 0.2, 1.0])
    a = np.array([-0.95, -0.7, 0.0, 0.6, 1.0, -1.0])
    N = 40000
    rng = np.random.default_rng(5)
    c = quantize(np.tile(a, (N, 1)), 3, rng, levels=lv)
    assert c.max() <= 4
    v = dequantize(c, 3, levels=lv)
    sd = np.sqrt(variance(a, 3, levels=lv) / N)
    assert np.all(np.abs(v.mean(axis=0) - a) <= 5 * sd + 1e-12)
    assert quantize(np.array([0.0]), 3, None, "nearest", lv).tolist() == [3]


@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, 1.5]), r"\[-1, 1\]"),
    (np.array([np.nan]), "finite"),
    (np.array([np.inf]), "finite"),
])
def test_bad_values_raise_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        quantize(bad, 2, np.random.default_rng(0))


@pytest.mark.parametrize("q", [0, 33, 2.5, True])
def test_bad_bits(q):
    with pytest.raises(ValueError, match="bits"):
        quantize(np.zeros(3), q, np.random.default_rng(0))


def test_bad_levels():
    with pytest.raises(ValueError, match="increasing"):
        quantize(np.zeros(3), 2, None, levels=[0.5, -0.5])
    with pytest.raises(ValueError, match="fit"):
        quantize(np.zeros(3), 1, None, levels=[-1, 0, 1])
    with pytest.raises(ValueError, match="level range"):
        quantize(np.array([0.9]), 2, None, levels=[-1, 0, 0.5])


def test_dequantize_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match="out of range"):
        dequantize(np.array([4]), 2)


def test_float32_input_at_32_bits_is_still_unbiased():
    a = np.full(200000, 0.3, dtype=np.float32)
    v = dequantize(quantize(a, 32, np.random.default_rng(2)), 32)
    assert abs(v.mean() - float(a[0])) < 1e-9
