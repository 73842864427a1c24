"""Store mode on the board system in Verilator (docs/store.md, docs/link.md): the stored segment
uploaded once, the store feed drawing every epoch's floor-grid codes on chip.

* The feed's stream at the engine: a stand-in engine (`WordEngine` of
  tests/test_device_build.py: random stalls, folds the words it takes into a hash) receives
  exactly `zipml.reference.store.feed`'s words, epoch after epoch with the generators' state
  carried, within one REPLAY of several epochs and across REPLAYs.
* Training: `DeviceRunner` in store mode (one upload, feed registers and seed once, clear +
  REPLAY 1 per epoch) gives the golden model's words bit for bit, epoch by epoch, with
  ``golden.run(config, job.epoch_regs(e), job.epoch_stream(e), init_model=X)``.
"""

import numpy as np
import pytest

from zipml.host.device import Device, DeviceRunner
from zipml.host.transport import SimTransport
from zipml.hw.soc import System
from zipml.reference import golden, pack, store
from zipml.reference.engine_job import EngineJob
from zipml.reference.golden import EngineConfig, EngineRegs

from test_device_build import WordEngine, word_hash

# tests/test_link_system.py's build (one cached Verilator model for both modules)
SIM = dict(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)


class WordSystem(System):
    def make_engine(self):
        return WordEngine(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX, BUF_DEPTH=self.BUF_DEPTH)


@pytest.fixture(scope="module")
def word_dev():
    system = WordSystem(12_000_000, 3_000_000, W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=64,
                        STORE_DEPTH=1024)
    t = SimTransport(system=system)
    yield Device(t)
    t.close()


FEED_CASES = [
    # p, q, mode, round, n, d, B
    (8, 2, 0, 0, 9, 13, 1),     # double
    (8, 3, 1, 0, 7, 11, 2),     # naive
    (8, 4, 1, 1, 6, 19, 1),     # deterministic
    (6, 6, 0, 0, 5, 9, 3),      # q = p: carries 1, no generator steps
    (12, 1, 0, 0, 4, 8, 1),     # p > 8
]


@pytest.mark.parametrize("p,q,mode,rnd,n,d,B", FEED_CASES)
def test_feed_stream_at_the_engine_equals_the_golden_feed(word_dev, p, q, mode, rnd, n, d, B):
    dev = word_dev
    W = 8
    rng = np.random.default_rng([p, q, mode, n])
    s = rng.integers(0, 1 << p, size=(n, d))
    seg = pack.pack_segment(W, p, 1, s, rng.integers(-(1 << 26), 1 << 26, size=n), B)
    regs = EngineRegs(q=q, mode=mode, d=d, step=1, step_shift=0, grid=1)
    fregs = store.FeedRegs(p=p, round=rnd)
    seed = store.check_seed(int(rng.integers(1, 1 << 63)) * 2 + 1, W)
    config = EngineConfig(W=W, D_MAX=64, B_MAX=8, BUF_DEPTH=64)
    states = store.seed_states(seed, W)
    want = []
    for _ in range(4):
        words, states = store.feed(config, regs, fregs, seg, states)
        want.append(words)

    dev.set_ctrl(enable=False, clear=True)
    dev.configure(q=q, mode=mode, d=d, grid=1)
    dev.set_feed(fregs)
    dev.set_seed(seed)
    dev.store(seg)
    # three epochs in one replay (no restart between them), then a fourth replay of one
    dev.set_ctrl(enable=True, clear=True)
    dev.replay(3)
    c = dev.counters()
    assert c["words"] == sum(w.size for w in want[:3])
    assert c["samples"] == word_hash(np.concatenate(want[:3]))
    dev.set_ctrl(enable=True, clear=True)
    dev.replay(1)
    c = dev.counters()
    assert c["words"] == want[3].size and c["samples"] == word_hash(want[3])


def test_feed_restarts_after_a_stop(word_dev):
    """A replay stopped mid-pass leaves the feed mid-group; the next replay starts at a pass
    header (the generators ran on: their state is read from the golden feed of the words
    the feed took, which we cannot know, so this uses the nearest rounding)."""
    dev = word_dev
    W, p, q, d, n = 8, 8, 3, 10, 40
    rng = np.random.default_rng(11)
    seg = pack.pack_segment(W, p, 1, rng.integers(0, 1 << p, size=(n, d)),
                            rng.integers(0, 1 << 20, size=n), 1)
    regs = EngineRegs(q=q, mode=1, d=d, step=1, step_shift=0, grid=1)
    fregs = store.FeedRegs(p=p, round=1)
    config = EngineConfig(W=W, D_MAX=64, B_MAX=8, BUF_DEPTH=64)
    want, _ = store.feed(config, regs, fregs, seg, store.seed_states(1, W))
    dev.set_ctrl(enable=False, clear=True)
    dev.configure(q=q, mode=1, d=d, grid=1)
    dev.set_feed(fregs)
    dev.store(seg)
    dev.set_ctrl(enable=True, clear=True)
    dev.transact(0x06, (50).to_bytes(2, "little"))       # REPLAY 50, stopped at once
    dev.set_ctrl(enable=True, stop=True)
    assert not dev.status()["replay"]
    dev.set_ctrl(enable=True, clear=True)
    dev.replay(1)
    c = dev.counters()
    assert c["words"] == want.size and c["samples"] == word_hash(want)


# ---------------------------------------------------------------------- training

def _problem(n, d, seed):
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, size=(n, d))
    A[:, -1] = 1.0                               # the intercept column
    w = rng.normal(size=d) / d
    b = np.clip(A @ w + 0.05 * rng.normal(size=n), -1, 1)
    return A, b


def train_store_mode(dev, config, job, epochs):
    """DeviceRunner in store mode vs golden, epoch by epoch; returns the runner."""
    runner = DeviceRunner(dev, job=job)
    X = Xg = np.zeros(job.d, dtype=np.int64)
    for e in range(epochs):
        stream = job.epoch_stream(e)
        g = golden.run(config, job.epoch_regs(e), stream, init_model=Xg)
        r = runner(config, job.epoch_regs(e), None, init_model=X, epoch=e)
        assert np.array_equal(r.model_words, g.model_words), f"epoch {e}"
        assert r.words == stream.size and r.samples == g.samples
        assert not g.overflow
        X, Xg = r.model_words, g.model_words
    assert runner.uploads == 1
    assert runner.link_words * config.W == job.store_bits()
    assert runner.store_words * config.W == job.store_bits() * epochs
    return runner


JOBS = [
    dict(quantizer="double", q=2, store_p=8, B=1),
    dict(quantizer="naive", q=3, store_p=8, B=2),
    dict(quantizer="deterministic", q=4, store_p=6, B=1),
    dict(quantizer="full", q=8, store_p=8, B=3),
]


def _train_case(transport, config, kw, n=24, d=11, epochs=3, seed=0):
    A, b = _problem(n, d, seed)
    job = EngineJob.build(A, b, lr=0.05, seed=seed + 5, config=config, grid="floor", **kw)
    dev = Device(transport)
    train_store_mode(dev, config, job, epochs)
    # the draws are fresh each epoch (not a replay of epoch 0's codes)
    if kw["quantizer"] in ("double", "naive"):
        assert not np.array_equal(job.epoch_stream(0), job.epoch_stream(1))


@pytest.fixture(scope="module")
def sim8():
    t = SimTransport(**SIM)
    yield t
    t.close()


def test_store_mode_training_double_q2_equals_golden(sim8):
    config = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)
    _train_case(sim8, config, JOBS[0])


@pytest.mark.slow
@pytest.mark.parametrize("kw", JOBS[1:])
def test_store_mode_training_equals_golden(sim8, kw):
    config = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)
    _train_case(sim8, config, kw, seed=len(kw["quantizer"]))


@pytest.mark.slow
@pytest.mark.parametrize("kw", JOBS)
def test_store_mode_training_serial_icebreaker_like(kw):
    """The iCEBreaker's engine (lane-serial, no L2) at W = 8."""
    config = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, ARCH="serial")
    t = SimTransport(**SIM, ARCH="serial", L2=False)
    try:
        _train_case(t, config, kw, n=20, d=13, seed=3)
    finally:
        t.close()


@pytest.mark.slow
@pytest.mark.parametrize("kw", [JOBS[0], JOBS[1]])
def test_store_mode_training_w32_parallel(kw):
    config = EngineConfig(W=32, D_MAX=128, B_MAX=8, BUF_DEPTH=1024)
    t = SimTransport(W=32, D_MAX=128, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=4096)
    try:
        _train_case(t, config, kw, n=20, d=37, seed=4)
    finally:
        t.close()


# ---------------------------------------------------------------------- both boards' builds

def _boards_case(board, q, quantizer, replay, epochs=2, n=18):
    """`--backend sim --board B` == `--backend golden --board B` bit for bit (the board's own
    engine, L2, store and clock), with the job the CLI would build."""
    from zipml.host.backend_engine import train_golden
    from zipml.host.device import train_sim
    from zipml.host.problem import TrainOptions, prepare, resolve
    A, b = _problem(n, 13, q)
    prepared = prepare(A[:, :-1], b, "regression")
    opts = resolve(prepared, TrainOptions(bits=q, quantizer=quantizer, epochs=epochs, seed=q,
                                          board=board, replay=replay, backend="sim"))
    want = train_golden(prepared, opts)
    got = train_sim(prepared, opts)
    assert want.extra["store_p"] == got.extra["store_p"] and (want.extra["store_p"] > 0) == replay
    assert got.model_raw == want.model_raw
    assert got.extra["link_bits"] == want.extra["link_bits"]
    assert got.extra["store_bits"] == want.extra["store_bits"]


@pytest.mark.slow
def test_both_modes_on_the_icebreaker_build():
    _boards_case("icebreaker", 2, "double", True)
    _boards_case("icebreaker", 3, "double", False, epochs=1, n=8)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("quantizer", ["double", "naive"])
@pytest.mark.parametrize("replay", [True, False])
def test_every_q_both_modes_both_boards(board, q, quantizer, replay):
    _boards_case(board, q, quantizer, replay, epochs=2 if replay else 1, n=18 if replay else 8)
