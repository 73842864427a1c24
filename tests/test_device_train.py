"""The whole board system in Verilator, driven by the host driver over the simulated UART, trains
a real dataset (scikit-learn's diabetes, 442 x 10) bit-exact to the golden model: streaming and
replay, double and a single-sample quantizer with a minibatch.

The expected values are the golden model's (`zipml.host.backend_engine.train_golden`), an
independent NumPy implementation of docs/engine.md; the system under test is UART + frames +
command unit + engine + sample store.
"""

import dataclasses

import numpy as np
import pytest

from zipml.host.device import train_sim, sim_transport_for
from zipml.reference.golden import EngineConfig

# The iCEBreaker's engine width, small D_MAX/BUF for a quick build; the same parameters as
# tests/test_link_system.py, so both modules share one cached Verilator build.
CONFIG = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)


@pytest.fixture(scope="module")
def sim():
    t = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    yield t
    t.close()


@pytest.fixture(scope="module")
def prepared(diabetes_prepared):
    return diabetes_prepared


def _options(**kw):
    from zipml.host.problem import TrainOptions
    replay = kw.pop("replay", False)
    opts = TrainOptions(**kw)
    if dataclasses.is_dataclass(opts) and "replay" in {f.name for f in dataclasses.fields(opts)}:
        opts = dataclasses.replace(opts, replay=replay)
    else:
        opts.replay = replay
    return opts


def _golden(prepared, options):
    from zipml.host.backend_engine import train_golden
    return train_golden(prepared, options, config=CONFIG)


@pytest.mark.parametrize("kw", [
    dict(quantizer="double", bits=4, batch=1, epochs=2, seed=1),
    dict(quantizer="naive", bits=2, batch=4, epochs=1, seed=2),
])
def test_sim_streaming_bit_exact_to_golden(sim, prepared, kw):
    opts = _options(**kw)
    res = train_sim(prepared, opts, config=CONFIG, transport=sim)
    gold = _golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse
    assert res.extra["samples"] == gold.extra["samples"] == kw["epochs"] * prepared.A.shape[0]
    assert res.extra["words"] == gold.extra["words"]
    assert res.extra["overflow"] == gold.extra["overflow"]
    assert res.cycles > 0
    # Something was learnt: the model beats predicting zero (the scaled mean of b is ~0).
    assert res.mse[-1] < np.mean((prepared.b) ** 2) * _b_scale2(prepared)


def test_sim_replay_bit_exact_to_golden_and_uploads_once(sim, prepared):
    opts = _options(quantizer="double", bits=3, batch=1, epochs=3, seed=5, replay=True)
    res = train_sim(prepared, opts, config=CONFIG, transport=sim)
    gold = _golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse
    assert res.extra["link"]["uploads"] == 1
    # Replay is store mode (docs/store.md): the stored segment crosses the link once and is
    # read from the store every epoch; the board's counts are the job's.
    assert res.extra["store_p"] == gold.extra["store_p"] > 0
    assert res.extra["link"]["payload"] * 8 == res.extra["link_bits"] == gold.extra["link_bits"]
    assert res.extra["store_bits"] == gold.extra["store_bits"] == 3 * gold.extra["link_bits"]
    # ... and it differs from streaming fresh codes every epoch (replay is its own mode).
    stream = _golden(prepared, _options(quantizer="double", bits=3, batch=1, epochs=3, seed=5))
    assert stream.model_raw != gold.model_raw


def _b_scale2(prepared):
    s = getattr(prepared, "b_scale", 1.0)
    return float(s) ** 2


@pytest.mark.slow
@pytest.mark.parametrize("replay", [False, True])
def test_sim_default_config_equals_golden_default(prepared, replay):
    """What `zipml train DATA --backend sim` runs: golden's own engine config (W = 32), with the
    backends' defaults for the step and decay, equal bit for bit to `--backend golden`."""
    from zipml.host.backend_engine import train_golden
    from zipml.host.problem import resolve
    opts = resolve(prepared, _options(quantizer="double", bits=4, epochs=2, seed=3,
                                      replay=replay))
    res = train_sim(prepared, opts)
    gold = train_golden(prepared, opts)
    assert res.model_raw == gold.model_raw
    assert res.mse == gold.mse


# -- `--board NAME --backend sim`: the board's build in Verilator ---------------------------------

class _Captured(Exception):
    """Raised by the stand-in SimTransport with the parameters it was given."""


def _capture(monkeypatch):
    import zipml.host.device

    def fake(**params):
        raise _Captured(params)

    monkeypatch.setattr(zipml.host.device, "SimTransport", fake)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_sim_transport_for_a_board_is_the_boards_build(board, monkeypatch):
    """The simulated system of ``--board NAME``: the board's engine, L2 and sample store as
    hw/boards.py declares them, at a clock its PLL makes exactly and that divides into the
    board's baud (no Verilator: the parameters are caught on their way to SimTransport)."""
    from zipml.hw.boards import BOARDS
    from zipml.hw.soc import divisor_for
    spec = BOARDS[board]
    _capture(monkeypatch)
    with pytest.raises(_Captured) as got:
        sim_transport_for(board=board)
    p = got.value.args[0]
    engine = dict(spec.engine)
    assert p.pop("L2") is engine.pop("L2", True)
    assert {k: p[k] for k in ("W", "D_MAX", "B_MAX", "BUF_DEPTH", "ARCH")} == \
        {"ARCH": "parallel", **engine}
    assert p["STORE_DEPTH"] == spec.store_depth and p["baud"] == spec.baud
    clk = p["clk_freq"]
    assert clk % spec.baud == 0 and divisor_for(clk, spec.baud) == clk // spec.baud
    assert spec.pll(clk)["f_out_hz"] == pytest.approx(clk, abs=1)
    assert clk <= spec.target_mhz * 1e6


def test_sim_transport_without_a_board_is_as_before(monkeypatch):
    """No board: golden's config with L2 at 12 MHz / 3 Mbaud (4 clocks per bit), as before
    --board reached the sim; a config of one's own keeps those options."""
    from zipml.reference.engine_job import DEFAULT_CONFIG
    _capture(monkeypatch)
    for config, want in ((None, DEFAULT_CONFIG), (CONFIG, CONFIG)):
        with pytest.raises(_Captured) as got:
            sim_transport_for(config)
        p = got.value.args[0]
        assert (p["W"], p["D_MAX"], p["B_MAX"], p["BUF_DEPTH"], p["ARCH"]) == \
            (want.W, want.D_MAX, want.B_MAX, want.BUF_DEPTH, want.ARCH)
        assert (p["clk_freq"], p["baud"], p["L2"], p["STORE_DEPTH"]) == \
            (12_000_000, 3_000_000, True, 16384)
    with pytest.raises(ValueError, match="give the board or the config"):
        sim_transport_for(CONFIG, board="icebreaker")


def _cli_json(tmp_path, capsys, name, *args):
    import json
    from zipml.host.cli import main
    out = tmp_path / f"{name}.json"
    rc = main(["train", "diabetes", "--quiet", "--json", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 0, err
    return json.loads(out.read_text())


# The iCEBreaker's system in Verilator: its first Verilator build takes ~25 s of CPU (15 s
# without the 131072-word sample store's initial values), so these run in `make test-slow`.
@pytest.mark.slow
@pytest.mark.parametrize("bits,replay", [(2, False), (3, True), (4, False), (4, True)])
def test_cli_sim_on_the_icebreaker_equals_golden_on_it(bits, replay, tmp_path, capsys):
    """`zipml train diabetes --board icebreaker --backend sim` (the lane-serial engine without
    L2, at the board's clock and baud) == `--backend golden --board icebreaker`, bit for bit,
    streaming and replay; the JSON reports the board's engine as the simulated board read it."""
    from zipml.hw.boards import BOARDS
    args = ["--board", "icebreaker", "--bits", str(bits), "--epochs", "2", "--seed", str(bits)]
    args += ["--replay"] if replay else []
    sim = _cli_json(tmp_path, capsys, "sim", "--backend", "sim", *args)
    gold = _cli_json(tmp_path, capsys, "golden", "--backend", "golden", *args)
    assert sim["model_raw"] == gold["model_raw"] and sim["mse"] == gold["mse"]
    engine = dict(BOARDS["icebreaker"].engine)
    assert sim["extra"]["L2"] is engine.pop("L2") is False     # the system's caps register
    assert sim["board"] == "icebreaker" and sim["extra"]["config"] == engine
    assert sim["extra"]["clk_hz"] % sim["extra"]["baud"] == 0
    assert sim["extra"]["link"]["uploads"] == (1 if replay else 0)
    assert sim["cycles"] > 0 and sim["extra"]["sim_cycles"] >= sim["cycles"]


@pytest.mark.slow
def test_cli_sim_on_the_ulx3s_equals_golden_on_it(tmp_path, capsys):
    """The ULX3S's build (W = 32, golden's default engine) at its own clock, replay."""
    args = ["--board", "ulx3s", "--bits", "3", "--epochs", "2", "--replay"]
    sim = _cli_json(tmp_path, capsys, "sim", "--backend", "sim", *args)
    gold = _cli_json(tmp_path, capsys, "golden", "--backend", "golden", *args)
    assert sim["model_raw"] == gold["model_raw"] and sim["mse"] == gold["mse"]
    assert sim["extra"]["config"] == gold["extra"]["config"] and sim["extra"]["L2"] is True
