"""The engine's input skid buffer in the board system (`zipml.hw.soc.System`).

Every word reaches the engine through it (a replay word from the store feed or a STREAM word
from the command unit): its ``ready`` to the producers is a flip-flop, so neither the sample
store's read enable nor the command unit waits on the engine's own ready logic in the same
clock (docs/link.md, "The board system in gateware").
"""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A word register and a spare between the producers and the engine.

    Parameters
    ----------
    W : int
        Word width (the engine's stream width).

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The producers' words; ``ready`` is the inverse of the spare's valid flip-flop.
    o_stream : Out(stream.Signature(W))
        The engine's input, from the word register; ``ready`` drives one gate per flip-flop.
    flush : In(1)
        Drop the words waiting here (a stop or a clear: a cleared engine must not get an old
        word).
    empty : Out(1)
        No word waits here (comb from the two valid flip-flops).

    Latency 1: a word taken appears on ``o_stream`` the next clock. Throughput: one word a
    clock.
    """

    def __init__(self, W):
        self.W = W
        super().__init__({
            "i_stream": In(stream.Signature(W)),
            "o_stream": Out(stream.Signature(W)),
            "flush": In(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        feed_valid, feed_data = self.i_stream.valid, self.i_stream.payload
        main_valid, main = self.o_stream.valid, self.o_stream.payload
        spare_valid, spare = Signal(), Signal(self.W)
        m.d.comb += self.i_stream.ready.eq(~spare_valid)
        # The engine's ready decides one gate per flip-flop: whether main advances.
        advance = Signal()
        m.d.comb += advance.eq(~main_valid | self.o_stream.ready)
        with m.If(advance):
            m.d.sync += main.eq(Mux(spare_valid, spare, feed_data))
        with m.Elif(~spare_valid):
            m.d.sync += spare.eq(feed_data)
        m.d.sync += [main_valid.eq(~self.flush & Mux(advance, spare_valid | feed_valid,
                                                     main_valid)),
                     spare_valid.eq(~self.flush & ~advance & (spare_valid | feed_valid))]
        m.d.comb += self.empty.eq(~main_valid & ~spare_valid)
        return m
