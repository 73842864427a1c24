"""``golden`` and ``rtl`` backends: the engine's integer model, or the engine itself in Verilator.

Both build the same :class:`zipml.reference.engine_job.EngineJob` (registers, per-epoch codes
and word streams) and run it one epoch segment at a time, carrying the model words from one
segment to the next; so for the same data, seed and options they see the same words and must
return the same ``model_raw``.  ``golden`` runs :func:`zipml.reference.golden.run`, ``rtl`` runs
:func:`zipml.sim.engine_rtl.run` (same signature, same result type) and also reports cycles.
"""

from __future__ import annotations

import numpy as np

from ..reference import engine_job as job
from ..reference.golden import EngineConfig
from .backends import report

__all__ = ["engine_job_for", "train_golden", "train_rtl", "train_engine"]

#: models the engine trains: the squared loss (linreg, and LS-SVM = squared loss on +-1 labels
#: with L2); hinge and logistic need a different loss stage
ENGINE_MODELS = ("linreg", "lssvm")


def _opt(options, name, default=None):
    return getattr(options, name, default)


def engine_job_for(prepared, options, config: EngineConfig | None = None) -> job.EngineJob:
    """Check that the engine can run these options and build the job.

    Raises ValueError with one message naming what the engine cannot do.
    """
    from .problem import resolve, sample_order

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
    return job.EngineJob.build(
        prepared.A, prepared.b, quantizer=_opt(options, "quantizer", "double"),
        q=int(_opt(options, "bits", 8)), lr=float(lr), B=int(_opt(options, "batch", 1) or 1),
        seed=int(_opt(options, "seed", 0) or 0), l2=float(lam),
        decay_factor=_decay_factor(options), order=sample_order, config=config)


def _decay_factor(options):
    decay = _opt(options, "decay")
    if decay in (None, 0, 0.0, 1, 1.0):
        return None
    return float(decay)


def train_engine(prepared, options, progress=None, *, runner, config: EngineConfig | None = None,
                 backend: str = "golden"):
    """Train with ``runner(config, regs, words, init_model) -> EngineResult`` per epoch segment.

    Returns
    -------
    zipml.host.problem.TrainResult
        ``model_raw`` the final model words, ``cycles`` the summed cycle counter (None when the
        runner has no clock), ``bits_moved`` every stream bit (headers and labels included),
        ``mse`` per epoch in user units, ``extra`` the registers and counters.
    """
    from .problem import TrainResult

    ej = engine_job_for(prepared, options, config)
    epochs = int(_opt(options, "epochs", 1))
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    replay = bool(_opt(options, "replay", False))
    X = np.zeros(ej.d, dtype=np.int64)
    mse, bits, samples, words = [], 0, 0, 0
    cycles, stalls, overflow = 0, 0, False
    has_clock = True
    for e in range(epochs):
        words_e = ej.epoch_stream(0 if replay else e)
        res = runner(ej.config, ej.epoch_regs(e), words_e, init_model=X)
        X = np.asarray(res.model_words, dtype=np.int64)
        bits += int(words_e.size) * ej.config.W
        samples += res.samples
        words += res.words
        overflow |= bool(res.overflow)
        if res.cycles is None:
            has_clock = False
        else:
            cycles += int(res.cycles)
            stalls += int(res.stall_cycles or 0)
        err = _mse(prepared, job.float_model(X))
        mse.append(err)
        report(progress, e, err)
    x = job.float_model(X)
    return TrainResult(
        mse=mse, model=_user_model(prepared, x), model_raw=[int(v) for v in X],
        bits_moved=bits, cycles=cycles if has_clock else None,
        extra={"backend": backend, "regs": dict(ej.regs.__dict__),
               "config": dict(ej.config.__dict__), "samples": samples, "words": words,
               "stall_cycles": stalls if has_clock else None, "overflow": overflow,
               "lr_effective": job.effective_lr(ej.regs.step, ej.regs.step_shift, ej.regs.q),
               "replay": replay, "model_scaled": x.tolist()})


def train_golden(prepared, options, progress=None, config: EngineConfig | None = None):
    """``--backend golden``: the bit-exact integer model of the engine."""
    from ..reference.golden import run
    return train_engine(prepared, options, progress, runner=run, config=config,
                        backend="golden")


def train_rtl(prepared, options, progress=None, config: EngineConfig | None = None):
    """``--backend rtl``: the engine RTL itself, simulated by Verilator, trains the data."""
    from .backends import BackendUnavailable
    try:
        from ..sim.engine_rtl import run
    except ImportError as exc:            # Verilator or the gateware missing
        raise BackendUnavailable(f"the rtl backend needs the Verilator simulation of "
                                 f"zipml.hw.engine: {exc}") from exc
    return train_engine(prepared, options, progress, runner=run, config=config, backend="rtl")


# -- adapters to zipml.host.problem ------------------------------------------------------------

def _mse(prepared, x):
    return float(prepared.mse(x))


def _user_model(prepared, x):
    return np.asarray(prepared.to_user(x), dtype=np.float64).tolist()
