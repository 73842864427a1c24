"""The whole Engine in the Amaranth simulator against the golden model, bit for bit.

Small random streams (the simulator does ~10-30k cycles/s): every q family, both modes,
minibatch on and off, d around W, decay and L2, random valid gaps on the input and random
enable drops. The big matrices run in Verilator (tests/test_sim_*).
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.engine import Engine
from zipml.reference import golden, pack
from zipml.reference.golden import EngineConfig, EngineRegs


def make_stream(rng, W, q, mode, n, d, B):
    """Random codes and labels packed as one epoch segment."""
    dot = rng.integers(0, 1 << q, size=(n, d)) if q < 32 else \
        rng.integers(0, 1 << 32, size=(n, d), dtype=np.uint64).astype(np.int64)
    grad = None
    if mode == 0:
        grad = rng.integers(0, 1 << q, size=(n, d)) if q < 32 else \
            rng.integers(0, 1 << 32, size=(n, d), dtype=np.uint64).astype(np.int64)
    L = rng.integers(-(1 << 26), 1 << 26, size=n)
    return pack.pack_segment(W, q, mode, dot, L, B=B, grad_codes=grad)


def run_engine(config, regs, words, init_model, *, gap=0.0, enable_drop=0.0, seed=0,
               max_cycles=200_000):
    """Drive the Engine like a host: registers, model port, clear, stream, idle, read back."""
    dut = Engine(W=config.W, D_MAX=config.D_MAX, B_MAX=config.B_MAX, BUF_DEPTH=config.BUF_DEPTH)
    rng = np.random.default_rng(seed)
    d = regs.d
    out = {}

    async def bench(ctx):
        for name in ("q", "mode", "d", "step", "step_shift", "decay_shift", "n_epoch",
                     "l2_shift"):
            ctx.set(getattr(dut, name), int(getattr(regs, name)))
        await ctx.tick()
        assert ctx.get(dut.idle)
        for j, v in enumerate(init_model):
            ctx.set(dut.model_addr, j)
            ctx.set(dut.model_wdata, int(v))
            ctx.set(dut.model_we, 1)
            await ctx.tick()
        ctx.set(dut.model_we, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.enable, 1)
        i = 0
        cycles = 0
        while i < len(words):
            en = not (enable_drop and rng.random() < enable_drop)
            ctx.set(dut.enable, int(en))
            valid = not (gap and rng.random() < gap)
            ctx.set(dut.i_stream.valid, int(valid))
            ctx.set(dut.i_stream.payload, int(words[i]))
            if valid and ctx.get(dut.i_stream.ready):
                i += 1
            await ctx.tick()
            cycles += 1
            assert cycles < max_cycles, f"stalled at word {i} of {len(words)}"
        ctx.set(dut.i_stream.valid, 0)
        ctx.set(dut.enable, 1)
        while not ctx.get(dut.idle):
            await ctx.tick()
            cycles += 1
            assert cycles < max_cycles, "never idle"
        ctx.set(dut.enable, 0)
        await ctx.tick()
        lat = Engine.MODEL_READ_LATENCY
        vals = []
        for j in range(d + lat):
            if j < d:
                ctx.set(dut.model_addr, j)
            if j >= lat:
                vals.append(ctx.get(dut.model_rdata))
            await ctx.tick()
        out["model"] = np.array(vals, dtype=np.int64)
        for name in ("samples", "words", "overflow", "cycles", "stall_cycles"):
            out[name] = ctx.get(getattr(dut, name))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def check(config, regs, words, init, **kw):
    want = golden.run(config, regs, words, init_model=init)
    got = run_engine(config, regs, words, init, **kw)
    np.testing.assert_array_equal(got["model"], want.model_words)
    assert got["samples"] == want.samples
    assert got["words"] == want.words
    assert bool(got["overflow"]) == want.overflow
    return got, want


CFG8 = EngineConfig(W=8, D_MAX=64, B_MAX=4, BUF_DEPTH=256)


@pytest.mark.parametrize("q,mode,d,B,gap", [
    (1, 0, 8, 1, 0.0),
    (2, 0, 7, 2, 0.3),
    (3, 0, 9, 3, 0.2),
    (8, 0, 17, 2, 0.1),
    (1, 1, 9, 1, 0.2),
    (4, 1, 12, 3, 0.2),
    (32, 1, 5, 2, 0.1),
])
def test_engine_matches_golden(q, mode, d, B, gap):
    rng = np.random.default_rng(100 * q + 10 * d + B + mode)
    n = 5
    words = make_stream(rng, CFG8.W, q, mode, n, d, B)
    init = rng.integers(-(1 << 25), 1 << 25, size=d)
    regs = EngineRegs(q=q, mode=mode, d=d, step=int(rng.integers(1 << 10, 1 << 17)),
                      step_shift=int(rng.integers(20, 30)))
    check(CFG8, regs, words, init, gap=gap, enable_drop=0.05, seed=q)
