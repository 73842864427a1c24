"""Scalar stage: ``T = sat32((E * STEP + R) >> STEP_SHIFT)`` and the step decay.

docs/engine.md, "Scalar" and "Step decay". The block owns the working copy of STEP: ``clear``
loads it from the ``step`` register; a counter of finished samples decays it every ``n_epoch``
samples. The multiply (32 x 18 bits, one per sample) is split into two 16 x 18 products so each
fits one DSP block (ECP5 MULT18X18D) and is pipelined with the shift over five cycles.
"""

from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .model_mem import MW
from .update import sat

__all__ = ["Scalar", "STEP_BITS"]

#: step mantissa width (unsigned)
STEP_BITS = 18


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

    Latency ``LATENCY`` = 6: step capture and decay, two partial products, sum with the
    rounding constant, shift by the upper then the lower three bits of STEP_SHIFT, saturation.
    One sample per cycle. The sample that completes an epoch still uses the old step.
    """

    LATENCY = 6

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
        # 1: capture E with the step it uses; count the sample and decay the working step
        e1 = Signal(signed(MW))
        st1 = Signal(STEP_BITS)
        v1 = Signal()
        m.d.sync += [e1.eq(self.e), st1.eq(step), v1.eq(self.i_valid)]
        with m.If(self.i_valid):
            with m.If((self.n_epoch != 0) & (count + 1 == self.n_epoch)):
                m.d.sync += count.eq(0)
                with m.If(self.decay_shift != 0):
                    m.d.sync += step.eq(step - (step >> self.decay_shift))
            with m.Else():
                m.d.sync += count.eq(count + 1)
        with m.If(self.clear):
            m.d.sync += [step.eq(self.step), count.eq(0)]
        # 2: partial products E_lo (unsigned 16) * STEP and E_hi (signed 16) * STEP
        p_lo = Signal(16 + STEP_BITS)
        p_hi = Signal(signed(16 + STEP_BITS + 1))
        v2 = Signal()
        m.d.sync += [p_lo.eq(e1[:16] * st1), p_hi.eq(e1[16:].as_signed() * st1), v2.eq(v1)]
        # 3: E * STEP + R, R = 2^(STEP_SHIFT-1) (0 for shift 0); 64 bits hold R up to 2^62
        rnd = Signal(64)
        m.d.comb += rnd.eq(Mux(self.step_shift == 0, 0, (Cat(1) << self.step_shift) >> 1))
        prod = Signal(signed(65))
        v3 = Signal()
        m.d.sync += [prod.eq((p_hi << 16) + p_lo + rnd), v3.eq(v2)]
        # 4, 5: arithmetic shift right by STEP_SHIFT, coarse then fine
        sh4 = Signal(signed(65))
        v4 = Signal()
        m.d.sync += [sh4.eq(prod >> Cat(0, 0, 0, self.step_shift[3:])), v4.eq(v3)]
        sh5 = Signal(signed(65))
        v5 = Signal()
        m.d.sync += [sh5.eq(sh4 >> self.step_shift[:3]), v5.eq(v4)]
        # 6: saturate
        t, o = sat(m, sh5, MW, "t_sat")
        m.d.sync += [self.t.eq(t), self.ovf.eq(o & v5), self.o_valid.eq(v5)]
        return m
