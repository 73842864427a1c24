"""Scalar stage: ``T = sat32((E * STEP + R) >> STEP_SHIFT)`` and the step decay.

docs/engine.md, "Scalar" and "Step decay". The block owns the working copy of STEP: ``clear``
loads it from the ``step`` register; a counter of finished samples decays it every ``n_epoch``
samples. The multiply (32 x 18 bits, one per sample) is split into two 16 x 18 products so each
fits one DSP block (ECP5 MULT18X18D) and is pipelined with the shift over five cycles.
"""

from amaranth.hdl import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .model_mem import MW
from .update import sat

__all__ = ["Scalar", "STEP_BITS"]

# step mantissa width (unsigned): the golden model's (docs/engine.md)
from ..reference.golden import STEP_BITS  # noqa: E402


class Scalar(wiring.Component):
    """Scale errors into the update scalars T, with the working step and its decay.

    Ports
    -----
    clear : In(1)
        Load the working step from ``step`` and zero the decay counter.
    step : In(18)
    step_shift : In(6)
    decay_shift : In(5)
        0 = constant step.
    n_epoch : In(32)
        Samples per decay; 0 = never.
    i_valid : In(1)
    e : In(signed(32))
    o_valid : Out(1)
    t : Out(signed(32))
    ovf : Out(1)
        T saturated (with ``o_valid``).
    step_work : Out(18)
        The working step (for inspection).

    Latency ``LATENCY`` = 5: two partial products (and the decay), their sum, shift by the
    upper then the lower three bits of the shift amount, rounding and saturation.
    One sample per cycle. The sample that completes an epoch still uses the old step.
    """

    LATENCY = 5

    def __init__(self):
        super().__init__({
            "clear": In(1), "step": In(STEP_BITS), "step_shift": In(6), "decay_shift": In(5),
            "n_epoch": In(32), "i_valid": In(1), "e": In(signed(MW)),
            "o_valid": Out(1), "t": Out(signed(MW)), "ovf": Out(1),
            "step_work": Out(STEP_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        step = self.step_work
        count = Signal(32)
        # 1: partial products E_lo (unsigned 16) * STEP and E_hi (signed 16) * STEP with the
        #    working step of this sample; at the same edge count it and decay the working step
        #    (so the sample that completes an epoch uses the old step)
        p_lo = Signal(16 + STEP_BITS)
        p_hi = Signal(signed(16 + STEP_BITS + 1))
        v2 = Signal()
        m.d.sync += [p_lo.eq(self.e[:16] * step), p_hi.eq(self.e[16:].as_signed() * step),
                     v2.eq(self.i_valid)]
        # n_epoch - 1 and its zero test registered: the counter compare is one equality
        last_count = Signal(32)
        decays = Signal()
        m.d.sync += [last_count.eq(self.n_epoch - 1), decays.eq(self.n_epoch != 0)]
        with m.If(self.i_valid):
            with m.If(decays & (count == last_count)):
                m.d.sync += count.eq(0)
                with m.If(self.decay_shift != 0):
                    m.d.sync += step.eq(step - (step >> self.decay_shift))
            with m.Else():
                m.d.sync += count.eq(count + 1)
        with m.If(self.clear):
            m.d.sync += [step.eq(self.step), count.eq(0)]
        # 3: x = E * STEP (50 bits). Round half up as docs/engine.md, without R:
        #    (x + 2^(s-1)) >> s == ((x >> (s-1)) + 1) >> 1 for s >= 1 (floor of a floor), and
        #    for s - 1 >= 49 both are 0, so the shifter needs 50 bits and amounts 0..49.
        prod = Signal(signed(16 + STEP_BITS + 17))
        amt = Signal(6)
        rnd3 = Signal()
        v3 = Signal()
        sh = self.step_shift
        m.d.sync += [prod.eq((p_hi << 16) + p_lo), v3.eq(v2), rnd3.eq(sh != 0),
                     amt.eq(Mux(sh == 0, 0, Mux(sh > 50, 49, sh - 1)))]
        # 4, 5: arithmetic shift right by amt, coarse then fine
        sh4 = Signal(signed(len(prod)))
        amt4 = Signal(3)
        rnd4 = Signal()
        v4 = Signal()
        m.d.sync += [sh4.eq(prod >> Cat(Const(0, 3), amt[3:])), amt4.eq(amt[:3]), rnd4.eq(rnd3),
                     v4.eq(v3)]
        sh5 = Signal(signed(len(prod)))
        rnd5 = Signal()
        v5 = Signal()
        m.d.sync += [sh5.eq(sh4 >> amt4), rnd5.eq(rnd4), v5.eq(v4)]
        # 6: the rounding step, then saturate
        rounded = Signal(signed(len(prod)))
        m.d.comb += rounded.eq(Mux(rnd5, (sh5 + 1) >> 1, sh5))
        t, o = sat(m, rounded, MW, "t_sat")
        m.d.sync += [self.t.eq(t), self.ovf.eq(o & v5), self.o_valid.eq(v5)]
        return m
