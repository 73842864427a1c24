"""Dot product of the engine: one bit-plane against a model chunk, then the per-sample sum.

`PlaneDot` computes ``S = sum over active lanes of s_i * X_i`` (s_i = +1 for bit 1, -1 for
bit 0) with a pipelined adder tree; `DotAccumulate` weights S by its plane,
``(S << G) >> (p + 1)``, and keeps the running dot A_s of every sample of the pass
(docs/engine.md, "Dot").
"""

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from ..reference.golden import plane_sum
from .model_mem import MW

__all__ = ["PlaneDot", "DotAccumulate", "G", "sum_width", "acc_width"]

# guard bits of the dot and update arithmetic: the golden model's (docs/engine.md)
from ..reference.golden import G  # noqa: E402


def sum_width(W):
    """Bits of the signed plane sum S: W words of MW bits, plus the popcount correction."""
    return MW + (W - 1).bit_length() + 1


def acc_width(D_MAX):
    """Bits of the signed dot accumulator A: ``MW + log2(D_MAX) + G + 1`` (docs/engine.md)."""
    return MW + (D_MAX - 1).bit_length() + G + 1


class PlaneDot(wiring.Component):
    """Plane sum ``S = sum_i mask_i * (2 bit_i - 1) * x_i`` through a pipelined adder tree.

    -X is ``~X + 1``: each lane adds ``bit ? X : ~X`` (one XOR level, no per-lane negation) and
    the count of active lanes with bit 0 is added once at the end, so the sum stays exact.

    Parameters
    ----------
    W : int
        Lanes, a power of two.
    levels_per_stage : int
        Adder levels between pipeline registers (2 meets the Fmax goals, docs/toolchain.md).

    Ports
    -----
    i_valid : In(1)
    bits : In(W)
        The plane word.
    mask : In(W)
        Active lanes; inactive lanes add 0.
    x : In(ArrayLayout(signed(32), W))
        The model chunk.
    o_valid : Out(1)
    o_sum : Out(signed(sum_width(W)))
        S of the inputs ``LATENCY`` cycles earlier.

    Latency ``LATENCY`` = ceil((log2 W + 1) / levels_per_stage) cycles (the last level adds
    the correction); throughput one plane per cycle.
    """

    def __init__(self, W, levels_per_stage=2):
        if W < 2 or W & (W - 1):
            raise ValueError(f"W must be a power of two >= 2, got {W!r}")
        self.W = W
        self.levels_per_stage = levels_per_stage
        self.LATENCY = self.latency(W, levels_per_stage)
        super().__init__({
            "i_valid": In(1), "bits": In(W), "mask": In(W),
            "x": In(data.ArrayLayout(signed(MW), W)),
            "o_valid": Out(1), "o_sum": Out(signed(sum_width(W))),
        })

    @staticmethod
    def latency(W, levels_per_stage=2):
        """Cycles from input to ``o_sum``: log2(W) adder levels plus the correction level."""
        return -(-((W - 1).bit_length() + 1) // levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        W, per = self.W, self.levels_per_stage
        vals = [Mux(self.mask[i], Mux(self.bits[i], self.x[i], ~self.x[i]), 0)
                for i in range(W)]
        neg = [self.mask[i] & ~self.bits[i] for i in range(W)]
        valid = self.i_valid
        level = 0
        stage = 0

        def maybe_register(values, valid, force=False):
            nonlocal stage
            if level % per and not force:
                return values, valid
            regs = []
            for v in values:
                r = Signal(v.shape(), name=f"tree_s{stage}_{len(regs)}")
                m.d.sync += r.eq(v)
                regs.append(r)
            rv = Signal(name=f"tree_valid{stage}")
            m.d.sync += rv.eq(valid)
            stage += 1
            return regs, rv

        # Sum the lane values and the negated-lane count side by side, level by level.
        while len(vals) > 1:
            vals = [vals[i] + vals[i + 1] for i in range(0, len(vals), 2)]
            neg = [neg[i] + neg[i + 1] for i in range(0, len(neg), 2)]
            level += 1
            cur, valid = maybe_register(vals + neg, valid)
            vals, neg = cur[:len(vals)], cur[len(vals):]
        total = vals[0] + neg[0]
        level += 1
        (total,), valid = maybe_register([total], valid, force=True)
        assert stage == self.LATENCY, (stage, self.LATENCY)
        m.d.comb += [self.o_sum.eq(total), self.o_valid.eq(valid)]
        return m

    def model(self, bits, mask, x):
        """Bit-exact NumPy model (delegates to `zipml.reference.golden.plane_sum`)."""
        return plane_sum(x, bits, mask)


class DotAccumulate(wiring.Component):
    """Plane weighting and the running dot products of the samples of a pass.

    ``A_s += (S << G) >> (p + 1)`` computed as ``(S << (G - 1)) >> p`` (the same floor). The
    accumulators form a rotating chain: ``a[0]`` is the sample whose group is arriving; at the
    last plane of a group the chain rotates, inserting the new value at position ``ins =
    n_dot - 1``. Chunk k brings the groups of samples 0 .. n_dot-1 in order, so after a rotation
    ``a[0]`` is the next sample's accumulator: one 2:1 mux per register instead of an
    indexed register file in the loop.

    Parameters
    ----------
    B_MAX : int
        Largest minibatch (chain length).
    SW : int
        Width of the plane sum input.
    AW : int
        Width of the accumulators (`acc_width`).

    Ports
    -----
    i_valid : In(1)
    s : In(signed(SW))
        Plane sum.
    p : In(6)
        Plane index (0 = MSB plane).
    start : In(1)
        First plane of the group in chunk 0: the sample's accumulator starts from 0.
    last_plane : In(1)
        Last plane of the group: rotate the chain.
    final : In(1)
        Last plane of the group in the last chunk: ``o_a`` gets the finished dot.
    ins : In(range(B_MAX))
        n_dot - 1 of the pass.
    o_valid : Out(1)
        One cycle per finished sample, in sample order.
    o_a : Out(signed(AW))

    Latency ``LATENCY`` = 2 (weighting register, accumulator); one plane per cycle.
    """

    LATENCY = 2

    def __init__(self, B_MAX, SW, AW):
        self.B_MAX, self.SW, self.AW = B_MAX, SW, AW
        super().__init__({
            "i_valid": In(1), "s": In(signed(SW)), "p": In(6), "start": In(1),
            "last_plane": In(1), "final": In(1), "ins": In(range(max(B_MAX, 2))),
            "o_valid": Out(1), "o_a": Out(signed(AW)),
        })

    def elaborate(self, platform):
        m = Module()
        # stage 1: plane weight (a barrel shifter, kept out of the accumulator loop)
        wterm = Signal(signed(self.SW + G - 1))
        v1 = Signal()
        start1, last1, final1 = Signal(), Signal(), Signal()
        ins1 = Signal.like(self.ins)
        m.d.sync += [wterm.eq((self.s << (G - 1)) >> self.p), v1.eq(self.i_valid),
                     start1.eq(self.start), last1.eq(self.last_plane), final1.eq(self.final),
                     ins1.eq(self.ins)]
        # stage 2: accumulate into a[0], rotate at the end of a group
        a = [Signal(signed(self.AW), name=f"a{i}") for i in range(self.B_MAX)]
        nxt = Signal(signed(self.AW))
        m.d.comb += nxt.eq(Mux(start1, 0, a[0]) + wterm)
        with m.If(v1):
            with m.If(last1):
                for i in range(self.B_MAX):
                    follow = a[i + 1] if i + 1 < self.B_MAX else a[i]
                    m.d.sync += a[i].eq(Mux(ins1 == i, nxt, follow))
            with m.Else():
                m.d.sync += a[0].eq(nxt)
        m.d.sync += [self.o_valid.eq(v1 & final1), self.o_a.eq(nxt)]
        return m
