"""The scalar stage of the lane-serial engine: `Scalar`'s arithmetic in a few cells, over cycles.

docs/engine.md, "Scalar" and "Step decay": ``T = sat32((E * STEP + R) >> STEP_SHIFT)`` with the
working step and its decay. `zipml.hw.scalar.Scalar` does one sample per cycle with two wide
barrel shifters (~1000 iCE40 cells); the lane-serial engine finishes a sample at most every W
cycles, so `SerialScalar` queues the errors in a block RAM and shifts each product right by 8 or 1
bit a cycle (``STEP_SHIFT // 8 + STEP_SHIFT % 8`` cycles, at most 13), its wide additions in two
halves.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, enum
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .model_mem import MW
from .scalar import STEP_BITS
from .update import sat

__all__ = ["SerialScalar"]


class _Step(enum.Enum, shape=3):
    IDLE = 0
    MUL = 1
    SUM = 2         # the two products' sum, low half
    SUM_HI = 3      # its high half
    SHIFT = 4
    ROUND = 5       # + 1 before the last shift, low half
    ROUND_HI = 6    # its high half, then the shift
    OUT = 7


class SerialScalar(wiring.Component):
    """Errors in, update scalars T out, in order, one at a time.

    Same ports and arithmetic as `zipml.hw.scalar.Scalar`, plus ``busy``; ``o_valid`` comes a
    variable number of cycles after ``i_valid`` (``STEP_SHIFT // 8 + STEP_SHIFT % 8 + 8`` when
    the queue is empty).

    Parameters
    ----------
    depth : int
        Errors that may wait (a power of two); the engine has at most one pass's samples
        (``B_MAX`` <= 15) pending, since the next pass's updates wait for their T.

    Ports
    -----
    clear, step, step_shift, decay_shift, n_epoch, i_valid, e, o_valid, t, ovf, step_work
        As `zipml.hw.scalar.Scalar`.
    busy : Out(1)
        A sample is queued or being worked on.
    """

    def __init__(self, depth=16):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"SerialScalar: depth must be a power of two >= 2, got {depth!r}")
        self.depth = depth
        super().__init__({
            "clear": In(1), "step": In(STEP_BITS), "step_shift": In(6), "decay_shift": In(5),
            "n_epoch": In(32), "i_valid": In(1), "e": In(signed(MW)),
            "o_valid": Out(1), "t": Out(signed(MW)), "ovf": Out(1),
            "step_work": Out(STEP_BITS), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pw = (self.depth - 1).bit_length()
        # the queue: errors in a RAM, in order
        m.submodules.queue = queue = Memory(shape=signed(MW), depth=self.depth, init=[],
                                            attrs={"ram_style": "block"})
        q_wr = queue.write_port()
        q_rd = queue.read_port(transparent_for=())
        w_ptr, r_ptr = Signal(pw), Signal(pw)
        m.d.comb += [q_wr.addr.eq(w_ptr), q_wr.data.eq(self.e), q_wr.en.eq(self.i_valid),
                     q_rd.addr.eq(r_ptr), q_rd.en.eq(1)]
        with m.If(self.i_valid):
            m.d.sync += w_ptr.eq(w_ptr + 1)

        step = self.step_work
        # samples left in the epoch, counted down (`Scalar` counts up to n_epoch - 1: the same
        # epochs, one subtractor and register fewer); 0 = never decays
        left_in_epoch = Signal(32)
        # the decayed step, kept ready over two registered stages (a sample takes 6 cycles or
        # more, so it is current whenever a sample uses it)
        step_shr = Signal(STEP_BITS)
        step_decayed = Signal(STEP_BITS)
        m.d.sync += [step_shr.eq(step >> self.decay_shift), step_decayed.eq(step - step_shr)]
        # the counter's tests, registered likewise (it moves once a sample)
        epoch_ends, counting = Signal(), Signal()
        m.d.sync += [epoch_ends.eq(left_in_epoch == 1), counting.eq(left_in_epoch != 0)]
        # shift amount as `Scalar`: (x + 2^(s-1)) >> s == ((x >> (s-1)) + 1) >> 1 for s >= 1, and
        # both are 0 for s - 1 >= 49 because |x| < 2^49
        sh = self.step_shift
        amt = Signal(6)
        rnd = Signal()
        m.d.sync += [amt.eq(Mux(sh == 0, 0, Mux(sh > 50, 49, sh - 1))), rnd.eq(sh != 0)]

        p_lo = Signal(16 + STEP_BITS)
        p_hi = Signal(signed(16 + STEP_BITS + 1))
        y = Signal(signed(16 + STEP_BITS + 17))
        left = Signal(6)
        # the shift's next step, decided a cycle ahead (its select drives 51 multiplexers)
        by8, by1 = Signal(), Signal()
        # the wide additions (51 bits) in two halves over two cycles: the UP5K's carry chain
        # takes ~0.3 ns a bit
        H = len(y) // 2
        lo = Signal(H + 1)                      # low half and its carry
        hi_a, hi_b = Signal(signed(len(y) - H)), Signal(signed(len(y) - H))
        prod_hi = Signal(signed(len(y)))        # E_hi * STEP << 16
        m.d.comb += prod_hi.eq(p_hi << 16)
        state = Signal(_Step)
        m.d.comb += self.busy.eq((state != _Step.IDLE) | (w_ptr != r_ptr))
        m.d.sync += [self.o_valid.eq(0), self.ovf.eq(0)]     # both pulse with a result
        with m.Switch(state):
            with m.Case(_Step.IDLE):
                with m.If(w_ptr != r_ptr):
                    # q_rd has the error at r_ptr now, registered at this edge
                    m.d.sync += [r_ptr.eq(r_ptr + 1), state.eq(_Step.MUL)]
            with m.Case(_Step.MUL):
                # two 16 x 18 products (one DSP each); the decay counts this sample at the same
                # edge, so the sample that completes an epoch uses the old step
                e = q_rd.data
                m.d.sync += [p_lo.eq(e[:16] * step), p_hi.eq(e[16:].as_signed() * step),
                             state.eq(_Step.SUM)]
                with m.If(epoch_ends):
                    m.d.sync += left_in_epoch.eq(self.n_epoch)
                    with m.If(self.decay_shift != 0):
                        m.d.sync += step.eq(step_decayed)
                with m.Elif(counting):
                    m.d.sync += left_in_epoch.eq(left_in_epoch - 1)
            with m.Case(_Step.SUM):
                m.d.sync += [lo.eq(prod_hi[:H] + p_lo[:H]), hi_a.eq(prod_hi[H:]),
                             hi_b.eq(p_lo[H:]), state.eq(_Step.SUM_HI)]
            with m.Case(_Step.SUM_HI):
                m.d.sync += [y.eq(Cat(lo[:H], hi_a + hi_b + lo[H])), left.eq(amt),
                             by8.eq(amt >= 8), by1.eq((amt < 8) & (amt != 0)),
                             state.eq(_Step.SHIFT)]
            with m.Case(_Step.SHIFT):
                with m.If(by8):
                    m.d.sync += [y.eq(y >> 8), left.eq(left - 8),
                                 by8.eq(left >= 16), by1.eq((left < 16) & (left != 8))]
                with m.Elif(by1):
                    m.d.sync += [y.eq(y >> 1), left.eq(left - 1), by1.eq(left != 1)]
                with m.Else():
                    m.d.sync += state.eq(_Step.ROUND)
            with m.Case(_Step.ROUND):
                m.d.sync += [lo.eq(y[:H] + rnd), hi_a.eq(y[H:]), state.eq(_Step.ROUND_HI)]
            with m.Case(_Step.ROUND_HI):
                rounded = Cat(lo[:H], hi_a + lo[H]).as_signed()
                m.d.sync += [y.eq(Mux(rnd, rounded >> 1, rounded)), state.eq(_Step.OUT)]
            with m.Case(_Step.OUT):
                t, o = sat(m, y, MW, "t_sat")
                m.d.sync += [self.t.eq(t), self.ovf.eq(o), self.o_valid.eq(1),
                             state.eq(_Step.IDLE)]
        with m.If(self.clear):
            m.d.sync += [step.eq(self.step), left_in_epoch.eq(self.n_epoch), state.eq(_Step.IDLE),
                         w_ptr.eq(0), r_ptr.eq(0)]
        return m
