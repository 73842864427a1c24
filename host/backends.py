"""Backend registry: name -> ``"module:function"``, imported only when used.

Every backend is ``fn(prepared, options, progress) -> TrainResult`` where ``prepared`` is a
:class:`zipml.host.problem.Prepared`, ``options`` a resolved
:class:`zipml.host.problem.TrainOptions` (lr and decay filled in, see
:func:`zipml.host.problem.resolve`) and ``progress`` is None or a callable
``progress(epoch, mse)`` called after each epoch (epoch counts from 0, mse in user units).
The engine backends run the engine build of ``options.board``
(:func:`zipml.host.backend_engine.board_build`; the board backend: the bitstream's own).
"""

from __future__ import annotations

import importlib

from .problem import resolve

__all__ = ["BACKENDS", "BackendUnavailable", "load", "train", "report"]

BACKENDS = {
    "reference": "zipml.host.backend_reference:train",
    "golden": "zipml.host.backend_engine:train_golden",
    "rtl": "zipml.host.backend_engine:train_rtl",
    "sim": "zipml.host.device:train_sim",
    "board": "zipml.host.device:train_board",
}


class BackendUnavailable(RuntimeError):
    """The backend's module or its dependencies are not installed / not built."""


def load(name: str):
    """The training function of backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    mod_name, fn_name = BACKENDS[name].split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not available: {exc}") from exc
    fn = getattr(mod, fn_name, None)
    if fn is None:
        raise BackendUnavailable(f"backend {name!r} is not available: "
                                 f"{mod_name} has no {fn_name}")
    return fn


def report(progress, epoch: int, mse: float) -> None:
    """Call ``progress(epoch, mse)`` if given (tqdm-like objects get ``update(1)``)."""
    if progress is None:
        return
    if callable(progress):
        progress(epoch, mse)
    elif hasattr(progress, "update"):
        progress.update(1)


def train(prepared, options, progress=None):
    """Validate and resolve ``options``, then train with ``options.backend``."""
    options.validate()
    fn = load(options.backend)
    return fn(prepared, resolve(prepared, options), progress)
