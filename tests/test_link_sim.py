"""`SimTransport`'s own machinery: the UART waveform it plays into the simulated board and the
Verilog cache it converts the board system through (`zipml.sim.verilator.to_verilog_cached`).

Every module that talks to the simulated board (tests/test_link_system.py, test_device_*.py)
tests the UART end to end, frames and all; here its timing and the cache's keys.
"""

import pathlib

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from zipml.hw import protocol as P
from zipml.hw.soc import System
from zipml.host.transport import SimTransport
from zipml.sim import verilator

SIM = dict(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)
PACKAGE = pathlib.Path(verilator.__file__).resolve().parent.parent


def test_uart_bytes_take_ten_bit_times_and_gaps_add_idle_time():
    t = SimTransport(**SIM)
    try:
        data = bytes([0x00, 0xFF, 0x55, P.FLAG])      # no frame: the board just waits
        c0 = t.cycles
        t.write(data)
        assert t.cycles - c0 == len(data) * 10 * t.divisor    # start, 8 data, stop
        t.gap_prob = 1.0
        c0 = t.cycles
        t.write(data)
        assert t.cycles - c0 > len(data) * 10 * t.divisor
        # The line is idle again and the board answers a PING with one good frame.
        t.write(P.encode_frame(9, P.Command.PING))
        answer = P.FrameParser().feed(t.read(0.001))
        assert [(f.seq, f.cmd, f.payload) for f in answer] == [
            (9, P.Command.PING | P.ACK, bytes([P.Status.OK]))]
    finally:
        t.close()


def test_cached_verilog_of_the_board_system_is_a_fresh_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIPML_BUILD_DIR", str(tmp_path))
    params = dict(clk_freq=12_000_000, baud=3_000_000, **SIM)
    sources = [PACKAGE / "hw", PACKAGE / "reference"]
    made = []

    def make(**kw):
        made.append(kw)
        return System(**kw)

    first = verilator.to_verilog_cached(make, "zm_top", sources=sources, params=params)
    again = verilator.to_verilog_cached(make, "zm_top", sources=sources, params=params)
    assert len(made) == 1 and again == first
    assert first == verilator.to_verilog(System(**params), "zm_top")


class _Counter(wiring.Component):
    def __init__(self, width):
        super().__init__({"en": In(1), "count": Out(width)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


def test_verilog_cache_key_covers_sources_and_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIPML_BUILD_DIR", str(tmp_path / "build"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "block.py").write_text("WIDTH = 4\n")
    made = []

    def make(**kw):
        made.append(kw)
        return _Counter(**kw)

    def convert(width):
        return verilator.to_verilog_cached(make, "zm_counter", sources=[src],
                                           params={"width": width})

    v4 = convert(4)
    assert convert(4) == v4 and len(made) == 1                  # hit
    assert convert(5) != v4 and len(made) == 2                  # another parameter
    (src / "sub" / "block.py").write_text("WIDTH = 4  # edited\n")
    assert convert(4) == v4 and len(made) == 3                  # the code changed: converted
    assert "[3:0] count" in v4
