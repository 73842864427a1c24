"""Checkpoint and resume (``--checkpoint`` / ``--resume``, zipml.host.checkpoint): a run stopped
after any epoch and resumed from its checkpoint gives bit for bit the model, the loss history and
the counters of the run never stopped, streamed and in store mode, on golden and on the board
system in Verilator, and across the two (a checkpoint of sim resumed on golden).

The expected values are the uninterrupted run's; the interruption is a KeyboardInterrupt raised
by the progress callback after the epoch's checkpoint is written (where Ctrl-C lands between
epochs)."""

import json

import numpy as np
import pytest

from zipml.host import checkpoint
from zipml.host.backend_engine import train_golden
from zipml.host.device import sim_transport_for, train_sim
from zipml.host.problem import TrainOptions, prepare, resolve
from zipml.reference.golden import EngineConfig

# the small board system of the link tests (W = 8: the iCEBreaker's lanes)
CONFIG = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)


def _data(seed, n, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n) + 2.0
    return prepare(X, y, "regression")


def _options(prepared, **kw):
    return resolve(prepared, TrainOptions(backend=kw.pop("backend", "golden"), **kw))


class _StopAfter:
    """A progress callback that raises KeyboardInterrupt once ``epochs`` epochs are reported."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, epoch, mse):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def _same(got, want):
    assert got.model_raw == want.model_raw
    assert got.mse == want.mse
    assert got.bits_moved == want.bits_moved
    for key in ("samples", "words", "overflow", "store_p"):
        assert got.extra[key] == want.extra[key], key


@pytest.mark.parametrize("replay, seed, n, d, stop", [
    (False, 3, 97, 6, 1), (True, 4, 61, 13, 2), (None, 5, 150, 3, 3)])
def test_golden_stopped_and_resumed_equals_uninterrupted(tmp_path, replay, seed, n, d, stop):
    prepared = _data(seed, n, d)
    kw = dict(bits=2, quantizer="double", epochs=5, seed=seed, batch=2, replay=replay)
    want = train_golden(prepared, _options(prepared, **kw), config=CONFIG)
    ck = tmp_path / "ck.json"
    with pytest.raises(KeyboardInterrupt):
        train_golden(prepared, _options(prepared, checkpoint=str(ck), **kw), _StopAfter(stop),
                     config=CONFIG)
    assert json.loads(ck.read_text())["epoch"] == stop
    got = train_golden(prepared, _options(prepared, resume=str(ck), checkpoint=str(ck), **kw),
                       config=CONFIG)
    _same(got, want)
    assert got.cycles == want.cycles
    assert got.extra["resumed_at"] == stop and got.extra["trained_by"] == ["golden", "golden"]
    assert checkpoint.load(ck).epoch == 5
    if replay:
        # store mode: the epochs' seeds differ, so the draws are fresh after a resume too
        assert want.extra["store_p"] > 0


@pytest.fixture(scope="module")
def sim():
    t = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    yield t
    t.close()


@pytest.mark.parametrize("replay", [True, False])
def test_sim_stopped_and_resumed_equals_uninterrupted(sim, tmp_path, replay):
    """On the board system: the Ctrl-C path resets the board; the resumed run re-uploads the
    store (store mode), loads the model and the seed of its first epoch, and ends where the
    golden run of all epochs ends. The same checkpoint resumed on golden agrees too."""
    prepared = _data(7, 40, 5)
    kw = dict(bits=3, quantizer="double", epochs=4, seed=8, replay=replay)
    want = train_golden(prepared, _options(prepared, **kw), config=CONFIG)
    ck = tmp_path / "ck.json"
    with pytest.raises(KeyboardInterrupt):
        train_sim(prepared, _options(prepared, backend="sim", checkpoint=str(ck), **kw),
                  _StopAfter(2), config=CONFIG, transport=sim)
    saved = ck.read_bytes()
    got = train_sim(prepared, _options(prepared, backend="sim", resume=str(ck), **kw),
                    config=CONFIG, transport=sim)
    _same(got, want)
    assert got.extra["trained_by"] == ["sim", "sim"]
    ck.write_bytes(saved)
    on_golden = train_golden(prepared, _options(prepared, resume=str(ck), **kw), config=CONFIG)
    _same(on_golden, want)


def test_a_checkpoint_of_another_job_is_refused(tmp_path):
    prepared = _data(1, 30, 4)
    kw = dict(bits=2, quantizer="double", epochs=2, seed=1)
    ck = tmp_path / "ck.json"
    train_golden(prepared, _options(prepared, checkpoint=str(ck), **kw), config=CONFIG)
    with pytest.raises(ValueError, match=r"another job \(regs\.q 2 -> 4"):
        train_golden(prepared, _options(prepared, resume=str(ck), **{**kw, "bits": 4}),
                     config=CONFIG)
    with pytest.raises(ValueError, match="seed 1 -> 2"):
        train_golden(prepared, _options(prepared, resume=str(ck), **{**kw, "seed": 2}),
                     config=CONFIG)
    other = _data(2, 30, 4)
    with pytest.raises(ValueError, match="the data differs"):
        train_golden(other, _options(other, resume=str(ck), **kw), config=CONFIG)
    # the default decay follows --epochs (host.problem.default_decay): a longer run is another
    # job unless the decay is given
    with pytest.raises(ValueError, match="decay_shift.*give --decay"):
        train_golden(prepared, _options(prepared, resume=str(ck), **{**kw, "epochs": 30}),
                     config=CONFIG)
    kw["decay"] = 0.75
    train_golden(prepared, _options(prepared, checkpoint=str(ck), **kw), config=CONFIG)
    with pytest.raises(ValueError, match="past --epochs 1"):
        train_golden(prepared, _options(prepared, resume=str(ck), **{**kw, "epochs": 1}),
                     config=CONFIG)


def test_a_damaged_checkpoint_is_one_error(tmp_path):
    ck = tmp_path / "ck.json"
    with pytest.raises(ValueError, match="no such file"):
        checkpoint.load(ck)
    ck.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(ck)
    ck.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a zipml-checkpoint/1 file"):
        checkpoint.load(ck)
    prepared = _data(1, 30, 4)
    train_golden(prepared, _options(prepared, checkpoint=str(ck), bits=2, epochs=2),
                 config=CONFIG)
    doc = json.loads(ck.read_text())
    doc["mse"] = doc["mse"][:1]                       # two epochs, one loss
    ck.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="damaged checkpoint"):
        checkpoint.load(ck)


def test_resume_at_the_last_epoch_trains_nothing_more(tmp_path):
    prepared = _data(3, 50, 4)
    ck = tmp_path / "ck.json"
    kw = dict(bits=4, quantizer="naive", epochs=3, seed=3)
    want = train_golden(prepared, _options(prepared, checkpoint=str(ck), **kw), config=CONFIG)
    calls = []

    def runner_progress(epoch, mse):
        calls.append(epoch)

    got = train_golden(prepared, _options(prepared, resume=str(ck), **kw), runner_progress,
                       config=CONFIG)
    _same(got, want)
    assert calls == [0, 1, 2]             # the restored epochs are reported, none trained


def test_cli_checkpoint_needs_an_engine_backend(tmp_path, capsys):
    from zipml.host.cli import main
    rc = main(["train", "diabetes", "--epochs", "1", "--checkpoint", str(tmp_path / "c.json")])
    assert rc == 2
    assert "engine backend" in capsys.readouterr().err


def test_cli_resume_continues_a_shorter_run(tmp_path, capsys):
    from zipml.host.cli import main
    ck, a, b = (str(tmp_path / f) for f in ("ck.json", "a.json", "b.json"))
    base = ["train", "diabetes", "--backend", "golden", "--bits", "2", "--decay", "0.8",
            "--quiet"]
    assert main(base + ["--epochs", "4", "--json", a]) == 0
    assert main(base + ["--epochs", "2", "--checkpoint", ck]) == 0
    assert main(base + ["--epochs", "4", "--resume", ck, "--json", b]) == 0
    ja, jb = json.loads(open(a).read()), json.loads(open(b).read())
    assert ja["model_raw"] == jb["model_raw"] and ja["mse"] == jb["mse"]
    assert jb["extra"]["resumed_at"] == 2

