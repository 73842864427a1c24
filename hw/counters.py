"""The engines' counters, sticky overflow flag and drain timer (docs/engine.md, "Registers").

Both engine architectures count the same events (docs/gateware.md, "Registers and ports"):
`EngineCounters` is the block they share.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EngineCounters", "COUNTER_BITS"]

#: width of the cycles / samples / words / stall_cycles counters
COUNTER_BITS = 48


class EngineCounters(wiring.Component):
    """``cycles``, ``samples``, ``words``, ``stall_cycles``, ``overflow`` and the drain timer.

    Parameters
    ----------
    drain : int
        Cycles after the last ``active`` until ``drained``: the engine's pipeline depth from a
        taken word to its T (``T_LATENCY + 2``).

    Ports
    -----
    enable : In(1)
        The engine's ``enable``: ``cycles`` counts the cycles it is up.
    clear : In(1)
        Zero the counters, ``overflow`` and the drain timer.
    ready : In(1)
        The stream's ``ready``: ``stall_cycles`` counts enabled cycles with it low, from a
        register (a cycle late; the same total once idle).
    took : In(1)
        A stream word was taken in the previous cycle (the engine's registered copy of its
        decision): ``words`` counts it.
    sample : In(1)
        A sample's T is out: ``samples`` counts it.
    ovf : In(1)
        A saturation this cycle: sets the sticky ``overflow``.
    active : In(1)
        A word or item entered the pipeline: restarts the drain timer.
    cycles, samples, words, stall_cycles : Out(COUNTER_BITS)
    overflow : Out(1)
    drained : Out(1)
        Nothing entered the pipeline for ``drain`` cycles (comb from the timer).

    Latency: every counter and ``overflow`` change at the clock edge after their event.
    """

    def __init__(self, drain):
        self.drain = drain
        super().__init__({
            "enable": In(1), "clear": In(1), "ready": In(1), "took": In(1), "sample": In(1),
            "ovf": In(1), "active": In(1),
            "cycles": Out(COUNTER_BITS), "samples": Out(COUNTER_BITS),
            "words": Out(COUNTER_BITS), "stall_cycles": Out(COUNTER_BITS),
            "overflow": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        drain = Signal(range(self.drain + 2))
        with m.If(self.active):
            m.d.sync += drain.eq(self.drain)
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        m.d.comb += self.drained.eq(drain == 0)

        # words and stall_cycles count a cycle late, from registers: the decision drives enough
        # already without the enables of two 48-bit adders (a 48-bit increment is a ~22 ns
        # path on the UP5K; splitting the four in halves would cost ~150 cells there)
        stalled = Signal()
        m.d.sync += stalled.eq(self.enable & ~self.ready)
        counters = ((self.cycles, self.enable), (self.stall_cycles, stalled),
                    (self.words, self.took), (self.samples, self.sample))
        for port, event in counters:
            with m.If(event):
                m.d.sync += port.eq(port + 1)
        with m.If(self.ovf):
            m.d.sync += self.overflow.eq(1)

        with m.If(self.clear):
            m.d.sync += [drain.eq(0), stalled.eq(0), self.overflow.eq(0)]
            m.d.sync += [port.eq(0) for port, _ in counters]
        return m
