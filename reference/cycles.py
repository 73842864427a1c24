"""Cycle model of the engine: the RTL's ``cycles`` and ``stall_cycles`` without a simulator.

`zipml.reference.golden.run` is the engine's arithmetic with no clock; this module is its clock.
For an engine build (`EngineConfig`, either ``ARCH``), its registers (`EngineRegs`) and a word
stream (as `golden.run` takes it), :func:`engine_cycles` returns exactly the ``cycles`` and
``stall_cycles`` counters that `zipml.sim.engine_rtl.run` reads after streaming the words with
``valid`` always high, from ``clear`` to ``idle``.

The timing depends only on the stream's structure (each pass's n_dot and n_grad), on ``d``,
``q``, ``mode``, ``grid``, and on the serial engine also on ``step_shift`` (its scalar shifts a
bit or a byte a cycle); never on the data: no stall of either engine looks at a payload other
than a header, and saturation only sets the sticky ``overflow`` flag.

The model is an event model per pass (docs/golden.md, "Cycle model", has the rules and why):
words issue back to back except where a rule of the gateware holds them, and the rules that
can hold them act only at a pass's start (header, labels, the label queue, the first chunk's
grad groups waiting for their T) and between the chunks (the grad and dot cursors of the
buffered modes), so a pass costs O(n_dot + n_grad) Python operations, not one per cycle.

The latencies below are the gateware's (hw/engine.py, hw/dot.py, hw/loss.py, hw/scalar.py,
hw/serial_engine.py, hw/serial_scalar.py); they are restated here because `reference` imports
nothing of `hw` (docs/design.md §4), and tests/test_reference_cycles.py checks them against the
gateware classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .golden import (EngineConfig, EngineRegs, buffered, dot_group_words, group_planes,
                     label_words, parse_header)

__all__ = ["CycleCount", "passes", "plane_dot_latency", "t_latency", "serial_t_latency",
           "serial_scalar_cycles", "cycle_count", "engine_cycles"]

# ------------------------------------------------------------------ gateware latencies
#: parallel engine: pipeline stage of the dot side's plane sum (`hw.engine.DOT`) and of the
#: grad side's write-back (`hw.engine.WB`)
DOT_STAGE = 7
WB_STAGE = 6
#: `hw.dot.DotAccumulate.LATENCY`, `hw.loss.SquaredLoss.LATENCY`, `hw.scalar.Scalar.LATENCY`
ACC_LATENCY = 2
LOSS_LATENCY = 2
SCALAR_LATENCY = 5


def plane_dot_latency(W: int) -> int:
    """`hw.dot.PlaneDot.latency(W)`: log2(W) adder levels and the correction, two a stage."""
    return -(-((W - 1).bit_length() + 1) // 2)


def t_latency(W: int) -> int:
    """`hw.engine.Engine.t_latency(W)`: cycles from a sample's last dot word to its T."""
    return DOT_STAGE + plane_dot_latency(W) + ACC_LATENCY + LOSS_LATENCY + SCALAR_LATENCY


def serial_t_latency(W: int) -> int:
    """`hw.serial_engine.SerialEngine.t_latency(W)`: cycles from a sample's last dot item to
    its error entering the serial scalar (the decision, W lanes, stages L1..L7, the loss)."""
    return W + 8 + LOSS_LATENCY


def serial_scalar_cycles(step_shift: int) -> int:
    """Cycles `hw.serial_scalar.SerialScalar` spends on one sample (IDLE, MUL, SUM, SUM_HI,
    the shift steps and their exit, ROUND, ROUND_HI, OUT): it shifts the product by
    ``amt = min(step_shift - 1, 49)`` (0 for step_shift 0) in steps of 8 or 1 bits."""
    amt = 0 if step_shift == 0 else min(int(step_shift) - 1, 49)
    return 8 + amt // 8 + amt % 8


# ------------------------------------------------------------------ the stream's structure

def passes(config: EngineConfig, regs: EngineRegs, words) -> tuple[list, int]:
    """The (n_dot, n_grad) of each pass of ``words`` and the number of words.

    Reads only the header words (a pass's length follows from its header), and rejects the
    streams `zipml.reference.golden.run` rejects (the engine would deadlock or leak T values).
    """
    regs.check(config)
    w = np.asarray(words)
    if w.ndim != 1:
        raise ValueError(f"words must be a 1-D array of stream words, got shape {w.shape}")
    N = int(w.size)
    W, q, mode, grid = config.W, int(regs.q), int(regs.mode), int(regs.grid)
    C = -(-int(regs.d) // W)
    LW = label_words(W)
    Gq, Dq, from_buf = group_planes(q, grid), dot_group_words(q, mode, grid), buffered(mode, grid)
    half = config.BUF_DEPTH // 2
    out = []
    pos, prev_dot = 0, 0
    while pos < N:
        n_dot, n_grad = parse_header(w[pos])
        if n_dot > config.B_MAX or n_grad > config.B_MAX:
            raise ValueError(f"pass {len(out)} (word {pos}): header n_dot={n_dot}, "
                             f"n_grad={n_grad} exceeds B_MAX={config.B_MAX}")
        if n_grad != prev_dot:
            raise ValueError(f"pass {len(out)} (word {pos}): n_grad={n_grad} but the previous "
                             f"pass had n_dot={prev_dot}")
        if from_buf and C * n_dot * Gq > half:
            raise ValueError(f"pass {len(out)}: the code buffer needs {C * n_dot * Gq} words "
                             f"but a half of BUF_DEPTH={config.BUF_DEPTH} holds {half}")
        need = n_dot * LW + C * ((0 if from_buf else n_grad * q) + n_dot * Dq)
        if pos + 1 + need > N:
            raise ValueError(f"pass {len(out)}: stream ends inside the pass")
        out.append((n_dot, n_grad))
        pos += 1 + need
        prev_dot = n_dot
    if prev_dot:
        raise ValueError(f"stream ends with {prev_dot} T value(s) pending")
    return out, N


# ------------------------------------------------------------------ the two engines

@dataclass
class CycleCount:
    """The counters of one run, and when each pass's header was taken (cycles since clear:
    the first enabled cycle is 0), for comparing a schedule with a simulation trace."""

    cycles: int
    stall_cycles: int
    headers: list = field(default_factory=list, repr=False)


def _parallel(config: EngineConfig, regs: EngineRegs, plist, N: int) -> CycleCount:
    W, B_MAX = config.W, config.B_MAX
    q, mode, grid = int(regs.q), int(regs.mode), int(regs.grid)
    C = -(-int(regs.d) // W)
    LW = label_words(W)
    Gq, Dq, bufd = group_planes(q, grid), dot_group_words(q, mode, grid), buffered(mode, grid)
    gw = Gq if bufd else q                  # words (cycles) of one grad group
    TL = t_latency(W)
    RL = DOT_STAGE + plane_dot_latency(W) + ACC_LATENCY   # last dot word -> label popped
    t = 0                   # the cycle the next header is taken (in_hdr, valid high)
    ta = []                 # per sample of the previous pass: first cycle its grads may issue
    pops = []               # per sample (global): the cycle its label leaves the queue
    last_wb = -(1 << 40)    # the last cycle G issued a chunk's last grad word (a write-back)
    last = -1               # the last cycle anything issued
    headers = []
    for nd, ng in plist:
        h = t
        headers.append(h)
        # labels: one word a cycle; a label word waits while B_MAX labels are queued, i.e.
        # until the label B_MAX before it is popped (its sample's dot finished)
        c = h + 1
        base = len(pops)
        for i in range(nd):
            m = base + i
            if m >= B_MAX:
                c = max(c, pops[m - B_MAX] + 1)
            c += LW
        lend = c - 1                        # last label word (h when n_dot = 0)
        Gw, Dw = ng * gw, nd * Dq
        if ng:
            # chunk 0's grad groups: G replays from h + 1 beside the labels (buffered) or
            # takes the stream after them; group s waits for T_s
            g = h + 1 if bufd else lend + 1
            for s in range(ng):
                g = max(g, ta[s]) + gw
            ge0 = g - 1
        if nd == 0 and ng == 0:
            last = h
        elif ng == 0:
            # first pass of a segment: D reads the model RAM and waits while a write-back is
            # in stages 1..WB (the previous segment's last one)
            ds0 = max(lend + 1, last_wb + WB_STAGE + 1)
            dsl = ds0 + (C - 1) * Dw
            last = ds0 + C * Dw - 1
        elif nd == 0:
            # last pass of a segment: G alone
            last = ge0 + (C - 1) * Gw
            last_wb = last
        elif not bufd:
            # symmetric mode 0: stream order, chunk by chunk G's groups then D's
            step = Gw + Dw
            last_wb = ge0 + (C - 1) * step
            dsl = last_wb + 1
            last = dsl + Dw - 1
        else:
            # buffered: D starts chunk k the cycle after G ends it; G starts chunk k + 1 with
            # D's first word of chunk k (never two chunks ahead): D's chunks follow each
            # other every max(Dw, Gw) cycles
            ds0 = max(lend + 1, ge0 + 1)
            P = max(Dw, Gw)
            dsl = ds0 + (C - 1) * P
            last = dsl + Dw - 1
            last_wb = ge0 if C == 1 else ds0 + (C - 2) * P + Gw - 1
        if nd:
            # a sample ends with its last dot plane of the last chunk (floor mode 0: delta_dot,
            # not delta_grad); its label is popped RL cycles later, its T written TL cycles
            # later, usable the cycle after
            x = [dsl + s * Dq + Gq - 1 for s in range(nd)]
            pops.extend([v + RL for v in x])
            ta = [v + TL + 1 for v in x]
        else:
            ta = []
        t = last + 1
    if not plist:
        return CycleCount(0, 0, headers)
    # idle: the parser waits for a header and nothing issued for TL + 2 cycles; stalls: every
    # cycle up to the last pass's end that took no word (after it the parser is ready)
    return CycleCount(last + TL + 3, last + 1 - N, headers)


def _serial(config: EngineConfig, regs: EngineRegs, plist, N: int) -> CycleCount:
    W = config.W
    q, mode, grid = int(regs.q), int(regs.mode), int(regs.grid)
    C = -(-int(regs.d) // W)
    LW = label_words(W)
    Gq, Dq = group_planes(q, grid), dot_group_words(q, mode, grid)
    S = serial_scalar_cycles(int(regs.step_shift))
    E = serial_t_latency(W)
    ev = -2                 # the last event: a word taken or an item issued
    it = None               # the last item issued
    z = -(1 << 40)          # the scalar's last start (its IDLE cycle with the sample)
    tg = []                 # per sample of the previous pass: first cycle its grads may issue
    headers = []

    def item(earliest):
        # an item waits for the lane loop (W cycles after the last, or from W + 2: the loop's
        # free flag is not up in the cycle after a missed slot) and for a quiet parser
        y = max(ev + 3, earliest)
        if it is not None:
            y = max(y, it + W)
            if y == it + W + 1:
                y += 1
        return y

    for nd, ng in plist:
        # every event waits for two quiet cycles (the parser decides from registers and
        # acts a cycle later), so header, label words and items are >= 3 cycles apart
        h = ev + 3
        headers.append(h)
        ev = h
        ev += 3 * LW * nd
        Gw, Dw = ng * Gq, nd * Dq
        if ng:
            for s in range(ng):
                y = item(tg[s])
                it = ev = y + (Gq - 1) * W
            # the rest of the pass back to back: chunk 0's write-back and dots, then per
            # chunk grads, write-back, dots
            n_after = 1 + Dw + (C - 1) * (Gw + 1 + Dw)
            dsl = it + (n_after - Dw + 1) * W
            it = ev = it + n_after * W
        elif nd:
            y = item(0)
            dsl = y + (C - 1) * Dw * W
            it = ev = y + (C * Dw - 1) * W
        if nd:
            tg = []
            for s in range(nd):
                cs = dsl + (s * Dq + Dq - 1) * W        # the sample's last dot item
                # the error enters the scalar's queue E cycles after the item, the scalar
                # takes one sample at a time (S cycles each, its T written in the last), and
                # a grad item sees T two cycles later (the T counter, then t_ok)
                z = max(cs + E + 1, z + S)
                tg.append(z + S + 2)
        else:
            tg = []
    if not plist:
        return CycleCount(0, 0, headers)
    # idle: state HEADER and no event for E + 2 cycles after the last one's action cycle;
    # ready is up from 3 cycles after the last event, with no word left to take
    return CycleCount(ev + E + 4, ev + 3 - N, headers)


def cycle_count(config: EngineConfig, regs: EngineRegs, words) -> CycleCount:
    """:func:`engine_cycles` with each pass's header cycle (:class:`CycleCount`)."""
    plist, N = passes(config, regs, words)
    run = _parallel if config.ARCH == "parallel" else _serial
    return run(config, regs, plist, N)


def engine_cycles(config: EngineConfig, regs: EngineRegs, words) -> tuple[int, int]:
    """``(cycles, stall_cycles)`` of the engine RTL for ``words`` streamed with no gaps, from
    ``clear`` to ``idle``: exactly what `zipml.sim.engine_rtl.run(config, regs, words)`
    reports.

    Raises
    ------
    ValueError
        On a stream `zipml.reference.golden.run` rejects.
    """
    r = cycle_count(config, regs, words)
    return r.cycles, r.stall_cycles
