"""Boards as data (issue 10 item 5): a new board of a known family is one `BoardSpec` entry.

Two dummy boards that the project does not support, one per family, each registered into a
copy of `zipml.hw.boards.BOARDS` (the real registry is never touched): the ECPIX-5 85F (ECP5,
100 MHz crystal, RGB LEDs only) and the iCE40-HX8K breakout board (iCE40 without SPRAM, so the
store stays in block RAM). Everything else (the lookup, the platform, the toolchain, the
bitstream suffix, the programmer and install hint, the command lines, the elaborated top and the
files the tools would get) follows from the entry and its family; nothing runs the tools.
"""

import json

import pytest
from amaranth_boards.ecpix5 import ECPIX585Platform
from amaranth_boards.ice40_hx8k_b_evn import ICE40HX8KBEVNPlatform

from zipml.hw import boards
from zipml.hw import build as B
from zipml.hw.boards import ICEPROG, BoardSpec, board_names, board_spec, openfpgaloader
from zipml.hw.family import FAMILIES


REAL_BOARDS = boards.BOARDS

DUMMIES = {
    "ecpix5": BoardSpec(
        name="ecpix5", family="ecp5", platform_class=ECPIX585Platform,
        # 100 MHz * 3 / 4 = 75 MHz: made exactly, and 25 x 3 Mbaud.
        clock="clk100", f_in_hz=100e6, target_mhz=75.0,
        engine={"W": 8, "D_MAX": 512, "B_MAX": 8, "BUF_DEPTH": 1024},
        leds=0,  # RGB LEDs only (rgb_led), no plain led resource
        baud=3_000_000, store_depth=4096,
        flash=(openfpgaloader("ecpix5"),),
        install_hint="install openFPGALoader (`apt install openfpgaloader`)"),
    "hx8k": BoardSpec(
        name="hx8k", family="ice40", platform_class=ICE40HX8KBEVNPlatform,
        clock="clk12", f_in_hz=12e6, target_mhz=48.0,
        engine={"ARCH": "serial", "W": 8, "D_MAX": 256, "B_MAX": 8, "BUF_DEPTH": 512,
                "L2": False},
        leds=8, baud=3_000_000, store_depth=1024,
        flash=(ICEPROG, openfpgaloader("ice40_generic")),
        install_hint="install iceprog (`apt install fpga-icestorm`)"),
}

#: what each dummy's build files must say: device option of nextpnr, crystal pin, PLL primitive
EXPECT = {
    "ecpix5": {"nextpnr": "nextpnr-ecp5", "device": "--um5g-85k", "constraints": "top.lpf",
               "pin": "K23", "pll": "EHXPLLL", "programmer": ["-b", "ecpix5"]},
    "hx8k": {"nextpnr": "nextpnr-ice40", "device": "--hx8k", "constraints": "top.pcf",
             "pin": "J3", "pll": "SB_PLL40_PAD", "programmer": ["-S"]},
}


@pytest.fixture(params=sorted(DUMMIES))
def dummy(request, monkeypatch):
    """A dummy board in a copy of the registry, for this test only."""
    spec = DUMMIES[request.param]
    monkeypatch.setattr(boards, "BOARDS", {**REAL_BOARDS, spec.name: spec})
    return spec


def test_board_spec_finds_the_dummy_in_a_copy(dummy):
    assert board_spec(dummy.name) is dummy
    assert dummy.name in board_names()
    assert dummy.name not in REAL_BOARDS
    assert set(REAL_BOARDS) == {"icebreaker", "ulx3s"}


def test_platform_is_its_own(dummy):
    platform = dummy.platform()
    assert isinstance(platform, dummy.platform_class)
    assert not isinstance(platform, tuple(b.platform_class for b in REAL_BOARDS.values()))
    assert platform.device == dummy.platform_class.device
    # Its programmers are not build tools.
    assert not {p.tool for p in dummy.flash} & set(platform.required_tools)
    assert dummy.family_spec is FAMILIES[dummy.family]
    assert dummy.pll(dummy.target_mhz * 1e6)["f_out_hz"] == pytest.approx(
        dummy.target_mhz * 1e6)


def test_toolchain_and_bitstream_come_from_the_family(dummy, monkeypatch, tmp_path, capsys):
    tools = FAMILIES[dummy.family].tools
    for var in tools:
        monkeypatch.setenv(var, f"/opt/{var.lower()}")
    assert B.toolchain_env(dummy.family) == {var: f"/opt/{var.lower()}" for var in tools}
    monkeypatch.chdir(tmp_path)
    assert B.flash_main(["--board", dummy.name]) == 1
    suffix = dummy.family_spec.bitstream_suffix
    assert suffix == {"ecp5": ".bit", "ice40": ".bin"}[dummy.family]
    assert f"no bitstream at build/{dummy.name}_system/top{suffix}" in capsys.readouterr().err


def test_flash_command_and_install_hint_come_from_the_entry(dummy, monkeypatch, tmp_path,
                                                            capsys):
    found = {p.tool: f"/usr/bin/{p.tool}" for p in dummy.flash}
    cmd = B.programmer_command(dummy.name, "t" + dummy.family_spec.bitstream_suffix,
                               which=found.get)
    first = dummy.flash[0]
    assert cmd == [found[first.tool], *EXPECT[dummy.name]["programmer"],
                   "t" + dummy.family_spec.bitstream_suffix]
    assert B.programmer_command(dummy.name, "t", which={}.get) is None
    bitstream = tmp_path / ("top" + dummy.family_spec.bitstream_suffix)
    bitstream.write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path))
    for p in dummy.flash:
        monkeypatch.delenv(p.env, raising=False)
    assert B.flash_main(["--board", dummy.name, "--bitstream", str(bitstream)]) == 2
    assert dummy.install_hint in capsys.readouterr().err


def test_build_command_line_takes_the_dummy(dummy, monkeypatch, tmp_path):
    """``zipml build --board <dummy>`` is accepted; the build itself is not run."""
    calls = []

    def fake_build(board, target, **kwargs):
        calls.append((board, target))
        return {"board": board, "target": target, "fits": True, "fmax_mhz": {"clk": 80.0},
                "target_mhz": 75.0, "timing_met": True, "bitstream": None, "seconds": 0.0}

    monkeypatch.setattr(B, "build", fake_build)
    out = tmp_path / "report.json"
    assert B.main(["--board", dummy.name, "--json", str(out)]) == 0
    assert calls == [(dummy.name, "system")]
    assert json.loads(out.read_text())["board"] == dummy.name


def test_prepare_elaborates_the_dummy_top(dummy):
    """The build flow up to the tools: the system top elaborates on the dummy's platform and
    the files nextpnr would get name its device, its crystal pin and its family's PLL."""
    want = EXPECT[dummy.name]
    plan = B.prepare(dummy.name, "system")
    files = plan.files
    script = files["build_top.sh"]
    assert want["nextpnr"] in script and want["device"] in script
    assert want["pin"] in files[want["constraints"]]
    il = files["top.il"]
    assert want["pll"] in il
    # The family's block RAM: DP16KD on ECP5 (hw/model_mem.py), inferred on iCE40.
    assert ("DP16KD" in il) == dummy.family_spec.dp16kd_ram
    # No SPRAM store on a board without one, and the family's build options reach Yosys.
    assert "SB_SPRAM256KA" not in il
    for opt in dummy.family_spec.build_opts.values():
        assert opt in files["top.ys"]
    assert B.fit_frequency(dummy.name, 80.0) <= 80.0


def test_an_unknown_family_fails_at_the_entry():
    with pytest.raises(ValueError, match="unknown FPGA family 'gowin'.*ice40, ecp5"):
        BoardSpec(name="tang", family="gowin", platform_class=ECPIX585Platform, clock="clk",
                  f_in_hz=27e6, target_mhz=50.0, engine={}, leds=0, baud=3_000_000,
                  store_depth=1024, flash=(), install_hint="")
