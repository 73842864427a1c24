"""The board system's trims for a small FPGA (`zipml.hw.soc.System` ``COUNTER_BITS``, ``STALL``,
``LINK_BITS``, ``READBACK``; the iCEBreaker's `BoardSpec.system`), announced in ``caps``, and the
host handling them: on the board system in Verilator through its UART pins, with a stand-in
engine whose counters start with high bits set (so a counter read whole would show them).
"""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal

from zipml.hw import protocol as P
from zipml.hw.boards import BOARDS
from zipml.hw.engine import COUNTER_BITS, Engine
from zipml.hw.soc import System
from zipml.host.backend_engine import board_build
from zipml.host.device import Device, DeviceError
from zipml.host.transport import SimTransport

TRIMS = {"COUNTER_BITS": 32, "STALL": False, "LINK_BITS": 8, "READBACK": False}
FULL = {"COUNTER_BITS": 48, "STALL": True, "LINK_BITS": 16, "READBACK": True}
STORE_DEPTH = 64


def start(k):
    """Counter ``k`` after clear: high bits set, low word 5 + k."""
    return (k + 1) << 36 | (5 + k)


class CountingEngine(Engine):
    """`Engine`'s interface; counters only (start(k) + 1 per enabled clock), always idle."""

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
                m.d.sync += count.eq(count + 1)
        m.d.comb += [self.idle.eq(1), self.i_stream.ready.eq(self.enable)]
        return m


class CountingSystem(System):
    def make_engine(self):
        return CountingEngine(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX,
                              BUF_DEPTH=self.BUF_DEPTH)


def test_caps_fields():
    # a full build's caps is the value of the builds before the fields
    for L2 in (False, True):
        assert P.caps_value(L2, 1) == (P.CAPS_L2 if L2 else 0) | 1 << P.CAPS_ARCH_SHIFT
        assert P.decode_caps(P.caps_value(L2, 1)) == {"L2": L2, "ARCH": "serial", **FULL}
    value = P.caps_value(False, 1, counter_bits=32, stall=False, link_bits=8, readback=False)
    assert P.decode_caps(value) == {"L2": False, "ARCH": "serial", **TRIMS}
    assert P.COUNTER_BITS_FULL == COUNTER_BITS           # the engine's own width
    with pytest.raises(ValueError, match="counter width"):
        P.caps_value(True, 0, counter_bits=64)
    with pytest.raises(ValueError, match="link counter width"):
        P.caps_value(True, 0, link_bits=17)
    with pytest.raises(ValueError, match="COUNTER_BITS"):
        System(12_000_000, 3_000_000, COUNTER_BITS=8)


def test_the_trims_are_the_icebreakers():
    assert BOARDS["icebreaker"].system == TRIMS
    assert BOARDS["ulx3s"].system == {}
    assert {k: board_build("icebreaker").caps[k] for k in TRIMS} == TRIMS
    assert {k: board_build("ulx3s").caps[k] for k in FULL} == FULL
    assert {k: board_build(None).caps[k] for k in FULL} == FULL


@pytest.fixture(scope="module")
def sim():
    system = CountingSystem(12_000_000, 3_000_000, W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=64,
                            STORE_DEPTH=STORE_DEPTH, **TRIMS)
    t = SimTransport(system=system)
    yield t
    t.close()


@pytest.fixture
def dev(sim):
    return Device(sim)


def raw_read(dev, name):
    """The board's answer to READ_REG, without the host's judgement."""
    data = dev.transact(P.Command.READ_REG, bytes([P.REGISTER_BY_NAME[name].addr]))
    return int.from_bytes(data, "little")


def test_caps_and_params(dev):
    assert {k: dev.params[k] for k in TRIMS} == TRIMS


def test_counters_are_32_bits_and_stall_is_absent(dev, sim):
    dev.set_ctrl(enable=False, clear=True)
    for k, name in enumerate(P.COUNTERS):
        lo, hi = P.COUNTERS[name]
        assert raw_read(dev, hi.name) == 0                      # no high word
        if name == "stall_cycles":
            assert dev.read_counter(name) is None and raw_read(dev, lo.name) == 0
        else:
            assert dev.read_counter(name) == start(k) & 0xFFFFFFFF
    assert dev.counters()["stall_cycles"] is None
    # counting on, modulo 2**32 (the low word of the engine's counter)
    before = sim.cycles
    dev.set_ctrl(enable=True)
    got = dev.read_counter("cycles")
    after = sim.cycles
    assert start(0) & 0xFFFFFFFF < got <= (start(0) & 0xFFFFFFFF) + after - before
    dev.set_ctrl(enable=False, clear=True)


def test_unwrap_with_the_hosts_time(dev):
    clk = dev.params["clk_hz"]
    span = 1 << 32
    for true in (0, 12345, span - 1, span + 7, 5 * span + 99):
        for error in (-0.2, 0.0, 0.2):                  # the host's time, off by 20% of a span
            seconds = (true + error * span) / clk
            assert dev.unwrap(true % span, max(0.0, seconds)) == true
    assert dev.unwrap(None, 1.0) is None


def test_configuration_registers_are_write_only(dev):
    dev.write_reg("q", 5)
    dev.write_reg("n_epoch", 0xDEADBEEF)
    assert dev.written["q"] == 5 and dev.written["n_epoch"] == 0xDEADBEEF
    for name in P.CONFIG_REGISTERS:
        assert raw_read(dev, name) == 0
        with pytest.raises(ValueError, match="not read back"):
            dev.read_reg(name)
    assert raw_read(dev, "ctrl") == 0 and dev.read_reg("ctrl") == 0     # ctrl is read back


def test_narrowed_store_registers_refuse_what_the_whole_ones_refuse(dev):
    """store_wptr and store_len keep the address bits and one bit for "any higher bit": an
    address or length past the store is refused as with the whole registers."""
    words = np.arange(4)
    sbits = STORE_DEPTH.bit_length()
    dev.set_ctrl(enable=True, clear=True)
    for wptr in (STORE_DEPTH - 2, 1 << sbits, 1 << 31, (1 << 20) | 1):
        dev.write_reg("store_wptr", wptr)
        with pytest.raises(DeviceError, match="BAD_ADDR"):
            dev.transact(P.Command.STORE, bytes(words.astype(np.uint8)))
    for length in (0, STORE_DEPTH + 1, 1 << sbits, (1 << sbits) | 1, 1 << 31):
        dev.write_reg("store_len", length)
        with pytest.raises(DeviceError, match="BAD_ADDR"):
            dev.transact(P.Command.REPLAY, (1).to_bytes(2, "little"))
    # in range: a store and a replay of it (the poll interval from the length written)
    dev.store(words)
    assert dev.written["store_len"] == words.size
    dev.replay(3)
    assert dev.counters()["replay_done"] == 3
    dev.set_ctrl(enable=False, clear=True)


def test_link_counters_wrap_at_8_bits(dev):
    ok0 = dev.read_reg("rx_ok")
    assert ok0 < 256
    n = 300
    for _ in range(n):
        dev.ping()
    # the pings and the read itself are good frames
    assert dev.read_reg("rx_ok") == (ok0 + n + 1) % 256
