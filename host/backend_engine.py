"""``golden`` and ``rtl`` backends: the engine's integer model, or the engine itself in Verilator.

Both build the same :class:`zipml.reference.engine_job.EngineJob` (registers, per-epoch codes
and word streams) and run it one epoch segment at a time, carrying the model words from one
segment to the next; so for the same data, seed and options they see the same words and must
return the same ``model_raw``.  ``golden`` runs :func:`zipml.reference.golden.run`, ``rtl`` runs
:func:`zipml.sim.engine_rtl.run` (same signature, same result type) and also reports cycles.

Which engine: ``options.board`` (``--board``) names a board whose build every engine backend
then runs (:func:`board_build`: its `EngineConfig`, whether it has the L2 shrink, and for
``sim`` its clock and UART); without it golden's default config
(`zipml.reference.engine_job.DEFAULT_CONFIG`). A job the build cannot honour (L2 on a build
without it) is refused before anything runs by :func:`check_regs`, the one judgement the board
driver (`zipml.host.device.Device`) applies too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zipml.hw import protocol as P
from zipml.hw.boards import BOARDS, board_spec
from zipml.hw.build import fit_frequency

from ..reference import engine_job as job
from ..reference.cycles import engine_cycles
from ..reference.golden import EngineConfig
from ..reference.golden import run as golden_run
from ..reference.order import fixed_order, order_function
from ..reference.pack import segment_words
from ..reference.store import P_MAX
from . import checkpoint
from .backends import BackendUnavailable, report
from .problem import TrainResult, resolve

__all__ = ["BoardBuild", "board_build", "check_register", "check_regs", "engine_job_for",
           "train_golden", "train_rtl", "train_engine"]

#: the simulated board's clock and UART without ``--board``: the iCEBreaker's 12 MHz crystal at
#: the FTDI's 3 Mbaud, 4 clocks per bit (the fewest the UART takes, so the fastest to simulate)
DEFAULT_SIM_CLK_HZ = 12_000_000
DEFAULT_BAUD = 3_000_000
#: sample store words of the simulated board without ``--board`` (the ULX3S's)
DEFAULT_STORE_DEPTH = 16384


@dataclass(frozen=True)
class BoardBuild:
    """One board's build as the host backends see it (:func:`board_build`).

    Attributes
    ----------
    board : str or None
        The board's name; None for the default build (golden's config, no board).
    config : EngineConfig
        The engine: W, D_MAX, B_MAX, BUF_DEPTH, ARCH.
    L2 : bool
        Whether the engine has the L2 shrink (register ``caps``); without it L2 jobs are refused.
    clk_hz : int
        The board system's clock in the simulation (``--backend sim``).
    baud : int
        Its UART rate; ``clk_hz / baud`` is an exact integer divisor.
    store_depth : int
        Sample store words of W bits.
    system : tuple of (str, value)
        The board system's own options (`zipml.hw.boards.BoardSpec.system`: the UP5K's
        trims), as `zipml.hw.soc.System` keywords.
    """

    board: str | None
    config: EngineConfig
    L2: bool
    clk_hz: int
    baud: int
    store_depth: int
    system: tuple = ()

    @property
    def caps(self) -> dict:
        """The build's options as the board reports them (`zipml.hw.protocol.decode_caps`)."""
        system = dict(self.system)
        return {"L2": self.L2, "ARCH": self.config.ARCH,
                "COUNTER_BITS": system.get("COUNTER_BITS") or P.COUNTER_BITS_FULL,
                "STALL": bool(system.get("STALL", True)),
                "LINK_BITS": system.get("LINK_BITS") or P.LINK_BITS_FULL,
                "READBACK": bool(system.get("READBACK", True))}


def board_build(board: str | None = None, config: EngineConfig | None = None) -> BoardBuild:
    """The build of ``board`` (``icebreaker``, ``ulx3s``; None: the default build).

    The engine and L2 are the board's (`zipml.hw.boards.board_spec(board).engine`, what
    ``zipml build --board`` builds). The simulated clock is the board's target clock fitted to
    its baud (`zipml.hw.build.fit_frequency`: iCEBreaker 48 MHz, ULX3S 150 MHz, 16 and 50
    clocks per bit), the clock ``zipml build`` puts the system at when it meets timing, so the
    simulated link costs the board's clocks. Without a board: golden's config
    (`zipml.reference.engine_job.DEFAULT_CONFIG`) with L2, at 12 MHz and 3 Mbaud.

    ``config`` (the Python API's own engine, e.g. a small one for a quick test) replaces the
    default build's engine; with a board it must be the board's.

    Raises
    ------
    ValueError
        Unknown board (one line naming the boards), or ``config`` is not the board's engine.
    """
    if board is None:
        return BoardBuild(board=None, config=config or job.DEFAULT_CONFIG, L2=True,
                          clk_hz=DEFAULT_SIM_CLK_HZ, baud=DEFAULT_BAUD,
                          store_depth=DEFAULT_STORE_DEPTH)
    spec = board_spec(board)
    engine = dict(spec.engine)
    L2 = bool(engine.pop("L2", True))            # the engine's default: built with L2
    if config is not None and config != EngineConfig(**engine):
        raise ValueError(f"the {board}'s engine is {EngineConfig(**engine)}, not {config}: give "
                         f"the board or the config")
    config = EngineConfig(**engine)
    clk_hz = round(fit_frequency(board, spec.target_mhz, spec.baud) * 1e6)
    return BoardBuild(board=spec.name, config=config, L2=L2, clk_hz=clk_hz, baud=spec.baud,
                      store_depth=spec.store_depth, system=tuple(sorted(spec.system.items())))


# What a job needing a build option asks for, to say in the refusal.
_NEEDS = {"L2": "L2 regularization (--lam > 0) needs an engine built with L2; train with "
                "--lam 0 on this board"}


def check_register(r, value: int, caps: dict) -> None:
    """The one host-side judgement of a register value: writable, fits, and not ignored by a
    build without the option it needs (``Register.requires``, a key of ``caps``,
    `zipml.hw.protocol.decode_caps`). Raises ValueError naming the problem."""
    if r.access is not P.Access.RW:
        raise ValueError(f"register {r.name!r} is read-only")
    if not 0 <= value <= r.mask:
        raise ValueError(f"register {r.name!r} is {r.width} bits: {value} does not fit")
    if value and r.requires is not None and not caps[r.requires]:
        raise ValueError(f"this board's engine was built without {r.requires} (register "
                         f"caps), so it would ignore {r.name}={value}: "
                         f"{_NEEDS.get(r.requires, r.requires)}")


def check_regs(regs, caps: dict) -> None:
    """`check_register` on every engine register of ``regs`` (`EngineRegs`)."""
    for r in P.ENGINE_REGISTERS:
        check_register(r, int(getattr(regs, r.engine)), caps)


#: models the engine trains: the squared loss (linreg, and LS-SVM = squared loss on +-1 labels
#: with L2); hinge and logistic need a different loss stage
ENGINE_MODELS = ("linreg", "lssvm")


def _opt(options, name, default=None):
    return getattr(options, name, default)


#: the stored precision store mode picks by itself at most (docs/store.md): beyond 8 bits the
#: stored value's error (2^-p) is far below any engine grid's step, and every stored plane costs
#: a store read per group every epoch; ``--store-bits`` goes up to `zipml.reference.store.P_MAX`
STORE_BITS_AUTO_MAX = 8


def store_precision(n: int, d: int, q: int, config: EngineConfig, B: int, store_depth: int,
                    requested: int | None = None, quantizer: str = "double") -> int:
    """The stored precision p of store mode: ``requested``, or the largest p in
    q..STORE_BITS_AUTO_MAX whose segment fits ``store_depth`` words.

    Raises ValueError naming the store, the segment and the way out (streaming) when nothing
    fits, or when ``requested`` does not.
    """

    lo = 1 if quantizer == "full" else int(q)

    def words(p):
        return segment_words(n, d, p, config.W, B, 1)

    if requested is not None:
        if not (isinstance(requested, int) and lo <= requested <= P_MAX):
            raise ValueError(f"--store-bits must be in {lo}..{P_MAX} (at least q = {q}), "
                             f"got {requested!r}")
        if words(requested) > store_depth:
            raise ValueError(f"the data stored at p = {requested} bits is {words(requested)} "
                             f"words; the store holds {store_depth}: lower --store-bits or "
                             f"train without --replay (streaming)")
        return int(requested)
    hi = max(lo, STORE_BITS_AUTO_MAX)
    for p in range(hi, lo - 1, -1):
        if words(p) <= store_depth:
            return p
    raise ValueError(f"the data does not fit the sample store at any precision >= {lo} bits "
                     f"({words(lo)} words at p = {lo}; the store holds {store_depth}): train "
                     f"without --replay (streaming)")


def store_fit(n: int, d: int, q: int, B: int, quantizer: str = "double") -> dict:
    """Per board, the largest stored precision p (q..P_MAX) whose segment fits its sample
    store, or None: what ``zipml train`` reports so a user can pick a board for store mode."""

    lo = 1 if quantizer == "full" else int(q)
    out = {}
    for name in sorted(BOARDS):
        build = board_build(name)
        fits = [p for p in range(lo, P_MAX + 1)
                if B <= build.config.B_MAX and d <= build.config.D_MAX
                and segment_words(n, d, p, build.config.W, B, 1) <= build.store_depth]
        out[name] = max(fits) if fits else None
    return out


def engine_job_for(prepared, options, config: EngineConfig | None = None,
                   store_depth: int | None = None) -> job.EngineJob:
    """Check that the engine can run these options and build the job.

    With ``options.replay`` the job is in store mode (docs/store.md) at the stored precision
    :func:`store_precision` picks for a store of ``store_depth`` words (the build's).

    Raises ValueError with one message naming what the engine cannot do.
    """

    if _opt(options, "lr") is None or _opt(options, "decay") is None:
        options = resolve(prepared, options)      # the same lr/decay every backend derives
    model = _opt(options, "model", "linreg")
    if model not in ENGINE_MODELS:
        raise ValueError(f"the engine trains the squared loss only ({', '.join(ENGINE_MODELS)}); "
                         f"use --backend reference for --model {model}")
    levels = _opt(options, "levels")
    if levels not in (None, "uniform"):
        raise ValueError(f"the engine quantizes on the uniform grid only; --levels {levels} "
                         f"needs --backend reference")
    for name in ("q_model", "q_grad"):
        if _opt(options, name):
            raise ValueError(f"end-to-end quantization ({name}) is not in the engine; "
                             f"use --backend reference")
    lr = _opt(options, "lr")
    lam = _opt(options, "lam", 0.0) or 0.0
    quantizer = _opt(options, "quantizer", "double")
    q = int(_opt(options, "bits", 8))
    B = int(_opt(options, "batch", 1) or 1)
    grid = _opt(options, "grid", "floor")
    store_p = 0
    replay = _opt(options, "replay", None)
    if replay and grid != "floor":
        raise ValueError("--replay (store mode) draws floor-grid codes on chip every epoch; "
                         "the symmetric grid streams only: drop --replay or --grid symmetric")
    if replay or (replay is None and grid == "floor"):
        cfg = config or job.DEFAULT_CONFIG
        n, d = prepared.A.shape
        try:
            store_p = store_precision(
                n, d, q, cfg, B, DEFAULT_STORE_DEPTH if store_depth is None else store_depth,
                _opt(options, "store_bits"), quantizer)
        except ValueError:
            if replay:
                raise
            store_p = 0             # the default: stream what does not fit the store
    return job.EngineJob.build(
        prepared.A, prepared.b, quantizer=quantizer, q=q, lr=float(lr), B=B,
        seed=int(_opt(options, "seed", 0) or 0), l2=float(lam),
        decay_factor=_decay_factor(options), config=config, grid=grid,
        order=fixed_order if store_p else order_function(_opt(options, "order", "shuffle")),
        store_p=store_p)


def _decay_factor(options):
    decay = _opt(options, "decay")
    if decay in (None, 0, 0.0, 1, 1.0):
        return None
    return float(decay)


def train_engine(prepared, options, progress=None, *, runner, config: EngineConfig | None = None,
                 caps: dict | None = None, backend: str = "golden",
                 store_depth: int | None = None):
    """Train with ``runner(config, regs, words, init_model, epoch) -> EngineResult`` per epoch
    segment (``words``: the engine's stream of epoch ``epoch``; a board in store mode draws
    them itself from the epoch's seed).

    ``caps`` are the build's options (`zipml.hw.protocol.decode_caps`; None: all of them): a
    job needing one the build lacks is refused (:func:`check_regs`) before the runner runs.

    ``options.checkpoint`` (a path) saves a `zipml.host.checkpoint.Checkpoint` after every
    epoch; ``options.resume`` (a path) starts from one, after checking it is of this job, and
    trains the epochs left up to ``options.epochs``: bit for bit what the uninterrupted run
    gives, on any engine backend of the same build.

    Returns
    -------
    zipml.host.problem.TrainResult
        ``model_raw`` the final model words, ``cycles`` the summed cycle counter (None when the
        runner has no clock), ``bits_moved`` every bit of the engine's input stream (headers
        and labels included), ``mse`` per epoch in user units, ``extra`` the registers, the
        engine config, whether it has L2, the counters, ``link_bits`` (bits the host sends:
        every streamed word, or the stored segment once) and ``store_bits`` (bits read from
        the sample store, every epoch; 0 when streaming), ``resumed_at`` (the epoch a resumed
        run started at, else None) and ``trained_by`` (the backend of each run that trained
        it). The loss history, cycles, bits and counters include a resumed checkpoint's.
    """

    ej = engine_job_for(prepared, options, config, store_depth)
    caps = {"L2": True, "ARCH": ej.config.ARCH} if caps is None else caps
    check_regs(ej.regs, caps)
    epochs = int(_opt(options, "epochs", 1))
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    replay = ej.store_p > 0
    X = np.zeros(ej.d, dtype=np.int64)
    mse = []
    totals = {"bits": 0, "samples": 0, "words": 0, "cycles": 0, "stall_cycles": 0,
              "overflow": False}
    backends = []
    save_to, resume_from = _opt(options, "checkpoint"), _opt(options, "resume")
    job_fp = checkpoint.fingerprint(ej) if (save_to or resume_from) else None
    if resume_from:
        ck = checkpoint.load(resume_from)
        ck.check(job_fp, epochs)
        X = np.asarray(ck.model_raw, dtype=np.int64)
        mse, totals, backends = list(ck.mse), dict(ck.totals), list(ck.backends)
        for e, err in enumerate(mse):
            report(progress, e, err)
    start = len(mse)
    backends.append(backend)
    for e in range(start, epochs):
        words_e = ej.epoch_stream(e)
        res = runner(ej.config, ej.epoch_regs(e), words_e, init_model=X, epoch=e)
        X = np.asarray(res.model_words, dtype=np.int64)
        totals["bits"] += int(words_e.size) * ej.config.W
        totals["samples"] += int(res.samples)
        totals["words"] += int(res.words)
        totals["overflow"] = bool(totals["overflow"] or res.overflow)
        if res.cycles is None or totals["cycles"] is None:
            totals["cycles"] = totals["stall_cycles"] = None      # a backend without a clock
        else:
            totals["cycles"] += int(res.cycles)
            totals["stall_cycles"] += int(res.stall_cycles or 0)
        err = _mse(prepared, job.float_model(X))
        mse.append(err)
        if save_to:
            checkpoint.save(save_to, checkpoint.Checkpoint(
                job=job_fp, epoch=e + 1, model_raw=[int(v) for v in X], mse=mse,
                totals=totals, backends=backends))
        report(progress, e, err)
    x = job.float_model(X)
    return TrainResult(
        mse=mse, model=_user_model(prepared, x), model_raw=[int(v) for v in X],
        bits_moved=totals["bits"], cycles=totals["cycles"],
        extra={"backend": backend, "regs": dict(ej.regs.__dict__),
               "config": dict(ej.config.__dict__), "L2": bool(caps["L2"]),
               "samples": totals["samples"], "words": totals["words"],
               "stall_cycles": totals["stall_cycles"], "overflow": totals["overflow"],
               "lr_effective": job.effective_lr(ej.regs.step, ej.regs.step_shift, ej.regs.q,
                                                ej.regs.grid),
               "grid": "floor" if ej.regs.grid else "symmetric",
               "replay": replay, "store_p": ej.store_p,
               "store_words": int(store_depth) if store_depth else None,
               "order": "fixed" if (replay or ej.order is fixed_order) else "shuffle",
               "link_bits": ej.store_bits() if replay else totals["bits"],
               "store_bits": ej.store_bits() * epochs if replay else 0,
               "store_fit": store_fit(ej.n, ej.d, ej.regs.q, ej.B, ej.quantizer),
               "model_scaled": x.tolist(),
               "resumed_at": start if resume_from else None,
               "trained_by": backends})


def golden_cycles_run(config, regs, words, init_model=None, epoch=None):
    """:func:`zipml.reference.golden.run` with the engine's ``cycles`` and ``stall_cycles``
    from the cycle model (`zipml.reference.cycles`): what the RTL counts for the stream fed
    without gaps. (``epoch`` is not needed: ``words`` already hold the epoch's draws.)"""
    res = golden_run(config, regs, words, init_model=init_model)
    res.cycles, res.stall_cycles = engine_cycles(config, regs, words)
    return res


def train_golden(prepared, options, progress=None, config: EngineConfig | None = None):
    """``--backend golden [--board NAME]``: the bit-exact integer model of the board's engine
    (:func:`board_build`; ``config`` replaces the default build's engine), with the engine's
    cycle counters from the cycle model."""
    build = board_build(_opt(options, "board"), config)
    return train_engine(prepared, options, progress, runner=golden_cycles_run,
                        config=build.config,
                        caps=build.caps, backend="golden",
                        store_depth=_opt(options, "store_words") or build.store_depth)


def train_rtl(prepared, options, progress=None, config: EngineConfig | None = None):
    """``--backend rtl [--board NAME]``: the engine RTL of the board's config
    (:func:`board_build`), simulated by Verilator, trains the data."""
    build = board_build(_opt(options, "board"), config)
    try:
        # lazy: Verilator and a C++ compiler, which only the rtl backend needs
        from ..sim.engine_rtl import run
    except ImportError as exc:            # Verilator or the gateware missing
        raise BackendUnavailable(f"the rtl backend needs the Verilator simulation of "
                                 f"zipml.hw.engine: {exc}") from exc

    def runner(config, regs, words, init_model=None, epoch=None):
        return run(config, regs, words, init_model=init_model)

    return train_engine(prepared, options, progress, runner=runner, config=build.config,
                        caps=build.caps, backend="rtl",
                        store_depth=_opt(options, "store_words") or build.store_depth)


# -- adapters to zipml.host.problem ------------------------------------------------------------

def _mse(prepared, x):
    return float(prepared.mse(x))


def _user_model(prepared, x):
    return np.asarray(prepared.to_user(x), dtype=np.float64).tolist()
