"""SerialScalar (the lane-serial engine's scalar stage) against golden: same T values and
overflow flags in the same order as `Scalar`, for bursts of queued errors and random gaps."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.serial_scalar import SerialScalar
from test_hw_scalar import expected, start

pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize("step,step_shift,decay_shift,n_epoch", [
    ((1 << 18) - 1, 0, 0, 0),          # saturates almost always
    (123_457, 17, 3, 5),
    (200_000, 63, 0, 7),               # everything shifts to 0
    (99_999, 30, 1, 1),                # decays every sample
    (5, 1, 2, 0),
    ((1 << 18) - 1, 49, 0, 0),         # around the clamp of the shift at 49
    ((1 << 18) - 1, 50, 0, 3),
    ((1 << 18) - 1, 51, 4, 2),
    (77_777, 9, 0, 0),
])
def test_serial_scalar_matches_golden(step, step_shift, decay_shift, n_epoch):
    rng = np.random.default_rng(step_shift + 100 * decay_shift)
    n = 45
    E = rng.integers(-(1 << 31), 1 << 31, size=n)
    E[:3] = [-(1 << 31), (1 << 31) - 1, 0]
    # bursts of up to 15 errors on consecutive cycles (a pass's samples), then a pause at
    # least as long as the burst takes (the engine's next samples wait for these T values)
    valid = np.zeros(n * 40, dtype=bool)
    c = 0
    sent = 0
    while sent < n:
        burst = min(int(rng.integers(1, 16)), n - sent)
        valid[c:c + burst] = True
        sent += burst
        c += burst + 20 * burst + int(rng.integers(0, 50))
    T, ovf = expected(E, step, step_shift, decay_shift, n_epoch)
    dut = SerialScalar()
    got = []

    async def bench(ctx):
        await start(ctx, dut, step=step, step_shift=step_shift, decay_shift=decay_shift,
                    n_epoch=n_epoch)
        i = 0
        for cyc in range(len(valid)):
            ctx.set(dut.i_valid, int(valid[cyc]))
            if valid[cyc]:
                ctx.set(dut.e, int(E[i]))
                i += 1
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.append((ctx.get(dut.t), ctx.get(dut.ovf)))
        ctx.set(dut.i_valid, 0)
        for _ in range(16 * 20):
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.append((ctx.get(dut.t), ctx.get(dut.ovf)))
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got)
    assert got.shape == (n, 2)
    np.testing.assert_array_equal(got[:, 0], T)
    np.testing.assert_array_equal(got[:, 1], ovf)
