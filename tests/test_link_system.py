"""The board system in Verilator through its UART pins: registers, model port, corrupted frames,
lost answers, random gaps, bad commands, timeouts.

Every effect is checked through an independent channel: a STREAM's words through the engine's
own ``words`` counter, a register through reading it back, the link's health through its
counters. Corruption is injected on the wire by `FaultyTransport` below (bit flips and dropped
bytes, both directions).
"""

import random

import numpy as np
import pytest

from zipml.hw import protocol as P
from zipml.host.device import Device, DeviceError, DeviceTimeout
from zipml.host.transport import SimTransport, Transport

SIM = dict(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)


@pytest.fixture(scope="module")
def sim():
    t = SimTransport(**SIM, gap_prob=0.2, seed=3)
    yield t
    t.close()


@pytest.fixture
def dev(sim):
    d = Device(sim)
    d.set_ctrl(enable=False, clear=True)
    return d


class FaultyTransport(Transport):
    """Wraps a transport and damages chosen frames on the way out or back.

    ``out_faults`` / ``in_faults``: dicts frame index -> "flip" (one random bit of a random byte
    between the FLAGs) or "drop" (the whole frame vanishes). Frames are counted per direction.
    """

    def __init__(self, inner, out_faults=(), in_faults=(), seed=0):
        self.inner, self.baud = inner, inner.baud
        self.out_faults, self.in_faults = dict(out_faults), dict(in_faults)
        self.rng = random.Random(seed)
        self.n_out = self.n_in = 0
        self.damaged_out = 0

    def _damage(self, frame, kind):
        if kind == "drop":
            return b""
        b = bytearray(frame)
        i = self.rng.randrange(1, len(b) - 1)
        b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def write(self, data):
        kind = self.out_faults.get(self.n_out)
        self.n_out += 1
        if kind:
            self.damaged_out += 1
            data = self._damage(data, kind)
        self.inner.write(data)

    def read(self, timeout):
        data = self.inner.read(timeout)
        if data:
            kind = self.in_faults.get(self.n_in)
            self.n_in += 1
            if kind:
                data = self._damage(data, kind)
        return data

    def idle(self, seconds):
        self.inner.idle(seconds)


def test_identity_and_parameters(dev):
    assert dev.read_reg("id") == P.ID_MAGIC
    assert dev.params == {"W": 8, "D_MAX": 64, "B_MAX": 8, "BUF_DEPTH": 1024, "STORE_DEPTH": 16384,
                          "max_payload": P.MAX_PAYLOAD, "clk_hz": 12_000_000, "divisor": 4,
                          "L2": True, "ARCH": "parallel", "COUNTER_BITS": 48, "STALL": True,
                          "LINK_BITS": 16, "READBACK": True}
    # The build's options beyond the param_* numbers: zipml.hw.engine.Engine, built with L2.
    assert dev.read_reg("caps") == P.CAPS_L2


def test_registers_write_read_masked(dev):
    rng = random.Random(0)
    for r in P.ENGINE_REGISTERS + tuple(P.REGISTER_BY_NAME[n] for n in
                                        ("store_len", "store_p", "store_round")):
        for v in (0, r.mask, rng.randrange(r.mask + 1)):
            dev.write_reg(r.name, v)
            assert dev.read_reg(r.name) == v, r.name
    # Too wide for the register: refused on the host before it reaches the wire.
    with pytest.raises(ValueError, match="6 bits"):
        dev.write_reg("q", 64)
    # The seed's halves are write strobes: the board takes them and reads them as 0.
    for name in ("seed_lo", "seed_hi"):
        dev.write_reg(name, 0xFFFFFFFF)
        assert dev.read_reg(name) == 0
    dev.write_reg("store_p", 0)


def test_bad_register_writes_are_refused_by_the_board(dev):
    for addr in (P.REGISTER_BY_NAME["status"].addr, 0xEE):   # read-only, unknown
        with pytest.raises(DeviceError, match="BAD_ADDR"):
            dev.transact(P.Command.WRITE_REG, bytes([addr]) + (5).to_bytes(4, "little"))
    with pytest.raises(DeviceError, match="BAD_ADDR"):
        dev.transact(P.Command.READ_REG, bytes([0xEE]))
    assert dev.read_reg("status") & P.STATUS_IDLE


def test_bad_commands_and_lengths(dev):
    with pytest.raises(DeviceError, match="BAD_CMD"):
        _raw(dev, 0x42, b"")
    with pytest.raises(DeviceError, match="BAD_LEN"):
        dev.transact(P.Command.READ_REG, b"\x00\x01")
    with pytest.raises(DeviceError, match="BAD_LEN"):
        dev.transact(P.Command.READ_MODEL, (0).to_bytes(2, "little") + (64).to_bytes(2, "little"))
    with pytest.raises(DeviceError, match="BAD_ADDR"):
        dev.transact(P.Command.READ_MODEL, (60).to_bytes(2, "little") + (5).to_bytes(2, "little"))
    # STREAM while the engine is disabled would block forever: refused.
    with pytest.raises(DeviceError, match="BUSY"):
        dev.stream(np.zeros(4, dtype=np.uint8))


def _raw(dev, cmd, payload):
    """A command code the protocol does not define, through the driver's own retry loop."""
    seq = 0x33
    dev.transport.write(P.encode_frame(seq, cmd, payload))
    while True:
        f = dev._receive(dev.now() + dev.timeout)
        assert f is not None, "no answer to an unknown command"
        if f.seq == seq and f.cmd == cmd | P.ACK:
            raise DeviceError(f"{P.Status(f.payload[0]).name}")


def test_model_port_roundtrip(dev):
    rng = np.random.default_rng(1)
    words = rng.integers(-2**31, 2**31, size=64)
    words[:3] = [-2**31, 2**31 - 1, 0]
    dev.write_model(words)
    assert np.array_equal(dev.read_model(64), words)


def _tiny_stream(W=8):
    """A real epoch segment (so the engine parses it) with a known word count."""
    from zipml.reference import pack
    rng = np.random.default_rng(4)
    n, d, q = 5, 11, 3
    dot = rng.integers(0, 2**q, size=(n, d))
    grad = rng.integers(0, 2**q, size=(n, d))
    L = pack.label_word(rng.uniform(-1, 1, size=n), q)
    words = pack.pack_segment(W, q, 0, dot, L, 1, grad)
    # Every engine register, so nothing leaks from earlier tests on the same board.
    return dict(q=q, mode=0, d=d, step=1000, step_shift=20, decay_shift=0, n_epoch=0,
                l2_shift=0, grid=0), words


def test_corrupted_and_lost_frames_act_exactly_once(sim):
    regs, words = _tiny_stream()
    # Out-frame indices: 0 PING, 1..10 READ_REG (id, params, caps), then our commands.
    faults_out = {11: "flip", 12: "flip", 14: "drop", 16: "flip"}
    faults_in = {13: "flip", 15: "drop", 18: "flip"}
    bad_before = Device(sim).read_reg("rx_bad")
    ft = FaultyTransport(sim, faults_out, faults_in, seed=7)
    dev = Device(ft, timeout=0.002, retries=6)
    dev.set_ctrl(enable=False, clear=True)
    dev.configure(**regs)
    dev.write_model(np.zeros(regs["d"], dtype=np.int64))
    dev.set_ctrl(enable=True, clear=True)
    dev.stream(words)
    dev.wait_idle()
    c = dev.counters()
    # Every word reached the engine exactly once, despite flips, drops and resends.
    assert c["words"] == words.size
    assert c["samples"] == 5
    assert dev.read_reg("q") == regs["q"] and dev.read_reg("d") == regs["d"]
    # The board counted the damaged frames it saw (dropped ones it never saw).
    flipped_out = sum(1 for k in faults_out.values() if k == "flip")
    assert c["rx_bad"] - bad_before == flipped_out
    assert dev.stats.resends >= len(faults_out) + len(faults_in) - 1
    assert dev.stats.naks >= 1


def test_a_write_after_256_commands_is_not_taken_for_a_resend(dev):
    """The board compares an effect command's seq with the last executed effect's only: a
    write numbered like the last write (256 commands later, reads between) must still act."""
    dev.write_reg("step", 1111)
    first = dev._seq - 1
    while dev._seq != first:                        # reads until the numbering wraps around
        dev.read_reg("words_lo")
    dev.write_reg("step", 2222)
    assert dev.read_reg("step") == 2222


def test_a_write_whose_answer_is_lost_is_not_repeated_nor_lost(sim):
    """The answer to a write lost on the line: the resend (same seq) is a DUPLICATE, the next
    write (a new seq, whatever the wrap) acts."""
    dev = Device(sim)
    ft = FaultyTransport(sim, in_faults={0: "drop"}, seed=1)
    dev.transport = ft
    dev.write_reg("step", 3333)                     # first answer dropped, resent, DUPLICATE
    assert dev.stats.resends == 1
    dev.transport = sim
    for _ in range(255):
        dev.read_reg("words_lo")
    dev.write_reg("step", 4444)
    assert dev.read_reg("step") == 4444


def test_junk_between_frames_is_ignored(dev):
    dev.transport.write(bytes([0x00, 0x55, 0xFF, 0x13]))     # line noise, no FLAG
    dev.write_reg("step", 4321)
    assert dev.read_reg("step") == 4321


def test_stream_result_matches_golden(dev):
    from zipml.reference.golden import EngineConfig, EngineRegs, run
    regs, words = _tiny_stream()
    dev.configure(**regs)
    dev.write_model(np.zeros(regs["d"], dtype=np.int64))
    dev.set_ctrl(enable=True, clear=True)
    dev.stream(words)
    dev.wait_idle()
    golden = run(EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024), EngineRegs(**regs), words)
    assert np.array_equal(dev.read_model(regs["d"]), golden.model_words)
    assert dev.counters()["samples"] == golden.samples


def test_replay_equals_streaming_the_segment_repeatedly(dev):
    from zipml.reference.golden import EngineConfig, EngineRegs, run
    regs, words = _tiny_stream()
    dev.configure(**regs)
    dev.write_reg("store_p", 0)         # the store feed passes the replayed words through
    dev.write_model(np.zeros(regs["d"], dtype=np.int64))
    dev.store(words)
    dev.set_ctrl(enable=True, clear=True)
    seen = []
    cycles = dev.replay(3, on_epoch=seen.append)
    assert dev.read_reg("replay_done") == 3 and seen[-1] == 3
    # The store feeds at most one word per clock; the board's count says it took at least that.
    assert cycles >= 3 * words.size
    golden = run(EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024), EngineRegs(**regs),
                 np.concatenate([words] * 3))
    assert np.array_equal(dev.read_model(regs["d"]), golden.model_words)
    c = dev.counters()
    assert c["words"] == 3 * words.size and c["samples"] == golden.samples
    # While replaying nothing else may feed the engine; after it, STORE/STREAM work again.


def test_store_overflow_refused(dev):
    with pytest.raises(ValueError, match="sample store holds 16384"):
        dev.store(np.zeros(16385, dtype=np.uint8))
    dev.write_reg("store_wptr", 16380)
    with pytest.raises(DeviceError, match="BAD_ADDR"):
        dev.transact(P.Command.STORE, bytes(8))


def test_timeout_is_clear(sim):
    class Deaf(Transport):
        baud = 3_000_000

        def write(self, data):
            pass

        def read(self, timeout):
            sim.idle(timeout)
            return b""

    with pytest.raises(DeviceTimeout, match="PING: no valid answer after 3 tries"):
        Device(Deaf(), timeout=0.001, retries=2)


def test_frame_sent_while_board_busy_is_dropped_not_acted_on(dev):
    """A second frame sent without waiting for the first's answer hits the busy frame buffer:
    its bytes are lost (overrun), the rest arrives as a bad frame, NAKed, never executed."""
    step = P.REGISTER_BY_NAME["step"].addr
    dev.write_reg("step", 1)
    over0, bad0 = dev.read_reg("rx_overrun"), dev.read_reg("rx_bad")
    a = P.encode_frame(0xA0, P.Command.WRITE_REG, bytes([step]) + (7).to_bytes(4, "little"))
    b = P.encode_frame(0xA1, P.Command.WRITE_REG, bytes([step]) + (9).to_bytes(4, "little"))
    dev.transport.write(a + b)
    answers = P.FrameParser().feed(dev.transport.read(0.001))
    assert [f.cmd for f in answers] == [P.Command.NAK | P.ACK]
    assert answers[0].payload == bytes([P.Status.BAD_FRAME])
    assert dev.read_reg("step") == 7
    assert dev.read_reg("rx_overrun") > over0 and dev.read_reg("rx_bad") == bad0 + 1


def test_status_leds(dev, sim):
    """LED 0 follows enable, LED 3 lights on a bad frame and clears with ctrl.clear."""
    dev.set_ctrl(enable=False, clear=True)
    assert sim.model.get("leds") & 0b1001 == 0
    dev.set_ctrl(enable=True)
    assert sim.model.get("leds") & 0b0001
    bad = bytearray(P.encode_frame(0x55, P.Command.PING))
    bad[2] ^= 0x40
    sim.write(bytes(bad))
    assert P.FrameParser().feed(sim.read(0.001))[0].cmd == P.Command.NAK | P.ACK
    assert sim.model.get("leds") & 0b1000
    dev.set_ctrl(enable=False, clear=True)
    assert sim.model.get("leds") & 0b1001 == 0
