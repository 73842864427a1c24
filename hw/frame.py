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
from .onehot import OneHotFSM

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
        CRC. With the host's stop-and-wait protocol nothing arrives then. ``ready`` is also low
        the clock after a FLAG is taken (the UART's bytes are ``10 * divisor`` clocks apart).
    o_frame : Out(stream.Signature(FrameInfo))
        One transfer per frame (good or bad), at the closing FLAG. While ``valid`` is high the
        payload (the header's fields) and the payload buffer are frozen and readable. A good
        frame's ``length`` is at most ``max_payload``.
    rd_addr : In(range(max_payload + 2))
    rd_data : Out(8)
        Payload byte ``rd_addr``, one clock after the address (synchronous read).

    Latency: ``o_frame.valid`` rises two clocks after the closing FLAG is accepted (an input
    register, then the check).
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
        rp = buf.read_port()     # read only while a frame is pending, when nothing is written
        m.d.comb += [rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data)]

        count = Signal(range(depth + P.HEADER_BYTES + 2))   # body bytes so far, saturating
        some = Signal()             # count != 0
        crc = Signal(16, init=0xFFFF)
        esc = Signal()
        too_long = Signal()
        seq = Signal(8)
        cmd = Signal(8)
        length = Signal(16)
        ok = Signal()
        pending = Signal()

        # Input register: a taken byte and its class, handled the next clock. A byte behind a
        # FLAG is not taken until the FLAG has been handled (it may make the frame pending).
        in_valid = Signal()
        in_byte = Signal(8)
        in_flag = Signal()
        in_esc = Signal()
        m.d.comb += self.i_stream.ready.eq(~pending & ~(in_valid & in_flag))
        m.d.sync += in_valid.eq(self.i_stream.valid & self.i_stream.ready)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [in_byte.eq(self.i_stream.payload),
                         in_flag.eq(self.i_stream.payload == P.FLAG),
                         in_esc.eq(self.i_stream.payload == P.ESC)]

        # The header registers are the frame's info: nothing is received while it is pending.
        info = self.o_frame.payload
        m.d.comb += [self.o_frame.valid.eq(pending),
                     info.seq.eq(seq), info.cmd.eq(cmd), info.length.eq(length), info.ok.eq(ok)]
        with m.If(self.o_frame.valid & self.o_frame.ready):
            m.d.sync += pending.eq(0)

        # A good frame has count == length + HEADER_BYTES + CRC_BYTES <= depth + HEADER_BYTES,
        # so only the length bits below that bound take part. The expected count is worked
        # out a clock after the length arrives; a good frame's CRC bytes come later still.
        lbits = (depth - P.CRC_BYTES).bit_length()
        length_fits = Signal()
        expect = Signal(lbits + 1)
        m.d.sync += [length_fits.eq((length[lbits:] == 0) if lbits < len(length) else 1),
                     expect.eq(length[:lbits] + P.HEADER_BYTES + P.CRC_BYTES)]
        byte = Signal(8)
        m.d.comb += byte.eq(Mux(esc, in_byte ^ P.ESC_XOR, in_byte))
        with m.If(in_valid):
            with m.If(in_flag):
                with m.If(some):
                    m.d.sync += [
                        pending.eq(1),
                        ok.eq(~esc & ~too_long & (crc == 0) & length_fits & (count == expect)),
                    ]
                m.d.sync += [count.eq(0), some.eq(0), crc.eq(0xFFFF), esc.eq(0),
                             too_long.eq(0)]
            with m.Elif(in_esc & ~esc):
                m.d.sync += esc.eq(1)
            with m.Else():
                m.d.sync += [esc.eq(0), some.eq(1), crc.eq(crc16_byte(crc, byte))]
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
        Body bytes (seq, cmd, len lo, len hi, payload); ``last`` marks the final one. A byte is
        taken when its last wire byte (itself, or ``byte ^ ESC_XOR`` after ESC) goes out, at
        the earliest the clock after it is offered.
    o_stream : Out(stream.Signature(8))
        Wire bytes to the UART, from a register.

    Throughput: one wire byte per clock into the output register while the UART takes them
    (the UART takes one per ``10 * divisor`` clocks). Paths from ``i_stream`` and
    ``o_stream.ready`` end in this block's registers after a few gates.
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

        # The wire byte register; loaded only while empty.
        o_valid = Signal()
        o_byte = Signal(8)
        m.d.comb += [o.valid.eq(o_valid), o.payload.eq(o_byte)]
        with m.If(o.ready):
            m.d.sync += o_valid.eq(0)

        def emit(byte):
            m.d.sync += [o_valid.eq(1), o_byte.eq(byte)]

        def is_special(byte):
            return (byte == P.FLAG) | (byte == P.ESC)

        # The byte due (a body byte or a CRC byte, by state) is classified the clock after it
        # appears, and sent from then on: every decision below starts at a flip-flop.
        src = Signal(8)
        have = Signal()             # src is a byte to send
        known = Signal()            # `special` is src's class
        special = Signal()
        esc_sent = Signal()         # ESC is out; src ^ ESC_XOR follows
        sent = Signal()             # src's last wire byte is emitted this clock
        with m.If(have & ~known):
            m.d.sync += [known.eq(1), special.eq(is_special(src))]
        with m.If(have & known & ~o_valid):
            with m.If(special & ~esc_sent):
                emit(P.ESC)
                m.d.sync += esc_sent.eq(1)
            with m.Else():
                emit(Mux(esc_sent, src ^ P.ESC_XOR, src))
                m.d.sync += [esc_sent.eq(0), known.eq(0)]
                m.d.comb += sent.eq(1)

        fsm = OneHotFSM(m, ["IDLE", "BODY", "CRC_HI", "CRC_LO", "END"], "send")
        with fsm.state("IDLE"):
            with m.If(i.valid & ~o_valid):
                emit(P.FLAG)
                m.d.sync += crc.eq(0xFFFF)
                fsm.next("BODY")
        with fsm.state("BODY"):
            m.d.comb += [src.eq(i.payload.data), have.eq(i.valid), i.ready.eq(sent)]
            with m.If(sent):
                m.d.sync += crc.eq(crc16_byte(crc, i.payload.data))
                with m.If(i.payload.last):
                    fsm.next("CRC_HI")
        with fsm.state("CRC_HI"):
            m.d.comb += [src.eq(crc[8:]), have.eq(1)]
            with m.If(sent):
                fsm.next("CRC_LO")
        with fsm.state("CRC_LO"):
            m.d.comb += [src.eq(crc[:8]), have.eq(1)]
            with m.If(sent):
                fsm.next("END")
        with fsm.state("END"):
            with m.If(~o_valid):
                emit(P.FLAG)
                fsm.next("IDLE")
        return m
