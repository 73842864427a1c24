"""The ZipML engine: bit-serial, run-time-precision, double-sampled SGD on a word stream.

docs/engine.md is the contract (stream layout, integer arithmetic, ports); docs/gateware.md
describes the pipeline, its latency and widths. This module holds the top `Engine`: the pass
parser (control, with a grad cursor and a dot cursor), the word pipeline that carries each
plane word with its tags, the code buffer of mode 1, the dot side's chunk register, the T
registers, the label FIFO and the counters; the datapath blocks live beside it (`model_mem`,
`update`, `dot`, `loss`, `scalar`).
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

    Throughput: one stream word per cycle (mode 1: one stream dot word and one replayed grad
    word per cycle), except that a grad group waits until its T is ready (``T_LATENCY``
    cycles after the sample's last dot word), a chunk's first word waits while a write-back of
    the same chunk is in pipeline stages 1..5, and in mode 1 the dot side waits for the grad
    side to finish the chunk (docs/gateware.md, "Stalls").

    Latency: ``MODEL_READ_LATENCY`` = 3 for the model port; ``t_latency(W)`` from a sample's
    last dot word to its T.
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
        # Two cursors walk the chunks of a pass: G over the grad groups, D over the dot groups.
        # Mode 0 takes both from the stream in stream order (G's groups of chunk k, then D's).
        # Mode 1 takes G's words from the code buffer while D takes the stream: both may issue
        # in the same cycle, G working one chunk ahead of D (docs/gateware.md).
        state = Signal(_State)
        n_dot = Signal(4)
        n_grad = Signal(4)
        kg, sg, pg = Signal(range(C_MAX)), Signal(4), Signal(6)
        kd, sd, pd = Signal(range(C_MAX)), Signal(4), Signal(6)
        g_done, d_done = Signal(), Signal()
        d_started = Signal()                            # D has issued a word of chunk kd
        kd_next = Signal(range(C_MAX + 1))              # kd + 1, kept to spare an adder
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
        mode1 = self.mode

        g_last_p = pg == q_last
        g_last_s = sg == n_grad - 1
        g_first = (sg == 0) & (pg == 0)
        d_last_p = pd == q_last
        d_last_s = sd == n_dot - 1
        d_first = (sd == 0) & (pd == 0)
        g_end = g_last_p & g_last_s & (kg == c_last)    # G's last word of the pass
        d_end = d_last_p & d_last_s & (kd == c_last)

        # ------------------------------------------------------------ word pipeline tags
        g_layout = data.StructLayout({
            "valid": 1, "first": 1, "wb": 1, "k": range(C_MAX), "p": 6, "lastchunk": 1,
            "frombuf": 1,
        })
        d_layout = data.StructLayout({
            "valid": 1, "first": 1, "ram": 1, "k": range(C_MAX), "p": 6, "lastp": 1,
            "chunk0": 1, "lastchunk": 1, "ins": range(max(B_MAX, 2)),
        })
        gs = [Signal(g_layout, name=f"g{i}") for i in range(6)]
        ds = [Signal(d_layout, name=f"d{i}") for i in range(6)]
        for chain in (gs, ds):
            for a, b in zip(chain, chain[1:]):
                m.d.sync += b.eq(a)

        # A chunk read must not overtake a write-back of the same chunk in stages 1..5.
        def pending_wb(k):
            return Cat(*((g.valid & g.wb & (g.k == k)) for g in gs[1:])).any()

        # D may issue: the first word of its chunk only once G has finished that chunk (in an
        # earlier cycle, so the write-back is at most one stage ahead) or when the pass has no
        # grads (then it reads the chunk from memory, like G).
        d_ok = ~d_first | Mux(n_grad == 0, ~pending_wb(kd), (kg > kd) | g_done)
        take = Signal()         # a stream word is taken
        g_go = Signal()
        d_go = Signal()
        ready = Signal()
        # mode 1: D issues its word this cycle (written without g_ok: no combinational loop)
        d_issue1 = in_chunk & mode1 & self.enable & ~d_done & d_ok & self.i_stream.valid
        # G may issue: T ready, its chunk read safe, and (mode 1) at most one chunk ahead of D
        # so that x_next is taken by D before G writes the next one.
        g_ok = ((sg < n_t) & ~(g_first & pending_wb(kg))
                & ((kg == kd) | d_done | (mode1 & (kg == kd_next) & (d_started | d_issue1))))

        # label FIFO of B_MAX: the labels of the next pass wait (rarely) for the finals of this one
        lab_ok = (state != _State.LABEL) | labels.w_rdy
        # mode 0: the stream word belongs to G while G is on D's chunk
        g_turn = ~g_done & ((kg == kd) | d_done)
        with m.If(state == _State.HEADER):
            m.d.comb += ready.eq(self.enable)
        with m.Elif(state == _State.LABEL):
            # mode 1: G starts chunk 0 from the buffer while the labels stream in
            m.d.comb += [ready.eq(self.enable & lab_ok),
                         g_go.eq(mode1 & self.enable & ~g_done & g_ok)]
        with m.Elif(mode1):
            m.d.comb += [ready.eq(self.enable & ~d_done & d_ok),
                         g_go.eq(self.enable & ~g_done & g_ok),
                         d_go.eq(take)]
        with m.Elif(g_turn):
            m.d.comb += [ready.eq(self.enable & g_ok), g_go.eq(take)]
        with m.Else():
            m.d.comb += [ready.eq(self.enable & ~d_done & d_ok), d_go.eq(take)]
        m.d.comb += [take.eq(ready & self.i_stream.valid), self.i_stream.ready.eq(ready)]
        go = g_go | d_go | take

        g0, d0 = gs[0], ds[0]
        m.d.comb += [
            g0.valid.eq(g_go), g0.first.eq(g_first), g0.wb.eq(g_last_p & g_last_s), g0.k.eq(kg),
            g0.p.eq(pg), g0.lastchunk.eq(kg == c_last), g0.frombuf.eq(mode1),
            d0.valid.eq(d_go), d0.first.eq(d_first), d0.ram.eq(n_grad == 0), d0.k.eq(kd),
            d0.p.eq(pd), d0.lastp.eq(d_last_p), d0.chunk0.eq(kd == 0),
            d0.lastchunk.eq(kd == c_last), d0.ins.eq(n_dot - 1),
        ]
        # The first dot word of the last chunk: every grad of the pass has been taken (so the
        # T set they read is free) and no T of this pass can be written yet.
        new_t_set = d_go & d_first & (kd == c_last)

        label_value = Signal(MW)
        if W >= MW:
            m.d.comb += label_value.eq(payload[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], payload))
        m.d.comb += labels.w_data.eq(label_value)
        m.d.comb += labels.w_en.eq(take & (state == _State.LABEL) & (lab_w == LW - 1))

        with m.If(take & (state == _State.HEADER)):
            nd, ng = payload[0:4], payload[4:8]
            m.d.sync += [n_dot.eq(nd), n_grad.eq(ng), kg.eq(0), sg.eq(0), pg.eq(0),
                         kd.eq(0), kd_next.eq(1), sd.eq(0), pd.eq(0), d_started.eq(0),
                         g_done.eq(ng == 0), d_done.eq(nd == 0),
                         lab_w.eq(0), lab_n.eq(0), wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
            with m.If(nd != 0):
                m.d.sync += state.eq(_State.LABEL)
            with m.Elif(ng != 0):
                m.d.sync += state.eq(_State.CHUNK)
        with m.If(take & (state == _State.LABEL)):
            m.d.sync += lab_acc.eq(label_value)
            with m.If(lab_w == LW - 1):
                m.d.sync += [lab_w.eq(0), lab_n.eq(lab_n + 1)]
                with m.If(lab_n == n_dot - 1):
                    m.d.sync += state.eq(_State.CHUNK)
            with m.Else():
                m.d.sync += lab_w.eq(lab_w + 1)
        with m.If(g_go):
            m.d.sync += [pg.eq(Mux(g_last_p, 0, pg + 1)), rcnt.eq(rcnt + 1)]
            with m.If(g_last_p):
                m.d.sync += sg.eq(Mux(g_last_s, 0, sg + 1))
                with m.If(g_last_s):
                    with m.If(kg == c_last):
                        m.d.sync += g_done.eq(1)
                    with m.Else():
                        m.d.sync += kg.eq(kg + 1)
        with m.If(d_go):
            m.d.sync += [pd.eq(Mux(d_last_p, 0, pd + 1)), wcnt.eq(wcnt + 1), d_started.eq(1)]
            with m.If(d_last_p):
                m.d.sync += sd.eq(Mux(d_last_s, 0, sd + 1))
                with m.If(d_last_s):
                    m.d.sync += d_started.eq(0)
                    with m.If(kd == c_last):
                        m.d.sync += d_done.eq(1)
                    with m.Else():
                        m.d.sync += [kd.eq(kd_next), kd_next.eq(kd_next + 1)]
        # the pass ends when both cursors are done
        g_fin = g_done | (g_go & g_end)
        d_fin = d_done | (d_go & d_end)
        with m.If(in_chunk & g_fin & d_fin):
            m.d.sync += state.eq(_State.HEADER)

        # ------------------------------------------------------------ mode-1 code buffer
        if self.BUF_DEPTH:
            m.submodules.buf = buf = Memory(shape=W, depth=self.BUF_DEPTH, init=[])
            bw = buf.write_port()
            br = buf.read_port(transparent_for=())
            # The write is made one cycle after the issue from registers, so the issue logic
            # (which depends on i_stream.valid) does not drive the RAMs' write enables; the
            # next pass reads this half two cycles later at the earliest.
            bw_addr = Signal.like(bw.addr)
            bw_data = Signal(W)
            bw_en = Signal()
            m.d.sync += [bw_addr.eq(Mux(wh, half, 0) + wcnt), bw_data.eq(payload),
                         bw_en.eq(d_go & mode1)]
            m.d.comb += [
                bw.addr.eq(bw_addr), bw.data.eq(bw_data), bw.en.eq(bw_en),
                br.addr.eq(Mux(wh, 0, half) + rcnt), br.en.eq(1),
                buf_rdata.eq(br.data),
            ]

        # ------------------------------------------------------------ S0 -> S1
        payload1 = Signal(W)
        m.d.sync += payload1.eq(payload)
        # The RAM reads the cursor's chunk every cycle (address from registers, enable
        # constant: no issue logic on the RAMs' pins); a chunk's first word uses the row read in
        # its issue cycle. G's chunks, or D's in a pass without grads.
        m.d.comb += [mem.eng_raddr.eq(Mux(n_grad == 0, kd, kg)), mem.eng_ren.eq(1),
                     mem.host_sel.eq(state == _State.HEADER)]
        t_sel = Signal(signed(MW))
        m.d.sync += t_sel.eq(T[sg])

        # ------------------------------------------------------------ S1: bits, T term
        g1, g2, g3, g4, g5 = gs[1:]
        d1, d2, d3, d4, d5 = ds[1:]
        # G bits: the code buffer's output goes straight into a register (RAM clock-to-out),
        # the stream/buffer choice is made in S2.
        buf_r = Signal(W)
        payload2 = Signal(W)
        m.d.sync += [buf_r.eq(buf_rdata), payload2.eq(payload1)]
        gbits = [Signal(W, name=f"gbits{i}") for i in range(2, 4)]
        dbits = [Signal(W, name=f"dbits{i}") for i in range(1, 6)]
        m.d.comb += [gbits[0].eq(Mux(g2.frombuf, buf_r, payload2)), dbits[0].eq(payload1)]
        for chain in (gbits, dbits):
            for a, b in zip(chain, chain[1:]):
                m.d.sync += b.eq(a)
        m.d.comb += [gterm.t.eq(t_sel), gterm.p.eq(g1.p)]

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
        m.d.comb += [upd.acc.eq(g3.valid), upd.first.eq(g3.first), upd.bits.eq(gbits[1]),
                     upd.term.eq(gterm.term), upd.nterm.eq(gterm.nterm), upd.shr.eq(shr)]

        # ------------------------------------------------------------ S4: subtract, D load
        gmask4 = Signal(W)
        m.d.comb += [gmask4.eq(Mux(g4.lastchunk, last_mask, (1 << W) - 1)),
                     upd.load.eq(g4.valid & g4.first), upd.x_load.eq(x_r3),
                     upd.wb.eq(g4.valid & g4.wb), upd.mask.eq(gmask4)]
        # The dot side's chunk register: from memory (pass without grads), else the chunk's
        # written-back words: in stage 5 now (the write-back one stage ahead) or in x_next.
        x_dot = Signal(row)
        # "the write-back in S5 is D's chunk", decided a stage early from S4/S3 and registered:
        # it selects 32*W multiplexers, so it leaves a flip-flop (ECP5 critical path otherwise)
        bypass = Signal()
        m.d.sync += bypass.eq(g4.valid & g4.wb & (g4.k == d3.k))
        with m.If(d4.valid & d4.first):
            m.d.sync += x_dot.eq(Mux(d4.ram, x_r3, Mux(bypass, upd.x_new, upd.x_next)))

        # ------------------------------------------------------------ S5: write-back, dot
        dmask5 = Signal(W)
        m.d.comb += [dmask5.eq(Mux(d5.lastchunk, last_mask, (1 << W) - 1)),
                     mem.eng_waddr.eq(g5.k), mem.eng_wen.eq(upd.wen),
                     mem.eng_wdata.eq(upd.x_new),
                     dot.i_valid.eq(d5.valid), dot.bits.eq(dbits[4]),
                     dot.mask.eq(dmask5), dot.x.eq(x_dot)]

        # tags of the dot word, delayed to meet the plane sum
        tag = d5
        for i in range(self.dot_latency):
            nxt = Signal(d_layout, name=f"dtag{i}")
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
        with m.If(new_t_set):
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
            for sl in gs[1:] + ds[1:]:
                m.d.sync += sl.valid.eq(0)
        return m
