"""Link layers in Amaranth's simulator: UART loopback, frame receive/send against the host codec.

Expected values come from the host side of `zipml.hw.protocol` (which uses Python's binascii CRC,
independent of the gateware's unrolled CRC) and from the published CRC-16/CCITT-FALSE check
value, never from the gateware under test.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from zipml.hw import protocol as P
from zipml.hw.frame import FrameReceiver, FrameSender
from zipml.hw.uart import UartRx, UartTx


def test_crc_check_value():
    # The catalogued check value of CRC-16/CCITT-FALSE (reveng.sourceforge.io).
    assert P.crc16(b"123456789") == 0x29B1


def test_caps_fields_and_an_unknown_architecture():
    for L2 in (False, True):
        for code, name in enumerate(P.ARCH_NAMES):
            value = P.caps_value(L2, code)
            assert bool(value & P.CAPS_L2) == L2 and value >> P.CAPS_ARCH_SHIFT == code
            assert P.decode_caps(value) == {"L2": L2, "ARCH": name, "COUNTER_BITS": 48,
                                            "STALL": True, "LINK_BITS": 16, "READBACK": True}
    # A bitstream with an architecture this host was written before: refused, named.
    late = (1 << P.CAPS_ARCH_BITS) - 1
    with pytest.raises(ValueError, match=f"architecture code {late} is unknown"):
        P.decode_caps(late << P.CAPS_ARCH_SHIFT)
    with pytest.raises(ValueError, match="architecture code"):
        P.caps_value(True, 1 << P.CAPS_ARCH_BITS)


def test_architecture_codes_are_the_engine_classes_own():
    # One list of architectures: the config's names, the link's codes, the classes' ARCH_CODE.
    from zipml.hw.soc import engine_class
    from zipml.reference.golden import ARCHS
    assert P.ARCH_NAMES == ARCHS
    for code, name in enumerate(P.ARCH_NAMES):
        assert getattr(engine_class(name), "ARCH_CODE", 0) == code


def test_counters_pair_low_and_high_words():
    for name, (lo, hi) in P.COUNTERS.items():
        assert (lo.engine, lo.part, hi.engine, hi.part) == (name, 0, name, 1)
        assert lo.access is hi.access is P.Access.RO


def test_stuff_roundtrip_and_no_flag_inside():
    rng = random.Random(1)
    for _ in range(200):
        body = bytes(rng.choice([P.FLAG, P.ESC, 0, 0x5E, 0x5D, rng.randrange(256)])
                     for _ in range(rng.randrange(0, 40)))
        wire = P.stuff(body)
        assert P.FLAG not in wire
        assert P.unstuff(wire) == body


def test_parser_skips_garbage_and_counts_bad():
    good = P.encode_frame(7, P.Command.READ_REG, b"\x09")
    bad = bytearray(P.encode_frame(8, P.Command.READ_REG, b"\x09"))
    bad[3] ^= 0x04
    parser = P.FrameParser()
    frames = parser.feed(b"\x00\x13junk" + good + bytes(bad) + good[:5])
    frames += parser.feed(good[5:])
    assert [(f.seq, f.cmd, f.payload) for f in frames] == [(7, 2, b"\x09")] * 2
    assert parser.bad == 1


def test_encode_rejects_oversize_payload():
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        P.encode_frame(0, 1, bytes(P.MAX_PAYLOAD + 1))


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_loopback_random_gaps(divisor):
    """UartTx -> line -> UartRx: every byte arrives once, in order, at any idle gap."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(24)] + [0x00, 0xFF, 0x55, 0xAA]
    got = []

    async def feed(ctx):
        for b in sent:
            for _ in range(rng.choice([0, 0, 1, 3, 17])):
                await ctx.tick()
            ctx.set(tx.i_stream.payload, b)
            ctx.set(tx.i_stream.valid, 1)
            await ctx.tick().until(tx.i_stream.ready)
            ctx.set(tx.i_stream.valid, 0)

    async def sink(ctx):
        ctx.set(rx.o_stream.ready, 1)
        while len(got) < len(sent):
            await ctx.tick().until(rx.o_stream.valid)
            got.append(ctx.get(rx.o_stream.payload))
            assert not ctx.get(rx.error)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert got == sent


def test_uart_rx_framing_error():
    """A byte whose stop bit is 0 is dropped and flagged; the next good byte still arrives."""
    div = 4
    dut = UartRx(div)
    events = []

    def bits(byte, stop):
        return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]

    async def drive(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for level in [1] * 8 + bits(0x3C, 0) + [1] * 12 + bits(0xC3, 1) + [1] * 12:
            ctx.set(dut.rx, level)
            for _ in range(div):
                await ctx.tick()
                if ctx.get(dut.error):
                    events.append("error")
                if ctx.get(dut.o_stream.valid):
                    events.append(ctx.get(dut.o_stream.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.run()
    assert events == ["error", 0xC3]


def _run_receiver(wire, gaps_seed, max_payload=P.MAX_PAYLOAD, hold=0):
    """Feed wire bytes (with random valid gaps) into a FrameReceiver; return the frames."""
    dut = FrameReceiver(max_payload)
    rng = random.Random(gaps_seed)
    frames = []
    done = []

    async def feed(ctx):
        for b in wire:
            if rng.random() < 0.3:
                for _ in range(rng.randrange(1, 4)):
                    await ctx.tick()
            ctx.set(dut.i_stream.payload, b)
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick().until(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
        for _ in range(10 + hold):
            await ctx.tick()
        done.append(1)

    async def sink(ctx):
        while not done:
            await ctx.tick()
            if ctx.get(dut.o_frame.valid):
                # The consumer takes its time (backpressure), then reads the frozen buffer.
                for _ in range(rng.randrange(0, hold + 1)):
                    await ctx.tick()
                info = ctx.get(dut.o_frame.payload)
                payload = bytearray()
                if info.ok:
                    for a in range(info.length):
                        ctx.set(dut.rd_addr, a)
                        await ctx.tick()
                        payload.append(ctx.get(dut.rd_data))
                frames.append((info.ok, info.seq, info.cmd, info.length, bytes(payload)))
                ctx.set(dut.o_frame.ready, 1)
                await ctx.tick()
                ctx.set(dut.o_frame.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(sink)
    sim.run()
    return frames


def test_receiver_good_frames_with_gaps():
    rng = random.Random(5)
    sent = []
    wire = b""
    for seq in range(6):
        payload = bytes(rng.choice([P.FLAG, P.ESC, rng.randrange(256)])
                        for _ in range(rng.randrange(0, 30)))
        sent.append((1, seq, 0x04, len(payload), payload))
        # Sometimes idle FLAG fill between frames: empty frames are not frames.
        wire += P.encode_frame(seq, 0x04, payload) + (bytes([P.FLAG]) if seq % 2 else b"")
    assert _run_receiver(wire, 11) == sent


def test_receiver_rejects_corrupted_frames():
    """Every corruption gives ok=0 (never acted on); the next good frame is intact."""
    payload = bytes(range(20))
    good = P.encode_frame(1, 0x04, payload)
    cases = []
    flipped = bytearray(good)
    flipped[9] ^= 0x10                       # a payload bit
    cases.append(bytes(flipped))
    hdr = bytearray(good)
    hdr[3] ^= 0x01                           # the length field
    cases.append(bytes(hdr))
    cases.append(good[:-4] + good[-1:])      # bytes lost (truncated before the CRC)
    # Length field honest about a payload longer than the buffer: too long.
    cases.append(P.encode_frame(2, 0x04, bytes(40)))
    wire = b"".join(cases) + good
    frames = _run_receiver(wire, 3, max_payload=32, hold=3)
    assert [f[0] for f in frames] == [0, 0, 0, 0, 1]
    assert frames[-1] == (1, 1, 0x04, 20, payload)


def test_sender_matches_host_parser():
    dut = FrameSender()
    rng = random.Random(9)
    bodies = []
    for seq in (0, 0x7E, 0x7D, 200):
        payload = bytes(rng.choice([P.FLAG, P.ESC, rng.randrange(256)]) for _ in range(rng.randrange(1, 20)))
        bodies.append((seq, P.Command.READ_MODEL | P.ACK, payload))
    wire = bytearray()
    done = []

    async def feed(ctx):
        for seq, cmd, payload in bodies:
            body = bytes([seq, cmd, len(payload) & 0xFF, len(payload) >> 8]) + payload
            for k, b in enumerate(body):
                if rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.i_stream.payload, {"data": b, "last": k == len(body) - 1})
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
                ctx.set(dut.i_stream.valid, 0)
        for _ in range(20):
            await ctx.tick()
        done.append(1)

    async def sink(ctx):
        while not done:
            ready = rng.random() < 0.6        # random backpressure from the UART
            ctx.set(dut.o_stream.ready, ready)
            await ctx.tick()
            if ready and ctx.get(dut.o_stream.valid):
                pass
        ctx.set(dut.o_stream.ready, 0)

    async def monitor(ctx):
        async for clk_edge, rst, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload):
            if valid and ready:
                wire.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_process(monitor)
    sim.add_testbench(sink)
    sim.run()
    parser = P.FrameParser()
    frames = parser.feed(bytes(wire))
    assert parser.bad == 0
    assert [(f.seq, f.cmd, f.payload) for f in frames] == bodies
    assert bytes(wire) == b"".join(P.encode_frame(*b) for b in bodies)


def _host_verdicts(wire, max_payload):
    """What the host's decoder says of every non-empty run between FLAGs: (ok, seq, cmd, len)."""
    out = []
    segments = bytes(wire).split(bytes([P.FLAG]))
    for seg in segments[1:-1]:          # runs closed by a FLAG on both sides
        if not seg:
            continue
        try:
            f = P.Frame.decode(P.unstuff(seg))
            ok = len(f.payload) <= max_payload
        except P.FrameError:
            ok = False
        out.append((1, f.seq, f.cmd, len(f.payload)) if ok else (0,))
    return out


def test_receiver_agrees_with_host_decoder_on_random_wire():
    """Differential fuzz: valid, bit-flipped, truncated, escape-mangled frames and garbage; the
    gateware accepts exactly the frames the host decoder accepts."""
    rng = random.Random(12)
    wire = bytearray([P.FLAG])
    for k in range(40):
        kind = rng.choice(["good", "good", "flip", "cut", "esc", "junk", "long"])
        payload = bytes(rng.choice([P.FLAG, P.ESC, rng.randrange(256)])
                        for _ in range(rng.randrange(0, 24)))
        f = bytearray(P.encode_frame(k, rng.randrange(256), payload)[1:])   # drop leading FLAG
        if kind == "flip":
            f[rng.randrange(len(f) - 1)] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del f[rng.randrange(len(f) - 1)]
        elif kind == "esc":
            f.insert(len(f) - 1, P.ESC)          # dangling escape before the closing FLAG
        elif kind == "junk":
            f = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 12))) + bytes([P.FLAG])
        elif kind == "long":
            f = bytearray(P.encode_frame(k, 4, bytes(40))[1:])
        wire += f
    got = _run_receiver(bytes(wire), 21, max_payload=32)
    expect = _host_verdicts(wire, 32)
    assert [g[0] for g in got] == [e[0] for e in expect]
    assert [g[:4] for g in got if g[0]] == [e for e in expect if e[0]]
    assert sum(g[0] for g in got) >= 10            # the fuzz did exercise good frames
