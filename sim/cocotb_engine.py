"""cocotb testbench of the whole engine (`zipml.hw.engine.Engine`) against the golden model.

Two halves:

* plain Python, importable anywhere: :class:`Case` (one run: q, mode, grid, d, B, n, decay,
  gaps, seed) and :func:`make_case`, which draws random codes, labels, an initial model and
  registers and packs the stream with the one packer (`zipml.reference.pack`). The Verilator
  ctypes tests (tests/test_sim_engine_rtl.py) use the same cases.
* the cocotb part, run inside the simulator by tests/test_sim_engine_cocotb.py through
  ``cocotb_tools.runner``: :class:`TB` owns clock, reset and the drivers (a stream source with
  random valid gaps, a protocol monitor on the input stream, the model port); the test
  ``engine_vs_golden`` is parametrized over the cases in ``$ZIPML_COCOTB_CASES`` (JSON list of
  Case dicts) and compares model words and the counters samples, words and overflow with
  `zipml.reference.golden.run`, bit for bit.

The engine's synthesis parameters come from ``$ZIPML_ENGINE_CONFIG`` (JSON of EngineConfig)
and its model read latency from ``$ZIPML_MODEL_READ_LATENCY`` (the runner knows the Python
Engine class; the simulator only sees Verilog).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass

import numpy as np

from ..reference import golden, pack
from ..reference.golden import EngineConfig, EngineRegs

__all__ = ["Case", "make_case", "cases_to_env", "cases_from_env", "config_from_env"]


# ------------------------------------------------------------------------------------------
# cases (no cocotb here)
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One engine run of the test matrix.

    q : bits per code (1..32); mode : 0 double, 1 single (naive/deterministic/full);
    d : features; B : minibatch; n : samples; decay : decay_shift (0 = constant step, the
    decay counter then wraps every ceil(n/2) samples so it fires inside the run);
    l2 : l2_shift; gaps : probability of an idle source cycle; epochs : segments streamed
    back to back; seed : everything random; pauses : probability that ``enable`` is low in a
    cycle while the stream runs (cocotb only: the engine must hold and give the same result);
    grid : 0 symmetric, 1 floor (random floors t and carries; q <= 30).
    """

    q: int
    mode: int
    d: int
    B: int = 1
    n: int = 6
    decay: int = 0
    l2: int = 0
    gaps: float = 0.3
    epochs: int = 1
    seed: int = 0
    pauses: float = 0.0
    grid: int = 0

    @property
    def name(self) -> str:
        return (f"q{self.q}_m{self.mode}" + (f"_grid{self.grid}" if self.grid else "")
                + f"_d{self.d}_B{self.B}_n{self.n}_dec{self.decay}"
                f"_l2{self.l2}_g{self.gaps:g}_e{self.epochs}_s{self.seed}"
                + (f"_p{self.pauses:g}" if self.pauses else ""))


def make_case(config: EngineConfig, case: Case):
    """Random registers, initial model and word stream for ``case``.

    The step is chosen as the host would for gamma ~ 2^-6 (docs/engine.md, "Scalar"), so the
    model moves visibly without saturating on every sample; the initial model is small random
    words so that the first dot products are not all zero. On the floor grid (``case.grid``)
    the dot groups are random floors t in 0..2^q-1 with random carries (two per value in mode
    0), packed as `zipml.reference.pack.floor_group_codes` at
    `zipml.reference.golden.dot_group_words` planes with no grad groups.

    Returns
    -------
    regs : EngineRegs
    words : uint64 array
    init_model : int64 array (d,)
    """
    W = config.W
    q, mode, d, B, n, grid = case.q, case.mode, case.d, case.B, case.n, case.grid
    if not 1 <= d <= config.D_MAX:
        raise ValueError(f"case d={d} outside 1..D_MAX={config.D_MAX}")
    if not 1 <= B <= config.B_MAX:
        raise ValueError(f"case B={B} outside 1..B_MAX={config.B_MAX}")
    if grid not in (0, 1) or (grid and not 1 <= q <= 30):
        raise ValueError(f"case {case.name}: grid must be 0 or 1, and q in 1..30 on the floor "
                         f"grid")
    C = -(-d // W)
    Gq = golden.group_planes(q, grid)
    if golden.buffered(mode, grid) and B * C * Gq > config.BUF_DEPTH // 2:
        raise ValueError(f"case {case.name}: a buffered pass needs {B * C * Gq} buffer words, "
                         f"the engine has {config.BUF_DEPTH // 2} per half")
    rng = np.random.default_rng(case.seed)
    top = (1 << q) - 1
    segments = []
    for _ in range(case.epochs):
        if grid:
            t = rng.integers(0, top, size=(n, d), endpoint=True, dtype=np.int64)
            dd = rng.integers(0, 2, size=(n, d), dtype=np.int64)
            dg = rng.integers(0, 2, size=(n, d), dtype=np.int64) if mode == 0 else None
            b = rng.uniform(-1.0, 1.0, size=n)
            segments.append(pack.pack_segment(W, golden.dot_group_words(q, mode, 1), 1,
                                              pack.floor_group_codes(t, dd, dg),
                                              pack.label_word(b, q, 1), B=B))
            continue
        dot = rng.integers(0, top, size=(n, d), endpoint=True, dtype=np.int64)
        grad = (rng.integers(0, top, size=(n, d), endpoint=True, dtype=np.int64)
                if mode == 0 else None)
        b = rng.uniform(-1.0, 1.0, size=n)
        segments.append(pack.pack_segment(W, q, mode, dot, pack.label_word(b, q), B=B,
                                          grad_codes=grad))
    words = np.concatenate(segments)
    # STEP * 2^-STEP_SHIFT = gamma * 2^(2q) / (2^q - 1)^2 with gamma = 2^-6 / d (scaled so the
    # update stays well inside Q8.24 for any d; 1 on the floor grid, whose dot is exact); an
    # 18-bit mantissa
    scale = (1 << (2 * q)) / float(top) ** 2 if q < 32 and not grid else 1.0
    gamma = 2.0 ** -6 / d
    v = gamma * scale
    step_shift = int(np.clip(np.floor(np.log2(((1 << golden.STEP_BITS) - 1) / v)), 0, 63))
    step = int(max(1, round(v * 2.0 ** step_shift)))
    regs = EngineRegs(q=q, mode=mode, d=d, step=step, step_shift=step_shift,
                      decay_shift=case.decay, n_epoch=max(1, -(-n // 2)) if case.decay else 0,
                      l2_shift=case.l2, grid=grid)
    init_model = rng.integers(-(1 << 20), 1 << 20, size=d, dtype=np.int64)
    return regs, words, init_model


def cases_to_env(cases) -> str:
    return json.dumps([asdict(c) for c in cases])


def cases_from_env(default=()) -> list[Case]:
    text = os.environ.get("ZIPML_COCOTB_CASES")
    if not text:
        return list(default)
    return [Case(**c) for c in json.loads(text)]


def config_from_env() -> EngineConfig:
    text = os.environ.get("ZIPML_ENGINE_CONFIG")
    return EngineConfig(**json.loads(text)) if text else EngineConfig(W=8, D_MAX=512, B_MAX=4,
                                                                       BUF_DEPTH=4096)


# ------------------------------------------------------------------------------------------
# cocotb part: only defined when running inside a simulator
# ------------------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
    _IN_SIM = getattr(cocotb, "top", None) is not None
except Exception:  # pragma: no cover - cocotb is a dependency; outside a simulator no top
    _IN_SIM = False


if _IN_SIM:

    class StreamSource:
        """Drives ``<prefix>__payload/valid`` with random valid gaps and watches ``ready``.

        Timing: inputs change at the falling edge and the handshake is sampled in ReadOnly just
        before the rising edge, which is the same in every simulator. A monitor checks the
        stream rule the engine relies on: once valid is up, valid and payload hold until the
        word is taken.
        """

        def __init__(self, dut, prefix: str, clk, seed: int):
            self.payload = getattr(dut, f"{prefix}__payload")
            self.valid = getattr(dut, f"{prefix}__valid")
            self.ready = getattr(dut, f"{prefix}__ready")
            self.clk = clk
            self.rng = random.Random(seed)
            self.held = 0      # cycles with valid and not ready (the engine's backpressure)
            self.gaps = 0
            self.valid.value = 0

        async def send(self, words, gap_prob: float, max_cycles: int | None = None):
            """Send every word; AssertionError if the sink has not taken them all within
            ``max_cycles`` (default 1000 per word + 10 000), so a stuck ready fails the case
            instead of hanging the simulation."""
            if max_cycles is None:
                max_cycles = 1000 * len(words) + 10_000
            up = False
            last = None
            i = 0
            cycles = 0
            while i < len(words):
                cycles += 1
                assert cycles <= max_cycles, \
                    f"engine took only {i} of {len(words)} words in {max_cycles} cycles"
                await FallingEdge(self.clk)
                if not up:
                    if gap_prob and self.rng.random() < gap_prob:
                        self.valid.value = 0
                        self.gaps += 1
                        continue
                    self.payload.value = int(words[i])
                    self.valid.value = 1
                    up = True
                await ReadOnly()
                # protocol monitor: a word offered and not taken must stay as it was
                if last is not None:
                    assert int(self.valid.value) == 1 and int(self.payload.value) == last, \
                        "stream source dropped or changed a word that was not taken"
                if int(self.ready.value):
                    i += 1
                    up = False
                    last = None
                else:
                    self.held += 1
                    last = int(words[i])
            await FallingEdge(self.clk)
            self.valid.value = 0

    class TB:
        """Clock, reset, registers, model port and stream source of one engine."""

        def __init__(self, dut, config: EngineConfig, read_latency: int, seed: int = 0):
            self.dut = dut
            self.config = config
            self.read_latency = read_latency
            self.source = StreamSource(dut, "i_stream", dut.clk, seed)
            self._clock = cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

        async def reset(self):
            d = self.dut
            d.rst.value = 1
            d.enable.value = 0
            d.clear.value = 0
            d.model_we.value = 0
            d.i_stream__valid.value = 0
            for _ in range(3):
                await RisingEdge(d.clk)
            await FallingEdge(d.clk)
            d.rst.value = 0

        async def set_regs(self, regs: EngineRegs):
            await FallingEdge(self.dut.clk)
            for name in ("q", "mode", "d", "step", "step_shift", "decay_shift", "n_epoch",
                         "l2_shift", "grid"):
                getattr(self.dut, name).value = int(getattr(regs, name))

        async def wait_idle(self, max_cycles: int):
            for _ in range(max_cycles):
                await FallingEdge(self.dut.clk)
                await ReadOnly()
                if int(self.dut.idle.value):
                    return
            raise AssertionError(f"engine not idle after {max_cycles} cycles")

        async def write_model(self, words):
            d = self.dut
            for a, w in enumerate(np.asarray(words, dtype=np.int64)):
                await FallingEdge(d.clk)
                d.model_addr.value = a
                d.model_wdata.value = int(w) & 0xFFFFFFFF
                d.model_we.value = 1
            await FallingEdge(d.clk)
            d.model_we.value = 0

        async def read_model(self, n: int) -> np.ndarray:
            d = self.dut
            out = np.zeros(n, dtype=np.int64)
            for a in range(n):
                await FallingEdge(d.clk)
                d.model_addr.value = a
                for _ in range(self.read_latency):
                    await RisingEdge(d.clk)
                await ReadOnly()
                out[a] = d.model_rdata.value.to_signed()
            return out

        async def strobe_clear(self):
            await FallingEdge(self.dut.clk)
            self.dut.clear.value = 1
            await FallingEdge(self.dut.clk)
            self.dut.clear.value = 0

        async def pause_enable(self, prob: float, seed: int):
            """Drop ``enable`` at random cycles (a host pausing the engine) until cancelled."""
            rng = random.Random(seed ^ 0x5A5A)
            while True:
                await FallingEdge(self.dut.clk)
                self.dut.enable.value = int(rng.random() >= prob)

        async def run(self, regs, words, init_model, gap_prob, pauses=0.0, seed=0):
            await self.wait_idle(1000)
            await self.set_regs(regs)
            await self.write_model(init_model)
            await self.strobe_clear()
            self.dut.enable.value = 1
            pauser = cocotb.start_soon(self.pause_enable(pauses, seed)) if pauses else None
            await self.source.send(words, gap_prob)
            if pauser is not None:
                pauser.cancel()
                await FallingEdge(self.dut.clk)
                self.dut.enable.value = 1
            await self.wait_idle(1000 * len(words) + 10_000)
            await FallingEdge(self.dut.clk)
            self.dut.enable.value = 0
            await ReadOnly()
            c = {name: int(getattr(self.dut, name).value)
                 for name in ("samples", "words", "overflow", "cycles", "stall_cycles")}
            model = await self.read_model(int(regs.d))
            return model, c

    _CONFIG = config_from_env()
    _LATENCY = int(os.environ.get("ZIPML_MODEL_READ_LATENCY", "1"))
    _CASES = cases_from_env(default=[Case(q=2, mode=0, d=9, B=2, n=5)])

    @cocotb.test()
    @cocotb.parametrize(case=_CASES)
    async def engine_vs_golden(dut, case: Case):
        """RTL vs golden, bit for bit: model words, samples, words, overflow."""
        regs, words, init_model = make_case(_CONFIG, case)
        tb = TB(dut, _CONFIG, _LATENCY, seed=case.seed)
        await tb.reset()
        model, c = await tb.run(regs, words, init_model, case.gaps, case.pauses, case.seed)
        want = golden.run(_CONFIG, regs, words, init_model=init_model)
        dut._log.info("%s: %d words, %d cycles, %d stalls, %d source gaps, overflow %d",
                      case.name, c["words"], c["cycles"], c["stall_cycles"], tb.source.gaps,
                      c["overflow"])
        mism = np.flatnonzero(model != want.model_words)
        assert mism.size == 0, (f"{case.name}: {mism.size} model words differ, first at "
                                f"j={mism[0]}: rtl {model[mism[0]]} golden "
                                f"{want.model_words[mism[0]]}")
        assert c["samples"] == want.samples, f"samples rtl {c['samples']} golden {want.samples}"
        assert c["words"] == want.words == len(words), \
            f"words rtl {c['words']} golden {want.words} sent {len(words)}"
        assert bool(c["overflow"]) == want.overflow, \
            f"overflow rtl {c['overflow']} golden {want.overflow}"
        # every enabled cycle either took a word, stalled, or idled (gaps, drain)
        assert c["cycles"] >= c["words"] + c["stall_cycles"]
