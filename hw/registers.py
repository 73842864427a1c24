"""The board system's register file: the register map of `zipml.hw.protocol` in gateware.

The command unit (`zipml.hw.command.CommandUnit`) reads and writes it by address while it
evaluates READ_REG and WRITE_REG (`zipml.hw.evaluate.Evaluator`); the engine, the store feed
and the replay read its configuration registers, and it reads their counters and state back
(docs/link.md, "Registers").
"""

import functools
import operator

from amaranth.hdl import Module, Signal, Const, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .onehot import one_hot_select

__all__ = ["RegisterFile"]

#: link health counter -> the strobe port that counts it
LINK_EVENTS = {"rx_ok": "frame_ok", "rx_bad": "frame_bad", "rx_overrun": "overrun",
               "rx_uart_err": "uart_error"}


class RegisterFile(wiring.Component):
    """Configuration registers, ctrl, link counters, counter latches and the register read.

    Every use of the command's register address after CHECK (the read, the write, the
    counter latch) is a flip-flop, not a decoder: one select flip-flop per register.

    Parameters
    ----------
    params : dict
        The ``param_*`` registers' values (the build's numbers).
    counters : dict
        Engine counter (`zipml.hw.protocol.COUNTERS`) -> bits the map reads of it; a counter
        not in it reads 0 (not counted in this build). Up to 32 bits there is no high word
        (the ``*_hi`` register reads 0) and no latch for it.
    store_depth : int
        Sample store words (``STORE_DEPTH``).
    L2 : bool
        The engine has the L2 shrink (``caps``).
    arch_code : int
        The engine architecture's code (``caps``).
    link_bits : int or None
        Width of the link health counters; None: the register map's.
    readback : bool
        The configuration registers read back what was written; False: they read 0, and
        ``store_wptr``/``store_len`` keep only the store's address bits and, above them, one
        bit that says a higher bit was written (an address past the store either way: the
        compares of the evaluator and the replay treat the two alike).

    Ports
    -----
    q, mode, d, step, ..., store_wptr, store_len, store_p, store_round : Out
        The configuration registers (`zipml.hw.protocol.CONFIG_REGISTERS`), as wide as the map
        says (``store_wptr``/``store_len`` narrowed without ``readback``).
    enable : Out(1)
        ctrl's enable bit.
    clear, stop : Out(1)
        ctrl's strobes: registered pulses (the engine's clear fans out to most of it).
    seed_load : Out(2)
        Write strobes (registered pulses) of ``seed_lo`` and ``seed_hi``; the written value is
        ``wvalue`` beside them (it holds until the next command).
    bad_seen : Out(1)
        A bad frame was received since the last clear.
    addr : In(8)
        The command's register address.
    check : In(1)
        Strobe (CHECK): decode ``addr`` into the select flip-flops, ``readable`` and
        ``writable``.
    readable, writable : Out(1)
        ``addr`` is a register, a writable one.
    sel_ctrl : Out(1)
        ``addr`` is ctrl's (a select flip-flop).
    read : In(1)
        Strobe (BOUND): take the addressed register into its half of the map's read (by
        address bit 5; 0 in the half not addressed).
    latch : In(1)
        With ``read``: the command reads a register (READ_REG of the right length): a
        counter's low word latches its high word, so the two halves of a running counter
        come from the same clock.
    rdata : Out(32)
        The register read: the OR of the halves (comb from flip-flops).
    wvalue : In(32)
        The value WRITE_REG writes.
    write : In(1)
        Write ``wvalue`` into the addressed register (ctrl: the strobes only).
    write_ctrl : In(1)
        ctrl's enable bit takes ``wvalue``'s bit 0 (the clock after the strobes).
    store_wr : In(1)
        A STORE word is written at ``store_wptr``: it moves on.
    frame_ok, frame_bad, overrun, uart_error : In(1)
        Strobes of the link health counters ``rx_ok``, ``rx_bad`` (which also sets
        ``bad_seen``), ``rx_overrun``, ``rx_uart_err``.
    status, replay_done, replay_cycles : In
        The read-only registers of the system.
    cycles, samples, words, stall_cycles : In
        The engine counters of ``counters``, as wide as the map reads them.

    Latency: a write or a count is visible the clock after its strobe.
    """

    def __init__(self, params, counters, store_depth, L2, arch_code, link_bits=None,
                 readback=True):
        self.params, self.counters = dict(params), dict(counters)
        self.store_depth = store_depth
        self.link_bits, self.readback = link_bits, bool(readback)
        self.caps = P.caps_value(L2, arch_code, counter_bits=max(self.counters.values()),
                                 stall="stall_cycles" in self.counters,
                                 link_bits=link_bits or P.LINK_BITS_FULL, readback=readback)
        sbits = store_depth.bit_length()
        narrow = set() if self.readback else {"store_wptr", "store_len"}
        members = {}
        for name in P.CONFIG_REGISTERS:
            width = P.REGISTER_BY_NAME[name].width
            members[name] = Out(sbits + 1 if name in narrow and sbits < width else width)
        members.update({
            "enable": Out(1), "clear": Out(1), "stop": Out(1), "seed_load": Out(2),
            "bad_seen": Out(1),
            "addr": In(8), "check": In(1), "readable": Out(1), "writable": Out(1),
            "sel_ctrl": Out(1), "read": In(1), "latch": In(1), "rdata": Out(32),
            "wvalue": In(32), "write": In(1), "write_ctrl": In(1), "store_wr": In(1),
            **{event: In(1) for event in LINK_EVENTS.values()},
            **{name: In(P.REGISTER_BY_NAME[name].width)
               for name in ("status", "replay_done", "replay_cycles")},
            **{name: In(n) for name, n in self.counters.items()},
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        sbits = self.store_depth.bit_length()
        regs = {name: getattr(self, name) for name in P.CONFIG_REGISTERS}
        enable, wvalue = self.enable, self.wvalue
        m.d.sync += [self.clear.eq(0), self.stop.eq(0), self.seed_load.eq(0)]

        link = {name: Signal(self.link_bits or P.REGISTER_BY_NAME[name].width, name=name)
                for name in P.LINK_COUNTERS}
        for name, event in LINK_EVENTS.items():
            with m.If(getattr(self, event)):
                m.d.sync += link[name].eq(link[name] + 1)
        with m.If(self.frame_bad):
            m.d.sync += self.bad_seen.eq(1)

        # Counter high words, latched when the low word is read (in BOUND, the clock the low
        # word is taken). The counters as the map reads them: the engine's unread high bits
        # are swept by synthesis.
        counter_hi = {name: Signal(min(32, n - 32), name=f"{name}_hi_latch")
                      for name, n in self.counters.items() if n > 32}
        constants = {"id": P.ID_MAGIC, **self.params, "caps": self.caps}

        def read_value(r):
            """What register `r` reads as (a constant or a signal)."""
            if r.name in constants:
                return Const(constants[r.name], 32)
            if r.name == "ctrl":
                return enable
            if r.name in ("status", "replay_done", "replay_cycles"):
                return getattr(self, r.name)
            if r.name in link:
                return link[r.name]
            if r.access is P.Access.RW and not self.readback:
                return Const(0, 32)                              # not read back
            if r.access is P.Access.WO:
                return Const(0, 32)
            if r.engine in P.COUNTERS and r.part == 1:
                return counter_hi.get(r.engine, Const(0, 32))    # no high word: reads 0
            if r.engine in P.COUNTERS:
                if r.engine not in self.counters:
                    return Const(0, 32)                          # not counted in this build
                return getattr(self, r.engine)[:min(32, self.counters[r.engine])]
            return regs[r.name]

        # CHECK: one flip-flop per register: its address is the command's.
        addr_known = Signal()
        addr_rw = Signal()
        with m.Switch(self.addr):
            for r in P.REGISTERS:
                with m.Case(r.addr):
                    m.d.comb += [addr_known.eq(1), addr_rw.eq(r.access is not P.Access.RO)]
        sel = {r.addr: self.sel_ctrl if r.name == "ctrl" else Signal(name=f"sel_{r.name}")
               for r in P.REGISTERS}
        with m.If(self.check):
            m.d.sync += [self.readable.eq(addr_known), self.writable.eq(addr_rw)]
            m.d.sync += [sel[a].eq(self.addr == a) for a in sel]

        # BOUND takes the addressed register of each half of the map, the caller ORs them.
        halves = {}
        for r in P.REGISTERS:
            halves.setdefault(r.addr >> 5 & 1, []).append(r)
        half_value = {h: Signal(32, name=f"rd_half_{h}") for h in halves}
        with m.If(self.read):
            for h, members in halves.items():
                m.d.sync += half_value[h].eq(one_hot_select((sel[r.addr], read_value(r))
                                                            for r in members))
            with m.If(self.latch):
                for name, hi in counter_hi.items():
                    with m.If(sel[P.COUNTERS[name][0].addr]):
                        m.d.sync += hi.eq(getattr(self, name)[32:32 + len(hi)])
        m.d.comb += self.rdata.eq(functools.reduce(operator.or_, half_value.values()))

        # CHECK refused a STORE past the store: the low bits never carry out.
        store_wptr = regs["store_wptr"]
        with m.If(self.store_wr):
            m.d.sync += store_wptr[:sbits].eq(store_wptr[:sbits] + 1)

        with m.If(self.write):
            for name, reg in regs.items():      # a writable address: CHECK saw to it
                r = P.REGISTER_BY_NAME[name]
                with m.If(sel[r.addr]):
                    value = wvalue[:len(reg)]
                    if len(reg) < r.width:          # narrowed: address bits + "higher"
                        value = Cat(wvalue[:len(reg) - 1], wvalue[len(reg) - 1:r.width].any())
                    m.d.sync += reg.eq(value)
            # the seed's halves go into the generators (wvalue holds until the next command)
            m.d.sync += self.seed_load.eq(Cat(sel[P.REGISTER_BY_NAME["seed_lo"].addr],
                                              sel[P.REGISTER_BY_NAME["seed_hi"].addr]))
            with m.If(self.sel_ctrl):
                m.d.sync += [self.clear.eq(wvalue[1]), self.stop.eq(wvalue[2])]
                with m.If(wvalue[1]):
                    m.d.sync += self.bad_seen.eq(0)
        with m.If(self.write_ctrl):
            # enable changes the clock after the clear/stop pulse: a clear with enable
            # clears a stopped engine, as the strobe-then-register order always did.
            m.d.sync += enable.eq(wvalue[0])
        return m
