"""zipml.reference.cycles (the cycle model) against the engine RTL's counters in Verilator.

The model must give exactly the ``cycles`` and ``stall_cycles`` of `zipml.sim.engine_rtl.run`
for a stream with no input gaps, on both engine architectures. Streams come from the host's
own job builder (`EngineJob.build(...).epoch_stream(e)` on random data: every quantizer, q,
grid, d, B, epochs run one by one as the backends do and back to back in one stream) and from
the cocotb cases (`make_case`) for the other widths. The default suite runs a small subset on
the two builds other tests share (W = 32 parallel, the iCEBreaker's serial engine); the full
matrix, the W = 8, 16 and 64 parallel builds and random step shifts are slow.
"""

import dataclasses
import time

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw import dot, engine, loss, scalar, serial_engine, serial_scalar
from zipml.hw.boards import board_spec
from zipml.reference import cycles, golden
from zipml.reference.engine_job import EngineJob
from zipml.reference.golden import EngineConfig
from zipml.sim import engine_rtl
from zipml.sim.cocotb_engine import Case, make_case

# the builds tests/test_golden_backend.py and the serial bench use (Verilator cache shared)
PARALLEL = EngineConfig(W=32, D_MAX=1024, B_MAX=8, BUF_DEPTH=2 * 8 * 32 * 10)
SERIAL = EngineConfig(**{k: v for k, v in board_spec("icebreaker").engine.items() if k != "L2"})
PARALLEL8 = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=2048)


def same_as_rtl(config, regs, words, init=None, what=""):
    """Run the RTL, compare its counters with the model's; return the RTL's result."""
    got = engine_rtl.run(config, regs, words, init_model=init)
    want = cycles.engine_cycles(config, regs, words)
    assert (got.cycles, got.stall_cycles) == want, (
        f"{config.ARCH} W={config.W} {what}: rtl (cycles, stalls) = "
        f"{(got.cycles, got.stall_cycles)}, model {want}")
    return got


def job_for(config, quantizer, q, grid, d, B, n, seed, lr=0.05):
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1.0, 1.0, size=(n, d))
    b = rng.uniform(-1.0, 1.0, size=n)
    return EngineJob.build(A, b, quantizer=quantizer, q=q, lr=lr, B=B, seed=seed,
                           decay_factor=0.9, config=config, grid=grid)


def check_job(config, quantizer, q, grid, d, B, n=None, epochs=2, seed=0, lr=0.05):
    """Each epoch as its own run (as `host.backend_engine.train_engine` runs them), then all
    epochs back to back in one stream (segments meeting: the write-back wait of a pass without
    grads)."""
    n = 2 * config.B_MAX + 1 if n is None else n
    try:
        job = job_for(config, quantizer, q, grid, d, B, n, seed, lr)
    except ValueError as exc:           # the code buffer cannot hold this pass
        assert "code-buffer" in str(exc)
        return
    what = f"{quantizer} q={q} {grid} d={d} B={B} n={n} seed={seed}"
    X = None
    streams = []
    for e in range(epochs):
        words = job.epoch_stream(e)
        streams.append(words)
        res = same_as_rtl(config, job.epoch_regs(e), words, X, f"{what} epoch {e}")
        X = res.model_words
    if epochs > 1:
        same_as_rtl(config, job.epoch_regs(0), np.concatenate(streams), None,
                    f"{what} {epochs} epochs in one stream")


# ------------------------------------------------------------------ the model's constants

@pytest.mark.parametrize("W", [8, 16, 32, 64])
def test_latencies_are_the_gateware_ones(W):
    assert cycles.plane_dot_latency(W) == dot.PlaneDot.latency(W)
    assert cycles.t_latency(W) == engine.Engine.t_latency(W)
    assert (cycles.DOT_STAGE, cycles.WB_STAGE) == (engine.DOT, engine.WB)
    assert cycles.ACC_LATENCY == dot.DotAccumulate.LATENCY
    assert cycles.LOSS_LATENCY == loss.SquaredLoss.LATENCY
    assert cycles.SCALAR_LATENCY == scalar.Scalar.LATENCY
    assert cycles.serial_t_latency(W) == serial_engine.SerialEngine.t_latency(W)


@pytest.mark.parametrize("step_shift", [0, 1, 2, 9, 17, 31, 49, 50, 51, 63])
def test_serial_scalar_cycles(step_shift):
    """Three errors on consecutive cycles: the serial scalar takes one at a time from the cycle
    after its input, S = serial_scalar_cycles cycles each, T out in the S-th."""
    S = cycles.serial_scalar_cycles(step_shift)
    dut = serial_scalar.SerialScalar()
    seen = []

    async def bench(ctx):
        ctx.set(dut.step, 12345)
        ctx.set(dut.step_shift, step_shift)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for cyc in range(3 * S + 10):
            ctx.set(dut.i_valid, int(cyc < 3))
            ctx.set(dut.e, 1000 * cyc - 7)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                seen.append(cyc + 1)        # o_valid is up in the cycle after the edge

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1 + S, 1 + 2 * S, 1 + 3 * S]


# ------------------------------------------------------------------ the claim it rests on

@pytest.mark.parametrize("config", [PARALLEL, SERIAL], ids=lambda c: c.ARCH)
def test_cycles_depend_on_structure_not_data(config):
    """Other data of the same shape, and a step that saturates E, T and the model (overflow),
    take the same cycles: no stall looks at a payload other than a header."""
    case = Case(q=3, mode=0, d=config.W + 3, B=2, n=7, gaps=0.0, epochs=2, seed=1)
    regs, words, init = make_case(config, case)
    base = same_as_rtl(config, regs, words, init)
    _, other, init2 = make_case(config, dataclasses.replace(case, seed=2))
    assert not np.array_equal(other, words) and other.size == words.size
    got = engine_rtl.run(config, regs, other, init_model=init2)
    assert (got.cycles, got.stall_cycles) == (base.cycles, base.stall_cycles)
    # the same step shift (the serial scalar's time), a step of 0 (nothing moves) and the
    # largest step (E, T and the model saturate)
    cold = dataclasses.replace(regs, step=0, step_shift=0)
    hot = dataclasses.replace(regs, step=(1 << 18) - 1, step_shift=0)
    a = same_as_rtl(config, cold, words, init)
    b = engine_rtl.run(config, hot, words, init_model=init)
    assert b.overflow and not a.overflow
    assert (b.cycles, b.stall_cycles) == (a.cycles, a.stall_cycles)


# ------------------------------------------------------------------ default subset

DEFAULT = [
    # quantizer, q, grid, d (in units of W: 0 -> 1, -1 -> W - 1, ...), B
    ("double", 1, "floor", "W+1", 3),
    ("naive", 2, "floor", "1", "B_MAX"),
    ("deterministic", 4, "symmetric", "W-1", 1),
    ("double", 3, "symmetric", "3W", "B_MAX"),
    ("full", 8, "symmetric", "W+1", 3),
    ("double", 8, "floor", "3W", 1),
]


def d_of(spec, W):
    return {"1": 1, "W-1": W - 1, "W+1": W + 1, "3W": 3 * W - 2}[spec]


@pytest.mark.parametrize("config", [PARALLEL, SERIAL], ids=lambda c: c.ARCH)
@pytest.mark.parametrize("quantizer, q, grid, d, B", DEFAULT)
def test_model_equals_rtl(config, quantizer, q, grid, d, B):
    B = config.B_MAX if B == "B_MAX" else B
    check_job(config, quantizer, q, grid, d_of(d, config.W), B, seed=q)


def test_empty_stream():
    for config in (PARALLEL, SERIAL):
        regs = golden.EngineRegs(q=2, mode=0, d=5, step=1, step_shift=3)
        assert cycles.engine_cycles(config, regs, np.zeros(0, np.uint64)) == (0, 0)
        same_as_rtl(config, regs, np.zeros(0, np.uint64))


def test_rejects_what_golden_rejects():
    regs, words, _ = make_case(PARALLEL, Case(q=2, mode=1, d=40, B=3, n=7, gaps=0.0))
    for bad in (words[:-1], words[:5]):
        with pytest.raises(ValueError):
            golden.run(PARALLEL, regs, bad)
        with pytest.raises(ValueError):
            cycles.engine_cycles(PARALLEL, regs, bad)


@pytest.mark.parametrize("config", [PARALLEL, SERIAL], ids=lambda c: c.ARCH)
def test_an_epoch_of_20000_samples_is_fast(config):
    job = job_for(config, "double", 4, "floor", 64, 1, 20000, seed=0)
    words = job.epoch_stream(0)
    t = time.perf_counter()
    c, s = cycles.engine_cycles(config, job.regs, words)
    took = time.perf_counter() - t
    assert c > words.size and 0 <= s < c
    assert took < 2.0, f"the model took {took:.2f} s for 20000 samples"


# ------------------------------------------------------------------ the full matrix (slow)

QUANTIZER_Q_GRID = ([(qz, q, g) for qz in ("double", "naive", "deterministic")
                     for q in range(1, 9) for g in ("floor", "symmetric")]
                    + [("full", 32, "symmetric")])


@pytest.mark.slow
@pytest.mark.parametrize("config", [PARALLEL, PARALLEL8, SERIAL],
                         ids=lambda c: f"{c.ARCH}{c.W}")
@pytest.mark.parametrize("quantizer, q, grid", QUANTIZER_Q_GRID,
                         ids=lambda v: str(v))
def test_model_equals_rtl_matrix(config, quantizer, q, grid):
    W = config.W
    seed = 100 * q + 7 * len(quantizer) + (grid == "floor")
    for d in (1, W - 1, W + 1, 3 * W):
        for B in (1, 3, config.B_MAX):
            seed += 1
            # the learning rate moves the serial engine's step shift (its scalar's time)
            check_job(config, quantizer, 8 if quantizer == "full" else q, grid, d, B,
                      seed=seed, lr=(0.3, 0.01, 1e-4)[seed % 3])


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    # the builds of tests/test_sim_engine_rtl.py's other widths
    EngineConfig(W=16, D_MAX=64, B_MAX=4, BUF_DEPTH=2 * 4 * 4 * 32),
    EngineConfig(W=64, D_MAX=256, B_MAX=4, BUF_DEPTH=2 * 4 * 4 * 32),
    PARALLEL8, SERIAL], ids=lambda c: f"{c.ARCH}{c.W}")
def test_model_equals_rtl_random_cases(config):
    """Random cocotb cases (random codes, odd n, 1-3 segments back to back) and, on the serial
    engine, random step shifts (0..63: its scalar takes 8 + amt // 8 + amt % 8 cycles)."""
    rng = np.random.default_rng(config.W)
    W = config.W
    for i in range(60):
        grid, mode = int(rng.integers(2)), int(rng.integers(2))
        q = int(rng.choice([1, 2, 3, 4, 5, 8] + ([] if grid else [32])))
        d = int(min(config.D_MAX, rng.choice([1, W - 1, W, W + 1, 3 * W - 2,
                                              int(rng.integers(1, 4 * W))])))
        B = int(rng.choice([1, 2, 3, config.B_MAX]))
        if golden.buffered(mode, grid) and B * -(-d // W) * (q + grid) > config.BUF_DEPTH // 2:
            continue
        case = Case(q=q, mode=mode, d=d, B=B, n=int(rng.integers(1, 20)), grid=grid, gaps=0.0,
                    epochs=int(rng.integers(1, 4)), seed=i)
        regs, words, init = make_case(config, case)
        if config.ARCH == "serial":
            regs = dataclasses.replace(regs, step_shift=int(rng.integers(0, 64)))
        same_as_rtl(config, regs, words, init, case.name)
