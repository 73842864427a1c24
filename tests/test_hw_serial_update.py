"""SerialUpdate (the serial engine's lanes' U and write-back) in the Amaranth simulator against
golden.accumulate_update and golden.update."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.lane_loop import Kind
from zipml.hw.serial_update import SerialUpdate
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")

W, B_MAX, D_MAX = 8, 4, 64


def _chunks(rng, n):
    """n chunks of n_grad x q grad planes, big and small model words and T, one saturating."""
    out = []
    for trial in range(n):
        n_grad, q = int(rng.integers(1, B_MAX + 1)), int(rng.integers(1, 9))
        big = trial % 2 == 1
        X = rng.integers(-(1 << 31), 1 << 31, size=W) if big else \
            rng.integers(-(1 << 24), 1 << 24, size=W)
        T = rng.integers(-(1 << 31), 1 << 31, size=n_grad) if big else \
            rng.integers(-(1 << 20), 1 << 20, size=n_grad)
        bits = rng.integers(0, 2, size=(n_grad, q, W))
        if trial == n - 1:                      # every lane past +2^31 - 1
            X[:] = (1 << 31) - 1 - rng.integers(0, 1 << 20, size=W)
            T[:] = -(1 << 31)
            bits[:] = 1
        out.append((X, T, bits))
    return out


@pytest.mark.parametrize("l2_shift", [0, 3, 40])
@pytest.mark.parametrize("L2", [True, False])
def test_serial_update_matches_golden(l2_shift, L2):
    """Each chunk as the lane loop runs it: its grad items (W lanes each, back to back, with
    idle gaps), then its write-back item; x_new of each write-back lane in L4."""
    rng = np.random.default_rng(l2_shift + 100 * L2)
    chunks = _chunks(rng, 6)
    ops = []                                    # the lane operations in L2, one per cycle
    want = []                                   # (cycle of L4, lane, X', overflow)
    for k, (X, T, bits) in enumerate(chunks):
        U = np.zeros(W, dtype=np.int64)
        n_grad, q = bits.shape[:2]
        for s in range(n_grad):
            for p in range(q):
                term = int(golden.grad_term(T[s], p))
                for i in range(W):
                    ops.append(dict(valid=1, kind=Kind.GRAD, bit=int(bits[s, p, i]),
                                    gfirst=int(s == 0 and p == 0), addr=k * W + i, term=term,
                                    x=int(rng.integers(-(1 << 31), 1 << 31))))
                U = golden.accumulate_update(U, bits[s, p], T[s], p)
                ops += [dict(valid=0)] * int(rng.integers(0, 2))
        Xn, ovf = golden.update(X, U, l2_shift if L2 else 0)
        for i in range(W):
            want.append((len(ops) + 2, i, int(Xn[i]), bool(ovf[i])))
            ops.append(dict(valid=1, kind=Kind.WB, bit=int(rng.integers(0, 2)), gfirst=0,
                            addr=k * W + i, term=int(rng.integers(-(1 << 38), 1 << 38)),
                            x=int(X[i])))
    assert any(o for *_, o in want), "some lane must saturate"
    dut = SerialUpdate(W, B_MAX, D_MAX, L2=L2)
    got = {}

    def drive(ctx, port, op):
        for name in ("valid", "kind", "bit", "gfirst", "addr"):
            ctx.set(getattr(port, name), op.get(name, 0))

    async def bench(ctx):
        ctx.set(dut.l2_shift, l2_shift)
        for c in range(len(ops) + 4):
            op1 = ops[c + 1] if c + 1 < len(ops) else {}
            op2 = ops[c] if c < len(ops) else {}
            drive(ctx, dut.l1, op1)
            drive(ctx, dut.l2, op2)
            ctx.set(dut.term, op2.get("term", 0))
            ctx.set(dut.x, op2.get("x", 0))
            got[c] = (ctx.get(dut.x_new), ctx.get(dut.x_ovf))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for c, i, xn, ovf in want:
        assert got[c] == (xn, ovf), (c, i)
