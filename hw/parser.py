"""The parallel engine's pass parser: stage S0 of the word pipeline (docs/gateware.md).

The parser takes headers and labels from the stream and walks the chunks of a pass with two
cursors (`Cursor`): G over the grad groups (mode 0: from the stream; mode 1 and the floor grid:
from the code buffer), D over the dot groups (always from the stream). Mode 0 takes one stream
word per cycle in stream order (G's groups of chunk k, then D's). With the buffer, G and D may
issue in the same cycle, G working at most one chunk ahead of D.

Fmax: the issue decision (``ready``, G, D) and everything it clocks were the long paths of the
engine. So the decision is a function of registers (``in_hdr``, ``lab_open``, ``d_can``,
``g_can0``, ``g_can1``, ``g_pair1``) and ``t_ok``, ``valid`` and ``enable``; every comparison
is made a cycle early (cursor flags such as "last plane", the one-hot cursor distance), and the
next decision registers are computed from registers for each case of the events (G issues, D
issues, the last label is taken, a header is taken), which only select.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, unsigned
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .model_mem import MW
from .word_pipeline import grad_tag, dot_tag

__all__ = ["PassParser", "Cursor"]


class Cursor(wiring.Component):
    """One of the parser's cursors: chunk ``k``, group ``s``, plane ``p``, and its flags.

    A group's words: the t planes p = 0..q-1 (``tl`` at q-1), then on the floor grid the carry
    (``cy``, p held at q-1: the carry has the last t plane's shift) and, for D in floor mode 0,
    delta_grad (the parser's ``d_xw``). The last word is q-1 (symmetric), the carry (G; D in
    mode 1) or delta_grad (D in floor mode 0): after ``tl`` the carry is last iff ``cl``, after
    a carry that is not last delta_grad is. The flags are registered from their next values, so
    the parser never compares in its issue cycle.

    Parameters
    ----------
    C_MAX : int
        Chunks.

    Ports
    -----
    start : In(1)
        A header is taken: the cursor goes to word 0 of group 0 of chunk 0.
    n : In(4)
        With ``start``: the pass's groups per chunk (n_grad or n_dot, from the header).
    go : In(1)
        The cursor's word issues: it moves to the next word.
    q_m2, q_one, lp0, fl, c_m2, c_one : In
        Registered run-time values: q - 2, q == 1, "a group's first word is its last", the
        floor grid, C - 2, C == 1.
    cl : In(1)
        The carry ends a group (1 for G; D: mode 1).
    k : Out(range(C_MAX)), s : Out(4), p : Out(5)
        The word the cursor is at (p stays at q-1 for the carry and delta_grad).
    lp, ls, lk : Out(1)
        It is the last word of its group, the last group, the last chunk.
    tl, cy : Out(1)
        It is t's last plane (q-1), the floor grid's carry.
    cy_next : Out(1)
        Comb: ``cy`` after this cycle.
    ek, ep : Out(1)
        The next word ends its chunk, the pass.
    n_m2 : Out(4), n_one : Out(1)
        ``n - 2`` and ``n == 1`` of the pass.

    Latency: every output (but ``cy_next``) is a register, updated at the edge after ``go``
    or ``start`` (``go`` wins).
    """

    def __init__(self, C_MAX):
        super().__init__({
            "start": In(1), "n": In(4), "go": In(1),
            "q_m2": In(6), "q_one": In(1), "lp0": In(1), "fl": In(1), "cl": In(1),
            "c_m2": In(range(C_MAX)), "c_one": In(1),
            "k": Out(range(C_MAX)), "s": Out(4), "p": Out(5),
            "lp": Out(1), "ls": Out(1), "lk": Out(1), "tl": Out(1), "cy": Out(1),
            "cy_next": Out(1), "ek": Out(1), "ep": Out(1), "n_m2": Out(4), "n_one": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        start, go, k, s, p = self.start, self.go, self.k, self.s, self.p
        lp, ls, lk, tl, cy = self.lp, self.ls, self.lk, self.tl, self.cy
        p_last = p == self.q_m2                         # the next t plane is q-1
        n_lp = Mux(start, self.lp0,
                   Mux(go, Mux(lp, self.lp0, Mux(tl, self.cl, cy | (p_last & ~self.fl))), lp))
        n_tl = Mux(start, self.q_one, Mux(go, Mux(lp, self.q_one, ~(tl | cy) & p_last), tl))
        n_cy = Mux(start, 0, Mux(go, ~lp & tl, cy))
        n_ls = Mux(start, self.n == 1, Mux(go & lp, Mux(ls, self.n_one, s == self.n_m2), ls))
        n_lk = Mux(start, self.c_one, Mux(go & lp & ls & ~lk, k == self.c_m2, lk))
        m.d.sync += [lp.eq(n_lp), ls.eq(n_ls), lk.eq(n_lk), tl.eq(n_tl), cy.eq(n_cy),
                     self.ek.eq(n_lp & n_ls), self.ep.eq(n_lp & n_ls & n_lk)]
        m.d.comb += self.cy_next.eq(n_cy)
        with m.If(start):
            m.d.sync += [self.n_m2.eq(self.n - 2), self.n_one.eq(self.n == 1),
                         k.eq(0), s.eq(0), p.eq(0)]
        with m.If(go):
            m.d.sync += p.eq(Mux(lp, 0, Mux(tl | cy, p, p + 1)))
            with m.If(lp):
                m.d.sync += s.eq(Mux(ls, 0, s + 1))
                with m.If(ls & ~lk):
                    m.d.sync += k.eq(k + 1)
        return m


#: the pass state and the decision's look-ahead flags, registered (name, init)
_FLAGS = (("in_hdr", 1), ("in_lab", 0), ("in_chk", 0),      # pass state, one-hot
          ("g_done", 0), ("d_done", 0),                    # the cursor has issued its last word
          ("g_first", 0), ("d_first", 0),                  # its next word is a chunk's first
          ("d_started", 0),                                # D has issued a word of chunk kd
          # kg - kd while D has words to issue, one-hot (D waits for G, G runs at most one
          # chunk past D): "kg == kd", "kg == kd + 1" and "kg > kd" need no comparator
          ("a0", 1), ("a1", 0), ("a2", 0),
          ("ng_zero", 0),                                  # n_grad == 0: D reads the model RAM
          ("wb_busy", 0))                                  # a write-back is in stages 1..WB


def _flags_after(r, gc, dc, wb_inflight, g, d, e):
    """The parser flags after a cycle in which G issued (g), D issued (d) and the last label
    word was taken (e), without a header; ``r`` the flags now, ``gc``, ``dc`` the cursors.

    g, d, e are the events, or constants for the decision's look-ahead."""
    f = {}
    f["g_done"] = r["g_done"] | (g & gc.ep)
    f["d_done"] = r["d_done"] | (d & dc.ep)
    f["g_first"] = Mux(g, gc.ek, r["g_first"])
    f["d_first"] = Mux(d, dc.ek, r["d_first"])
    f["d_started"] = Mux(d, ~dc.ek, r["d_started"])
    inc = g & gc.ek & ~gc.ep & ~r["d_done"]             # G moves to the next chunk
    dec = d & dc.ek & ~dc.ep                            # D moves to the next chunk
    same = ~(inc ^ dec)
    a0, a1, a2 = r["a0"], r["a1"], r["a2"]
    f["a0"] = (a0 & same) | (a1 & dec & ~inc)
    f["a1"] = (a1 & same) | (a0 & inc & ~dec) | (a2 & dec & ~inc)
    f["a2"] = (a2 & same) | (a1 & inc & ~dec)
    # any write-back in stages 1..WB next cycle: this cycle's stage 0 and 1..WB-1
    f["wb_busy"] = (g & gc.ek) | wb_inflight
    pass_end = r["in_chk"] & f["g_done"] & f["d_done"]
    f["in_hdr"] = r["in_hdr"] | pass_end
    f["in_lab"] = r["in_lab"] & ~e
    f["in_chk"] = (r["in_chk"] & ~pass_end) | e
    f["ng_zero"] = r["ng_zero"]
    return f


def _decision(f, bufd):
    """The decision's registered inputs (d_can, g_can0, g_can1, g_pair1) from the flags f of
    the next cycle."""
    g_eq, g_a1 = f["a0"], f["a1"]
    # grads streamed: the stream word belongs to G while G is on D's chunk
    g_turn = ~f["g_done"] & (g_eq | f["d_done"])
    # D may issue its next word: a chunk's first word only once G has finished that chunk (in
    # an earlier cycle, so its write-back is done by stage LOAD) or, in a pass without grads,
    # while no write-back is in flight (the RAM row is current)
    d_clr = ~f["d_done"] & (~f["d_first"] | Mux(f["ng_zero"], ~f["wb_busy"],
                                                ~g_eq | f["g_done"]))
    # buffered: G replays while it has words left, at most one chunk ahead of D (so that D
    # takes x_next before G overwrites it), or with D's first word of D's chunk
    g_live = ~f["g_done"] & (f["in_lab"] | f["in_chk"])
    return Cat(f["in_chk"] & (bufd | ~g_turn) & d_clr,                    # d_can
               ~bufd & f["in_chk"] & g_turn,                              # g_can0
               bufd & g_live & (g_eq | f["d_done"] | (g_a1 & f["d_started"])),   # g_can1
               bufd & g_live & g_a1 & ~f["d_done"])                       # g_pair1


class PassParser(wiring.Component):
    """Stage S0 of the parallel engine: pass state, the issue decision, two cursors, labels.

    Parameters
    ----------
    W, D_MAX, B_MAX, BUF_DEPTH : int
        The engine's (`zipml.hw.engine.Engine`).

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The engine's word stream (``ready`` from registers, ``enable`` and ``t_ok``).
    enable, clear : In(1)
        The engine's.
    q, mode, grid : In
        Run-time registers (registered once more here, out of the decision's paths).
    c_last : In(unsigned(bits(D_MAX)))
        ``(d - 1) >> log2 W``: the pass's last chunk.
    wb_inflight : In(1)
        A chunk's last grad word is in stages 1..WB-1 (`zipml.hw.word_pipeline.GradSide`).
    t_write : In(1), n_t : In(range(16))
        A T is written, and how many of the set are (`zipml.hw.t_values.TValues`).
    lab_full_next : In(1)
        The label queue is full after this cycle (`zipml.hw.label_queue.LabelQueue`).
    g_tag : Out(grad_tag(C_MAX)), d_tag : Out(dot_tag(C_MAX, B_MAX))
        The words issued this cycle (S0) to the grad and dot sides.
    go : Out(1)
        A word is issued or taken this cycle.
    took : Out(1)
        A stream word was taken in the previous cycle (registered).
    in_hdr : Out(1)
        Waiting for a header: no pass in progress.
    new_t_set : Out(1)
        D issues the first word of the pass's last chunk: every grad of the pass has read its
        T, and no T of the pass can be written yet.
    lab_wr : Out(1), label : Out(32)
        A label is complete (its last word is taken this cycle).
    t_index : Out(4)
        G's group: the T it needs (read in S0).
    row_k : Out(range(C_MAX))
        The chunk the model RAM reads: G's, or D's in a pass without grads.
    buf_half, buf_waddr, buf_wen, buf_raddr : Out
        The code buffer's half (swapped by each header), D's write counter and write (of the
        stream word this cycle), G's read counter (`zipml.hw.code_buffer.CodeBuffer`).

    Latency: combinational from ``valid`` and ``enable`` to ``ready`` and the tags (S0).
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
            "wb_inflight": In(1), "t_write": In(1), "n_t": In(range(16)),
            "lab_full_next": In(1),
            "g_tag": Out(grad_tag(C_MAX)), "d_tag": Out(dot_tag(C_MAX, B_MAX)),
            "go": Out(1), "took": Out(1), "in_hdr": Out(1), "new_t_set": Out(1),
            "lab_wr": Out(1), "label": Out(MW), "t_index": Out(4), "row_k": Out(range(C_MAX)),
            "buf_half": Out(1), "buf_waddr": Out(range(half)), "buf_wen": Out(1),
            "buf_raddr": Out(range(half)),
        })

    def elaborate(self, platform):
        m = Module()
        B_MAX, C_MAX = self.B_MAX, self.C_MAX
        payload = self.i_stream.payload

        # Static run-time values, registered once more so the divisions by W stay out of the
        # decision's paths. The grid (docs/engine.md, "Grids"): the floor grid's groups have
        # one more plane, the carry, with the last plane's shift; a floor mode-0 dot group one
        # more word still (delta_grad, for the buffer only).
        c_m2 = Signal(range(C_MAX))                     # C - 2 (wraps for C = 1: never used)
        c_one = Signal()                                # C == 1
        q_m2 = Signal(6)                                # q - 2 (wraps for q = 1: never used)
        q_one = Signal()
        fl = Signal()                                   # floor grid
        bufd = Signal()                                 # G replays from the buffer (mode 1 or
                                                        # floor): dual issue, no grads streamed
        m1 = Signal()                                   # mode 1: D's carry word ends its group
        wskip = Signal()                                # floor mode 0: D's carry (delta_dot)
                                                        # word is not written to the buffer
        lp0 = Signal()                                  # a group's first word is its last
        m.d.sync += [c_m2.eq(self.c_last - 1), c_one.eq(self.c_last == 0),
                     q_m2.eq(self.q - 2), q_one.eq(self.q == 1),
                     fl.eq(self.grid), bufd.eq(self.mode | self.grid), m1.eq(self.mode),
                     wskip.eq(self.grid & ~self.mode), lp0.eq((self.q == 1) & ~self.grid)]

        r = {name: Signal(init=init, name=name) for name, init in _FLAGS}
        in_hdr, in_lab, in_chk, ng_zero = r["in_hdr"], r["in_lab"], r["in_chk"], r["ng_zero"]
        # the decision's inputs, registered (next values from the flags' next values)
        lab_open = Signal()     # a label word may be taken (the label queue has room)
        d_can = Signal()        # the stream word, if any, goes to D now: D's turn (grads
                                # streamed) and, at a chunk's first word, G has finished the
                                # chunk in an earlier cycle (or, without grads, no write-back
                                # is in flight)
        g_can0 = Signal()       # grads streamed: the stream word goes to G (if its T is there)
        g_can1 = Signal()       # buffered: G may replay a word (if its T is there) ...
        g_pair1 = Signal()      # ... or may if D takes a word in the same cycle
        t_ok = Signal()         # sg < n_t: G's T is there

        ready, take, g_go, d_go, hdr_take, lab_take = (Signal(name=n) for n in (
            "ready", "take", "g_go", "d_go", "hdr_take", "lab_take"))
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
            self.go.eq(g_go | take),
        ]

        # the cursors; the header's counts n_dot, n_grad
        nd, ng = payload[0:4], payload[4:8]
        m.submodules.gcur = gc = Cursor(C_MAX)
        m.submodules.dcur = dc = Cursor(C_MAX)
        for c, go_, n, cl in ((gc, g_go, ng, Const(1)), (dc, d_go, nd, m1)):
            m.d.comb += [c.start.eq(hdr_take), c.go.eq(go_), c.n.eq(n), c.cl.eq(cl),
                         c.q_m2.eq(q_m2), c.q_one.eq(q_one), c.lp0.eq(lp0), c.fl.eq(fl),
                         c.c_m2.eq(c_m2), c.c_one.eq(c_one)]
        # D's word is floor mode 0's delta_grad (d_xw: buffer only, not a dot plane), goes to
        # the buffer (d_wr); D is in chunk 0 (d_k0)
        d_xw, d_wr, d_k0 = Signal(), Signal(), Signal()
        ins = Signal(range(max(B_MAX, 2)))              # n_dot - 1 (DotAccumulate's insert)
        m.d.sync += [d_xw.eq(Mux(hdr_take, 0, Mux(d_go, ~dc.lp & dc.cy, d_xw))),
                     d_wr.eq(bufd & ~(dc.cy_next & wskip))]

        g0, d0 = self.g_tag, self.d_tag
        m.d.comb += [
            g0.valid.eq(g_go), g0.first.eq(r["g_first"]), g0.wb.eq(gc.lp & gc.ls),
            g0.k.eq(gc.k), g0.p.eq(gc.p), g0.lastchunk.eq(gc.lk), g0.frombuf.eq(bufd),
            # the dot sees every D word but delta_grad; its last plane is the carry on the floor
            d0.valid.eq(d_go & ~d_xw), d0.first.eq(r["d_first"]), d0.ram.eq(ng_zero),
            d0.k.eq(dc.k), d0.p.eq(dc.p), d0.cy.eq(dc.cy), d0.lastp.eq(Mux(fl, dc.cy, dc.lp)),
            d0.chunk0.eq(d_k0), d0.lastchunk.eq(dc.lk), d0.ins.eq(ins),
        ]
        new_t_set = d_go & r["d_first"] & dc.lk
        lab_wr, lab_end = self._labels(m, hdr_take, lab_take, nd, dc.n_m2)
        lab_end_take = lab_take & lab_end

        # the next values of the flags and of the decision registers
        hdr = {"g_done": ng == 0, "d_done": nd == 0, "g_first": Const(1), "d_first": Const(1),
               "d_started": Const(0), "a0": Const(1), "a1": Const(0), "a2": Const(0),
               "ng_zero": ng == 0, "wb_busy": self.wb_inflight,
               "in_hdr": (nd == 0) & (ng == 0), "in_lab": nd != 0,
               "in_chk": (nd == 0) & (ng != 0)}
        now = _flags_after(r, gc, dc, self.wb_inflight, g_go, d_go, lab_end_take)
        for name, reg in r.items():
            m.d.sync += reg.eq(Mux(hdr_take, hdr[name], now[name]))
        m.d.sync += lab_open.eq(Mux(hdr_take, hdr["in_lab"], now["in_lab"])
                                & ~self.lab_full_next)
        # t_ok: n_t and sg after this cycle's T write, new set and G issue (sg moves to sg + 1,
        # or to 0 after a chunk's last group or a header)
        n_t_after = Mux(self.t_write, self.n_t + 1, self.n_t)
        m.d.sync += t_ok.eq((self.t_write | ~new_t_set)
                            & Mux(hdr_take | (g_go & gc.ek), n_t_after != 0,
                                  Mux(g_go & gc.lp, gc.s + 1 < n_t_after, gc.s < n_t_after)))
        # The decision inputs are computed for each case of G's and D's issue and the labels'
        # end (which D's issue excludes) from registers, and the events only select: the
        # issue logic does not feed the decision logic.
        cases = {(g, d, e): _decision(_flags_after(r, gc, dc, self.wb_inflight,
                                                   Const(g), Const(d), Const(e)), bufd)
                 for g in (0, 1) for d, e in ((0, 0), (1, 0), (0, 1))}
        nxt_dec = Mux(hdr_take, _decision(hdr, bufd),
                      Mux(lab_end_take, Mux(g_go, cases[1, 0, 1], cases[0, 0, 1]),
                          Mux(g_go, Mux(d_go, cases[1, 1, 0], cases[1, 0, 0]),
                              Mux(d_go, cases[0, 1, 0], cases[0, 0, 0]))))
        m.d.sync += Cat(d_can, g_can0, g_can1, g_pair1).eq(nxt_dec)

        # code buffer (mode 1, floor grid): pass t writes half wh, reads the half pass t-1 wrote
        wh = Signal()
        wcnt, rcnt = Signal.like(self.buf_waddr), Signal.like(self.buf_raddr)
        with m.If(hdr_take):
            m.d.sync += [ins.eq(nd - 1), d_k0.eq(1), wh.eq(~wh), wcnt.eq(0), rcnt.eq(0)]
        with m.If(g_go):
            m.d.sync += rcnt.eq(rcnt + 1)
        with m.If(d_go):
            m.d.sync += wcnt.eq(Mux(d_wr, wcnt + 1, wcnt))
            with m.If(dc.lp):
                with m.If(dc.ls & ~dc.lk):
                    m.d.sync += d_k0.eq(0)
        m.d.sync += self.took.eq(take)
        m.d.comb += [self.in_hdr.eq(in_hdr), self.new_t_set.eq(new_t_set),
                     self.lab_wr.eq(lab_wr), self.t_index.eq(gc.s),
                     self.row_k.eq(Mux(ng_zero, dc.k, gc.k)),
                     self.buf_half.eq(wh), self.buf_waddr.eq(wcnt), self.buf_wen.eq(d_go & d_wr),
                     self.buf_raddr.eq(rcnt)]

        with m.If(self.clear):
            m.d.sync += [in_hdr.eq(1), in_lab.eq(0), in_chk.eq(0), t_ok.eq(0),
                         lab_open.eq(0), d_can.eq(0), g_can0.eq(0), g_can1.eq(0),
                         g_pair1.eq(0), r["wb_busy"].eq(0), wh.eq(0), self.took.eq(0)]
        return m

    def _labels(self, m, hdr_take, lab_take, nd, nd_m2):
        """The label words of a pass: assemble each label (``LW`` words) into ``label`` and
        count them; returns (a label is complete this cycle, the next label word is the pass's
        last)."""
        W, LW, payload = self.W, self.LW, self.i_stream.payload
        lab_w = Signal(range(LW))
        lab_n = Signal(4)
        lab_last = Signal()                             # lab_n == n_dot - 1
        lab_acc = Signal(MW)
        lab_end = Signal()                              # the next label word is the last one
        label_value = self.label
        if W >= MW:
            m.d.comb += label_value.eq(payload[:MW])
        else:
            m.d.comb += label_value.eq(Cat(lab_acc[W:], payload))
        lab_w_last = lab_w == LW - 1
        lab_wr = lab_take & lab_w_last
        with m.If(hdr_take):
            m.d.sync += lab_n.eq(0)
        with m.If(lab_take):
            m.d.sync += [lab_acc.eq(label_value), lab_n.eq(Mux(lab_w_last, lab_n + 1, lab_n))]
        n_lab_w = Mux(hdr_take, 0, Mux(lab_take, Mux(lab_w_last, 0, lab_w + 1), lab_w))
        n_lab_last = Mux(hdr_take, nd == 1, Mux(lab_wr, lab_n == nd_m2, lab_last))
        m.d.sync += [lab_w.eq(n_lab_w), lab_last.eq(n_lab_last),
                     lab_end.eq((n_lab_w == LW - 1) & n_lab_last)]
        return lab_wr, lab_end
