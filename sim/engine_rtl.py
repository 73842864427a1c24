"""The engine RTL (`zipml.hw.engine.Engine`) run in Verilator: the ``rtl`` backend.

:func:`run` has the signature and the result type of `zipml.reference.golden.run`, so the two
can be compared word for word; :class:`EngineSim` exposes the steps (registers, model port,
clear, stream, idle, counters) for drivers that stream several epoch segments and read the
model in between.

Everything per cycle happens in C++ (`zipml.sim.verilator`): a whole stream is one call, with
random valid gaps drawn there, so a run costs about what Verilator costs.

Builds: one Verilog conversion and one Verilator build per `EngineConfig` (cached on disk by
the Verilog's hash, and in this process by the config).
"""

from __future__ import annotations

import numpy as np

from ..hw.soc import engine_class
from ..reference.golden import EngineConfig, EngineRegs, EngineResult
from . import verilator as V

__all__ = ["REGISTERS", "COUNTERS", "top_name", "engine_verilog", "EngineSim", "model_for", "run"]

#: register ports written before a run, in docs/engine.md's order (names = EngineRegs fields)
REGISTERS = ("q", "mode", "d", "step", "step_shift", "decay_shift", "n_epoch", "l2_shift",
             "grid")
#: counter ports read after a run
COUNTERS = ("cycles", "samples", "words", "stall_cycles", "overflow")

_models: dict = {}


def top_name(config: EngineConfig) -> str:
    """Verilog module name of one engine build; every synthesis parameter is in it, because
    widths are fixed at generation (one uniquely named module per parameter set)."""
    arch = "" if config.ARCH == "parallel" else f"_{config.ARCH}"
    return (f"zipml_engine{arch}_w{config.W}_d{config.D_MAX}_b{config.B_MAX}"
            f"_buf{config.BUF_DEPTH}")


def _engine(config: EngineConfig):
    return engine_class(config.ARCH)(W=config.W, D_MAX=config.D_MAX, B_MAX=config.B_MAX,
                                     BUF_DEPTH=config.BUF_DEPTH)


def engine_verilog(config: EngineConfig) -> tuple[str, str, int]:
    """(Verilog text, top module name, model read latency) of the engine for ``config``."""
    eng = _engine(config)
    top = top_name(config)
    return V.to_verilog(eng, top), top, int(type(eng).MODEL_READ_LATENCY)


class EngineSim:
    """One Verilated engine and the steps of a run.

    Parameters
    ----------
    config : EngineConfig
    vcd : path, True or None
        Write waves (True: ``<build>/waves.vcd``); None follows ``ZIPML_WAVES``.

    Notes
    -----
    Protocol (docs/engine.md): registers and the model port are used while ``idle``; ``clear``
    zeroes counters, overflow, decay counter, T queue and pass state and loads the working step
    from ``step``; with ``enable`` high the engine takes the stream.
    """

    def __init__(self, config: EngineConfig, *, vcd=None):
        self.config = config
        verilog, top, self.read_latency = engine_verilog(config)
        self.model = V.Model(verilog, top, vcd=vcd)
        self.model.reset()
        self.model.set("enable", 0)
        self.model.set("clear", 0)
        self.model.set("model_we", 0)
        self.model.set("i_stream__valid", 0)

    def close(self):
        self.model.close()

    # -- steps ----------------------------------------------------------------------------
    def set_regs(self, regs: EngineRegs) -> None:
        regs.check(self.config)
        for name in REGISTERS:
            self.model.set(name, int(getattr(regs, name)))

    def wait_idle(self, max_cycles: int = 10_000_000) -> int:
        """Tick until ``idle``; returns the cycles ticked (TimeoutError if it never is)."""
        return self.model.wait("idle", 1, max_cycles=max_cycles)

    def write_model(self, words) -> None:
        """Write signed 32-bit model words from address 0 (engine must be idle)."""
        w = np.asarray(words)
        if (w.ndim != 1 or w.size > self.config.D_MAX
                or (w.size and not np.issubdtype(w.dtype, np.integer))):
            raise ValueError(f"model words must be a 1-D integer array of at most "
                             f"D_MAX={self.config.D_MAX} words, got {w.dtype} {w.shape}")
        w = w.astype(np.int64)
        if w.size and (w.min() < -(1 << 31) or w.max() > (1 << 31) - 1):
            raise ValueError("model words must fit signed 32 bits")
        self.model.write_seq("model_addr", "model_wdata", "model_we", w)

    def read_model(self, d: int) -> np.ndarray:
        """Read the first ``d`` model words (signed), through the model port's fixed latency."""
        return self.model.read_seq("model_addr", "model_rdata", int(d),
                                   latency=self.read_latency, signed=True)

    def clear(self) -> None:
        self.model.set("clear", 1)
        self.model.tick()
        self.model.set("clear", 0)

    def stream(self, words, *, gaps: float | None = None, seed: int = 0) -> V.StreamStats:
        """Enable the engine and send ``words``, then wait until it is idle and disable it, so
        the ``cycles`` counter spans exactly the segment.

        Returns the source's :class:`~zipml.sim.verilator.StreamStats` (``cycles`` there is
        until the last word is taken; the engine counter adds the drain to idle).
        """
        words = np.asarray(words)
        W = self.config.W
        if words.ndim != 1 or (words.size and not np.issubdtype(words.dtype, np.integer)):
            raise ValueError(f"words must be a 1-D integer array, got {words.dtype} {words.shape}")
        if words.size and (int(words.min()) < 0 or (W < 64 and int(words.max()) >> W)):
            raise ValueError(f"a stream word has bits set above bit {W - 1} (W = {W}) or is "
                             f"negative")
        self.model.set("enable", 1)
        try:
            st = self.model.stream(words, gap_prob=float(gaps or 0.0), seed=seed,
                                   max_cycles=1000 * words.size + 100_000)
            self.wait_idle(max_cycles=1000 * words.size + 100_000)
        finally:
            self.model.set("enable", 0)
        return st

    def counters(self) -> dict:
        return {name: self.model.get(name) for name in COUNTERS}

    # -- the whole run --------------------------------------------------------------------
    def run(self, regs: EngineRegs, words, init_model=None, gaps=None, seed: int = 0
            ) -> EngineResult:
        """Same contract as `zipml.reference.golden.run`, plus cycle counters."""
        regs.check(self.config)
        d = int(regs.d)
        self.model.set("enable", 0)
        self.wait_idle(max_cycles=100_000)
        self.set_regs(regs)
        init = np.zeros(d, dtype=np.int64) if init_model is None else np.asarray(init_model)
        if init.shape != (d,) or not np.issubdtype(init.dtype, np.integer):
            raise ValueError(f"init_model must be an integer array of shape ({d},), "
                             f"got {init.dtype} {init.shape}")
        self.write_model(init)
        self.clear()
        self.stream(words, gaps=gaps, seed=seed)
        c = self.counters()
        return EngineResult(model_words=self.read_model(d), samples=int(c["samples"]),
                            words=int(c["words"]), overflow=bool(c["overflow"]),
                            cycles=int(c["cycles"]), stall_cycles=int(c["stall_cycles"]))


def model_for(config: EngineConfig) -> EngineSim:
    """The process-wide :class:`EngineSim` of ``config`` (built once, reused by every run)."""
    sim = _models.get(config)
    if sim is None:
        sim = _models[config] = EngineSim(config)
    return sim


def run(config: EngineConfig, regs: EngineRegs, words, init_model=None, gaps=None,
        seed: int = 0) -> EngineResult:
    """Run the engine RTL on a word stream, from ``clear``.

    Writes the registers, writes ``init_model`` (zeros if None) through the model port,
    strobes ``clear``, streams ``words`` (with random valid gaps if ``gaps`` is a probability
    in (0, 1), drawn from ``seed``), waits for ``idle``, reads the model back through the
    model port and the counters.

    Returns
    -------
    EngineResult
        As `zipml.reference.golden.run`, with ``cycles`` and ``stall_cycles`` filled in.
    """
    return model_for(config).run(regs, words, init_model=init_model, gaps=gaps, seed=seed)
