"""The lane-serial ZipML engine: the same stream, arithmetic and ports as `Engine`, one lane a cycle.

`Engine` works on a whole chunk (W lanes of 32-bit model words) per cycle; on W = 8 that is
~11 000 iCE40 logic cells, twice the iCE40 UP5K. `SerialEngine` keeps the contract of
docs/engine.md (stream layout, integer arithmetic, registers, ports) and the golden model, and
spends W cycles on each stream word instead: one 32-bit adder each for the dot sum, the
update accumulator and the write-back, the model in a one-word-wide block RAM, the per-lane
update accumulators U in a block RAM. It takes one stream word every W cycles (or
W + 0 when words are back to back), so its bus efficiency is about 1/W; on the iCEBreaker the
UART link (3 Mbaud) is still 16x slower than the engine at 48 MHz.

docs/gateware.md, "The lane-serial engine", describes the schedule and its latency.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, data, enum
from amaranth.lib.memory import Memory

from .dot import G, sum_width, acc_width
from .engine import engine_members, last_chunk_lanes
from .loss import SquaredLoss, loss_stage
from .model_mem import MW
from .serial_scalar import SerialScalar
from .update import TERM_W, u_width, sat

__all__ = ["SerialEngine"]


class _State(enum.Enum, shape=2):
    HEADER = 0
    LABEL = 1
    CHUNK = 2


class _Kind(enum.Enum, shape=2):
    GRAD = 0     # a grad plane word: U_i += +-term for every lane
    WB = 1       # the write-back of a chunk (no stream word): X' = sat32(X - shrink - U >> G)
    DOT = 2      # a dot plane word: S = sum of +-X_i, then A_s += (S << G) >> sh(p)


class SerialEngine(wiring.Component):
    """Minibatch SGD engine on bit-plane streams, one lane per cycle (docs/engine.md).

    Same parameters, ports, registers and counters as `zipml.hw.engine.Engine`; the two are
    interchangeable behind `zipml.hw.soc.System` and the golden model describes both.

    Parameters
    ----------
    W, D_MAX, B_MAX, BUF_DEPTH : int
        As `zipml.hw.engine.Engine` (docs/engine.md, "Synthesis parameters").
    L2 : bool
        Build the L2 shrink (one 32-bit shifter here); ``False``: ``l2_shift`` is ignored.

    Schedule
    --------
    The parser issues one *item* at a time into a lane loop of W cycles: a grad plane word (from
    the stream in symmetric mode 0, else from the code buffer), a chunk's write-back (after its
    grad groups, when the pass has any), or a dot group word. A grad item waits for its T (the
    previous pass's dot of that sample). On the floor grid (``grid`` = 1) a group has q + 1
    planes, the carry plane weighing as much as the last t plane; in mode 0 a dot group's last
    word (``delta_grad``) runs as a dot item with no active lane and goes to the code buffer in
    the place of ``delta_dot``. Lane operations run in stage L2, after the model RAM
    read (L0 address, L1 data); write-backs reach the RAM in L4, at least W - 4 cycles before
    the chunk's first dot lane reads them (W >= 8).

    Latency: ``MODEL_READ_LATENCY`` = 1 for the model port; ``T_LATENCY`` cycles from taking a
    sample's last dot word to its error in the scalar stage, which takes
    ``STEP_SHIFT // 8 + STEP_SHIFT % 8 + 8`` cycles a sample.
    """

    MODEL_READ_LATENCY = 1
    #: the small memories (T values, labels, dot accumulators) go to block RAM, not flip-flops
    _BLOCK = {"ram_style": "block"}
    #: code of this architecture in the board's capability register
    ARCH_CODE = 1

    def __init__(self, W=8, D_MAX=2048, B_MAX=8, BUF_DEPTH=256, L2=True, loss="squared"):
        members = engine_members("SerialEngine", W, D_MAX, B_MAX, BUF_DEPTH)
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.L2 = bool(L2)
        self.Loss = loss_stage(loss)
        self.C_MAX = D_MAX // W
        self.LW = -(-32 // W)
        self.T_LATENCY = self.t_latency(W, self.Loss)
        super().__init__(members)

    @staticmethod
    def t_latency(W, Loss=SquaredLoss):
        """Cycles from taking a sample's last dot word to its error E entering the scalar
        stage (decision, the W lanes, L1..L7, the loss); `SerialScalar` then takes a variable
        time."""
        return W + 8 + Loss.LATENCY

    def elaborate(self, platform):
        m = Module()
        W, B_MAX, C_MAX, LW = self.W, self.B_MAX, self.C_MAX, self.LW
        lb = (W - 1).bit_length()
        SW, AW, UW = sum_width(W), acc_width(self.D_MAX), u_width(B_MAX)

        m.submodules.loss = loss = self.Loss(AW)
        m.submodules.scalar = scal = SerialScalar()

        # ------------------------------------------------------------ static run-time values
        c_last = Signal(range(C_MAX))                   # C - 1
        dm1, last_mask = last_chunk_lanes(m, self.d, W)
        m.d.sync += c_last.eq(dm1 >> lb)
        # the grid (docs/engine.md, "Stream layout"): the last plane index of a grad group
        # (G_q - 1) and of a dot group in the stream (one more for floor mode 0: delta_grad);
        # grad groups come from the code buffer unless symmetric mode 0
        grid = self.grid
        g_end, d_end = Signal(6), Signal(6)
        from_buf, floor0 = Signal(), Signal()
        m.d.sync += [g_end.eq(self.q - 1 + grid), d_end.eq(self.q - 1 + grid + floor0),
                     from_buf.eq(self.mode | grid), floor0.eq(grid & ~self.mode)]

        # ------------------------------------------------------------ model memory
        # One 32-bit word per address (feature j at address j = k*W + i): the lanes of a chunk
        # are read one a cycle. The host port has it while no item runs.
        m.submodules.mem = mem = Memory(shape=signed(MW), depth=self.D_MAX, init=[])
        mrd = mem.read_port(transparent_for=())
        mwr = mem.write_port()
        m.d.comb += self.model_rdata.eq(mrd.data)

        # ------------------------------------------------------------ pass parser
        state = Signal(_State)
        n_dot, n_grad = Signal(4), Signal(4)
        phase = Signal(_Kind)
        k, s, p = Signal(range(C_MAX)), Signal(4), Signal(6)
        lab_w = Signal(range(LW))
        lab_n = Signal(4)
        lab_acc = Signal(MW)
        n_t = Signal(range(16))                         # T values of the current set written
        # T values in a RAM read at the cursor's group s (current a cycle later: `fresh`)
        m.submodules.tmem = tmem = Memory(shape=signed(MW), depth=16, init=[],
                                          attrs=self._BLOCK)
        t_wr = tmem.write_port()
        t_rd = tmem.read_port(transparent_for=(t_wr,))
        # labels: a queue of 16 in RAM (two passes' worth at B_MAX <= 8; the next pass's labels
        # may arrive before this pass's last samples are finished)
        m.submodules.lmem = lmem = Memory(shape=signed(MW), depth=16, init=[],
                                          attrs=self._BLOCK)
        l_wr = lmem.write_port()
        l_rd = lmem.read_port(transparent_for=())
        l_head, l_tail = Signal(4), Signal(4)
        l_count = Signal(range(17))
        l_push, l_pop = Signal(), Signal()
        m.d.sync += l_count.eq(l_count + l_push - l_pop)
        with m.If(l_push):
            m.d.sync += l_tail.eq(l_tail + 1)
        with m.If(l_pop):
            m.d.sync += l_head.eq(l_head + 1)

        half = self.BUF_DEPTH // 2
        wh = Signal()
        wcnt = Signal(range(max(half, 1)))
        rcnt = Signal(range(max(half, 1)))
        buf_rdata = Signal(W)

        # the lane loop (stage L0): the item being executed, one lane a cycle
        busy = Signal()
        lane = Signal(range(W))
        e_kind = Signal(_Kind)
        e_word = Signal(W)
        e_mask = Signal(W)
        e_k = Signal(range(C_MAX))
        e_p = Signal(6)
        e_s = Signal(4)
        e_term = Signal(signed(TERM_W))                 # (T << G) >> sh(p) of a grad item
        e_gfirst = Signal()                             # first grad plane of the chunk: U restarts
        e_dstart, e_dfinal = Signal(), Signal()
        e_nodot = Signal()                              # floor mode 0's delta_grad: adds nothing

        lane_last = Signal()                            # lane == W - 1
        payload = self.i_stream.payload
        # An item is decided in one cycle and loaded at the end of the next (see below), so the
        # next item may be decided at the loop's second-to-last lane (or when the loop is idle);
        # registered a cycle ahead.
        exec_free = Signal()

        # The cursor's flags, registered: an item takes W >= 8 cycles, so the parser decides
        # from flags of the cursor as it was a cycle ago, valid when the cursor did not move
        # in that cycle (`fresh`). The RAM reads at the cursor (T[s], the code buffer at rcnt)
        # are current under the same condition.
        fresh = Signal()
        last_p, g_last_s, d_last_s = Signal(), Signal(), Signal()
        k_last, k_first, p_first, s_first = Signal(), Signal(), Signal(), Signal()
        t_ok = Signal()
        p_carry = Signal()                              # floor grid: the carry plane (p = q)
        ph_grad, ph_wb, ph_dot = (phase == _Kind.GRAD), (phase == _Kind.WB), (phase == _Kind.DOT)
        m.d.sync += [last_p.eq(p == Mux(ph_dot, d_end, g_end)), g_last_s.eq(s == n_grad - 1),
                     d_last_s.eq(s == n_dot - 1), k_last.eq(k == c_last), k_first.eq(k == 0),
                     p_first.eq(p == 0), s_first.eq(s == 0), t_ok.eq(s < n_t),
                     p_carry.eq(grid & (p == self.q))]

        # The parser decides from registers only (take/issue), and acts a cycle later from the
        # registered decision and word (take_r/issue_r/word): the fan-out of a decision to the
        # cursor, the lane loop and the queues starts at a flip-flop. It takes at most a word
        # every other cycle (the state it decides from is updated by the action).
        take = Signal()                                 # a stream word is taken
        issue = Signal()                                # an item is decided
        ready = Signal()
        take_r, issue_r = Signal(), Signal()
        word = Signal(W)
        m.d.sync += [take_r.eq(take), issue_r.eq(issue), word.eq(payload)]
        can_issue = self.enable & exec_free & fresh
        no_word = (ph_grad & from_buf & t_ok) | ph_wb
        # `ready` is a register (and `enable`): whoever drives the stream sees no engine logic
        # behind it. It is decided a cycle ahead from what the parser's registers will be; a
        # cycle with a decision or an action in it changes them, so the next is not ready.
        ready_r = Signal()
        exec_free_next = Signal()
        quiet = ~(take | issue | take_r | issue_r)
        ready_next = Signal()
        with m.Switch(state):
            with m.Case(_State.HEADER):
                m.d.comb += ready_next.eq(quiet)
            with m.Case(_State.LABEL):
                m.d.comb += ready_next.eq(quiet & (l_count < 16 - 1))
            with m.Case(_State.CHUNK):
                m.d.comb += [ready_next.eq(quiet & exec_free_next
                                           & ((ph_grad & ~from_buf & (s < n_t)) | ph_dot)),
                             issue.eq(take | (can_issue & no_word))]
        m.d.sync += ready_r.eq(ready_next)
        m.d.comb += [ready.eq(self.enable & ready_r),
                     take.eq(ready & self.i_stream.valid), self.i_stream.ready.eq(ready)]

        # header and labels (acted on the cycle after the take)
        # the label counters' tests, registered (words come at most every other cycle)
        lab_w_last, lab_n_last = Signal(), Signal()
        m.d.sync += [lab_w_last.eq(lab_w == LW - 1), lab_n_last.eq(lab_n == n_dot - 1)]
        label_value = Signal(MW)
        if W >= MW:
            m.d.comb += label_value.eq(word[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], word))
        m.d.comb += [l_push.eq(take_r & (state == _State.LABEL) & lab_w_last),
                     l_wr.addr.eq(l_tail), l_wr.data.eq(label_value), l_wr.en.eq(l_push)]
        header = take_r & (state == _State.HEADER)
        with m.If(header):
            nd, ng = word[0:4], word[4:8]
            m.d.sync += [n_dot.eq(nd), n_grad.eq(ng), k.eq(0), s.eq(0), p.eq(0),
                         phase.eq(Mux(ng != 0, _Kind.GRAD, _Kind.DOT)),
                         lab_w.eq(0), lab_n.eq(0), wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
            with m.If(nd != 0):
                m.d.sync += state.eq(_State.LABEL)
            with m.Elif(ng != 0):
                m.d.sync += state.eq(_State.CHUNK)
        with m.If(take_r & (state == _State.LABEL)):
            m.d.sync += lab_acc.eq(label_value)
            with m.If(lab_w_last):
                m.d.sync += [lab_w.eq(0), lab_n.eq(lab_n + 1)]
                with m.If(lab_n_last):
                    m.d.sync += state.eq(_State.CHUNK)
            with m.Else():
                m.d.sync += lab_w.eq(lab_w + 1)

        # the cursor: chunk k, then its grad groups, its write-back, its dot groups
        next_chunk = Signal()
        # floor mode 0: delta_dot (the word at p = q) is not written to the code buffer, so
        # delta_grad (p = q + 1) takes its place
        skip_w = floor0 & p_carry
        with m.If(issue_r):
            with m.Switch(phase):
                with m.Case(_Kind.GRAD):
                    m.d.sync += [p.eq(Mux(last_p, 0, p + 1)), rcnt.eq(rcnt + 1)]
                    with m.If(last_p):
                        m.d.sync += s.eq(Mux(g_last_s, 0, s + 1))
                        with m.If(g_last_s):
                            m.d.sync += phase.eq(_Kind.WB)
                with m.Case(_Kind.WB):
                    with m.If(n_dot != 0):
                        m.d.sync += phase.eq(_Kind.DOT)
                    with m.Else():
                        m.d.comb += next_chunk.eq(1)
                with m.Case(_Kind.DOT):
                    m.d.sync += [p.eq(Mux(last_p, 0, p + 1)), wcnt.eq(wcnt + ~skip_w)]
                    with m.If(last_p):
                        m.d.sync += s.eq(Mux(d_last_s, 0, s + 1))
                        with m.If(d_last_s):
                            m.d.comb += next_chunk.eq(1)
        with m.If(next_chunk):
            with m.If(k_last):
                m.d.sync += state.eq(_State.HEADER)
            with m.Else():
                m.d.sync += [k.eq(k + 1), phase.eq(Mux(n_grad != 0, _Kind.GRAD, _Kind.DOT))]
        # The first dot item of the last chunk: every grad of the pass has read its T and no T
        # of this pass can be written yet, so the next T values start a new set.
        new_t_set = issue_r & ph_dot & k_last & s_first & p_first

        # ------------------------------------------------------------ code buffer
        if self.BUF_DEPTH:
            m.submodules.buf = buf = Memory(shape=W, depth=self.BUF_DEPTH, init=[])
            bw = buf.write_port()
            br = buf.read_port(transparent_for=())
            bw_addr = Signal.like(bw.addr)
            bw_data = Signal(W)
            bw_en = Signal()
            m.d.sync += [bw_addr.eq(Mux(wh, half, 0) + wcnt), bw_data.eq(word),
                         bw_en.eq(issue_r & ph_dot & from_buf & ~skip_w)]
            m.d.comb += [bw.addr.eq(bw_addr), bw.data.eq(bw_data), bw.en.eq(bw_en),
                         br.addr.eq(Mux(wh, 0, half) + rcnt), br.en.eq(1),
                         buf_rdata.eq(br.data)]
        # T[s] is read every cycle (current when `fresh`, like the buffer's word at rcnt)
        m.d.comb += [t_rd.addr.eq(s), t_rd.en.eq(1)]
        # the cursor moves at the end of an action cycle, its flags follow a cycle later
        m.d.sync += fresh.eq(~(take | issue | take_r | issue_r))

        # ------------------------------------------------------------ L0: the lane loop
        with m.If(issue_r):
            m.d.sync += [
                busy.eq(1), lane.eq(0), lane_last.eq(0), e_kind.eq(phase),
                e_word.eq(Mux(ph_grad & from_buf, buf_rdata, word)),
                e_mask.eq(Mux(k_last, last_mask, (1 << W) - 1)),
                e_k.eq(k), e_s.eq(s), e_gfirst.eq(s_first & p_first),
                # the planes of a group come in order, so each term is the last one halved
                # (a floor of a floor): no barrel shifter; the floor grid's carry plane keeps
                # the last plane's weight (sh(q) = q), its term and its shift sh - 1 in e_p
                e_term.eq(Mux(p_first, t_rd.data << (G - 1), Mux(p_carry, e_term, e_term >> 1))),
                e_p.eq(Mux(p_carry, e_p, p)),
                e_dstart.eq(k_first & p_first),
                # the group's last word ends the sample (floor mode 0: delta_grad, which adds 0)
                e_dfinal.eq(k_last & last_p), e_nodot.eq(floor0 & ph_dot & last_p),
            ]
        with m.Elif(busy):
            m.d.sync += [lane.eq(lane + 1), e_word.eq(e_word >> 1), e_mask.eq(e_mask >> 1),
                         lane_last.eq(lane == W - 2)]
            with m.If(lane_last):
                m.d.sync += busy.eq(0)
        m.d.comb += exec_free_next.eq(Mux(issue_r, 0, ~busy | lane_last | (lane == W - 3)))
        m.d.sync += exec_free.eq(exec_free_next)

        op_layout = data.StructLayout({
            "valid": 1, "kind": _Kind, "bit": 1, "active": 1, "first_lane": 1, "last_lane": 1,
            "gfirst": 1, "addr": range(self.D_MAX), "p": 6, "s": 4, "dstart": 1, "dfinal": 1,
        })
        ops = [Signal(op_layout, name=f"l{i}") for i in range(5)]
        l0, l1, l2, l3, l4 = ops
        m.d.comb += [
            l0.valid.eq(busy), l0.kind.eq(e_kind), l0.bit.eq(e_word[0]),
            l0.active.eq(e_mask[0] & ~e_nodot),
            l0.first_lane.eq(lane == 0), l0.last_lane.eq(lane_last), l0.gfirst.eq(e_gfirst),
            l0.addr.eq(Cat(lane, e_k)), l0.p.eq(e_p), l0.s.eq(e_s), l0.dstart.eq(e_dstart),
            l0.dfinal.eq(e_dfinal),
        ]
        for a, b in zip(ops, ops[1:]):
            m.d.sync += b.eq(a)
        # The grad term of the lane's item and its negation, in L2.
        term1 = Signal(signed(TERM_W))
        term2 = Signal(signed(TERM_W))
        m.d.sync += [term1.eq(e_term), term2.eq(term1)]
        # the model RAM: the lane's word in L0 -> L1; the host's address while no item runs
        m.d.comb += [mrd.addr.eq(Mux(busy, l0.addr, self.model_addr)), mrd.en.eq(1)]
        x = Signal(signed(MW))
        m.d.sync += x.eq(mrd.data)

        # ------------------------------------------------------------ L2: the lane operation
        # the lanes' update accumulators U in a RAM of W words: read in L1, used in L2, written
        # back (grad lanes) in L3; a lane comes back W cycles later
        m.submodules.umem = umem = Memory(shape=signed(UW), depth=W, init=[], attrs=self._BLOCK)
        u_rd = umem.read_port(transparent_for=())
        u_wr = umem.write_port()
        m.d.comb += [u_rd.addr.eq(l1.addr[:lb]), u_rd.en.eq(1)]
        u_old = u_rd.data
        is_grad = l2.valid & (l2.kind == _Kind.GRAD)
        is_dot = l2.valid & (l2.kind == _Kind.DOT)
        # U +- term in two halves (L2: the low half and its carry; L3: the high half, then the
        # write): a 45-bit carry chain after the RAM output does not make 48 MHz on the UP5K.
        UL = UW // 2
        u_base = Signal(signed(UW))
        u_term = Signal(signed(UW))
        u_sub = ~l2.bit
        m.d.comb += [u_base.eq(Mux(l2.gfirst, 1 << (G - 1), u_old)),
                     u_term.eq(term2 ^ u_sub.replicate(UW))]
        u_lo = Signal(UL + 1)                           # low half of the sum, and its carry
        u_hi_a, u_hi_b = Signal(UW - UL), Signal(UW - UL)
        u_go = Signal()
        u_addr = Signal(lb)
        m.d.sync += [u_lo.eq((Cat(u_sub, u_base[:UL]) + Cat(u_sub, u_term[:UL]))[1:]),
                     u_hi_a.eq(u_base[UL:]), u_hi_b.eq(u_term[UL:]), u_go.eq(is_grad),
                     u_addr.eq(l2.addr[:lb])]
        m.d.comb += [u_wr.addr.eq(u_addr), u_wr.en.eq(u_go),
                     u_wr.data.eq(Cat(u_lo[:UL], u_hi_a + u_hi_b + u_lo[UL]))]
        # write-back: X - (U >> G) now, the shrink subtracted in L3, saturation and the RAM write
        # in L4 (the same ~22 ns as the 48-bit counters on the UP5K: splitting it gains nothing)
        wb_a = Signal(signed(MW + UW - G + 1))
        wb_shr = Signal(signed(MW))
        m.d.sync += wb_a.eq(x - (u_old >> G))
        if self.L2:
            m.d.sync += wb_shr.eq(Mux(self.l2_shift == 0, 0, x >> self.l2_shift))
        # dot: the plane sum over the lanes, in two halves: the low half accumulates here, the
        # high half a cycle later with the low half's carry (L3)
        SL = SW // 2
        s_lo = Signal(SL)
        s_hi = Signal(SW - SL)
        s_sub = ~l2.bit
        s_x = Signal(signed(SW))
        m.d.comb += s_x.eq(Mux(l2.active, x, 0) ^ s_sub.replicate(SW))
        s_lo_new = Signal(SL + 1)
        m.d.comb += s_lo_new.eq((Cat(s_sub, Mux(l2.first_lane, 0, s_lo))
                                 + Cat(s_sub, s_x[:SL]))[1:])
        s_carry, s_first3, s_dot3 = Signal(), Signal(), Signal()
        s_x_hi = Signal(SW - SL)
        with m.If(is_dot):
            m.d.sync += s_lo.eq(s_lo_new[:SL])
        m.d.sync += [s_carry.eq(s_lo_new[SL]), s_x_hi.eq(s_x[SL:]),
                     s_first3.eq(l2.first_lane), s_dot3.eq(is_dot)]

        # ------------------------------------------------------------ L3: shrink, plane sum
        wb_diff = Signal(signed(len(wb_a) + 1))
        m.d.sync += wb_diff.eq(wb_a - wb_shr)
        s_lo_fin = Signal(SL)
        with m.If(s_dot3):
            m.d.sync += s_hi.eq(Mux(s_first3, 0, s_hi) + s_x_hi + s_carry)
        with m.If(l3.last_lane):
            m.d.sync += s_lo_fin.eq(s_lo)     # the next item's first lane overwrites s_lo now
        ssum = Cat(s_lo_fin, s_hi).as_signed()  # in L4 after a dot item's last lane

        # ------------------------------------------------------------ L4: plane weight
        # A_s += (S << G) >> sh(p) (l4.p = sh(p) - 1): the weight now, A_s read from its RAM
        # now; the sum in two halves, the low one in L5 and the high one with its carry in L6,
        # where A_s is written (a sample's next plane comes W cycles later). One ~50-bit carry
        # chain per cycle is too slow for the UP5K at 48 MHz.
        m.submodules.amem = amem = Memory(shape=signed(AW), depth=16, init=[], attrs=self._BLOCK)
        a_rd = amem.read_port(transparent_for=())
        a_wr = amem.write_port()
        plane_done = l4.valid & (l4.kind == _Kind.DOT) & l4.last_lane
        wterm = Signal(signed(AW))
        a_go, a_start, a_final = Signal(), Signal(), Signal()
        a_s = Signal(4)
        m.d.comb += [a_rd.addr.eq(l4.s), a_rd.en.eq(1)]
        m.d.sync += [wterm.eq((ssum << (G - 1)) >> l4.p), a_go.eq(plane_done),
                     a_start.eq(l4.dstart), a_final.eq(l4.dfinal), a_s.eq(l4.s)]
        AL = AW // 2
        a_old = Signal(signed(AW))
        m.d.comb += a_old.eq(Mux(a_start, 0, a_rd.data))
        a_lo = Signal(AL + 1)                           # low half and its carry
        a_hi_old = Signal(AW - AL)
        a_hi_term = Signal(AW - AL)
        a_go5, a_final5 = Signal(), Signal()
        a_s5 = Signal(4)
        m.d.sync += [a_lo.eq(a_old[:AL] + wterm[:AL]), a_hi_old.eq(a_old[AL:]),
                     a_hi_term.eq(wterm[AL:]), a_go5.eq(a_go), a_final5.eq(a_final),
                     a_s5.eq(a_s)]
        a_new = Signal(signed(AW))
        m.d.comb += [a_new.eq(Cat(a_lo[:AL], a_hi_old + a_hi_term + a_lo[AL])),
                     a_wr.addr.eq(a_s5), a_wr.data.eq(a_new), a_wr.en.eq(a_go5)]
        # a finished dot: its label is read from the queue a stage ahead of A's high half and
        # registered after the RAM; the loss takes both in L7
        a_done = Signal()
        a_out = Signal(signed(AW))
        label7 = Signal(signed(MW))
        m.d.comb += [l_pop.eq(a_go & a_final), l_rd.addr.eq(l_head), l_rd.en.eq(1)]
        m.d.sync += [a_done.eq(a_go5 & a_final5), a_out.eq(a_new), label7.eq(l_rd.data)]

        # ------------------------------------------------------------ L4: write-back
        x_new, x_ovf = sat(m, wb_diff, MW, "x_new")
        wb_en = l4.valid & (l4.kind == _Kind.WB) & l4.active
        m.d.comb += [mwr.addr.eq(Mux(wb_en, l4.addr, self.model_addr)),
                     mwr.data.eq(Mux(wb_en, x_new, self.model_wdata)),
                     mwr.en.eq(wb_en | (self.model_we & ~busy))]

        # ------------------------------------------------------------ loss, scalar, T
        m.d.comb += [loss.i_valid.eq(a_done), loss.a.eq(a_out), loss.label.eq(label7),
                     scal.clear.eq(self.clear), scal.step.eq(self.step),
                     scal.step_shift.eq(self.step_shift), scal.decay_shift.eq(self.decay_shift),
                     scal.n_epoch.eq(self.n_epoch),
                     scal.i_valid.eq(loss.o_valid), scal.e.eq(loss.e)]
        with m.If(new_t_set):
            m.d.sync += n_t.eq(0)
        m.d.comb += [t_wr.addr.eq(n_t), t_wr.data.eq(scal.t), t_wr.en.eq(scal.o_valid)]
        with m.If(scal.o_valid):
            m.d.sync += n_t.eq(n_t + 1)

        # ------------------------------------------------------------ counters, idle
        drain = Signal(range(self.T_LATENCY + 4))
        with m.If(take_r | issue_r):
            m.d.sync += drain.eq(self.T_LATENCY + 2)
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        m.d.comb += self.idle.eq((state == _State.HEADER) & (drain == 0) & ~scal.busy)

        # words and stalls are counted a cycle late, from registers (exact once idle)
        stalled = Signal()
        m.d.sync += stalled.eq(self.enable & ~ready)
        # (a 48-bit increment is a ~22 ns path on the UP5K, as long as the scalar's; splitting
        # the four counters in halves would cost ~150 cells the board system needs)
        counters = ((self.cycles, self.enable), (self.stall_cycles, stalled),
                    (self.words, take_r), (self.samples, scal.o_valid))
        for port, event in counters:
            with m.If(event):
                m.d.sync += port.eq(port + 1)
        with m.If((wb_en & x_ovf) | loss.ovf | scal.ovf):
            m.d.sync += self.overflow.eq(1)

        with m.If(self.clear):
            m.d.sync += [state.eq(_State.HEADER), n_t.eq(0), wh.eq(0), drain.eq(0), busy.eq(0),
                         fresh.eq(0), lane_last.eq(0), take_r.eq(0), issue_r.eq(0),
                         stalled.eq(0), exec_free.eq(1), ready_r.eq(0),
                         l_head.eq(0), l_tail.eq(0), l_count.eq(0), self.overflow.eq(0)]
            m.d.sync += [port.eq(0) for port, _ in counters]
            for op in ops[1:]:
                m.d.sync += op.valid.eq(0)
        return m
