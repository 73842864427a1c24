"""8N1 UART receiver and transmitter at a fixed number of clocks per bit.

The divisor is a synthesis parameter: the iCEBreaker's 12 MHz with divisor 4 is 3 Mbaud (the
FT2232H's top rate), and the Verilator simulation runs the same gateware with a small divisor
(docs/link.md). Bytes travel as ``amaranth.lib.stream`` payloads of 8 bits, LSB first on the line.
"""

from amaranth.hdl import Module, Signal, Cat, Const
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["UartRx", "UartTx", "MIN_DIVISOR"]

# The receiver samples each bit at the middle of its divisor clocks, found from the start edge
# with a 2-flop synchronizer in front: 4 clocks per bit leave one clock of margin either side.
MIN_DIVISOR = 4


class _Timer:
    """A down-counter with its ``zero`` kept as a flip-flop beside it, so that a decision on
    "the time is up" is that flip-flop, not a compare of the count."""

    def __init__(self, m, top):
        self._m = m
        self.value = Signal(range(top + 1))
        self.zero = Signal(init=1)

    def load(self, n):
        self._m.d.sync += [self.value.eq(n), self.zero.eq(n == 0)]

    def count(self):
        self._m.d.sync += [self.value.eq(self.value - 1), self.zero.eq(self.value == 1)]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be an integer >= {MIN_DIVISOR} clocks per bit, "
                         f"got {divisor!r}")


class UartRx(wiring.Component):
    """UART receiver, 8 data bits, no parity, 1 stop bit.

    Parameters
    ----------
    divisor : int
        Clocks per bit, >= 4.

    Ports
    -----
    rx : In(1)
        The line, idle high. Asynchronous: synchronized inside (2 flops).
    o_stream : Out(stream.Signature(8))
        One payload per received byte, ``valid`` for one cycle. The line cannot wait, so there
        is no backpressure: a byte not taken (``ready`` low) is lost and counted by ``overrun``.
    overrun : Out(1)
        Strobe (combinational): the byte offered this cycle is lost, ``ready`` is low.
    error : Out(1)
        Strobe: framing error (stop bit sampled 0); the byte is dropped.

    Latency: ``o_stream.valid`` rises at the middle of the stop bit plus 2 synchronizer clocks.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o_stream": Out(stream.Signature(8)),
            "overrun": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = _Timer(m, self.divisor * 3 // 2)
        bit = Signal(range(10))
        shreg = Signal(8)
        m.d.sync += [self.o_stream.valid.eq(0), self.error.eq(0)]
        m.d.comb += self.overrun.eq(self.o_stream.valid & ~self.o_stream.ready)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Wait half a bit to the middle of the start bit.
                    timer.load(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(~timer.zero):
                    timer.count()
                with m.Elif(rx):
                    m.next = "IDLE"  # a glitch, not a start bit
                with m.Else():
                    timer.load(self.divisor - 1)
                    m.d.sync += bit.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(~timer.zero):
                    timer.count()
                with m.Else():
                    timer.load(self.divisor - 1)
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(~timer.zero):
                    timer.count()
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o_stream.payload.eq(shreg), self.o_stream.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                # After a framing error wait for the line to return high before the next start.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1.

    Parameters
    ----------
    divisor : int
        Clocks per bit, >= 4 (the transmitter itself would work with 1; kept equal to the rx).

    Ports
    -----
    i_stream : In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle.
    tx : Out(1)
        The line, idle high, registered.

    Throughput: one byte per ``10 * divisor`` clocks, back to back.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = _Timer(m, self.divisor - 1)
        # start bit, 8 data bits, stop bit; shifted out LSB first.
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))
        idle = Signal(init=1)       # left == 0, kept beside it

        m.d.comb += self.i_stream.ready.eq(idle)
        m.d.sync += self.tx.eq(shreg[0])
        with m.If(idle):
            with m.If(self.i_stream.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.i_stream.payload, Const(1, 1))),
                             left.eq(10), idle.eq(0)]
                timer.load(self.divisor - 1)
        with m.Else():
            with m.If(~timer.zero):
                timer.count()
            with m.Else():
                m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), left.eq(left - 1),
                             idle.eq(left == 1)]
                timer.load(self.divisor - 1)
        return m
