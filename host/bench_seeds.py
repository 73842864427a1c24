"""``zipml bench seeds``: how reliably a precision reaches the least-squares optimum, over seeds.

For one regression dataset (a bundled name or an svmlight file) it trains every combination of
grid, mode (``stream``: host-drawn codes every epoch; ``store``: stored once, codes drawn by the
store feed every epoch, docs/store.md), quantizer, q and seed on one backend (golden by
default) and writes, per run, the final training MSE as a multiple of the least-squares optimum
of the same prepared problem (``numpy.linalg.lstsq`` on the scaled features, intercept included),
and per combination the median and the worst of those ratios.  It measures; it asserts nothing.

    zipml bench seeds DATA [--backend golden] [--bits 2 8] [--quantizer double naive]
                           [--mode stream store] [--grid floor symmetric] [--seeds 10]
                           [--epochs 30] [--board NAME] [--store-bits P] [--store-words N]
                           --json PATH
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from ..reference.files import source_commit
from . import backends, datasets
from .problem import GRIDS, QUANTIZERS, TrainOptions, prepare, resolve

__all__ = ["bench_seeds", "add_parser", "run"]

#: stream-fixed: streamed, fresh codes, but epoch 0's order every epoch (store mode's order)
MODES = ("stream", "store", "stream-fixed")


def bench_seeds(data: str, *, backend="golden", bits=(2, 8), quantizers=("double", "naive"),
                modes=("stream", "store"), grids=("floor",), seeds=10, epochs=30, board=None,
                store_bits=None, store_words=None, progress=None) -> dict:
    """Train every combination and return the report (see the module docstring)."""
    ds = datasets.load(data, "regression")
    prepared = prepare(ds.X, ds.y, "regression")
    x_opt, *_ = np.linalg.lstsq(prepared.A, prepared.b, rcond=None)
    best = float(prepared.mse(x_opt))
    runs, summary = [], []
    combos = [(g, m, qz, q) for g in grids for m in modes for qz in quantizers for q in bits
              if not (m != "stream" and g != "floor")]
    total = len(combos) * seeds
    done = 0
    failed = []
    for grid, mode, quantizer, q in combos:
        ratios = []
        for seed in range(seeds):
            opts = TrainOptions(model="linreg", bits=q, quantizer=quantizer, grid=grid,
                                epochs=epochs, seed=seed, backend=backend, board=board,
                                replay=(mode == "store"), store_bits=store_bits,
                                store_words=store_words if mode == "store" else None,
                                order="fixed" if mode == "stream-fixed" else "shuffle")
            t0 = time.perf_counter()
            try:
                res = backends.train(prepared, resolve(prepared, opts.validate()))
            except (ValueError, RuntimeError) as exc:
                # a combination the build cannot run is reported, not fatal
                failed.append({"grid": grid, "mode": mode, "quantizer": quantizer, "q": q,
                               "error": str(exc)})
                if progress:
                    print(f"{grid} {mode} {quantizer} q{q}: {exc}", file=sys.stderr)
                break
            ratio = float(res.mse[-1]) / best
            ratios.append(ratio)
            runs.append({"grid": grid, "mode": mode, "quantizer": quantizer, "q": q,
                         "seed": seed, "mse": float(res.mse[-1]), "ratio": ratio,
                         "store_p": res.extra.get("store_p"),
                         "seconds": round(time.perf_counter() - t0, 2)})
            done += 1
            if progress:
                progress(done, total, runs[-1])
        if ratios:
            summary.append({"grid": grid, "mode": mode, "quantizer": quantizer, "q": q,
                            "median_ratio": statistics.median(ratios),
                            "worst_ratio": max(ratios), "best_ratio": min(ratios),
                            "runs": len(ratios)})
    return {"commit": source_commit(), "command": "zipml bench seeds " + " ".join(sys.argv[3:])
            if sys.argv[1:3] == ["bench", "seeds"] else None,
            "data": data, "n": int(prepared.A.shape[0]), "d": int(prepared.A.shape[1]),
            "backend": backend, "board": board, "epochs": epochs, "seeds": seeds,
            "store_words": store_words, "optimum_mse": best, "summary": summary,
            "failed": failed, "runs": runs}


def add_parser(sub):
    s = sub.add_parser("seeds", help="final loss / least-squares optimum over seeds")
    s.add_argument("data", help="a bundled regression dataset or an svmlight file")
    s.add_argument("--backend", default="golden", choices=("reference", "golden", "rtl", "sim"))
    s.add_argument("--bits", type=int, nargs="+", default=[2, 8])
    s.add_argument("--quantizer", nargs="+", default=["double", "naive"], choices=QUANTIZERS)
    s.add_argument("--mode", nargs="+", default=["stream", "store"], choices=MODES)
    s.add_argument("--grid", nargs="+", default=["floor"], choices=GRIDS)
    s.add_argument("--seeds", type=int, default=10)
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--board", default=None)
    s.add_argument("--store-bits", type=int, default=None)
    s.add_argument("--store-words", type=int, default=None,
                   help="store mode: model a sample store of N words (golden, rtl) instead of "
                        "the build's")
    s.add_argument("--json", metavar="PATH")
    return s


def run(args) -> dict:
    def progress(i, total, r):
        print(f"[{i}/{total}] {r['grid']} {r['mode']} {r['quantizer']} q{r['q']} seed "
              f"{r['seed']}: {r['ratio']:.4f} x optimum ({r['seconds']} s)", file=sys.stderr)

    rep = bench_seeds(args.data, backend=args.backend, bits=tuple(args.bits),
                      quantizers=tuple(args.quantizer), modes=tuple(args.mode),
                      grids=tuple(args.grid), seeds=args.seeds, epochs=args.epochs,
                      board=args.board, store_bits=args.store_bits,
                      store_words=args.store_words, progress=progress)
    for s in rep["summary"]:
        print(f"{s['grid']:>9} {s['mode']:>6} {s['quantizer']:>13} q{s['q']}: median "
              f"{s['median_ratio']:.4f} worst {s['worst_ratio']:.4f}", file=sys.stderr)
    return rep

