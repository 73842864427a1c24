"""``zipml experiment`` (issue 9 items 2-3): the JSON schema, time to target, --resume, failing
runs, boards that cannot hold the data, build reports, plots. Small: synthetic data, 2 epochs,
one q, one board, one seed."""

import json

import numpy as np
import pytest

from zipml.host import backend_engine as be
from zipml.host import cli
from zipml.host import experiment as ex

SMALL = ["--synthetic", "200,5,0", "--bits", "2", "--quantizers", "double,full",
         "--board", "ulx3s", "--epochs", "2", "--seeds", "1", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def run(tmp_path, *extra, name="e"):
    out = tmp_path / f"{name}.json"
    code = cli.main(["experiment", *SMALL, *extra, "--json", str(out),
                     "--plots", str(tmp_path / name)])
    return code, out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    code, out = run(tmp)
    assert code == 0
    return tmp, out, json.loads(out.read_text())


def test_time_to_target_on_a_hand_made_curve():
    loss = [5.0, 2.0, 1.2, 1.04, 1.009, 1.02]
    secs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert ex.time_to_target(loss, secs, 1.0, 0.05) == 0.4      # first <= 1.05
    assert ex.time_to_target(loss, secs, 1.0, 0.01) == 0.5      # later going up does not matter
    assert ex.time_to_target(loss, secs, 1.0, 0.001) is None    # never
    assert ex.time_to_target(loss, secs, 2.0, 0.0) == 0.2       # <= is reached, eps 0
    assert ex.time_to_target([None, 1.0], [1, 2], 1.0, 0.01) == 2   # diverged epoch skipped
    assert ex.time_to_target(loss, None, 1.0, 0.05) is None     # no clock: no seconds


def test_json_schema(small):
    tmp, out, doc = small
    assert {"commit", "command", "datasets"} <= set(doc)
    assert doc["command"].startswith("zipml experiment --synthetic 200,5,0")
    (ds,) = doc["datasets"]
    assert {"name", "n", "d", "task", "optimum", "runs", "speedup"} <= set(ds)
    assert (ds["n"], ds["d"], ds["task"]) == (200, 6, "regression")
    eng = [r for r in ds["runs"] if r["kind"] == "engine"]
    assert {(r["quantizer"], r["q"]) for r in eng} == {("double", 2), ("full", 32)}
    for r in eng:
        assert {"board", "quantizer", "q", "seed", "loss", "cycles", "seconds", "fmax_mhz",
                "link_bits", "store_bits", "time_to_target"} <= set(r)
        assert len(r["loss"]) == len(r["cycles"]) == len(r["seconds"]) == 2
        assert r["cycles"][1] > r["cycles"][0] > 0            # cumulative
        clk = doc["board_clocks"]["ulx3s"]
        assert r["seconds"][1] == pytest.approx(r["cycles"][1] / (clk["clock_mhz"] * 1e6))
        assert set(r["time_to_target"]) == {"0.01", "0.05"}
    # the per-epoch cycles add up to what train_golden reports for the same run
    full = next(r for r in eng if r["quantizer"] == "full")
    ds_obj = ex.synthetic(200, 5, 0)
    from zipml.host.problem import TrainOptions, prepare, resolve
    p = prepare(ds_obj.X, ds_obj.y, "regression")
    res = be.train_golden(p, resolve(p, TrainOptions(quantizer="full", epochs=2, board="ulx3s",
                                                     backend="golden", replay=False)))
    assert full["cycles"][-1] == res.cycles and full["loss"] == pytest.approx(res.mse)
    cpu = {r["name"] for r in ds["runs"] if r["kind"] == "cpu"}
    assert cpu == {"sklearn_sgd", "numpy_sgd_f32", "lstsq"}
    for r in ds["runs"]:
        if r["kind"] == "cpu":
            assert {"name", "loss", "seconds", "time_to_target"} <= set(r)
    lst = next(r for r in ds["runs"] if r.get("name") == "lstsq")
    assert lst["loss"][0] == pytest.approx(ds["optimum"])
    assert lst["time_to_target"]["0.01"] == lst["seconds"][0]
    sp = ds["speedup"]["ulx3s"]
    assert set(sp["vs_32bit"]) == set(sp["vs_cpu_sgd"]) == {"0.01", "0.05"}
    assert doc["board_clocks"]["ulx3s"]["report"] == "results/build_ulx3s.json"


def test_plots_are_png(small):
    tmp, out, doc = small
    pngs = sorted((tmp / "e").glob("*.png"))
    assert [p.name.split("_", 2)[-1] for p in pngs] == [
        "s0_loss_bits.png", "s0_loss_seconds.png", "s0_time_to_target.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == PNG


def test_resume_skips_runs_in_the_json(small, monkeypatch, tmp_path):
    _, out, doc = small
    path = tmp_path / "e.json"
    path.write_text(out.read_text())

    def boom(*a, **k):
        raise AssertionError("resume re-ran a run")
    for fn in ("engine_run", "numpy_sgd_run", "sklearn_run", "lstsq_run"):
        monkeypatch.setattr(ex, fn, boom)
    code, _ = run(tmp_path, "--resume", "--targets", "0.01,0.05,0.5")
    assert code == 0
    again = json.loads(path.read_text())
    assert len(again["datasets"][0]["runs"]) == len(doc["datasets"][0]["runs"])
    # a new target is computed from the kept curves
    for r in again["datasets"][0]["runs"]:
        assert set(r["time_to_target"]) == {"0.01", "0.05", "0.5"}
    # other settings than the report's: refused, nothing overwritten
    before = path.read_text()
    assert cli.main(["experiment", *SMALL[:-5], "--epochs", "3", "--seeds", "1", "--resume",
                     "--json", str(path), "--plots", str(tmp_path / "e"), "--quiet"]) == 2
    assert path.read_text() == before


def test_failing_run_is_recorded_and_retried_on_resume(monkeypatch, tmp_path):
    # and without a build report (--reports: an empty folder): cycles stay, seconds are null
    real = be.golden_cycles_run

    def broken(config, regs, words, init_model=None):
        if regs.q == 2:
            raise RuntimeError("engine on fire")
        return real(config, regs, words, init_model=init_model)
    monkeypatch.setattr(be, "golden_cycles_run", broken)
    code, out = run(tmp_path, "--reports", str(tmp_path))
    assert code == 0
    doc = json.loads(out.read_text())
    assert "no build report" in doc["board_clocks"]["ulx3s"]["reason"]
    ds = doc["datasets"][0]
    bad = [r for r in ds["runs"] if "error" in r]
    assert [(r["quantizer"], r["q"]) for r in bad] == [("double", 2)]
    assert "engine on fire" in bad[0]["error"]
    (full,) = [r for r in ds["runs"] if r["kind"] == "engine" and "error" not in r]
    assert full["quantizer"] == "full" and full["seconds"] is None
    assert all(np.diff(full["cycles"]) > 0) and set(full["time_to_target"].values()) == {None}
    monkeypatch.setattr(be, "golden_cycles_run", real)
    assert run(tmp_path, "--resume", "--reports", str(tmp_path))[0] == 0
    ds = json.loads(out.read_text())["datasets"][0]
    assert not [r for r in ds["runs"] if "error" in r]
    assert sum(r["kind"] == "engine" for r in ds["runs"]) == 2


def test_board_that_cannot_hold_the_data_is_skipped_with_the_reason(tmp_path, monkeypatch):
    # the ULX3S's engine shrunk to D_MAX = 8 (the real boards hold 1024 and 4096 features)
    small = be.BoardBuild(board="ulx3s", config=be.EngineConfig(W=8, D_MAX=8, B_MAX=8,
                                                                 BUF_DEPTH=2048),
                          L2=True, clk_hz=45_000_000, baud=3_000_000, store_depth=4096)
    orig = be.board_build
    monkeypatch.setattr(be, "board_build", lambda b=None, c=None: small if b == "ulx3s"
                        else orig(b, c))
    out = tmp_path / "s.json"
    argv = ["experiment", "--synthetic", "200,9,1", "--bits", "2", "--quantizers", "double",
            "--board", "ulx3s", "--epochs", "2", "--seeds", "1", "--quiet",
            "--json", str(out), "--plots", str(tmp_path / "s")]
    assert cli.main(argv) == 0
    ds = json.loads(out.read_text())["datasets"][0]
    assert ds["skipped"] == [{"board": "ulx3s",
                              "reason": "d=10 features (intercept included) exceed the "
                                        "engine's D_MAX=8"}]
    assert not [r for r in ds["runs"] if r["kind"] == "engine"]
    assert [r for r in ds["runs"] if r["kind"] == "cpu"]          # the CPU still runs
    assert ds["speedup"] == {}
    # and B > B_MAX on the real build
    assert "B_MAX=8" in ex.board_refusal(_prep(), orig("icebreaker"), batch=9)


def _prep():
    from zipml.host.problem import prepare
    d = ex.synthetic(20, 3, 0)
    return prepare(d.X, d.y, "regression")


def test_build_reports_give_the_clock_or_say_why_not(tmp_path):
    miss = ex.board_clock("ulx3s", tmp_path)
    assert miss["clock_mhz"] is None and "no build report" in miss["reason"]
    rep = {"board": "ulx3s", "pll_mhz": 45.0, "fmax_mhz": {"clocking.clk": 59.92},
           "constraint_mhz": {"clocking.clk": 45.0}, "timing_met": True, "seed": 1,
           "engine": {"W": 32, "D_MAX": 4096, "B_MAX": 8, "BUF_DEPTH": 16384}}
    (tmp_path / "build_ulx3s.json").write_text(json.dumps(rep))
    ok = ex.board_clock("ulx3s", tmp_path)
    assert (ok["clock_key"], ok["clock_mhz"], ok["fmax_mhz"], ok["reason"]) == (
        "clocking.clk", 45.0, 59.92, None)
    assert ok["engine_matches"] is True
    assert ex.board_clock("ulx3s", tmp_path, clock="fmax")["clock_mhz"] == 59.92
    rep["timing_met"] = False
    (tmp_path / "build_ulx3s.json").write_text(json.dumps(rep))
    bad = ex.board_clock("ulx3s", tmp_path)
    assert bad["clock_mhz"] is None and "timing not met" in bad["reason"]
    rep["timing_met"], rep["engine"] = True, {"W": 8, "D_MAX": 1024, "B_MAX": 8,
                                              "BUF_DEPTH": 2048}
    (tmp_path / "build_ulx3s.json").write_text(json.dumps(rep))
    assert "another engine" in ex.board_clock("ulx3s", tmp_path)["reason"]
