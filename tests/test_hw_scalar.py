"""Scalar (T = sat32((E * STEP + R) >> STEP_SHIFT) and the step decay) against golden."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.scalar import Scalar
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")


def expected(E, step, step_shift, decay_shift, n_epoch):
    """Sequential reading of docs/engine.md "Step decay" with the golden block functions."""
    out, ovf = [], []
    count = 0
    for e in E:
        t, o = golden.scalar(e, step, step_shift)
        out.append(int(t))
        ovf.append(bool(o))
        count += 1
        if n_epoch and count == n_epoch:
            count = 0
            step = golden.decay(step, decay_shift)
    return np.array(out), np.array(ovf)


async def start(ctx, dut, **regs):
    """Set the registers, strobe clear (loads the working step), then change ``step``: the
    working step must not follow the register."""
    for name, v in regs.items():
        ctx.set(getattr(dut, name), v)
    ctx.set(dut.clear, 1)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    ctx.set(dut.step, 1)


@pytest.mark.parametrize("step,step_shift,decay_shift,n_epoch", [
    ((1 << 18) - 1, 0, 0, 0),          # saturates almost always
    (123_457, 17, 3, 5),
    (200_000, 63, 0, 7),               # R = 2^62, everything shifts to 0 or -1
    (99_999, 30, 1, 1),                # decays every sample
    (5, 1, 2, 0),
    ((1 << 18) - 1, 48, 0, 0),         # around the shifter's clamp at 49 (x has 50 bits)
    ((1 << 18) - 1, 49, 0, 0),
    ((1 << 18) - 1, 50, 0, 0),
    ((1 << 18) - 1, 51, 0, 0),
])
def test_scalar_matches_golden(step, step_shift, decay_shift, n_epoch):
    rng = np.random.default_rng(step_shift)
    n = 40
    E = rng.integers(-(1 << 31), 1 << 31, size=n)
    E[:3] = [-(1 << 31), (1 << 31) - 1, 0]
    valid = rng.random(n) < 0.75
    T, ovf = expected(E[valid], step, step_shift, decay_shift, n_epoch)
    dut = Scalar()
    got = []

    async def bench(ctx):
        await start(ctx, dut, step=step, step_shift=step_shift, decay_shift=decay_shift,
                    n_epoch=n_epoch)
        for c in range(n + dut.LATENCY):
            ctx.set(dut.i_valid, int(c < n and valid[c]))
            if c < n:
                ctx.set(dut.e, int(E[c]))
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.append((ctx.get(dut.t), ctx.get(dut.ovf)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got)
    np.testing.assert_array_equal(got[:, 0], T)
    np.testing.assert_array_equal(got[:, 1], ovf)
