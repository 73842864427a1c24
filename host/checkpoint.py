"""Checkpoint and resume of engine training (``zipml train --checkpoint PATH / --resume PATH``).

An engine job's epochs stand on their own: epoch e's registers (`EngineJob.epoch_regs`), sample
order, codes and, in store mode, the board's generator seed (`EngineJob.feed_seed`) are
functions of the job and e alone. So what a run needs to go on after epoch e is the model words
and e; the rest of a checkpoint is the history the result reports (the loss per epoch, the
summed counters). A resumed run is bit for bit the uninterrupted one, on any engine backend of
the same build (golden, rtl, sim, board all train the same integer model).

The file is JSON (docs/cli.md, "Checkpoints"): it names the job by a fingerprint of everything
that decides the words the engine sees (the scaled data, the engine's registers and build,
quantizer, minibatch, seed, sample order, stored precision), and a checkpoint of another job is
refused with what differs. It is written to a temporary file beside PATH and renamed over it,
so a crash while writing leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from ..reference.files import write_json

__all__ = ["FORMAT", "Checkpoint", "fingerprint", "save", "load"]

#: the checkpoint format's name and version, checked on load
FORMAT = "zipml-checkpoint/1"


def _job_facts(job) -> dict:
    """What decides the words of every epoch of ``job`` (`zipml.reference.engine_job.EngineJob`)
    besides the data, in a form that can be compared and shown."""
    order = getattr(job.order, "__name__", type(job.order).__name__)
    return {"config": dict(job.config.__dict__), "regs": dict(job.regs.__dict__),
            "quantizer": job.quantizer, "B": int(job.B), "seed": int(job.seed),
            "order": order, "store_p": int(job.store_p), "n": int(job.n), "d": int(job.d)}


def fingerprint(job) -> dict:
    """The job's facts (:func:`_job_facts`) and ``data_sha256``: a SHA-256 of the scaled
    features and labels the engine's codes are drawn from."""
    h = hashlib.sha256()
    for a in (job.A, job.b):
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return {**_job_facts(job), "data_sha256": h.hexdigest()}


def _flat(facts: dict) -> dict:
    """``{"regs": {"q": 2}}`` -> ``{"regs.q": 2}``, to name what differs."""
    out = {}
    for k, v in facts.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


@dataclass
class Checkpoint:
    """The state after ``epoch`` epochs of a job.

    Attributes
    ----------
    job : dict
        :func:`fingerprint` of the job.
    epoch : int
        Epochs done; the next run starts at this epoch.
    model_raw : list of int
        The engine's model words after them.
    mse : list of float
        The loss after each of them (user units).
    totals : dict
        The result's sums so far: ``bits`` (engine stream bits), ``samples``, ``words``,
        ``cycles`` and ``stall_cycles`` (None when the backend has no clock), ``overflow``.
    backends : list of str
        The backends that trained its epochs, in order (one entry per run).
    """

    job: dict
    epoch: int
    model_raw: list
    mse: list
    totals: dict
    backends: list = field(default_factory=list)

    def check(self, job_fp: dict, epochs: int) -> None:
        """Raise ValueError if this checkpoint is not of the job ``job_fp`` or is already past
        ``epochs`` (the run's total)."""
        mine, theirs = _flat(self.job), _flat(job_fp)
        diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if diff:
            shown = ", ".join("the data differs" if k == "data_sha256" else
                              f"{k} {mine.get(k)!r} -> {theirs.get(k)!r}" for k in diff[:6])
            hint = ("; the default --decay follows --epochs, so give --decay to extend a run"
                    if "regs.decay_shift" in diff else "")
            raise ValueError(f"the checkpoint is of another job ({shown}): resume with the "
                             f"data and options it was made with{hint}")
        if self.epoch > epochs:
            raise ValueError(f"the checkpoint is at epoch {self.epoch}, past --epochs {epochs}: "
                             f"give --epochs {self.epoch} or more")


def save(path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` (atomically: `zipml.reference.files.write_json`)."""
    write_json(path, {"format": FORMAT, "job": ckpt.job, "epoch": int(ckpt.epoch),
                      "model_raw": [int(v) for v in ckpt.model_raw],
                      "mse": [float(v) for v in ckpt.mse], "totals": ckpt.totals,
                      "backends": list(ckpt.backends)})


def load(path) -> Checkpoint:
    """Read a checkpoint; one ValueError naming the file and the problem if it is not one."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--resume {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--resume {path}: not a readable checkpoint ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"--resume {path}: not a {FORMAT} file")
    try:
        ckpt = Checkpoint(job=dict(doc["job"]), epoch=int(doc["epoch"]),
                          model_raw=[int(v) for v in doc["model_raw"]],
                          # a diverged loss was written as null (strict JSON)
                          mse=[float("nan") if v is None else float(v) for v in doc["mse"]],
                          totals=dict(doc["totals"]),
                          backends=list(doc.get("backends", [])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"--resume {path}: damaged checkpoint ({exc!r})") from None
    if len(ckpt.mse) != ckpt.epoch or len(ckpt.model_raw) != ckpt.job.get("d"):
        raise ValueError(f"--resume {path}: damaged checkpoint ({len(ckpt.mse)} losses for "
                         f"{ckpt.epoch} epochs, {len(ckpt.model_raw)} model words for "
                         f"d = {ckpt.job.get('d')})")
    return ckpt
