"""The parallel engine's word pipeline: the stages after the parser, a whole chunk a cycle.

Every word the parser (`zipml.hw.parser.PassParser`) issues enters a fixed pipeline that never
stalls, with its tags (docs/gateware.md, "The word pipeline"): a grad word goes down the grad
side (`GradSide`: the shared grad term, the per-lane U accumulators, the chunk's write-back), a
dot word down the dot side (`DotSide`: the chunk register, the plane sum, the accumulators
A_s). The stage numbers count from the issue cycle S0.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from .dot import PlaneDot, DotAccumulate, sum_width, acc_width
from .model_mem import MW
from .update import GradTerm, ChunkUpdate

__all__ = ["ACC", "SUB", "WB", "LOAD", "DOT", "grad_tag", "dot_tag", "GradSide", "DotSide",
           "delayed"]

# A grad word accumulates in ACC (ChunkUpdate stage A), a chunk's last one subtracts in SUB and
# writes back in WB; a dot word loads the dot side's chunk register in LOAD (a chunk's first
# word) and enters the plane sum in DOT.
ACC, SUB, WB = 4, 5, 6
LOAD, DOT = 6, 7


def grad_tag(C_MAX):
    """Tags of a grad word: chunk ``k``, plane ``p`` (its shift), the chunk's first word, its
    last (``wb``: the write-back follows), the pass's last chunk, bits from the code buffer."""
    return data.StructLayout({
        "valid": 1, "first": 1, "wb": 1, "k": range(C_MAX), "p": 5, "lastchunk": 1,
        "frombuf": 1,
    })


def dot_tag(C_MAX, B_MAX):
    """Tags of a dot word: chunk ``k``, plane ``p``, the chunk's first word, its row from the
    RAM (``ram``: a pass without grads), the floor grid's carry (``cy``), the group's last dot
    plane (``lastp``), chunk 0, the pass's last chunk, and ``n_dot - 1`` (``ins``)."""
    return data.StructLayout({
        "valid": 1, "first": 1, "ram": 1, "k": range(C_MAX), "p": 5, "cy": 1, "lastp": 1,
        "chunk0": 1, "lastchunk": 1, "ins": range(max(B_MAX, 2)),
    })


def delayed(m, first, stages, shape, name, start=1):
    """``[first, first delayed 1, ..., delayed stages]``: a chain of registers, the i-th
    named ``f"{name}{start + i}"``."""
    chain = [first]
    for i in range(stages):
        nxt = Signal(shape, name=f"{name}{start + i}")
        m.d.sync += nxt.eq(chain[-1])
        chain.append(nxt)
    return chain


def _lanes(W, last_mask, lastchunk):
    """Active lanes of a chunk: all of them, or the last chunk's."""
    return Mux(lastchunk, last_mask, (1 << W) - 1)


class GradSide(wiring.Component):
    """The grad side of the word pipeline, S1..WB: `GradTerm`, `ChunkUpdate` and the write-back.

    A grad word's T term is shifted in S1..S3 and accumulated into the lanes' U in ACC (the
    chunk's row, read for its first word, goes into `ChunkUpdate` then: ``early_load``); after
    the chunk's last grad word ``X - (U >> G)`` is registered in SUB and the saturated row
    written back in WB.

    Parameters
    ----------
    W, C_MAX, B_MAX : int
        Lanes, chunks, largest minibatch (the engine's).

    Ports
    -----
    tag : In(grad_tag(C_MAX))
        S0: the issued grad word's tags (``valid`` 0: no grad word).
    t : In(signed(32))
        S1: the T of the word's group.
    word : In(W)
        S1: the stream word (the word's bits when they are not from the buffer).
    buf_word : In(W)
        S2: the code buffer's word (the bits with ``frombuf``).
    row : In(ArrayLayout(signed(32), W))
        ACC: the model row of the chunk (as read for its first word).
    shr : In(ArrayLayout(signed(32), W))
        ACC: ``shrink(row)`` (0 without L2).
    last_mask : In(W)
        Active lanes of the pass's last chunk.
    clear : In(1)
        Empty the pipeline.
    wb_inflight : Out(1)
        Comb: a chunk's last grad word is in S1..WB-1 (its write-back is coming).
    we, waddr, wen, wdata : Out
        WB: the write-back to the model RAM (a write, the chunk, the active lanes, the row).
    x_next : Out(ArrayLayout(signed(32), W))
        The last written-back row (for the dot side).
    ovf : Out(1)
        A lane of the write-back in the previous cycle saturated (registered before the OR).

    Latency: write-back in WB = 6, two cycles after the chunk's last grad word in ACC.
    """

    def __init__(self, W, C_MAX, B_MAX):
        self.W, self.C_MAX, self.B_MAX = W, C_MAX, B_MAX
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({
            "tag": In(grad_tag(C_MAX)), "t": In(signed(MW)), "word": In(W), "buf_word": In(W),
            "row": In(row), "shr": In(row), "last_mask": In(W), "clear": In(1),
            "wb_inflight": Out(1),
            "we": Out(1), "waddr": Out(range(C_MAX)), "wen": Out(W), "wdata": Out(row),
            "x_next": Out(row), "ovf": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.W
        m.submodules.gterm = gterm = GradTerm()
        m.submodules.upd = upd = ChunkUpdate(W, self.B_MAX, early_load=True)
        gs = delayed(m, self.tag, WB, grad_tag(self.C_MAX), "g")
        m.d.comb += self.wb_inflight.eq(Cat(*(s.valid & s.wb for s in gs[1:WB])).any())

        # T term: GradTerm from stage ACC - GradTerm.LATENCY (T is read in S0, here in S1)
        t_in = delayed(m, self.t, ACC - GradTerm.LATENCY - 1, signed(MW), "t_sel", 2)[-1]
        m.d.comb += [gterm.t.eq(t_in), gterm.p.eq(gs[ACC - GradTerm.LATENCY].p)]
        # the bits: the buffer word (read in S0, registered in the RAM) or the stream word in
        # S2, then delayed to ACC
        payload2 = Signal(W)
        m.d.sync += payload2.eq(self.word)
        gbits = Signal(W, name="gbits2")
        m.d.comb += gbits.eq(Mux(gs[2].frombuf, self.buf_word, payload2))
        gbits = delayed(m, gbits, ACC - 2, W, "gbits", 3)[-1]

        # ACC: accumulate; the chunk's row goes into ChunkUpdate with its first plane
        # (early_load): the load enable is a register, decided from the stage before
        gacc, gsub, gwb = gs[ACC], gs[SUB], gs[WB]
        x_ld = Signal()
        m.d.sync += x_ld.eq(gs[ACC - 1].valid & gs[ACC - 1].first)
        m.d.comb += [upd.acc.eq(gacc.valid), upd.first.eq(gacc.first), upd.bits.eq(gbits),
                     upd.term.eq(gterm.term), upd.nterm.eq(gterm.nterm), upd.shr.eq(self.shr),
                     upd.load.eq(x_ld), upd.x_load.eq(self.row)]
        # SUB: subtract
        gmask = Signal(W)
        m.d.comb += [gmask.eq(_lanes(W, self.last_mask, gsub.lastchunk)),
                     upd.wb.eq(gsub.valid & gsub.wb), upd.mask.eq(gmask)]
        # WB: write-back
        m.d.comb += [self.we.eq(upd.wb_c), self.waddr.eq(gwb.k), self.wen.eq(upd.wen),
                     self.wdata.eq(upd.x_new), self.x_next.eq(upd.x_next)]
        # the saturated lanes are registered before their OR (overflow is sticky and read when
        # idle: a cycle later changes nothing)
        wb_ovf = Signal(W)
        m.d.sync += wb_ovf.eq(upd.lane_ovf)
        m.d.comb += self.ovf.eq(wb_ovf.any())

        with m.If(self.clear):
            m.d.sync += [wb_ovf.eq(0), x_ld.eq(0)]
            for sl in gs[1:]:
                m.d.sync += sl.valid.eq(0)
        return m


class DotSide(wiring.Component):
    """The dot side of the word pipeline, S1..: chunk register, `PlaneDot`, `DotAccumulate`.

    A chunk's first dot word loads the chunk register in LOAD: from the grad side's last
    write-back (``x_next``), or from the RAM row in a pass without grads. The parser issues a
    chunk's first dot word a cycle after the grad side's last word of it at the earliest, so in
    LOAD (one stage after WB) the write-back is in ``x_next``: no bypass. The plane sum starts
    in DOT; the tags follow it to `DotAccumulate`.

    Parameters
    ----------
    W, C_MAX, B_MAX, D_MAX : int
        The engine's.

    Ports
    -----
    tag : In(dot_tag(C_MAX, B_MAX))
        S0: the issued dot word's tags (``valid`` 0: no dot word).
    word : In(W)
        S1: the stream word (the plane's bits).
    row : In(ArrayLayout(signed(32), W))
        LOAD: the model row of the chunk (as read for its first word).
    x_next : In(ArrayLayout(signed(32), W))
        The grad side's last written-back row.
    last_mask : In(W)
        Active lanes of the pass's last chunk.
    clear : In(1)
        Empty the pipeline.
    o_valid : Out(1)
    a : Out(signed(acc_width(D_MAX)))
        A finished sample's A_s (after its last plane of the last chunk).

    Latency: ``DOT + PlaneDot.latency(W) + DotAccumulate.LATENCY`` from the issue of a
    sample's last dot word to ``o_valid``.
    """

    def __init__(self, W, C_MAX, B_MAX, D_MAX):
        self.W, self.C_MAX, self.B_MAX, self.D_MAX = W, C_MAX, B_MAX, D_MAX
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({
            "tag": In(dot_tag(C_MAX, B_MAX)), "word": In(W), "row": In(row), "x_next": In(row),
            "last_mask": In(W), "clear": In(1),
            "o_valid": Out(1), "a": Out(signed(acc_width(D_MAX))),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.W
        m.submodules.dot = dot = PlaneDot(W)
        m.submodules.acc = acc = DotAccumulate(self.B_MAX, sum_width(W), acc_width(self.D_MAX))
        layout = dot_tag(self.C_MAX, self.B_MAX)
        ds = delayed(m, self.tag, DOT, layout, "d")
        dbits = delayed(m, self.word, DOT - 1, W, "dbits", 2)[-1]

        x_dot = Signal(data.ArrayLayout(signed(MW), W))
        dload, ddot = ds[LOAD], ds[DOT]
        with m.If(dload.valid & dload.first):
            m.d.sync += x_dot.eq(Mux(dload.ram, self.row, self.x_next))
        dmask = Signal(W)
        m.d.comb += [dmask.eq(_lanes(W, self.last_mask, ddot.lastchunk)),
                     dot.i_valid.eq(ddot.valid), dot.bits.eq(dbits),
                     dot.mask.eq(dmask), dot.x.eq(x_dot)]

        # the tags of the dot word, delayed to meet the plane sum
        tag = delayed(m, ddot, dot.LATENCY, layout, "dtag", 0)[-1]
        m.d.comb += [acc.i_valid.eq(dot.o_valid), acc.s.eq(dot.o_sum), acc.p.eq(tag.p),
                     acc.start.eq(tag.chunk0 & (tag.p == 0) & ~tag.cy),
                     acc.last_plane.eq(tag.lastp),
                     acc.final.eq(tag.lastchunk & tag.lastp), acc.ins.eq(tag.ins),
                     self.o_valid.eq(acc.o_valid), self.a.eq(acc.o_a)]

        with m.If(self.clear):
            for sl in ds[1:]:
                m.d.sync += sl.valid.eq(0)
        return m
