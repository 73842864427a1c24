"""The serial engine's dot product, a lane a cycle: the plane sum S and the accumulators A_s.

docs/engine.md, "Dot", as docs/serial_engine.md builds it: for a dot item's lanes
``S = (lane 0 ? 0 : S) +- X_i`` (active lanes), and after its last lane
``A_s += (S << G) >> sh(p)`` (a read-modify-write of a RAM of the samples' A_s). The UP5K's
carry chain costs ~0.3 ns a bit, so both additions are split into halves over two cycles.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dot import G, sum_width, acc_width
from .lane_loop import Kind, lane_op
from .model_mem import MW

__all__ = ["SerialDot"]


class SerialDot(wiring.Component):
    """Plane sum over an item's lanes (L2, L3), then ``A_s += (S << G) >> sh(p)`` (L4..L6).

    The plane sum's low half accumulates in L2, the high half a cycle later with the low
    half's carry (L3); after a dot item's last lane S is in L4. There the plane weight is
    computed and A_s read from its RAM; the sum in two halves, the low one in L5 and the high
    one with its carry in L6, where A_s is written (a sample's next plane comes W cycles
    later). One ~50-bit carry chain per cycle is too slow for the UP5K at 48 MHz.

    Parameters
    ----------
    W, D_MAX : int
        Lanes, model words (size S and A).

    Ports
    -----
    l2, l3, l4 : In(lane_op(D_MAX))
        The lane operation in L2 (dot lanes add), L3 and L4 (an item's last lane: the plane).
    x : In(signed(32))
        L2: the lane's model word.
    final : Out(1)
        L5 (comb): a sample's last plane is being accumulated (its label may be read now).
    o_valid : Out(1)
    a : Out(signed(acc_width(D_MAX)))
        L7: a finished sample's A_s, two cycles after ``final``.

    Latency: ``o_valid`` 5 cycles after the item's last lane in L2.
    """

    def __init__(self, W, D_MAX):
        self.W, self.D_MAX = W, D_MAX
        super().__init__({
            "l2": In(lane_op(D_MAX)), "l3": In(lane_op(D_MAX)), "l4": In(lane_op(D_MAX)),
            "x": In(signed(MW)),
            "final": Out(1), "o_valid": Out(1), "a": Out(signed(acc_width(D_MAX))),
        })

    def elaborate(self, platform):
        m = Module()
        l2, l3, l4 = self.l2, self.l3, self.l4
        SW, AW = sum_width(self.W), acc_width(self.D_MAX)
        is_dot = l2.valid & (l2.kind == Kind.DOT)
        # L2: the low half of the plane sum
        SL = SW // 2
        s_lo = Signal(SL)
        s_hi = Signal(SW - SL)
        s_sub = ~l2.bit
        s_x = Signal(signed(SW))
        m.d.comb += s_x.eq(Mux(l2.active, self.x, 0) ^ s_sub.replicate(SW))
        s_lo_new = Signal(SL + 1)
        m.d.comb += s_lo_new.eq((Cat(s_sub, Mux(l2.first_lane, 0, s_lo))
                                 + Cat(s_sub, s_x[:SL]))[1:])
        s_carry, s_first3, s_dot3 = Signal(), Signal(), Signal()
        s_x_hi = Signal(SW - SL)
        with m.If(is_dot):
            m.d.sync += s_lo.eq(s_lo_new[:SL])
        m.d.sync += [s_carry.eq(s_lo_new[SL]), s_x_hi.eq(s_x[SL:]),
                     s_first3.eq(l2.first_lane), s_dot3.eq(is_dot)]
        # L3: the high half
        s_lo_fin = Signal(SL)
        with m.If(s_dot3):
            m.d.sync += s_hi.eq(Mux(s_first3, 0, s_hi) + s_x_hi + s_carry)
        with m.If(l3.last_lane):
            m.d.sync += s_lo_fin.eq(s_lo)     # the next item's first lane overwrites s_lo now
        ssum = Cat(s_lo_fin, s_hi).as_signed()  # in L4 after a dot item's last lane

        # L4: the plane weight (l4.p = sh(p) - 1), A_s read; L5, L6: the sum in halves
        m.submodules.amem = amem = Memory(shape=signed(AW), depth=16, init=[],
                                          attrs={"ram_style": "block"})
        a_rd = amem.read_port(transparent_for=())
        a_wr = amem.write_port()
        plane_done = l4.valid & (l4.kind == Kind.DOT) & l4.last_lane
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
        # L7: the finished sample
        m.d.comb += self.final.eq(a_go & a_final)
        m.d.sync += [self.o_valid.eq(a_go5 & a_final5), self.a.eq(a_new)]
        return m
