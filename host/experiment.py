"""``zipml experiment``: time and bits to reach the least-squares loss, q-bit engine against its
own 32-bit mode and against the CPU (issue 9, items 2 and 3; method in docs/experiment.md,
JSON schema in docs/cli.md, "zipml experiment").

    zipml experiment DATA... [--bits 2,4,8] [--quantizers double,naive,deterministic,full]
                     [--board icebreaker,ulx3s] [--epochs E] [--targets 0.01,0.05] [--seeds K]
                     [--synthetic N,D,SEED] [--batch B] [--stream] [--clock {pll,fmax}]
                     [--reports DIR] --json PATH --plots DIR [--resume] [--quiet]

Per dataset (prepared once, `zipml.host.problem.prepare`; the engine trains the squared loss
only, so regression data is ``linreg`` and +-1 data ``lssvm``, lam = 0):

* **engine runs** on ``golden`` for every board x quantizer x q x seed, plus each board's
  ``full`` (32-bit fixed point, streamed): per epoch the training MSE, the engine's cumulative
  cycles (the cycle model, `zipml.reference.cycles`, equal to the RTL's counters), link, store
  and engine-stream bits, and board seconds = cycles / the clock of that board's build report
  (``results/build_<board>.json``; none when the report is missing or did not meet timing);
* **CPU runs** in this process on the same prepared data, wall time per epoch:
  scikit-learn ``SGDRegressor`` / ``SGDClassifier`` (squared loss, ``partial_fit`` once per
  epoch, every step size of :data:`SKLEARN_ETA_FACTORS`), a float32 NumPy minibatch SGD with the
  engine's schedule, and ``numpy.linalg.lstsq`` (the floor);
* **time to target** per run and epsilon, the **mean and spread over seeds**, the **speedups**
  per board and epsilon, and three **plots**.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier, SGDRegressor
from tqdm import tqdm

from zipml.hw.boards import BOARDS, board_spec

from ..reference import engine_job as job
from ..reference.golden import EngineConfig
from . import backend_engine as be
from . import datasets
from .bench_seeds import _commit as _git_commit
from .cli import _int, _Parser
from .files import write_json
from .problem import QUANTIZERS, Dataset, TrainOptions, default_lr, prepare, resolve

__all__ = ["main", "time_to_target", "board_clock", "board_refusal", "synthetic",
           "run_experiment", "SKLEARN_ETA_FACTORS"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORTS = ROOT / "results"

#: scikit-learn's step sizes: ``eta0 = factor * lr`` with lr the engine's default step of the
#: ``full`` job (`zipml.host.problem.default_lr`: 0.5 / max_i |a_i|^2 / B), schedule
#: ``invscaling`` (eta0 / t^0.25, t = samples seen: scikit-learn's default for regression)
SKLEARN_ETA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SKLEARN_POWER_T = 0.25
#: CPU SGD baselines (the "best CPU SGD" of the speedups is the better of the two)
CPU_SGD = ("sklearn_sgd", "numpy_sgd_f32")
FULL_Q = 32


# -- small pieces ------------------------------------------------------------------------------

def _finite(v):
    """float, or None for NaN/inf (JSON has no NaN)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def time_to_target(loss, seconds, optimum, eps):
    """The first ``seconds[i]`` whose ``loss[i] <= (1 + eps) * optimum``; None if never reached
    (or if ``seconds`` is None: no clock). ``loss`` entries None (diverged) never reach."""
    if seconds is None or optimum is None:
        return None
    bound = (1.0 + float(eps)) * float(optimum)
    for v, s in zip(loss, seconds):
        if v is not None and math.isfinite(v) and v <= bound:
            return None if s is None else float(s)
    return None


def _targets(loss, seconds, optimum, targets):
    return {k: time_to_target(loss, seconds, optimum, float(k)) for k in targets}


def _commit():
    return _git_commit()


def _dirty_files():
    """Tracked files with uncommitted changes when the report was written (other engineers'
    edits in a shared tree: what ``+dirty`` in ``commit`` stands for)."""
    out = _git("diff", "--name-only", "HEAD")
    return None if out is None else sorted(line for line in out.splitlines() if line.strip())


def _git(*args):
    try:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def synthetic(n: int, d: int, seed: int):
    """A regression set: X ~ N(0, 1) (n x d), y = X w + N(0, 0.1^2), w ~ N(0, 1/d)."""
    rng = np.random.default_rng([int(seed), 0x5E7])
    X = rng.normal(size=(n, d))
    w = rng.normal(0.0, 1.0 / math.sqrt(d), size=d)
    y = X @ w + rng.normal(0.0, 0.1, size=n)
    return Dataset(X=X, y=y, name=f"synthetic_{n}x{d}_s{seed}", task="regression")


# -- the boards' clocks ------------------------------------------------------------------------

def board_clock(board: str, reports=DEFAULT_REPORTS, clock: str = "pll") -> dict:
    """Which clock turns this board's cycles into seconds, from its build report.

    Returns a dict with ``report`` (path), ``clock_key`` (the domain of ``fmax_mhz``),
    ``fmax_mhz``, ``pll_mhz``, ``timing_met``, ``clock`` (``pll``: the clock the bitstream runs
    at; ``fmax``: the Fmax nextpnr reported), ``clock_mhz`` (what seconds divide by, or None),
    ``reason`` (why there is no clock), the report's ``seed`` and build ``commit`` (null when the
    report has none), ``report_commit`` (the git commit that last wrote the report),
    ``hw_changed_since_report`` (hw/ differs between that commit and HEAD), ``engine_matches``
    (the report's engine is the board's engine of `zipml.host.backend_engine.board_build`) and
    ``baud``.
    """
    path = Path(reports) / f"build_{board}.json"
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
    out = {"report": shown, "clock": clock, "clock_key": None, "fmax_mhz": None,
           "pll_mhz": None, "timing_met": None, "clock_mhz": None, "reason": None,
           "seed": None, "commit": None, "report_commit": None,
           "hw_changed_since_report": None, "engine_matches": None,
           "baud": board_spec(board).baud}
    try:
        rep = json.loads(path.read_text())
    except FileNotFoundError:
        out["reason"] = f"no build report {shown}: board seconds not computed"
        return out
    except (OSError, ValueError) as exc:
        out["reason"] = f"build report {shown} unreadable ({exc}): board seconds not computed"
        return out
    fmax = rep.get("fmax_mhz") or {}
    pll = rep.get("pll_mhz")
    if isinstance(fmax, dict) and fmax:
        # the domain the PLL drives: the one whose constraint is nearest the PLL clock
        cons = rep.get("constraint_mhz") or {}
        key = min(fmax, key=lambda k: abs(float(cons.get(k, 0) or 0) - float(pll or 0)))
        out["clock_key"], out["fmax_mhz"] = key, _finite(fmax[key])
    elif isinstance(fmax, (int, float)):
        out["fmax_mhz"] = _finite(fmax)
    out["pll_mhz"] = _finite(pll)
    out["timing_met"] = rep.get("timing_met")
    out["seed"] = rep.get("seed")
    out["commit"] = rep.get("commit")
    out["baud"] = rep.get("baud", out["baud"])
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else None
    if rel:
        rc = _git("log", "-1", "--format=%h", "--", rel)
        out["report_commit"] = rc or None
        if rc:
            diff = _git("diff", "--stat", rc, "HEAD", "--", "hw")
            out["hw_changed_since_report"] = None if diff is None else bool(diff)
    eng = rep.get("engine")
    if isinstance(eng, dict):
        build = be.board_build(board)
        try:
            cfg = EngineConfig(**{k: v for k, v in eng.items() if k != "L2"})
            out["engine_matches"] = (cfg == build.config
                                     and bool(eng.get("L2", True)) == build.L2)
        except (TypeError, ValueError):
            out["engine_matches"] = False
    if rep.get("timing_met") is not True:
        out["reason"] = (f"{shown}: timing not met (Fmax {out['fmax_mhz']} MHz at a "
                         f"{out['pll_mhz']} MHz PLL): board seconds not computed")
    elif out["engine_matches"] is False:
        out["reason"] = (f"{shown} built another engine ({eng}) than the board's: board "
                         f"seconds not computed")
    else:
        mhz = out["pll_mhz"] if clock == "pll" else out["fmax_mhz"]
        if not mhz:
            out["reason"] = f"{shown} has no {clock} clock: board seconds not computed"
        else:
            out["clock_mhz"] = mhz
    return out


def board_refusal(prepared, build, batch: int = 1, lam: float = 0.0):
    """Why ``build`` (`zipml.host.backend_engine.BoardBuild`) cannot train ``prepared`` at all,
    or None: d > D_MAX, B > B_MAX, L2 without the shrink."""
    cfg = build.config
    if prepared.d > cfg.D_MAX:
        return (f"d={prepared.d} features (intercept included) exceed the engine's "
                f"D_MAX={cfg.D_MAX}")
    if batch > cfg.B_MAX:
        return f"minibatch B={batch} exceeds the engine's B_MAX={cfg.B_MAX}"
    if lam and not build.L2:
        return "L2 (lam > 0) needs an engine built with L2"
    return None


# -- runs --------------------------------------------------------------------------------------

class _Bar:
    """One tqdm bar per run on stderr (nothing with ``quiet``)."""

    def __init__(self, total, desc, quiet):
        self.bar = None
        if not quiet:
            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, leave=False)

    def __call__(self, epoch, loss):
        if self.bar is not None:
            self.bar.set_postfix_str(f"mse={loss:.5g}", refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _say(msg, quiet):
    if quiet:
        return
    tqdm.write(msg, file=sys.stderr)


def engine_run(prepared, model, board, quantizer, q, seed, settings, clock, progress=None):
    """One golden run of ``board``'s engine; per-epoch cycles recorded around the runner."""
    stream = quantizer == "full" or settings["stream"]
    opts = TrainOptions(model=model, bits=min(q, 8), quantizer=quantizer,
                        epochs=settings["epochs"], batch=settings["batch"], seed=seed,
                        backend="golden", board=board, replay=False if stream else None)
    opts = resolve(prepared, opts.validate())
    build = be.board_build(board)
    per_epoch = []

    def runner(config, regs, words, init_model=None):
        res = be.golden_cycles_run(config, regs, words, init_model=init_model)
        per_epoch.append((int(res.cycles), int(words.size) * config.W))
        return res

    res = be.train_engine(prepared, opts, progress, runner=runner, config=build.config,
                          caps=build.caps, backend="golden", store_depth=build.store_depth)
    E = len(res.mse)
    cycles = np.cumsum([c for c, _ in per_epoch]).tolist()
    engine_bits = np.cumsum([b for _, b in per_epoch]).tolist()
    store_p = int(res.extra.get("store_p") or 0)
    if store_p:
        link = [int(res.extra["link_bits"])] * E                    # uploaded once
        per = int(res.extra["store_bits"]) // E
        store = [per * (e + 1) for e in range(E)]                   # read every epoch
    else:
        link, store = engine_bits, [0] * E
    mhz = clock["clock_mhz"]
    seconds = None if not mhz else [c / (mhz * 1e6) for c in cycles]
    baud = clock["baud"]
    # the UART's floor: 10 line bits (8N1) per payload byte, no framing, no answers
    link_s = [b * 10 / 8 / baud for b in link] if baud else None
    return {
        "kind": "engine", "board": board, "quantizer": quantizer,
        "q": FULL_Q if quantizer == "full" else int(q), "seed": int(seed),
        "mode": "store" if store_p else "stream", "store_p": store_p,
        "lr": opts.lr, "lr_effective": res.extra.get("lr_effective"), "decay": opts.decay,
        "loss": [_finite(v) for v in res.mse], "cycles": [int(c) for c in cycles],
        "seconds": seconds, "fmax_mhz": clock["fmax_mhz"], "clock_mhz": mhz,
        "link_bits": [int(b) for b in link], "store_bits": [int(b) for b in store],
        "bits_moved": [int(b) for b in engine_bits],
        "link_seconds": link_s, "overflow": bool(res.extra.get("overflow")),
    }


def _full_schedule(prepared, model, settings, seed):
    """The engine's schedule of the ``full`` job: per-epoch effective lr, the order, B."""
    opts = resolve(prepared, TrainOptions(model=model, quantizer="full", bits=8,
                                          epochs=settings["epochs"], batch=settings["batch"],
                                          seed=seed, replay=False))
    ej = be.engine_job_for(prepared, opts)
    lrs = [job.effective_lr(ej.epoch_regs(e).step, ej.regs.step_shift, ej.regs.q, ej.regs.grid)
           for e in range(settings["epochs"])]
    return lrs, ej.order, opts


def numpy_sgd_run(prepared, model, seed, settings, progress=None):
    """float32 minibatch SGD with the engine's schedule: the ``full`` job's effective step per
    epoch (its registers' decay), its sample order, B gradients summed per update."""
    lrs, order, opts = _full_schedule(prepared, model, settings, seed)
    A = prepared.A.astype(np.float32)
    b = prepared.b.astype(np.float32)
    n, d = A.shape
    B = settings["batch"]
    x = np.zeros(d, dtype=np.float32)
    loss, seconds, cpu, bits, t, c = [], [], [], [], 0.0, 0.0
    for e, lr in enumerate(lrs):
        c0, t0 = time.process_time(), time.perf_counter()
        perm = np.asarray(order(n, e, seed))
        Ap, bp = A[perm], b[perm]
        g = np.float32(lr)
        if B == 1:
            for i in range(n):
                a = Ap[i]
                x -= (g * (a @ x - bp[i])) * a
        else:
            for s in range(0, n, B):
                a = Ap[s:s + B]
                x -= g * (a.T @ (a @ x - bp[s:s + B]))
        t += time.perf_counter() - t0
        c += time.process_time() - c0
        seconds.append(t)
        cpu.append(c)
        loss.append(_finite(prepared.mse(x.astype(np.float64))))
        bits.append(32 * n * (d + 1) * (e + 1))
        if progress:
            progress(e, loss[-1] if loss[-1] is not None else float("nan"))
    return {"kind": "cpu", "name": "numpy_sgd_f32", "seed": int(seed), "eta0": None,
            "loss": loss, "seconds": seconds, "cpu_seconds": cpu, "bits_moved": bits,
            "params": {"lr": lrs[0], "decay": lrs[1] / lrs[0] if len(lrs) > 1 else 1.0,
                       "batch": B, "order": "the engine's (sample_order)", "dtype": "float32"}}


def sklearn_run(prepared, model, seed, eta0, settings, progress=None):
    """scikit-learn SGD (squared loss, no penalty, no intercept: A holds the ones column),
    ``partial_fit`` once per epoch, wall time of the calls only."""
    kw = dict(loss="squared_error", penalty=None, fit_intercept=False, shuffle=True,
              learning_rate="invscaling", eta0=float(eta0), power_t=SKLEARN_POWER_T,
              random_state=np.random.RandomState(seed))
    if model == "linreg":
        est, fit_kw = SGDRegressor(**kw), {}
    else:
        est, fit_kw = SGDClassifier(**kw), {"classes": np.array([-1.0, 1.0])}
    A, b = prepared.A, prepared.b
    n, d = A.shape
    loss, seconds, cpu, bits, t, c = [], [], [], [], 0.0, 0.0
    for e in range(settings["epochs"]):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.partial_fit(A, b, **fit_kw)
        except (ValueError, FloatingPointError):       # diverged (sklearn's overflow check)
            t += time.perf_counter() - t0
            c += time.process_time() - c0
            loss.extend([None] * (settings["epochs"] - e))
            seconds.extend([t] * (settings["epochs"] - e))
            cpu.extend([c] * (settings["epochs"] - e))
            bits.extend(64 * n * (d + 1) * (k + 1) for k in range(e, settings["epochs"]))
            break
        t += time.perf_counter() - t0
        c += time.process_time() - c0
        seconds.append(t)
        cpu.append(c)
        loss.append(_finite(prepared.mse(np.ravel(est.coef_))))
        bits.append(64 * n * (d + 1) * (e + 1))
        if progress:
            progress(e, loss[-1] if loss[-1] is not None else float("nan"))
    return {"kind": "cpu", "name": "sklearn_sgd", "seed": int(seed), "eta0": float(eta0),
            "loss": loss, "seconds": seconds, "cpu_seconds": cpu, "bits_moved": bits,
            "params": {"estimator": type(est).__name__, "learning_rate": "invscaling",
                       "power_t": SKLEARN_POWER_T, "eta0": float(eta0), "dtype": "float64"}}


def lstsq_run(prepared, seed):
    """The direct solver: ``numpy.linalg.lstsq`` on the prepared data (the optimum)."""
    c0, t0 = time.process_time(), time.perf_counter()
    x = prepared.least_squares(0.0)
    t, c = time.perf_counter() - t0, time.process_time() - c0
    n, d = prepared.A.shape
    return {"kind": "cpu", "name": "lstsq", "seed": int(seed), "eta0": None,
            "loss": [_finite(prepared.mse(x))], "seconds": [t], "cpu_seconds": [c],
            "bits_moved": [64 * n * (d + 1)], "params": {"solver": "numpy.linalg.lstsq"}}


def attach_targets(r: dict, opt: float, targets) -> dict:
    """Set a run's ``time_to_target`` (and, engine: ``epochs_to_target``, ``cycles_to_target``,
    ``time_to_target_with_link``; CPU: ``time_to_target_process``) for ``targets``."""
    r["time_to_target"] = _targets(r["loss"], r["seconds"], opt, targets)
    if r["kind"] == "engine":
        r["epochs_to_target"] = _targets(r["loss"], list(range(1, len(r["loss"]) + 1)), opt,
                                         targets)
        r["cycles_to_target"] = {k: (None if e is None else r["cycles"][int(e) - 1])
                                 for k, e in r["epochs_to_target"].items()}
        with_link = None
        if r["seconds"] is not None and r.get("link_seconds") is not None:
            with_link = [s + ls for s, ls in zip(r["seconds"], r["link_seconds"])]
        r["time_to_target_with_link"] = _targets(r["loss"], with_link, opt, targets)
    else:
        r["time_to_target_process"] = _targets(r["loss"], r.get("cpu_seconds"), opt, targets)
    return r


def _key(r):
    if r["kind"] == "engine":
        return ("engine", r["board"], r["quantizer"], int(r["q"]), int(r["seed"]))
    return ("cpu", r["name"], r.get("eta0"), int(r["seed"]))


def _group_key(r):
    k = _key(r)
    return k[:-1]


def _label(gk):
    if gk[0] == "engine":
        _, board, quant, q = gk
        return f"{board} {quant}" + ("" if quant == "full" else f" q={q}")
    _, name, eta = gk
    return name if eta is None else f"{name} eta0={eta:.3g}"


# -- summaries ---------------------------------------------------------------------------------

def summarize(ds: dict, targets) -> None:
    """Fill ``ds["summary"]`` (mean and spread over seeds per group), ``ds["cpu_grid"]`` (the
    scikit-learn step chosen) and ``ds["speedup"]`` from ``ds["runs"]``."""
    groups = {}
    for r in ds["runs"]:
        if "error" in r:
            continue
        groups.setdefault(_group_key(r), []).append(r)
    summary = []
    for gk, rs in groups.items():
        E = min(len(r["loss"]) for r in rs)
        L = np.array([[np.nan if v is None else v for v in r["loss"][:E]] for r in rs])
        with np.errstate(all="ignore"):
            mean = np.nanmean(L, axis=0) if np.isfinite(L).any() else np.full(E, np.nan)
            std = np.nanstd(L, axis=0) if np.isfinite(L).any() else np.full(E, np.nan)
        diverged = ~np.isfinite(L).all(axis=1)
        secs = None
        if all(r.get("seconds") is not None for r in rs):
            secs = np.mean([r["seconds"][:E] for r in rs], axis=0).tolist()
        g = {"kind": gk[0], "label": _label(gk), "seeds": len(rs),
             "diverged": int(diverged.sum()),
             "loss_mean": [None if diverged.any() else _finite(v) for v in mean],
             "loss_std": [_finite(v) for v in std],
             "loss_min": [_finite(v) for v in np.nanmin(L, axis=0)] if not diverged.all() else None,
             "loss_max": [None if diverged.any() else _finite(v) for v in np.nanmax(L, axis=0)],
             "seconds": secs}
        if gk[0] == "engine":
            g.update(board=gk[1], quantizer=gk[2], q=gk[3],
                     cycles=rs[0]["cycles"][:E], bits_moved=rs[0]["bits_moved"][:E],
                     link_bits=rs[0]["link_bits"][:E], store_bits=rs[0]["store_bits"][:E],
                     link_seconds=rs[0].get("link_seconds"), mode=rs[0]["mode"])
        else:
            g.update(name=gk[1], eta0=gk[2], bits_moved=rs[0]["bits_moved"][:E])
        ttt, spread = {}, {}
        for k in targets:
            ts = [r["time_to_target"].get(k) for r in rs]
            reached = [t for t in ts if t is not None]
            ttt[k] = statistics.fmean(reached) if reached and len(reached) == len(ts) else None
            spread[k] = {"min": min(reached) if reached else None,
                         "max": max(reached) if reached else None,
                         "reached": len(reached), "of": len(ts)}
            if gk[0] == "engine":
                es = [r["epochs_to_target"].get(k) for r in rs]
                spread[k]["epochs"] = es
        g["time_to_target"], g["time_to_target_spread"] = ttt, spread
        extra = "time_to_target_with_link" if gk[0] == "engine" else "time_to_target_process"
        g[extra] = {k: (statistics.fmean(v) if v and all(t is not None for t in v) else None)
                    for k in targets for v in [[(r.get(extra) or {}).get(k) for r in rs]]}
        summary.append(g)
    # the scikit-learn step: the eta0 with the lowest mean final loss (diverged: worst)
    sk = [g for g in summary if g.get("name") == "sklearn_sgd"]
    chosen = None
    if sk:
        def final(g):
            v = g["loss_mean"][-1] if g["loss_mean"] else None
            return (v is None, v if v is not None else 0.0, g["eta0"])
        chosen = min(sk, key=final)["eta0"]
        ds["cpu_grid"] = {"sklearn_sgd": {
            "eta0": [g["eta0"] for g in sorted(sk, key=lambda g: g["eta0"])],
            "final_loss_mean": [g["loss_mean"][-1] if g["loss_mean"] else None
                                for g in sorted(sk, key=lambda g: g["eta0"])],
            "chosen": chosen, "rule": "lowest mean final loss over seeds"}}
    for g in summary:
        g["chosen"] = g.get("name") != "sklearn_sgd" or g["eta0"] == chosen
    summary.sort(key=lambda g: (g["kind"], g.get("board") or "", g.get("quantizer") or "",
                                g.get("q") or 0, g.get("name") or "", g.get("eta0") or 0))
    ds["summary"] = summary
    ds["speedup"] = _speedups(ds, summary, targets)


def _best(groups, k, field="time_to_target"):
    """(time, label) of the fastest group to target ``k``; groups tied with it (same time to
    1e-9, e.g. quantizers with the same cycles per epoch reaching it in the same epochs) are
    all named, joined by " = "."""
    ok = [(g[field][k], g) for g in groups if (g.get(field) or {}).get(k) is not None]
    if not ok:
        return None, None
    t = min(v for v, _ in ok)
    return t, " = ".join(g["label"] for v, g in ok if v <= t * (1 + 1e-9))


def _speedups(ds, summary, targets):
    out = {}
    cpu = [g for g in summary if g["kind"] == "cpu" and g["name"] in CPU_SGD and g["chosen"]]
    direct = [g for g in summary if g["kind"] == "cpu" and g["name"] == "lstsq"]
    for board in ds["boards"]:
        eng = [g for g in summary if g["kind"] == "engine" and g["board"] == board]
        if not eng:
            continue
        qbit = [g for g in eng if g["quantizer"] != "full"]
        full = [g for g in eng if g["quantizer"] == "full"]
        s = {"vs_32bit": {}, "vs_cpu_sgd": {}, "vs_cpu_sgd_with_link": {},
             "vs_cpu_sgd_process_time": {}, "vs_lstsq": {}, "best_q": {}, "best_run": {},
             "best_cpu_sgd": {}}
        for k in targets:
            tq, gq = _best(qbit, k)
            tf = full[0]["time_to_target"].get(k) if full else None
            s["vs_32bit"][k] = tf / tq if tq and tf else None
            s["best_q"][k] = gq
            tb, gb = _best(eng, k)
            tc, gc = _best(cpu, k)
            s["vs_cpu_sgd"][k] = tc / tb if tb and tc else None
            s["best_run"][k] = gb
            s["best_cpu_sgd"][k] = gc
            tl, _ = _best(eng, k, "time_to_target_with_link")
            s["vs_cpu_sgd_with_link"][k] = tc / tl if tl and tc else None
            tp, _ = _best(cpu, k, "time_to_target_process")
            s["vs_cpu_sgd_process_time"][k] = tp / tb if tb and tp else None
            td = direct[0]["time_to_target"].get(k) if direct else None
            s["vs_lstsq"][k] = td / tb if tb and td else None
        out[board] = s
    return out


# -- plots -------------------------------------------------------------------------------------

def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_QCOLORS = {1: "tab:pink", 2: "tab:red", 3: "tab:brown", 4: "tab:orange", 5: "tab:olive",
            6: "tab:cyan", 7: "tab:purple", 8: "tab:blue", FULL_Q: "black"}
_QSTYLE = {"double": "-", "naive": "--", "deterministic": ":", "full": "-"}
_CPU_STYLE = {"sklearn_sgd": ("tab:green", "-."), "numpy_sgd_f32": ("tab:gray", "-."),
              "lstsq": ("k", "")}


def _ratio(v, opt):
    """v / opt, or None when either is missing or the optimum is not positive (an
    interpolating problem: n <= d)."""
    if v is None or opt is None or not opt > 0:
        return None
    return v / opt


def _excess(loss, opt):
    """loss / optimum - 1, floored at 1e-7 for the log axis (None: diverged or no positive
    optimum)."""
    return [np.nan if _ratio(v, opt) is None else max(v / opt - 1.0, 1e-7) for v in loss]


def _curves(ax, ds, board, x_of, cpu=True):
    opt = ds["optimum"]
    for g in ds["summary"]:
        if g["loss_mean"] is None or not g["chosen"]:
            continue
        if g["kind"] == "engine":
            if g["board"] != board:
                continue
            x = x_of(g)
            if x is None:
                continue
            ax.plot(x, _excess(g["loss_mean"], opt), color=_QCOLORS.get(g["q"], "tab:blue"),
                    ls=_QSTYLE.get(g["quantizer"], "-"), marker=".", ms=3,
                    lw=2 if g["quantizer"] == "full" else 1.2,
                    label=(g["quantizer"] + ("" if g["q"] == FULL_Q else f" q={g['q']}")
                           + (" (32-bit)" if g["q"] == FULL_Q else "")))
        elif cpu:
            x = x_of(g)
            if x is None:
                continue
            color, ls = _CPU_STYLE.get(g["name"], ("k", "-"))
            if g["name"] == "lstsq":          # exact: a vertical line at its cost
                ax.axvline(x[-1], color=color, ls="--", lw=1,
                           label="CPU lstsq (the optimum itself)")
            else:
                ax.plot(x, _excess(g["loss_mean"], opt), color=color, ls=ls, marker=".",
                        ms=3, label=f"CPU {g['name']}")
    for k in ds["targets"]:
        ax.axhline(float(k), color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)


def plot_dataset(ds: dict, folder) -> list:
    """Three PNGs for one dataset in ``folder``; returns their paths."""
    boards = [b for b in ds["boards"] if any(g.get("board") == b for g in ds["summary"])]
    nb = max(1, len(boards))
    name = ds["name"]
    paths = []

    # 1. loss vs seconds (board seconds for the engine, wall seconds for the CPU)
    fig = Figure(figsize=(6.4 * nb, 4.6), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, nb, squeeze=False)[0])
    for ax, board in zip(axes, boards or [None]):
        clk = ds["board_clocks"].get(board, {}) if board else {}
        _curves(ax, ds, board, lambda g: g["seconds"])
        ax.set_xlabel("seconds (engine: cycles / %s; CPU: wall)"
                      % (f"{clk.get('clock_mhz')} MHz" if clk.get("clock_mhz")
                         else "no clock"))
        ax.set_ylabel("training MSE / optimum - 1")
        ax.set_title(f"{name}: {board}" + ("" if clk.get("clock_mhz") else
                                           " (no board seconds)"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(_save(fig, os.path.join(folder, f"{name}_loss_seconds.png")))

    # 2. loss vs bits moved: into the engine; and over the link plus out of the store
    fig = Figure(figsize=(6.4 * nb, 8.4), dpi=100)
    axes = fig.subplots(2, nb, squeeze=False)
    for j, board in enumerate(boards or [None]):
        _curves(axes[0, j], ds, board, lambda g: g.get("bits_moved"))
        axes[0, j].set_xlabel("bits into the engine (CPU: float bits read)")
        axes[0, j].set_title(f"{name}: {board}, engine input stream")
        _curves(axes[1, j], ds, board,
                lambda g: ([a + b for a, b in zip(g["link_bits"], g["store_bits"])]
                           if g["kind"] == "engine" else None), cpu=False)
        axes[1, j].set_xlabel("link bits + store bits read")
        axes[1, j].set_title(f"{name}: {board}, link + sample store")
        for i in range(2):
            axes[i, j].set_ylabel("training MSE / optimum - 1")
            if axes[i, j].get_legend_handles_labels()[0]:
                axes[i, j].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(_save(fig, os.path.join(folder, f"{name}_loss_bits.png")))

    # 3. time to target: bars per q (one per quantizer), the 32-bit and the CPU beside
    targets = ds["targets"]
    fig = Figure(figsize=(5.2 * len(targets), 3.8 * nb), dpi=100)
    axes = fig.subplots(nb, len(targets), squeeze=False)
    have = {(g["quantizer"], g["q"]) for g in ds["summary"] if g["kind"] == "engine"}
    quants = [q for q in ("double", "naive", "deterministic") if any(h[0] == q for h in have)]
    qs = sorted({h[1] for h in have if h[0] != "full"})
    for i, board in enumerate(boards or [None]):
        for j, k in enumerate(targets):
            ax = axes[i, j]
            eng = {(g["quantizer"], g["q"]): g for g in ds["summary"]
                   if g["kind"] == "engine" and g["board"] == board}
            width = 0.8 / max(1, len(quants))
            ymax = 0.0
            for t, quant in enumerate(quants):
                xs, hs, err, miss = [], [], [[], []], []
                for xi, q in enumerate(qs):
                    g = eng.get((quant, q))
                    v = g["time_to_target"].get(k) if g else None
                    pos = xi + (t - (len(quants) - 1) / 2) * width
                    if v is None:
                        miss.append(pos)
                    else:
                        xs.append(pos)
                        hs.append(v)
                        sp = g["time_to_target_spread"][k]
                        err[0].append(v - sp["min"])
                        err[1].append(sp["max"] - v)
                        ymax = max(ymax, v)
                ax.bar(xs, hs, width, color=f"C{t}", label=quant, yerr=err, capsize=2,
                       error_kw={"lw": 0.8})
                for pos in miss:
                    ax.text(pos, 0.02, "x", ha="center", va="bottom", color=f"C{t}",
                            fontsize=10, transform=ax.get_xaxis_transform())
            extra = []
            if ("full", FULL_Q) in eng:
                extra.append(("32-bit", eng[("full", FULL_Q)], "k"))
            for g in ds["summary"]:
                if g["kind"] == "cpu" and g["chosen"]:
                    color, _ = _CPU_STYLE.get(g["name"], ("k", ""))
                    extra.append((f"CPU {g['name']}", g, color))
            for m, (lab, g, color) in enumerate(extra):
                pos = len(qs) + m
                v = g["time_to_target"].get(k)
                if v is None:
                    ax.text(pos, 0.02, "x", ha="center", va="bottom", color=color,
                            fontsize=10, transform=ax.get_xaxis_transform())
                else:
                    sp = g["time_to_target_spread"][k]
                    ax.bar([pos], [v], 0.6, color=color, alpha=0.6,
                           yerr=[[v - sp["min"]], [sp["max"] - v]], capsize=2,
                           error_kw={"lw": 0.8})
                    ymax = max(ymax, v)
            ax.set_xticks(list(range(len(qs) + len(extra))),
                          [f"q={q}" for q in qs] + [e[0] for e in extra], rotation=30,
                          fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("seconds to target (x: not reached;\nbars: seed mean, min..max)",
                          fontsize=8)
            ax.set_title(f"{name}: {board}, loss <= (1 + {k}) optimum", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    paths.append(_save(fig, os.path.join(folder, f"{name}_time_to_target.png")))
    return paths


def scaling_table(datasets_) -> list:
    """Per dataset and engine group (board, quantizer, q) or chosen CPU run: n, d, cycles and
    seconds per epoch (the mean over the run's epochs). The scaling curve of
    ``--synthetic N,D,SEED`` sets of several D: the engine's cost is data independent, so one
    epoch measures it."""
    rows = []
    for ds in datasets_:
        for g in ds.get("summary", []):
            if not g.get("chosen", True) or (g["kind"] == "cpu" and g["name"] == "lstsq"):
                continue
            E = len(g["loss_mean"] or g["loss_std"] or [])
            if not E:
                continue
            row = {"dataset": ds["name"], "n": ds["n"], "d": ds["d"], "kind": g["kind"],
                   "label": g["label"], "epochs": E,
                   "seconds_per_epoch": None if g["seconds"] is None else g["seconds"][-1] / E}
            if g["kind"] == "engine":
                row.update(board=g["board"], quantizer=g["quantizer"], q=g["q"],
                           mode=g["mode"], cycles_per_epoch=g["cycles"][-1] / E,
                           cycles_per_sample=g["cycles"][-1] / E / ds["n"])
            else:
                row.update(name=g["name"])
            rows.append(row)
        for s in ds.get("skipped", []):
            rows.append({"dataset": ds["name"], "n": ds["n"], "d": ds["d"], "kind": "skipped",
                         "board": s["board"], "reason": s["reason"]})
        for r in ds.get("runs", []):
            if "error" in r and r["kind"] == "engine":
                rows.append({"dataset": ds["name"], "n": ds["n"], "d": ds["d"],
                             "kind": "failed", "board": r["board"],
                             "quantizer": r["quantizer"], "q": r["q"], "reason": r["error"]})
    return rows


def plot_scaling(rows, path):
    """Cycles per sample and seconds per epoch against d (log-log), a line per board,
    quantizer and q, the CPU's seconds beside."""
    fig = Figure(figsize=(12.8, 4.8), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    eng = {}
    for r in rows:
        if r["kind"] == "engine":
            eng.setdefault((r["board"], r["quantizer"], r["q"]), []).append(r)
        elif r["kind"] == "cpu":
            eng.setdefault(("CPU", r["name"], None), []).append(r)
    boards = sorted({k[0] for k in eng if k[0] != "CPU"})
    styles = dict(zip(boards, ("-", "--", "-.", ":")))
    marks = {"double": "o", "naive": "s", "deterministic": "^", "full": "D"}
    for (board, quant, q), rs in sorted(eng.items(), key=str):
        rs = sorted(rs, key=lambda r: r["d"])
        ds_ = [r["d"] for r in rs]
        if board == "CPU":
            color, ls = _CPU_STYLE.get(quant, ("k", "-"))
            ax2.plot(ds_, [r["seconds_per_epoch"] for r in rs], color=color, ls="-.",
                     marker="x", label=f"CPU {quant} (wall)")
            continue
        lab = f"{board} {quant}" + ("" if quant == "full" else f" q={q}")
        kw = dict(color=_QCOLORS.get(q, "tab:blue"), ls=styles.get(board, "-"),
                  marker=marks.get(quant, "."), ms=4, label=lab)
        ax1.plot(ds_, [r["cycles_per_sample"] for r in rs], **kw)
        if all(r["seconds_per_epoch"] is not None for r in rs):
            ax2.plot(ds_, [r["seconds_per_epoch"] for r in rs], **kw)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("d (features, intercept included)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    n = sorted({r["n"] for r in rows})
    ax1.set_ylabel("engine cycles per sample per epoch")
    ax1.set_title(f"cycles per sample (n = {', '.join(map(str, n))})", fontsize=9)
    ax2.set_ylabel("seconds per epoch (board: cycles / clock)")
    ax2.set_title("seconds per epoch, board and CPU", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# -- the experiment ----------------------------------------------------------------------------

def _csv(s, conv, what):
    out = []
    for part in str(s).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(conv(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {part!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return out


def _targets_arg(s):
    ks = _csv(s, str, "target")
    for k in ks:
        try:
            v = float(k)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a target is a number, got {k!r}") from None
        if not (math.isfinite(v) and v >= 0):
            raise argparse.ArgumentTypeError(f"a target is >= 0, got {k!r}")
    return ks


def _synthetic_arg(s):
    parts = _csv(s, int, "synthetic size")
    if len(parts) != 3 or parts[0] < 2 or parts[1] < 1 or parts[2] < 0:
        raise argparse.ArgumentTypeError(f"--synthetic is N,D,SEED (N >= 2, D >= 1), got {s!r}")
    return tuple(parts)


def build_parser():
    p = _Parser(prog="zipml experiment",
                description="time and bits to reach the least-squares loss: the engine's q-bit "
                            "and 32-bit modes on each board (golden + cycle model) and the CPU")
    p.add_argument("data", nargs="*", metavar="DATA",
                   help="bundled dataset names or svmlight files")
    p.add_argument("--bits", type=lambda s: _csv(s, int, "q"), default=[2, 4, 8],
                   help="q values, 1..8 (2,4,8)")
    p.add_argument("--quantizers", type=lambda s: _csv(s, str, "quantizer"),
                   default=list(QUANTIZERS),
                   help="(double,naive,deterministic,full); full runs once per board, 32-bit")
    p.add_argument("--board", type=lambda s: _csv(s, str, "board"), default=sorted(BOARDS),
                   help="boards whose engine to run (%s)" % ",".join(sorted(BOARDS)))
    p.add_argument("--epochs", type=_int(1), default=20, help="epochs per run (20)")
    p.add_argument("--targets", type=_targets_arg, default=["0.01", "0.05"],
                   help="epsilons: time until loss <= (1+eps) optimum (0.01,0.05)")
    p.add_argument("--seeds", type=_int(1), default=3, help="seeds 0..K-1 per run (3)")
    p.add_argument("--synthetic", type=_synthetic_arg, action="append", default=[],
                   metavar="N,D,SEED", help="add a synthetic regression set (repeatable)")
    p.add_argument("--batch", type=_int(1), default=1, help="minibatch B (1)")
    p.add_argument("--stream", action="store_true",
                   help="stream the q-bit runs too (default: store mode where the data fits "
                        "the board's store; full always streams)")
    p.add_argument("--clock", choices=("pll", "fmax"), default="pll",
                   help="board seconds at the build's PLL clock (what the bitstream runs at; "
                        "default) or at its reported Fmax")
    p.add_argument("--reports", default=str(DEFAULT_REPORTS), metavar="DIR",
                   help="folder of the build reports build_<board>.json (results/)")
    p.add_argument("--json", required=True, metavar="PATH", help="the report")
    p.add_argument("--plots", required=True, metavar="DIR", help="folder of the PNGs")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --json (failed ones are retried)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--claim", type=lambda s: _csv(s, str, "claim"), default=[],
                   help="tags naming what the report shows (a,b,c,d,datasets,scaling: the "
                        "sections of `zipml experiment report`)")
    return p


def _check_args(args):
    if not args.data and not args.synthetic:
        raise ValueError("give a dataset (DATA or --synthetic N,D,SEED)")
    for q in args.bits:
        if not 1 <= q <= 8:
            raise ValueError(f"--bits: the engine quantizes to 1..8 bits, got {q}")
    for qz in args.quantizers:
        if qz not in QUANTIZERS:
            raise ValueError(f"--quantizers: unknown {qz!r} (choose from "
                             f"{', '.join(QUANTIZERS)})")
    for b in args.board:
        if b not in BOARDS:
            raise ValueError(f"--board: unknown {b!r} (choose from {', '.join(sorted(BOARDS))})")
    for spec in args.data:              # bad names and missing files before any run
        if not os.path.exists(spec) and spec not in datasets.BUNDLED:
            datasets.load(spec)         # raises the loader's one-line error
    if os.path.isdir(args.json):
        raise ValueError(f"--json {args.json} is a directory")
    if os.path.exists(args.plots) and not os.path.isdir(args.plots):
        raise ValueError(f"--plots {args.plots} is not a directory")


def _datasets(args):
    for spec in args.data:
        yield spec, (lambda spec=spec: datasets.load(spec))
    for n, d, seed in args.synthetic:
        yield f"synthetic:{n},{d},{seed}", (lambda n=n, d=d, seed=seed: synthetic(n, d, seed))


def run_experiment(args, argv) -> dict:
    _check_args(args)
    settings = {"bits": sorted(set(args.bits)), "quantizers": list(dict.fromkeys(args.quantizers)),
                "epochs": args.epochs, "seeds": args.seeds, "batch": args.batch,
                "stream": bool(args.stream), "clock": args.clock, "lam": 0.0,
                "sklearn_eta_factors": list(SKLEARN_ETA_FACTORS),
                "sklearn_power_t": SKLEARN_POWER_T}
    same = ("epochs", "batch", "stream", "clock", "lam", "sklearn_eta_factors")
    doc = None
    if args.resume and os.path.exists(args.json):
        try:
            with open(args.json) as f:
                doc = json.load(f)
            doc["datasets"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--resume: {args.json} is not an experiment report: {exc}") from None
    if doc is None:
        doc = {"datasets": []}
    doc.update({"experiment": "engine", "commit": _commit(), "dirty_files": _dirty_files(),
                "command": "zipml experiment " + shlex.join(argv),
                "claims": list(dict.fromkeys([*doc.get("claims", []), *args.claim])),
                "settings": settings,
                "host": {"python": platform.python_version(), "machine": platform.machine(),
                         "cpu": _cpu_model(), "cpus": os.cpu_count(),
                         "load_average_start": list(os.getloadavg())}})
    clocks = {b: board_clock(b, args.reports, args.clock) for b in args.board}
    doc["board_clocks"] = clocks
    for b, c in clocks.items():
        if c["reason"]:
            _say(f"{b}: {c['reason']}", args.quiet)
    by_name = {d["name"]: d for d in doc["datasets"]}
    targets = list(args.targets)

    def save():
        doc["load_average_end"] = list(os.getloadavg())
        write_json(args.json, doc)

    for spec, load in _datasets(args):
        ds_obj = load()
        model = "linreg" if ds_obj.task == "regression" else "lssvm"
        prepared = prepare(ds_obj.X, ds_obj.y, ds_obj.task, name=ds_obj.name)
        prior = by_name.get(ds_obj.name)
        if prior is not None:
            old = prior.get("settings", {})
            diff = [k for k in same if old.get(k) != settings[k]]
            if diff:
                raise ValueError(f"--resume: {args.json} has {ds_obj.name} with "
                                 + ", ".join(f"{k}={old.get(k)!r}" for k in diff)
                                 + "; this run asks for "
                                 + ", ".join(f"{k}={settings[k]!r}" for k in diff)
                                 + ": write another --json")
        ds = prior if prior is not None else {"name": ds_obj.name, "runs": []}
        if prior is None:
            doc["datasets"].append(ds)
            by_name[ds["name"]] = ds
        opt = prepared.optimum_mse(0.0)
        ds.update({"source": spec, "n": prepared.n, "d": prepared.d, "task": ds_obj.task,
                   "model": model, "optimum": opt, "optimum_solver": "numpy.linalg.lstsq",
                   "targets": targets, "settings": settings,
                   "boards": list(dict.fromkeys([*ds.get("boards", []), *args.board])),
                   "board_clocks": {**ds.get("board_clocks", {}),
                                    **{b: clocks[b] for b in args.board}}})
        ds["runs"] = [attach_targets(r, opt, targets)            # failed runs: retried
                      for r in ds["runs"] if "error" not in r]
        done = {_key(r) for r in ds["runs"]}
        skipped = []
        jobs = []
        for board in args.board:
            why = board_refusal(prepared, be.board_build(board), args.batch)
            if why:
                skipped.append({"board": board, "reason": why})
                _say(f"{ds['name']}: {board} skipped: {why}", args.quiet)
                continue
            for quant in settings["quantizers"]:
                for q in ([FULL_Q] if quant == "full" else settings["bits"]):
                    for seed in range(args.seeds):
                        jobs.append(("engine", board, quant, q, seed))
        ds["skipped"] = skipped
        lr_full = None
        for seed in range(args.seeds):
            jobs.append(("cpu", "numpy_sgd_f32", None, None, seed))
            for f in SKLEARN_ETA_FACTORS:
                jobs.append(("cpu", "sklearn_sgd", f, None, seed))
            jobs.append(("cpu", "lstsq", None, None, seed))
        for kind, a, b, q, seed in jobs:
            if kind == "engine":
                key = ("engine", a, b, int(q), seed)
                desc = f"{ds['name']} {_label(key[:-1])} seed {seed}"
            else:
                if a == "sklearn_sgd":
                    if lr_full is None:
                        lr_full = default_lr(prepared, TrainOptions(
                            model=model, quantizer="full", batch=args.batch))
                    eta = float(b) * lr_full
                else:
                    eta = None
                key = ("cpu", a, eta, seed)
                desc = f"{ds['name']} CPU {_label(key[:-1])} seed {seed}"
            if key in done:
                continue
            E = 1 if a == "lstsq" else args.epochs
            bar = _Bar(E, desc, args.quiet)
            t0 = time.perf_counter()
            try:
                if kind == "engine":
                    r = engine_run(prepared, model, a, b, q, seed, settings, clocks[a], bar)
                elif a == "numpy_sgd_f32":
                    r = numpy_sgd_run(prepared, model, seed, settings, bar)
                elif a == "sklearn_sgd":
                    r = sklearn_run(prepared, model, seed, eta, settings, bar)
                else:
                    r = lstsq_run(prepared, seed)
            except Exception as exc:          # a failing run is reported, the others go on
                r = ({"kind": "engine", "board": a, "quantizer": b, "q": int(q), "seed": seed}
                     if kind == "engine" else
                     {"kind": "cpu", "name": a, "eta0": eta, "seed": seed})
                r["error"] = f"{type(exc).__name__}: {exc}"
                _say(f"{desc}: FAILED {r['error']}", args.quiet)
            finally:
                bar.close()
            r["wall_seconds"] = round(time.perf_counter() - t0, 3)
            if "error" not in r:
                attach_targets(r, opt, targets)
                last = r["loss"][-1]
                rel = _ratio(last, opt)
                _say(f"{desc}: loss/optimum {'diverged' if last is None else rel and f'{rel:.4f}'}",
                     args.quiet)
            ds["runs"].append(r)
            summarize(ds, targets)
            save()
        summarize(ds, targets)
        save()
    # plots of every dataset in the report
    os.makedirs(args.plots, exist_ok=True)
    doc["plots"] = {}
    for ds in doc["datasets"]:
        if "summary" not in ds:
            continue
        doc["plots"][ds["name"]] = [os.path.relpath(p, os.path.dirname(os.path.abspath(args.json)))
                                    for p in plot_dataset(ds, args.plots)]
    doc["scaling"] = scaling_table(doc["datasets"])
    if len({row["d"] for row in doc["scaling"]}) >= 2:
        doc["plots"]["scaling"] = [os.path.relpath(
            plot_scaling(doc["scaling"], os.path.join(args.plots, "scaling.png")),
            os.path.dirname(os.path.abspath(args.json)))]
    save()
    return doc


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _print_summary(doc):
    for ds in doc["datasets"]:
        print(f"{ds['name']}: n={ds['n']} d={ds['d']} {ds['model']}, optimum MSE "
              f"{ds['optimum']:.6g}")
        for s in ds.get("skipped", []):
            print(f"  {s['board']}: skipped ({s['reason']})")
        for board, s in ds.get("speedup", {}).items():
            for k in ds["targets"]:
                def f(v):
                    return "-" if v is None else f"{v:.3g}x"
                print(f"  {board} eps={k}: best q-bit ({s['best_q'][k] or '-'}) vs 32-bit "
                      f"{f(s['vs_32bit'][k])}; board ({s['best_run'][k] or '-'}) vs CPU SGD "
                      f"({s['best_cpu_sgd'][k] or '-'}) {f(s['vs_cpu_sgd'][k])} (CPU process "
                      f"time {f(s['vs_cpu_sgd_process_time'][k])}, board with the UART link "
                      f"{f(s['vs_cpu_sgd_with_link'][k])}), vs lstsq {f(s['vs_lstsq'][k])}")
        failed = [r for r in ds["runs"] if "error" in r]
        if failed:
            print(f"  {len(failed)} run(s) failed (see 'error' in the JSON)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    doc = run_experiment(args, argv)
    _print_summary(doc)
    print(f"wrote {args.json} and the plots in {args.plots}")
    return 0
