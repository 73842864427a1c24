"""The board system's command evaluation: a command judged in registered steps.

A command's payload arguments are read (the command unit's ARGS state,
`zipml.hw.command.CommandUnit`), then it is evaluated in four steps, one clock each: CHECK and
BOUND register every judgement of it (length, address, bounds, busy, repeat), JUDGE turns them
into the status and prepares the answer, DECODE acts (the command unit). Each step is a few
gates deep; the UART leaves time for many more clocks than that (docs/link.md, "The board
system in gateware").
"""

from amaranth.hdl import Module, Signal, Const, Mux, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .command import CommandFlags, any_command
from .onehot import one_hot_select

__all__ = ["Evaluator"]


class Evaluator(wiring.Component):
    """The steps CHECK, BOUND and JUDGE of a command, and its response's status and length.

    Parameters
    ----------
    W : int
        Stream word width (STREAM and STORE take whole words).
    D_MAX : int
        Model words.
    store_depth : int
        Sample store words.
    store_bits : int
        Width of the ``store_wptr`` and ``store_len`` registers
        (`zipml.hw.registers.RegisterFile`).
    max_payload : int
        Largest frame payload in bytes.

    Ports
    -----
    start : In(1)
        Strobe: the arguments are read; CHECK is the next clock.
    check, bound, judge, decode : Out(1)
        The steps, one-hot flip-flops: one clock each after ``start``.
    is_cmd : In(CommandFlags)
    seq : In(8), length : In(range(max_payload + 1))
        The frame's seq and payload length.
    last_seq : In(9)
        The last executed effect command's seq (bit 8: none).
    model_base, model_count : In(16)
        READ_MODEL's and WRITE_MODEL's arguments.
    store_wptr, store_len : In(store_bits)
    readable, writable : In(1)
        The register address is a register, a writable one (from CHECK).
    enable : In(1)
        The engine is enabled (ctrl).
    idle, replay_busy : In(1)
        The engine is idle and no word waits for it; a replay runs (one clock late).
    latch : Out(1)
        A READ_REG of the right length (comb, for BOUND): its read latches a counter's high
        word.
    fail : Out(1)
        From JUDGE: the command fails.
    resp_status : Out(8), resp_len : Out(range(max_payload + 1)), has_data : Out(1)
        The response's status, payload length (status + data) and whether data follow the
        status: from JUDGE, or from ``bad_frame``.
    bad_frame : In(1)
        Strobe: a bad frame is taken; its answer is BAD_FRAME with no data.

    Latency: ``fail`` and the response fields are registered at JUDGE, 3 clocks after
    ``start``.
    """

    def __init__(self, W, D_MAX, store_depth, store_bits, max_payload=P.MAX_PAYLOAD):
        self.W, self.D_MAX, self.store_depth = W, D_MAX, store_depth
        self.max_payload = max_payload
        super().__init__({
            "start": In(1),
            "check": Out(1), "bound": Out(1), "judge": Out(1), "decode": Out(1),
            "is_cmd": In(CommandFlags), "seq": In(8), "length": In(range(max_payload + 1)),
            "last_seq": In(9), "model_base": In(16), "model_count": In(16),
            "store_wptr": In(store_bits), "store_len": In(store_bits),
            "readable": In(1), "writable": In(1),
            "enable": In(1), "idle": In(1), "replay_busy": In(1),
            "latch": Out(1), "fail": Out(1),
            "resp_status": Out(8), "resp_len": Out(range(max_payload + 1)), "has_data": Out(1),
            "bad_frame": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        wbytes = self.W // 8
        log2_wbytes = wbytes.bit_length() - 1     # W is a power of two
        C, S = P.Command, P.Status
        sbits = self.store_depth.bit_length()
        is_cmd = {c: self.is_cmd[c.name.lower()] for c in C if c is not C.NAK}
        length, last_seq = self.length, self.last_seq
        model_base, model_count = self.model_base, self.model_count
        store_wptr, store_len = self.store_wptr, self.store_len
        max_count = (self.max_payload - 1) // 4     # model words in one response
        cbits = max_count.bit_length()

        step = Signal(4)
        CHECK, BOUND, JUDGE, DECODE = (step[i] for i in range(4))
        m.d.sync += step.eq(step << 1)
        with m.If(self.start):
            m.d.sync += step.eq(1)
        m.d.comb += [self.check.eq(CHECK), self.bound.eq(BOUND), self.judge.eq(JUDGE),
                     self.decode.eq(DECODE)]

        # CHECK: facts about the command, each a compare of registers.
        chk_dup = Signal()          # an effect command repeating the last seq
        chk_cmd = Signal()          # unknown command
        chk_busy = Signal()         # the engine or the replay is not in the state it needs
        busy_first = Signal()       # BUSY before BAD_ADDR (STREAM, STORE, REPLAY)
        len_is = {n: Signal(name=f"len_is_{n}") for n in (0, 1, 2, 4, 5)}
        len_words = Signal()        # whole W-bit words
        len_model = Signal()        # 4k + 2 bytes, k >= 1 (WRITE_MODEL)
        count_bad = Signal()        # READ_MODEL count 0 or above max_count
        # BOUND: the command's length and address verdicts.
        bad_len = Signal()
        bad_addr = Signal()

        def any_cmd(*cmds):
            return any_command(self.is_cmd, *cmds)

        is_effect = any_cmd(*sorted(P.EFFECT_COMMANDS))
        is_store = is_cmd[C.STORE]
        is_model = any_cmd(C.READ_MODEL, C.WRITE_MODEL)
        need_free = any_cmd(C.STREAM, C.STORE, C.REPLAY, C.READ_MODEL, C.WRITE_MODEL)
        need_enable = any_cmd(C.STREAM, C.REPLAY)

        whole_words = (length[:log2_wbytes] == 0) if log2_wbytes else Const(1, 1)
        # The range of a STORE or a model access, from the address bits of its memory (any
        # higher address bit is out of range anyway): summed in CHECK, compared in BOUND. A
        # READ_MODEL count above max_count is BAD_LEN before the bound matters, and
        # WRITE_MODEL's (length - 2) / 4 is length[2:].
        dbits = self.D_MAX.bit_length()
        store_hi = Signal()         # an address bit above the store's is set
        model_hi = Signal()         # an address bit above the model's is set
        # wide enough that the sum cannot wrap: a frame's words (max_payload / W-bytes for a
        # STORE, up to length / 4 for a model access) may exceed a small store or model
        frame_words = (self.max_payload >> log2_wbytes).bit_length()
        store_end = Signal(max(sbits, frame_words) + 1)
        model_end = Signal(max(dbits, (self.max_payload >> 2).bit_length()) + 1)
        store_over = Signal()
        model_over = Signal()
        store_len_bad = Signal()
        model_words = Mux(is_cmd[C.READ_MODEL], model_count[:cbits], length[2:])

        with m.If(CHECK):
            m.d.sync += [
                chk_dup.eq(is_effect & ~last_seq[8] & (last_seq[:8] == self.seq)),
                chk_cmd.eq(~Cat(*is_cmd.values()).any()),
                *(flag.eq(length == n) for n, flag in len_is.items()),
                len_words.eq(whole_words),
                len_model.eq((length >= 6) & (length[:2] == 2)),
                count_bad.eq((model_count == 0) | (model_count > max_count)),
                busy_first.eq(need_enable | is_store),
                chk_busy.eq((need_free & self.replay_busy) | (need_enable & ~self.enable)
                            | (is_model & ~self.idle)),
                store_hi.eq(store_wptr[sbits:] != 0),
                store_end.eq(store_wptr[:sbits] + (length >> log2_wbytes)),
                model_hi.eq(model_base[dbits:] != 0),
                model_end.eq(model_base[:dbits] + model_words),
                store_len_bad.eq((store_len == 0) | (store_len > self.store_depth)),
            ]

        with m.If(BOUND):
            m.d.sync += [
                bad_len.eq(one_hot_select([
                    (is_cmd[C.READ_REG], ~len_is[1]),
                    (is_cmd[C.WRITE_REG], ~len_is[5]),
                    (is_cmd[C.STREAM] | is_store, len_is[0] | ~len_words),
                    (is_cmd[C.REPLAY], ~len_is[2]),
                    (is_cmd[C.READ_MODEL], ~len_is[4] | count_bad),
                    (is_cmd[C.WRITE_MODEL], ~len_model),
                ])),
                bad_addr.eq(one_hot_select([(is_cmd[C.READ_REG], ~self.readable),
                                            (is_cmd[C.WRITE_REG], ~self.writable),
                                            (is_cmd[C.REPLAY], store_len_bad)])),
                store_over.eq(is_store & (store_hi | (store_end > self.store_depth))),
                model_over.eq(is_model & (model_hi | (model_end > self.D_MAX))),
            ]
        # The counter's high word is latched in the clock its low word is taken.
        m.d.comb += self.latch.eq(is_cmd[C.READ_REG] & len_is[1])

        resp_status = self.resp_status
        with m.If(JUDGE):
            # The order of the checks is the status a command with several faults gets.
            any_bad_addr = bad_addr | store_over | model_over
            failing = chk_dup | chk_cmd | bad_len | chk_busy | any_bad_addr
            m.d.sync += self.fail.eq(failing)
            with m.If(chk_dup):
                m.d.sync += resp_status.eq(S.DUPLICATE)
            with m.Elif(chk_cmd):
                m.d.sync += resp_status.eq(S.BAD_CMD)
            with m.Elif(bad_len):
                m.d.sync += resp_status.eq(S.BAD_LEN)
            with m.Elif(busy_first & chk_busy):
                m.d.sync += resp_status.eq(S.BUSY)
            with m.Elif(any_bad_addr):
                m.d.sync += resp_status.eq(S.BAD_ADDR)
            with m.Elif(chk_busy):
                m.d.sync += resp_status.eq(S.BUSY)
            with m.Else():
                m.d.sync += resp_status.eq(S.OK)
            # The answer: data only for a read that passes.
            read_model = is_cmd[C.READ_MODEL]
            with_data = ~failing & (is_cmd[C.READ_REG] | read_model)
            m.d.sync += [
                self.has_data.eq(with_data),
                self.resp_len.eq(Mux(with_data,
                                     Mux(read_model, model_count[:cbits] << 2, 4) + 1, 1)),
            ]
        with m.If(self.bad_frame):
            m.d.sync += [resp_status.eq(S.BAD_FRAME), self.resp_len.eq(1),
                         self.has_data.eq(0)]
        return m
