"""Loss stage: the error E of a finished dot product.

Squared loss only (linear regression, LS-SVM): ``E = sat32((A >> G) - L)`` (docs/engine.md,
"Loss"). A separate block so that hinge and logistic (a different E from the same A and L) can
sit beside it behind a register.
"""

from amaranth.hdl import Module, Signal, Cat, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dot import G
from .model_mem import MW
from .update import sat

__all__ = ["SquaredLoss"]


class SquaredLoss(wiring.Component):
    """``E = sat32((A >> G) - L)``.

    Parameters
    ----------
    AW : int
        Width of the dot accumulator A.
    split : bool
        Subtract in two halves over two cycles (``SPLIT_LATENCY``): the ~44-bit carry chain
        in one cycle is too slow for the iCE40 UP5K at 48 MHz (the lane-serial engine's).

    Ports
    -----
    i_valid : In(1)
    a : In(signed(AW))
    label : In(signed(32))
        The sample's label word L.
    o_valid : Out(1)
    e : Out(signed(32))
    ovf : Out(1)
        E saturated (with ``o_valid``).

    Latency ``LATENCY`` = 2 (the subtraction, then the saturation), ``SPLIT_LATENCY`` = 3 when
    split; one sample per cycle.
    """

    LATENCY = 2
    SPLIT_LATENCY = 3

    def __init__(self, AW, split=False):
        self.AW = AW
        self.split = bool(split)
        super().__init__({
            "i_valid": In(1), "a": In(signed(AW)), "label": In(signed(MW)),
            "o_valid": Out(1), "e": Out(signed(MW)), "ovf": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        DW = self.AW - G + 1
        diff = Signal(signed(DW))
        v1 = Signal()
        if self.split:
            # a - L = a + ~L + 1: the low half with the carry-in riding in an extra low bit,
            # then the high half with the low half's carry
            H = DW // 2
            a = Signal(signed(DW))
            nl = Signal(signed(DW))
            m.d.comb += [a.eq(self.a >> G), nl.eq(~self.label)]
            lo = Signal(H + 1)
            hi_a, hi_b = Signal(DW - H), Signal(DW - H)
            v0 = Signal()
            m.d.sync += [lo.eq((Cat(1, a[:H]) + Cat(1, nl[:H]))[1:]), hi_a.eq(a[H:]),
                         hi_b.eq(nl[H:]), v0.eq(self.i_valid)]
            m.d.sync += [diff.eq(Cat(lo[:H], hi_a + hi_b + lo[H])), v1.eq(v0)]
        else:
            m.d.sync += [diff.eq((self.a >> G) - self.label), v1.eq(self.i_valid)]
        e, o = sat(m, diff, MW, "e_sat")
        m.d.sync += [self.e.eq(e), self.ovf.eq(o & v1), self.o_valid.eq(v1)]
        return m
