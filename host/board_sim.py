"""A virtual board: the board system in Verilator behind a pseudo-terminal (``zipml board-sim``).

The pty's far end plays the board's USB UART: whatever a host writes to the slave side reaches
the simulated ``rx`` pin as a UART waveform, and what the board sends on ``tx`` comes back. A
host opens the slave path exactly as it opens ``/dev/ttyUSB1`` (``--backend board --port``),
so every host path runs as on hardware: a crash (its half-sent frame stays on the line), a
reconnect, a second host (refused: the driver opens the port exclusively), Ctrl-C.

Simulated time advances while bytes are played in and, while a host has been active in the last
`ACTIVE_S` seconds, in slices during which ``tx`` is read, so a replay the board runs while its
host sleeps goes on as it would on the board and no answer is lost. (The board's own ``tx``
is not watched while a host's bytes are played in: an answer sent then, which a stop-and-wait
host only provokes by resending before the answer came, reaches the host damaged
(`SimTransport.read`) and is resent like any damaged frame.) Frames are handed on up to the last
FLAG seen (the rest waits for more bytes, as a UART would deliver them), so a frame is never
split between two plays.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
import time
import tty

from zipml.host.device import sim_transport_for
from zipml.hw import protocol as P
from zipml.hw.boards import BOARDS

#: a host quiet this long (wall seconds) lets the simulation rest
ACTIVE_S = 2.0
#: simulated seconds per slice of running the board while a host is active
SLICE_S = 0.0005


class VirtualBoard:
    """A `SimTransport` (or any transport with ``write``/``read``/``idle``) behind a pty.

    Parameters
    ----------
    transport : zipml.host.transport.SimTransport
        The simulated board system; closed by `close` only if ``own`` is true.
    own : bool
        Close the transport with the board.

    Attributes
    ----------
    path : str
        The pty's slave device: the serial port a host opens.
    """

    def __init__(self, transport, own=False):
        self.transport = transport
        self.own = own
        self.master, self._slave = os.openpty()
        # raw: no line discipline between the host's bytes and the UART (pyserial sets this
        # too when it opens the port; a host that does not still gets every byte as sent)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error = None
        self.thread = threading.Thread(target=self._run, name="virtual-board", daemon=True)
        self.thread.start()

    def _run(self):
        buf = bytearray()
        active_until = 0.0
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self.master], [], [], 0.005)
                if r:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:         # no host has the slave open: nothing to read
                        data = b""
                    buf += data
                    active_until = time.monotonic() + ACTIVE_S
                last = buf.rfind(P.FLAG)
                with self._lock:
                    if last >= 0:
                        # up to the last FLAG; it also opens what follows, so it stays
                        self.transport.write(bytes(buf[:last + 1]))
                        del buf[:last]
                    if last >= 0 or time.monotonic() < active_until:
                        self._forward()
                if len(buf) > 1 << 20:          # a host writing without FLAGs: noise
                    del buf[:-1]
        except Exception as exc:  # noqa: BLE001 - reported by `check` and the CLI
            self.error = exc

    def _forward(self):
        """Run the board `SLICE_S` at a time, passing on what it sends, until a slice passes
        in silence: time moves on only while ``tx`` is watched, so no answer is lost."""
        while True:
            out = self.transport.read(SLICE_S)
            if not out:
                return
            os.write(self.master, out)

    def check(self):
        """Raise what stopped the bridge thread, if anything did."""
        if self.error is not None:
            raise RuntimeError(f"virtual board stopped: {self.error}") from self.error

    def close(self):
        self._stop.set()
        self.thread.join(2)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.own:
            self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None):
    """``zipml board-sim [--board NAME]``: print the pty's path, then serve until SIGINT or
    SIGTERM."""
    ap = argparse.ArgumentParser(
        prog="zipml board-sim",
        description="Run a board's system in Verilator behind a pseudo-terminal; its path is "
                    "the first line printed. Train on it with --backend board --port PATH.")
    ap.add_argument("--board", choices=sorted(BOARDS), default=None,
                    help="the board's build (engine, clock, baud, store); default golden's "
                         "engine at 12 MHz, 3 Mbaud, as --backend sim without --board")
    ap.add_argument("--gap-prob", type=float, default=0.0,
                    help="probability of an idle gap before each byte into the board")
    ap.add_argument("--seed", type=int, default=0, help="seed of the gaps")
    args = ap.parse_args(argv)
    if not 0.0 <= args.gap_prob <= 1.0:
        ap.error(f"--gap-prob must be in [0, 1], got {args.gap_prob}")
    print(f"zipml board-sim: building the {args.board or 'default'} board system in "
          f"Verilator ...", file=sys.stderr)
    transport = sim_transport_for(board=args.board, gap_prob=args.gap_prob, seed=args.seed)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with VirtualBoard(transport, own=True) as board:
        print(board.path, flush=True)
        print(f"zipml board-sim: serving at {board.path} ({transport.clk_freq} Hz, "
              f"{transport.baud:.0f} baud); Ctrl-C stops", file=sys.stderr)
        while not stop.wait(0.2):
            if board.error is not None:
                break
        board.check()
    return 0
