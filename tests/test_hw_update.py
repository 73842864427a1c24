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
    # Schedule the chunks back to back as the engine does: stage A (acc) of plane j in cycle
    # t0 + j, stage B (load with the first plane, write-back after the last) one cycle later,
    # stage C the cycle after; the next chunk's planes start right after this one's.
    sched = {}
    reads = []
    t0 = 0
    for X, T, bits, mask, Xn, ovf in chunks:
        n_grad, q = bits.shape[:2]
        planes = [(sg, p) for sg in range(n_grad) for p in range(q)]
        for j, (sg, p) in enumerate(planes):
            term = int(golden.grad_term(T[sg], p))
            ev = sched.setdefault(t0 + j, {})
            ev.update(acc=1, first=int(j == 0), bits=_word(bits[sg, p]), term=term, nterm=-term)
            if j == 0:
                ev["shr"] = [int(v) for v in golden.shrink(X, l2_shift)]
        evb = sched.setdefault(t0 + 1, {})
        evb.update(load=1, x_load=[int(v) for v in X])
        evw = sched.setdefault(t0 + len(planes), {})
        evw.update(wb=1, mask=_word(mask))
        reads.append(t0 + len(planes) + 1)
        t0 += len(planes)
    results = {}

    async def bench(ctx):
        for c in range(max(reads) + 2):
            ev = sched.get(c, {})
            for name in ("acc", "first", "load", "wb"):
                ctx.set(getattr(dut, name), ev.get(name, 0))
            for name in ("bits", "term", "nterm", "mask"):
                ctx.set(getattr(dut, name), ev.get(name, int(rng.integers(0, 1 << 20))))
            for name in ("shr", "x_load"):
                vals = ev.get(name, rng.integers(-(1 << 31), 1 << 31, size=W))  # junk when unused
                for i in range(W):
                    ctx.set(getattr(dut, name)[i], int(vals[i]))
            if c in reads:
                results[c] = ([ctx.get(dut.x_new[i]) for i in range(W)], ctx.get(dut.ovf),
                              ctx.get(dut.wen))
            if c - 1 in reads:
                results[c - 1] += ([ctx.get(dut.x_next[i]) for i in range(W)],)
            await ctx.tick()

    _simulate(dut, bench)
    for (X, T, bits, mask, Xn, ovf), c in zip(chunks, reads):
        x_new, o, wen, x_next = results[c]
        np.testing.assert_array_equal(np.array(x_new)[mask], Xn[mask])
        np.testing.assert_array_equal(np.array(x_next)[mask], Xn[mask])
        assert wen == _word(mask)
        assert bool(o) == ovf
