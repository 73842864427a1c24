"""The boards as data (`BoardSpec` entries of `BOARDS`) and their tops.

A board is one `BoardSpec`: its amaranth-boards platform class, FPGA family, crystal and clock
goal, engine parameters, sample store, programmers and install hint. What depends on the
family (toolchain, bitstream, PLL search and primitive, block RAM) is its
`zipml.hw.family.Family`, so a new board of a known family is one entry here (docs/boards.md,
"Adding a board"). Today: the iCEBreaker (iCE40 UP5K) and the ULX3S (ECP5 LFE5U-85F).

Each top raises the board crystal with the FPGA's PLL to the engine clock, holds the ``sync``
domain in reset until the PLL has locked (and, on iCE40, until the block RAMs have woken up),
and instantiates either

* the board system `zipml.hw.soc.System` (UART link, register map, sample store, engine) with
  the FTDI UART pins and the status LEDs (``target="system"``), or
* `zipml.hw.pnr_top.PnrTop`, the engine fed from an on-chip LFSR, whose only output is an LED
  (``target="engine"``): the place-and-route measure of the engine alone.

The PLL settings are computed (`ice40_pll`, `ecp5_pll` in `zipml.hw.family`, the searches of
icestorm's ``icepll`` and Project Trellis' ``ecppll``, so the constants are the ones those tools
print), so a new clock target needs no external tool and no hand-copied constants.

Why a PLL: the crystals are 12 MHz (iCEBreaker) and 25 MHz (ULX3S); the engine closes timing at
about 48 and 160 MHz, and bus efficiency times clock is the training rate.
"""

import dataclasses
from typing import Callable

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib.cdc import FFSynchronizer
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .family import ecp5_pll, family, ice40_pll
from .pnr_top import PnrTop
from .soc import System, engine_class


# ice40_pll and ecp5_pll live in zipml.hw.family; re-exported where they were first defined.
__all__ = ["Programmer", "ICEPROG", "openfpgaloader", "BoardSpec", "BOARDS", "board_spec",
           "board_names", "ice40_pll", "ecp5_pll", "PLLClocking", "SpramStore",
           "EngineBoardTop", "SystemBoardTop", "make_top"]


# --- Boards ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Programmer:
    """A tool that programs a bitstream into a board (`zipml flash`).

    Attributes
    ----------
    tool : str
        Executable name, looked up on PATH.
    env : str
        Environment variable that names another binary instead.
    sram, flash : tuple of str
        Arguments before the bitstream path: to load the FPGA's SRAM (lost at power-off), and
        to write the configuration flash.
    """
    tool: str
    env: str
    sram: tuple = ()
    flash: tuple = ()

    def command(self, executable, bitstream, write_flash=False):
        """The command line with ``executable`` as the tool."""
        return [executable, *(self.flash if write_flash else self.sram), str(bitstream)]


#: icestorm's programmer of the iCE40 boards' FTDI SPI flash (``-S``: SRAM).
ICEPROG = Programmer("iceprog", "ICEPROG", sram=("-S",), flash=())


def openfpgaloader(board):
    """openFPGALoader for its board name ``board`` (``-b``; ``-f`` writes the flash)."""
    return Programmer("openFPGALoader", "OPENFPGALOADER", sram=("-b", board),
                      flash=("-b", board, "-f"))


@dataclasses.dataclass(frozen=True)
class BoardSpec:
    """Everything the project needs to know about one board: an entry of `BOARDS`.

    What depends on the FPGA family (toolchain, bitstream suffix, PLL, block RAM) is not here
    but in the family's `zipml.hw.family.Family` (`family_spec`).

    Attributes
    ----------
    name : str
        The key in `BOARDS` and the ``--board`` of the command lines (``icebreaker``).
    family : str
        A key of `zipml.hw.family.FAMILIES` (``ice40``, ``ecp5``).
    platform_class : type
        The amaranth-boards platform class (pins, device, package).
    clock : str
        amaranth-boards resource name of the crystal.
    f_in_hz : float
        Crystal frequency.
    target_mhz : float
        Engine clock goal (issue 4 item 6): the default PLL output and timing constraint.
    engine : dict
        Default Engine synthesis parameters for this board (docs/engine.md table).
    leds : int
        Status LEDs on the board (the system top uses up to 1 + `zipml.hw.soc.LED_COUNT`).
    baud : int
        UART rate of the board system (the FTDI parts of both boards do 3 Mbaud).
    store_depth : int
        Sample store words of W bits.
    flash : tuple of Programmer
        The tools that program the board, the first found is used (`zipml flash`).
    install_hint : str
        What to install when none of them is found.
    store : callable or None
        ``store(W, depth)``: the sample store component (`SpramStore` on the UP5K); None: the
        system's own, in block RAM (`zipml.hw.soc.SampleStore`).
    resources : tuple of str
        Attributes of the platform holding resources to add (connectors that ship attached).
    system : dict
        Options of the board system `zipml.hw.soc.System` beyond the engine's (trims for a
        small FPGA, e.g. ``COUNTER_BITS``, ``STALL``); ``caps`` announces them to the host.
    """
    name: str
    family: str
    platform_class: type
    clock: str
    f_in_hz: float
    target_mhz: float
    engine: dict
    leds: int
    baud: int
    store_depth: int
    flash: tuple
    install_hint: str
    store: Callable | None = None
    resources: tuple = ()
    system: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        family(self.family)  # an unknown family fails here, naming the known ones

    @property
    def family_spec(self):
        """The board's `zipml.hw.family.Family`."""
        return family(self.family)

    def platform(self):
        """A fresh amaranth-boards platform instance (platforms are single-use)."""
        # Some amaranth-boards platforms (the ULX3S) list their programmer among the *build*
        # tools; it is only needed to program (`zipml flash`), so building must not require it.
        programmers = {p.tool for p in self.flash}

        class Platform(self.platform_class):
            @property
            def required_tools(self):
                return [t for t in super().required_tools if t not in programmers]

        platform = Platform()
        for attr in self.resources:
            platform.add_resources(getattr(platform, attr))
        return platform

    def pll(self, f_out_hz):
        """PLL parameters for ``f_out_hz`` from this board's crystal."""
        return self.family_spec.pll(self.f_in_hz, f_out_hz)


# --- Clocking ----------------------------------------------------------------------------------

class PLLClocking(Elaboratable):
    """Clock and reset of the ``sync`` domain from the board crystal through the FPGA PLL.

    The parent defines ``m.domains.sync = ClockDomain("sync")``; this block drives its clock
    and reset.

    Parameters
    ----------
    spec : BoardSpec
        The board (crystal pin, family).
    f_out_hz : float
        Wanted engine clock; the achieved one is `frequency`.
    por_cycles : int
        ``sync`` cycles that reset stays asserted after the PLL locks. On iCE40 the block RAMs
        read zeros for ~3 us after configuration; 1024 cycles at 48 MHz is 21 us (>5x margin).

    Attributes
    ----------
    frequency : float
        The PLL output in Hz (what the system's UART divisor must use).
    locked : Signal, out
        PLL lock, synchronized to ``sync``; drives a status LED.

    Notes
    -----
    The ``sync`` reset is released ``por_cycles`` cycles after a synchronized lock and asserted
    again, asynchronously to nothing, by any loss of lock (the counter restarts).
    """

    def __init__(self, spec, f_out_hz, *, por_cycles=1024):
        self.spec = spec
        self.params = spec.pll(f_out_hz)
        self.frequency = self.params["f_out_hz"]
        self.por_cycles = por_cycles
        self.locked = Signal()

    def elaborate(self, platform):
        # Drives the clock and reset of ``sync``; the domain itself is defined by the board top
        # (Amaranth 0.6 wants a domain defined in a parent of every module that uses it).
        m = Module()
        clk_sync = Signal()  # the PLL output; a plain Signal so it can carry a clock constraint
        m.d.comb += ClockSignal("sync").eq(clk_sync)
        pll_lock = Signal()
        # The crystal's pad, raw: the family's PLL primitive decides how it enters (the iCE40
        # PLL takes it straight from the pad, the ECP5 one through an input buffer).
        clk_port = platform.request(self.spec.clock, dir="-")
        self.spec.family_spec.pll_primitive(m, clk_port, self.spec.f_in_hz, self.params,
                                            clk_sync, pll_lock)
        # No constraint on clk_sync itself: nextpnr derives the PLL output's frequency from the
        # crystal's constraint and the PLL parameters (and Yosys renames the net anyway).

        # Power-on reset: a reset-less counter in the PLL clock, restarted by loss of lock.
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(ClockSignal("sync"))
        lock_sync = Signal()
        m.submodules.lock_sync = FFSynchronizer(pll_lock, lock_sync, o_domain="por", init=0)
        timer = Signal(range(self.por_cycles + 1))
        ready = Signal()
        with m.If(~lock_sync):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == self.por_cycles):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        m.d.comb += [ResetSignal("sync").eq(~ready), self.locked.eq(ready)]
        return m


def _request_leds(m, platform, n):
    """Up to ``n`` LED outputs (amaranth-boards ``led`` resources), as a list of 1-bit Values."""
    leds = []
    for i in range(n):
        try:
            port = platform.request("led", i, dir="-")
        except Exception:  # the board has fewer LEDs than asked for
            break
        buf = io.Buffer("o", port)
        m.submodules[f"led_{i}"] = buf
        leds.append(buf.o)
    return leds


# --- UP5K sample store in SPRAM ----------------------------------------------------------------

class SpramStore(wiring.Component):
    """The system's sample store in the UP5K's four SB_SPRAM256KA (16384 x 16 bits each).

    Same ports and timing as `zipml.hw.soc.SampleStore`, so the board system swaps it in with
    ``make_store``; the block RAMs stay free for the engine. Words narrower than 16 bits share
    an SPRAM word (nibble write masks select the half), wider words take SPRAMs side by side.

    Parameters
    ----------
    W : int
        Word width: 8, 16, 32 or 64.
    depth : int
        Words; at most ``4 * 16384 * 16 // W`` (1 Mbit in all).

    Ports
    -----
    addr : In(range(depth))
    wdata : In(W)
    we : In(1)
        Write ``wdata`` at ``addr`` this cycle.
    re : In(1)
        Read ``addr`` this cycle (ignored while ``we``). The SPRAMs read every clock without
        a write: the port is there for `zipml.hw.soc.SampleStore`'s interface.
    rdata : Out(W)
        ``mem[addr]`` one clock after a cycle with ``re`` high (and ``we`` low), in that clock
        only: not held (the board system takes each word in the clock after its read), so
        nothing but the row and sub-word select lies between the SPRAMs and the caller.

    Latency: 1 cycle read, write visible to the next read.
    """

    SPRAM_WORDS = 16384
    SPRAM_COUNT = 4

    def __init__(self, W, depth):
        self._MustUse__silence = True  # no "never used" warning for a rejected instance
        if W not in (8, 16, 32, 64):
            raise ValueError(f"SPRAM store word width must be 8, 16, 32 or 64, not {W!r}")
        self.cols = max(1, W // 16)             # SPRAMs side by side for one word
        self.per = max(1, 16 // W)              # words packed in one SPRAM entry
        self.rows = -(-depth // (self.SPRAM_WORDS * self.per))
        if depth < 1 or self.rows * self.cols > self.SPRAM_COUNT:
            raise ValueError(f"SPRAM store of {depth} words of {W} bits does not fit the UP5K's "
                             f"4 SPRAMs (at most {self.SPRAM_COUNT * self.SPRAM_WORDS * 16 // W})")
        self._MustUse__silence = False
        self.W, self.depth = W, depth
        super().__init__({
            "addr": In(range(depth)), "wdata": In(W), "we": In(1), "re": In(1), "rdata": Out(W),
        })

    def elaborate(self, platform):
        m = Module()
        W, per, cols, rows = self.W, self.per, self.cols, self.rows
        sub_bits = (per - 1).bit_length()
        sub = self.addr[:sub_bits] if sub_bits else Const(0, 1)
        entry = self.addr[sub_bits:sub_bits + 14]
        row = self.addr[sub_bits + 14:] if rows > 1 else Const(0, 1)
        # Nibble write mask of the addressed sub-word (all four nibbles for W >= 16).
        nibbles = 4 // per
        mask = Signal(4)
        m.d.comb += mask.eq(Const((1 << nibbles) - 1, 4) << (sub * nibbles)[:2]
                            if per > 1 else Const(0b1111, 4))
        row_d, sub_d = Signal.like(row), Signal.like(sub)
        m.d.sync += [row_d.eq(row), sub_d.eq(sub)]
        outs = []
        for r in range(rows):
            row_out = []
            for c in range(cols):
                dout = Signal(16, name=f"spram_{r}_{c}_dout")
                data_in = (Cat(*([self.wdata] * per)) if per > 1
                           else self.wdata[16 * c:16 * (c + 1)])
                m.submodules[f"spram_{r}_{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=entry, i_DATAIN=data_in, i_MASKWREN=mask,
                    # selected by the address alone (an unrequested read is harmless), so
                    # the caller's read decision does not travel to the SPRAM
                    i_WREN=self.we, i_CHIPSELECT=(row == r),
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                    o_DATAOUT=dout)
                row_out.append(dout)
            outs.append(Cat(*row_out))
        selected = Signal(16 * cols)
        with m.Switch(row_d):
            for r in range(rows):
                with m.Case(r):
                    m.d.comb += selected.eq(outs[r])
        word = selected.word_select(sub_d, W) if per > 1 else selected
        m.d.comb += self.rdata.eq(word)
        return m


# --- The boards --------------------------------------------------------------------------------

BOARDS = {
    # UP5K: 5280 cells and 30 EBRs of 4 kbit. The parallel engine takes ~11 000 cells at W = 8,
    # so the iCEBreaker has the lane-serial one. Its EBRs: the model (D_MAX = 1024 words of 32
    # bits: 8), the code buffer (2048 bytes: 4), U, the dot sums, T values, labels and the
    # scalar's queue (13), the frame receiver (1).
    "icebreaker": BoardSpec(
        name="icebreaker", family="ice40", platform_class=ICEBreakerPlatform,
        # The snap-off PMOD that ships attached: five more LEDs (led 2..6).
        resources=("break_off_pmod",),
        clock="clk12", f_in_hz=12e6, target_mhz=48.0,
        # No L2 shrink: its shifter is the last 200 cells the system needs to fit.
        engine={"ARCH": "serial", "W": 8, "D_MAX": 1024, "B_MAX": 8, "BUF_DEPTH": 2048,
                "L2": False}, leds=7,
        # The store in the four SPRAMs (128 KiB), so the block RAMs stay free for the engine.
        baud=3_000_000, store_depth=131072, store=SpramStore,
        system={"COUNTER_BITS": 32, "STALL": False, "LINK_BITS": 8, "READBACK": False},
        flash=(ICEPROG, openfpgaloader("icebreaker")),
        # Debian/Ubuntu package names; both tools are also in most distributions and Homebrew.
        install_hint="install iceprog (`apt install fpga-icestorm`) or openFPGALoader "
                     "(`apt install openfpgaloader`)"),
    # ECP5-85F: 208 EBRs; W = 32 lanes, D_MAX = 4096 as in docs/engine.md.
    "ulx3s": BoardSpec(
        name="ulx3s", family="ecp5", platform_class=ULX3S_85F_Platform,
        clock="clk25", f_in_hz=25e6, target_mhz=160.0,
        engine={"W": 32, "D_MAX": 4096, "B_MAX": 8, "BUF_DEPTH": 2 * 8 * 128 * 8}, leds=8,
        # 16384 x 32 bits = 64 KiB in 32 of the 208 EBRs, beside the engine's model and buffer.
        baud=3_000_000, store_depth=16384,
        flash=(openfpgaloader("ulx3s"),),
        install_hint="install openFPGALoader (`apt install openfpgaloader`; or fujprog)"),
}


def board_spec(board):
    """The `BoardSpec` named ``board``, with one clear error for an unknown name."""
    try:
        return BOARDS[board]
    except KeyError:
        raise ValueError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}") from None


def board_names():
    """The names of `BOARDS`, sorted (the ``--board`` choices of the command lines)."""
    return sorted(BOARDS)


# --- Tops --------------------------------------------------------------------------------------

class EngineBoardTop(Elaboratable):
    """Board top for the engine-only timing measure: PLL clock + `PnrTop` + LEDs.

    LED 0 shows the engine's reduced outputs (so nothing is optimized away), LED 1 the PLL lock.

    Parameters
    ----------
    spec : BoardSpec
    f_out_hz : float
        Engine clock wanted from the PLL.
    engine : dict
        Engine synthesis parameters (``W``, ``D_MAX``, ``B_MAX``, ``BUF_DEPTH``; ``ARCH``
        chooses the engine class, `zipml.hw.soc.engine_class`).
    engine_cls : callable or None
        What `PnrTop` wraps instead of the ``ARCH`` engine; a single engine block can be
        measured alone this way.
    """

    def __init__(self, spec, f_out_hz, engine, *, engine_cls=None):
        self.spec = spec
        self.clocking = PLLClocking(spec, f_out_hz)
        self.engine_params = dict(engine)
        self.engine_cls = engine_cls

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clocking = self.clocking
        params = dict(self.engine_params)
        arch = params.pop("ARCH", "parallel")
        engine_cls = self.engine_cls or engine_class(arch)
        m.submodules.pnr = pnr = PnrTop(**params, engine_cls=engine_cls)
        leds = _request_leds(m, platform, 2)
        m.d.comb += leds[0].eq(pnr.led)
        if len(leds) > 1:
            m.d.comb += leds[1].eq(self.clocking.locked)
        return m


class SystemBoardTop(Elaboratable):
    """Board top of the product: PLL clock + `zipml.hw.soc.System` on the FTDI UART + LEDs.

    LED 0 is the PLL lock; the next LEDs are the system's status LEDs (`zipml.hw.soc.System`
    ``leds``: enabled, replay running, overflow, bad frame), as many as the board has.

    Parameters
    ----------
    spec : BoardSpec
    f_out_hz : float
        System/engine clock wanted from the PLL; the system is told the achieved frequency.
    engine : dict
        Engine synthesis parameters passed to the system.
    baud : int or None
        UART rate; default the board's.
    store_depth : int or None
        Sample store words; default the board's. The store is the board's `BoardSpec.store`
        (the UP5K's: `SpramStore`), else the system's own in block RAM.
    """

    def __init__(self, spec, f_out_hz, engine, *, baud=None, store_depth=None):
        self.spec = spec
        self.clocking = PLLClocking(spec, f_out_hz)
        self.engine_params = dict(engine)
        self.baud = spec.baud if baud is None else baud
        self.store_depth = spec.store_depth if store_depth is None else store_depth

    def make_system(self):
        """The board's `zipml.hw.soc.System`, with the board's sample store if it has one."""
        store = self.spec.store
        if store is not None:
            class BoardSystem(System):
                def make_store(self):
                    return store(self.W, self.STORE_DEPTH)
        else:
            BoardSystem = System
        return BoardSystem(clk_freq=round(self.clocking.frequency), baud=self.baud,
                           STORE_DEPTH=self.store_depth, **self.engine_params, **self.spec.system)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clocking = self.clocking
        m.submodules.system = system = self.make_system()
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        # The system's UART receiver synchronizes rx itself.
        m.d.comb += [system.rx.eq(rx.i), tx.o.eq(system.tx)]
        leds = _request_leds(m, platform, self.spec.leds)
        status = [self.clocking.locked] + [system.leds[i] for i in range(len(system.leds))]
        for led, value in zip(leds, status):
            m.d.comb += led.eq(value)
        return m


def make_top(board, target="system", f_out_hz=None, engine=None, **kwargs):
    """The board top for ``board`` (a name of `BOARDS`) and ``target`` (engine/system).

    ``f_out_hz`` defaults to the board's target clock, ``engine`` to its default parameters
    (entries given override the defaults); other keywords go to the top's constructor.
    """
    spec = board_spec(board)
    f_out_hz = spec.target_mhz * 1e6 if f_out_hz is None else f_out_hz
    params = {**spec.engine, **(engine or {})}
    if target == "engine":
        return EngineBoardTop(spec, f_out_hz, params, **kwargs)
    if target == "system":
        return SystemBoardTop(spec, f_out_hz, params, **kwargs)
    raise ValueError(f"unknown target {target!r}; choose engine or system")
