"""The board system's responder: sends a command's response frame body to the frame sender.

The command unit (`zipml.hw.command.CommandUnit`) waits in its ANSWER state while the responder
sends the body (header, status, data) through a byte register to
`zipml.hw.frame.FrameSender`, each byte prepared a clock ahead (docs/link.md, "The board system
in gateware").
"""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .frame import FrameInfo, SendByte
from .onehot import OneHotFSM

__all__ = ["Responder"]


class Responder(wiring.Component):
    """A one-hot state machine that sends the response body: header, status, data.

    Parameters
    ----------
    max_payload : int
        Largest frame payload in bytes.
    model_latency : int
        The engine's ``MODEL_READ_LATENCY``: clocks from a model address to its word.

    Ports
    -----
    o_stream : Out(stream.Signature(SendByte))
        Body bytes to the frame sender, from a register: nothing combinational crosses from
        the command unit into the sender and the UART. A byte is loaded only while the
        register is empty, 2 clocks a byte at most, still far above the UART's rate.
    answer : In(1)
        The command unit is in ANSWER: send the body once.
    done : Out(1)
        The body is sent and the sender has taken its last byte (comb from flip-flops): the
        command unit releases the frame; ``done`` drops the clock after, with ``answer``.
    header : In(FrameInfo)
        The received frame's header (seq, cmd, ok), held while its command is answered.
    resp_status : In(8), resp_len : In(range(max_payload + 1)), has_data : In(1)
        The status byte, the response payload length (status + data) and whether data
        follows the status, set before ``answer``.
    read_model : In(1)
        The command is READ_MODEL: the data are ``count`` model words, read at the command
        unit's model address; otherwise one word, ``reg_rdata``.
    prepare : In(1)
        Strobe (JUDGE): take ``reg_rdata`` and ``count`` for the answer.
    reg_rdata : In(32)
        The register read (`zipml.hw.registers.RegisterFile`).
    count : In(range((max_payload - 1) // 4 + 1))
        READ_MODEL's word count.
    model_rdata : In(32)
        The engine's model port, ``model_latency`` clocks after an address.
    model_next : Out(1)
        Strobe (comb): a model word is taken, the command unit moves the model address on.

    Throughput: a body byte every 2 clocks at most (the frame sender and the UART are
    slower); a model word waits ``model_latency`` clocks after the previous one is sent.
    """

    def __init__(self, max_payload, model_latency):
        self.max_payload, self.model_latency = max_payload, model_latency
        self.max_count = (max_payload - 1) // 4     # model words in one response
        super().__init__({
            "o_stream": Out(stream.Signature(SendByte)),
            "answer": In(1), "done": Out(1),
            "header": In(FrameInfo),
            "resp_status": In(8), "resp_len": In(range(max_payload + 1)), "has_data": In(1),
            "read_model": In(1), "prepare": In(1), "reg_rdata": In(32),
            "count": In(range(self.max_count + 1)),
            "model_rdata": In(32), "model_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        info, resp_len, has_data = self.header, self.resp_len, self.has_data
        rdata32 = Signal(32)
        k = Signal(3)               # header byte being sent, then byte within rdata32
        words_left = Signal(range(self.max_count + 1))
        last_word = Signal()        # words_left == 1
        mwait = Signal(range(self.model_latency + 1))
        resp_done = Signal()

        tx = self.o_stream
        tx_valid = Signal()
        tx_data = Signal(8)
        tx_last = Signal()
        m.d.comb += [tx.valid.eq(tx_valid), tx.payload.data.eq(tx_data),
                     tx.payload.last.eq(tx_last)]
        with m.If(tx.ready):
            m.d.sync += tx_valid.eq(0)

        def send(byte, last):
            m.d.sync += [tx_valid.eq(1), tx_data.eq(byte), tx_last.eq(last)]

        # The answer (data only for a read that passes) is set up in JUDGE, whether the
        # command passes or not.
        read_model = self.read_model
        with m.If(self.prepare):
            m.d.sync += [
                rdata32.eq(self.reg_rdata),
                words_left.eq(Mux(read_model, self.count, 1)),
                last_word.eq(Mux(read_model, self.count == 1, 1)),
            ]

        resp = OneHotFSM(m, ["IDLE", "HEADER", "MODEL_READ", "DATA"], "resp")
        # The byte to send is worked out a clock ahead into `next_byte`; `next_ok` says it is
        # for the present k, state and data (any of them changing clears it for a clock).
        hdr = Signal(8)
        with m.Switch(k):
            with m.Case(0):
                m.d.comb += hdr.eq(info.seq)
            with m.Case(1):
                m.d.comb += hdr.eq(Mux(info.ok, info.cmd | P.ACK, P.Command.NAK | P.ACK))
            with m.Case(2):
                m.d.comb += hdr.eq(resp_len[:8])
            with m.Case(3):
                m.d.comb += hdr.eq(resp_len[8:])
            with m.Default():
                m.d.comb += hdr.eq(self.resp_status)
        next_byte = Signal(8)
        next_ok = Signal()
        m.d.sync += [next_byte.eq(Mux(resp["DATA"], rdata32.word_select(k[:2], 8), hdr)),
                     next_ok.eq(resp["HEADER"] | resp["DATA"])]
        can_send = ~tx_valid & next_ok

        def resp_send(last):
            send(next_byte, last)
            m.d.sync += [k.eq(k + 1), next_ok.eq(0)]

        def resp_goto(state):
            m.d.sync += next_ok.eq(0)
            resp.next(state)

        with resp.state("IDLE"):
            with m.If(self.answer & ~resp_done):
                m.d.sync += k.eq(0)
                resp_goto("HEADER")
        with resp.state("HEADER"):
            with m.If(can_send):
                resp_send((k == 4) & ~has_data)
                with m.If(k == 4):
                    m.d.sync += k.eq(0)
                    with m.If(~has_data):
                        m.d.sync += resp_done.eq(1)
                        resp_goto("IDLE")
                    with m.Elif(read_model):
                        m.d.sync += mwait.eq(self.model_latency)
                        resp_goto("MODEL_READ")
                    with m.Else():
                        resp_goto("DATA")
        with resp.state("MODEL_READ"):
            with m.If(mwait != 0):
                m.d.sync += mwait.eq(mwait - 1)
            with m.Else():
                m.d.sync += rdata32.eq(self.model_rdata)
                m.d.comb += self.model_next.eq(1)
                resp_goto("DATA")
        with resp.state("DATA"):
            with m.If(can_send):
                resp_send((k[:2] == 3) & last_word)
                with m.If(k[:2] == 3):
                    m.d.sync += [k.eq(0), words_left.eq(words_left - 1),
                                 last_word.eq(words_left == 2)]
                    with m.If(last_word):
                        m.d.sync += resp_done.eq(1)
                        resp_goto("IDLE")
                    with m.Else():
                        m.d.sync += mwait.eq(self.model_latency)
                        resp_goto("MODEL_READ")

        # The frame is released once the responder is done and the sender has taken the last
        # body byte, as when the command unit handed it bytes directly: a frame sent before
        # the answer (against stop-and-wait) loses as many bytes as it always did.
        m.d.comb += self.done.eq(resp_done & ~tx_valid)
        with m.If(self.answer & self.done):
            m.d.sync += resp_done.eq(0)
        return m
