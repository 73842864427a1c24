"""zipml.sim.engine_rtl (the ``rtl`` backend, Verilator through the ctypes shim) against the
golden model: model words and the counters samples, words and overflow, bit for bit, on the
same random cases as the cocotb testbench (sim/cocotb_engine.py), with random valid gaps.

One engine build (W = 32) serves most of the module; the lane-serial engine (the iCEBreaker's,
W = 8) runs the same kind of cases on a build of its own. The matrices over every q are slow.
"""

import numpy as np
import pytest

from zipml.reference import golden
from zipml.reference.golden import EngineConfig, EngineRegs
from zipml.sim.cocotb_engine import Case, make_case

from zipml.sim import engine_rtl

CONFIG = EngineConfig(W=32, D_MAX=1024, B_MAX=8, BUF_DEPTH=2 * 8 * 32 * 10)


def check(case: Case, config=CONFIG):
    regs, words, init = make_case(config, case)
    got = engine_rtl.run(config, regs, words, init_model=init, gaps=case.gaps, seed=case.seed)
    want = golden.run(config, regs, words, init_model=init)
    mism = np.flatnonzero(got.model_words != want.model_words)
    assert mism.size == 0, (f"{case.name}: {mism.size} of {regs.d} model words differ, first "
                            f"j={mism[0]}: rtl {got.model_words[mism[0]]} golden "
                            f"{want.model_words[mism[0]]}")
    assert (got.samples, got.words, got.overflow) == (want.samples, want.words, want.overflow)
    assert got.words == words.size
    assert got.cycles >= got.words + got.stall_cycles
    return got, want


W = CONFIG.W
DEFAULT = [
    Case(q=1, mode=0, d=1, B=1, n=6, gaps=0.3, seed=11),
    Case(q=2, mode=1, d=W - 1, B=3, n=8, decay=1, gaps=0.2, seed=12),
    Case(q=4, mode=0, d=W + 1, B=2, n=6, l2=5, gaps=0.0, seed=13),
    Case(q=6, mode=1, d=W, B=1, n=5, gaps=0.4, seed=14),
    Case(q=8, mode=0, d=333, B=5, n=12, decay=2, gaps=0.3, epochs=2, seed=15),
    Case(q=32, mode=1, d=100, B=2, n=5, gaps=0.3, seed=16),
    Case(q=7, mode=1, d=300, B=8, n=17, gaps=0.1, seed=17),
    # floor grid (q + 1 planes, grads from the buffer; mode 0's dot groups carry delta_grad)
    Case(q=1, mode=0, d=W + 3, B=2, n=7, gaps=0.3, grid=1, seed=18),
    Case(q=3, mode=1, d=W - 5, B=3, n=8, decay=1, l2=6, gaps=0.2, grid=1, seed=19),
    Case(q=8, mode=0, d=250, B=4, n=9, gaps=0.3, epochs=2, grid=1, seed=20),
]


@pytest.mark.parametrize("case", DEFAULT, ids=lambda c: c.name)
def test_rtl_matches_golden(case):
    check(case)


def test_gaps_change_cycles_not_results():
    case = Case(q=3, mode=0, d=70, B=2, n=6, gaps=0.0, seed=21)
    a, _ = check(case)
    b, _ = check(Case(**{**case.__dict__, "gaps": 0.5}))
    np.testing.assert_array_equal(a.model_words, b.model_words)
    assert b.cycles > a.cycles


@pytest.mark.parametrize("arch", ["parallel", "serial"])
def test_saturation_sets_overflow(arch):
    # a huge step and big labels drive E, T and X' into saturation: the sticky flag must agree
    config = CONFIG if arch == "parallel" else SERIAL
    regs, words, init = make_case(config, Case(q=2, mode=0, d=40, B=1, n=6, seed=31))
    hot = EngineRegs(q=regs.q, mode=regs.mode, d=regs.d, step=(1 << 18) - 1, step_shift=0)
    got = engine_rtl.run(config, hot, words, init_model=init, gaps=0.2, seed=3)
    want = golden.run(config, hot, words, init_model=init)
    assert want.overflow, "this case is meant to saturate"
    assert got.overflow
    np.testing.assert_array_equal(got.model_words, want.model_words)


def test_bad_words_rejected():
    regs, words, init = make_case(CONFIG, Case(q=1, mode=0, d=5, seed=1))
    bad = words.copy()
    bad[3] = np.uint64(1 << W)
    with pytest.raises(ValueError, match="above bit"):
        engine_rtl.run(CONFIG, regs, bad)


@pytest.mark.slow
@pytest.mark.parametrize("grid", [0, 1])
@pytest.mark.parametrize("q", list(range(1, 9)) + [32])
@pytest.mark.parametrize("mode", [0, 1])
def test_rtl_matrix(q, mode, grid):
    if grid and q > 8:
        pytest.skip("the floor grid's families are q = 1..8")
    seed = 1000 + 10 * q + mode + 500 * grid
    Gq = golden.group_planes(q, grid)
    for d in (1, W - 1, W, W + 1, 250):
        for B in (1, 4):
            if golden.buffered(mode, grid) and B * (-(-d // W)) * Gq > CONFIG.BUF_DEPTH // 2:
                continue
            seed += 1
            check(Case(q=q, mode=mode, d=d, B=B, n=9, decay=seed % 3, l2=6 * (seed % 2),
                       gaps=0.3, epochs=2, grid=grid, seed=seed))


@pytest.mark.slow
@pytest.mark.parametrize("W", [16, 64])
def test_rtl_other_widths(W):
    # one build per width; W = 64 exercises 64-bit stream words through the shim
    config = EngineConfig(W=W, D_MAX=4 * W, B_MAX=4, BUF_DEPTH=2 * 4 * 4 * 32)
    for i, case in enumerate([
            Case(q=3, mode=0, d=2 * W + 2, B=2, n=6, gaps=0.3, seed=1),
            Case(q=32, mode=1, d=W - 1, B=2, n=5, gaps=0.2, seed=2),
            Case(q=8, mode=1, d=W, B=4, n=9, decay=1, l2=5, seed=3),
            Case(q=1, mode=0, d=1, B=1, n=4, epochs=2, seed=4)]):
        check(case, config)


SERIAL = EngineConfig(W=8, D_MAX=512, B_MAX=8, BUF_DEPTH=2 * 8 * 40 * 8, ARCH="serial")
SERIAL_CASES = [
    Case(q=1, mode=0, d=1, B=1, n=6, gaps=0.3, seed=41),
    Case(q=2, mode=1, d=7, B=3, n=8, decay=1, gaps=0.2, seed=42),
    Case(q=3, mode=0, d=9, B=8, n=19, l2=5, gaps=0.1, seed=43),
    Case(q=5, mode=1, d=8, B=1, n=5, gaps=0.4, seed=44),
    Case(q=8, mode=0, d=301, B=5, n=12, decay=2, l2=7, gaps=0.3, epochs=2, seed=45),
    Case(q=32, mode=1, d=37, B=2, n=5, gaps=0.3, seed=46),
    Case(q=4, mode=1, d=300, B=8, n=17, gaps=0.1, seed=47),
    # the floor grid: q + 1 planes a group, grad groups from the code buffer in both modes
    Case(q=3, mode=0, grid=1, d=13, B=3, n=8, decay=1, l2=5, gaps=0.3, seed=48),
    Case(q=6, mode=1, grid=1, d=23, B=2, n=7, gaps=0.2, epochs=2, seed=49),
]


@pytest.mark.parametrize("case", SERIAL_CASES, ids=lambda c: c.name)
def test_serial_rtl_matches_golden(case):
    check(case, SERIAL)


@pytest.mark.slow
@pytest.mark.parametrize("q,grid", [(q, 0) for q in list(range(1, 9)) + [32]]
                         + [(q, 1) for q in range(1, 9)])
@pytest.mark.parametrize("mode", [0, 1])
def test_serial_rtl_matrix(q, mode, grid):
    seed = 2000 + 10 * q + mode + 500 * grid
    for d in (1, 7, 8, 9, 250):
        for B in (1, 3, 8):
            if (golden.buffered(mode, grid) and B * (-(-d // 8)) * golden.group_planes(q, grid)
                    > SERIAL.BUF_DEPTH // 2):
                continue
            seed += 1
            check(Case(q=q, mode=mode, d=d, B=B, n=10, decay=seed % 3, l2=6 * (seed % 2),
                       gaps=0.3, epochs=2, seed=seed, grid=grid), SERIAL)
