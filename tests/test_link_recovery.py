"""Nothing lost, nothing stuck: a host that crashes or is interrupted mid-job, a line of noise,
a frame parser fed garbage. The board is the board system in Verilator (the same build as
tests/test_link_system.py, so the Verilator cache is shared); the expected models are the
golden model's.
"""

import dataclasses
import random

import numpy as np
import pytest

from zipml.hw import protocol as P
from zipml.host.backend_engine import engine_job_for, train_golden
from zipml.host.device import Device, DeviceTimeout, sim_transport_for, train_sim
from zipml.host.transport import Transport
from zipml.reference.golden import EngineConfig

CONFIG = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)


@pytest.fixture(scope="module")
def sim():
    t = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    yield t
    t.close()


@pytest.fixture(scope="module")
def prepared(diabetes_prepared):
    return diabetes_prepared


def _options(**kw):
    from zipml.host.problem import TrainOptions
    return dataclasses.replace(TrainOptions(**kw), replay=False)


def _start_and_abandon(sim, prepared, opts, words_sent):
    """A host that configures a job, streams ``words_sent`` of its first epoch's words and
    dies (kill -9: nothing more is sent). The engine is left mid-pass, enabled."""
    from zipml.host.problem import resolve
    job = engine_job_for(prepared, resolve(prepared, opts), CONFIG, 16384)
    regs = job.epoch_regs(0)
    words = np.asarray(job.epoch_stream(0), dtype=np.uint64)
    assert words.size > words_sent
    dev = Device(sim)
    dev.set_ctrl(enable=False)
    dev.configure(**{r.name: int(getattr(regs, r.engine)) for r in P.ENGINE_REGISTERS})
    dev.write_model(np.zeros(regs.d, dtype=np.int64))
    dev.set_ctrl(enable=True, clear=True)
    dev.stream(words[:words_sent])
    assert not dev.status()["idle"], "the abandoned engine should be mid-pass"


def test_a_crashed_host_leaves_nothing_for_the_next(sim, prepared):
    """Case 1 of issue 11: a host dies mid-stream; the next host's run trains as if the board
    were fresh (bit-exact to golden), because connecting brings the board to a known state."""
    opts = _options(quantizer="double", bits=3, epochs=2, seed=5)
    _start_and_abandon(sim, prepared, opts, words_sent=37)
    res = train_sim(prepared, opts, config=CONFIG, transport=sim)
    gold = train_golden(prepared, opts, config=CONFIG)
    assert res.model_raw == gold.model_raw and res.mse == gold.mse


def test_ctrl_c_mid_stream_stops_the_engine_and_leaves_the_link_idle(sim, prepared):
    """KeyboardInterrupt while words stream: the host stops and clears the engine before it
    gives up; a host that connects without resetting finds it idle and disabled, and no stale
    answer waits on the line."""
    opts = _options(quantizer="double", bits=4, epochs=2, seed=6)
    calls = []

    class Interrupting:
        def __call__(self, *args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                raise KeyboardInterrupt

        def __getattr__(self, name):
            return lambda *a, **k: None

    with pytest.raises(KeyboardInterrupt):
        train_sim(prepared, opts, Interrupting(), config=CONFIG, transport=sim)
    assert len(calls) == 2
    dev = Device(sim, reset=False)
    assert dev.status()["idle"] and not dev.status()["replay"]
    assert dev.read_reg("ctrl") & P.CTRL_ENABLE == 0
    assert dev.stats.bad_rx == 0 and dev.stats.resends == 0


class NoisyLine(Transport):
    """A line that answers every read with random bytes, on a clock of its own: each read
    takes a millisecond of its time. It fails the test if read far more often than the
    host's deadlines allow."""

    baud = 3_000_000
    clk_freq = 1_000

    def __init__(self, seed=0, limit=100_000):
        self.rng = random.Random(seed)
        self.cycles = 0
        self.reads = 0
        self.limit = limit

    def write(self, data):
        pass

    def read(self, timeout):
        self.reads += 1
        assert self.reads < self.limit, "the host keeps reading a noisy line: no deadline"
        self.cycles += 1
        return bytes(self.rng.randrange(256) for _ in range(64))


def test_a_noisy_line_times_out_by_the_deadline():
    """Case 3: noise that never stops must end each attempt at its deadline (here 50 of the
    line's milliseconds, 5 attempts), not keep the host reading."""
    line = NoisyLine(seed=1)
    with pytest.raises(DeviceTimeout):
        Device(line, timeout=0.05, retries=4)
    assert line.reads <= 5 * 51


def test_the_frame_parser_buffer_is_bounded():
    """An opening FLAG and then megabytes without a closing one: the parser keeps at most one
    longest frame, counts the over-long one bad, and the next good frame still decodes."""
    parser = P.FrameParser(max_payload=32)
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
    noise[noise == P.FLAG] = 0
    assert parser.feed(bytes([P.FLAG])) == []
    for i in range(0, noise.size, 4096):
        parser.feed(noise[i:i + 4096].tobytes())
        assert len(parser._buf) <= parser.max_stuffed
    assert parser.bad == 1                  # one frame too long, dropped up to the next FLAG
    good = P.encode_frame(7, P.Command.PING)
    frames = parser.feed(good)
    assert [(f.seq, f.cmd) for f in frames] == [(7, P.Command.PING)]
