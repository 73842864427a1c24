"""`zipml train` / `zipml demo`: JSON schema, the acceptance run on a user's own svmlight file,
and bad input (one line on stderr, exit code 2, nothing written)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

from zipml.host.cli import main

SCHEMA = {"mse": list, "model": list, "model_raw": (list, type(None)), "bits": int,
          "quantizer": str, "backend": str, "epochs": int, "bits_moved": int,
          "cycles": (int, type(None))}


def correlated_svmlight(path, n=4000, d=37, seed=0, noise=0.5):
    """A user's own data: correlated features (shared factors), mixed scales and offsets."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, 5))
    X = F @ rng.standard_normal((5, d)) + 0.3 * rng.standard_normal((n, d))
    X = X * np.exp(rng.uniform(-2, 3, d)) + rng.uniform(-20, 20, d)
    s = X @ rng.standard_normal(d)
    y = 40 + 5 * s / s.std() + noise * 5 * rng.standard_normal(n)
    dump_svmlight_file(X, y, str(path))
    return X, y


def lstsq_mse(X, y):
    A1 = np.hstack([X, np.ones((X.shape[0], 1))])
    w, *_ = np.linalg.lstsq(A1, y, rcond=None)
    return float(np.mean((A1 @ w - y) ** 2))


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "mine.svm"
    X, y = correlated_svmlight(p)
    return p, lstsq_mse(X, y)


def train_json(capsys, tmp_path, data, *args):
    out = tmp_path / "out.json"
    rc, o, e = run(["train", str(data), "--quiet", "--json", str(out), *args], capsys)
    assert rc == 0, e
    return json.loads(out.read_text()), o


def test_acceptance_on_a_users_svmlight_file(user_file, tmp_path, capsys):
    path, best = user_file
    common = ["--model", "linreg", "--epochs", "30", "--seed", "7", "--backend", "reference"]
    d2, out = train_json(capsys, tmp_path, path, "--bits", "2", "--quantizer", "double", *common)
    d8, _ = train_json(capsys, tmp_path, path, "--bits", "8", "--quantizer", "double", *common)
    dn, _ = train_json(capsys, tmp_path, path, "--bits", "2", "--quantizer", "naive", *common)
    assert d2["mse"][-1] <= 1.10 * best
    assert d8["mse"][-1] <= 1.02 * best
    # floor grid (the default): naive ends 1.45x above double here; on the symmetric grid,
    # whose q = 2 has no level at 0, naive's variance term is larger still
    assert dn["mse"][-1] >= 1.3 * d2["mse"][-1]
    ds, _ = train_json(capsys, tmp_path, path, "--bits", "2", "--quantizer", "naive",
                       "--grid", "symmetric", *common)
    assert ds["mse"][-1] >= 1.5 * d2["mse"][-1]
    assert "least-squares optimum" in out


def test_json_schema(tmp_path, capsys):
    doc, out = train_json(capsys, tmp_path, "diabetes", "--bits", "3", "--epochs", "4")
    for key, typ in SCHEMA.items():
        assert isinstance(doc[key], typ), key
    assert len(doc["mse"]) == 4 and len(doc["model"]) == 11
    assert doc["model_raw"] is None and doc["cycles"] is None
    assert doc["bits"] == 3 and doc["quantizer"] == "double" and doc["backend"] == "reference"
    # 442 samples x 11 features x (3 bits of the shared floor + 2 carries) x 4 epochs
    assert doc["bits_moved"] == 442 * 11 * (3 + 2) * 4
    assert doc["optimum_mse"] > 0 and "diabetes" in out


def test_classification_and_plot(tmp_path, capsys):
    png = tmp_path / "sub" / "loss.png"
    doc, out = train_json(capsys, tmp_path, "breast_cancer", "--model", "logistic", "--bits",
                          "4", "--epochs", "3", "--plot", str(png))
    assert 0.9 <= doc["accuracy"] <= 1 and "accuracy" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_intercept_passes_through_origin(tmp_path, capsys):
    doc, _ = train_json(capsys, tmp_path, "diabetes", "--no-intercept", "--epochs", "2")
    assert len(doc["model"]) == 10 and doc["intercept"] is False


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BAD = {
    "missing file": lambda t: (["train", str(t / "nope.svm")], "no such file"),
    "malformed": lambda t: (["train", write(t, "bad.svm", "1 1:0.5 2:x\n")], "not a valid"),
    "nan": lambda t: (["train", write(t, "nan.svm", "1 1:nan\n2 1:3\n")], "NaN"),
    "inf": lambda t: (["train", write(t, "inf.svm", "1 1:inf\n2 1:3\n")], "inf"),
    "labels": lambda t: (["train", write(t, "lab.svm", "0 1:1\n1 1:2\n"), "--model", "svm"],
                         "-1/\\+1"),
    "bits 0": lambda t: (["train", "diabetes", "--bits", "0"], "bits"),
    "bits 33": lambda t: (["train", "diabetes", "--bits", "33"], "bits"),
    "epochs 0": lambda t: (["train", "diabetes", "--epochs", "0"], "epochs"),
    "epochs -1": lambda t: (["train", "diabetes", "--epochs", "-1"], "epochs"),
    "unknown dataset": lambda t: (["train", "no_such_set"], "unknown dataset"),
    "regression labels for a classifier": lambda t: (
        ["train", "diabetes", "--model", "logistic"], "labels|classification"),
    "board without port": lambda t: (["train", "diabetes", "--backend", "board"], "port"),
    "baud without board": lambda t: (["train", "diabetes", "--baud", "115200"],
                                     "--baud is an option of --backend board"),
    "board on reference": lambda t: (["train", "diabetes", "--backend", "reference", "--board",
                                      "ulx3s"], "reference backend has none"),
    "baud 0": lambda t: (["train", "diabetes", "--backend", "board", "--port", "/dev/null",
                          "--baud", "0"], "--baud: must be >= 1"),
    "unknown board": lambda t: (["train", "diabetes", "--backend", "board", "--port",
                                 "/dev/null", "--board", "de10"], "--board: invalid choice"),
    "unknown board on sim": lambda t: (["train", "diabetes", "--backend", "sim", "--board",
                                        "de10"], "--board: invalid choice"),
    "bad lr": lambda t: (["train", "diabetes", "--lr", "-1"], "lr"),
    # issue 11 case 5: a segfault in lstsq, a 30 GiB allocation, an OverflowError traceback
    "feature index 1e7": lambda t: (["train", write(t, "w7.svm", "1 1:0.5 10000000:1\n2 1:3\n"),
                                     "--backend", "reference"], "feature indices up to 10000000"),
    "feature index 2e9": lambda t: (["train", write(t, "w9.svm", "1 1:.5 2000000000:1\n2 1:3\n"),
                                     "--backend", "reference"], "more than zipml trains"),
    "labels of 1e308": lambda t: (["train", write(t, "big.svm", "1e308 1:1\n-1e308 1:2\n3 1:4\n"),
                                   "--backend", "reference"], "labels beyond"),
    "features of -1e200": lambda t: (["train", write(t, "bigx.svm", "1 1:-1e200\n2 1:2\n")],
                                     "features beyond"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    argv, match = BAD[case](tmp_path)
    out_json = tmp_path / "out" / "r.json"
    out_png = tmp_path / "out" / "r.png"
    rc, out, err = run(argv + ["--quiet", "--json", str(out_json), "--plot", str(out_png)],
                       capsys)
    assert rc == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "error" in lines[0], err
    assert "Traceback" not in err
    import re
    assert re.search(match, lines[0]), lines[0]
    assert not out_json.exists() and not out_png.exists()


def test_console_script_exit_code(tmp_path):
    # the real process: exit status 2, no traceback
    r = subprocess.run([sys.executable, "-m", "zipml.host.cli", "train", str(tmp_path / "x.svm")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_demo_writes_plot_and_json(tmp_path, capsys):
    out = tmp_path / "demo"
    rc, o, e = run(["demo", "--out", str(out), "--epochs", "3", "--quiet"], capsys)
    assert rc == 0, e
    doc = json.loads((out / "results.json").read_text())
    assert [r["quantizer"] for r in doc["runs"]] == ["double", "naive", "full"]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in o


def test_dispatch_to_missing_subcommand_module_is_a_clear_error(capsys, monkeypatch):
    import zipml.host.cli as cli
    monkeypatch.setitem(cli.DISPATCH, "bench", ("zipml.host.no_such_module", "main"))
    rc, _, err = run(["bench", "host"], capsys)
    assert rc == 2 and "not available" in err


def test_runtime_failure_of_a_backend_is_one_line_exit_1(capsys, monkeypatch):
    import zipml.host.backends as b

    def broken(prepared, options, progress):
        raise RuntimeError("device did not answer")

    monkeypatch.setitem(b.BACKENDS, "reference", "zipml.host.cli:_broken_for_test")
    import zipml.host.cli as cli
    monkeypatch.setattr(cli, "_broken_for_test", broken, raising=False)
    rc, _, err = run(["train", "diabetes", "--quiet"], capsys)
    assert rc == 1 and err.strip() == "zipml: error: RuntimeError: device did not answer"


def test_predict_reproduces_the_training_mse(tmp_path, capsys):
    doc, _ = train_json(capsys, tmp_path, "diabetes", "--bits", "4", "--epochs", "3")
    pred_file = tmp_path / "p" / "pred.txt"
    rc, out, err = run(["predict", "diabetes", "--from", str(tmp_path / "out.json"),
                        "--out", str(pred_file)], capsys)
    assert rc == 0, err
    from sklearn.datasets import load_diabetes
    X, y = load_diabetes(return_X_y=True)
    pred = np.loadtxt(pred_file)
    assert np.mean((pred - y) ** 2) == pytest.approx(doc["mse"][-1], rel=1e-6)
    rc, _, err = run(["predict", "diabetes", "--from", str(tmp_path / "nope.json")], capsys)
    assert rc == 2 and "not a zipml train --json file" in err


# -- --board on the engine backends (the board system in Verilator: tests/test_device_train.py)

def _spec_engine(board):
    """The board's engine as hw/boards.py declares it: (EngineConfig fields, L2)."""
    from zipml.hw.boards import BOARDS
    engine = dict(BOARDS[board].engine)
    return engine, engine.pop("L2", True)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_board_chooses_the_engine_of_golden(board, tmp_path, capsys):
    """`--backend golden --board NAME` trains that board's engine: the JSON names the board and
    its config (as hw/boards.py declares it), and the model is golden's on that config."""
    from zipml.host import datasets
    from zipml.host.backend_engine import train_golden
    from zipml.host.problem import TrainOptions, prepare
    from zipml.reference.golden import EngineConfig
    doc, out = train_json(capsys, tmp_path, "diabetes", "--backend", "golden", "--board", board,
                          "--bits", "3", "--epochs", "2", "--seed", "4")
    engine, l2 = _spec_engine(board)
    assert doc["board"] == board and f"on golden ({board})" in out
    assert doc["extra"]["config"] == {"ARCH": "parallel", **engine}
    assert doc["extra"]["L2"] is l2
    ds = datasets.load("diabetes", "regression")
    gold = train_golden(prepare(ds.X, ds.y, "regression"),
                        TrainOptions(bits=3, epochs=2, seed=4, lr=doc["lr"], decay=doc["decay"]),
                        config=EngineConfig(**engine))
    assert doc["model_raw"] == gold.model_raw


def test_without_board_golden_runs_its_default_config(tmp_path, capsys):
    from zipml.reference.engine_job import DEFAULT_CONFIG
    doc, out = train_json(capsys, tmp_path, "diabetes", "--backend", "golden", "--bits", "3",
                          "--epochs", "1")
    assert doc["board"] is None and "on golden," in out
    assert doc["extra"]["config"] == dict(DEFAULT_CONFIG.__dict__) and doc["extra"]["L2"] is True


def test_the_serial_board_differs_from_the_default_engine(tmp_path, capsys):
    """Not vacuous: the iCEBreaker's engine (W = 8) sends other words than the default W = 32,
    so a backend that ignored --board would not pass the tests above."""
    args = ("--backend", "golden", "--bits", "3", "--epochs", "1")
    ice, _ = train_json(capsys, tmp_path, "diabetes", *args, "--board", "icebreaker")
    default, _ = train_json(capsys, tmp_path, "diabetes", *args)
    assert ice["bits_moved"] != default["bits_moved"]


@pytest.mark.parametrize("backend", ["golden", "rtl", "sim"])
def test_l2_on_a_board_without_l2_is_refused_before_anything_runs(backend, tmp_path, capsys,
                                                                  monkeypatch):
    """`--lam > 0 --board icebreaker` (no L2 shrink): one line, exit 2, for every engine
    backend, before the golden model, the engine RTL or the board system is started."""
    import zipml.host.device
    import zipml.reference.golden
    import zipml.sim.engine_rtl

    def started(*args, **kwargs):
        raise AssertionError(f"{backend}: something ran before the refusal")

    monkeypatch.setattr(zipml.host.device, "SimTransport", started)
    monkeypatch.setattr(zipml.sim.engine_rtl, "run", started)
    monkeypatch.setattr(zipml.reference.golden, "run", started)
    out_json = tmp_path / "r.json"
    rc, out, err = run(["train", "diabetes", "--backend", backend, "--board", "icebreaker",
                        "--lam", "0.01", "--bits", "4", "--epochs", "1", "--quiet", "--json",
                        str(out_json)], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "built without L2" in lines[0] and "--lam 0" in lines[0], lines[0]
    assert not out_json.exists()


@pytest.mark.slow
def test_rtl_on_the_icebreaker_equals_golden_on_it(tmp_path, capsys):
    """`--backend rtl --board icebreaker` builds the lane-serial engine of the board (~20 s the
    first time) and trains bit for bit what golden does on the board's config."""
    args = ("--board", "icebreaker", "--bits", "2", "--epochs", "1")
    rtl, _ = train_json(capsys, tmp_path, "diabetes", "--backend", "rtl", *args)
    gold, _ = train_json(capsys, tmp_path, "diabetes", "--backend", "golden", *args)
    assert rtl["model_raw"] == gold["model_raw"] and rtl["mse"] == gold["mse"]
    assert rtl["extra"]["config"]["ARCH"] == "serial" and rtl["cycles"] > 0


def test_an_engine_that_saturates_is_a_warning_and_with_strict_an_exit_code(tmp_path, capsys):
    """Case 4 of issue 11: `--lr 50` on golden pins the model at the fixed-point range. The
    summary warns, the JSON says so, and --strict exits 3 after writing it."""
    out = tmp_path / "r.json"
    args = ["train", "diabetes", "--backend", "golden", "--lr", "50", "--epochs", "1",
            "--bits", "4", "--quiet", "--json", str(out)]
    rc, stdout, err = run(args, capsys)
    assert rc == 0 and "WARNING: the engine saturated" in stdout
    doc = json.loads(out.read_text())
    assert doc["overflow"] is True and "saturated" in doc["trouble"]
    out.unlink()
    rc, stdout, err = run(args + ["--strict"], capsys)
    assert rc == 3 and "--strict" in err and json.loads(out.read_text())["overflow"] is True
    rc, stdout, err = run(args[:4] + ["--epochs", "1", "--quiet", "--strict"], capsys)
    assert rc == 0 and "WARNING" not in stdout


def test_estimator_warns_when_the_engine_saturates():
    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning

    from zipml import ZipMLRegressor
    X, y = load_diabetes(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="saturated"):
        ZipMLRegressor(backend="golden", lr=50, epochs=1, bits=4).fit(X, y)


def test_json_never_holds_nan_or_infinity(tmp_path):
    """NaN and infinities become null, and the document says where (strict JSON parsers, e.g.
    JavaScript's, reject NaN)."""
    from zipml.reference.files import write_json
    p = tmp_path / "x.json"
    write_json(p, {"mse": [1.0, float("nan"), np.float64("inf")], "ok": 2.5,
                   "model": np.array([0.5, -np.inf])})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["mse"] == [1.0, None, None] and doc["ok"] == 2.5 and doc["model"] == [0.5, None]
    assert doc["non_finite"] == {"count": 3, "first": ["mse[1]", "mse[2]", "model[1]"]}


def test_an_unwritable_plot_path_is_refused_before_training(tmp_path, capsys):
    """Case 5: the plot path is checked with the JSON's, before any work: nothing is written."""
    (tmp_path / "afile").write_text("")
    out_json = tmp_path / "r.json"
    rc, out, err = run(["train", "diabetes", "--quiet", "--json", str(out_json), "--plot",
                        str(tmp_path / "afile" / "r.png")], capsys)
    assert rc == 2 and "cannot write into" in err and "--plot" in err
    assert not out_json.exists()
