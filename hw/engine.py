"""The ZipML engine: bit-serial, run-time-precision, double-sampled SGD on a word stream.

docs/engine.md is the contract (stream layout, integer arithmetic, ports); docs/gateware.md
describes the pipeline, its latency and widths. This module holds the top `Engine`: the pass
parser (control, with a grad cursor and a dot cursor), the word pipeline that carries each
plane word with its tags, the code buffer (mode 1 and the floor grid), the dot side's chunk
register, the T registers, the label queue and the counters; the datapath blocks live beside it
(`model_mem`, `update`, `dot`, `loss`, `scalar`).
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, Array, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .dot import PlaneDot, DotAccumulate, sum_width, acc_width
from .loss import SquaredLoss, loss_stage
from .model_mem import ModelMemory, RegisteredRAM, MW
from .scalar import Scalar, STEP_BITS
from .update import GradTerm, ChunkUpdate
from ..reference.golden import EngineConfig

__all__ = ["Engine", "COUNTER_BITS", "engine_members", "last_chunk_lanes"]

#: width of the cycles / samples / words / stall_cycles counters
COUNTER_BITS = 48

# Stages of the word pipeline (docs/gateware.md, "The word pipeline"): a grad word accumulates
# in ACC (ChunkUpdate stage A), a chunk's last one subtracts in SUB and writes back in WB; a dot
# word loads the dot side's chunk register in LOAD (a chunk's first word) and enters the plane
# sum in DOT.
ACC, SUB, WB = 4, 5, 6
LOAD, DOT = 6, 7


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
        members = engine_members("Engine", W, D_MAX, B_MAX, BUF_DEPTH)
        self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH = W, D_MAX, B_MAX, BUF_DEPTH
        self.L2 = bool(L2)
        self.Loss = loss_stage(loss)
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
        W, B_MAX, C_MAX, LW = self.W, self.B_MAX, self.C_MAX, self.LW
        lb = (W - 1).bit_length()
        SW, AW = sum_width(W), acc_width(self.D_MAX)

        m.submodules.mem = mem = ModelMemory(W, C_MAX)
        m.submodules.gterm = gterm = GradTerm()
        m.submodules.upd = upd = ChunkUpdate(W, B_MAX, early_load=True)
        m.submodules.dot = dot = PlaneDot(W)
        m.submodules.acc = acc = DotAccumulate(B_MAX, SW, AW)
        m.submodules.loss = loss = self.Loss(AW)
        m.submodules.scalar = scal = Scalar()

        # ------------------------------------------------------------ static run-time values
        # Registered once more so the divisions by W and the mask stay out of the FSM paths.
        c_m2 = Signal(range(C_MAX))                     # C - 2 (wraps for C = 1: never used)
        c_one = Signal()                                # C == 1
        dm1, last_mask = last_chunk_lanes(m, self.d, W)
        m.d.sync += [c_m2.eq((dm1 >> lb) - 1), c_one.eq((dm1 >> lb) == 0)]
        q_m2 = Signal(6)                                # q - 2 (wraps for q = 1: never used)
        q_one = Signal()
        m.d.sync += [q_m2.eq(self.q - 2), q_one.eq(self.q == 1)]
        # The grid (docs/engine.md, "Grids"): the floor grid's groups have one more plane, the
        # carry, with the last plane's shift; a floor mode-0 dot group one more word still
        # (delta_grad, for the buffer only). Static flags, registered.
        fl = Signal()                                   # floor grid
        bufd = Signal()                                 # G replays from the buffer (mode 1 or
                                                        # floor): dual issue, no grads streamed
        m1 = Signal()                                   # mode 1: D's carry word ends its group
        wskip = Signal()                                # floor mode 0: D's carry (delta_dot)
                                                        # word is not written to the buffer
        lp0 = Signal()                                  # a group's first word is its last
        m.d.sync += [fl.eq(self.grid), bufd.eq(self.mode | self.grid), m1.eq(self.mode),
                     wskip.eq(self.grid & ~self.mode), lp0.eq((self.q == 1) & ~self.grid)]

        # ------------------------------------------------------------ pass parser (stage 0)
        # Two cursors walk the chunks of a pass: G over the grad groups, D over the dot groups.
        # Mode 0 takes both from the stream in stream order (G's groups of chunk k, then D's).
        # Mode 1 takes G's words from the code buffer while D takes the stream: both may issue
        # in the same cycle, G working one chunk ahead of D (docs/gateware.md).
        #
        # Fmax: the issue decision (ready, G, D) and everything it clocks were the long paths of
        # the engine. So the decision is a function of registers (in_hdr, lab_open, d_can,
        # g_can0, g_can1, g_pair1) and t_ok, valid and enable; every comparison is made a
        # cycle early (cursor flags such as "last plane", one-hot cursor distance), and the
        # next decision registers are computed from registers for each case of the events (G
        # issues, D issues, the last label is taken, a header is taken), which only select.
        in_hdr, in_lab, in_chk = Signal(init=1), Signal(), Signal()    # pass state, one-hot
        ng_zero = Signal()                              # n_grad == 0: D reads the model RAM
        ng_m2, nd_m2 = Signal(4), Signal(4)             # n_grad - 2, n_dot - 2 (wrap: unused)
        ng_one, nd_one = Signal(), Signal()
        ins = Signal(range(max(B_MAX, 2)))              # n_dot - 1 (DotAccumulate's insert)
        # planes p = 0..q-1 <= 31: five bits, so no shifter by p sees a sixth select bit
        kg, sg, pg = Signal(range(C_MAX)), Signal(4), Signal(5)
        kd, sd, pd = Signal(range(C_MAX)), Signal(4), Signal(5)
        # cursor flags: last plane (word) of the group, last group, first word of a chunk, last
        # chunk, chunk 0; the word is the code's (t's) last plane p = q-1 (tl), the floor
        # grid's carry plane (cy, shift q like p = q-1, so p stays at q-1), D's floor mode-0
        # delta_grad word (d_xw: buffer only, not a dot plane); D's word goes to the buffer
        # (d_wr)
        g_lp, g_ls, g_first, g_lk = Signal(), Signal(), Signal(), Signal()
        d_lp, d_ls, d_first, d_lk, d_k0 = Signal(), Signal(), Signal(), Signal(), Signal()
        g_tl, g_cy, d_tl, d_cy, d_xw, d_wr = (Signal(name=n) for n in (
            "g_tl", "g_cy", "d_tl", "d_cy", "d_xw", "d_wr"))
        g_done, d_done = Signal(), Signal()
        d_started = Signal()                            # D has issued a word of chunk kd
        # kg - kd while D has words to issue, one-hot a0, a1, a2 (D waits for G, G runs at
        # most one chunk past D): "kg == kd", "kg == kd + 1" and "kg > kd" need no comparator
        a0, a1, a2 = Signal(init=1), Signal(), Signal()
        # G's (D's) next word ends its chunk (ek), and the pass (ep)
        g_ek, g_ep, d_ek, d_ep = Signal(), Signal(), Signal(), Signal()
        t_ok = Signal()                                 # sg < n_t: G's T is there
        # A chunk's first word must not read the model RAM while a write-back of that chunk is
        # in stages 1..WB. G never meets one: its first word in a pass waits for T_0, which
        # comes T_LATENCY > WB cycles after the last dot word of the previous pass, itself
        # after that pass's last write-back. D reads the RAM only in a pass without grads,
        # while G is idle: D waits while any write-back is in flight (wb_busy), at most WB
        # cycles once per epoch segment.
        wb_busy = Signal()
        lab_w = Signal(range(LW))
        lab_n = Signal(4)
        lab_last = Signal()                             # lab_n == n_dot - 1
        lab_acc = Signal(MW)
        n_t = Signal(range(16))                         # T values of the current set written
        T = Array(Signal(signed(MW), name=f"T{i}") for i in range(B_MAX))
        # Label queue of B_MAX registers, head in lab_q[0] (a shift register: the loss stage
        # reads a flip-flop, and there is no LUT RAM, whose read-during-write model gave the
        # ECP5 synthesis a false logic loop). The labels of the next pass wait (rarely) for
        # the finals of this one.
        lab_q = [Signal(MW, name=f"lab_q{i}") for i in range(B_MAX)]
        lab_full = Signal()                             # B_MAX labels queued

        # The decision's inputs, registered (next values from the flags' next values):
        lab_open = Signal()     # a label word may be taken (the label queue has room)
        d_can = Signal()        # the stream word, if any, goes to D now: D's turn (grads streamed)
                                # and, at a chunk's first word, G has finished the chunk in
                                # an earlier cycle (or, without grads, no write-back is in
                                # flight)
        g_can0 = Signal()       # grads streamed: the stream word goes to G (if its T is there)
        g_can1 = Signal()       # buffered: G may replay a word (if its T is there) ...
        g_pair1 = Signal()      # ... or may if D takes a word in the same cycle

        # code buffer (mode 1, floor grid): pass t writes half wh, reads the half pass t-1 wrote
        half = self.BUF_DEPTH // 2
        wh = Signal()
        wcnt = Signal(range(max(half, 1)))
        rcnt = Signal(range(max(half, 1)))

        payload = self.i_stream.payload

        # ------------------------------------------------------------ word pipeline tags
        g_layout = data.StructLayout({
            "valid": 1, "first": 1, "wb": 1, "k": range(C_MAX), "p": 5, "lastchunk": 1,
            "frombuf": 1,
        })
        d_layout = data.StructLayout({
            "valid": 1, "first": 1, "ram": 1, "k": range(C_MAX), "p": 5, "cy": 1, "lastp": 1,
            "chunk0": 1, "lastchunk": 1, "ins": range(max(B_MAX, 2)),
        })
        gs = [Signal(g_layout, name=f"g{i}") for i in range(WB + 1)]
        ds = [Signal(d_layout, name=f"d{i}") for i in range(DOT + 1)]
        for chain in (gs, ds):
            for a, b in zip(chain, chain[1:]):
                m.d.sync += b.eq(a)

        # ------------------------------------------------------------ the decision
        ready = Signal()
        take = Signal()         # a stream word is taken
        g_go = Signal()
        d_go = Signal()
        hdr_take = Signal()
        lab_take = Signal()
        en_valid = self.enable & self.i_stream.valid
        m.d.comb += [
            ready.eq(self.enable & (in_hdr | lab_open | d_can | (g_can0 & t_ok))),
            self.i_stream.ready.eq(ready),
            hdr_take.eq(en_valid & in_hdr),
            lab_take.eq(en_valid & lab_open),
            d_go.eq(en_valid & d_can),
            g_go.eq(self.enable & t_ok & ((self.i_stream.valid & g_can0) | g_can1
                                          | (g_pair1 & d_go))),
            take.eq(hdr_take | lab_take | d_go | (en_valid & g_can0 & t_ok)),
        ]
        go = g_go | take

        g0, d0 = gs[0], ds[0]
        m.d.comb += [
            g0.valid.eq(g_go), g0.first.eq(g_first), g0.wb.eq(g_lp & g_ls), g0.k.eq(kg),
            g0.p.eq(pg), g0.lastchunk.eq(g_lk), g0.frombuf.eq(bufd),
            # the dot sees every D word but delta_grad; its last plane is the carry on the floor
            d0.valid.eq(d_go & ~d_xw), d0.first.eq(d_first), d0.ram.eq(ng_zero), d0.k.eq(kd),
            d0.p.eq(pd), d0.cy.eq(d_cy), d0.lastp.eq(Mux(fl, d_cy, d_lp)), d0.chunk0.eq(d_k0),
            d0.lastchunk.eq(d_lk), d0.ins.eq(ins),
        ]
        # The first dot word of the last chunk: every grad of the pass has been taken (so the
        # T set they read is free) and no T of this pass can be written yet.
        new_t_set = d_go & d_first & d_lk

        label_value = Signal(MW)
        if W >= MW:
            m.d.comb += label_value.eq(payload[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], payload))
        lab_w_last = lab_w == LW - 1
        lab_wr = lab_take & lab_w_last
        lab_end = Signal()                              # the next label word is the last one
        lab_end_take = lab_take & lab_end
        lab_rd = Signal()                               # a sample's dot is finished

        # ------------------------------------------------------------ next values
        nd, ng = payload[0:4], payload[4:8]
        g_grp = g_go & g_lp                             # G ends a group
        g_end_chunk = g_go & g_ek

        def flags_after(g, d, e):
            """The parser flags after a cycle in which G issued (g), D issued (d) and the last
            label word was taken (e), without a header.

            g, d, e are the events, or constants for the decision's look-ahead below."""
            f = {}
            f["g_done"] = g_done | (g & g_ep)
            f["d_done"] = d_done | (d & d_ep)
            f["g_first"] = Mux(g, g_ek, g_first)
            f["d_first"] = Mux(d, d_ek, d_first)
            f["d_started"] = Mux(d, ~d_ek, d_started)
            inc = g & g_ek & ~g_ep & ~d_done            # G moves to the next chunk
            dec = d & d_ek & ~d_ep                      # D moves to the next chunk
            same = ~(inc ^ dec)
            f["a0"] = (a0 & same) | (a1 & dec & ~inc)
            f["a1"] = (a1 & same) | (a0 & inc & ~dec) | (a2 & dec & ~inc)
            f["a2"] = (a2 & same) | (a1 & inc & ~dec)
            # any write-back in stages 1..WB next cycle: this cycle's stage 0 and 1..WB-1
            f["wb_busy"] = ((g & g_ek) | Cat(*(s.valid & s.wb for s in gs[1:WB])).any())
            pass_end = in_chk & f["g_done"] & f["d_done"]
            f["in_hdr"] = in_hdr | pass_end
            f["in_lab"] = in_lab & ~e
            f["in_chk"] = (in_chk & ~pass_end) | e
            f["ng_zero"] = ng_zero
            return f

        hdr = {"g_done": ng == 0, "d_done": nd == 0, "g_first": Const(1), "d_first": Const(1),
               "d_started": Const(0), "a0": Const(1), "a1": Const(0), "a2": Const(0),
               "ng_zero": ng == 0,
               "wb_busy": Cat(*(s.valid & s.wb for s in gs[1:WB])).any(),
               "in_hdr": (nd == 0) & (ng == 0), "in_lab": nd != 0,
               "in_chk": (nd == 0) & (ng != 0)}
        now = flags_after(g_go, d_go, lab_end_take)
        regs = {"g_done": g_done, "d_done": d_done, "g_first": g_first, "d_first": d_first,
                "d_started": d_started, "a0": a0, "a1": a1, "a2": a2,
                "ng_zero": ng_zero, "wb_busy": wb_busy,
                "in_hdr": in_hdr, "in_lab": in_lab, "in_chk": in_chk}
        for name, reg in regs.items():
            m.d.sync += reg.eq(Mux(hdr_take, hdr[name], now[name]))

        # the label queue's fill, one-hot (lab_at[i]: i labels queued)
        lab_at = Signal(B_MAX + 1, init=1)
        n_lab_at = Mux(lab_wr & ~lab_rd, lab_at << 1, Mux(lab_rd & ~lab_wr, lab_at >> 1, lab_at))
        m.d.sync += [lab_at.eq(n_lab_at), lab_full.eq(n_lab_at[B_MAX]),
                     lab_open.eq(Mux(hdr_take, hdr["in_lab"], now["in_lab"]) & ~n_lab_at[B_MAX])]

        # n_t and sg after this cycle's T write, new set and G issue (sg moves to sg + 1, or to
        # 0 after a chunk's last group or a header)
        n_t_after = Mux(scal.o_valid, n_t + 1, n_t)
        m.d.sync += t_ok.eq((scal.o_valid | ~new_t_set)
                            & Mux(hdr_take | g_end_chunk, n_t_after != 0,
                                  Mux(g_grp, sg + 1 < n_t_after, sg < n_t_after)))

        def decision(f):
            """The decision's registered inputs from the flags f of the next cycle."""
            g_eq, g_a1 = f["a0"], f["a1"]
            # grads streamed: the stream word belongs to G while G is on D's chunk
            g_turn = ~f["g_done"] & (g_eq | f["d_done"])
            # D may issue its next word: a chunk's first word only once G has finished that
            # chunk (in an earlier cycle, so its write-back is done by stage LOAD) or, in a
            # pass without grads, while no write-back is in flight (the RAM row is current)
            d_clr = ~f["d_done"] & (~f["d_first"] | Mux(f["ng_zero"], ~f["wb_busy"],
                                                        ~g_eq | f["g_done"]))
            # buffered: G replays while it has words left, at most one chunk ahead of D (so
            # that D takes x_next before G overwrites it), or with D's first word of D's chunk
            g_live = ~f["g_done"] & (f["in_lab"] | f["in_chk"])
            return Cat(f["in_chk"] & (bufd | ~g_turn) & d_clr,                    # d_can
                       ~bufd & f["in_chk"] & g_turn,                              # g_can0
                       bufd & g_live & (g_eq | f["d_done"] | (g_a1 & f["d_started"])),
                       bufd & g_live & g_a1 & ~f["d_done"])                       # g_pair1

        # The decision inputs are computed for each case of G's and D's issue and the labels'
        # end (which D's issue excludes) from registers, and the events only select: the
        # issue logic does not feed the decision logic.
        cases = {(g, d, e): decision(flags_after(Const(g), Const(d), Const(e)))
                 for g in (0, 1) for d, e in ((0, 0), (1, 0), (0, 1))}
        nxt_dec = Mux(hdr_take, decision(hdr),
                      Mux(lab_end_take, Mux(g_go, cases[1, 0, 1], cases[0, 0, 1]),
                          Mux(g_go, Mux(d_go, cases[1, 1, 0], cases[1, 0, 0]),
                              Mux(d_go, cases[0, 1, 0], cases[0, 0, 0]))))
        m.d.sync += Cat(d_can, g_can0, g_can1, g_pair1).eq(nxt_dec)

        # the cursors' last-plane/-group/-chunk flags (their next values also give ek, ep).
        # A group's words: t planes p = 0..q-1 (tl at q-1), then on the floor grid the carry
        # (cy, p held at q-1) and for D in floor mode 0 delta_grad (d_xw). The last word is
        # q-1 (symmetric), the carry (G; D in mode 1) or delta_grad (D in mode 0): after tl
        # the carry is last iff cl, after a carry that is not last delta_grad is.
        n_lp, n_ls, n_lk, n_cy = {}, {}, {}, {}
        for c, go_, lp, ls, lk, tl, cy, cl, p_, s_, k_, n_is1, n_m2, n_hdr1 in (
                ("g", g_go, g_lp, g_ls, g_lk, g_tl, g_cy, Const(1), pg, sg, kg,
                 ng_one, ng_m2, ng == 1),
                ("d", d_go, d_lp, d_ls, d_lk, d_tl, d_cy, m1, pd, sd, kd,
                 nd_one, nd_m2, nd == 1)):
            p_last = p_ == q_m2                         # the next t plane is q-1
            n_lp[c] = Mux(hdr_take, lp0,
                          Mux(go_, Mux(lp, lp0, Mux(tl, cl, cy | (p_last & ~fl))), lp))
            n_tl = Mux(hdr_take, q_one, Mux(go_, Mux(lp, q_one, ~(tl | cy) & p_last), tl))
            n_cy[c] = Mux(hdr_take, 0, Mux(go_, ~lp & tl, cy))
            n_ls[c] = Mux(hdr_take, n_hdr1, Mux(go_ & lp, Mux(ls, n_is1, s_ == n_m2), ls))
            n_lk[c] = Mux(hdr_take, c_one, Mux(go_ & lp & ls & ~lk, k_ == c_m2, lk))
            m.d.sync += [lp.eq(n_lp[c]), ls.eq(n_ls[c]), lk.eq(n_lk[c]), tl.eq(n_tl),
                         cy.eq(n_cy[c])]
        m.d.sync += [d_xw.eq(Mux(hdr_take, 0, Mux(d_go, ~d_lp & d_cy, d_xw))),
                     d_wr.eq(bufd & ~(n_cy["d"] & wskip))]
        m.d.sync += [g_ek.eq(n_lp["g"] & n_ls["g"]), g_ep.eq(n_lp["g"] & n_ls["g"] & n_lk["g"]),
                     d_ek.eq(n_lp["d"] & n_ls["d"]), d_ep.eq(n_lp["d"] & n_ls["d"] & n_lk["d"])]

        with m.If(hdr_take):
            m.d.sync += [ng_m2.eq(ng - 2), nd_m2.eq(nd - 2), ng_one.eq(ng == 1),
                         nd_one.eq(nd == 1), ins.eq(nd - 1),
                         kg.eq(0), sg.eq(0), pg.eq(0), kd.eq(0), sd.eq(0), pd.eq(0),
                         d_k0.eq(1), lab_n.eq(0),
                         wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
        with m.If(lab_take):
            m.d.sync += [lab_acc.eq(label_value), lab_n.eq(Mux(lab_w_last, lab_n + 1, lab_n))]
        n_lab_w = Mux(hdr_take, 0, Mux(lab_take, Mux(lab_w_last, 0, lab_w + 1), lab_w))
        n_lab_last = Mux(hdr_take, nd == 1, Mux(lab_wr, lab_n == nd_m2, lab_last))
        m.d.sync += [lab_w.eq(n_lab_w), lab_last.eq(n_lab_last),
                     lab_end.eq((n_lab_w == LW - 1) & n_lab_last)]
        with m.If(g_go):
            m.d.sync += [pg.eq(Mux(g_lp, 0, Mux(g_tl | g_cy, pg, pg + 1))), rcnt.eq(rcnt + 1)]
            with m.If(g_lp):
                m.d.sync += sg.eq(Mux(g_ls, 0, sg + 1))
                with m.If(g_ls & ~g_lk):
                    m.d.sync += kg.eq(kg + 1)
        with m.If(d_go):
            m.d.sync += [pd.eq(Mux(d_lp, 0, Mux(d_tl | d_cy, pd, pd + 1))),
                         wcnt.eq(Mux(d_wr, wcnt + 1, wcnt))]
            with m.If(d_lp):
                m.d.sync += sd.eq(Mux(d_ls, 0, sd + 1))
                with m.If(d_ls & ~d_lk):
                    m.d.sync += [kd.eq(kd + 1), d_k0.eq(0)]

        # label queue: write at the tail, shift out the head when a sample's dot is finished
        # (the tail position one-hot, so the write enable from the issue logic only gates)
        for i in range(B_MAX):
            follow = lab_q[i + 1] if i + 1 < B_MAX else lab_q[i]
            with m.If(lab_rd):
                m.d.sync += lab_q[i].eq(Mux(lab_wr & lab_at[i + 1], label_value, follow))
            with m.Elif(lab_wr & lab_at[i]):
                m.d.sync += lab_q[i].eq(label_value)

        # ------------------------------------------------------------ mode-1 code buffer
        buf_r = Signal(W)                               # buffer word read in S0, in S2
        if self.BUF_DEPTH:
            m.submodules.buf = buf = RegisteredRAM(W, self.BUF_DEPTH)
            # The write is made one cycle after the issue from registers, so the issue logic
            # (which depends on i_stream.valid) does not drive the RAMs' write enables; the
            # next pass reads this half two cycles later at the earliest.
            bw_addr = Signal.like(buf.w_addr)
            bw_data = Signal(W)
            bw_en = Signal()
            m.d.sync += [bw_addr.eq(Mux(wh, half, 0) + wcnt), bw_data.eq(payload),
                         bw_en.eq(d_go & d_wr)]
            m.d.comb += [buf.w_addr.eq(bw_addr), buf.w_data.eq(bw_data), buf.w_en.eq(bw_en),
                         buf.r_addr.eq(Mux(wh, 0, half) + rcnt), buf_r.eq(buf.r_data)]

        # ------------------------------------------------------------ S0 -> S2: reads
        # The RAM reads the cursor's chunk every cycle (address from registers: no issue logic
        # on the RAMs' pins); a chunk's first word uses the row read in its issue cycle, in S2
        # (the RAM's output register). G's chunks, or D's in a pass without grads.
        m.d.comb += [mem.eng_raddr.eq(Mux(ng_zero, kd, kg)),
                     mem.host_sel.eq(in_hdr)]
        assert ModelMemory.ENG_READ_LATENCY == 2 and RegisteredRAM.LATENCY == 2
        t_sel = Signal(signed(MW))
        m.d.sync += t_sel.eq(T[sg])
        # T term: GradTerm from stage ACC - GradTerm.LATENCY (T is read in S0, in t_sel in S1)
        t_in = t_sel
        for i in range(ACC - GradTerm.LATENCY - 1):
            nxt = Signal(signed(MW), name=f"t_sel{i + 2}")
            m.d.sync += nxt.eq(t_in)
            t_in = nxt
        m.d.comb += [gterm.t.eq(t_in), gterm.p.eq(gs[ACC - GradTerm.LATENCY].p)]

        # G bits: the buffer word (read in S0, registered in the RAM) or the stream word in S2,
        # then delayed to ACC; D bits: the stream word delayed to DOT.
        payload1, payload2 = Signal(W), Signal(W)
        m.d.sync += [payload1.eq(payload), payload2.eq(payload1)]
        gbits = Signal(W, name="gbits2")
        m.d.comb += gbits.eq(Mux(gs[2].frombuf, buf_r, payload2))
        for i in range(3, ACC + 1):
            nxt = Signal(W, name=f"gbits{i}")
            m.d.sync += nxt.eq(gbits)
            gbits = nxt
        dbits = payload1
        for i in range(2, DOT + 1):
            nxt = Signal(W, name=f"dbits{i}")
            m.d.sync += nxt.eq(dbits)
            dbits = nxt

        # model row of a chunk's first word: in S2 from the RAM, delayed to SUB (ChunkUpdate's
        # x_load) and to LOAD (the dot side, in a pass without grads)
        row = data.ArrayLayout(signed(MW), W)
        x_rows = {2: mem.eng_rdata}
        for i in range(3, LOAD + 1):
            x_rows[i] = Signal(row, name=f"x_r{i}")
            m.d.sync += x_rows[i].eq(x_rows[i - 1])
        # L2 shrink (x >> l2_shift, 0 if l2_shift = 0) over two stages, S2 -> S3 by a multiple
        # of 8, S3 -> ACC by 0..7: one 64:1 multiplexer per bit in one stage was the longest
        # path of the ECP5 build
        shr = Signal(row)
        if self.L2:
            l2_hi, l2_lo, l2_zero = Signal(3), Signal(3), Signal()
            m.d.sync += [l2_hi.eq(self.l2_shift[3:]), l2_lo.eq(self.l2_shift[:3]),
                         l2_zero.eq(self.l2_shift == 0)]
            coarse = Signal(row)
            for i in range(W):
                m.d.sync += [coarse[i].eq(x_rows[2][i] >> Cat(Const(0, 3), l2_hi)),
                             shr[i].eq(Mux(l2_zero, 0, coarse[i] >> l2_lo))]

        # ------------------------------------------------------------ ACC: accumulate, load
        gacc, gsub, gwb = gs[ACC], gs[SUB], gs[WB]
        # the chunk's row goes into ChunkUpdate with its first plane (early_load): the load
        # enable is a register, decided from the stage before
        x_ld = Signal()
        m.d.sync += x_ld.eq(gs[ACC - 1].valid & gs[ACC - 1].first)
        m.d.comb += [upd.acc.eq(gacc.valid), upd.first.eq(gacc.first), upd.bits.eq(gbits),
                     upd.term.eq(gterm.term), upd.nterm.eq(gterm.nterm), upd.shr.eq(shr),
                     upd.load.eq(x_ld), upd.x_load.eq(x_rows[ACC])]

        # ------------------------------------------------------------ SUB: subtract
        gmask = Signal(W)
        m.d.comb += [gmask.eq(Mux(gsub.lastchunk, last_mask, (1 << W) - 1)),
                     upd.wb.eq(gsub.valid & gsub.wb), upd.mask.eq(gmask)]

        # ------------------------------------------------------------ WB: write-back
        m.d.comb += [mem.eng_we.eq(upd.wb_c), mem.eng_waddr.eq(gwb.k), mem.eng_wen.eq(upd.wen),
                     mem.eng_wdata.eq(upd.x_new)]

        # ------------------------------------------------------------ LOAD, DOT: dot side
        # The dot side's chunk register, loaded with a chunk's first dot word: from memory (a
        # pass without grads), else the chunk's written-back words in x_next. D issues a
        # chunk's first word a cycle after G's last word of it at the earliest, so in LOAD (one
        # stage after WB) the write-back is done; G's next write-back overwrites x_next at the
        # end of this cycle at the earliest.
        x_dot = Signal(row)
        dload, ddot = ds[LOAD], ds[DOT]
        with m.If(dload.valid & dload.first):
            m.d.sync += x_dot.eq(Mux(dload.ram, x_rows[LOAD], upd.x_next))
        dmask = Signal(W)
        m.d.comb += [dmask.eq(Mux(ddot.lastchunk, last_mask, (1 << W) - 1)),
                     dot.i_valid.eq(ddot.valid), dot.bits.eq(dbits),
                     dot.mask.eq(dmask), dot.x.eq(x_dot)]

        # tags of the dot word, delayed to meet the plane sum
        tag = ddot
        for i in range(self.dot_latency):
            nxt = Signal(d_layout, name=f"dtag{i}")
            m.d.sync += nxt.eq(tag)
            tag = nxt
        m.d.comb += [acc.i_valid.eq(dot.o_valid), acc.s.eq(dot.o_sum), acc.p.eq(tag.p),
                     acc.start.eq(tag.chunk0 & (tag.p == 0) & ~tag.cy),
                     acc.last_plane.eq(tag.lastp),
                     acc.final.eq(tag.lastchunk & tag.lastp), acc.ins.eq(tag.ins)]

        # ------------------------------------------------------------ loss, scalar, T
        m.d.comb += [lab_rd.eq(acc.o_valid),
                     loss.i_valid.eq(acc.o_valid), loss.a.eq(acc.o_a),
                     loss.label.eq(lab_q[0].as_signed()),
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
        m.d.comb += self.idle.eq(in_hdr & (drain == 0))

        # words and stall_cycles count the issue decision one cycle later, from registers: the
        # decision drives enough already without the enables of two 48-bit adders
        took = Signal()
        stalled = Signal()
        m.d.sync += [took.eq(take), stalled.eq(self.enable & ~ready)]
        with m.If(self.enable):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(stalled):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        with m.If(took):
            m.d.sync += self.words.eq(self.words + 1)
        with m.If(scal.o_valid):
            m.d.sync += self.samples.eq(self.samples + 1)
        # the write-back's saturated lanes are registered before their OR (overflow is sticky
        # and read when idle: a cycle later changes nothing)
        wb_ovf = Signal(W)
        m.d.sync += wb_ovf.eq(upd.lane_ovf)
        with m.If(wb_ovf.any() | loss.ovf | scal.ovf):
            m.d.sync += self.overflow.eq(1)

        m.d.comb += [mem.host_addr.eq(self.model_addr), mem.host_we.eq(self.model_we),
                     mem.host_wdata.eq(self.model_wdata), self.model_rdata.eq(mem.host_rdata)]

        with m.If(self.clear):
            m.d.sync += [in_hdr.eq(1), in_lab.eq(0), in_chk.eq(0), n_t.eq(0), t_ok.eq(0),
                         lab_open.eq(0), d_can.eq(0), g_can0.eq(0), g_can1.eq(0),
                         g_pair1.eq(0),
                         wb_busy.eq(0), wh.eq(0), drain.eq(0),
                         lab_full.eq(0), lab_at.eq(1), wb_ovf.eq(0), x_ld.eq(0),
                         took.eq(0), stalled.eq(0),
                         self.cycles.eq(0), self.stall_cycles.eq(0), self.words.eq(0),
                         self.samples.eq(0), self.overflow.eq(0)]
            for sl in gs[1:] + ds[1:]:
                m.d.sync += sl.valid.eq(0)
        return m
