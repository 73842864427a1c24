"""The host `Device` against what a board's build can do, on the board system in Verilator
through its UART pins: engine counters read while the engine runs, the build's options (register
``caps``), and jobs the build cannot do refused before anything is sent.

For the counters the engine is a stand-in with the real `Engine`'s ports (a subclass whose
``elaborate`` only counts): its counters start at distinct values with high words set and grow
by 2**19 per enabled clock, so the low word wraps every 8192 clocks, a few times per ten register
reads. The real engine's low word wraps after 2**32 clocks (6 minutes at 12 MHz): too long to
simulate. What is under test is the system's register file and the host's reading order, not
the counting. The stand-in is built without the L2 shrink, so the host must refuse L2 jobs on
it. The other refusals run on the real system (the build of tests/test_link_system.py).

The replay path (store words landing in registers, reads issued by a count of free places,
the skid buffer in front of the engine, the epoch wrap) is checked with a second stand-in that
takes words with random stalls and folds them in order into a hash (`WordEngine`).
"""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal

from zipml.hw import protocol as P
from zipml.hw.engine import Engine
from zipml.hw.soc import System
from zipml.host.device import Device
from zipml.host.transport import SimTransport, Transport

STEP = 1 << 19


def start(k):
    """Counter ``k``'s value after clear: high words differ, so a mixed-up latch shows."""
    return (k + 1) << 40


class CountingEngine(Engine):
    """`Engine`'s interface; counters only (start(k) + STEP per enabled clock), always idle."""

    def __init__(self, **kw):
        super().__init__(**kw, L2=False)

    def elaborate(self, platform):
        m = Module()
        for k, name in enumerate(P.COUNTERS):
            port = getattr(self, name)
            count = Signal(len(port), init=start(k))
            m.d.comb += port.eq(count)
            with m.If(self.clear):
                m.d.sync += count.eq(start(k))
            with m.Elif(self.enable):
                m.d.sync += count.eq(count + STEP)
        m.d.comb += [self.idle.eq(1), self.i_stream.ready.eq(self.enable)]
        return m


class CountingSystem(System):
    def make_engine(self):
        return CountingEngine(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX,
                              BUF_DEPTH=self.BUF_DEPTH)


@pytest.fixture(scope="module")
def sim():
    system = CountingSystem(12_000_000, 3_000_000, W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=64,
                            STORE_DEPTH=64)
    t = SimTransport(system=system)
    yield t
    t.close()


@pytest.fixture
def dev(sim):
    return Device(sim)


@pytest.mark.parametrize("k,name", list(enumerate(P.COUNTERS)))
def test_counter_read_while_running_is_never_torn(dev, sim, k, name):
    dev.set_ctrl(enable=False, clear=True)
    before_enable = sim.cycles
    dev.set_ctrl(enable=True)
    after_enable = sim.cycles
    values = []
    for _ in range(30):
        before = sim.cycles
        v = dev.read_counter(name)
        after = sim.cycles
        # The board latched the counter between `before` and `after`; it has counted since the
        # enable write, which took effect between `before_enable` and `after_enable` (+-1 clock).
        lo = start(k) + STEP * max(0, before - after_enable - 1)
        hi = start(k) + STEP * (after - before_enable + 1)
        assert lo <= v <= hi, (f"{name} read {v:#x}, outside [{lo:#x}, {hi:#x}]: "
                               f"its halves are from different clocks")
        assert (v - start(k)) % STEP == 0
        values.append(v)
    assert values == sorted(values)
    # Not vacuous: the low word wrapped several times while it was being read.
    assert len({v >> 32 for v in values}) >= 4


def test_caps_of_a_build_without_l2(dev):
    assert dev.read_reg("caps") == P.caps_value(False, 0)
    assert dev.params["L2"] is False and dev.params["ARCH"] == "parallel"


def test_l2_register_refused_on_a_build_without_l2(dev):
    with pytest.raises(ValueError, match="built without L2 .* ignore l2_shift=3"):
        dev.write_reg("l2_shift", 3)
    dev.write_reg("l2_shift", 0)      # 0 is what the build does anyway


class Recording(Transport):
    """Passes bytes through and records the command of every frame the host sends."""

    def __init__(self, inner):
        self.inner, self.baud = inner, inner.baud
        self.parser = P.FrameParser()
        self.commands = []
        self.frames = []

    def write(self, data):
        frames = self.parser.feed(data)
        self.frames += frames
        self.commands += [f.cmd for f in frames]
        self.inner.write(data)

    def read(self, timeout):
        return self.inner.read(timeout)

    def idle(self, seconds):
        self.inner.idle(seconds)


def _refused(transport, d, match, n=200, **options):
    """Train a random linreg problem of ``d`` features (intercept included) on ``transport``:
    it must fail with ``match`` after the host sent only its identification reads and the
    reset of connecting (a write of ctrl: stop, clear, engine disabled)."""
    from zipml.host.device import train_sim
    from zipml.host.problem import TrainOptions, prepare, resolve
    rng = np.random.default_rng(d)
    X = rng.standard_normal((n, d - 1))
    prepared = prepare(X, X @ rng.standard_normal(d - 1), "regression", precondition="none")
    rec = Recording(transport)
    with pytest.raises(ValueError, match=match):
        # no config: the job is built for the board's own build, read at connect
        train_sim(prepared, resolve(prepared, TrainOptions(epochs=1, **options)), transport=rec)
    assert set(rec.commands) == {P.Command.PING, P.Command.READ_REG, P.Command.WRITE_REG}
    ctrl = P.REGISTER_BY_NAME["ctrl"].addr
    reset = (P.CTRL_STOP | P.CTRL_CLEAR).to_bytes(4, "little")
    assert [f.payload for f in rec.frames if f.cmd == P.Command.WRITE_REG] == \
        [bytes([ctrl]) + reset]


def test_l2_job_refused_before_anything_is_sent(sim):
    """`zipml train --lam 0.01 --backend sim` on this build: one clear error naming L2."""
    _refused(sim, 11, "built without L2 .* L2 regularization .*--lam", lam=0.01, bits=4)


@pytest.fixture(scope="module")
def real_sim():
    """The real system, W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024 (tests/test_link_system.py)."""
    t = SimTransport(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)
    yield t
    t.close()


@pytest.mark.parametrize("d,options,match", [
    (65, dict(bits=4), "d=65 features exceed this engine's D_MAX=64"),
    (11, dict(bits=4, batch=9), "B must be in 1..8"),
    # mode 1 keeps a pass's codes: B x q x ceil(d / W) = 4 x 32 x 5 words, the buffer 1024 / 2
    (40, dict(quantizer="full", batch=4, replay=False), "needs 640 code-buffer words .* holds 512"),
])
def test_jobs_the_build_cannot_do_are_refused_before_anything_is_sent(real_sim, d, options,
                                                                      match):
    _refused(real_sim, d, match, **options)


def test_serial_architecture_board_says_so_and_trains_like_golden():
    """The board system with the lane-serial engine (`System(ARCH="serial")`): ``caps`` names
    the architecture, the host builds its jobs for that engine and the board trains diabetes
    bit-exact to the golden model of the same config."""
    from sklearn.datasets import load_diabetes
    from zipml.host.backend_engine import train_golden
    from zipml.host.device import train_sim
    from zipml.host.problem import TrainOptions, prepare, resolve
    from zipml.reference.golden import EngineConfig
    t = SimTransport(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384, ARCH="serial")
    try:
        assert Device(t).params["ARCH"] == "serial"
        X, y = load_diabetes(return_X_y=True)
        prepared = prepare(X, y, "regression")
        options = resolve(prepared, TrainOptions(bits=4, epochs=1))
        res = train_sim(prepared, options, transport=t)
        gold = train_golden(prepared, options, config=EngineConfig(W=8, D_MAX=64, B_MAX=8,
                                                                   BUF_DEPTH=1024,
                                                                   ARCH="serial"))
        assert res.extra["config"]["ARCH"] == "serial"
        assert res.model_raw == gold.model_raw and res.mse == gold.mse
    finally:
        t.close()


HASH_MASK = (1 << 48) - 1


def word_hash(words, h=0):
    """The order-sensitive fold `WordEngine` keeps in its ``samples`` counter."""
    for w in words:
        h = (h * 3 + int(w)) & HASH_MASK
    return h


class WordEngine(Engine):
    """`Engine`'s interface; takes stream words with random stalls (ready from an LFSR while
    enabled), counts them in ``words`` and folds them in order into ``samples`` (`word_hash`).
    Always idle: the system's idle is then that no word waits in front of it."""

    def __init__(self, **kw):
        super().__init__(**kw, L2=False)

    def elaborate(self, platform):
        from amaranth.hdl import Cat
        m = Module()
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
        ready = Signal()
        m.d.comb += [ready.eq(self.enable & lfsr[0]), self.i_stream.ready.eq(ready),
                     self.idle.eq(1)]
        n, h = Signal(48), Signal(48)
        m.d.comb += [self.words.eq(n), self.samples.eq(h)]
        with m.If(self.clear):
            m.d.sync += [n.eq(0), h.eq(0)]
        with m.Elif(self.i_stream.valid & ready):
            m.d.sync += [n.eq(n + 1), h.eq(h * 3 + self.i_stream.payload)]
        return m


class WordSystem(System):
    def make_engine(self):
        return WordEngine(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX, BUF_DEPTH=self.BUF_DEPTH)


@pytest.fixture(scope="module")
def word_dev():
    system = WordSystem(12_000_000, 3_000_000, W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=64,
                        STORE_DEPTH=64)
    t = SimTransport(system=system)
    yield Device(t)
    t.close()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_replay_feeds_every_word_once_in_order_while_the_engine_stalls(word_dev, n):
    """A replay of ``n`` store words E times: the engine takes exactly the segment E times in
    order (its hash says so), with random stalls of its ready; the shortest segments wrap every
    word or two, the longest is the whole store."""
    dev = word_dev
    words = np.random.default_rng(n).integers(0, 256, size=n)
    dev.store(words)
    dev.set_ctrl(enable=True, clear=True)
    epochs = 5
    dev.replay(epochs)
    c = dev.counters()
    assert c["replay_done"] == epochs
    assert c["words"] == epochs * n
    assert c["samples"] == word_hash(np.tile(words, epochs))


def test_stop_drops_the_words_waiting_for_a_disabled_engine(word_dev):
    """`ctrl.stop` during a replay, with the engine disabled and words already on their way to
    it: after stop and clear, enabling the engine feeds it nothing (no stale word reaches a
    cleared engine)."""
    dev = word_dev
    dev.store(np.arange(1, 41))
    dev.set_ctrl(enable=True, clear=True)
    dev.transact(P.Command.REPLAY, (1000).to_bytes(2, "little"))   # runs on in the background
    assert dev.status()["replay"]
    dev.set_ctrl(enable=False)                  # words pile up in front of the engine
    dev.set_ctrl(enable=False, stop=True)
    dev.wait_idle()
    assert not dev.status()["replay"]
    dev.set_ctrl(enable=False, clear=True)
    dev.set_ctrl(enable=True)
    dev.transport.idle(0.001)
    assert dev.read_counter("words") == 0
    # The board takes a new replay as usual afterwards.
    dev.store(np.arange(1, 4))
    dev.set_ctrl(enable=True, clear=True)
    dev.replay(2)
    assert dev.read_counter("samples") == word_hash([1, 2, 3] * 2)
