"""Loss stage: the error E of a finished dot product.

Squared loss only (linear regression, LS-SVM): ``E = sat32((A >> G) - L)`` (docs/engine.md,
"Loss"). A separate block so that hinge and logistic (a different E from the same A and L) can
sit beside it behind a register.
"""

from amaranth.hdl import Module, Signal, signed
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

    Latency ``LATENCY`` = 2 (the subtraction, then the saturation); one sample per cycle.
    """

    LATENCY = 2

    def __init__(self, AW):
        self.AW = AW
        super().__init__({
            "i_valid": In(1), "a": In(signed(AW)), "label": In(signed(MW)),
            "o_valid": Out(1), "e": Out(signed(MW)), "ovf": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        diff = Signal(signed(self.AW - G + 1))
        v1 = Signal()
        m.d.sync += [diff.eq((self.a >> G) - self.label), v1.eq(self.i_valid)]
        e, o = sat(m, diff, MW, "e_sat")
        m.d.sync += [self.e.eq(e), self.ovf.eq(o & v1), self.o_valid.eq(v1)]
        return m
