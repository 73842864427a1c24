"""The golden and rtl backends end to end on a bundled real dataset."""

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from zipml.host import backend_engine
from zipml.host.problem import TrainOptions, prepare
from zipml.reference import engine_job as job
from zipml.reference import golden
from zipml.reference.golden import EngineConfig


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return prepare(X, y, "regression")


def least_squares_mse(prepared):
    # closed form in scaled units, computed here (not by the code under test)
    x, *_ = np.linalg.lstsq(prepared.A, prepared.b, rcond=None)
    return x, float(np.mean((prepared.A @ x - prepared.b) ** 2))


def scaled_mse(prepared, x):
    return float(np.mean((prepared.A @ x - prepared.b) ** 2))


@pytest.mark.parametrize("quantizer, bits, tol", [
    ("double", 8, 0.03),
    ("double", 4, 0.10),
    ("deterministic", 8, 0.05),
    ("full", 8, 0.03),
])
def test_golden_backend_reaches_least_squares(diabetes, quantizer, bits, tol):
    opts = TrainOptions(model="linreg", bits=bits, quantizer=quantizer, epochs=20, seed=3,
                        backend="golden", replay=False)
    res = backend_engine.train_golden(diabetes, opts, None)
    _, best = least_squares_mse(diabetes)
    x = job.float_model(res.model_raw)
    got = scaled_mse(diabetes, x)
    assert got <= best * (1 + tol), f"{quantizer} q={bits}: mse {got:.5g} vs optimum {best:.5g}"
    assert res.cycles >= res.extra["words"] and len(res.mse) == 20 and not res.extra["overflow"]
    assert all(isinstance(v, int) and -2**31 <= v < 2**31 for v in res.model_raw)
    n, d = diabetes.A.shape
    mode, q = job.engine_mode(quantizer, bits)
    # bits moved: per epoch n+1 headers, n labels, and per sample and chunk a dot group: on the
    # floor grid q planes of t and a carry per copy (full: 32 planes on the symmetric grid)
    W = job.DEFAULT_CONFIG.W
    C = -(-d // W)
    group = 32 if quantizer == "full" else q + (2 if quantizer == "double" else 1)
    per_epoch = (n + 1) + n + C * group * n
    assert res.bits_moved == 20 * per_epoch * W
    assert res.extra["link_bits"] == res.bits_moved and res.extra["store_bits"] == 0


def test_golden_backend_is_deterministic_and_seeded(diabetes):
    opts = TrainOptions(model="linreg", bits=2, quantizer="double", epochs=2, seed=5)
    a = backend_engine.train_golden(diabetes, opts, None)
    b = backend_engine.train_golden(diabetes, opts, None)
    assert a.model_raw == b.model_raw
    c = backend_engine.train_golden(
        diabetes, TrainOptions(model="linreg", bits=2, quantizer="double", epochs=2, seed=6),
        None)
    assert c.model_raw != a.model_raw


def test_golden_backend_rejects_what_the_engine_cannot_do(diabetes):
    with pytest.raises(ValueError, match="squared loss"):
        backend_engine.train_golden(diabetes, TrainOptions(model="logistic", epochs=1), None)
    with pytest.raises(ValueError, match="1..8"):
        backend_engine.train_golden(diabetes, TrainOptions(bits=12, quantizer="double",
                                                           epochs=1), None)


@pytest.mark.parametrize("quantizer, bits, batch, lam", [
    ("double", 2, 1, 0.0),
    ("naive", 6, 3, 0.0),
    ("deterministic", 8, 2, 2.0**-6),
    ("full", 8, 1, 0.0),
])
def test_golden_backend_tracks_the_float_reference(diabetes, quantizer, bits, batch, lam):
    """Same seed, same sample order, same codes (both draw from default_rng([seed, epoch]),
    Q1 first): the golden backend's model stays within the fixed-point error of float SGD."""
    from zipml.reference.sgd import SGDConfig, sgd
    lr = 0.02
    opts = TrainOptions(model="linreg", bits=bits, quantizer=quantizer, epochs=4, seed=9,
                        lr=lr, decay=1.0, batch=batch, lam=lam, replay=False)
    res = backend_engine.train_golden(diabetes, opts, None)
    regs = res.extra["regs"]
    # the float run gets the lr and the L2 shrink the engine's registers implement
    lr_eng = job.effective_lr(regs["step"], regs["step_shift"], regs["q"], regs["grid"])
    lam_eng = 2.0**-regs["l2_shift"] / lr_eng if regs["l2_shift"] else 0.0
    ref = sgd(diabetes.A, diabetes.b,
              SGDConfig(loss="squared", q=bits, quantizer=quantizer, epochs=4, lr=lr_eng,
                        batch=batch, seed=9, lam=lam_eng, decay=1.0))
    gap = np.abs(job.float_model(res.model_raw) - ref.x).max()
    assert np.abs(ref.x).max() > 0.05
    # labels: the engine's label word rounds b to 2^-24 (x (2^q-1)/2^q) and full quantizes to
    # q = 32; together with the Q8.24 model these stay far below 1e-4 (see test_golden_float)
    assert gap < 1e-4, f"golden {quantizer} q={bits} is {gap:.3g} from the float reference"


# the engine build tests/test_sim_engine_rtl.py uses, so the Verilator build is shared (cached)
RTL_CONFIG = EngineConfig(W=32, D_MAX=1024, B_MAX=8, BUF_DEPTH=2 * 8 * 32 * 10)


@pytest.mark.parametrize("quantizer, bits, batch, replay, grid", [
    ("double", 3, 1, False, "floor"),
    ("double", 8, 4, True, "floor"),
    ("naive", 2, 1, False, "floor"),
    ("deterministic", 5, 3, False, "floor"),
    ("full", 8, 2, False, "floor"),
    ("naive", 3, 2, True, "floor"),
    ("deterministic", 4, 1, True, "floor"),
    ("full", 8, 1, True, "floor"),
    ("double", 3, 1, False, "symmetric"),
    ("naive", 5, 2, False, "symmetric"),
])
def test_rtl_backend_equals_golden(quantizer, bits, batch, replay, grid):
    """The Verilated engine trains a real dataset (breast_cancer as LS-SVM, d = 31 with the
    intercept: not a multiple of W) to exactly the golden model's words, with the default
    decay across epochs (the step register changes per segment) and L2."""
    pytest.importorskip("zipml.hw.engine")
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    prepared = prepare(X[:150], 2.0 * y[:150] - 1, "classification")
    opts = TrainOptions(model="lssvm", bits=bits, quantizer=quantizer, epochs=3, seed=4,
                        batch=batch, lam=1e-3, replay=replay, grid=grid)
    want = backend_engine.train_golden(prepared, opts, None, config=RTL_CONFIG)
    # full streams 32-bit fixed point on the symmetric grid; in store mode it is the stored value
    assert (want.extra["store_p"] > 0) == replay
    assert want.extra["grid"] == ("symmetric" if quantizer == "full" and not replay else grid)
    got = backend_engine.train_rtl(prepared, opts, None, config=RTL_CONFIG)
    assert want.extra["regs"]["decay_shift"] > 0 and want.extra["regs"]["l2_shift"] > 0
    assert got.model_raw == want.model_raw
    assert got.extra["samples"] == want.extra["samples"] == 3 * 150
    assert got.extra["words"] == want.extra["words"]
    assert got.bits_moved == want.bits_moved
    # golden's cycles come from the cycle model (reference/cycles.py): the RTL's exactly
    assert got.cycles >= got.extra["words"]
    assert (want.cycles, want.extra["stall_cycles"]) == (got.cycles, got.extra["stall_cycles"])


def test_replay_equals_one_continuous_stream(diabetes):
    """Store mode (docs/store.md): the feed's epoch streams, one after the other with no clear
    in between.  The backend runs one segment per call from clear with the step pre-decayed
    (epoch_regs); one golden run over the concatenated stream, where the engine's own decay
    counter fires after every n samples, must end on the same words."""
    opts = TrainOptions(model="linreg", bits=3, quantizer="double", epochs=4, seed=2,
                        decay=0.75, replay=True)
    res = backend_engine.train_golden(diabetes, opts, None)
    ej = backend_engine.engine_job_for(diabetes, opts)
    assert ej.regs.decay_shift == 2 and ej.regs.n_epoch == diabetes.n
    assert ej.store_p == 8 and res.extra["store_p"] == 8
    stream = np.concatenate([ej.epoch_stream(e) for e in range(4)])
    # every epoch draws fresh carries from the stored data
    assert not np.array_equal(ej.epoch_stream(0), ej.epoch_stream(1))
    one = golden.run(ej.config, ej.regs, stream)
    assert one.model_words.tolist() == res.model_raw
    assert one.samples == res.extra["samples"] == 4 * diabetes.n
    # and the decay mattered: without it the same stream ends elsewhere
    flat = golden.run(ej.config, dataclasses.replace(ej.regs, decay_shift=0), stream)
    assert flat.model_words.tolist() != res.model_raw
