"""Model update of one chunk: per-lane gradient accumulate and saturating write-back.

docs/engine.md, "Update": for every grad plane ``U_i += g_i * ((T << G) >> (p + 1))``, then
once per chunk ``X' = sat32(X - ((U + 2^(G-1)) >> G) - shrink(X))``.

`GradTerm` turns a T into the shared plane term and its negation; `ChunkUpdate` holds the chunk
being worked on (the model words the dot products of the chunk read) and does the accumulate
and the write-back.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from .dot import G
from .model_mem import MW

__all__ = ["GradTerm", "ChunkUpdate", "TERM_W", "u_width", "sat"]

#: width of the grad term ``(T << G) >> (p + 1)``: |T| <= 2^31, so |term| <= 2^(31 + G - 1)
TERM_W = MW + G


def u_width(B_MAX):
    """Bits of a lane's U: ``shrink(X) << G`` (< 2^(31+G)) plus up to B_MAX groups of
    ``sum_p |term_p| < 2^(31+G)``, plus the rounding constant: ``(B_MAX + 1) * 2^(31+G)``."""
    return MW + G + (B_MAX + 1).bit_length() + 1


def sat(m, value, width, name):
    """Saturate a signed ``value`` to ``width`` bits; returns (result, overflowed) signals.

    Tests the bits above ``width - 1`` against the sign instead of comparing with the
    limits: a few LUTs instead of two carry chains.
    """
    res = Signal(signed(width), name=name)
    ovf = Signal(name=f"{name}_ovf")
    if len(value) <= width:
        m.d.comb += res.eq(value)
        return res, ovf
    top = value[width - 1:]
    sign = value[-1]
    m.d.comb += ovf.eq(~(top.all() | ~top.any()))
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    m.d.comb += res.eq(Mux(ovf, Mux(sign, lo, hi), value[:width]))
    return res, ovf


class GradTerm(wiring.Component):
    """The shared update term of a grad plane, ``(T << G) >> (p + 1)``, and its negation.

    Ports
    -----
    t : In(signed(32))
        The group's scalar T (held by the caller for the plane's cycle).
    p : In(6)
        Plane index.
    term : Out(signed(TERM_W))
    nterm : Out(signed(TERM_W + 1))
        ``-term``.

    Latency ``LATENCY`` = 3: the shift by the upper three bits of p (a multiple of 8), by
    the lower three, then the negation (a floor then a negation: the two do not commute, so -T
    is not shifted directly). Two floors by 8a and b are one floor by 8a + b.
    """

    LATENCY = 3

    def __init__(self):
        super().__init__({
            "t": In(signed(MW)), "p": In(6),
            "term": Out(signed(TERM_W)), "nterm": Out(signed(TERM_W + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        coarse = Signal(signed(TERM_W))
        p_lo = Signal(3)
        shifted = Signal(signed(TERM_W))
        m.d.sync += [coarse.eq((self.t << (G - 1)) >> Cat(Const(0, 3), self.p[3:])),
                     p_lo.eq(self.p[:3]),
                     shifted.eq(coarse >> p_lo)]
        m.d.sync += [self.term.eq(shifted), self.nterm.eq(-shifted)]
        return m


class ChunkUpdate(wiring.Component):
    """Grad side of a chunk: per-lane U accumulators and the two-stage write-back.

    The L2 shrink and the write-back's rounding constant are folded into U's start value,
    ``U = (shrink(X) << G) + 2^(G-1)``: both are added before the floor ``>> G`` and the first
    is a multiple of 2^G, so ``X - (U >> G)`` is exactly docs/engine.md's
    ``X - ((U' + 2^(G-1)) >> G) - shrink(X)`` (U' the sum of the grad terms), with one
    subtraction per lane and no second copy of the chunk.

    Three engine stages meet here: A (accumulate), B (subtract) and C (saturate, write). The
    grad side works on one chunk at a time; it keeps that chunk's model words (``x``) for the
    write-back and hands the written-back words to the dot side in ``x_next``, so the dot side
    may still be reading the previous chunk meanwhile.

    Parameters
    ----------
    W : int
        Lanes.
    B_MAX : int
        Largest number of grad groups per chunk (sizes U).
    early_load : bool
        Load the chunk in stage A instead of B (``load`` and ``x_load`` come a cycle earlier,
        with the first ``acc``): ``x`` then holds the chunk by the write-back of a one-plane
        chunk, so the subtraction reads ``x`` alone, without the W*32 multiplexers on ``load``
        that were the longest ECP5 path. The chunk's write-back (stage B) and the next
        chunk's first plane (stage A) may be in the same cycle: the subtraction reads ``x``
        before the edge that loads the next chunk.

    Ports
    -----
    acc : In(1)
        Stage A, a grad plane: ``U_i <= (first ? (shr_i << G) + 2^(G-1) : U_i)
        + (bits_i ? term : nterm)``.
    first : In(1)
        Stage A: first grad plane of the chunk.
    bits : In(W)
    term, nterm : In(signed(TERM_W)), In(signed(TERM_W + 1))
        Stage A, from `GradTerm`.
    shr : In(ArrayLayout(signed(32), W))
        Stage A: ``shrink(X)`` of the chunk (0 when l2_shift = 0), with its first grad plane.
    load : In(1)
        Stage B (stage A with ``early_load``): the chunk's first grad plane is there:
        ``x <= x_load`` at the clock edge.
    x_load : In(ArrayLayout(signed(32), W))
        With ``load``: the chunk as read from memory.
    wb : In(1)
        Stage B, the cycle after the chunk's last ``acc``: register ``X - (U >> G)`` per lane,
        X from ``x_load`` if ``load`` (the chunk has one grad plane) else from ``x`` (with
        ``early_load``: from ``x``).
    mask : In(W)
        Stage B: active lanes of the chunk in ``wb``'s cycle.
    x : Out(ArrayLayout(signed(32), W))
        The chunk being updated, as read from memory.
    x_new : Out(ArrayLayout(signed(32), W))
        Stage C (comb): the saturated new words.
    wen : Out(W)
        Stage C (comb): lanes to write (``mask`` of a write-back).
    wb_c : Out(1)
        Stage C: a write-back is there.
    ovf : Out(1)
        Stage C (comb): an active lane saturated.
    lane_ovf : Out(W)
        Stage C (comb): the active lanes that saturated (``ovf`` is their OR; a user that
        registers these first keeps the W-input OR out of the saturation's cycle).
    x_next : Out(ArrayLayout(signed(32), W))
        ``x_new`` of the last write-back (registered at the end of its stage C).

    Latency: the write-back is in stage C, two cycles after the last ``acc``. One plane per
    cycle.
    """

    def __init__(self, W, B_MAX=15, early_load=False):
        self.W, self.B_MAX, self.early_load = W, B_MAX, bool(early_load)
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({
            "acc": In(1), "first": In(1), "bits": In(W),
            "term": In(signed(TERM_W)), "nterm": In(signed(TERM_W + 1)), "shr": In(row),
            "load": In(1), "x_load": In(row), "wb": In(1), "mask": In(W),
            "x": Out(row), "x_new": Out(row), "wen": Out(W), "wb_c": Out(1), "ovf": Out(1),
            "lane_ovf": Out(W),
            "x_next": Out(row),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.W
        uw = u_width(self.B_MAX)
        U = [Signal(signed(uw), name=f"u{i}") for i in range(W)]
        diff = [Signal(signed(uw - G + 1), name=f"diff{i}") for i in range(W)]
        mask_c = Signal(W)
        m.d.sync += [self.wb_c.eq(self.wb), mask_c.eq(self.mask)]
        ovfs = []
        for i in range(W):
            start = Cat(Const(1 << (G - 1), G), self.shr[i]).as_signed()
            with m.If(self.acc):
                m.d.sync += U[i].eq(Mux(self.first, start, U[i])
                                    + Mux(self.bits[i], self.term, self.nterm))
            xw = self.x[i] if self.early_load else Mux(self.load, self.x_load[i], self.x[i])
            m.d.sync += diff[i].eq(xw - (U[i] >> G))
            with m.If(self.load):
                m.d.sync += self.x[i].eq(self.x_load[i])
            new, o = sat(m, diff[i], MW, f"xnew{i}")
            m.d.comb += [self.x_new[i].eq(new), self.wen[i].eq(self.wb_c & mask_c[i])]
            ovfs.append(o & mask_c[i])
            with m.If(self.wb_c):
                m.d.sync += self.x_next[i].eq(new)
        m.d.comb += [self.lane_ovf.eq(Mux(self.wb_c, Cat(*ovfs), 0)),
                     self.ovf.eq(self.lane_ovf.any())]
        return m
