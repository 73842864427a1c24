"""`SerialTransport` + `Device` over a real pseudo-terminal whose far end is the Verilated board.

No FPGA in CI, so the virtual board (`zipml.host.board_sim.VirtualBoard`, `zipml board-sim`)
plays the FTDI: it moves bytes between the pty's master side and the simulated UART pins. The
driver opens the slave side with pyserial exactly as it opens /dev/ttyUSB1 on the iCEBreaker
(`train_board`).
"""

import os

import numpy as np
import pytest

from zipml.host.board_sim import VirtualBoard
from zipml.host.device import Device, DeviceTimeout
from zipml.host.transport import SerialTransport, SimTransport, TransportError

SIM = dict(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024, STORE_DEPTH=16384)


@pytest.fixture(scope="module")
def board():
    with VirtualBoard(SimTransport(**SIM), own=True) as b:
        yield b


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


def test_a_second_host_is_refused_while_the_first_holds_the_port(board):
    """The driver opens the port exclusively: a second host gets one clear error instead of
    interleaving its frames with the first host's."""
    with SerialTransport(board.path, 3_000_000) as t:
        Device(t, timeout=0.5)
        with pytest.raises(TransportError, match="another zipml"):
            SerialTransport(board.path, 3_000_000)
    with SerialTransport(board.path, 3_000_000) as t:     # free again once closed
        Device(t, timeout=0.5)


def test_a_host_that_dies_mid_frame_and_mid_job_leaves_nothing(board, diabetes_prepared):
    """A host enables the engine, streams part of an epoch and dies in the middle of a frame
    (the port closed with half a frame on the line); the next host's run over the same port is
    bit-exact to golden."""
    import dataclasses

    from zipml.hw import protocol as P
    from zipml.host.backend_engine import engine_job_for, train_golden
    from zipml.host.device import _train_on
    from zipml.host.problem import TrainOptions, resolve
    from zipml.reference.golden import EngineConfig
    config = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)
    opts = resolve(diabetes_prepared, dataclasses.replace(
        TrainOptions(quantizer="double", bits=2, epochs=2, seed=9), replay=False))
    job = engine_job_for(diabetes_prepared, opts, config, 16384)
    with SerialTransport(board.path, 3_000_000) as t:
        dev = Device(t, timeout=0.5)
        regs = job.epoch_regs(0)
        dev.configure(**{r.name: int(getattr(regs, r.engine)) for r in P.ENGINE_REGISTERS})
        dev.set_ctrl(enable=True, clear=True)
        dev.stream(np.asarray(job.epoch_stream(0), dtype=np.uint64)[:50])
        t.write(P.encode_frame(dev._seq, P.Command.STREAM, bytes(16))[:9])   # cut short
    with SerialTransport(board.path, 3_000_000) as t:
        res = _train_on(Device(t, timeout=0.5), diabetes_prepared, opts, None, config, "board")
    gold = train_golden(diabetes_prepared, opts, config=config)
    assert res.model_raw == gold.model_raw and res.mse == gold.mse


# A few minutes (the default board system's build and three runs over the pty): `make test-slow`.
# CI runs the same VirtualBoard in-process above (a second host, a crash mid-frame and mid-job).
@pytest.mark.slow
def test_zipml_board_sim_trains_survives_ctrl_c_and_trains_again(tmp_path):
    """`zipml board-sim` prints its pty first; `zipml train --backend board --port PTY` on it
    equals golden bit for bit; a run interrupted by SIGINT exits 130 and the next run on the
    same virtual board still equals golden."""
    import json
    import re
    import signal
    import subprocess
    import sys
    import time

    def zipml(*args, **kw):
        return subprocess.Popen([sys.executable, "-m", "zipml.host.cli", *args], **kw)

    server = zipml("board-sim", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/"), (port, server.stderr.read() if server.poll() else "")
        args = ["train", "diabetes", "--bits", "3", "--seed", "4", "--quiet"]

        def run(backend, name, epochs="2", extra=()):
            out = tmp_path / f"{name}.json"
            p = zipml(*args, "--epochs", epochs, "--backend", backend, *extra, "--json",
                      str(out), stderr=subprocess.PIPE, text=True)
            return p, out

        # the virtual board runs slower than the real one (and slower still under load): the
        # host waits longer for each answer
        on_it = ("--port", port, "--link-timeout", "5")
        # not --quiet: its progress bar says when the first epoch is done on the board
        p = zipml(*[a for a in args if a != "--quiet"], "--epochs", "5000", "--backend",
                  "board", *on_it, stderr=subprocess.PIPE)
        seen = bytearray()
        deadline = time.monotonic() + 300
        while not re.search(rb" [1-9]\d*/5000", seen):
            assert p.poll() is None and time.monotonic() < deadline, seen.decode(errors="replace")
            seen += os.read(p.stderr.fileno(), 4096)
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 130, p.stderr.read()
        assert b"interrupted" in seen + p.stderr.read()
        p, board_json = run("board", "board", epochs="1", extra=on_it)
        assert p.wait(300) == 0, p.stderr.read()
        p, golden_json = run("golden", "golden", epochs="1")
        assert p.wait(300) == 0, p.stderr.read()
        on_board, gold = (json.loads(f.read_text()) for f in (board_json, golden_json))
        assert on_board["model_raw"] == gold["model_raw"] and on_board["mse"] == gold["mse"]
        assert server.poll() is None, server.stderr.read()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.stderr.read()
