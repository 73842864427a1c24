"""The L2 shrink of a chunk: ``shrink(X) = X >> l2_shift`` per lane, 0 when l2_shift = 0.

docs/engine.md, "Update": the L2 term ``gamma * lambda * X`` with ``gamma * lambda`` rounded to a
power of two. The parallel engine folds it into the start value of U (`ChunkUpdate`); the
golden model's function is ``shrink``.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from .model_mem import MW

__all__ = ["Shrink"]


class Shrink(wiring.Component):
    """``shr_i = row_i >> l2_shift`` (0 if l2_shift = 0) for the W lanes of a row, in two stages.

    The shift by a multiple of 8 first, then by 0..7: one 64:1 multiplexer per bit in one
    stage was the longest path of the ECP5 build. Two floors by 8a and b are one floor by
    8a + b.

    Parameters
    ----------
    W : int
        Lanes.

    Ports
    -----
    row : In(ArrayLayout(signed(32), W))
    l2_shift : In(6)
        Registered here first: hold it a cycle before the row.
    shr : Out(ArrayLayout(signed(32), W))
        ``shrink(row)`` ``LATENCY`` = 2 clock edges after the row; one row per cycle.
    """

    LATENCY = 2
    #: the golden model's function of this block (`zipml.reference.golden`)
    GOLDEN = "shrink"

    def __init__(self, W):
        self.W = W
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({"row": In(row), "l2_shift": In(6), "shr": Out(row)})

    def elaborate(self, platform):
        m = Module()
        l2_hi, l2_lo, l2_zero = Signal(3), Signal(3), Signal()
        m.d.sync += [l2_hi.eq(self.l2_shift[3:]), l2_lo.eq(self.l2_shift[:3]),
                     l2_zero.eq(self.l2_shift == 0)]
        coarse = Signal(data.ArrayLayout(signed(MW), self.W))
        for i in range(self.W):
            m.d.sync += [coarse[i].eq(self.row[i] >> Cat(Const(0, 3), l2_hi)),
                         self.shr[i].eq(Mux(l2_zero, 0, coarse[i] >> l2_lo))]
        return m
