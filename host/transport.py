"""Byte transports to the board system: a serial port, or the Verilator simulation of `System`.

Everything above this module (`zipml.host.device.Device`, the CLI, the estimators) is the same
code for both, the Glasgow habit of one applet over a hardware and a simulated interface.

Interface (`Transport`): ``write(data)`` sends wire bytes; ``read(timeout)`` returns the bytes
that arrived, at least one, or ``b""`` when ``timeout`` seconds passed without any. The
simulation counts timeouts in *simulated* seconds (cycles / clock frequency), so the driver's
timeouts mean the same on both.

`SimTransport` works at the UART bit level: it drives the ``rx`` pin of the Verilated `System`
bit by bit and samples its ``tx`` pin, so the simulated link is the board's, UART and all. Its
clock and rate are parameters (default 12 MHz and 3 Mbaud, 4 clocks per bit);
`zipml.host.device.sim_transport_for` gives a board's build, clock and rate (docs/link.md).
"""

from __future__ import annotations

import abc
import pathlib
import random
import time

import numpy as np

from zipml.hw import protocol as P

__all__ = ["Transport", "SerialTransport", "SimTransport", "TransportError", "FaultyLine"]


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
            import serial  # lazy: its absence is one TransportError
        except ImportError as e:  # pragma: no cover - pyserial is a dependency
            raise TransportError("pyserial is not installed: pip install pyserial") from e
        try:
            # exclusive: a second host on the same board would interleave its frames with ours
            self._port = serial.Serial(port, baudrate=baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"cannot open serial port {port!r} at {baud} baud: {e} (is "
                                 f"another zipml, screen or minicom holding it?)") from e
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


def _system_top(W, D_MAX, B_MAX, BUF_DEPTH, STORE_DEPTH, divisor, ARCH, L2, COUNTER_BITS=None,
                STALL=True, LINK_BITS=None, READBACK=True):
    """Verilog top name of a `System` build: every parameter in it."""
    arch = "" if ARCH == "parallel" else f"_{ARCH}"
    l2 = "" if L2 else "_nol2"
    trims = ((f"_c{COUNTER_BITS}" if COUNTER_BITS else "") + ("" if STALL else "_nostall")
             + (f"_l{LINK_BITS}" if LINK_BITS else "") + ("" if READBACK else "_norb"))
    return (f"zipml_system{arch}{l2}{trims}_w{W}_d{D_MAX}_b{B_MAX}_buf{BUF_DEPTH}"
            f"_st{STORE_DEPTH}_div{divisor}")


class SimTransport(Transport):
    """The board system (`zipml.hw.soc.System`) in Verilator, driven through its UART pins.

    Parameters
    ----------
    clk_freq, baud : int
        System clock and UART rate (default 12 MHz and 3 Mbaud, 4 clocks per bit, the fewest
        the UART takes).
    W, D_MAX, B_MAX, BUF_DEPTH, STORE_DEPTH, ARCH, L2, COUNTER_BITS, STALL, LINK_BITS, READBACK
        `System` parameters (``L2=False``: the engine without the L2 shrink, as the
        iCEBreaker's; register ``caps`` says so and the host refuses L2 jobs; the
        iCEBreaker's trims ``COUNTER_BITS=32, STALL=False, LINK_BITS=8, READBACK=False``:
        32-bit engine counters, no stall counter, 8-bit link counters, configuration
        registers not read back, also in ``caps``). Its Verilog
        is cached per parameter set and source code (`zipml.sim.verilator.to_verilog_cached`),
        the Verilator build per Verilog text.
    system : System, optional
        A ready `System` instead of the parameters above (converted every time: it may be a
        subclass with code elsewhere).
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
                 BUF_DEPTH=512, STORE_DEPTH=4096, ARCH="parallel", L2=True, COUNTER_BITS=None,
                 STALL=True, LINK_BITS=None, READBACK=True, system=None, gap_prob=0.0,
                 seed=0):
        from zipml.hw.soc import System, divisor_for  # lazy: amaranth, only when simulating
        from zipml.sim.verilator import Model, to_verilog, to_verilog_cached  # lazy: likewise
        if system is None:
            params = dict(clk_freq=clk_freq, baud=baud, W=W, D_MAX=D_MAX, B_MAX=B_MAX,
                          BUF_DEPTH=BUF_DEPTH, STORE_DEPTH=STORE_DEPTH, ARCH=ARCH, L2=bool(L2))
            trims = dict(COUNTER_BITS=COUNTER_BITS, STALL=bool(STALL), LINK_BITS=LINK_BITS,
                         READBACK=bool(READBACK))
            # only the trims asked for: the defaults keep the cache keys
            defaults = dict(COUNTER_BITS=None, STALL=True, LINK_BITS=None, READBACK=True)
            params.update({k: v for k, v in trims.items() if v != defaults[k]})
            self.clk_freq, self.divisor = int(clk_freq), divisor_for(clk_freq, baud)
            top = _system_top(W, D_MAX, B_MAX, BUF_DEPTH, STORE_DEPTH, self.divisor, ARCH,
                              bool(L2), **trims)
            # `System` elaborates code of zipml.hw only (which may call into zipml.reference).
            # Parameters that fail never reach the cache: `System` checks them on the miss.
            package = pathlib.Path(__file__).resolve().parent.parent
            verilog = to_verilog_cached(System, top, params=params,
                                        sources=[package / "hw", package / "reference"])
        else:
            self.clk_freq, self.divisor = system.clk_freq, system.divisor
            top = _system_top(system.W, system.D_MAX, system.B_MAX, system.BUF_DEPTH,
                              system.STORE_DEPTH, system.divisor, system.ARCH,
                              getattr(system, "L2", True), getattr(system, "COUNTER_BITS", None),
                              getattr(system, "STALL", True), getattr(system, "LINK_BITS", None),
                              getattr(system, "READBACK", True))
            # a System made elsewhere may be a subclass whose code the cache cannot hash
            verilog = to_verilog(system, top)
        self.baud = self.clk_freq / self.divisor
        self.model = Model(verilog, top)
        self.model.set("rx", 1)
        self.model.reset()
        self.model.tick(4 * self.divisor)   # let the synchronizers see an idle line
        self.gap_prob = gap_prob
        self._rng = random.Random(seed)
        self.bytes_written = 0
        self.bytes_read = 0
        self.framing_errors = 0

    @property
    def cycles(self):
        return self.model.cycles

    def write(self, data):
        """Drive ``rx`` with the bytes' 8N1 waveform, in C++ (`Model.play`): one call per
        write, not one per bit."""
        div = self.divisor
        data = np.frombuffer(bytes(data), dtype=np.uint8)
        if not data.size:
            return
        # Per byte: start bit 0, data bits LSB first, stop bit 1, div clocks each.
        bits = np.unpackbits(data[:, None], axis=1, bitorder="little")
        frame = np.hstack([np.zeros((data.size, 1), np.uint8), bits,
                           np.ones((data.size, 1), np.uint8)])
        levels = frame.astype(np.uint64)
        clocks = np.full(levels.shape, div, dtype=np.uint64)
        if self.gap_prob:
            # An idle line (level 1) before a byte now and then, as a USB adapter leaves.
            gaps = np.array([self._rng.randrange(1, 8 * div)
                             if self._rng.random() < self.gap_prob else 0
                             for _ in range(data.size)], dtype=np.uint64)
            levels = np.hstack([np.ones((data.size, 1), np.uint64), levels])
            clocks = np.hstack([gaps[:, None], clocks])
        self.model.play("rx", levels.ravel(), clocks.ravel())
        self.bytes_written += data.size

    def read(self, timeout):
        """Receive until a frame's closing FLAG (or ``timeout`` simulated seconds of silence),
        decoding ``tx`` in C++ (`Model.uart_read`): mid-bit samples, 8N1.

        The simulated board's ``tx`` is watched only inside `read`: a byte it began while the
        host's bytes were played in (`write`) is caught mid-way, a framing error. Like a
        real receiver, this one then drops what it had of the frame (the host sees a damaged
        or missing answer and resends), waits a bit time and looks for the next start bit;
        ``framing_errors`` counts these."""
        budget = max(1, int(timeout * self.clk_freq))
        start = self.model.cycles
        while True:
            try:
                out = self.model.uart_read("tx", self.divisor, first_timeout=budget,
                                           # after a closing FLAG the board sends nothing more
                                           # without a new command; within a frame bytes
                                           # follow back to back, so 20 byte times of
                                           # silence end it
                                           idle_timeout=200 * self.divisor, stop_byte=P.FLAG)
                break
            except ValueError:
                self.framing_errors += 1
                self.model.tick(self.divisor)
                if self.model.cycles - start >= budget:
                    out = b""
                    break
        self.bytes_read += len(out)
        return out

    def idle(self, seconds):
        """Let simulated time pass (the board would just keep running)."""
        self.model.tick(max(1, int(seconds * self.clk_freq)))

    def close(self):
        model = getattr(self, "model", None)
        if model is not None:
            model.close()
            self.model = None


class FaultyLine(Transport):
    """A bad line between the host and a transport: seeded byte faults in both directions.

    Each byte is hit with probability ``rate``; a hit is one of ``kinds``, chosen uniformly:
    ``flip`` (one bit), ``drop`` (the byte vanishes), ``insert`` (a random byte after it) or
    ``burst`` (it and the next 1..7 bytes replaced by random ones). Everything else
    (``cycles``, ``clk_freq``, ``idle``, ``baud``) is the inner transport's, so the host's
    deadlines run on the simulated clock as before.

    Attributes
    ----------
    faults : dict
        Faults injected so far, per kind and direction (``"out"``: to the board, ``"in"``).
    """

    KINDS = ("flip", "drop", "insert", "burst")

    def __init__(self, inner, rate, seed=0, kinds=KINDS):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"fault rate must be in [0, 1), got {rate}")
        unknown = set(kinds) - set(self.KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be among {', '.join(self.KINDS)}, got {kinds}")
        self.inner, self.rate, self.kinds = inner, float(rate), tuple(kinds)
        self._rng = np.random.default_rng(seed)
        self.faults = {d: dict.fromkeys(self.kinds, 0) for d in ("out", "in")}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def faults_injected(self):
        return sum(sum(k.values()) for k in self.faults.values())

    def _damage(self, data, direction):
        data = bytearray(data)
        hits = np.flatnonzero(self._rng.random(len(data)) < self.rate)
        for i in hits[::-1]:            # from the end: earlier indices stay valid
            kind = self.kinds[self._rng.integers(len(self.kinds))]
            self.faults[direction][kind] += 1
            if kind == "flip":
                data[i] ^= 1 << int(self._rng.integers(8))
            elif kind == "drop":
                del data[i]
            elif kind == "insert":
                data.insert(i + 1, int(self._rng.integers(256)))
            else:
                k = int(self._rng.integers(2, 9))
                data[i:i + k] = self._rng.integers(0, 256, min(k, len(data) - i),
                                                   dtype=np.uint8).tobytes()
        return bytes(data)

    def write(self, data):
        self.inner.write(self._damage(data, "out"))

    def read(self, timeout):
        data = self.inner.read(timeout)
        return self._damage(data, "in") if data else data

    def close(self):
        self.inner.close()
