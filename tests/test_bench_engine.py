"""zipml bench engine / host run on tiny cases and write their schema (the bench itself
asserts nothing; docs/bench.md has the measured tables)."""

import json

import pytest

from zipml.host import bench
from zipml.reference import pack

ENGINE_KEYS = {"q", "quantizer", "d", "W", "arch", "B", "n", "words", "bits_in", "cycles",
               "stall_cycles", "efficiency", "replay_words", "sim_seconds"}


def test_bench_host_schema(tmp_path):
    rep = bench.bench_host(n=40, d=20, qs=(1, 8), quantizers=("double", "full"), repeat=1)
    assert [(r["quantizer"], r["q"]) for r in rep["rows"]] == [("double", 1), ("double", 8),
                                                               ("full", 32)]
    for r in rep["rows"]:
        assert r["values_per_s"] > 0
        # 256-byte payloads + 4 header + 2 CRC + 2 flag bytes at 10 wire bits per byte is the
        # best case; stuffing and the short last frame only lower it
        assert 0.74 < r["payload_share"] <= 8 * 256 / (10 * (256 + 8))
        # the floor grid (the default) packs double's dot group as q planes of t and two
        # carries, no grad groups; full streams 32-bit fixed point on the symmetric grid
        group = r["q"] + 2 if r["quantizer"] == "double" else r["q"]
        assert r["words"] == pack.segment_words(40, 20, group, 32, 1, 1)


def test_bench_engine_cli_writes_rows(tmp_path):
    out = tmp_path / "bench.json"
    # the same engine build as tests/test_sim_engine_rtl.py, so the Verilator cache is shared
    rc = bench.main(["engine", "--json", str(out), "--W", "32", "--d-max", "1024",
                     "--b-max", "8", "--buf-depth", str(2 * 8 * 32 * 10), "--q", "1", "3",
                     "--quantizer", "double", "full", "--d", "8", "40", "2000", "--B", "1", "2",
                     "--n", "5", "--pnr"])
    assert rc == 0
    rep = json.loads(out.read_text())
    rows = rep["rows"]
    # double q1, q3 and full (q32) at d 8 and 40, B 1 and 2; d=2000 > D_MAX is skipped
    assert len(rows) == 3 * 2 * 2
    assert {s["d"] for s in rep["skipped"]} == {2000}
    for r in rows:
        assert set(r) == ENGINE_KEYS
        # floor grid (default): double's dot group is t, delta_dot, delta_grad and every grad
        # group comes from the buffer (q + 1 words); full streams on the symmetric grid
        floor = r["quantizer"] == "double"
        group = r["q"] + 2 if floor else r["q"]
        assert r["words"] == pack.segment_words(5, r["d"], group, 32, r["B"], 1)
        assert r["bits_in"] == 32 * r["words"]
        assert r["cycles"] >= r["words"] + r["stall_cycles"]
        assert r["efficiency"] == pytest.approx(r["words"] / r["cycles"], abs=1e-5)
        # the buffer replays n * C * (planes per group) words
        C = -(-r["d"] // 32)
        assert r["replay_words"] == 5 * C * (r["q"] + 1 if floor else r["q"])
    assert rep["simulator"]["cycles_per_s"] > 0
    assert rep["pnr"] == []
