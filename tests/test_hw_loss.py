"""SquaredLoss in the Amaranth simulator against golden.loss_squared."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.dot import acc_width
from zipml.hw.loss import SquaredLoss
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")


def test_squared_loss_matches_golden():
    AW = acc_width(4096)
    rng = np.random.default_rng(2)
    n = 100
    A = rng.integers(-(1 << (AW - 1)), 1 << (AW - 1), size=n)
    A[50:] >>= AW - 42                                  # half of them in the non-saturating range
    L = rng.integers(-(1 << 31), 1 << 31, size=n)
    valid = rng.random(n) < 0.8
    E, ovf = golden.loss_squared(A, L)
    assert ovf.any() and not ovf.all()
    dut = SquaredLoss(AW)
    got = []

    async def bench(ctx):
        for c in range(n + dut.LATENCY):
            if c < n:
                ctx.set(dut.i_valid, int(valid[c]))
                ctx.set(dut.a, int(A[c]))
                ctx.set(dut.label, int(L[c]))
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if c + 1 >= dut.LATENCY:
                got.append((ctx.get(dut.o_valid), ctx.get(dut.e), ctx.get(dut.ovf)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got[:n])
    np.testing.assert_array_equal(got[:, 0], valid)
    np.testing.assert_array_equal(got[valid, 1], E[valid])
    np.testing.assert_array_equal(got[valid, 2], ovf[valid])


def test_loss_stages_are_plug_ins_of_both_engines():
    """The engines take their loss stage by name from LOSSES, its latency enters T_LATENCY, an
    unknown name is one error, and every stage has the one signature."""
    from zipml.hw.engine import Engine
    from zipml.hw.loss import LOSSES, loss_signature
    from zipml.hw.serial_engine import SerialEngine
    from zipml.reference import golden
    for name, cls in LOSSES.items():
        stage = cls(40)
        stage._MustUse__silence = True            # built to be looked at, not elaborated
        assert set(stage.signature.members.keys()) == set(loss_signature(40).keys())
        assert callable(getattr(golden, cls.GOLDEN))
        e = Engine(W=8, D_MAX=64, B_MAX=2, BUF_DEPTH=64, loss=name)
        s = SerialEngine(W=8, D_MAX=64, B_MAX=2, BUF_DEPTH=64, loss=name)
        assert e.Loss is cls and s.Loss is cls
        assert e.T_LATENCY == Engine.t_latency(8, cls)
        for obj in (e, s):
            obj._MustUse__silence = True      # built to be looked at, not elaborated
    with pytest.raises(ValueError, match="loss must be one of squared"):
        Engine(W=8, D_MAX=64, B_MAX=2, BUF_DEPTH=64, loss="hinge")
