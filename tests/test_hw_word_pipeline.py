"""GradSide and DotSide (the parallel engine's word pipeline after the parser) in the Amaranth
simulator against the golden block functions: the chunk's write-back against
golden.accumulate_update / golden.update, a pass's dot accumulators against golden.plane_sum /
golden.accumulate_dot. The words are issued as the parser issues them, with idle cycles."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.word_pipeline import ACC, WB, LOAD, GradSide, DotSide
from zipml.reference import golden

pytestmark = pytest.mark.filterwarnings("error")

W, B_MAX, D_MAX = 8, 4, 64
C_MAX = D_MAX // W


def _word(bits):
    return int(sum(int(b) << i for i, b in enumerate(bits)))


def _rand_row(rng):
    return [int(v) for v in rng.integers(-(1 << 31), 1 << 31, size=W)]


def _simulate(dut, n_cycles, drive, sample):
    async def bench(ctx):
        for c in range(n_cycles):
            drive(ctx, c)
            sample(ctx, c)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("l2_shift", [0, 5])
def test_grad_side_matches_golden(l2_shift):
    rng = np.random.default_rng(l2_shift)
    C = 4
    d = 3 * W + 5
    mask = golden.lane_mask(d, W)
    X = rng.integers(-(1 << 31), 1 << 31, size=(C, W))
    X[1] = (1 << 31) - 1 - rng.integers(0, 1 << 20, size=W)    # chunk 1 saturates
    n_grad, q = 3, 4
    T = rng.integers(-(1 << 31), 1 << 31, size=n_grad)
    bits = rng.integers(0, 2, size=(C, n_grad, q, W))
    bits[1] = 1
    T_sat = np.full(n_grad, -(1 << 31))
    ev = {}                                     # cycle -> {port: value}
    want = {}                                   # write-back cycle -> (chunk, X', ovf)
    c = 0
    for k in range(C):
        Tk = T_sat if k == 1 else T
        frombuf = k % 2
        U = np.zeros(W, dtype=np.int64)
        words = [(s, p) for s in range(n_grad) for p in range(q)]
        for j, (s, p) in enumerate(words):
            ev.setdefault(c, {})["tag"] = dict(
                valid=1, first=int(j == 0), wb=int(j == len(words) - 1), k=k, p=p,
                lastchunk=int(k == C - 1), frombuf=frombuf)
            ev.setdefault(c + 1, {}).update(t=int(Tk[s]))
            w = _word(bits[k, s, p])
            if frombuf:
                ev.setdefault(c + 2, {})["buf_word"] = w
            else:
                ev.setdefault(c + 1, {})["word"] = w
            if j == 0:
                shr = golden.shrink(X[k], l2_shift)
                ev.setdefault(c + ACC, {}).update(row=[int(v) for v in X[k]],
                                                  shr=[int(v) for v in shr])
            U = golden.accumulate_update(U, bits[k, s, p], Tk[s], p)
            last = c
            c += 1 + int(rng.integers(0, 2))
        Xn, ovf = golden.update(X[k], U, l2_shift, mask[k])
        want[last + WB] = (k, Xn, ovf)
    dut = GradSide(W, C_MAX, B_MAX)
    got = {}

    def drive(ctx, cyc):
        e = ev.get(cyc, {})
        tag = e.get("tag", dict(valid=0))
        for name in ("valid", "first", "wb", "k", "p", "lastchunk", "frombuf"):
            ctx.set(getattr(dut.tag, name), tag.get(name, 0))
        ctx.set(dut.t, e.get("t", int(rng.integers(-(1 << 31), 1 << 31))))
        ctx.set(dut.word, e.get("word", int(rng.integers(0, 1 << W))))
        ctx.set(dut.buf_word, e.get("buf_word", int(rng.integers(0, 1 << W))))
        for name in ("row", "shr"):
            vals = e.get(name, _rand_row(rng))
            for i in range(W):
                ctx.set(getattr(dut, name)[i], vals[i])
        ctx.set(dut.last_mask, _word(mask[C - 1]))

    def sample(ctx, cyc):
        if ctx.get(dut.we):
            got[cyc] = (ctx.get(dut.waddr), ctx.get(dut.wen),
                        [ctx.get(dut.wdata[i]) for i in range(W)])
        if cyc - 1 in got:
            got[cyc - 1] += (ctx.get(dut.ovf), [ctx.get(dut.x_next[i]) for i in range(W)])

    _simulate(dut, max(want) + 3, drive, sample)
    assert sorted(got) == sorted(want)
    for cyc, (k, Xn, ovf) in want.items():
        waddr, wen, wdata, o, x_next = got[cyc]
        assert (waddr, wen) == (k, _word(mask[k]))
        np.testing.assert_array_equal(np.array(wdata)[mask[k]], Xn[mask[k]])
        np.testing.assert_array_equal(np.array(x_next)[mask[k]], Xn[mask[k]])
        assert bool(o) == bool(ovf.any())
    assert any(bool(o.any()) for _, _, o in want.values())


@pytest.mark.parametrize("ram", [0, 1])
def test_dot_side_matches_golden(ram):
    rng = np.random.default_rng(10 + ram)
    C, n_dot, q = 3, 3, 4
    d = 2 * W + 3
    mask = golden.lane_mask(d, W)
    X = rng.integers(-(1 << 31), 1 << 31, size=(C, W))
    bits = rng.integers(0, 2, size=(C, n_dot, q, W))
    ev = {}
    A = np.zeros(n_dot, dtype=np.int64)
    c = 0
    for k in range(C):
        words = [(s, p) for s in range(n_dot) for p in range(q)]
        for j, (s, p) in enumerate(words):
            ev.setdefault(c, {})["tag"] = dict(
                valid=1, first=int(j == 0), ram=ram, k=k, p=p, cy=0, lastp=int(p == q - 1),
                chunk0=int(k == 0), lastchunk=int(k == C - 1), ins=n_dot - 1)
            ev.setdefault(c + 1, {})["word"] = _word(bits[k, s, p])
            if j == 0:
                row = [int(v) for v in X[k]]
                ev.setdefault(c + LOAD, {}).update({"row" if ram else "x_next": row})
            S = golden.plane_sum(X[k], bits[k, s, p], mask[k])
            A[s] = golden.accumulate_dot(A[s], S, p)
            c += 1 + int(rng.integers(0, 2))
    dut = DotSide(W, C_MAX, B_MAX, D_MAX)
    got = []

    def drive(ctx, cyc):
        e = ev.get(cyc, {})
        tag = e.get("tag", dict(valid=0))
        for name in ("valid", "first", "ram", "k", "p", "cy", "lastp", "chunk0", "lastchunk",
                     "ins"):
            ctx.set(getattr(dut.tag, name), tag.get(name, 0))
        ctx.set(dut.word, e.get("word", int(rng.integers(0, 1 << W))))
        for name in ("row", "x_next"):
            vals = e.get(name, _rand_row(rng))
            for i in range(W):
                ctx.set(getattr(dut, name)[i], vals[i])
        ctx.set(dut.last_mask, _word(mask[C - 1]))

    def sample(ctx, cyc):
        if ctx.get(dut.o_valid):
            got.append(ctx.get(dut.a))

    _simulate(dut, c + 20, drive, sample)
    assert got == [int(a) for a in A]
