"""The lane-serial ZipML engine: the same stream, arithmetic and ports as `Engine`, one lane a cycle.

`Engine` works on a whole chunk (W lanes of 32-bit model words) per cycle; on W = 8 that is
~11 000 iCE40 logic cells, twice the iCE40 UP5K. `SerialEngine` keeps the contract of
docs/engine.md (stream layout, integer arithmetic, registers, ports) and the golden model, and
spends W cycles on each stream word instead: one 32-bit adder each for the dot sum, the
update accumulator and the write-back, the model in a one-word-wide block RAM, the per-lane
update accumulators U in a block RAM. It takes one stream word every W cycles (or
W + 0 when words are back to back), so its bus efficiency is about 1/W; on the iCEBreaker the
UART link (3 Mbaud) is still 16x slower than the engine at 48 MHz.

docs/serial_engine.md describes the schedule and its latency. This module wires the blocks:
the parser (`serial_parser`), the lane loop (`lane_loop`), the lanes' update (`serial_update`)
and dot product (`serial_dot`), the code buffer, T values, label FIFO and counters shared with
`Engine` (`code_buffer`, `t_values`, `label_queue`, `counters`), the loss and `SerialScalar`.
"""

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from .code_buffer import CodeBuffer
from .counters import EngineCounters
from .dot import acc_width
from .engine import engine_members, last_chunk_lanes
from .label_queue import LabelFifo
from .lane_loop import Kind, LaneLoop
from .loss import SquaredLoss, loss_stage
from .model_mem import MW
from .serial_dot import SerialDot
from .serial_parser import SerialParser
from .serial_scalar import SerialScalar
from .serial_update import SerialUpdate
from .t_values import TValues

__all__ = ["SerialEngine"]


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
    #: code of this architecture in the board's capability register
    ARCH_CODE = 1

    def __init__(self, W=8, D_MAX=2048, B_MAX=8, BUF_DEPTH=256, L2=True, loss="squared"):
        self._MustUse__silence = True  # no "never used" warning for a rejected instance
        members = engine_members("SerialEngine", W, D_MAX, B_MAX, BUF_DEPTH)
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.L2 = bool(L2)
        self.Loss = loss_stage(loss)
        self._MustUse__silence = False
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
        W, D_MAX = self.W, self.D_MAX
        lb = (W - 1).bit_length()
        clear = self.clear

        m.submodules.parser = parser = SerialParser(W, D_MAX, self.B_MAX, self.BUF_DEPTH)
        m.submodules.lanes = lanes = LaneLoop(W, D_MAX)
        m.submodules.upd = upd = SerialUpdate(W, self.B_MAX, D_MAX, self.L2)
        m.submodules.dots = dots = SerialDot(W, D_MAX)
        # the small memories (T values, labels, dot accumulators) are block RAM
        m.submodules.tvals = tvals = TValues(16, ram=True)
        m.submodules.labels = labels = LabelFifo()
        m.submodules.loss = loss = self.Loss(acc_width(D_MAX))
        m.submodules.scalar = scal = SerialScalar()
        m.submodules.counters = cnt = EngineCounters(self.T_LATENCY + 2)

        # ------------------------------------------------------------ the parser
        dm1, last_mask = last_chunk_lanes(m, self.d, W)
        wiring.connect(m, wiring.flipped(self.i_stream), parser.i_stream)
        m.d.comb += [parser.enable.eq(self.enable), parser.clear.eq(clear),
                     parser.q.eq(self.q), parser.mode.eq(self.mode), parser.grid.eq(self.grid),
                     parser.c_last.eq(dm1 >> lb), parser.n_t.eq(tvals.n_t),
                     parser.lab_count.eq(labels.count),
                     parser.exec_free.eq(lanes.exec_free),
                     parser.exec_free_next.eq(lanes.exec_free_next),
                     labels.push.eq(parser.lab_push), labels.value.eq(parser.label),
                     labels.clear.eq(clear),
                     # T[s] is read every cycle (current when the parser's flags are)
                     tvals.r_addr.eq(parser.t_index)]
        if self.BUF_DEPTH:
            m.submodules.buf = buf = CodeBuffer(W, self.BUF_DEPTH, registered=False)
            m.d.comb += [buf.half.eq(parser.buf_half), buf.w_addr.eq(parser.buf_waddr),
                         buf.w_data.eq(parser.buf_wdata), buf.w_en.eq(parser.buf_wen),
                         buf.r_addr.eq(parser.buf_raddr), parser.buf_word.eq(buf.r_data)]

        # ------------------------------------------------------------ L0: the lane loop
        m.d.comb += [lanes.issue.eq(parser.issue), lanes.item.eq(parser.item),
                     lanes.t.eq(tvals.r_data), lanes.last_mask.eq(last_mask),
                     lanes.clear.eq(clear)]
        l0, l4 = lanes.l0, lanes.l4

        # ------------------------------------------------------------ the model memory
        # One 32-bit word per address (feature j at address j = k*W + i): the lanes of a chunk
        # are read one a cycle, the lane's word in L0 -> L1, registered for L2. The host port
        # has it while no item runs; write-backs (L4) have priority over host writes.
        m.submodules.mem = mem = Memory(shape=signed(MW), depth=D_MAX, init=[])
        mrd = mem.read_port(transparent_for=())
        mwr = mem.write_port()
        x = Signal(signed(MW))
        m.d.sync += x.eq(mrd.data)
        wb_en = l4.valid & (l4.kind == Kind.WB) & l4.active
        m.d.comb += [self.model_rdata.eq(mrd.data),
                     mrd.addr.eq(Mux(lanes.busy, l0.addr, self.model_addr)), mrd.en.eq(1),
                     mwr.addr.eq(Mux(wb_en, l4.addr, self.model_addr)),
                     mwr.data.eq(Mux(wb_en, upd.x_new, self.model_wdata)),
                     mwr.en.eq(wb_en | (self.model_we & ~lanes.busy))]

        # ------------------------------------------------------------ L1 .. L7: the lanes
        m.d.comb += [upd.l1.eq(lanes.l1), upd.l2.eq(lanes.l2), upd.term.eq(lanes.term),
                     upd.x.eq(x), upd.l2_shift.eq(self.l2_shift),
                     dots.l2.eq(lanes.l2), dots.l3.eq(lanes.l3), dots.l4.eq(l4), dots.x.eq(x)]

        # ------------------------------------------------------------ loss, scalar, T
        # a finished dot: its label is read from the queue a stage ahead of A's high half and
        # registered after the RAM; the loss takes both in L7
        label7 = Signal(signed(MW))
        m.d.sync += label7.eq(labels.head)
        m.d.comb += [labels.pop.eq(dots.final),
                     loss.i_valid.eq(dots.o_valid), loss.a.eq(dots.a), loss.label.eq(label7),
                     scal.clear.eq(clear), scal.step.eq(self.step),
                     scal.step_shift.eq(self.step_shift), scal.decay_shift.eq(self.decay_shift),
                     scal.n_epoch.eq(self.n_epoch),
                     scal.i_valid.eq(loss.o_valid), scal.e.eq(loss.e),
                     tvals.w_en.eq(scal.o_valid), tvals.w_data.eq(scal.t),
                     tvals.new_set.eq(parser.new_t_set), tvals.clear.eq(clear)]

        # ------------------------------------------------------------ counters, idle
        m.d.comb += [cnt.enable.eq(self.enable), cnt.clear.eq(clear),
                     cnt.ready.eq(self.i_stream.ready), cnt.took.eq(parser.took),
                     cnt.sample.eq(scal.o_valid),
                     cnt.ovf.eq((wb_en & upd.x_ovf) | loss.ovf | scal.ovf),
                     cnt.active.eq(parser.took | parser.issue),
                     self.cycles.eq(cnt.cycles), self.samples.eq(cnt.samples),
                     self.words.eq(cnt.words), self.stall_cycles.eq(cnt.stall_cycles),
                     self.overflow.eq(cnt.overflow),
                     self.idle.eq(parser.in_hdr & cnt.drained & ~scal.busy)]
        return m
