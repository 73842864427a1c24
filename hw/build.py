"""Bitstreams with the open toolchain from PyPI: ``zipml build`` and ``zipml flash``.

`build` elaborates a board top (`zipml.hw.boards`), runs Yosys, nextpnr and the packer from the
yowasp wheels (the ``boards`` extra) through amaranth-boards' ``platform.build``, and returns a
report read from nextpnr's ``--report`` JSON::

    {"board", "target", "bitstream": path, "fmax_mhz": {clock: MHz}, "target_mhz",
     "utilization": {bel: {"used", "available", "percent"}}, "critical_path": {...},
     "engine": {W, D_MAX, B_MAX, BUF_DEPTH}, "pll": {...}, "seconds", "commit",
     "command" (`zipml build` only)}

nextpnr runs with ``--timing-allow-fail``: a missed clock target still gives a bitstream and the
achieved Fmax (it is what we want to know), and ``timing_met`` says whether the target was met.

`flash_main` programs a built bitstream with ``iceprog`` or ``openFPGALoader`` if one is on the
PATH, and otherwise says what to install.

Command lines (wired into the ``zipml`` CLI; also ``python -m zipml.hw.build``)::

    zipml build --board icebreaker|ulx3s [--target system|engine] [--json PATH]
    zipml flash --board icebreaker|ulx3s [--bitstream PATH] [--write-flash]

The boards are the entries of `zipml.hw.boards.BOARDS`; what differs between FPGA families
(tools, bitstream suffix, build options, cell names) comes from the board's
`zipml.hw.family.Family`, so nothing here branches on a board or a family.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

from ..reference.files import source_commit, write_json
from .boards import board_names, board_spec, make_top
from .family import FAMILIES, family as _family


__all__ = ["ToolchainError", "toolchain_env", "prepare", "build", "fit_frequency",
           "parse_report", "area_by_name", "main", "flash_main", "programmer_command"]


class ToolchainError(RuntimeError):
    """The place-and-route toolchain (or a programmer) is missing or failed."""


def _find_executable(name):
    # The venv's bin is not on PATH when its python is run directly; look beside it too.
    found = shutil.which(name)
    if found:
        return found
    beside = pathlib.Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def toolchain_env(family):
    """Environment variables that point Amaranth at the yowasp tools for ``family``.

    Amaranth reads each tool's path from an environment variable named after the tool; the
    family's `zipml.hw.family.Family.tools` maps them to yowasp executables. A variable already
    set by the user (e.g. ``YOSYS=/opt/yosys/bin/yosys``) is kept.

    Raises
    ------
    ValueError
        If ``family`` is not a known family.
    ToolchainError
        If a tool is neither set nor installed; the message names the pip extra.
    """
    tools = _family(family).tools
    env, missing = {}, []
    for var, exe in tools.items():
        if os.environ.get(var):
            env[var] = os.environ[var]
            continue
        path = _find_executable(exe)
        if path is None:
            missing.append(exe)
        else:
            env[var] = path
    if missing:
        raise ToolchainError(
            f"missing place-and-route tools {', '.join(missing)}: install them with "
            f"`pip install 'zipml-fpga[boards]'` (or set {', '.join(tools)})")
    return env


@contextlib.contextmanager
def _environ(extra):
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- Report ------------------------------------------------------------------------------------

# What Yosys and nextpnr append to a design name, in every family.
_NET_SUFFIXES = "(" + "|".join(x for f in FAMILIES.values() for x in f.net_suffixes) + ").*$"


def _pretty_name(name):
    # Yosys/nextpnr names look like "pnr.engine.dot.acc_SB_DFFESR_Q_20_D_SB_LUT4_O_LC" or
    # "pnr.engine.x$next[3]": keep the Amaranth hierarchy and signal, drop the tool suffixes.
    name = re.sub(_NET_SUFFIXES, "", name)
    name = re.sub(r"\[\d+\]$", "", name)
    return name or "?"


def _source_location(src, root):
    # Keep the project's own lines (the gateware that the path runs through); the toolchain's
    # techmap files (/share/...) and Amaranth's library say nothing about the design.
    if src.startswith("/share/") or "/site-packages/amaranth/" in src:
        return None
    try:
        return str(pathlib.Path(src.split(":")[0]).resolve().relative_to(root)) + \
            (":" + src.split(":", 1)[1] if ":" in src else "")
    except ValueError:
        return src


def _summarize_path(path_entry):
    """A critical path from nextpnr's report: ends, delays, the signals and source lines crossed."""
    root = pathlib.Path(__file__).resolve().parent.parent
    steps = path_entry.get("path", [])
    logic = [s for s in steps if s.get("type") in ("logic", "clk-to-q", "setup")]
    routing = [s for s in steps if s.get("type") == "routing"]
    carry = sum(1 for s in steps if s.get("type") == "logic"
                and s.get("from", {}).get("port") in ("CIN", "FCI"))
    luts = sum(1 for s in steps if s.get("type") == "logic") - carry
    signals, sources = [], []
    for s in routing:
        if s.get("net"):
            name = _pretty_name(s["net"])
            if name not in signals:
                signals.append(name)
        for src in s.get("sources", []):
            loc = _source_location(src, root)
            if loc and loc not in sources:
                sources.append(loc)
    return {
        "clock": _clock_name(str(path_entry.get("from", ""))).replace("posedge ", ""),
        "start": _pretty_name(steps[0]["from"]["cell"]) if steps else None,
        "end": _pretty_name(steps[-1]["to"]["cell"]) if steps else None,
        "delay_ns": round(sum(s.get("delay", 0.0) for s in steps), 3),
        "logic_ns": round(sum(s.get("delay", 0.0) for s in logic), 3),
        "routing_ns": round(sum(s.get("delay", 0.0) for s in routing), 3),
        "lut_levels": luts, "carry_cells": carry,
        "signals": signals, "sources": sources,
    }


def _clock_name(net):
    # nextpnr-ecp5 calls a promoted clock "$glbnet$<net>"; the net is the name users know.
    return net.replace("$glbnet$", "")


def parse_report(report):
    """Fmax, utilization and critical path from a nextpnr ``--report`` JSON (a dict).

    Parameters
    ----------
    report : dict
        The parsed report (nextpnr >= 0.4: ``fmax``, ``utilization``, ``critical_paths``).

    Returns
    -------
    dict
        ``fmax_mhz`` {clock: achieved MHz}, ``constraint_mhz`` {clock: MHz},
        ``utilization`` {bel: {used, available, percent}} (bels in use only),
        ``critical_path`` (the same-clock path of the slowest clock, summarized),
        ``timing_met`` (every clock reached its constraint).
    """
    # nextpnr-ice40 may put a constant net on a global buffer (block RAM clock-enable pins tied
    # off) and list it as a clock; it clocks nothing of the design.
    clocks = {c: v for c, v in report.get("fmax", {}).items()
              if not c.startswith(("$PACKER_GND_NET", "$PACKER_VCC_NET"))}
    fmax = {_clock_name(c): round(v["achieved"], 2) for c, v in clocks.items()}
    constraint = {_clock_name(c): round(v["constraint"], 2) for c, v in clocks.items()}
    util = {}
    for bel, v in report.get("utilization", {}).items():
        if v.get("used", 0):
            util[bel] = {"used": v["used"], "available": v["available"],
                         "percent": round(100.0 * v["used"] / max(v["available"], 1), 1)}
    paths = [p for p in report.get("critical_paths", []) if p.get("from") == p.get("to")]
    # One critical path per clock pair; report the one that sets the lowest Fmax.
    paths.sort(key=lambda p: fmax.get(_clock_name(str(p.get("from")).replace("posedge ", "")
                                                  .replace("negedge ", "")), math.inf))
    critical = _summarize_path(paths[0]) if paths else None
    met = all(fmax[c] >= constraint[c] for c in fmax)
    return {"fmax_mhz": fmax, "constraint_mhz": constraint, "utilization": util,
            "critical_path": critical, "timing_met": met}


# --- Build -------------------------------------------------------------------------------------

def _placement_error(text):
    """nextpnr's error line when the design does not fit the device, else None.

    It says so in one of three ways: no BEL left for a cell, or the analytic placer's "Failed
    to expand region" when the cells outnumber the device's."""
    found = re.search(r"^ERROR: (Unable to place cell .*|.*no BELs remaining.*|"
                      r"Failed to expand region .*)$", text, re.M)
    return found.group(1) if found else None


def _log_utilization(text):
    # nextpnr prints "Info: \t ICESTORM_LC:  9712/  5280   183%" after packing, before placing.
    util = {}
    for bel, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M):
        if int(used) and bel not in util:
            util[bel] = {"used": int(used), "available": int(avail),
                         "percent": round(100.0 * int(used) / max(int(avail), 1), 1)}
    return util


# Yosys cell types after synthesis, by kind, of every family (a netlist names its own).
_CELL_KINDS = {kind: tuple(t for f in FAMILIES.values() for t in f.cell_types[kind])
               for kind in ("lut", "carry", "ff", "ram", "dsp")}


def area_by_name(netlist, depth=3, top=12):
    """Cells per design name from Yosys' JSON netlist: where the area goes.

    Cells are grouped by the first ``depth`` components of their hierarchical name (e.g.
    ``pnr.engine.upd``: a submodule, or a signal of the engine itself such as
    ``pnr.engine.shr``) and counted by kind (``lut``, ``carry``, ``ff``, ``ram``, ``dsp``).

    Returns
    -------
    dict
        The ``top`` largest groups by LUT + carry + FF count, largest first.
    """
    groups = {}
    for module in netlist.get("modules", {}).values():
        for name, cell in module.get("cells", {}).items():
            kind = next((k for k, types in _CELL_KINDS.items()
                         if cell["type"].startswith(types)), None)
            if kind is None:
                continue
            key = _pretty_name(re.split(r"\$", name)[0] or name)
            key = ".".join(key.split(".")[:depth])
            counts = groups.setdefault(key, dict.fromkeys(_CELL_KINDS, 0))
            counts[kind] += 1
    size = lambda c: c["lut"] + c["carry"] + c["ff"]
    ranked = sorted(groups.items(), key=lambda kv: -size(kv[1]))[:top]
    return {k: {kind: n for kind, n in v.items() if n} for k, v in ranked}


def fit_frequency(board, fmax_mhz, baud=None):
    """The fastest PLL clock not above ``fmax_mhz`` at which the board UART baud is exact.

    Multiples of the baud's 1 MHz-grid divisor are tried downwards (3 Mbaud: 48, 45, 42, ...
    MHz) so ``clk / baud`` is an integer; a PLL that cannot make one exactly is skipped.

    Returns
    -------
    float
        Frequency in MHz.
    """
    spec = board_spec(board)
    baud = spec.baud if baud is None else baud
    step = baud / 1e6
    k = math.floor(fmax_mhz / step + 1e-9)
    while k * step >= 16:  # the iCE40 PLL's lowest output
        f = k * step
        try:
            if abs(spec.pll(f * 1e6)["f_out_hz"] - f * 1e6) < 1:
                return f
        except ValueError:
            pass
        k -= 1
    raise ValueError(f"no clock <= {fmax_mhz} MHz on {board} gives {baud} baud exactly")


def _resolve(board, target, freq_mhz, engine_cls):
    # The board, and the clock to build at, for valid arguments of `build` and `prepare`.
    spec = board_spec(board)
    if target not in ("system", "engine"):
        raise ValueError(f"unknown target {target!r}; choose system or engine")
    if engine_cls is not None and target != "engine":
        raise ValueError("engine_cls replaces the engine of the engine target only")
    freq_mhz = spec.target_mhz if freq_mhz is None else float(freq_mhz)
    if freq_mhz <= 0:
        raise ValueError(f"clock frequency must be positive, not {freq_mhz} MHz")
    return spec, freq_mhz


def _top_and_options(spec, board, target, freq_mhz, engine, seed, engine_cls):
    # The board top and the keywords of Amaranth's platform.build, for `build` and `prepare`.
    top = make_top(board, target, f_out_hz=freq_mhz * 1e6, engine=engine,
                   **({"engine_cls": engine_cls} if engine_cls is not None else {}))
    options = {
        # yowasp tools want paths relative to the build directory.
        "nextpnr_opts": (f"--timing-allow-fail --report report.json --seed {int(seed)} "
                         f"{spec.family_spec.nextpnr_opts}").strip(),
        **spec.family_spec.build_opts,
    }
    return top, options


def prepare(board, target="system", *, freq_mhz=None, engine=None, seed=1, engine_cls=None):
    """What `build` hands the tools, without running them (no toolchain needed).

    Elaborates the board top as `build` does and returns Amaranth's ``BuildPlan``: its
    ``files`` hold the design (``top.il``), the pin constraints, the Yosys script and the
    build scripts that run Yosys, nextpnr and the packer. Arguments as for `build`.
    """
    spec, freq_mhz = _resolve(board, target, freq_mhz, engine_cls)
    top, options = _top_and_options(spec, board, target, freq_mhz, engine, seed, engine_cls)
    return spec.platform().build(top, name="top", do_build=False, **options)


def _build_once(spec, board, target, freq_mhz, engine, build_dir, seed, verbose, engine_cls):
    env = toolchain_env(spec.family)
    top, options = _top_and_options(spec, board, target, freq_mhz, engine, seed, engine_cls)
    platform = spec.platform()
    report_path = build_dir / "report.json"
    if report_path.exists():
        report_path.unlink()  # never read a stale report from an earlier build
    if verbose:
        env["AMARANTH_verbose"] = "1"
    with _environ(env):
        try:
            platform.build(top, name="top", build_dir=str(build_dir), do_program=False,
                           **options)
        except Exception as exc:
            log = build_dir / "top.tim"
            text = log.read_text(errors="replace") if log.exists() else ""
            placement = _placement_error(text)
            if placement is None:
                tail = text.splitlines()[-15:]
                raise ToolchainError(
                    f"{board} {target} build failed: {type(exc).__name__}: {exc}"
                    + ("\n" + "\n".join(tail) if tail else "")) from exc
            # The design does not fit the device: still a result (how far over, and where).
            parsed = {"fmax_mhz": {}, "constraint_mhz": {}, "utilization":
                      _log_utilization(text), "critical_path": None, "timing_met": False,
                      "fits": False, "error": placement}
        else:
            if not report_path.exists():
                raise ToolchainError(f"nextpnr wrote no report at {report_path}")
            parsed = {**parse_report(json.loads(report_path.read_text())), "fits": True}
    netlist = build_dir / "top.json"
    if netlist.exists():
        parsed["area_by_name"] = area_by_name(json.loads(netlist.read_text()))
    bitstream = build_dir / ("top" + spec.family_spec.bitstream_suffix)
    extra = {"baud": top.baud, "store_depth": top.store_depth} if target == "system" else {}
    if engine_cls is not None:
        extra["block"] = getattr(engine_cls, "__name__", repr(engine_cls))
    return {
        "board": board,
        "target": target,
        "device": f"{platform.device}-{platform.package}",
        "bitstream": str(bitstream) if bitstream.exists() else None,
        "target_mhz": freq_mhz,
        "pll_mhz": round(top.clocking.frequency / 1e6, 4),
        **parsed,
        "engine": dict(top.engine_params),
        **extra,
        "pll": dict(top.clocking.params),
        "seed": int(seed),
    }


def build(board, target="system", *, freq_mhz=None, engine=None, build_dir=None, seed=1,
          fit=None, verbose=False, engine_cls=None):
    """Synthesize, place and route one board top and return its report (see module doc).

    Parameters
    ----------
    board : str
        A name of `zipml.hw.boards.BOARDS` (``icebreaker``, ``ulx3s``).
    target : str
        ``system`` (the product: UART + register map + engine) or ``engine`` (engine alone,
        fed by an LFSR: the timing measure).
    freq_mhz : float or None
        Engine clock from the PLL and timing target; default the board's goal.
    engine : dict or None
        Overrides of the engine parameters (``W``, ``D_MAX``, ``B_MAX``, ``BUF_DEPTH``).
    build_dir : str or path or None
        Where the tools run; default ``build/<board>_<target>``.
    seed : int
        nextpnr placer seed (results vary by a few percent with it).
    fit : bool or None
        If the clock target is missed, rebuild (at most twice) at the fastest UART-friendly
        clock below the achieved Fmax (`fit_frequency`), so the bitstream works on the board.
        Default: on for ``system``, off for ``engine`` (a measure, not a product).
    verbose : bool
        Let the tools print their logs.
    engine_cls : callable or None
        ``engine`` target only: the component `PnrTop` wraps instead of the Engine, called
        with the engine parameters as keywords (to place and route one block alone).

    Returns
    -------
    dict
        The report of the last build; ``attempts`` lists every build's PLL clock and Fmax.
    """
    spec, freq_mhz = _resolve(board, target, freq_mhz, engine_cls)
    fit = (target == "system") if fit is None else fit
    build_dir = pathlib.Path(build_dir or f"build/{board}_{target}")
    start = time.monotonic()
    commit = source_commit()    # the code elaborated is the code at the start
    attempts = []
    while True:
        report = _build_once(spec, board, target, freq_mhz, engine, build_dir, seed, verbose,
                             engine_cls)
        if not report["fits"]:
            attempts.append({"pll_mhz": report["pll_mhz"], "fmax_mhz": None})
            break
        fmax = min(report["fmax_mhz"].values())
        attempts.append({"pll_mhz": report["pll_mhz"], "fmax_mhz": fmax})
        if report["timing_met"] or not fit or len(attempts) == 3:
            break
        new = fit_frequency(board, fmax)
        if new >= report["pll_mhz"]:
            break
        print(f"{board} {target}: {fmax} MHz < {report['pll_mhz']} MHz; rebuilding at {new} MHz",
              file=sys.stderr)
        freq_mhz = new
    report["attempts"] = attempts
    report["seconds"] = round(time.monotonic() - start, 1)
    report["commit"] = commit
    return report


def main(argv=None):
    """``zipml build``: build a bitstream and write its report as JSON."""
    ap = argparse.ArgumentParser(
        prog="zipml build",
        description="Build a bitstream with the yowasp toolchain and report Fmax/utilization.")
    ap.add_argument("--board", required=True, choices=board_names())
    ap.add_argument("--target", default="system", choices=["system", "engine"],
                    help="system: the UART board system (default); engine: the engine alone "
                         "fed by an on-chip LFSR (timing measure)")
    ap.add_argument("--json", metavar="PATH", help="write the report here")
    ap.add_argument("--freq", type=float, metavar="MHZ",
                    help="engine clock (PLL output and timing target); default the board goal")
    ap.add_argument("--build-dir", metavar="DIR")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    for name in ("W", "D_MAX", "B_MAX", "BUF_DEPTH"):
        ap.add_argument(f"--{name.lower().replace('_', '-')}", dest=name, type=int,
                        metavar="N", help=f"engine {name} (default per board)")
    ap.add_argument("--fit", dest="fit", action="store_true", default=None,
                    help="if timing fails, rebuild at a clock the design meets "
                         "(default for --target system)")
    ap.add_argument("--no-fit", dest="fit", action="store_false",
                    help="keep the requested clock even if timing fails (default for engine)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the tools' logs")
    args = ap.parse_args(argv)
    engine = {k: getattr(args, k) for k in ("W", "D_MAX", "B_MAX", "BUF_DEPTH")
              if getattr(args, k) is not None}
    print(f"building {args.board} {args.target} (Yosys + nextpnr from yowasp; "
          f"a few minutes, longer on the first run) ...", file=sys.stderr)
    try:
        report = build(args.board, args.target, freq_mhz=args.freq, engine=engine,
                       build_dir=args.build_dir, seed=args.seed, fit=args.fit,
                       verbose=args.verbose)
    except (ToolchainError, ValueError, RuntimeError) as exc:
        print(f"zipml build: error: {exc}", file=sys.stderr)
        return 1
    report["command"] = " ".join(["zipml build", *(argv if argv is not None else sys.argv[1:])])
    if args.json:
        write_json(args.json, report, indent=2)
    if not report["fits"]:
        over = ", ".join(f"{bel} {u['used']}/{u['available']}"
                         for bel, u in report["utilization"].items() if u["percent"] > 100)
        print(f"zipml build: error: the design does not fit {report['device']} ({over}); "
              f"largest parts: {', '.join(list(report.get('area_by_name', {}))[:4])}",
              file=sys.stderr)
        return 1
    fmax = ", ".join(f"{c}: {f} MHz" for c, f in report["fmax_mhz"].items())
    print(f"{report['board']} {report['target']}: {fmax} (target {report['target_mhz']} MHz, "
          f"{'met' if report['timing_met'] else 'MISSED'}); bitstream {report['bitstream']}; "
          f"{report['seconds']} s", file=sys.stderr)
    if not args.json:
        print(json.dumps(report, indent=2))
    return 0


# --- Flash -------------------------------------------------------------------------------------

def programmer_command(board, bitstream, *, write_flash=False, which=shutil.which):
    """The command line that programs ``bitstream`` into ``board``, or None if no tool is found.

    The board's programmers (`zipml.hw.boards.BoardSpec.flash`) are tried in order, the first
    found is used. iCEBreaker: ``iceprog`` (writes the SPI flash; ``-S`` for SRAM) or
    ``openFPGALoader -b icebreaker``. ULX3S: ``openFPGALoader -b ulx3s`` (SRAM; ``-f`` writes
    the flash). ``ICEPROG``/``OPENFPGALOADER`` environment variables name other binaries.
    """
    for programmer in board_spec(board).flash:
        executable = which(os.environ.get(programmer.env, programmer.tool))
        if executable:
            return programmer.command(executable, bitstream, write_flash)
    return None


def flash_main(argv=None):
    """``zipml flash``: program a built bitstream into the board."""
    ap = argparse.ArgumentParser(prog="zipml flash",
                                 description="Program a bitstream built by `zipml build`.")
    ap.add_argument("--board", required=True, choices=board_names())
    ap.add_argument("--bitstream", metavar="PATH",
                    help="default build/<board>_system/top.bin|.bit")
    ap.add_argument("--write-flash", action="store_true",
                    help="write the configuration flash (survives power-off) instead of SRAM")
    args = ap.parse_args(argv)
    spec = board_spec(args.board)
    suffix = spec.family_spec.bitstream_suffix
    bitstream = pathlib.Path(args.bitstream or f"build/{args.board}_system/top{suffix}")
    if not bitstream.exists():
        print(f"zipml flash: error: no bitstream at {bitstream}; run "
              f"`zipml build --board {args.board}` first (or give --bitstream)", file=sys.stderr)
        return 1
    cmd = programmer_command(args.board, bitstream, write_flash=args.write_flash)
    if cmd is None:
        print(f"zipml flash: error: no programmer found for {args.board}: "
              f"{spec.install_hint}", file=sys.stderr)
        return 2
    print(" ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "flash":
        sys.exit(flash_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
