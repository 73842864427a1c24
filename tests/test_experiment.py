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


# -- issue 9 items 4-5: sweeps, the report, datasets ------------------------------------------

def test_ci_tiny_experiment_end_to_end(tmp_path):
    """What `make experiments` does, in seconds: an engine experiment, a reference sweep, and
    docs/results.md from their JSON (CPU time: a loaded machine stretches the wall time)."""
    import time
    t0 = time.process_time()
    eng, swp, md = tmp_path / "eng.json", tmp_path / "swp.json", tmp_path / "docs" / "results.md"
    assert cli.main(["experiment", "--synthetic", "150,3,0", "--bits", "2", "--quantizers",
                     "double,full", "--board", "ulx3s", "--epochs", "2", "--seeds", "1",
                     "--claim", "a,b", "--quiet", "--json", str(eng),
                     "--plots", str(tmp_path / "eng")]) == 0
    assert cli.main(["experiment", "sweep", "--synthetic", "150,3,0", "--variants",
                     "double,naive,double:levels=optimal", "--bits", "1,2", "--epochs", "2",
                     "--seeds", "1", "--claim", "a,c", "--quiet", "--json", str(swp),
                     "--plots", str(tmp_path / "swp")]) == 0
    assert cli.main(["experiment", "report", str(eng), str(swp), "--md", str(md)]) == 0
    e, s = json.loads(eng.read_text()), json.loads(swp.read_text())
    assert (e["experiment"], e["claims"], s["experiment"], s["claims"]) == (
        "engine", ["a", "b"], "sweep", ["a", "c"])
    for doc in (e, s):
        for paths in doc["plots"].values():
            for p in paths:
                assert (tmp_path / p).read_bytes()[:8] == PNG
    assert set(e["plots"]) == {"synthetic_150x3_s0"}
    assert set(s["plots"]) == {"synthetic_150x3_s0_linreg"}
    text = md.read_text()
    for head in ("# Results", "## Verdicts", "* **(a) bias**", "* **(b) q-bit vs 32-bit**",
                 "* **(c) optimal vs uniform", "## Sources", "## Headline", "## (a) Bias",
                 "## (b) q-bit", "## (c) Variance-optimal", "## Datasets"):
        assert head in text, head
    assert "## (d)" not in text and "## Scaling" not in text     # no JSON tagged d, scaling
    assert e["command"] in text and s["command"] in text and e["commit"] in text
    # plots linked relative to the Markdown's folder
    assert "](../swp/synthetic_150x3_s0_linreg_final.png)" in text
    assert time.process_time() - t0 < 20


def test_scaling_table_and_plot(small, tmp_path):
    """Several d in one report: cycles per sample and seconds per epoch per d and board."""
    _, _, doc = small
    import copy
    big = copy.deepcopy(doc["datasets"][0])
    big["name"], big["d"] = "wider", 64
    for g in big["summary"]:
        if g["kind"] == "engine":
            g["cycles"] = [c * 3 for c in g["cycles"]]
    rows = ex.scaling_table([doc["datasets"][0], big])
    eng = [r for r in rows if r["kind"] == "engine"]
    assert {(r["d"], r["quantizer"]) for r in eng} == {(6, "double"), (6, "full"),
                                                      (64, "double"), (64, "full")}
    for r in eng:
        assert r["cycles_per_sample"] == pytest.approx(r["cycles_per_epoch"] / r["n"])
    assert {r["name"] for r in rows if r["kind"] == "cpu"} == {"sklearn_sgd", "numpy_sgd_f32"}
    png = ex.plot_scaling(rows, str(tmp_path / "scaling.png"))
    assert open(png, "rb").read(8) == PNG
    md = tmp_path / "r.md"
    path = tmp_path / "sc.json"
    path.write_text(json.dumps({**doc, "claims": ["scaling"], "scaling": rows,
                                "plots": {"scaling": ["scaling.png"]}}))
    assert cli.main(["experiment", "report", str(path), "--md", str(md)]) == 0
    text = md.read_text()
    assert "## Scaling" in text and "| 64 |" in text and "[scaling.png](scaling.png)" in text


def test_sweep_runs_and_targets():
    ds = ex.synthetic(200, 4, 1)
    from zipml.host.problem import prepare
    p = prepare(ds.X, ds.y, "regression")
    settings = {"epochs": 3, "batch": 1}
    v = ex.parse_variant("double")
    r = ex.reference_run(p, "linreg", v, 2, 0, settings)
    assert r["value_bits"] == 4 and r["bits"] == [200 * 5 * 4 * k for k in (1, 2, 3)]
    assert len(r["loss"]) == len(r["mse"]) == 3 and r["loss"] == r["mse"]
    opt = ex.sweep_optimum(p, "linreg")
    assert opt["loss"] == pytest.approx(p.optimum_mse()) and opt["reference"] == opt["loss"]
    ex.attach_sweep_targets(r, opt["loss"], ["100"])            # reached after one epoch
    assert r["epochs_to_target"] == {"100": 1} and r["bits_to_target"] == {"100": r["bits"][0]}
    ex.attach_sweep_targets(r, opt["loss"], ["0"])
    assert r["bits_to_target"]["0"] is None or r["loss"][-1] <= opt["loss"]


@pytest.mark.parametrize("spec, want", [
    ("double", {"quantizer": "double", "levels": "uniform", "grid": "floor", "refetch": False,
                "degree": 7}),
    ("double:levels=optimal", {"levels": "optimal"}),
    ("naive:refetch:grid=symmetric", {"quantizer": "naive", "refetch": True,
                                      "grid": "symmetric"}),
    ("double:degree=15", {"degree": 15}),
])
def test_parse_variant(spec, want):
    v = ex.parse_variant(spec)
    assert v["spec"] == spec and {k: v[k] for k in want} == want


@pytest.mark.parametrize("spec", ["triple", "double:levels=best", "double:degree=0",
                                  "double:refetch=yes", "full:levels=optimal", "full:refetch"])
def test_parse_variant_refuses(spec):
    with pytest.raises(ValueError, match="variant"):
        ex.parse_variant(spec)


def test_value_bits_and_rounding_variance():
    v = ex.parse_variant
    assert ex.value_bits(v("double"), 3, "linreg") == 5             # t (q bits) + 2 carries
    assert ex.value_bits(v("naive"), 3, "linreg") == 4
    assert ex.value_bits(v("double"), 3, "svm") == 3 + 1 + 7        # Chebyshev: 1 + K copies
    assert ex.value_bits(v("double:refetch"), 3, "logistic") == 5
    assert ex.value_bits(v("full"), 3, "svm") == 32
    A = np.array([[0.5, -0.5, 1.0, 0.0]])
    # floor grid q = 1: levels -1, 0, 1: (a - lo)(hi - a) = 0.25, 0.25, 0, 0
    assert ex.rounding_variance(A, v("double"), 1) == pytest.approx(0.125)
    # symmetric q = 1: levels -1, 1: (a + 1)(1 - a) = 0.75, 0.75, 0, 1
    assert ex.rounding_variance(A, v("double:grid=symmetric"), 1) == pytest.approx(0.625)
    # the optimal table holds every distinct value once it has as many levels
    assert ex.rounding_variance(A, v("double:levels=optimal"), 2) == pytest.approx(0.0)


def test_sweep_optimum_hinge_and_logistic():
    from zipml.host.problem import prepare
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.8 * rng.normal(size=120) > 0, 1.0, -1.0)     # not separable
    p = prepare(X, y, "classification")
    from zipml.reference.sgd import loss_value
    for model in ("svm", "logistic"):
        opt = ex.sweep_optimum(p, model)
        assert not opt["separable"] and opt["reference"] == opt["loss"] > 0
        # no random model does better than the solver
        for _ in range(20):
            x = rng.normal(size=p.d)
            assert loss_value("hinge" if model == "svm" else "logistic", p.A, p.b, x) \
                >= opt["loss"] - 1e-9
    sep = prepare(X, np.where(X[:, 0] > 0, 1.0, -1.0), "classification")
    opt = ex.sweep_optimum(sep, "svm")
    assert opt["separable"] and opt["reference"] is None and opt["loss"] == pytest.approx(0, abs=1e-9)


def test_sweep_classification_models(tmp_path):
    # iris (100 x 4): svm and logistic, Chebyshev double, refetch, 32-bit; accuracy recorded
    out = tmp_path / "d.json"
    assert cli.main(["experiment", "sweep", "iris", "--model", "svm,logistic", "--variants",
                     "double,naive:refetch,full", "--bits", "2", "--epochs", "1", "--seeds", "1",
                     "--quiet", "--json", str(out), "--plots", str(tmp_path / "d")]) == 0
    doc = json.loads(out.read_text())
    assert [(d["name"], d["model"], d["loss"]) for d in doc["datasets"]] == [
        ("iris", "svm", "hinge"), ("iris", "logistic", "logistic")]
    for ds in doc["datasets"]:
        assert {g["variant"] for g in ds["summary"]} == {"double", "naive:refetch", "full"}
        for g in ds["summary"]:
            assert 0 <= g["accuracy_mean"] <= 1 and g["final_over_full"] is not None
        chev = next(r for r in ds["runs"] if r["variant"] == "double")
        assert chev["value_bits"] == 2 + 1 + 7
        assert next(r for r in ds["runs"] if r["variant"] == "naive:refetch")["refetches"] > 0
    # a regression model on a classification set is skipped, not an error
    assert cli.main(["experiment", "sweep", "iris", "--model", "linreg", "--bits", "2",
                     "--epochs", "1", "--seeds", "1", "--quiet", "--json", str(out),
                     "--plots", str(tmp_path / "d")]) == 0
    assert json.loads(out.read_text())["datasets"] == []


def test_bundled_classification_set_and_a_users_svmlight_file(tmp_path):
    """The engine experiment on a bundled +-1 set (lssvm) and on an svmlight file written from
    a bundled set with scikit-learn's dump_svmlight_file."""
    from sklearn.datasets import dump_svmlight_file
    from zipml.host import datasets
    wine = datasets.load("wine")
    path = tmp_path / "user_wine.svm"
    dump_svmlight_file(wine.X, wine.y, str(path))
    out = tmp_path / "c.json"
    assert cli.main(["experiment", "breast_cancer", str(path), "--bits", "2", "--quantizers",
                     "double", "--board", "ulx3s", "--epochs", "1", "--seeds", "1", "--quiet",
                     "--claim", "datasets", "--json", str(out), "--plots", str(tmp_path / "c")]) == 0
    doc = json.loads(out.read_text())
    bc, user = doc["datasets"]
    assert (bc["name"], bc["task"], bc["model"], bc["n"], bc["d"]) == (
        "breast_cancer", "classification", "lssvm", 569, 31)
    assert (user["name"], user["task"], user["model"], user["n"]) == (
        "user_wine.svm", "classification", "lssvm", 178)
    import hashlib
    assert user["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for ds in (bc, user):
        assert [r for r in ds["runs"] if r["kind"] == "engine" and "error" not in r]
        assert set(doc["plots"][ds["name"]]) and all(
            (tmp_path / p).read_bytes()[:8] == PNG for p in doc["plots"][ds["name"]])
    md = tmp_path / "r.md"
    assert cli.main(["experiment", "report", str(out), "--md", str(md)]) == 0
    text = md.read_text()
    assert "svmlight file `" in text and "bundled `breast_cancer`" in text and "lssvm" in text


def test_svmlight_example_is_a_regression_file(tmp_path):
    from zipml.host import datasets
    path = tmp_path / "ex.svm"
    assert cli.main(["experiment", "svmlight-example", str(path)]) == 0
    ds = datasets.load(str(path))
    assert ds.X.shape == (2000, 20) and ds.task == "regression"
    again = tmp_path / "again.svm"
    ex.svmlight_example(str(again))
    assert again.read_bytes() == path.read_bytes()              # reproducible


def test_report_refuses_without_md(tmp_path, capsys):
    assert cli.main(["experiment", "report", str(tmp_path / "x.json")]) == 2
    assert "--md" in capsys.readouterr().err
