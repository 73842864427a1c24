"""Training through a bad line (`FaultyLine`: seeded flips, drops, insertions and bursts in both
directions) on the board system in Verilator, bit for bit against the golden model; and the
line itself. `zipml bench link` is the same at a dataset's scale (results/bench_link_*.json).
"""

import dataclasses

import numpy as np
import pytest

from zipml.host.backend_engine import train_golden
from zipml.host.device import Device, _train_on, sim_transport_for
from zipml.host.problem import TrainOptions, prepare, resolve
from zipml.host.transport import FaultyLine, Transport
from zipml.reference.golden import EngineConfig

# the build of tests/test_link_system.py (its Verilator cache is shared)
CONFIG = EngineConfig(W=8, D_MAX=64, B_MAX=8, BUF_DEPTH=1024)


class Loopback(Transport):
    """Gives back what was written, one read at a time."""

    def __init__(self):
        self.pending = []

    def write(self, data):
        self.pending.append(bytes(data))

    def read(self, timeout):
        return self.pending.pop(0) if self.pending else b""


def test_the_line_hits_bytes_at_its_rate_with_every_kind():
    line = FaultyLine(Loopback(), 0.01, seed=3)
    sent = bytes(range(256)) * 400
    got = b""
    for i in range(0, len(sent), 1024):
        line.write(sent[i:i + 1024])
        got += line.read(0)
    hits = line.faults_injected
    # 2 x 102400 bytes at 1 %: 2048 expected (256 per kind and direction), 5 sigma 225
    assert abs(hits - 2048) < 225, hits
    assert all(n > 150 for direction in line.faults.values() for n in direction.values())
    assert got != sent
    clean = FaultyLine(Loopback(), 0.0)
    clean.write(sent)
    assert clean.read(0) == sent and clean.faults_injected == 0
    with pytest.raises(ValueError, match="fault rate"):
        FaultyLine(Loopback(), 1.5)


@pytest.mark.parametrize("rate,replay", [(1e-2, False), (1e-2, True)])
def test_training_through_a_bad_line_equals_golden(rate, replay):
    """1 % of the bytes hit in each direction: every frame the board acts on is whole (CRC-16),
    every effect happens once (seq), the frames shrink while they need resends; the model is
    golden's bit for bit, streaming and in store mode."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((60, 6))
    y = X @ rng.standard_normal(6) + 0.1 * rng.standard_normal(60)
    prepared = prepare(X, y, "regression")
    opts = resolve(prepared, dataclasses.replace(
        TrainOptions(bits=3, quantizer="double", epochs=2, seed=4), replay=replay))
    sim = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    try:
        line = FaultyLine(sim, rate, seed=5)
        device = Device(line, timeout=0.002, retries=16)
        got = _train_on(device, prepared, opts, None, CONFIG, "sim")
    finally:
        sim.close()
    want = train_golden(prepared, opts, config=CONFIG)
    assert line.faults_injected > 20 and device.stats.resends > 10
    assert (got.extra["store_p"] > 0) == replay
    assert got.model_raw == want.model_raw and got.mse == want.mse


@pytest.mark.parametrize("frames,seed", [(200, 1)])
def test_fuzzed_frames_are_each_answered_and_counted(frames, seed):
    """`zipml bench fuzz` in small (CI) form: reads right and wrong, unknown commands, flipped
    bits, truncations, dangling escapes, junk and over-long frames into the board system;
    each gets exactly its answer, each is counted once, and the board still works after.
    The 10 000-frame run is results/fuzz_link.json."""
    from zipml.host.bench_fuzz import KINDS, fuzz_link
    sim = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    try:
        rep = fuzz_link(sim, frames=frames, seed=seed, timeout=0.01)
    finally:
        sim.close()
    assert not rep["failures"], rep["failures"][:3]
    assert rep["answered"] == frames and rep["alive_after"] and rep["ok"]
    assert all(rep["kinds"][k] > frames // (2 * len(KINDS)) for k in KINDS)


@pytest.mark.slow
def test_ten_thousand_fuzzed_frames():
    from zipml.host.bench_fuzz import fuzz_link
    sim = sim_transport_for(CONFIG, STORE_DEPTH=16384)
    try:
        rep = fuzz_link(sim, frames=10_000, seed=2, timeout=0.01)
    finally:
        sim.close()
    assert rep["ok"], rep["failures"][:3]
