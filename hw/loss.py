"""Loss stage: the error E of a finished dot product, a plug-in of both engines.

A loss stage is any `wiring.Component` with the signature :func:`loss_signature` (a finished
dot accumulator A and its label word L in, the error E the scalar stage multiplies by the step
out, with a saturation flag) and a class attribute ``LATENCY`` (cycles from ``i_valid`` to
``o_valid``, one sample per cycle). The engines take the stage by name from :data:`LOSSES`
(``Engine(..., loss="squared")``), and their T latency adds its ``LATENCY``; the golden model's
matching function is named in ``GOLDEN``. Today the squared loss (linear regression, LS-SVM):
``E = sat32((A >> G) - L)`` (docs/engine.md, "Loss"); hinge and logistic fill the same slot.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dot import G
from .model_mem import MW
from .update import sat

__all__ = ["SquaredLoss", "LOSSES", "loss_signature", "loss_stage"]


def loss_signature(AW):
    """The ports every loss stage has, for a dot accumulator of ``AW`` bits."""
    return {
        "i_valid": In(1), "a": In(signed(AW)), "label": In(signed(MW)),
        "o_valid": Out(1), "e": Out(signed(MW)), "ovf": Out(1),
    }


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
    #: the golden model's function of this stage (`zipml.reference.golden`)
    GOLDEN = "loss_squared"

    def __init__(self, AW):
        self.AW = AW
        super().__init__(loss_signature(AW))

    def elaborate(self, platform):
        m = Module()
        diff = Signal(signed(self.AW - G + 1))
        v1 = Signal()
        m.d.sync += [diff.eq((self.a >> G) - self.label), v1.eq(self.i_valid)]
        e, o = sat(m, diff, MW, "e_sat")
        m.d.sync += [self.e.eq(e), self.ovf.eq(o & v1), self.o_valid.eq(v1)]
        return m


#: the loss stages by name (the engines' ``loss`` parameter)
LOSSES = {"squared": SquaredLoss}


def loss_stage(name):
    """The loss stage class called ``name``, or one ValueError naming the choices."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
    return LOSSES[name]
