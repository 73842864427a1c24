"""Byte transports to the board system: a serial port, or the Verilator simulation of `System`.

Everything above this module (`zipml.host.device.Device`, the CLI, the estimators) is the same
code for both, the Glasgow habit of one applet over a hardware and a simulated interface.

Interface (`Transport`): ``write(data)`` sends wire bytes; ``read(timeout)`` returns the bytes
that arrived, at least one, or ``b""`` when ``timeout`` seconds passed without any. The
simulation counts timeouts in *simulated* seconds (cycles / clock frequency), so the driver's
timeouts mean the same on both.

`SimTransport` works at the UART bit level: it drives the ``rx`` pin of the Verilated `System`
bit by bit and samples its ``tx`` pin, so the simulated link is the board's, UART and all. It
runs the board configuration as is: 12 MHz and 3 Mbaud is 4 clocks per bit, the iCEBreaker's
own divisor (docs/link.md).
"""

from __future__ import annotations

import abc
import time

from zipml.hw import protocol as P

__all__ = ["Transport", "SerialTransport", "SimTransport", "TransportError"]


class TransportError(RuntimeError):
    """The transport itself failed (port missing, simulation stuck)."""


class Transport(abc.ABC):
    """Bytes to and from the board."""

    #: link bit rate (for the link-efficiency figures); None if unknown
    baud = None

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send wire bytes."""

    @abc.abstractmethod
    def read(self, timeout: float) -> bytes:
        """Bytes received: at least one, or ``b""`` after ``timeout`` seconds of silence."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A serial port through pyserial (the board's FTDI UART).

    Parameters
    ----------
    port : str
        Device path, e.g. ``/dev/ttyUSB1`` (iCEBreaker: the FT2232H's second interface).
    baud : int
        Must equal the bitstream's rate (register ``param_clk_hz / param_divisor``; the
        board's default is `zipml.host.device.board_baud`).

    Raises
    ------
    TransportError
        The port cannot be opened (missing, busy, no permission) at this rate.
    """

    def __init__(self, port, baud):
        try:
            import serial
        except ImportError as e:  # pragma: no cover - pyserial is a dependency
            raise TransportError("pyserial is not installed: pip install pyserial") from e
        try:
            self._port = serial.Serial(port, baudrate=baud, timeout=0)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"cannot open serial port {port!r} at {baud} baud: {e}") from e
        self.baud = baud
        self._port.reset_input_buffer()
        # Stop-and-wait pays the adapter's latency on every answer: ask the kernel driver for
        # low latency (FTDI: latency timer 1 ms instead of 16). Not every port supports it.
        try:
            self._port.set_low_latency_mode(True)
        except (AttributeError, OSError, ValueError, NotImplementedError):
            pass

    def write(self, data):
        self._port.write(bytes(data))
        self._port.flush()

    def read(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            n = self._port.in_waiting
            if n:
                return self._port.read(n)
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.0005)

    def close(self):
        if getattr(self, "_port", None) is not None:
            self._port.close()
            self._port = None


class SimTransport(Transport):
    """The board system (`zipml.hw.soc.System`) in Verilator, driven through its UART pins.

    Parameters
    ----------
    clk_freq, baud : int
        As the board (default: iCEBreaker, 12 MHz and 3 Mbaud, 4 clocks per bit).
    W, D_MAX, B_MAX, BUF_DEPTH, STORE_DEPTH : int
        `System` parameters. The build is cached per parameter set (`zipml.sim.verilator`).
    system : System, optional
        A ready `System` instead of the parameters above.
    gap_prob : float
        Probability of a random idle gap (1 .. 8 bit times) before each byte sent, as a USB
        serial adapter leaves between its packets; 0 sends back to back.
    seed : int
        Seed of the gaps.

    Attributes
    ----------
    model : zipml.sim.verilator.Model
    divisor : int
        Clocks per UART bit.
    """

    def __init__(self, clk_freq=12_000_000, baud=3_000_000, W=8, D_MAX=256, B_MAX=8,
                 BUF_DEPTH=512, STORE_DEPTH=4096, system=None, gap_prob=0.0, seed=0):
        import random
        from zipml.hw.soc import System
        from zipml.sim.verilator import Model, to_verilog
        if system is None:
            system = System(clk_freq, baud, W=W, D_MAX=D_MAX, B_MAX=B_MAX, BUF_DEPTH=BUF_DEPTH,
                            STORE_DEPTH=STORE_DEPTH)
        self.system = system
        self.clk_freq = system.clk_freq
        self.baud = system.clk_freq / system.divisor
        self.divisor = system.divisor
        top = (f"zipml_system_w{system.W}_d{system.D_MAX}_b{system.B_MAX}_"
               f"buf{system.BUF_DEPTH}_st{system.STORE_DEPTH}_div{system.divisor}")
        self.model = Model(to_verilog(system, top), top)
        self.model.set("rx", 1)
        self.model.reset()
        self.model.tick(4 * self.divisor)   # let the synchronizers see an idle line
        self.gap_prob = gap_prob
        self._rng = random.Random(seed)
        self.bytes_written = 0
        self.bytes_read = 0

    @property
    def cycles(self):
        return self.model.cycles

    def write(self, data):
        m, div = self.model, self.divisor
        # The line level clock by clock, as runs: (level, clocks). Equal neighbouring bits
        # merge into one tick call (a 0x00 byte is one run of 9 bit times).
        runs = []

        def level(v, clocks):
            if runs and runs[-1][0] == v:
                runs[-1][1] += clocks
            else:
                runs.append([v, clocks])

        for b in bytes(data):
            if self.gap_prob and self._rng.random() < self.gap_prob:
                level(1, self._rng.randrange(1, 8 * div))    # idle line between bytes
            level(0, div)                                     # start bit
            for i in range(8):
                level((b >> i) & 1, div)
            level(1, div)                                     # stop bit
        for v, clocks in runs:
            m.set("rx", v)
            m.tick(clocks)
        self.bytes_written += len(data)

    def _read_byte(self, max_cycles):
        """One byte from ``tx``, or None if no start bit within ``max_cycles``."""
        m, div = self.model, self.divisor
        try:
            m.wait("tx", 0, max_cycles=max_cycles)
        except TimeoutError:
            return None
        m.tick(div // 2)              # middle of the start bit
        if m.get("tx") != 0:
            raise TransportError(f"simulated UART: glitch on tx at cycle {m.cycles}")
        b = 0
        for i in range(8):
            m.tick(div)
            b |= m.get("tx") << i
        m.tick(div)
        if m.get("tx") != 1:
            raise TransportError(f"simulated UART: framing error on tx at cycle {m.cycles}")
        return b

    def read(self, timeout):
        """Receive until a frame's closing FLAG (or ``timeout`` simulated seconds of silence)."""
        max_cycles = max(1, int(timeout * self.clk_freq))
        out = bytearray()
        # After a closing FLAG the device sends nothing more without a new command.
        while True:
            b = self._read_byte(max_cycles if not out else 20 * self.divisor * 10)
            if b is None:
                break
            out.append(b)
            if b == P.FLAG and len(out) > 1 and out[-2] != P.FLAG:
                break
        self.bytes_read += len(out)
        return bytes(out)

    def idle(self, seconds):
        """Let simulated time pass (the board would just keep running)."""
        self.model.tick(max(1, int(seconds * self.clk_freq)))

    def close(self):
        model = getattr(self, "model", None)
        if model is not None:
            model.close()
            self.model = None
