"""The serial engine's pass parser: headers, labels, and the items of a pass.

docs/serial_engine.md, "Schedule" and "Timing on the UP5K": the parser walks the pass as the
parallel engine does (header, labels, then per chunk its grad groups, a write-back if the pass
has grads, its dot groups) with one cursor, and issues one item at a time into the lane loop
(`zipml.hw.lane_loop.LaneLoop`).

It decides from registers only (take/issue) and acts a cycle later from the registered decision
and word (take_r/issue_r/word): the fan-out of a decision to the cursor, the lane loop and the
queues starts at a flip-flop. It takes at most a word every other cycle (the state it decides
from is updated by the action), which costs nothing at one word per W cycles.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, unsigned
from amaranth.lib import wiring, stream, enum
from amaranth.lib.wiring import In, Out

from .label_queue import LabelFifo
from .lane_loop import Kind, lane_item
from .model_mem import MW

__all__ = ["SerialParser"]


class _State(enum.Enum, shape=2):
    HEADER = 0
    LABEL = 1
    CHUNK = 2


class SerialParser(wiring.Component):
    """Pass state, the cursor (chunk k, then its grad groups, its write-back, its dot groups)
    and the take/issue decision of `zipml.hw.serial_engine.SerialEngine`.

    The cursor's flags are registered: an item takes W >= 8 cycles, so the parser decides from
    flags of the cursor as it was a cycle ago, valid when the cursor did not move in that
    cycle (``fresh``); the RAM reads at the cursor (T[s], the code buffer at its read counter)
    are current under the same condition. On the floor grid a group is q + 1 items and grad
    groups replay from the code buffer; a floor mode-0 dot group's last word (delta_grad) runs
    as a dot item with no active lane and takes the buffer address of the carry (delta_dot).

    Parameters
    ----------
    W, D_MAX, B_MAX, BUF_DEPTH : int
        The engine's.

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The engine's word stream; ``ready`` is a register (and ``enable``).
    enable, clear : In(1)
        The engine's.
    q, mode, grid : In
        Run-time registers.
    c_last : In(unsigned(bits(D_MAX)))
        ``(d - 1) >> log2 W``: the pass's last chunk.
    n_t : In(range(16))
        T values of the current set written (`zipml.hw.t_values.TValues`).
    lab_count : In(range(17))
        Labels queued (`zipml.hw.label_queue.LabelFifo`).
    exec_free, exec_free_next : In(1)
        The lane loop may take the next item (`zipml.hw.lane_loop.LaneLoop`).
    buf_word : In(W)
        The code buffer's word at ``buf_raddr`` (read latency 1).
    issue : Out(1)
        Load ``item`` into the lane loop (the registered decision).
    item : Out(lane_item(W, C_MAX))
        Comb: the item at the cursor.
    took : Out(1)
        A stream word was taken in the previous cycle (registered; acted on now).
    in_hdr : Out(1)
        Waiting for a header.
    new_t_set : Out(1)
        The first dot item of the last chunk is issued: every grad of the pass has read its T
        and no T of this pass can be written yet.
    lab_push : Out(1), label : Out(32)
        A label is complete.
    t_index : Out(4)
        The cursor's group s: the T to read (current a cycle later).
    buf_half, buf_waddr, buf_wdata, buf_wen, buf_raddr : Out
        The code buffer's half (swapped by each header), the dot words' write, the grad words'
        read counter (`zipml.hw.code_buffer.CodeBuffer`).

    Latency: a word taken in one cycle is acted on (header, label, item) in the next; an item
    is decided in one cycle (``exec_free``) and loaded at the end of the next (``issue``).
    """

    def __init__(self, W, D_MAX, B_MAX, BUF_DEPTH):
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.C_MAX = C_MAX = D_MAX // W
        self.LW = -(-MW // W)
        half = max(BUF_DEPTH // 2, 1)
        super().__init__({
            "i_stream": In(stream.Signature(W)), "enable": In(1), "clear": In(1),
            "q": In(6), "mode": In(1), "grid": In(1),
            "c_last": In(unsigned(D_MAX.bit_length())),
            "n_t": In(range(16)), "lab_count": In(range(LabelFifo.DEPTH + 1)),
            "exec_free": In(1), "exec_free_next": In(1), "buf_word": In(W),
            "issue": Out(1), "item": Out(lane_item(W, C_MAX)), "took": Out(1),
            "in_hdr": Out(1), "new_t_set": Out(1), "lab_push": Out(1), "label": Out(MW),
            "t_index": Out(4),
            "buf_half": Out(1), "buf_waddr": Out(range(half)), "buf_wdata": Out(W),
            "buf_wen": Out(1), "buf_raddr": Out(range(half)),
        })

    def elaborate(self, platform):
        m = Module()
        W, C_MAX = self.W, self.C_MAX
        c_last = Signal(range(C_MAX))                   # C - 1
        m.d.sync += c_last.eq(self.c_last)
        # the grid (docs/engine.md, "Stream layout"): the last plane index of a grad group
        # (G_q - 1) and of a dot group in the stream (one more for floor mode 0: delta_grad);
        # grad groups come from the code buffer unless symmetric mode 0
        grid = self.grid
        g_end, d_end = Signal(6), Signal(6)
        from_buf, floor0 = Signal(), Signal()
        m.d.sync += [g_end.eq(self.q - 1 + grid), d_end.eq(self.q - 1 + grid + floor0),
                     from_buf.eq(self.mode | grid), floor0.eq(grid & ~self.mode)]

        state = Signal(_State)
        n_dot, n_grad = Signal(4), Signal(4)
        phase = Signal(Kind)
        k, s, p = Signal(range(C_MAX)), Signal(4), Signal(6)
        wh = Signal()                                   # code buffer: the half this pass writes
        wcnt, rcnt = Signal.like(self.buf_waddr), Signal.like(self.buf_raddr)

        # The cursor's flags, registered (current when `fresh`)
        fresh = Signal()
        last_p, g_last_s, d_last_s = Signal(), Signal(), Signal()
        k_last, k_first, p_first, s_first = Signal(), Signal(), Signal(), Signal()
        t_ok = Signal()
        p_carry = Signal()                              # floor grid: the carry plane (p = q)
        ph_grad, ph_wb, ph_dot = (phase == Kind.GRAD), (phase == Kind.WB), (phase == Kind.DOT)
        m.d.sync += [last_p.eq(p == Mux(ph_dot, d_end, g_end)), g_last_s.eq(s == n_grad - 1),
                     d_last_s.eq(s == n_dot - 1), k_last.eq(k == c_last), k_first.eq(k == 0),
                     p_first.eq(p == 0), s_first.eq(s == 0), t_ok.eq(s < self.n_t),
                     p_carry.eq(grid & (p == self.q))]

        # decide (take/issue), act a cycle later (take_r/issue_r/word)
        take = Signal()                                 # a stream word is taken
        issue = Signal()                                # an item is decided
        ready = Signal()
        take_r, issue_r = self.took, self.issue
        word = Signal(W)
        m.d.sync += [take_r.eq(take), issue_r.eq(issue), word.eq(self.i_stream.payload)]
        can_issue = self.enable & self.exec_free & fresh
        no_word = (ph_grad & from_buf & t_ok) | ph_wb
        # `ready` is a register (and `enable`): whoever drives the stream sees no engine logic
        # behind it. It is decided a cycle ahead from what the parser's registers will be; a
        # cycle with a decision or an action in it changes them, so the next is not ready.
        ready_r = Signal()
        quiet = ~(take | issue | take_r | issue_r)
        ready_next = Signal()
        with m.Switch(state):
            with m.Case(_State.HEADER):
                m.d.comb += ready_next.eq(quiet)
            with m.Case(_State.LABEL):
                m.d.comb += ready_next.eq(quiet & (self.lab_count < LabelFifo.DEPTH - 1))
            with m.Case(_State.CHUNK):
                m.d.comb += [ready_next.eq(quiet & self.exec_free_next
                                           & ((ph_grad & ~from_buf & (s < self.n_t)) | ph_dot)),
                             issue.eq(take | (can_issue & no_word))]
        m.d.sync += ready_r.eq(ready_next)
        m.d.comb += [ready.eq(self.enable & ready_r),
                     take.eq(ready & self.i_stream.valid), self.i_stream.ready.eq(ready)]

        # header and labels (acted on the cycle after the take)
        header = take_r & (state == _State.HEADER)
        with m.If(header):
            nd, ng = word[0:4], word[4:8]
            m.d.sync += [n_dot.eq(nd), n_grad.eq(ng), k.eq(0), s.eq(0), p.eq(0),
                         phase.eq(Mux(ng != 0, Kind.GRAD, Kind.DOT)),
                         wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
            with m.If(nd != 0):
                m.d.sync += state.eq(_State.LABEL)
            with m.Elif(ng != 0):
                m.d.sync += state.eq(_State.CHUNK)
        self._labels(m, header, take_r & (state == _State.LABEL), word, n_dot, state)

        # the cursor: chunk k, then its grad groups, its write-back, its dot groups
        next_chunk = Signal()
        # floor mode 0: delta_dot (the word at p = q) is not written to the code buffer, so
        # delta_grad (p = q + 1) takes its place
        skip_w = floor0 & p_carry
        with m.If(issue_r):
            with m.Switch(phase):
                with m.Case(Kind.GRAD):
                    m.d.sync += [p.eq(Mux(last_p, 0, p + 1)), rcnt.eq(rcnt + 1)]
                    with m.If(last_p):
                        m.d.sync += s.eq(Mux(g_last_s, 0, s + 1))
                        with m.If(g_last_s):
                            m.d.sync += phase.eq(Kind.WB)
                with m.Case(Kind.WB):
                    with m.If(n_dot != 0):
                        m.d.sync += phase.eq(Kind.DOT)
                    with m.Else():
                        m.d.comb += next_chunk.eq(1)
                with m.Case(Kind.DOT):
                    m.d.sync += [p.eq(Mux(last_p, 0, p + 1)), wcnt.eq(wcnt + ~skip_w)]
                    with m.If(last_p):
                        m.d.sync += s.eq(Mux(d_last_s, 0, s + 1))
                        with m.If(d_last_s):
                            m.d.comb += next_chunk.eq(1)
        with m.If(next_chunk):
            with m.If(k_last):
                m.d.sync += state.eq(_State.HEADER)
            with m.Else():
                m.d.sync += [k.eq(k + 1), phase.eq(Mux(n_grad != 0, Kind.GRAD, Kind.DOT))]
        # the cursor moves at the end of an action cycle, its flags follow a cycle later
        m.d.sync += fresh.eq(~(take | issue | take_r | issue_r))

        item = self.item
        m.d.comb += [
            item.kind.eq(phase), item.word.eq(Mux(ph_grad & from_buf, self.buf_word, word)),
            item.last_chunk.eq(k_last), item.k.eq(k), item.s.eq(s), item.p.eq(p),
            item.p_first.eq(p_first), item.p_carry.eq(p_carry),
            item.gfirst.eq(s_first & p_first), item.dstart.eq(k_first & p_first),
            # the group's last word ends the sample (floor mode 0: delta_grad, which adds 0)
            item.dfinal.eq(k_last & last_p), item.nodot.eq(floor0 & ph_dot & last_p),
            self.in_hdr.eq(state == _State.HEADER),
            self.new_t_set.eq(issue_r & ph_dot & k_last & s_first & p_first),
            self.t_index.eq(s),
            self.buf_half.eq(wh), self.buf_waddr.eq(wcnt), self.buf_wdata.eq(word),
            self.buf_wen.eq(issue_r & ph_dot & from_buf & ~skip_w), self.buf_raddr.eq(rcnt),
        ]

        with m.If(self.clear):
            m.d.sync += [state.eq(_State.HEADER), wh.eq(0), fresh.eq(0), take_r.eq(0),
                         issue_r.eq(0), ready_r.eq(0)]
        return m

    def _labels(self, m, header, lab_take, word, n_dot, state):
        """The label words of a pass, acted on the cycle after their take: assemble each label
        (``LW`` words) into ``label``, push it, count them; after the pass's last label the
        ``state`` goes to CHUNK."""
        W, LW = self.W, self.LW
        lab_w = Signal(range(LW))
        lab_n = Signal(4)
        lab_acc = Signal(MW)
        # the label counters' tests, registered (words come at most every other cycle)
        lab_w_last, lab_n_last = Signal(), Signal()
        m.d.sync += [lab_w_last.eq(lab_w == LW - 1), lab_n_last.eq(lab_n == n_dot - 1)]
        label_value = self.label
        if W >= MW:
            m.d.comb += label_value.eq(word[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], word))
        m.d.comb += self.lab_push.eq(lab_take & lab_w_last)
        with m.If(header):
            m.d.sync += [lab_w.eq(0), lab_n.eq(0)]
        with m.If(lab_take):
            m.d.sync += lab_acc.eq(label_value)
            with m.If(lab_w_last):
                m.d.sync += [lab_w.eq(0), lab_n.eq(lab_n + 1)]
                with m.If(lab_n_last):
                    m.d.sync += state.eq(_State.CHUNK)
            with m.Else():
                m.d.sync += lab_w.eq(lab_w + 1)
