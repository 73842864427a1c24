"""Label queues: the labels of a pass wait here until their sample's dot product is finished.

The labels of a pass come in the stream before its plane words (docs/engine.md, "Stream
layout"), and the loss stage needs a sample's label when its dot product is finished, some
chunks later; the labels of the next pass may arrive before the last samples of this one are
finished. `LabelQueue` is the parallel engine's (B_MAX flip-flop registers), `LabelFifo` the
serial engine's (16 words of block RAM).
"""

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .model_mem import MW

__all__ = ["LabelQueue", "LabelFifo"]


class LabelQueue(wiring.Component):
    """A queue of ``B_MAX`` labels in registers, the head in a flip-flop.

    A shift register: the loss stage reads a flip-flop, and there is no LUT RAM, whose
    read-during-write model gave the ECP5 synthesis a false logic loop. The fill is one-hot, so
    the write enable from the issue logic only gates.

    Parameters
    ----------
    B_MAX : int
        Labels held.

    Ports
    -----
    wr : In(1)
        Append ``value`` at the tail (the caller keeps the queue from overflowing).
    value : In(32)
    rd : In(1)
        Drop the head (a sample's dot product is finished); with ``wr`` in the same cycle.
    clear : In(1)
        Empty the queue.
    head : Out(32)
        The oldest label (a register).
    full_next : Out(1)
        Comb: the queue holds ``B_MAX`` labels after this cycle's ``wr`` and ``rd``.

    Latency 1: a label written is the head at the next edge if the queue was empty.
    """

    def __init__(self, B_MAX):
        self.B_MAX = B_MAX
        super().__init__({
            "wr": In(1), "value": In(MW), "rd": In(1), "clear": In(1),
            "head": Out(MW), "full_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B_MAX, wr, rd = self.B_MAX, self.wr, self.rd
        lab_q = [Signal(MW, name=f"lab_q{i}") for i in range(B_MAX)]
        lab_full = Signal()                             # B_MAX labels queued
        lab_at = Signal(B_MAX + 1, init=1)              # the fill, one-hot: i labels queued
        n_lab_at = Mux(wr & ~rd, lab_at << 1, Mux(rd & ~wr, lab_at >> 1, lab_at))
        m.d.sync += [lab_at.eq(n_lab_at), lab_full.eq(n_lab_at[B_MAX])]
        m.d.comb += [self.full_next.eq(n_lab_at[B_MAX]), self.head.eq(lab_q[0])]
        # write at the tail, shift out the head
        for i in range(B_MAX):
            follow = lab_q[i + 1] if i + 1 < B_MAX else lab_q[i]
            with m.If(rd):
                m.d.sync += lab_q[i].eq(Mux(wr & lab_at[i + 1], self.value, follow))
            with m.Elif(wr & lab_at[i]):
                m.d.sync += lab_q[i].eq(self.value)
        with m.If(self.clear):
            m.d.sync += [lab_full.eq(0), lab_at.eq(1)]
        return m


class LabelFifo(wiring.Component):
    """A FIFO of 16 labels in block RAM (two passes' worth at B_MAX <= 8).

    Ports
    -----
    push : In(1)
        Write ``value`` at the tail (the caller keeps ``count`` below 16).
    value : In(signed(32))
    pop : In(1)
        Drop the head.
    clear : In(1)
        Empty the FIFO.
    head : Out(signed(32))
        The label at the head, read every cycle: one clock edge after the head moved.
    count : Out(range(17))
        Labels queued.

    Latency: read 1 (``head``), ``count`` 1.
    """

    DEPTH = 16

    def __init__(self):
        super().__init__({
            "push": In(1), "value": In(signed(MW)), "pop": In(1), "clear": In(1),
            "head": Out(signed(MW)), "count": Out(range(self.DEPTH + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=signed(MW), depth=self.DEPTH, init=[],
                                        attrs={"ram_style": "block"})
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        head, tail = Signal(4), Signal(4)
        count = self.count
        m.d.sync += count.eq(count + self.push - self.pop)
        with m.If(self.push):
            m.d.sync += tail.eq(tail + 1)
        with m.If(self.pop):
            m.d.sync += head.eq(head + 1)
        m.d.comb += [wr.addr.eq(tail), wr.data.eq(self.value), wr.en.eq(self.push),
                     rd.addr.eq(head), rd.en.eq(1), self.head.eq(rd.data)]
        with m.If(self.clear):
            m.d.sync += [head.eq(0), tail.eq(0), count.eq(0)]
        return m
