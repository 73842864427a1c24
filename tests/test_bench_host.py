"""zipml bench host: the CPU-time rate, the repeat count and bad sizes (docs/bench.md, Host)."""

import pytest

from zipml.host import bench


def test_bench_host_reports_wall_and_cpu_rates():
    rep = bench.bench_host(n=30, d=21, qs=(3,), quantizers=("double", "deterministic"),
                           repeat=2)
    assert rep["repeat"] == 2 and len(rep["host"]["load_average"]) == 2
    assert [r["quantizer"] for r in rep["rows"]] == ["double", "deterministic"]
    for r in rep["rows"]:
        assert r["values_per_s"] > 0 and r["cpu_values_per_s"] > 0
        assert r["seconds"] >= 0 and r["cpu_seconds"] >= 0


@pytest.mark.parametrize("kw", [{"n": 0}, {"d": 0}, {"repeat": 0}])
def test_bench_host_rejects_empty_sizes(kw):
    with pytest.raises(ValueError, match="must be >= 1"):
        bench.bench_host(**{"n": 5, "d": 5, "qs": (1,), "quantizers": ("naive",), **kw})


def test_bench_host_cli_error(capsys):
    assert bench.main(["host", "--repeat", "0"]) == 1
    assert "repeat" in capsys.readouterr().err
