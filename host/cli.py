"""The ``zipml`` command: train, predict, demo, bench, build, flash (docs/cli.md).

Bad input (missing or malformed file, NaN/inf, labels that are not +-1 for a classifier, an
option out of range, an unavailable backend) prints one line ``zipml: error: ...`` on stderr
and exits with code 2 (a failing device, link or toolchain: one line, exit code 1), without a traceback and without writing anything: the JSON and the plot
are written only after training succeeded, each atomically (temporary file + rename).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np
from tqdm import tqdm

from zipml.hw.boards import BOARDS

from ..reference.order import ORDERS
from . import backends, datasets
from .backends import BACKENDS, BackendUnavailable
from .device import board_baud
from .problem import (GRIDS, LEVELS, MODELS, PRECONDITIONS, QUANTIZERS, TrainOptions, prepare,
                      resolve, task_of)
from ..reference.files import source_commit
from .files import write_json

__all__ = ["main", "build_parser", "run_train", "result_json"]

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
#: --strict: the engine saturated or training diverged (the results are still written)
EXIT_NUMERIC = 3


class UsageError(ValueError):
    """Bad input the user can fix: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block before its error; one line is easier to read and
    # to test, and `zipml train -h` still shows the usage
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _int(lo=None, hi=None):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {v}")
        return v
    return parse


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def _nonneg_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _add_train_options(p, defaults=True):
    p.add_argument("--model", choices=MODELS, default="linreg",
                   help="loss: linreg (squared), lssvm (squared on +-1, L2), svm (hinge), "
                        "logistic (default linreg)")
    p.add_argument("--bits", "-q", type=_int(1, 32), default=8,
                   help="bits per quantized value, 1..32 (engine backends: 1..8; default 8)")
    p.add_argument("--quantizer", choices=QUANTIZERS, default="double",
                   help="double (unbiased), naive, deterministic, full (default double)")
    p.add_argument("--grid", choices=GRIDS, default="floor",
                   help="floor: 2^q+1 levels with 0, copies share the floor t (q+2 bits per "
                        "double-sampled value); symmetric: 2^q levels, no 0 (default floor; "
                        "docs/engine.md)")
    p.add_argument("--levels", choices=LEVELS, default="uniform",
                   help="uniform grid or variance-optimal levels (reference only)")
    p.add_argument("--epochs", type=_int(1), default=10, help="passes over the data (10)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="step size in scaled units (default: from the data's max row norm)")
    p.add_argument("--batch", type=_int(1), default=1, help="minibatch size B (1)")
    p.add_argument("--seed", type=_int(0), default=0, help="shuffle and rounding seed (0)")
    p.add_argument("--lam", type=_nonneg_float, default=0.0, help="L2 regularization (0)")
    p.add_argument("--decay", type=float, default=None,
                   help="per-epoch step multiplier in (0, 1] (default: down to 1e-3 at the end)")
    p.add_argument("--no-intercept", dest="intercept", action="store_false",
                   help="no constant feature (the model passes through the origin)")
    p.add_argument("--precondition", choices=PRECONDITIONS, default="whiten",
                   help="feature preprocessing before max-abs scaling (default whiten: "
                        "decorrelate, docs/reference.md)")
    p.add_argument("--q-model", type=_int(1, 32), default=None,
                   help="end-to-end: round the model to this many bits (reference)")
    p.add_argument("--q-grad", type=_int(1, 32), default=None,
                   help="end-to-end: round the gradient to this many bits (reference)")
    p.add_argument("--degree", type=_int(1, 15), default=7,
                   help="Chebyshev degree for svm/logistic with double (7)")
    p.add_argument("--refetch", action="store_true",
                   help="svm/logistic: refetch full precision near the decision boundary")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replay", action="store_const", const=True, default=None,
                      help="store mode (golden, rtl, sim, board): upload the data once at "
                           "--store-bits, the board draws fresh codes every epoch "
                           "(docs/store.md); the default whenever the data fits the store")
    mode.add_argument("--stream", dest="replay", action="store_const", const=False,
                      help="stream every epoch over the link (host-drawn codes)")
    p.add_argument("--store-words", type=_int(1), default=None,
                   help="golden, rtl: model a sample store of N W-bit words instead of the "
                        "build's (default: the build's)")
    p.add_argument("--order", choices=tuple(ORDERS), default="shuffle",
                   help="streamed epochs: a fresh shuffle each epoch, or epoch 0's every epoch "
                        "(store mode's order; default shuffle)")
    p.add_argument("--store-bits", type=_int(1, 16), default=None,
                   help="store mode: stored precision p >= q (default: the largest up to 8 "
                        "that fits the board's store)")
    p.add_argument("--backend", choices=list(BACKENDS), default="reference",
                   help="reference (float), golden (integer model), rtl, sim, board")
    p.add_argument("--port", default=None, help="serial port of the board backend")
    p.add_argument("--baud", type=_int(1), default=None,
                   help="board: the UART rate the bitstream was built with (default: the "
                        "board's, see --board)")
    p.add_argument("--link-timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="board: how long the host waits for each answer before it resends "
                        "(default 0.5; more for a virtual board under load, zipml board-sim)")
    p.add_argument("--board", choices=sorted(BOARDS), default=None,
                   help="golden, rtl, sim: train that board's engine build (sim: at its clock "
                        "and baud); board: which board, for its default --baud (default: "
                        "golden's engine, W=32)")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="engine backends: save the model, epoch and history after every epoch")
    p.add_argument("--resume", metavar="PATH", default=None,
                   help="engine backends: go on from a checkpoint of the same data and options "
                        "up to --epochs, bit for bit as if never stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zipml", description="ZipML low-precision SGD on open FPGAs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a linear model on a dataset")
    t.add_argument("data", metavar="DATA",
                   help="a bundled dataset name or an svmlight/LIBSVM file")
    _add_train_options(t)
    t.add_argument("--json", metavar="PATH", default=None, help="write the result as JSON")
    t.add_argument("--plot", metavar="PATH", default=None, help="write the loss curve as PNG")
    t.add_argument("--strict", action="store_true",
                   help=f"exit {EXIT_NUMERIC} if the engine saturated or training diverged "
                        f"(a warning in the summary otherwise); the results are written first")

    pr = sub.add_parser("predict", help="predict with a model saved by `zipml train --json`")
    pr.add_argument("data", metavar="DATA", help="a bundled dataset name or an svmlight file")
    pr.add_argument("--from", dest="model_json", metavar="JSON", required=True,
                    help="the --json file of a training run")
    pr.add_argument("--out", metavar="PATH", default=None,
                    help="write one prediction per line (regression: value; classifiers: -1/+1)")

    d = sub.add_parser("demo", help="train a bundled real dataset, write plot and JSON")
    d.add_argument("--dataset", default="diabetes", help="bundled dataset (diabetes)")
    d.add_argument("--backend", default="reference", help="backend (reference)")
    d.add_argument("--bits", "-q", type=_int(1, 32), default=2, help="bits (2)")
    d.add_argument("--epochs", type=_int(1), default=20, help="epochs (20)")
    d.add_argument("--quantizers", default="double,naive,full",
                   help="comma-separated quantizers to compare (double,naive,full)")
    d.add_argument("--seed", type=_int(0), default=0)
    d.add_argument("--out", default=os.path.join("results", "demo"),
                   help="output folder (results/demo)")
    d.add_argument("--quiet", action="store_true")

    for name, help_ in (("bench", "benchmarks (zipml.host.bench)"),
                        ("build", "build a bitstream (zipml.hw.build)"),
                        ("flash", "program a board (zipml.hw.build)"),
                        ("experiment", "time and bits to a target loss (zipml.host.experiment)")):
        s = sub.add_parser(name, help=help_, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


# -- helpers -------------------------------------------------------------------------------------

def _check_output_path(path, what):
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise UsageError(f"--{what} {path} is a directory")
    # the folder is created on success; an existing non-folder in the way is an error now
    probe = folder
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f"--{what} {path}: cannot write into {probe}")


class _Progress:
    """Per-epoch progress: a tqdm bar on stderr (or nothing), as ``progress(epoch, mse)``."""

    def __init__(self, total, desc, quiet=False):
        self.bar = None
        if not quiet:
            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def __call__(self, epoch, mse):
        if self.bar is not None:
            self.bar.set_postfix_str(f"mse={mse:.5g}", refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def options_from_args(args):
    return TrainOptions(model=args.model, bits=args.bits, quantizer=args.quantizer,
                        levels=args.levels, epochs=args.epochs, lr=args.lr, batch=args.batch,
                        seed=args.seed, lam=args.lam, decay=args.decay,
                        intercept=args.intercept, backend=args.backend, port=args.port,
                        board=args.board, q_model=args.q_model, q_grad=args.q_grad,
                        degree=args.degree, refetch=args.refetch, replay=args.replay,
                        store_bits=args.store_bits, grid=args.grid, order=args.order,
                        store_words=args.store_words,
                        precondition=args.precondition, checkpoint=args.checkpoint,
                        resume=args.resume)


def run_train(data, options, quiet=True, dataset=None, link=None):
    """Load, prepare and train; returns (prepared, resolved options, result, seconds).

    ``link``: keywords of the board backend's serial link (``baud``;
    `zipml.host.device.train_board`), None values meaning "not given"."""
    options.validate()
    link = {k: v for k, v in (link or {}).items() if v is not None}
    if options.backend == "board":
        if not options.port:
            raise UsageError("--backend board needs --port (the board's serial port)")
        board_baud(link.get("baud"), options.board)   # a rate that cannot be chosen fails now
    elif link:
        flag = {"baud": "--baud", "timeout": "--link-timeout"}[next(iter(link))]
        raise UsageError(f"{flag} is an option of --backend board")
    backends.load(options.backend)       # fail before loading data if it is not installed
    task = task_of(options.model)
    ds = dataset if dataset is not None else datasets.load(data, task)
    if ds.task != task:
        if task == "classification":
            raise UsageError(f"--model {options.model} needs labels -1/+1; {ds.name} has "
                             f"regression targets")
        # a +-1 labelled file is a fine regression target
    prepared = prepare(ds.X, ds.y, task, intercept=options.intercept, name=ds.name,
                       precondition=options.precondition)
    resolved = resolve(prepared, options)
    progress = _Progress(resolved.epochs, f"{options.backend} {options.quantizer} "
                         f"q={options.bits}", quiet)
    t0 = time.perf_counter()
    try:
        result = backends.load(options.backend)(prepared, resolved, progress, **link)
    finally:
        progress.close()
    return prepared, resolved, result, time.perf_counter() - t0


def result_json(prepared, options, result, seconds):
    """The ``--json`` document (schema in docs/cli.md)."""
    out = {
        "mse": [float(v) for v in result.mse],
        "model": [float(v) for v in result.model],
        "model_raw": None if result.model_raw is None else [int(v) for v in result.model_raw],
        "bits": options.bits,
        "quantizer": options.quantizer,
        "backend": options.backend,
        "board": options.board,
        "epochs": options.epochs,
        "bits_moved": int(result.bits_moved),
        "grid": options.grid,
        "link_bits": int(result.extra.get("link_bits", result.bits_moved)),
        "store_bits": int(result.extra.get("store_bits", 0)),
        "cycles": None if result.cycles is None else int(result.cycles),
        "model_type": options.model,
        "dataset": prepared.name,
        "n": prepared.n,
        "d": len(result.model),
        "levels": options.levels,
        "lr": options.lr,
        "decay": options.decay,
        "batch": options.batch,
        "seed": options.seed,
        "lam": options.lam,
        "intercept": options.intercept,
        "precondition": options.precondition,
        "seconds": seconds,
    }
    if options.model in ("linreg", "lssvm"):
        opt = prepared.optimum_mse(options.lam)
        out["optimum_mse"] = opt
        out["mse_ratio"] = out["mse"][-1] / opt if opt > 0 else None
    if prepared.task == "classification":
        x = prepared.from_user(np.asarray(result.model))
        out["accuracy"] = prepared.accuracy(x)
    out["extra"] = result.extra
    out["commit"] = source_commit()
    out["overflow"] = bool(result.extra.get("overflow"))
    out["trouble"] = result.trouble()
    return out


def _summary(doc) -> str:
    # `full` ignores --bits: float64 on the reference, q = 32 fixed point on the engine
    precision = "" if doc["quantizer"] == "full" else f" q={doc['bits']}"
    board = f" ({doc['board']})" if doc["board"] else ""
    lines = [f"{doc['dataset']}: n={doc['n']} d={doc['d']} {doc['model_type']} "
             f"{doc['quantizer']}{precision} on {doc['backend']}{board}, "
             f"{doc['epochs']} epochs in {doc['seconds']:.2f} s",
             f"  final MSE {doc['mse'][-1]:.6g} (user units)"]
    if "optimum_mse" in doc:
        r = doc["mse_ratio"]
        lines.append(f"  least-squares optimum {doc['optimum_mse']:.6g}"
                     + (f"  ratio {r:.4f} ({100 * (r - 1):+.2f}%)" if r is not None else ""))
    if "accuracy" in doc:
        lines.append(f"  training accuracy {100 * doc['accuracy']:.2f}%")
    full_bits = doc["n"] * doc["epochs"] * (doc["d"]) * 32
    lines.append(f"  bits moved {doc['bits_moved']:,}"
                 + (f" ({doc['bits_moved'] / full_bits:.3f} of 32-bit floats)"
                    if full_bits else ""))
    extra = doc.get("extra") or {}
    if extra.get("store_p"):
        lines.append(f"  store mode: stored once at p = {extra['store_p']} bits "
                     f"({doc['link_bits']:,} link bits), {doc['store_bits']:,} bits read from "
                     f"the store, fresh codes drawn on the board every epoch")
    if extra.get("store_fit"):
        fit = ", ".join(f"{b} p <= {p}" if p else f"{b} does not fit"
                        for b, p in extra["store_fit"].items())
        lines.append(f"  sample store fit: {fit}")
    if doc["cycles"] is not None:
        lines.append(f"  cycles {doc['cycles']:,}")
    if doc.get("trouble"):
        lines.append(f"  WARNING: {doc['trouble']}")
    return "\n".join(lines)


# -- commands ------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    _check_output_path(args.json, "json")
    _check_output_path(args.plot, "plot")
    _check_output_path(args.checkpoint, "checkpoint")
    options = options_from_args(args)
    prepared, resolved, result, secs = run_train(args.data, options, quiet=args.quiet,
                                                 link={"baud": args.baud,
                                                       "timeout": args.link_timeout})
    doc = result_json(prepared, resolved, result, secs)
    doc["command"] = "zipml " + " ".join(args.argv)
    if args.json:
        write_json(args.json, doc)
    if args.plot:
        from .plot import plot_losses  # lazy: matplotlib, slow to import
        plot_losses(args.plot, {f"{options.quantizer} q={options.bits}": doc["mse"]},
                    doc.get("optimum_mse"),
                    title=f"{doc['dataset']} {options.model} ({options.backend})")
    print(_summary(doc))
    if doc["trouble"] and args.strict:
        sys.stderr.write(f"zipml: error: {doc['trouble']} (--strict)\n")
        return EXIT_NUMERIC
    return 0


def cmd_predict(args) -> int:
    _check_output_path(args.out, "out")
    try:
        with open(args.model_json) as f:
            doc = json.load(f)
        w = np.asarray(doc["model"], dtype=np.float64)
        model, intercept = doc["model_type"], bool(doc["intercept"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{args.model_json} is not a zipml train --json file: {exc}") from None
    task = task_of(model)
    ds = datasets.load(args.data, None)
    d = w.size - int(intercept)
    if ds.X.shape[1] > d and np.any(ds.X[:, d:]):
        raise UsageError(f"{args.data} has {ds.X.shape[1]} features, the model {d}")
    X = np.zeros((ds.X.shape[0], d))
    k = min(d, ds.X.shape[1])                 # svmlight files may omit trailing zero columns
    X[:, :k] = ds.X[:, :k]
    if not np.isfinite(X).all():
        raise UsageError(f"{args.data}: features contain NaN or inf")
    z = X @ w[:d] + (w[d] if intercept else 0.0)
    pred = np.where(z >= 0, 1.0, -1.0) if task == "classification" else z
    print(f"{ds.name}: {X.shape[0]} samples, {model} from {args.model_json}")
    if task == "classification":
        if np.isin(ds.y, (-1.0, 1.0)).all():
            print(f"  accuracy {100 * np.mean(pred == ds.y):.2f}%")
    else:
        print(f"  MSE {np.mean((z - ds.y) ** 2):.6g}")
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                np.savetxt(f, pred, fmt="%.10g")
            os.replace(tmp, args.out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return 0


def cmd_demo(args) -> int:
    quantizers = [q.strip() for q in args.quantizers.split(",") if q.strip()]
    for q in quantizers:
        if q not in QUANTIZERS:
            raise UsageError(f"unknown quantizer {q!r} in --quantizers "
                             f"(choose from {', '.join(QUANTIZERS)})")
    _check_output_path(os.path.join(args.out, "results.json"), "out")
    ds = datasets.load_bundled(args.dataset)
    model = "linreg" if ds.task == "regression" else "lssvm"
    runs, curves = [], {}
    for quant in quantizers:
        opts = TrainOptions(model=model, bits=args.bits, quantizer=quant, epochs=args.epochs,
                            seed=args.seed, backend=args.backend)
        prepared, resolved, result, secs = run_train(args.dataset, opts, quiet=args.quiet,
                                                     dataset=ds)
        doc = result_json(prepared, resolved, result, secs)
        runs.append(doc)
        if quant == "full":
            # the reference trains in float64; the engine backends run `full` as q = 32 fixed point
            label = "full (float64)" if args.backend == "reference" else "full (q=32 fixed)"
        else:
            label = f"{quant} q={args.bits}"
        curves[label] = doc["mse"]
        print(_summary(doc))
    from .plot import plot_losses  # lazy: matplotlib, slow to import
    os.makedirs(args.out, exist_ok=True)
    png = plot_losses(os.path.join(args.out, "loss.png"), curves,
                      runs[0].get("optimum_mse"),
                      title=f"{args.dataset}: {model} on {args.backend}")
    write_json(os.path.join(args.out, "results.json"), {"dataset": args.dataset, "runs": runs})
    print(f"wrote {png} and {os.path.join(args.out, 'results.json')}")
    return 0


DISPATCH = {"bench": ("zipml.host.bench", "main"),
            "board-sim": ("zipml.host.board_sim", "main"),
            "build": ("zipml.hw.build", "main"),
            "flash": ("zipml.hw.build", "flash_main"),
            "experiment": ("zipml.host.experiment", "main")}


def _dispatch(module, fn, argv):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"{module} is not available: {exc}") from None
    f = getattr(mod, fn, None)
    if f is None:
        raise UsageError(f"{module} has no {fn}()")
    return f(argv)


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C: a board job stops its engine on the way out (device.py)
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["board-sim"] or threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv) -> int:
    try:
        # bench/build/flash own their options: hand them the rest of the line untouched
        if argv and argv[0] in DISPATCH:
            module, fn = DISPATCH[argv[0]]
            return int(_dispatch(module, fn, argv[1:]) or 0)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:          # usage errors (code 2) and --help (code 0)
            return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        args.argv = argv
        if args.command == "train":
            return cmd_train(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "predict":
            return cmd_predict(args)
    except (ValueError, BackendUnavailable, OSError, FloatingPointError) as exc:
        msg = str(exc) or type(exc).__name__
        sys.stderr.write(f"zipml: error: {msg}\n")
        return EXIT_BAD_INPUT
    except RuntimeError as exc:
        # the device, the link or the toolchain failed (timeouts, Verilator, nextpnr): not the
        # user's input, so exit 1, but still one line instead of a traceback
        sys.stderr.write(f"zipml: error: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("zipml: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
