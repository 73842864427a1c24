"""``--backend reference``: the float64 SGD of :mod:`zipml.reference.sgd` on a prepared problem."""

from __future__ import annotations

import numpy as np

from ..reference.levels import optimal_levels
from ..reference.order import order_function
from ..reference.sgd import MODEL_LOSS, SGDConfig, loss_value, sgd
from .backends import report
from .problem import Prepared, TrainOptions, TrainResult, resolve

__all__ = ["train", "config_for"]


def config_for(prepared: Prepared, options: TrainOptions) -> SGDConfig:
    """The SGD configuration of these options (lr/decay resolved, level table built)."""
    options.validate()
    if options.lr is None or options.decay is None:
        options = resolve(prepared, options)
    levels = None
    if options.levels == "optimal":
        # one table for all features, from the training data itself
        levels = optimal_levels(prepared.A, 1 << min(options.bits, 8))
    return SGDConfig(loss=MODEL_LOSS[options.model], q=options.bits, quantizer=options.quantizer,
                     levels=levels, grid=options.grid, epochs=options.epochs, lr=float(options.lr),
                     batch=options.batch, seed=options.seed, lam=float(options.lam),
                     decay=float(options.decay), q_model=options.q_model,
                     q_grad=options.q_grad, degree=options.degree, refetch=options.refetch)


def train(prepared: Prepared, options: TrainOptions, progress=None) -> TrainResult:
    """Train with the float reference; ``progress(epoch, mse)`` after each epoch."""
    cfg = config_for(prepared, options)
    mse, loss, acc = [], [], []

    def after_epoch(e, x):
        err = prepared.mse(x)
        mse.append(err)
        loss.append(loss_value(cfg.loss, prepared.A, prepared.b, x, cfg.lam))
        if prepared.task == "classification":
            acc.append(prepared.accuracy(x))
        report(progress, e, err)

    res = sgd(prepared.A, prepared.b, cfg, callback=after_epoch,
              order=order_function(getattr(options, "order", "shuffle")))
    extra = {"backend": "reference", "lr": cfg.lr, "decay": cfg.decay, "loss": loss,
             "refetches": res.refetches, "model_scaled": res.x.tolist()}
    if acc:
        extra["accuracy"] = acc
    if cfg.levels is not None:
        extra["levels"] = np.asarray(cfg.levels).tolist()
    return TrainResult(mse=mse, model=prepared.to_user(res.x).tolist(), model_raw=None,
                       bits_moved=int(res.bits_moved), cycles=None, extra=extra)
