"""Real synthesis, place and route with the yowasp toolchain.

Default run: the engine's plane dot product (`zipml.hw.dot.PlaneDot`, W = 8) inside the LFSR
top on the iCE40 UP5K, through the same `build` path as the boards (PLL, report, bitstream), in
well under a minute once the WebAssembly cache is warm. (The whole engine at W = 8 needs about
9700 logic cells, more than the UP5K's 5280: docs/boards.md; its tests are slow-marked.)
Slow: the tiny engine through ``zipml build --json``, both boards' engine and system bitstreams,
and the clock goals of issue 4 item 6.
"""

import json
import pathlib

import pytest

from zipml.hw import build as B
from zipml.hw.boards import BOARDS


def _toolchain(family):
    try:
        B.toolchain_env(family)
    except B.ToolchainError as exc:
        pytest.skip(str(exc))


def _check_report(report, board, target, tmp_path=None):
    spec = BOARDS[board]
    assert report["board"] == board and report["target"] == target
    assert report["fits"], (f"does not fit {report['device']}: {report['utilization']}; "
                            f"largest: {report['area_by_name']}")
    bitstream = pathlib.Path(report["bitstream"])
    assert bitstream.exists() and bitstream.stat().st_size > 1000
    assert bitstream.suffix == (".bin" if spec.family == "ice40" else ".bit")
    # One engine clock, constrained (by nextpnr through the PLL) at the PLL output.
    (clock, fmax), = report["fmax_mhz"].items()
    assert report["constraint_mhz"][clock] == pytest.approx(report["pll_mhz"], rel=1e-3)
    assert 5 < fmax < 500
    assert report["timing_met"] == (fmax >= report["constraint_mhz"][clock])
    util = report["utilization"]
    lc = "ICESTORM_LC" if spec.family == "ice40" else "TRELLIS_COMB"
    assert 0 < util[lc]["used"] < util[lc]["available"]
    pll = "ICESTORM_PLL" if spec.family == "ice40" else "EHXPLLL"
    assert util[pll]["used"] == 1
    cp = report["critical_path"]
    assert cp["delay_ns"] == pytest.approx(1000 / fmax, rel=0.02)
    assert cp["signals"] and cp["start"] and cp["end"]
    json.dumps(report)  # the report is what `zipml build --json` writes


def test_pnr_serial_engine_ice40(tmp_path):
    """The iCEBreaker's engine (lane-serial, small D_MAX) synthesizes, places and routes on the
    UP5K at the PLL clock; the report carries Fmax, utilization, the critical path and a
    bitstream."""
    _toolchain("ice40")
    engine = {"ARCH": "serial", "W": 8, "D_MAX": 64, "B_MAX": 2, "BUF_DEPTH": 64, "L2": False}
    report = B.build("icebreaker", "engine", freq_mhz=48, engine=engine,
                     build_dir=tmp_path / "b")
    _check_report(report, "icebreaker", "engine")
    assert report["engine"] == engine and report["attempts"][0]["pll_mhz"] == 48.0
    # the whole engine is kept (the LFSR wrapper alone is ~150 cells)
    assert report["utilization"]["ICESTORM_LC"]["used"] > 1500
    assert report["utilization"]["ICESTORM_DSP"]["used"] >= 2
    names = report["area_by_name"]
    assert any(k.startswith("pnr.engine.scalar") for k in names), names


@pytest.mark.slow
def test_pnr_small_engine_ice40(tmp_path, capsys):
    """`zipml build --json` on the engine (W = 8, D_MAX = 64) at 30 MHz: it synthesizes, places
    and routes on the UP5K at the PLL clock, and the report file carries Fmax, utilization and
    the critical path."""
    _toolchain("ice40")
    out = tmp_path / "r" / "build.json"
    rc = B.main(["--board", "icebreaker", "--target", "engine", "--json", str(out),
                 "--w", "8", "--d-max", "64", "--b-max", "2", "--buf-depth", "64",
                 "--build-dir", str(tmp_path / "b"), "--freq", "30"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    _check_report(report, "icebreaker", "engine", tmp_path)
    assert report["target_mhz"] == 30.0 and report["pll_mhz"] == 30.0
    assert report["engine"] == {"W": 8, "D_MAX": 64, "B_MAX": 2, "BUF_DEPTH": 64}
    # The LFSR top keeps the engine: far more logic than the wrapper alone (~150 cells).
    assert report["utilization"]["ICESTORM_LC"]["used"] > 600
    assert "icebreaker engine:" in capsys.readouterr().err


_BUILDS = {}


def _board_build(board, target, tmp_path_factory):
    # One build per (board, target) for the whole session: ECP5-85F P&R takes 20+ minutes
    # here, so no clock refitting (fit=False) either.
    if (board, target) not in _BUILDS:
        _toolchain(BOARDS[board].family)
        _BUILDS[board, target] = B.build(
            board, target, fit=False, build_dir=tmp_path_factory.mktemp(f"{board}_{target}"))
    return _BUILDS[board, target]


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
@pytest.mark.parametrize("target", ["engine", "system"])
def test_pnr_board(board, target, tmp_path_factory):
    """Full bitstreams at the board parameters (ECP5-85F: minutes)."""
    report = _board_build(board, target, tmp_path_factory)
    _check_report(report, board, target, None)
    assert report["engine"] == BOARDS[board].engine


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_engine_meets_clock_goal(board, tmp_path_factory):
    """Issue 4 item 6 goals: UP5K >= 48 MHz (W = 8), ECP5-85F >= 160 MHz (W = 32)."""
    report = _board_build(board, "engine", tmp_path_factory)
    assert report["fits"], report["utilization"]
    (fmax,) = report["fmax_mhz"].values()
    assert fmax >= BOARDS[board].target_mhz, report["critical_path"]
