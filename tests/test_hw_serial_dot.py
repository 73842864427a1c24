"""SerialDot (the serial engine's plane sum and dot accumulators) in the Amaranth simulator
against golden.plane_sum and golden.accumulate_dot."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.lane_loop import Kind
from zipml.hw.serial_dot import SerialDot
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")

W, D_MAX = 8, 64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_serial_dot_matches_golden(seed):
    """A pass's dot items as the lane loop runs them (per chunk, per sample, per plane: W lanes,
    with idle gaps and grad lanes between items); A_s of each sample after its last plane."""
    rng = np.random.default_rng(seed)
    C, B, q = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 9))
    d = int(rng.integers((C - 1) * W + 1, C * W + 1))
    big = seed == 1
    X = rng.integers(-(1 << 31), 1 << 31, size=C * W) if big else \
        rng.integers(-(1 << 24), 1 << 24, size=C * W)
    bits = rng.integers(0, 2, size=(C, B, q, W))
    mask = golden.lane_mask(d, W)
    A = np.zeros(B, dtype=np.int64)
    ops = []                                    # the lane operations in L2, one per cycle
    want = []                                   # (cycle of L7, sample, A_s)
    for k in range(C):
        for s in range(B):
            for p in range(q):
                for i in range(W):
                    ops.append(dict(valid=1, kind=Kind.DOT, bit=int(bits[k, s, p, i]),
                                    active=int(mask[k, i]), first_lane=int(i == 0),
                                    last_lane=int(i == W - 1), p=p, s=s,
                                    dstart=int(k == 0 and p == 0),
                                    dfinal=int(k == C - 1 and p == q - 1),
                                    x=int(X[k * W + i])))
                S = golden.plane_sum(X[k * W:(k + 1) * W], bits[k, s, p], mask[k])
                A[s] = golden.accumulate_dot(A[s], S, p)
                if k == C - 1 and p == q - 1:
                    want.append((len(ops) - 1 + 5, s, int(A[s])))
                if rng.random() < 0.3:          # a grad item's lanes: ignored here
                    ops += [dict(valid=1, kind=Kind.GRAD, bit=1, active=1,
                                 first_lane=int(i == 0), last_lane=int(i == W - 1),
                                 x=int(rng.integers(-(1 << 31), 1 << 31))) for i in range(W)]
                ops += [dict(valid=0)] * int(rng.integers(0, 3))
    dut = SerialDot(W, D_MAX)
    got = {}

    def drive(ctx, port, op):
        for name in ("valid", "kind", "bit", "active", "first_lane", "last_lane", "p", "s",
                     "dstart", "dfinal"):
            ctx.set(getattr(port, name), op.get(name, 0))

    async def bench(ctx):
        for c in range(len(ops) + 8):
            for port, lag in ((dut.l2, 0), (dut.l3, 1), (dut.l4, 2)):
                drive(ctx, port, ops[c - lag] if 0 <= c - lag < len(ops) else {})
            ctx.set(dut.x, ops[c].get("x", 0) if c < len(ops) else 0)
            if ctx.get(dut.o_valid):
                got[c] = ctx.get(dut.a)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert sorted(got) == [c for c, _, _ in want]
    for c, s, a in want:
        assert got[c] == a, (c, s)
