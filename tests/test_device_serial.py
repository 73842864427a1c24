"""`SerialTransport` + `Device` over a real pseudo-terminal whose far end is the Verilated board.

No FPGA in CI, so a thread plays the FTDI: it moves bytes between the pty's master side and the
simulated UART pins. The driver opens the slave side with pyserial exactly as it opens
/dev/ttyUSB1 on the iCEBreaker (`train_board`).
"""

import os
import select
import threading

import numpy as np
import pytest

from zipml.hw import protocol as P
from zipml.host.device import Device, DeviceTimeout
from zipml.host.transport import SerialTransport, SimTransport, TransportError

SIM = dict(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)


class PtyBoard:
    """A pty whose other end is a `SimTransport`; ``path`` is the serial device to open."""

    def __init__(self, sim):
        self.sim = sim
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = bytearray()
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.02)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            buf += data
            # Stop-and-wait: pass on whole frames, then return the board's answer.
            while True:
                end = _frame_end(buf)
                if end is None:
                    break
                frame, buf = bytes(buf[:end]), buf[end:]
                self.sim.write(frame)
                answer = self.sim.read(0.01)
                if answer:
                    os.write(self.master, answer)

    def close(self):
        self._stop = True
        self.thread.join(1)
        os.close(self.master)
        os.close(self._slave)


def _frame_end(buf):
    """Index after the closing FLAG of the first complete frame in ``buf``, or None."""
    start = buf.find(P.FLAG)
    if start < 0:
        return None
    i = start + 1
    while True:
        j = buf.find(P.FLAG, i)
        if j < 0:
            return None
        if j > i:
            return j + 1
        i = j + 1   # empty frame (idle fill): keep looking


@pytest.fixture(scope="module")
def board():
    sim = SimTransport(**SIM)
    b = PtyBoard(sim)
    yield b
    b.close()
    sim.close()


def test_device_over_serial_port(board):
    with SerialTransport(board.path, 3_000_000) as t:
        dev = Device(t, timeout=0.5)
        assert dev.params["W"] == 8 and dev.params["clk_hz"] == 12_000_000
        words = np.random.default_rng(0).integers(-2**31, 2**31, size=40)
        dev.write_model(words)
        assert np.array_equal(dev.read_model(40), words)


def test_serial_port_missing_is_a_clear_error():
    with pytest.raises(TransportError, match="cannot open serial port '/dev/nonexistent-zipml'"):
        SerialTransport("/dev/nonexistent-zipml")


def test_serial_silence_times_out(tmp_path):
    master, slave = os.openpty()
    try:
        with SerialTransport(os.ttyname(slave)) as t:
            with pytest.raises(DeviceTimeout, match="PING: no valid answer after 2 tries"):
                Device(t, timeout=0.05, retries=1)
    finally:
        os.close(master)
        os.close(slave)
