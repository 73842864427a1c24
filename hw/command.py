"""The board system's command unit: takes a received frame, reads its payload and acts on it.

A one-hot state machine (`zipml.hw.onehot.OneHotFSM`) over the frame that
`zipml.hw.frame.FrameReceiver` holds: IDLE -> ARGS -> EVAL -> (WRITE_REG -> WRITE_CTRL |
WORD_BYTES <-> WORD_DONE) -> ANSWER. The evaluator (`zipml.hw.evaluate.Evaluator`) judges the
command in EVAL, the register file (`zipml.hw.registers.RegisterFile`) is written from
WRITE_REG, and the responder (`zipml.hw.responder.Responder`) answers in ANSWER (docs/link.md,
"The board system in gateware").
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .frame import FrameInfo
from .onehot import OneHotFSM

__all__ = ["CommandUnit", "CommandFlags", "any_command", "arguments"]

#: one flag per command code (`zipml.hw.protocol.Command` but NAK): the received command,
#: decoded once into flip-flops
CommandFlags = data.StructLayout({c.name.lower(): 1 for c in P.Command if c is not P.Command.NAK})


def any_command(flags, *cmds):
    """The command (`CommandFlags` ``flags``) is one of ``cmds``."""
    return Cat(*(flags[c.name.lower()] for c in cmds)).any()


def arguments(W):
    """The layout of the command unit's argument register: the first five payload bytes
    (little endian) while a command is judged, then the word being assembled (STREAM, STORE:
    W bits; WRITE_MODEL: 32), in the same flip-flops."""
    return data.UnionLayout({
        "reg": data.StructLayout({"addr": 8, "value": 32}),         # READ_REG, WRITE_REG
        "model": data.StructLayout({"base": 16, "count": 16}),      # READ_MODEL, WRITE_MODEL
        "epochs": 16,                                               # REPLAY
        "word": max(W, 32),
    })


class CommandUnit(wiring.Component):
    """The command state machine: payload reading, the command's effects, the frame's release.

    Parameters
    ----------
    W : int
        Stream word width.
    D_MAX : int
        Model words (the engine's).
    max_payload : int
        Largest frame payload in bytes.

    Ports
    -----
    frame : In(stream.Signature(FrameInfo))
        The received frame's header; its payload stays in the receiver's buffer until the
        command unit releases the frame (``ready``, once the answer is sent).
    rd_addr : Out(range(max_payload + 1)), rd_data : In(8)
        The receive buffer's read port (synchronous).
    is_cmd : Out(CommandFlags)
        The command, registered as the frame is taken.
    args : Out(arguments(W))
        The argument register (`arguments`); held until the next command.
    last_seq : Out(9)
        The seq of the last executed effect command; bit 8 set: none yet (or PING since).
    frame_ok, frame_bad : Out(1)
        Strobes (comb): a good frame is taken, a bad one (answered with NAK).
    evaluate : Out(1)
        Strobe (comb): the arguments are read; the evaluator's CHECK is the next clock.
    judge, decode, fail : In(1)
        The evaluator's JUDGE and DECODE steps and its verdict (at DECODE).
    write : Out(1)
        The WRITE_REG state: the register file writes the addressed register.
    write_ctrl : Out(1)
        The WRITE_CTRL state (a ctrl write's second clock).
    sel_ctrl : In(1)
        The addressed register is ctrl (the register file's select flip-flop).
    replay_start : Out(1)
        A registered pulse: REPLAY passed.
    o_stream : Out(stream.Signature(W))
        STREAM words for the engine, from registers; ``ready`` from the skid buffer (a
        flip-flop).
    store_wr : Out(1)
        A registered request: write the STORE word in ``args.word`` at ``store_wptr``.
    model_addr : Out(range(D_MAX))
        The engine's model address (READ_MODEL, WRITE_MODEL).
    model_we : Out(1)
        Write ``args.word`` at ``model_addr`` (comb).
    model_next : In(1)
        The responder took a model word: the address moves on.
    answer : Out(1)
        The ANSWER state: the responder sends the answer.
    answered : In(1)
        The responder is done: release the frame.

    Throughput: one payload byte per 3 clocks (far faster than the UART); a command takes
    ~10 clocks more than its payload to judge.
    """

    def __init__(self, W, D_MAX, max_payload):
        self.W, self.D_MAX, self.max_payload = W, D_MAX, max_payload
        super().__init__({
            "frame": In(stream.Signature(FrameInfo)),
            "rd_addr": Out(range(max_payload + 1)), "rd_data": In(8),
            "is_cmd": Out(CommandFlags), "args": Out(arguments(W)),
            "last_seq": Out(9, init=0x100),
            "frame_ok": Out(1), "frame_bad": Out(1),
            "evaluate": Out(1), "judge": In(1), "decode": In(1), "fail": In(1),
            "write": Out(1), "write_ctrl": Out(1), "sel_ctrl": In(1),
            "replay_start": Out(1),
            "o_stream": Out(stream.Signature(W)),
            "store_wr": Out(1),
            "model_addr": Out(range(D_MAX)), "model_we": Out(1), "model_next": In(1),
            "answer": Out(1), "answered": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.W
        wbytes = W // 8
        C = P.Command
        is_cmd = {c: self.is_cmd[c.name.lower()] for c in C if c is not C.NAK}
        # The frame's header stays in `info`, and its payload in the receive buffer, until the
        # command unit releases the frame.
        info = self.frame.payload
        length = Signal(range(self.max_payload + 1))
        m.d.comb += length.eq(info.length)      # a good frame's length is <= max_payload
        last_seq = self.last_seq

        # Payload bytes are read in three clocks each: A presents idx to the buffer (whose read
        # port is synchronous) unless at_end, B takes the byte and advances idx, C lets at_end
        # catch up (a registered compare of idx), so no decision waits on a compare.
        idx = Signal(range(self.max_payload + 1))   # payload byte index
        phase = Signal(range(3))
        PH_A, PH_B, PH_C = 0, 1, 2
        at_end = Signal()           # idx == length (one clock behind idx)
        at_five = Signal()          # idx == 5 (one clock behind idx)
        m.d.sync += [at_end.eq(idx == length), at_five.eq(idx == 5)]
        m.d.comb += self.rd_addr.eq(idx)

        arg = self.args.as_value()
        acc = self.args.word
        nb = Signal(range(max(wbytes, 5)))  # byte lane of arg: argument byte, then word byte
        maddr = self.model_addr

        push_valid = self.o_stream.valid    # registered: acc holds a STREAM word for the engine
        m.d.comb += self.o_stream.payload.eq(acc[:W])
        # Store port: the command unit writes (STORE) only while replay is not busy; the write
        # is a registered request, the clock after the word is complete (acc holds still then).
        store_wr = self.store_wr
        m.d.sync += store_wr.eq(0)
        replay_start = self.replay_start    # registered pulse from DECODE
        m.d.sync += replay_start.eq(0)

        # What the command does if it passes is set up in JUDGE whether it passes or not: only
        # the states DECODE goes to use it.
        with m.If(self.judge):
            m.d.sync += [maddr.eq(self.args.model.base),
                         idx.eq(Mux(is_cmd[C.WRITE_MODEL], 2, 0)), phase.eq(PH_C), nb.eq(0)]
        with m.If(self.model_next):
            m.d.sync += maddr.eq(maddr + 1)

        def respond():
            """Send the answer JUDGE (or IDLE, for a bad frame) prepared."""
            cmd.next("ANSWER")

        def read_payload(on_byte, on_end):
            """One step of reading payload byte idx (PH_A, PH_B, PH_C above)."""
            with m.Switch(phase):
                with m.Case(PH_A):
                    with m.If(at_end):
                        on_end()
                    with m.Else():
                        m.d.sync += phase.eq(PH_B)
                with m.Case(PH_B):
                    on_byte(self.rd_data)
                    m.d.sync += [idx.eq(idx + 1), phase.eq(PH_C)]
                with m.Default():
                    m.d.sync += phase.eq(PH_A)

        cmd = OneHotFSM(m, ["IDLE", "ARGS", "EVAL", "WRITE_REG", "WRITE_CTRL", "WORD_BYTES",
                            "WORD_DONE", "ANSWER"], "cmd")
        with cmd.state("IDLE"):
            with m.If(self.frame.valid):
                m.d.sync += [is_cmd[c].eq(info.cmd == c) for c in is_cmd]
                m.d.sync += [idx.eq(0), phase.eq(PH_C), nb.eq(0)]
                with m.If(info.ok):
                    m.d.comb += self.frame_ok.eq(1)
                    cmd.next("ARGS")
                with m.Else():
                    m.d.comb += self.frame_bad.eq(1)
                    cmd.next("ANSWER")

        with cmd.state("ARGS"):
            # Up to five payload bytes into `arg`.
            def arg_byte(byte):
                m.d.sync += [arg.word_select(nb, 8).eq(byte), nb.eq(nb + 1)]

            def args_done():
                m.d.comb += self.evaluate.eq(1)
                cmd.next("EVAL")
            with m.If(at_five & (phase == PH_A)):
                args_done()
            with m.Else():
                read_payload(arg_byte, args_done)

        with cmd.state("EVAL"):
            with m.If(self.decode):
                with m.If(self.fail):
                    respond()
                with m.Else():
                    # An effect command that passed JUDGE will succeed: its seq is the
                    # last executed one from here on (PING forgets it).
                    with m.If(any_command(self.is_cmd, *sorted(P.EFFECT_COMMANDS))):
                        m.d.sync += last_seq.eq(info.seq)
                    with m.If(is_cmd[C.PING]):
                        m.d.sync += last_seq.eq(0x100)
                    with m.If(any_command(self.is_cmd, C.PING, C.READ_REG, C.READ_MODEL,
                                          C.REPLAY)):
                        respond()
                    with m.If(is_cmd[C.WRITE_REG]):
                        cmd.next("WRITE_REG")
                    with m.If(any_command(self.is_cmd, C.STREAM, C.STORE, C.WRITE_MODEL)):
                        cmd.next("WORD_BYTES")
                    with m.If(is_cmd[C.REPLAY]):
                        m.d.sync += replay_start.eq(1)

        with cmd.state("WRITE_REG"):
            m.d.comb += self.write.eq(1)
            with m.If(self.sel_ctrl):
                cmd.next("WRITE_CTRL")
            with m.Else():
                respond()

        with cmd.state("WRITE_CTRL"):
            m.d.comb += self.write_ctrl.eq(1)
            respond()

        # Assemble one word (W bits for STREAM/STORE, 32 for WRITE_MODEL) from the payload.
        word_last = Mux(is_cmd[C.WRITE_MODEL], nb == 3, nb == wbytes - 1)
        with cmd.state("WORD_BYTES"):
            def word_byte(byte):
                m.d.sync += acc.word_select(nb, 8).eq(byte)
                with m.If(word_last):
                    m.d.sync += [nb.eq(0), push_valid.eq(is_cmd[C.STREAM])]
                    cmd.next("WORD_DONE")
                with m.Else():
                    m.d.sync += nb.eq(nb + 1)
            read_payload(word_byte, respond)

        with cmd.state("WORD_DONE"):
            # phase is PH_C: the next byte's read starts after this word is gone.
            with m.If(is_cmd[C.STREAM]):
                with m.If(self.o_stream.ready):
                    m.d.sync += push_valid.eq(0)
                    cmd.next("WORD_BYTES")
            with m.Elif(is_cmd[C.STORE]):
                m.d.sync += store_wr.eq(1)
                cmd.next("WORD_BYTES")
            with m.Else():
                m.d.comb += self.model_we.eq(1)
                m.d.sync += maddr.eq(maddr + 1)
                cmd.next("WORD_BYTES")

        with cmd.state("ANSWER"):
            m.d.comb += self.answer.eq(1)
            with m.If(self.answered):
                m.d.comb += self.frame.ready.eq(1)
                cmd.next("IDLE")
        return m
