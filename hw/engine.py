"""The ZipML engine: bit-serial, run-time-precision, double-sampled SGD on a word stream.

docs/engine.md is the contract (stream layout, integer arithmetic, ports); docs/gateware.md
describes the pipeline, its latency and widths. This module holds the top `Engine`, which wires
its blocks: the pass parser (`parser`: control, with a grad cursor and a dot cursor), the word
pipeline's grad and dot sides (`word_pipeline`), the code buffer (`code_buffer`, mode 1 and the
floor grid), the T values (`t_values`), the label queue (`label_queue`), the counters
(`counters`) and the datapath blocks (`model_mem`, `shrink`, `update`, `dot`, `loss`, `scalar`).
"""

from amaranth.hdl import Module, Signal, Cat, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .code_buffer import CodeBuffer
from .counters import EngineCounters, COUNTER_BITS
from .dot import PlaneDot, DotAccumulate, acc_width
from .label_queue import LabelQueue
from .loss import SquaredLoss, loss_stage
from .model_mem import ModelMemory, MW
from .parser import PassParser
from .scalar import Scalar, STEP_BITS
from .shrink import Shrink
from .t_values import TValues
from .word_pipeline import ACC, SUB, WB, LOAD, DOT, GradSide, DotSide, delayed
from ..reference.golden import EngineConfig

__all__ = ["Engine", "COUNTER_BITS", "engine_members", "last_chunk_lanes",
           # the word pipeline's stages (docs/gateware.md), `zipml.hw.word_pipeline`'s
           "ACC", "SUB", "WB", "LOAD", "DOT"]


def engine_members(name, W, D_MAX, B_MAX, BUF_DEPTH):
    """Check an engine build's synthesis parameters (docs/engine.md) and return the signature
    members every engine architecture has (`Engine`, `zipml.hw.serial_engine.SerialEngine`).

    Raises
    ------
    ValueError
        A parameter out of range, named with ``name`` (the class).
    """
    # one definition of the limits: the golden model's EngineConfig checks them
    try:
        EngineConfig(W=W, D_MAX=D_MAX, B_MAX=B_MAX, BUF_DEPTH=BUF_DEPTH)
    except ValueError as exc:
        raise ValueError(str(exc).replace("EngineConfig", name, 1)) from None
    return {
        "i_stream": In(stream.Signature(W)),
        "q": In(6), "mode": In(1), "d": In(unsigned(D_MAX.bit_length())),
        "step": In(STEP_BITS), "step_shift": In(6), "decay_shift": In(5),
        "n_epoch": In(32), "l2_shift": In(6), "grid": In(1),
        "enable": In(1), "clear": In(1),
        "cycles": Out(COUNTER_BITS), "samples": Out(COUNTER_BITS),
        "words": Out(COUNTER_BITS), "stall_cycles": Out(COUNTER_BITS),
        "overflow": Out(1), "idle": Out(1),
        "model_addr": In(range(D_MAX)), "model_we": In(1), "model_wdata": In(signed(MW)),
        "model_rdata": Out(signed(MW)),
    }


def last_chunk_lanes(m, d, W):
    """``d - 1`` and the lanes active in a pass's last chunk (lane i of chunk k is active iff
    ``k*W + i < d``), the mask registered: both engines' view of the ``d`` register."""
    lb = (W - 1).bit_length()
    dm1 = Signal(unsigned(len(d)))
    last_mask = Signal(W)
    m.d.comb += dm1.eq(d - 1)
    m.d.sync += last_mask.eq(Cat(*(dm1[:lb] >= i for i in range(W))))
    return dm1, last_mask


class Engine(wiring.Component):
    """Minibatch SGD engine for linear models on bit-plane streams (docs/engine.md).

    Parameters
    ----------
    W : int
        Stream width = lanes = features per chunk (8, 16, 32 or 64).
    D_MAX : int
        Largest d, a multiple of W.
    B_MAX : int
        Largest minibatch, 1..15.
    BUF_DEPTH : int
        Words of the code buffer (two halves); 0 builds no buffer (mode 1 and the floor grid
        unusable).
    L2 : bool
        Build the L2 shrink (one 32-bit barrel shifter per lane, ~160 iCE40 LUTs each).
        ``False`` saves them for small FPGAs; ``l2_shift`` is then ignored (treated as 0), so
        the host must not ask such a build for L2 regularization.

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The word stream (headers, labels, plane words).
    q, mode, d, step, step_shift, decay_shift, n_epoch, l2_shift, grid : In
        Run-time registers (docs/engine.md); hold them constant while not idle.
    enable : In(1)
        1 runs; 0 holds (input not ready; words already taken still drain).
    clear : In(1)
        Strobe: zero counters, overflow, decay counter, T queue and pass state, load the
        working step from ``step``.
    cycles, samples, words, stall_cycles : Out(48)
        Enabled cycles, dot groups completed, stream words taken, enabled cycles with
        ``i_stream.ready`` low (all since ``clear``).
    overflow : Out(1)
        Sticky: E, T or an active model word saturated.
    idle : Out(1)
        No pass in progress and nothing in flight: the model port may be used.
    model_addr : In(range(D_MAX)), model_we : In(1), model_wdata : In(signed(32))
    model_rdata : Out(signed(32))
        ``model[model_addr]`` ``MODEL_READ_LATENCY`` clock edges after the address; one
        address per cycle.

    Throughput: one stream word per cycle (mode 1 or the floor grid: one stream dot word and
    one replayed grad word per cycle), except that a grad group waits until its T is ready
    (``T_LATENCY`` cycles after the sample's last dot word), in a pass without grads a chunk's
    first dot word waits while a write-back is in pipeline stages 1..WB, and with the buffer the
    dot side waits for the grad side to finish the chunk (docs/gateware.md, "Stalls").

    Latency: ``MODEL_READ_LATENCY`` = 4 for the model port; ``t_latency(W)`` from a sample's
    last dot word to its T.
    """

    MODEL_READ_LATENCY = ModelMemory.HOST_READ_LATENCY

    def __init__(self, W=32, D_MAX=4096, B_MAX=8, BUF_DEPTH=2 * 8 * 128 * 8, L2=True,
                 loss="squared"):
        self._MustUse__silence = True  # no "never used" warning for a rejected instance
        members = engine_members("Engine", W, D_MAX, B_MAX, BUF_DEPTH)
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.L2 = bool(L2)
        self.Loss = loss_stage(loss)
        self._MustUse__silence = False
        self.C_MAX = D_MAX // W
        self.LW = -(-32 // W)
        self.dot_latency = PlaneDot.latency(W)
        self.T_LATENCY = self.t_latency(W, self.Loss)
        super().__init__(members)

    @staticmethod
    def t_latency(W, Loss=SquaredLoss):
        """Cycles from taking a sample's last dot word to its T in the T registers.

        accept -> stage DOT -> plane sum -> weight and accumulate -> loss -> scalar.
        A grad group can be taken from the cycle after.
        """
        return (DOT + PlaneDot.latency(W) + DotAccumulate.LATENCY + Loss.LATENCY
                + Scalar.LATENCY)

    def elaborate(self, platform):
        m = Module()
        W, D_MAX, B_MAX, C_MAX = self.W, self.D_MAX, self.B_MAX, self.C_MAX
        lb = (W - 1).bit_length()
        row = data.ArrayLayout(signed(MW), W)

        m.submodules.parser = parser = PassParser(W, D_MAX, B_MAX, self.BUF_DEPTH)
        m.submodules.mem = mem = ModelMemory(W, C_MAX)
        m.submodules.grad = grad = GradSide(W, C_MAX, B_MAX)
        m.submodules.dots = dots = DotSide(W, C_MAX, B_MAX, D_MAX)
        m.submodules.labels = labels = LabelQueue(B_MAX)
        m.submodules.tvals = tvals = TValues(B_MAX)
        m.submodules.loss = loss = self.Loss(acc_width(D_MAX))
        m.submodules.scalar = scal = Scalar()
        m.submodules.counters = cnt = EngineCounters(self.T_LATENCY + 2)
        clear, payload = self.clear, self.i_stream.payload

        # ------------------------------------------------------------ S0: the pass parser
        dm1, last_mask = last_chunk_lanes(m, self.d, W)
        wiring.connect(m, wiring.flipped(self.i_stream), parser.i_stream)
        m.d.comb += [parser.enable.eq(self.enable), parser.clear.eq(clear),
                     parser.q.eq(self.q), parser.mode.eq(self.mode), parser.grid.eq(self.grid),
                     parser.c_last.eq(dm1 >> lb), parser.wb_inflight.eq(grad.wb_inflight),
                     parser.t_write.eq(scal.o_valid), parser.n_t.eq(tvals.n_t),
                     parser.lab_full_next.eq(labels.full_next)]
        m.d.comb += [labels.wr.eq(parser.lab_wr), labels.value.eq(parser.label),
                     labels.rd.eq(dots.o_valid), labels.clear.eq(clear)]

        # ------------------------------------------------------------ S0 -> S2: reads
        # G's bits from the code buffer: read in S0, in its output register in S2
        buf_word = Signal(W)
        if self.BUF_DEPTH:
            m.submodules.buf = buf = CodeBuffer(W, self.BUF_DEPTH)
            assert buf.LATENCY == 2
            m.d.comb += [buf.half.eq(parser.buf_half), buf.w_addr.eq(parser.buf_waddr),
                         buf.w_data.eq(payload), buf.w_en.eq(parser.buf_wen),
                         buf.r_addr.eq(parser.buf_raddr), buf_word.eq(buf.r_data)]
        # The RAM reads the cursor's chunk every cycle (address from registers: no issue logic
        # on the RAMs' pins); a chunk's first word uses the row read in its issue cycle, in S2
        # (the RAM's output register), delayed to ACC (ChunkUpdate's x_load) and to LOAD (the
        # dot side, in a pass without grads). The model port has the RAM between passes.
        m.d.comb += [mem.eng_raddr.eq(parser.row_k), mem.host_sel.eq(parser.in_hdr),
                     mem.host_addr.eq(self.model_addr), mem.host_we.eq(self.model_we),
                     mem.host_wdata.eq(self.model_wdata), self.model_rdata.eq(mem.host_rdata)]
        assert ModelMemory.ENG_READ_LATENCY == 2
        x_rows = delayed(m, mem.eng_rdata, LOAD - 2, row, "x_r", 3)    # S2 .. LOAD
        # the stream word, in S1 for both sides; T[s] read in S0, in S1
        payload1 = Signal(W)
        m.d.sync += payload1.eq(payload)
        m.d.comb += tvals.r_addr.eq(parser.t_index)

        # ------------------------------------------------------------ grad side: S1 .. WB
        if self.L2:
            m.submodules.shrink = shrink = Shrink(W)           # S2 -> ACC
            assert Shrink.LATENCY == ACC - 2
            m.d.comb += [shrink.row.eq(x_rows[0]), shrink.l2_shift.eq(self.l2_shift),
                         grad.shr.eq(shrink.shr)]
        m.d.comb += [grad.tag.eq(parser.g_tag), grad.t.eq(tvals.r_data), grad.word.eq(payload1),
                     grad.buf_word.eq(buf_word), grad.row.eq(x_rows[ACC - 2]),
                     grad.last_mask.eq(last_mask), grad.clear.eq(clear),
                     mem.eng_we.eq(grad.we), mem.eng_waddr.eq(grad.waddr),
                     mem.eng_wen.eq(grad.wen), mem.eng_wdata.eq(grad.wdata)]

        # ------------------------------------------------------------ dot side: S1 .. A_s
        m.d.comb += [dots.tag.eq(parser.d_tag), dots.word.eq(payload1),
                     dots.row.eq(x_rows[LOAD - 2]), dots.x_next.eq(grad.x_next),
                     dots.last_mask.eq(last_mask), dots.clear.eq(clear)]

        # ------------------------------------------------------------ loss, scalar, T
        m.d.comb += [loss.i_valid.eq(dots.o_valid), loss.a.eq(dots.a),
                     loss.label.eq(labels.head.as_signed()),
                     scal.clear.eq(clear), scal.step.eq(self.step),
                     scal.step_shift.eq(self.step_shift), scal.decay_shift.eq(self.decay_shift),
                     scal.n_epoch.eq(self.n_epoch),
                     scal.i_valid.eq(loss.o_valid), scal.e.eq(loss.e),
                     tvals.w_en.eq(scal.o_valid), tvals.w_data.eq(scal.t),
                     tvals.new_set.eq(parser.new_t_set), tvals.clear.eq(clear)]

        # ------------------------------------------------------------ counters, idle
        m.d.comb += [cnt.enable.eq(self.enable), cnt.clear.eq(clear),
                     cnt.ready.eq(self.i_stream.ready), cnt.took.eq(parser.took),
                     cnt.sample.eq(scal.o_valid), cnt.ovf.eq(grad.ovf | loss.ovf | scal.ovf),
                     cnt.active.eq(parser.go),
                     self.cycles.eq(cnt.cycles), self.samples.eq(cnt.samples),
                     self.words.eq(cnt.words), self.stall_cycles.eq(cnt.stall_cycles),
                     self.overflow.eq(cnt.overflow),
                     self.idle.eq(parser.in_hdr & cnt.drained)]
        return m
