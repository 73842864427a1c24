"""The ZipML engine: bit-serial, run-time-precision, double-sampled SGD on a word stream.

docs/engine.md is the contract (stream layout, integer arithmetic, ports); docs/gateware.md
describes the pipeline, its latency and widths. This module holds the top `Engine`: the pass
parser (control), the word pipeline that carries each plane word with its tags, the code buffer
of mode 1, the T registers, the label FIFO and the counters; the datapath blocks live beside it
(`model_mem`, `update`, `dot`, `loss`, `scalar`).
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, Array, signed, unsigned, ResetInserter
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dot import PlaneDot, DotAccumulate, G, sum_width, acc_width
from .loss import SquaredLoss
from .model_mem import ModelMemory, MW
from .scalar import Scalar, STEP_BITS
from .update import GradTerm, ChunkUpdate

__all__ = ["Engine", "COUNTER_BITS"]

#: width of the cycles / samples / words / stall_cycles counters
COUNTER_BITS = 48


class _State(enum.Enum, shape=2):
    HEADER = 0
    LABEL = 1
    CHUNK = 2


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
        Words of the mode-1 code buffer (two halves); 0 builds no buffer (mode 1 unusable).
    L2 : bool
        Build the L2 shrink (one 32-bit barrel shifter per lane, ~160 iCE40 LUTs each).
        ``False`` saves them for small FPGAs; ``l2_shift`` is then ignored (treated as 0), so
        the host must not ask such a build for L2 regularization.

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The word stream (headers, labels, plane words).
    q, mode, d, step, step_shift, decay_shift, n_epoch, l2_shift : In
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

    Throughput: one stream word per cycle, except that a grad group waits until its T is
    ready (``T_LATENCY`` cycles after the sample's last dot word) and a chunk's first word
    waits while a write-back of the same chunk is in the first four pipeline stages (only
    streams with very few words per pass meet either).
    """

    MODEL_READ_LATENCY = ModelMemory.HOST_READ_LATENCY

    def __init__(self, W=32, D_MAX=4096, B_MAX=8, BUF_DEPTH=2 * 8 * 128 * 8, L2=True):
        if W not in (8, 16, 32, 64):
            raise ValueError(f"Engine: W must be 8, 16, 32 or 64, got {W!r}")
        if not (isinstance(D_MAX, int) and D_MAX > 0 and D_MAX % W == 0):
            raise ValueError(f"Engine: D_MAX must be a positive multiple of W={W}, got {D_MAX!r}")
        if not (isinstance(B_MAX, int) and 1 <= B_MAX <= 15):
            raise ValueError(f"Engine: B_MAX must be in 1..15, got {B_MAX!r}")
        if not (isinstance(BUF_DEPTH, int) and BUF_DEPTH >= 0 and BUF_DEPTH % 2 == 0):
            raise ValueError(f"Engine: BUF_DEPTH must be an even count >= 0, got {BUF_DEPTH!r}")
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.L2 = bool(L2)
        self.C_MAX = D_MAX // W
        self.LW = -(-32 // W)
        self.dot_latency = PlaneDot.latency(W)
        self.T_LATENCY = self.t_latency(W)
        super().__init__({
            "i_stream": In(stream.Signature(W)),
            "q": In(6), "mode": In(1), "d": In(unsigned(D_MAX.bit_length())),
            "step": In(STEP_BITS), "step_shift": In(6), "decay_shift": In(5),
            "n_epoch": In(32), "l2_shift": In(6),
            "enable": In(1), "clear": In(1),
            "cycles": Out(COUNTER_BITS), "samples": Out(COUNTER_BITS),
            "words": Out(COUNTER_BITS), "stall_cycles": Out(COUNTER_BITS),
            "overflow": Out(1), "idle": Out(1),
            "model_addr": In(range(D_MAX)), "model_we": In(1), "model_wdata": In(signed(MW)),
            "model_rdata": Out(signed(MW)),
        })

    @staticmethod
    def t_latency(W):
        """Cycles from taking a sample's last dot word to its T in the T registers.

        accept -> stage 5 (5) -> plane sum -> weight and accumulate -> loss -> scalar.
        A grad group can be taken from the cycle after.
        """
        return (5 + PlaneDot.latency(W) + DotAccumulate.LATENCY + SquaredLoss.LATENCY
                + Scalar.LATENCY)

    def elaborate(self, platform):
        m = Module()
        W, B_MAX, C_MAX, LW = self.W, self.B_MAX, self.C_MAX, self.LW
        lb = (W - 1).bit_length()
        SW, AW = sum_width(W), acc_width(self.D_MAX)

        m.submodules.mem = mem = ModelMemory(W, C_MAX)
        m.submodules.gterm = gterm = GradTerm()
        m.submodules.upd = upd = ChunkUpdate(W, B_MAX)
        m.submodules.dot = dot = PlaneDot(W)
        m.submodules.acc = acc = DotAccumulate(B_MAX, SW, AW)
        m.submodules.loss = loss = SquaredLoss(AW)
        m.submodules.scalar = scal = Scalar()
        m.submodules.labels = labels = ResetInserter(self.clear)(
            SyncFIFO(width=MW, depth=B_MAX))

        # ------------------------------------------------------------ static run-time values
        # Registered once more so the divisions by W and the mask stay out of the FSM paths.
        c_last = Signal(range(C_MAX))                   # C - 1
        last_mask = Signal(W)                           # active lanes of the last chunk
        dm1 = Signal(unsigned(len(self.d)))
        m.d.comb += dm1.eq(self.d - 1)
        m.d.sync += c_last.eq(dm1 >> lb)
        m.d.sync += last_mask.eq(Cat(*(dm1[:lb] >= i for i in range(W))))
        q_last = Signal(6)
        m.d.sync += q_last.eq(self.q - 1)

        # ------------------------------------------------------------ pass parser (stage 0)
        state = Signal(_State)
        n_dot = Signal(4)
        n_grad = Signal(4)
        k = Signal(range(C_MAX))
        s = Signal(4)
        p = Signal(6)
        grad = Signal()                                 # phase of the chunk: grad groups
        lab_w = Signal(range(LW))
        lab_n = Signal(4)
        lab_acc = Signal(MW)
        n_t = Signal(range(16))                         # T values of the current set written
        T = Array(Signal(signed(MW), name=f"T{i}") for i in range(B_MAX))

        # mode-1 code buffer: pass t writes half wh, reads the half pass t-1 wrote
        half = self.BUF_DEPTH // 2
        wh = Signal()
        wcnt = Signal(range(max(half, 1)))
        rcnt = Signal(range(max(half, 1)))
        buf_rdata = Signal(W)

        payload = self.i_stream.payload
        in_chunk = state == _State.CHUNK
        from_buf = in_chunk & grad & self.mode
        last_p = p == q_last
        last_s = s == Mux(grad, n_grad, n_dot) - 1
        first = in_chunk & (s == 0) & (p == 0) & (grad | (n_grad == 0))
        t_ok = ~(in_chunk & grad) | (s < n_t)

        # ------------------------------------------------------------ word pipeline tags
        slot_layout = data.StructLayout({
            "valid": 1, "grad": 1, "first": 1, "fgrad": 1, "wb": 1, "k": range(C_MAX),
            "p": 6, "lastp": 1, "chunk0": 1, "lastchunk": 1, "ins": range(max(B_MAX, 2)),
            "frombuf": 1,
        })
        slot0 = Signal(slot_layout)
        slots = [slot0] + [Signal(slot_layout, name=f"slot{i}") for i in range(1, 6)]
        for a, b in zip(slots, slots[1:]):
            m.d.sync += b.eq(a)

        # a chunk read must not overtake a write-back of the same chunk still in stages 1..5
        hazard = first & Cat(*((sl.valid & sl.wb & (sl.k == k)) for sl in slots[1:])).any()

        # label FIFO of B_MAX: the labels of the next pass wait (rarely) for the finals of this one
        lab_ok = (state != _State.LABEL) | labels.w_rdy
        can = self.enable & t_ok & ~hazard & lab_ok
        ready = Signal()
        go = Signal()
        m.d.comb += [ready.eq(can & ~from_buf),
                     go.eq(can & Mux(from_buf, 1, self.i_stream.valid)),
                     self.i_stream.ready.eq(ready)]

        m.d.comb += [
            slot0.valid.eq(go & in_chunk), slot0.grad.eq(grad), slot0.first.eq(first),
            slot0.fgrad.eq(grad & (s == 0) & (p == 0)), slot0.wb.eq(grad & last_p & last_s),
            slot0.k.eq(k), slot0.p.eq(p), slot0.lastp.eq(last_p), slot0.chunk0.eq(k == 0),
            slot0.lastchunk.eq(k == c_last), slot0.ins.eq(n_dot - 1), slot0.frombuf.eq(from_buf),
        ]
        # The first dot word of the last chunk: every grad of the pass has been taken (so the
        # T set they read is free) and no T of this pass can be written yet.
        new_t_set = in_chunk & ~grad & (s == 0) & (p == 0) & (k == c_last)

        label_value = Signal(MW)
        if W >= MW:
            m.d.comb += label_value.eq(payload[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], payload))
        m.d.comb += [labels.w_data.eq(label_value),
                     labels.w_en.eq(go & (state == _State.LABEL) & (lab_w == LW - 1))]

        with m.If(go):
            with m.Switch(state):
                with m.Case(_State.HEADER):
                    nd, ng = payload[0:4], payload[4:8]
                    m.d.sync += [n_dot.eq(nd), n_grad.eq(ng), k.eq(0), s.eq(0), p.eq(0),
                                 grad.eq(ng != 0), lab_w.eq(0), lab_n.eq(0),
                                 wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
                    with m.If(nd != 0):
                        m.d.sync += state.eq(_State.LABEL)
                    with m.Elif(ng != 0):
                        m.d.sync += state.eq(_State.CHUNK)
                with m.Case(_State.LABEL):
                    m.d.sync += lab_acc.eq(label_value)
                    with m.If(lab_w == LW - 1):
                        m.d.sync += [lab_w.eq(0), lab_n.eq(lab_n + 1)]
                        with m.If(lab_n == n_dot - 1):
                            m.d.sync += state.eq(_State.CHUNK)
                    with m.Else():
                        m.d.sync += lab_w.eq(lab_w + 1)
                with m.Case(_State.CHUNK):
                    with m.If(self.mode & grad):
                        m.d.sync += rcnt.eq(rcnt + 1)
                    with m.If(self.mode & ~grad):
                        m.d.sync += wcnt.eq(wcnt + 1)
                    with m.If(~last_p):
                        m.d.sync += p.eq(p + 1)
                    with m.Else():
                        m.d.sync += p.eq(0)
                        with m.If(~last_s):
                            m.d.sync += s.eq(s + 1)
                        with m.Else():
                            m.d.sync += s.eq(0)
                            with m.If(grad & (n_dot != 0)):
                                m.d.sync += grad.eq(0)
                            with m.Elif(k == c_last):
                                m.d.sync += state.eq(_State.HEADER)
                            with m.Else():
                                m.d.sync += [k.eq(k + 1), grad.eq(n_grad != 0)]

        # ------------------------------------------------------------ mode-1 code buffer
        if self.BUF_DEPTH:
            m.submodules.buf = buf = Memory(shape=W, depth=self.BUF_DEPTH, init=[])
            bw = buf.write_port()
            br = buf.read_port(transparent_for=())
            m.d.comb += [
                bw.addr.eq(Mux(wh, half, 0) + wcnt), bw.data.eq(payload),
                bw.en.eq(go & in_chunk & ~grad & self.mode),
                br.addr.eq(Mux(wh, 0, half) + rcnt), br.en.eq(1),
                buf_rdata.eq(br.data),
            ]

        # ------------------------------------------------------------ S0 -> S1
        payload1 = Signal(W)
        m.d.sync += payload1.eq(payload)
        m.d.comb += [mem.eng_raddr.eq(k), mem.eng_ren.eq(go & first),
                     mem.host_sel.eq(~in_chunk)]
        t_sel = Signal(signed(MW))
        m.d.sync += t_sel.eq(T[s])

        # ------------------------------------------------------------ S1: bits, T term
        s1, s2, s3, s4, s5 = slots[1:]
        bits = [Signal(W, name=f"bits{i}") for i in range(1, 6)]
        m.d.comb += bits[0].eq(Mux(s1.frombuf, buf_rdata, payload1))
        for a, b in zip(bits, bits[1:]):
            m.d.sync += b.eq(a)
        m.d.comb += [gterm.t.eq(t_sel), gterm.p.eq(s1.p)]

        # model row for a chunk's first word: S1 RAM output -> S2 register -> S3 shrink
        row = data.ArrayLayout(signed(MW), W)
        x_r = Signal(row)
        x_r2 = Signal(row)
        x_r3 = Signal(row)
        shr = Signal(row)
        m.d.sync += [x_r.eq(mem.eng_rdata), x_r2.eq(x_r), x_r3.eq(x_r2)]
        if self.L2:
            for i in range(W):
                m.d.sync += shr[i].eq(Mux(self.l2_shift == 0, 0, x_r[i] >> self.l2_shift))

        # ------------------------------------------------------------ S3: accumulate
        m.d.comb += [upd.acc.eq(s3.valid & s3.grad), upd.first.eq(s3.fgrad), upd.bits.eq(bits[2]),
                     upd.term.eq(gterm.term), upd.nterm.eq(gterm.nterm), upd.shr.eq(shr)]

        # ------------------------------------------------------------ S4: load, subtract
        mask4 = Signal(W)
        m.d.comb += [mask4.eq(Mux(s4.lastchunk, last_mask, (1 << W) - 1)),
                     upd.load.eq(s4.valid & s4.first), upd.x_load.eq(x_r3),
                     upd.wb.eq(s4.valid & s4.wb), upd.wb_first.eq(s4.first), upd.mask.eq(mask4)]

        # ------------------------------------------------------------ S5: write-back, dot
        mask5 = Signal(W)
        m.d.comb += [mask5.eq(Mux(s5.lastchunk, last_mask, (1 << W) - 1)),
                     mem.eng_waddr.eq(s5.k), mem.eng_wen.eq(upd.wen),
                     mem.eng_wdata.eq(upd.x_new),
                     dot.i_valid.eq(s5.valid & ~s5.grad), dot.bits.eq(bits[4]),
                     dot.mask.eq(mask5), dot.x.eq(upd.x)]

        # tags of the dot word, delayed to meet the plane sum
        tag = s5
        for i in range(self.dot_latency):
            nxt = Signal(slot_layout, name=f"dtag{i}")
            m.d.sync += nxt.eq(tag)
            tag = nxt
        m.d.comb += [acc.i_valid.eq(dot.o_valid), acc.s.eq(dot.o_sum), acc.p.eq(tag.p),
                     acc.start.eq(tag.chunk0 & (tag.p == 0)), acc.last_plane.eq(tag.lastp),
                     acc.final.eq(tag.lastchunk & tag.lastp), acc.ins.eq(tag.ins)]

        # ------------------------------------------------------------ loss, scalar, T
        m.d.comb += [labels.r_en.eq(acc.o_valid),
                     loss.i_valid.eq(acc.o_valid), loss.a.eq(acc.o_a),
                     loss.label.eq(labels.r_data.as_signed()),
                     scal.clear.eq(self.clear), scal.step.eq(self.step),
                     scal.step_shift.eq(self.step_shift), scal.decay_shift.eq(self.decay_shift),
                     scal.n_epoch.eq(self.n_epoch),
                     scal.i_valid.eq(loss.o_valid), scal.e.eq(loss.e)]
        with m.If(go & new_t_set):
            # all grads of this pass are taken: the next T values start a new set
            m.d.sync += n_t.eq(0)
        with m.If(scal.o_valid):
            m.d.sync += [T[n_t].eq(scal.t), n_t.eq(n_t + 1)]

        # ------------------------------------------------------------ counters, idle
        drain = Signal(range(self.T_LATENCY + 4))
        with m.If(go):
            m.d.sync += drain.eq(self.T_LATENCY + 2)
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        m.d.comb += self.idle.eq((state == _State.HEADER) & (drain == 0))

        with m.If(self.enable):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(~ready):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        with m.If(self.i_stream.valid & ready):
            m.d.sync += self.words.eq(self.words + 1)
        with m.If(scal.o_valid):
            m.d.sync += self.samples.eq(self.samples + 1)
        with m.If(upd.ovf | loss.ovf | scal.ovf):
            m.d.sync += self.overflow.eq(1)

        m.d.comb += [mem.host_addr.eq(self.model_addr), mem.host_we.eq(self.model_we),
                     mem.host_wdata.eq(self.model_wdata), self.model_rdata.eq(mem.host_rdata)]

        with m.If(self.clear):
            m.d.sync += [state.eq(_State.HEADER), n_t.eq(0), wh.eq(0), drain.eq(0),
                         self.cycles.eq(0), self.stall_cycles.eq(0), self.words.eq(0),
                         self.samples.eq(0), self.overflow.eq(0)]
            for sl in slots[1:]:
                m.d.sync += sl.valid.eq(0)
        return m
