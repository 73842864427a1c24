"""Variance-optimal levels: DP against brute force, and better than uniform on skewed data."""

import itertools

import numpy as np
import pytest

from zipml.reference.levels import optimal_levels, total_variance
from zipml.reference.quantize import dequantize, quantize


def brute_force(values, s):
    u = np.unique(values)
    best = None
    for inner in itertools.combinations(u[1:-1], s - 2):
        lv = np.array([u[0], *inner, u[-1]])
        # variance written out here: sum over values of (a - lo)(hi - a)
        j = np.clip(np.searchsorted(lv, values, side="right") - 1, 0, s - 2)
        v = float(np.sum((values - lv[j]) * (lv[j + 1] - values)))
        best = v if best is None else min(best, v)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("s", [2, 3, 4, 5])
def test_dp_matches_brute_force(seed, s):
    rng = np.random.default_rng(seed)
    v = np.clip(rng.exponential(0.3, 25) * 2 - 1, -1, 1)
    lv = optimal_levels(v, s)
    assert lv.size == s and np.all(np.diff(lv) > 0)
    assert lv[0] == v.min() and lv[-1] == v.max()
    assert total_variance(v, lv) == pytest.approx(brute_force(v, s), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("q", [2, 3])
def test_optimal_levels_beat_uniform_on_skewed_data(q):
    rng = np.random.default_rng(7)
    v = np.clip(rng.lognormal(-2.5, 1.0, 20000), 0, 1) * 2 - 1     # crowded near -1
    s = 2 ** q
    opt = optimal_levels(v, s)
    uni = np.linspace(v.min(), v.max(), s)
    assert total_variance(v, opt) < 0.7 * total_variance(v, uni)
    # and the sampled variance of real rounding agrees with the closed form
    c = quantize(v, q, np.random.default_rng(1), levels=opt)
    sampled = np.sum((dequantize(c, q, levels=opt) - v) ** 2)
    assert sampled == pytest.approx(total_variance(v, opt), rel=0.1)


def test_fewer_distinct_values_than_levels_are_all_levels():
    v = np.array([0.1, 0.1, -0.5, 0.7])
    assert optimal_levels(v, 8).tolist() == [-0.5, 0.1, 0.7]


def test_bad_input():
    with pytest.raises(ValueError, match="s must"):
        optimal_levels([0.0, 1.0], 1)
    with pytest.raises(ValueError, match="finite"):
        optimal_levels([0.0, np.nan], 4)
