"""``zipml bench store``: cycles per epoch and bits per value, store mode against streaming.

For one dataset and each board's build it trains, per q, a few epochs on the simulated board
system (`zipml.host.device.train_sim`: UART, frames, sample store, store feed and engine in
Verilator, at the board's clock and baud) twice: streamed (host-drawn codes over the link every
epoch) and in store mode (the data uploaded once at p bits, codes drawn by the board's store
feed every epoch; docs/store.md). Per run it writes the board clocks per epoch (streaming: the
engine's enabled clocks, bound by the UART; store mode: the board's clocks from REPLAY to idle),
the seconds they take at the build's clock, and the bits per feature value: sent over the link
(per epoch when streaming, once in store mode), read from the store per epoch, and taken by the
engine per epoch. It measures; it asserts nothing.

    zipml bench store [DATA] [--board icebreaker ulx3s] [--bits 1 2 ... 8]
                      [--quantizer double] [--epochs 2] --json PATH
"""

from __future__ import annotations

import sys
import time

from . import datasets
from ..reference.files import source_commit
from .device import train_sim
from .problem import QUANTIZERS, TrainOptions, prepare, resolve

__all__ = ["bench_store", "add_parser", "run"]


def bench_store(data="diabetes", *, boards=("icebreaker", "ulx3s"), bits=range(1, 9),
                quantizer="double", epochs=2, progress=None) -> dict:
    ds = datasets.load(data, "regression")
    prepared = prepare(ds.X, ds.y, "regression")
    n, d = prepared.A.shape
    rows, failed = [], []
    for board in boards:
        for q in bits:
            for mode in ("stream", "store"):
                opts = TrainOptions(bits=q, quantizer=quantizer, epochs=epochs, seed=0,
                                    board=board, backend="sim", replay=(mode == "store"))
                t0 = time.perf_counter()
                try:
                    res = train_sim(prepared, resolve(prepared, opts.validate()))
                except (ValueError, RuntimeError, TimeoutError) as exc:
                    failed.append({"board": board, "q": q, "mode": mode, "error": str(exc)})
                    continue
                x = res.extra
                clk = float(x["clk_hz"])
                per_epoch = res.cycles / epochs
                link_per_epoch = x["link_bits"] if mode == "store" else x["link_bits"] / epochs
                rows.append({
                    "board": board, "q": q, "quantizer": quantizer, "mode": mode,
                    "store_p": x["store_p"], "W": x["config"]["W"], "clk_hz": clk,
                    "cycles_per_epoch": per_epoch, "seconds_per_epoch": per_epoch / clk,
                    "link_bits": x["link_bits"], "store_bits": x["store_bits"],
                    "link_bits_per_value": link_per_epoch / (n * d),
                    "link_bits_per_value_is": "once" if mode == "store" else "per epoch",
                    "store_bits_per_value_per_epoch": x["store_bits"] / epochs / (n * d),
                    "engine_bits_per_value_per_epoch": res.bits_moved / epochs / (n * d),
                    "mse": res.mse[-1], "sim_seconds": round(time.perf_counter() - t0, 2)})
                if progress:
                    progress(rows[-1])
    return {"commit": source_commit(),
            "command": "zipml bench store " + " ".join(sys.argv[3:])
            if sys.argv[1:3] == ["bench", "store"] else None,
            "data": data, "n": int(n), "d": int(d), "epochs": epochs, "rows": rows,
            "failed": failed}


def add_parser(sub):
    s = sub.add_parser("store", help="cycles per epoch and bits per value: store vs streaming")
    s.add_argument("data", nargs="?", default="diabetes")
    s.add_argument("--board", nargs="+", default=["icebreaker", "ulx3s"])
    s.add_argument("--bits", type=int, nargs="+", default=list(range(1, 9)))
    s.add_argument("--quantizer", default="double", choices=QUANTIZERS)
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--json", metavar="PATH")
    return s


def run(args) -> dict:
    def progress(r):
        print(f"{r['board']} q{r['q']} {r['mode']:>6}: {r['cycles_per_epoch']:>12,.0f} clocks/"
              f"epoch ({1e3 * r['seconds_per_epoch']:.2f} ms), link "
              f"{r['link_bits_per_value']:.2f} bits/value {r['link_bits_per_value_is']}, store "
              f"{r['store_bits_per_value_per_epoch']:.2f}/epoch", file=sys.stderr)

    return bench_store(args.data, boards=tuple(args.board), bits=tuple(args.bits),
                       quantizer=args.quantizer, epochs=args.epochs, progress=progress)

