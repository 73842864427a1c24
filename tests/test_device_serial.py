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
        SerialTransport("/dev/nonexistent-zipml", 3_000_000)


def test_serial_silence_times_out(tmp_path):
    master, slave = os.openpty()
    try:
        with SerialTransport(os.ttyname(slave), 3_000_000) as t:
            with pytest.raises(DeviceTimeout, match="PING: no valid answer after 2 tries"):
                Device(t, timeout=0.05, retries=1)
    finally:
        os.close(master)
        os.close(slave)


def _train_board(board, capsys, *args):
    from zipml.host.cli import main
    rc = main(["train", "diabetes", "--backend", "board", "--port", board.path, "--bits", "4",
               "--epochs", "1", "--quiet", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_trains_on_the_board_at_its_default_baud(board, capsys, tmp_path):
    """`zipml train --backend board --board icebreaker`: the port opened at the board's rate,
    the model equal to the golden model of the board's engine (read from the board)."""
    import json
    from zipml.host import datasets
    from zipml.host.backend_engine import train_golden
    from zipml.host.problem import TrainOptions, prepare
    from zipml.reference.golden import EngineConfig
    rc, out, err = _train_board(board, capsys, "--board", "icebreaker", "--json",
                                str(tmp_path / "r.json"))
    assert rc == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    ds = datasets.load("diabetes", "regression")
    gold = train_golden(prepare(ds.X, ds.y, "regression"),
                        TrainOptions(bits=4, epochs=1, lr=doc["lr"], decay=doc["decay"]),
                        config=EngineConfig(W=SIM["W"], D_MAX=SIM["D_MAX"], B_MAX=SIM["B_MAX"],
                                            BUF_DEPTH=SIM["BUF_DEPTH"]))
    assert doc["model_raw"] == gold.model_raw and doc["mse"] == gold.mse


def test_cli_board_at_another_baud_than_the_bitstreams_is_one_clear_error(board, capsys):
    # A pty carries any rate, so the link works and the board's own registers tell the rate.
    rc, _, err = _train_board(board, capsys, "--baud", "115200")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, err
    assert "runs at 3000000 baud" in lines[0] and "--baud" in lines[0]


def test_cli_board_port_that_cannot_be_opened_is_one_clear_error(capsys, tmp_path):
    from zipml.host.cli import main
    rc = main(["train", "diabetes", "--backend", "board", "--port", str(tmp_path / "ttyNONE"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert f"cannot open serial port '{tmp_path / 'ttyNONE'}' at 3000000 baud" in err


def test_estimator_passes_baud_to_the_board(board):
    from sklearn.datasets import load_diabetes
    from zipml import ZipMLRegressor
    X, y = load_diabetes(return_X_y=True)
    est = ZipMLRegressor(backend="board", port=board.path, baud=3_000_000, bits=4, epochs=1)
    assert est.fit(X, y).result_.extra["backend"] == "board"
    with pytest.raises(ValueError, match="baud must be a positive integer"):
        ZipMLRegressor(backend="board", port=board.path, baud="fast", epochs=1).fit(X, y)


def test_default_baud_is_the_boards(monkeypatch):
    import dataclasses
    from zipml.hw import boards
    from zipml.host.device import board_baud
    assert board_baud() == boards.BOARDS["icebreaker"].baud == boards.BOARDS["ulx3s"].baud
    # Were the boards' defaults to differ, the board must be named (or the rate given).
    monkeypatch.setitem(boards.BOARDS, "ulx3s",
                        dataclasses.replace(boards.BOARDS["ulx3s"], baud=1_000_000))
    with pytest.raises(ValueError, match="name the board .*--board.* or the rate .*--baud"):
        board_baud()
    assert board_baud(board="ulx3s") == 1_000_000
    assert board_baud(board="icebreaker") == boards.BOARDS["icebreaker"].baud
    assert board_baud(baud=115_200, board="ulx3s") == 115_200
    with pytest.raises(ValueError, match="unknown board 'de10'"):
        board_baud(board="de10")
