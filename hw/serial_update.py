"""The serial engine's update, a lane a cycle: U accumulators in block RAM and the write-back.

docs/engine.md, "Update", as docs/serial_engine.md builds it: for a grad item's lane i
``U_i = (first plane of the chunk ? 2^(G-1) : U_i) +- term``; for a write-back item's lane
``X' = sat32(X - (U_i >> G) - shrink(X))``. The L2 shrink moves out of U's start value (the
parallel engine's `ChunkUpdate` folds it in): ``floor((U + 2^(G-1) + shrink << G) / 2^G) =
floor((U + 2^(G-1)) / 2^G) + shrink``, the contract's formula.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dot import G
from .lane_loop import Kind, lane_op
from .model_mem import MW
from .update import TERM_W, u_width, sat

__all__ = ["SerialUpdate"]


class SerialUpdate(wiring.Component):
    """The lanes' update accumulators U (a RAM of W words) and the write-back, one lane a cycle.

    U is read in L1, used in L2 and written back (grad lanes) in L3: a lane comes back W
    cycles later. U +- term is added in two halves (L2: the low half and its carry; L3: the
    high half, then the write): a 45-bit carry chain after the RAM output does not make 48 MHz
    on the UP5K. The write-back subtracts ``U >> G`` in L2, the shrink in L3, and saturates in
    L4 (the same ~22 ns as the 48-bit counters on the UP5K: splitting it gains nothing).

    Parameters
    ----------
    W, B_MAX, D_MAX : int
        Lanes, largest minibatch (sizes U), model words.
    L2 : bool
        Build the shrink (one 32-bit shifter); False: ``l2_shift`` is ignored.

    Ports
    -----
    l1, l2 : In(lane_op(D_MAX))
        The lane operation in L1 (its address reads U) and in L2 (grad lanes accumulate).
    term : In(signed(TERM_W))
        L2: the grad term of the lane's item.
    x : In(signed(32))
        L2: the lane's model word.
    l2_shift : In(6)
    x_new : Out(signed(32))
        L4 (comb): ``sat32(X - (U >> G) - shrink(X))`` of the lane two cycles before.
    x_ovf : Out(1)
        L4 (comb): ``x_new`` saturated.

    Latency: U written back 1 cycle after L2; ``x_new`` 2 cycles after L2.
    """

    def __init__(self, W, B_MAX, D_MAX, L2=True):
        self.W, self.B_MAX, self.D_MAX, self.L2 = W, B_MAX, D_MAX, bool(L2)
        super().__init__({
            "l1": In(lane_op(D_MAX)), "l2": In(lane_op(D_MAX)), "term": In(signed(TERM_W)),
            "x": In(signed(MW)), "l2_shift": In(6),
            "x_new": Out(signed(MW)), "x_ovf": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, l1, l2, x = self.W, self.l1, self.l2, self.x
        lb = (W - 1).bit_length()
        UW = u_width(self.B_MAX)
        m.submodules.umem = umem = Memory(shape=signed(UW), depth=W, init=[],
                                          attrs={"ram_style": "block"})
        u_rd = umem.read_port(transparent_for=())
        u_wr = umem.write_port()
        m.d.comb += [u_rd.addr.eq(l1.addr[:lb]), u_rd.en.eq(1)]
        u_old = u_rd.data
        is_grad = l2.valid & (l2.kind == Kind.GRAD)
        UL = UW // 2
        u_base = Signal(signed(UW))
        u_term = Signal(signed(UW))
        u_sub = ~l2.bit
        m.d.comb += [u_base.eq(Mux(l2.gfirst, 1 << (G - 1), u_old)),
                     u_term.eq(self.term ^ u_sub.replicate(UW))]
        u_lo = Signal(UL + 1)                           # low half of the sum, and its carry
        u_hi_a, u_hi_b = Signal(UW - UL), Signal(UW - UL)
        u_go = Signal()
        u_addr = Signal(lb)
        m.d.sync += [u_lo.eq((Cat(u_sub, u_base[:UL]) + Cat(u_sub, u_term[:UL]))[1:]),
                     u_hi_a.eq(u_base[UL:]), u_hi_b.eq(u_term[UL:]), u_go.eq(is_grad),
                     u_addr.eq(l2.addr[:lb])]
        m.d.comb += [u_wr.addr.eq(u_addr), u_wr.en.eq(u_go),
                     u_wr.data.eq(Cat(u_lo[:UL], u_hi_a + u_hi_b + u_lo[UL]))]

        # write-back: X - (U >> G) in L2, the shrink subtracted in L3, saturated in L4
        wb_a = Signal(signed(MW + UW - G + 1))
        wb_shr = Signal(signed(MW))
        m.d.sync += wb_a.eq(x - (u_old >> G))
        if self.L2:
            m.d.sync += wb_shr.eq(Mux(self.l2_shift == 0, 0, x >> self.l2_shift))
        wb_diff = Signal(signed(len(wb_a) + 1))
        m.d.sync += wb_diff.eq(wb_a - wb_shr)
        x_new, x_ovf = sat(m, wb_diff, MW, "x_new")
        m.d.comb += [self.x_new.eq(x_new), self.x_ovf.eq(x_ovf)]
        return m
