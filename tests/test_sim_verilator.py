"""zipml.sim.verilator on a small design of its own: a stream accumulator with a stalling
ready, a wide output and a synchronous memory port (the shapes the engine has).

Expected values are computed here from the words sent, never read back from the shim.
"""

import numpy as np
import pytest
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from zipml.sim import verilator as V


class StreamAcc(wiring.Component):
    """Adds ``payload + k`` into ``total`` per transfer; ready is low one cycle in four;
    a 16-word memory with a write port and a read port of latency 1."""

    def __init__(self, W=16):
        super().__init__({
            "i_stream": In(stream.Signature(W)),
            "k": In(signed(8)),
            "total": Out(48),
            "count": Out(32),
            "wide": Out(100),
            "addr": In(4), "we": In(1), "wdata": In(signed(32)), "rdata": Out(signed(32)),
        })

    def elaborate(self, platform):
        m = Module()
        phase = Signal(2)
        m.d.sync += phase.eq(phase + 1)
        m.d.comb += self.i_stream.ready.eq(phase != 0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [self.total.eq(self.total + self.i_stream.payload + self.k),
                         self.count.eq(self.count + 1)]
        m.d.comb += self.wide.eq(Cat(self.total, self.count, self.k))
        m.submodules.mem = mem = Memory(shape=signed(32), depth=16, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                     rd.addr.eq(self.addr), self.rdata.eq(rd.data)]
        return m


@pytest.fixture(scope="module")
def model():
    m = V.Model(StreamAcc(), "stream_acc")
    yield m
    m.close()


def test_parse_ports_amaranth_and_ansi():
    v = V.to_verilog(StreamAcc(), "stream_acc")
    ports = {p.name: (p.direction, p.width) for p in V.parse_ports(v, "stream_acc")}
    assert ports["i_stream__payload"] == ("input", 16)
    assert ports["i_stream__ready"] == ("output", 1)
    assert ports["wide"] == ("output", 100)
    assert ports["clk"] == ("input", 1) and ports["rst"] == ("input", 1)
    ansi = "module t(input wire [7:0] a, input b, output reg [64:0] c); endmodule"
    assert [(p.name, p.direction, p.width) for p in V.parse_ports(ansi, "t")] == [
        ("a", "input", 8), ("b", "input", 1), ("c", "output", 65)]
    with pytest.raises(ValueError, match="no module named"):
        V.parse_ports(ansi, "u")


def test_cpp_name_matches_verilator():
    assert V.cpp_name("i_stream__payload") == "i_stream___05Fpayload"
    assert V.cpp_name("a_b") == "a_b"
    assert V.cpp_name("a___b") == "a___05F_b"


@pytest.mark.parametrize("gap_prob", [0.0, 0.4])
def test_stream_with_gaps_and_backpressure(model, gap_prob):
    rng = np.random.default_rng(7)
    words = rng.integers(0, 1 << 16, size=5000)
    model.reset()
    model.set("k", -3)
    st = model.stream(words, gap_prob=gap_prob, seed=11)
    model.tick()
    assert st.words == words.size
    assert model.get("count") == words.size
    assert model.get("total") == int(words.sum()) - 3 * words.size
    # ready is low one cycle in four whatever the source does: the sink stalled it
    assert st.held > 0
    assert st.cycles == st.words + st.held + st.gaps
    if gap_prob:
        # geometric: gap_prob / (1 - gap_prob) idle cycles per word
        assert 0.55 < st.gaps / words.size < 0.8
    else:
        assert st.gaps == 0
    wide = model.get("wide")
    assert wide == (int(words.sum()) - 3 * words.size) | (words.size << 48) | (0xFD << 80)


def test_gap_pattern_is_reproducible(model):
    words = np.arange(200)
    model.reset()
    a = model.stream(words, gap_prob=0.5, seed=3)
    model.reset()
    b = model.stream(words, gap_prob=0.5, seed=3)
    model.reset()
    c = model.stream(words, gap_prob=0.5, seed=4)
    assert a == b and a != c


def test_memory_port_roundtrip_signed(model):
    vals = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 12345, -777] + list(range(10)))
    model.write_seq("addr", "wdata", "we", vals)
    got = model.read_seq("addr", "rdata", vals.size, latency=1, signed=True)
    np.testing.assert_array_equal(got, vals)
    # latency 0 reads the previous address's word on this synchronous port: a wrong latency
    # must show up as a mismatch
    model.set("addr", 0)
    model.tick()
    wrong = model.read_seq("addr", "rdata", vals.size, latency=0, signed=True)
    assert not np.array_equal(wrong, vals)


def test_set_get_tick_wait(model):
    model.reset()
    model.set("i_stream__valid", 0)
    model.set("k", 0)
    before = model.cycles
    model.tick(5)
    assert model.cycles == before + 5
    assert model.get("count") == 0
    # ready has a period of four cycles
    n = model.wait("i_stream__ready", 0, max_cycles=8)
    assert 0 <= n < 4
    with pytest.raises(TimeoutError):
        model.wait("count", 1, max_cycles=10)
    with pytest.raises(ValueError, match="is an output"):
        model.set("count", 1)
    with pytest.raises(KeyError, match="no port"):
        model.get("nope")


def test_build_is_cached(model):
    v = V.to_verilog(StreamAcc(), "stream_acc")
    assert V.build(v, "stream_acc") == model.path
    assert (model.path / "libzm.so").exists()


def test_a_cached_library_is_loaded_only_with_its_recorded_hash(model):
    """Issue 11 case 8: a library changed after its build (or one left there by anyone else,
    without the hash recorded at build) is built again, never loaded."""
    v = V.to_verilog(StreamAcc(), "stream_acc")
    lib = model.path / "libzm.so"
    good = lib.read_bytes()
    assert (model.path / "libzm.so.sha256").read_text().strip() == V._digest(lib)
    with open(lib, "ab") as f:
        f.write(b"planted")
    assert not V._trusted(model.path)
    assert V.build(v, "stream_acc") == model.path       # rebuilt in place
    assert V._trusted(model.path) and lib.read_bytes() != good + b"planted"
    record = model.path / "libzm.so.sha256"
    saved = record.read_text()
    record.unlink()                                     # a library without its record
    assert not V._trusted(model.path)
    record.write_text(saved)
    lib.chmod(0o777)                                    # writable by anyone
    assert not V._trusted(model.path)
    lib.chmod(0o755)


def test_an_installed_package_caches_in_the_users_folder(monkeypatch, tmp_path):
    """Outside a checkout the cache is the user's ($XDG_CACHE_HOME/zipml), not ./build."""
    monkeypatch.delenv("ZIPML_BUILD_DIR", raising=False)
    monkeypatch.setattr(V, "_HERE", tmp_path / "site-packages" / "zipml" / "sim")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert V.build_root() == (tmp_path / "cache" / "zipml").resolve()


MESSAGE = [0x55, 0x00, 0xFF, 0x7E, 0x12, 0x7E]


class UartTx(wiring.Component):
    """Sends MESSAGE as UART 8N1 (``div`` clocks per bit) once ``go`` has been seen high,
    with a one-bit idle gap after the fourth byte."""

    def __init__(self, div=4):
        self.div = div
        super().__init__({"go": In(1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        from amaranth import Array, Const
        m = Module()
        rom = Array(Const(b, 8) for b in MESSAGE)
        idx = Signal(range(len(MESSAGE) + 1))
        bit = Signal(range(12))           # 0 start, 1..8 data, 9 stop, 10 gap
        cnt = Signal(range(self.div))
        busy = Signal()
        with m.If(self.go & ~busy & (idx == 0)):
            m.d.sync += [busy.eq(1), bit.eq(0), cnt.eq(0)]
        with m.If(busy):
            byte = rom[idx]
            with m.Switch(bit):
                with m.Case(0):
                    m.d.comb += self.tx.eq(0)
                for i in range(8):
                    with m.Case(i + 1):
                        m.d.comb += self.tx.eq(byte.bit_select(i, 1))
                with m.Default():
                    m.d.comb += self.tx.eq(1)
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == self.div - 1):
                m.d.sync += cnt.eq(0)
                last_bit = Signal(4)
                m.d.comb += last_bit.eq(Mux(idx == 3, 10, 9))
                with m.If(bit == last_bit):
                    m.d.sync += [bit.eq(0), idx.eq(idx + 1)]
                    with m.If(idx == len(MESSAGE) - 1):
                        m.d.sync += busy.eq(0)
                with m.Else():
                    m.d.sync += bit.eq(bit + 1)
        with m.Else():
            m.d.comb += self.tx.eq(1)
        return m


def test_play_and_uart_read():
    with V.Model(UartTx(div=4), "uart_tx_probe") as m:
        m.reset()
        assert m.uart_read("tx", 4, first_timeout=50) == b""        # silent before go
        m.play("go", [0, 1, 0], [3, 1, 1])
        first = m.uart_read("tx", 4, stop_byte=0x7E, first_timeout=100)
        assert list(first) == MESSAGE[:4]
        rest = m.uart_read("tx", 4, stop_byte=0x7E, first_timeout=100)
        assert list(rest) == MESSAGE[4:]
        assert m.uart_read("tx", 4, first_timeout=200) == b""
    # sampling at the wrong rate must not pass as the message
    with V.Model(UartTx(div=4), "uart_tx_probe") as m:
        m.reset()
        m.play("go", [1, 0], [1, 1])
        try:
            got = m.uart_read("tx", 6, first_timeout=100)
        except ValueError:
            got = None
        assert got is None or list(got) != MESSAGE
