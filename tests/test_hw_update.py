"""GradTerm and ChunkUpdate in the Amaranth simulator against the golden block functions."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.update import GradTerm, ChunkUpdate
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _word(bits):
    return int(sum(int(b) << i for i, b in enumerate(bits)))


def test_grad_term_matches_golden():
    rng = np.random.default_rng(1)
    n = 80
    T = rng.integers(-(1 << 31), 1 << 31, size=n)
    T[:2] = [-(1 << 31), (1 << 31) - 1]
    p = rng.integers(0, 32, size=n)
    want = golden.grad_term(T, p)
    dut = GradTerm()
    got = []

    async def bench(ctx):
        for c in range(n + dut.LATENCY):
            if c < n:
                ctx.set(dut.t, int(T[c]))
                ctx.set(dut.p, int(p[c]))
            await ctx.tick()
            if c + 1 >= dut.LATENCY:
                got.append((ctx.get(dut.term), ctx.get(dut.nterm)))

    _simulate(dut, bench)
    got = np.array(got[:n])
    np.testing.assert_array_equal(got[:, 0], want)
    np.testing.assert_array_equal(got[:, 1], -want)


@pytest.mark.parametrize("l2_shift", [0, 4, 40])
def test_chunk_update_matches_golden(l2_shift):
    """Chunks of n_grad x q grad planes, then the write-back; saturating cases included."""
    W = 8
    rng = np.random.default_rng(l2_shift)
    dut = ChunkUpdate(W, B_MAX=4)
    chunks = []
    for trial in range(6):
        n_grad, q = (1, 1) if trial == 2 else (int(rng.integers(1, 5)), int(rng.integers(1, 9)))
        big = trial % 2 == 1
        X = rng.integers(-(1 << 31), 1 << 31, size=W) if big else \
            rng.integers(-(1 << 24), 1 << 24, size=W)
        T = rng.integers(-(1 << 31), 1 << 31, size=n_grad) if big else \
            rng.integers(-(1 << 20), 1 << 20, size=n_grad)
        bits = rng.integers(0, 2, size=(n_grad, q, W))
        mask = np.ones(W, dtype=bool) if trial < 3 else np.arange(W) < rng.integers(1, W)
        if trial == 5:
            # drive every lane past +2^31 - 1: large positive X, most negative T, all bits 1
            X[:] = (1 << 31) - 1 - rng.integers(0, 1 << 20, size=W)
            T[:] = -(1 << 31)
            bits[:] = 1
        U = np.zeros(W, dtype=np.int64)
        for s in range(n_grad):
            for p in range(q):
                U = golden.accumulate_update(U, bits[s, p], T[s], p)
        Xn, ovf = golden.update(X, U, l2_shift, mask)
        chunks.append((X, T, bits, mask, Xn, bool(ovf.any())))
    assert any(c[5] for c in chunks), "some chunk must saturate"
    results = []

    async def bench(ctx):
        for X, T, bits, mask, Xn, ovf in chunks:
            n_grad, q = bits.shape[:2]
            one_plane = n_grad * q == 1
            if not one_plane:
                # stage B: the chunk's first word loads the chunk register
                ctx.set(dut.load, 1)
                for i in range(W):
                    ctx.set(dut.x_load[i], int(X[i]))
            for s in range(n_grad):
                for p in range(q):
                    term = int(golden.grad_term(T[s], p))
                    ctx.set(dut.acc, 1)
                    ctx.set(dut.first, int(s == 0 and p == 0))
                    ctx.set(dut.bits, _word(bits[s, p]))
                    ctx.set(dut.term, term)
                    ctx.set(dut.nterm, -term)
                    if s == 0 and p == 0:
                        for i in range(W):  # the shrink arrives with the first grad plane
                            ctx.set(dut.shr[i], int(golden.shrink(X[i], l2_shift)))
                    await ctx.tick()
                    ctx.set(dut.load, 0)
                    for i in range(W):
                        ctx.set(dut.shr[i], int(rng.integers(-(1 << 31), 1 << 31)))  # unused now
                        ctx.set(dut.x_load[i], int(rng.integers(-(1 << 31), 1 << 31)))
            ctx.set(dut.acc, 0)
            # stage B of the write-back (with the load when the chunk has a single grad plane)
            ctx.set(dut.wb, 1)
            ctx.set(dut.wb_first, int(one_plane))
            ctx.set(dut.load, int(one_plane))
            if one_plane:
                for i in range(W):
                    ctx.set(dut.x_load[i], int(X[i]))
            ctx.set(dut.mask, _word(mask))
            await ctx.tick()
            ctx.set(dut.wb, 0)
            ctx.set(dut.load, 0)
            ctx.set(dut.mask, 0)
            # stage C: saturated words, lane enables, overflow
            x_new = [ctx.get(dut.x_new[i]) for i in range(W)]
            wen = ctx.get(dut.wen)
            o = ctx.get(dut.ovf)
            await ctx.tick()
            x_after = [ctx.get(dut.x[i]) for i in range(W)]
            results.append((x_new, o, x_after, wen))

    _simulate(dut, bench)
    for (X, T, bits, mask, Xn, ovf), (x_new, o, x_after, wen) in zip(chunks, results):
        np.testing.assert_array_equal(np.array(x_new)[mask], Xn[mask])
        np.testing.assert_array_equal(np.array(x_after), Xn)     # inactive lanes keep X
        assert wen == _word(mask)
        assert bool(o) == ovf
