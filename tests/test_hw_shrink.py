"""Shrink in the Amaranth simulator against golden.shrink."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.shrink import Shrink
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize("l2_shift", [0, 1, 7, 8, 13, 31, 32, 40, 63])
def test_shrink_matches_golden(l2_shift):
    W, n = 8, 20
    rng = np.random.default_rng(l2_shift)
    X = rng.integers(-(1 << 31), 1 << 31, size=(n, W))
    X[0, :2] = [-(1 << 31), (1 << 31) - 1]
    dut = Shrink(W)
    assert getattr(golden, dut.GOLDEN) is golden.shrink
    got = []

    async def bench(ctx):
        ctx.set(dut.l2_shift, l2_shift)
        await ctx.tick()                          # l2_shift is registered first
        for c in range(n + dut.LATENCY):
            for i in range(W):
                ctx.set(dut.row[i], int(X[c % n, i]))
            await ctx.tick()
            if c + 1 >= dut.LATENCY:
                got.append([ctx.get(dut.shr[i]) for i in range(W)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(got[:n]), golden.shrink(X, l2_shift))
