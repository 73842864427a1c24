"""A minimal top that keeps the whole engine alive for place and route.

Place and route of the engine alone needs its inputs to be unknowable and its outputs to be
observed, or Yosys removes most of it. `PnrTop` drives every input port of the engine from a
long shift register fed by an LFSR (so each port bit is its own flip-flop, like the board
system's register file), and reduces every output port bit to one LED pin through a pipelined
XOR tree (so the reduction adds no long path of its own).

The engine is found by its signature, not by port names: every ``In`` leaf is driven, every
``Out`` leaf observed. The one exception is ``enable``, held at 1 most of the time so that the
LFSR-driven stream keeps the datapath toggling in the built bitstream, which blinks the LED.
"""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from .engine import Engine


__all__ = ["PnrTop", "lfsr_taps"]


# Maximal-length Fibonacci LFSR taps (Xilinx XAPP052), 1-based bit positions.
_TAPS = {32: (32, 22, 2, 1), 64: (64, 63, 61, 60)}


def lfsr_taps(width):
    """Feedback taps (1-based) of a maximal-length LFSR of ``width`` bits (32 or 64)."""
    try:
        return _TAPS[width]
    except KeyError:
        raise ValueError(f"no LFSR taps for width {width}; use one of {sorted(_TAPS)}") from None


def _in_out_leaves(component):
    """``(ins, outs)``: lists of (name, Value) of the component's input and output port bits."""
    ins, outs = [], []
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        # Views (data.Layout-shaped ports) as plain bits: len() of a view is not its width.
        (ins if member.flow == wiring.In else outs).append((name, Value.cast(value)))
    return ins, outs


class PnrTop(Elaboratable):
    """The engine between an LFSR source and a one-pin XOR sink.

    Parameters
    ----------
    W, D_MAX, B_MAX, BUF_DEPTH : int
        Engine synthesis parameters (docs/engine.md).
    engine_cls : type or None
        The component to wrap; ``None`` is `zipml.hw.engine.Engine`. It is constructed as
        ``engine_cls(W=W, D_MAX=D_MAX, B_MAX=B_MAX, BUF_DEPTH=BUF_DEPTH)``.

    Attributes
    ----------
    led : Signal(1), out
        XOR of every engine output bit, registered (reduction latency: ``reduce_latency``
        cycles after the outputs).
    engine : wiring.Component
        The wrapped engine instance.

    Notes
    -----
    Every engine input bit comes from a flip-flop of a shift register that advances each
    cycle, so in timing analysis each input path starts at a register, as it does behind the
    board system's register file. The stream payload changes every cycle and ``valid`` is an
    LFSR bit, so the input sees random gaps.
    """

    def __init__(self, W, D_MAX, B_MAX, BUF_DEPTH, *, engine_cls=None, **options):
        if engine_cls is None:
            engine_cls = Engine
        # options: further engine synthesis options (e.g. L2=False for a build without shrink)
        self.params = dict(W=W, D_MAX=D_MAX, B_MAX=B_MAX, BUF_DEPTH=BUF_DEPTH, **options)
        self.engine = engine_cls(**self.params)
        self.led = Signal()
        self.reduce_latency = 0

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        ins, outs = _in_out_leaves(engine)

        # Source: a 32-bit LFSR shifts one fresh bit per cycle into a shift register as wide as
        # all engine inputs together.
        taps = lfsr_taps(32)
        lfsr = Signal(32, init=1)
        feedback = 0
        for t in taps:
            feedback ^= lfsr[t - 1]
        m.d.sync += lfsr.eq(Cat(feedback, lfsr[:-1]))

        enable = None
        driven = []
        for name, value in ins:
            if name.split("__")[-1] == "enable":
                enable = value
            else:
                driven.append(value)
        total = sum(len(v) for v in driven) or 1
        shreg = Signal(total)
        m.d.sync += shreg.eq(Cat(lfsr[-1], shreg[:-1]))
        offset = 0
        for value in driven:
            m.d.comb += value.eq(shreg[offset:offset + len(value)])
            offset += len(value)
        if enable is not None:
            # Off one cycle in 16 (LFSR bits), so the hold path is exercised too.
            m.d.comb += enable.eq(~(lfsr[3:7] == 0))

        # Sink: register every output bit, then XOR groups of 4 per pipeline level: each level
        # is one LUT4 deep on iCE40 and ECP5.
        level = Signal(sum(len(v) for _, v in outs) or 1)
        m.d.sync += level.eq(Cat(*(v for _, v in outs)) if outs else Const(0, 1))
        self.reduce_latency = 1
        while len(level) > 1:
            nxt = Signal((len(level) + 3) // 4)
            m.d.sync += nxt.eq(Cat(*(level[i:i + 4].xor() for i in range(0, len(level), 4))))
            level = nxt
            self.reduce_latency += 1
        m.d.comb += self.led.eq(level[0])
        return m
