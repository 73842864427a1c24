"""PlaneDot and DotAccumulate in the Amaranth simulator against the golden block functions."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.dot import PlaneDot, DotAccumulate, sum_width, acc_width
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("W", [8, 32])
def test_plane_dot_matches_plane_sum(W):
    rng = np.random.default_rng(W)
    n = 60
    # extremes included: all -2^31 or 2^31-1 words make the widest sums
    X = rng.integers(-(1 << 31), 1 << 31, size=(n, W))
    X[0] = -(1 << 31)
    X[1] = (1 << 31) - 1
    bits = rng.integers(0, 2, size=(n, W))
    bits[0] = 0
    bits[1] = 1
    mask = rng.integers(0, 2, size=(n, W)).astype(bool)
    mask[:4] = True
    valid = rng.random(n) < 0.8
    valid[:2] = True
    want = golden.plane_sum(X, bits, mask)
    dut = PlaneDot(W)
    got = []

    async def bench(ctx):
        for c in range(n + dut.LATENCY):
            if c < n:
                ctx.set(dut.i_valid, int(valid[c]))
                ctx.set(dut.bits, int(sum(int(b) << i for i, b in enumerate(bits[c]))))
                ctx.set(dut.mask, int(sum(int(b) << i for i, b in enumerate(mask[c]))))
                for i in range(W):
                    ctx.set(dut.x[i], int(X[c, i]))
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if c + 1 >= dut.LATENCY:
                # after the edge that ends cycle c, o_* hold the result of input c+1-LATENCY
                got.append((ctx.get(dut.o_valid), ctx.get(dut.o_sum)))

    _simulate(dut, bench)
    got = got[:n]
    assert [v for v, _ in got] == [int(v) for v in valid]
    np.testing.assert_array_equal(np.array([s for _, s in got])[valid], want[valid])
    assert sum_width(W) >= int(np.abs(want).max()).bit_length() + 1


def test_dot_accumulate_matches_accumulate_dot():
    """Random plane sums for n_dot samples over C chunks and q planes, with input gaps."""
    rng = np.random.default_rng(3)
    B_MAX, W, D_MAX = 4, 8, 64
    SW, AW = sum_width(W), acc_width(D_MAX)
    dut = DotAccumulate(B_MAX, SW, AW)
    passes = [(3, 2, 3), (1, 4, 2), (4, 1, 1), (2, 8, 8), (1, 1, 1)]   # (n_dot, C, q)
    lim = W << 31
    seq, want = [], []
    for n_dot, C, q in passes:
        S = rng.integers(-lim, lim, size=(C, n_dot, q))
        A = np.zeros(n_dot, dtype=np.int64)
        for k in range(C):
            for s in range(n_dot):
                for p in range(q):
                    A[s] = golden.accumulate_dot(A[s], S[k, s, p], p)
                    seq.append(dict(s=int(S[k, s, p]), p=p, start=int(k == 0 and p == 0),
                                    last_plane=int(p == q - 1),
                                    final=int(k == C - 1 and p == q - 1), ins=n_dot - 1))
        want.extend(A.tolist())
    got = []

    async def bench(ctx):
        i = 0
        while i < len(seq) or len(got) < len(want):
            if i < len(seq) and rng.random() < 0.7:
                for name, v in seq[i].items():
                    ctx.set(getattr(dut, name), v)
                ctx.set(dut.i_valid, 1)
                i += 1
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.append(ctx.get(dut.o_a))

    _simulate(dut, bench)
    assert got == want
