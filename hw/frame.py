"""Frame layer in gateware: receive (unstuff, buffer, check) and send (stuff, append CRC).

The format is `zipml.hw.protocol`'s, the one both sides import. A received frame is buffered
whole and handed on only after its length and CRC are checked, so a corrupted command is never
acted on, not even in part: a STREAM frame with a flipped bit pushes no word into the engine.
"""

from amaranth.hdl import Module, Signal, Const, Mux, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P

__all__ = ["FrameInfo", "SendByte", "crc16_byte", "FrameReceiver", "FrameSender"]


FrameInfo = data.StructLayout({
    "ok": 1,          # length, escape and CRC good: the frame may be acted on
    "seq": 8,
    "cmd": 8,
    "length": 16,     # payload bytes (the header's len field)
})

SendByte = data.StructLayout({
    "data": 8,
    "last": 1,        # last byte of the body (before the CRC)
})


def _crc16_terms():
    """For each bit of the next CRC register: the set of (crc bit, data bit) inputs it XORs.

    The CRC step is linear over GF(2), so the 8 serial steps fold into one XOR per output bit;
    worked out here on index sets, once, at elaboration (a naive unrolled expression would
    reference the register twice per step and grow as 2^8).
    """
    c = [frozenset({("c", i)}) for i in range(16)]
    for i in range(8):
        fb = c[15] ^ frozenset({("d", 7 - i)})
        c = [fb] + c[:15]
        for tap in (5, 12):            # 0x1021 = x^12 + x^5 + 1 (bit 0 is the feedback itself)
            c[tap] = c[tap] ^ fb
    return c


_CRC16_TERMS = _crc16_terms()


def crc16_byte(crc, byte):
    """Expression: CRC-16/CCITT-FALSE register `crc` after shifting in `byte`, MSB first.

    One XOR of a few inputs per bit (`_crc16_terms`): one byte per clock.
    """
    bits = []
    for terms in _CRC16_TERMS:
        x = Const(0, 1)
        for kind, i in sorted(terms):
            x = x ^ (crc[i] if kind == "c" else byte[i])
        bits.append(x)
    return Cat(*bits)


class FrameReceiver(wiring.Component):
    """Unstuff, buffer and check frames from a byte stream.

    Parameters
    ----------
    max_payload : int
        Largest payload in bytes; longer frames are reported bad (``ok = 0``).

    Ports
    -----
    i_stream : In(stream.Signature(8))
        Wire bytes from the UART. ``ready`` is low while a frame waits on ``o_frame``: those
        bytes are lost (the UART counts them as overruns) and the frame they belong to fails its
        CRC. With the host's stop-and-wait protocol nothing arrives then.
    o_frame : Out(stream.Signature(FrameInfo))
        One transfer per frame (good or bad), at the closing FLAG. While ``valid`` is high the
        payload buffer is frozen and readable.
    rd_addr : In(range(max_payload + 2))
    rd_data : Out(8)
        Payload byte ``rd_addr``, one clock after the address (synchronous read).

    Latency: ``o_frame.valid`` rises one clock after the closing FLAG is accepted.
    Empty frames (two FLAGs in a row) are idle fill, not frames.
    """

    def __init__(self, max_payload=P.MAX_PAYLOAD):
        self.max_payload = max_payload
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_frame": Out(stream.Signature(FrameInfo)),
            "rd_addr": In(range(max_payload + P.CRC_BYTES)),
            "rd_data": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.max_payload + P.CRC_BYTES
        m.submodules.buf = buf = Memory(shape=8, depth=depth, init=[])
        wp = buf.write_port()
        rp = buf.read_port(transparent_for=(wp,))
        m.d.comb += [rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data)]

        count = Signal(range(depth + P.HEADER_BYTES + 2))   # body bytes so far, saturating
        crc = Signal(16, init=0xFFFF)
        esc = Signal()
        too_long = Signal()
        seq = Signal(8)
        cmd = Signal(8)
        length = Signal(16)
        pending = Signal()

        m.d.comb += self.i_stream.ready.eq(~pending)
        info = self.o_frame.payload
        m.d.comb += self.o_frame.valid.eq(pending)
        with m.If(self.o_frame.valid & self.o_frame.ready):
            m.d.sync += pending.eq(0)

        byte = Signal(8)
        m.d.comb += byte.eq(Mux(esc, self.i_stream.payload ^ P.ESC_XOR, self.i_stream.payload))
        with m.If(self.i_stream.valid & self.i_stream.ready):
            with m.If(self.i_stream.payload == P.FLAG):
                with m.If(count != 0):
                    m.d.sync += [
                        pending.eq(1),
                        info.seq.eq(seq), info.cmd.eq(cmd), info.length.eq(length),
                        info.ok.eq(~esc & ~too_long & (crc == 0)
                                   & (count == length + P.HEADER_BYTES + P.CRC_BYTES)),
                    ]
                m.d.sync += [count.eq(0), crc.eq(0xFFFF), esc.eq(0), too_long.eq(0)]
            with m.Elif((self.i_stream.payload == P.ESC) & ~esc):
                m.d.sync += esc.eq(1)
            with m.Else():
                m.d.sync += [esc.eq(0), crc.eq(crc16_byte(crc, byte))]
                with m.If(count < depth + P.HEADER_BYTES + 1):  # saturate; too_long is set by then
                    m.d.sync += count.eq(count + 1)
                with m.Switch(count):
                    with m.Case(0):
                        m.d.sync += seq.eq(byte)
                    with m.Case(1):
                        m.d.sync += cmd.eq(byte)
                    with m.Case(2):
                        m.d.sync += length[:8].eq(byte)
                    with m.Case(3):
                        m.d.sync += length[8:].eq(byte)
                    with m.Default():
                        with m.If(count < depth + P.HEADER_BYTES):
                            m.d.comb += [wp.addr.eq(count - P.HEADER_BYTES), wp.data.eq(byte),
                                         wp.en.eq(1)]
                        with m.Else():
                            m.d.sync += too_long.eq(1)
        return m


class FrameSender(wiring.Component):
    """Frame a body byte stream: FLAG, stuffed body, stuffed CRC (MSB first), FLAG.

    Ports
    -----
    i_stream : In(stream.Signature(SendByte))
        Body bytes (seq, cmd, len lo, len hi, payload); ``last`` marks the final one.
    o_stream : Out(stream.Signature(8))
        Wire bytes to the UART.

    Throughput: one wire byte per clock when ``o_stream.ready`` allows (the UART takes one per
    ``10 * divisor`` clocks).
    """

    def __init__(self):
        super().__init__({
            "i_stream": In(stream.Signature(SendByte)),
            "o_stream": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(16, init=0xFFFF)
        i, o = self.i_stream, self.o_stream

        def special(b):
            return (b == P.FLAG) | (b == P.ESC)

        def emit_crc_byte(b, state, esc_state, next_state):
            with m.State(state):
                m.d.comb += o.valid.eq(1)
                with m.If(special(b)):
                    m.d.comb += o.payload.eq(P.ESC)
                    with m.If(o.ready):
                        m.next = esc_state
                with m.Else():
                    m.d.comb += o.payload.eq(b)
                    with m.If(o.ready):
                        m.next = next_state
            with m.State(esc_state):
                m.d.comb += [o.valid.eq(1), o.payload.eq(b ^ P.ESC_XOR)]
                with m.If(o.ready):
                    m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += o.payload.eq(P.FLAG)
                with m.If(i.valid):
                    m.d.comb += o.valid.eq(1)
                    with m.If(o.ready):
                        m.d.sync += crc.eq(0xFFFF)
                        m.next = "BODY"
            with m.State("BODY"):
                b = i.payload.data
                m.d.comb += o.valid.eq(i.valid)
                with m.If(special(b)):
                    m.d.comb += o.payload.eq(P.ESC)
                    with m.If(i.valid & o.ready):
                        m.next = "BODY_ESC"
                with m.Else():
                    m.d.comb += [o.payload.eq(b), i.ready.eq(o.ready)]
                    with m.If(i.valid & o.ready):
                        m.d.sync += crc.eq(crc16_byte(crc, b))
                        with m.If(i.payload.last):
                            m.next = "CRC_HI"
            with m.State("BODY_ESC"):
                b = i.payload.data
                m.d.comb += [o.valid.eq(1), o.payload.eq(b ^ P.ESC_XOR), i.ready.eq(o.ready)]
                with m.If(o.ready):
                    m.d.sync += crc.eq(crc16_byte(crc, b))
                    with m.If(i.payload.last):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "BODY"
            emit_crc_byte(crc[8:], "CRC_HI", "CRC_HI_ESC", "CRC_LO")
            emit_crc_byte(crc[:8], "CRC_LO", "CRC_LO_ESC", "END")
            with m.State("END"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(P.FLAG)]
                with m.If(o.ready):
                    m.next = "IDLE"
        return m
