"""The whole board system in Verilator, driven by the host driver over the simulated UART, trains
a real dataset (scikit-learn's diabetes, 442 x 10) bit-exact to the golden model: streaming and
replay, double and a single-sample quantizer with a minibatch.

The expected values are the golden model's (`zipml.host.backend_engine.train_golden`), an
independent NumPy implementation of docs/engine.md; the system under test is UART + frames +
command unit + engine + sample store.
"""

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from zipml.host.device import train_sim, sim_transport_for
from zipml.reference.golden import EngineConfig

# The iCEBreaker's engine width, small D_MAX/BUF for a quick build; the same parameters as
# tests/test_link_system.py, so both modules share one cached Verilator build.
CONFIG = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)


@pytest.fixture(scope="module")
def sim():
    t = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    yield t
    t.close()


@pytest.fixture(scope="module")
def prepared():
    from zipml.host.problem import prepare
    X, y = load_diabetes(return_X_y=True)
    return prepare(X, y, "regression")


def _options(**kw):
    from zipml.host.problem import TrainOptions
    replay = kw.pop("replay", False)
    opts = TrainOptions(**kw)
    if dataclasses.is_dataclass(opts) and "replay" in {f.name for f in dataclasses.fields(opts)}:
        opts = dataclasses.replace(opts, replay=replay)
    else:
        opts.replay = replay
    return opts


def _golden(prepared, options):
    from zipml.host.backend_engine import train_golden
    return train_golden(prepared, options, config=CONFIG)


@pytest.mark.parametrize("kw", [
    dict(quantizer="double", bits=4, batch=1, epochs=2, seed=1),
    dict(quantizer="naive", bits=2, batch=4, epochs=1, seed=2),
])
def test_sim_streaming_bit_exact_to_golden(sim, prepared, kw):
    opts = _options(**kw)
    res = train_sim(prepared, opts, config=CONFIG, transport=sim)
    gold = _golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse
    assert res.extra["samples"] == gold.extra["samples"] == kw["epochs"] * prepared.A.shape[0]
    assert res.extra["words"] == gold.extra["words"]
    assert res.extra["overflow"] == gold.extra["overflow"]
    assert res.cycles > 0
    # Something was learnt: the model beats predicting zero (the scaled mean of b is ~0).
    assert res.mse[-1] < np.mean((prepared.b) ** 2) * _b_scale2(prepared)


def test_sim_replay_bit_exact_to_golden_and_uploads_once(sim, prepared):
    opts = _options(quantizer="double", bits=3, batch=1, epochs=3, seed=5, replay=True)
    res = train_sim(prepared, opts, config=CONFIG, transport=sim)
    gold = _golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse
    assert res.extra["link"]["uploads"] == 1
    # Replay moves the data over the link once: the payload sent is one epoch segment.
    one_epoch_bytes = gold.bits_moved // opts.epochs // 8
    assert res.extra["link"]["payload"] == one_epoch_bytes
    # ... and it differs from streaming fresh codes every epoch (replay is its own mode).
    stream = _golden(prepared, _options(quantizer="double", bits=3, batch=1, epochs=3, seed=5))
    assert stream.model_raw != gold.model_raw


def _b_scale2(prepared):
    s = getattr(prepared, "b_scale", 1.0)
    return float(s) ** 2


@pytest.mark.slow
@pytest.mark.parametrize("replay", [False, True])
def test_sim_default_config_equals_golden_default(prepared, replay):
    """What `zipml train DATA --backend sim` runs: golden's own engine config (W = 32), with the
    backends' defaults for the step and decay, equal bit for bit to `--backend golden`."""
    from zipml.host.backend_engine import train_golden
    from zipml.host.problem import resolve
    opts = resolve(prepared, _options(quantizer="double", bits=4, epochs=2, seed=3,
                                      replay=replay))
    res = train_sim(prepared, opts)
    gold = train_golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse
