"""Benchmarks: ``zipml bench engine`` and ``zipml bench host`` (docs/design.md §7, docs/bench.md).

They measure and write JSON; they assert nothing.

``bench engine`` runs the engine RTL in Verilator (`zipml.sim.engine_rtl`) on one epoch
segment per row, streams built exactly as training builds them (`zipml.reference.engine_job`:
quantize, pack), and writes rows::

    {"q", "quantizer", "d", "W", "B", "n", "words", "bits_in", "cycles", "stall_cycles",
     "efficiency", "replay_words", "sim_seconds"}

with ``bits_in = words * W`` (every stream bit: headers, labels, planes) and
``efficiency = bits_in / (W * cycles) = words / cycles`` over the epoch (the engine's own
``cycles`` counter: from the first word to idle). On the floor grid (the default) and for the
symmetric grid's single-sample quantizers, the engine replays each buffered dot group from the
code buffer as a grad group (``replay_words``, beside the stream's dot
words); the segment's last pass is replay only, which bounds their efficiency for short
segments (docs/bench.md). The source never pauses, so every lost cycle
is the engine's. It also writes the simulator's cycles per second, and merges Fmax and
utilization from the place-and-route reports (``zipml build --json``: results/build_*.json,
results/pnr_*.json)
when they exist.

``bench host`` times quantize + pack of one epoch (values/s: feature values of the n x d
problem per second, double quantizes each twice; per q and quantizer; best of ``--repeat``
epochs, by wall clock and by this process's CPU time) and the UART link's
payload share (payload bits / wire bits: STREAM frames of `zipml.hw.protocol` with their
stuffing, 10 wire bits per byte), and from it the values/s the 3 Mbaud link can carry.

Command lines::

    zipml bench engine [--json PATH] [--W 32 8] [--q 1 2 ...] [--d 8 90 784 4096] [--B 1 8]
                       [--n 64] [--quantizer double naive deterministic full] [--pnr PATH ...]
                       [--d-max N] [--b-max N] [--buf-depth N] [--md PATH]
    zipml bench pnr --json results/bench_engine.json [REPORT ...]   # merge P&R reports later
    zipml bench host [--json PATH] [--n 2000] [--d 784] [--W 32] [--repeat 5]
    zipml bench seeds DATA ... --json PATH      # final loss / optimum over seeds (bench_seeds)
    zipml bench store [DATA] ... --json PATH    # clocks per epoch, bits per value: store vs stream
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

from ..hw.protocol import MAX_PAYLOAD, Command, encode_frame
from ..reference.engine_job import EngineJob
from ..reference.golden import ARCHS, EngineConfig, buffered, group_planes
from ..reference.quantize import QUANTIZERS
from ..sim import engine_rtl
from ..reference.files import source_commit
from .files import write_json
from . import bench_fuzz, bench_link, bench_seeds, bench_store

__all__ = ["CONFIGS", "QUANTIZERS", "engine_rows", "bench_engine", "bench_host", "main"]

#: the two board builds of docs/engine.md
CONFIGS = {
    32: EngineConfig(W=32, D_MAX=4096, B_MAX=8, BUF_DEPTH=2 * 8 * 128 * 8),   # ULX3S
    8: EngineConfig(W=8, D_MAX=1024, B_MAX=8, BUF_DEPTH=2048, ARCH="serial"),  # iCEBreaker
}
DEFAULT_D = (8, 90, 784, 4096)
DEFAULT_Q = tuple(range(1, 9))
DEFAULT_B = (1, 8)


def _order(n, epoch, seed):
    return np.random.default_rng([seed, epoch, 1]).permutation(n)


def _problem(n: int, d: int, seed: int):
    """A synthetic scaled problem (features in [-1, 1], intercept column, labels a noisy linear
    function): the bench measures cycles, which do not depend on the values."""
    rng = np.random.default_rng([seed, d])
    A = rng.uniform(-1.0, 1.0, size=(n, d))
    A[:, 0] = 1.0
    b = np.clip(A @ rng.normal(0, 1.0 / np.sqrt(d), size=d) + rng.normal(0, 0.05, n), -1, 1)
    return A, b


def _job(A, b, quantizer, q, B, config, seed):
    return EngineJob.build(A, b, quantizer=quantizer, q=q, lr=2.0 ** -8, B=B, seed=seed,
                           order=_order, config=config)


def _cases(quantizers, qs, ds, Bs):
    for quantizer in quantizers:
        for q in ((32,) if quantizer == "full" else qs):
            for d in ds:
                for B in Bs:
                    yield quantizer, q, d, B


def engine_rows(config: EngineConfig, *, quantizers=QUANTIZERS, qs=DEFAULT_Q, ds=DEFAULT_D,
                Bs=DEFAULT_B, n: int = 64, seed: int = 0, progress=None):
    """Rows of one engine build; cases the build cannot run go to ``skipped`` with the reason.

    Returns
    -------
    rows : list of dict
    skipped : list of dict
    sim : dict
        ``cycles``, ``seconds`` (stream + drain, in Verilator), ``cycles_per_s``,
        ``build_seconds`` (Verilog conversion + Verilator build or cache hit).
    """
    t0 = time.perf_counter()
    sim = engine_rtl.model_for(config)
    build_seconds = time.perf_counter() - t0
    rows, skipped = [], []
    problems = {}
    total_cycles, total_seconds = 0, 0.0
    cases = list(_cases(quantizers, qs, ds, Bs))
    for i, (quantizer, q, d, B) in enumerate(cases):
        base = {"q": q, "quantizer": quantizer, "d": d, "W": config.W, "arch": config.ARCH,
                "B": B, "n": n}
        if d > config.D_MAX:
            skipped.append({**base, "reason": f"d > D_MAX={config.D_MAX}"})
            continue
        if (n, d) not in problems:
            problems[(n, d)] = _problem(n, d, seed)
        A, b = problems[(n, d)]
        try:
            job = _job(A, b, quantizer, q, B, config, seed)
        except ValueError as exc:               # e.g. the mode-1 code buffer is too small
            skipped.append({**base, "reason": str(exc)})
            continue
        words = job.epoch_stream(0)
        regs = job.epoch_regs(0)
        t = time.perf_counter()
        res = sim.run(regs, words, init_model=np.zeros(d, dtype=np.int64))
        dt = time.perf_counter() - t
        total_cycles += res.cycles
        total_seconds += dt
        # buffered grads (floor grid, symmetric mode 1): every dot group comes back from the
        # code buffer as the next pass's grad group: plane words that never cross the bus
        replay = (n * -(-d // config.W) * group_planes(regs.q, regs.grid)
                  if buffered(regs.mode, regs.grid) else 0)
        rows.append({**base, "words": int(res.words), "bits_in": int(res.words) * config.W,
                     "cycles": int(res.cycles), "stall_cycles": int(res.stall_cycles),
                     "efficiency": round(res.words / res.cycles, 5),
                     "replay_words": int(replay),
                     "sim_seconds": round(dt, 4)})
        if progress:
            progress(i + 1, len(cases), rows[-1])
    sim_info = {"cycles": total_cycles, "seconds": round(total_seconds, 3),
                "cycles_per_s": round(total_cycles / total_seconds) if total_seconds else None,
                "build_seconds": round(build_seconds, 2)}
    return rows, skipped, sim_info


def _git_rev(path: str = "hw"):
    """Short hash of the last commit touching the gateware (None outside a git checkout), so a
    table can say which engine it measured."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        r = subprocess.run(["git", "log", "-1", "--format=%h", "--", path], cwd=root,
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", path], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    rev = r.stdout.strip()
    return (rev + ("+dirty" if dirty else "")) if r.returncode == 0 and rev else None


def _default_pnr_paths():
    """Place-and-route reports the build writes: results/build_<board>.json (``make
    bitstream``) and results/pnr_<board>_<target>.json."""
    return sorted(glob.glob("results/build_*.json") + glob.glob("results/pnr_*.json"))


def _pnr_reports(paths):
    out = []
    for p in paths:
        try:
            rep = json.loads(pathlib.Path(p).read_text())
        except (OSError, ValueError) as exc:
            out.append({"path": str(p), "error": str(exc)})
            continue
        out.append({"path": str(p), **{k: rep.get(k) for k in (
            "board", "target", "device", "fmax_mhz", "target_mhz", "timing_met", "utilization",
            "critical_path", "engine", "seed", "seconds")}})
    return out


def _summary(rows):
    """Lowest efficiency per (W, quantizer, q, B) over d >= 256, for the goal of issue 4
    (>= 0.97)."""
    bus = {}
    for r in rows:
        key = f"W{r['W']} {r['quantizer']} q{r['q']} B{r['B']}"
        if r["d"] >= 256:
            bus[key] = min(bus.get(key, 1.0), r["efficiency"])
    return {"min_efficiency_d_ge_256": bus,
            "meet_0.97": sorted(k for k, v in bus.items() if v >= 0.97),
            "miss_0.97": sorted(k for k, v in bus.items() if v < 0.97)}


def bench_engine(widths=(32, 8), *, quantizers=QUANTIZERS, qs=DEFAULT_Q, ds=DEFAULT_D,
                 Bs=DEFAULT_B, n: int = 64, seed: int = 0, pnr=None, configs=None,
                 progress=None) -> dict:
    """The whole engine bench as one JSON-able dict (see the module docstring)."""
    configs = list(configs) if configs is not None else [CONFIGS[w] for w in widths]
    rows, skipped, sims = [], [], {}
    for config in configs:
        r, s, sim = engine_rows(config, quantizers=quantizers, qs=qs, ds=ds, Bs=Bs, n=n,
                                seed=seed, progress=progress)
        rows += r
        skipped += s
        sims[engine_rtl.top_name(config)] = sim
    if pnr is None:
        pnr = _default_pnr_paths()
    return {
        "bench": "engine",
        "gateware_commit": _git_rev("hw"),
        "configs": [dict(c.__dict__) for c in configs],
        "rows": rows,
        "skipped": skipped,
        "summary": _summary(rows),
        "simulator": {"tool": "verilator (zipml.sim.verilator ctypes shim)", "per_build": sims,
                      "cycles_per_s": (round(sum(s["cycles"] for s in sims.values())
                                             / max(sum(s["seconds"] for s in sims.values()),
                                                   1e-9)))},
        "pnr": _pnr_reports(pnr),
        "host": {"python": sys.version.split()[0], "machine": platform.machine()},
    }


def _link_share(words_bytes: bytes, max_frames: int = 256):
    """Payload bits / wire bits for STREAM frames over UART 8N1 (10 wire bits per byte).

    Measured on the first ``max_frames`` frames of the stream (64 KiB: the stuffing rate is a
    property of the bytes, and framing Python is slow)."""
    words_bytes = words_bytes[:max_frames * MAX_PAYLOAD]
    wire = 0
    for k, off in enumerate(range(0, len(words_bytes), MAX_PAYLOAD)):
        wire += len(encode_frame(k & 0xFF, int(Command.STREAM), words_bytes[off:off + MAX_PAYLOAD]))
    return {"payload_bytes": len(words_bytes), "wire_bytes": wire,
            "payload_share": round(8 * len(words_bytes) / (10 * wire), 5) if wire else None}


def bench_host(*, n: int = 2000, d: int = 784, qs=DEFAULT_Q, quantizers=QUANTIZERS,
               W: int = 32, repeat: int = 5, seed: int = 0, baud: int = 3_000_000) -> dict:
    """Quantize + pack rate and link payload share (see the module docstring)."""
    if n < 1 or d < 1 or repeat < 1:
        raise ValueError(f"n, d and repeat must be >= 1, got n={n}, d={d}, repeat={repeat}")
    config = CONFIGS[W] if d <= CONFIGS[W].D_MAX else EngineConfig(
        W=W, D_MAX=-(-d // W) * W, B_MAX=8, BUF_DEPTH=2 * 8 * (-(-d // W)) * 32)
    A, b = _problem(n, d, seed)
    load_before = _load_average()
    rows = []
    for quantizer, q, _, _ in _cases(quantizers, qs, (d,), (1,)):
        job = _job(A, b, quantizer, q, 1, config, seed)
        best = best_cpu = np.inf
        for r in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            words = job.epoch_stream(r)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        nbytes = W // 8
        raw = (words.astype(np.uint64)[:, None] >> (8 * np.arange(nbytes, dtype=np.uint64))
               & np.uint64(0xFF)).astype(np.uint8).tobytes()
        link = _link_share(raw)
        bits_per_value = words.size * W / (n * d)
        rows.append({"q": q, "quantizer": quantizer, "n": n, "d": d, "W": W,
                     "values_per_s": round(n * d / best), "words": int(words.size),
                     "seconds": round(best, 5),
                     # this process's CPU time: the one core's work, whatever else runs
                     "cpu_values_per_s": round(n * d / max(best_cpu, 1e-9)),
                     "cpu_seconds": round(best_cpu, 5), **link,
                     "stream_bits_per_value": round(bits_per_value, 4),
                     # what the link itself can carry, for comparison with the host rate
                     "link_values_per_s": round(baud * link["payload_share"] / bits_per_value)})
    return {"bench": "host", "baud": baud, "repeat": repeat, "rows": rows,
            "host": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "machine": platform.machine(),
                     # 1-minute load averages before and after: other jobs on the machine
                     # slow the wall-clock rate
                     "load_average": [load_before, _load_average()]}}


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:                             # not available on this platform
        return None


def engine_markdown(rep) -> str:
    """Markdown tables of an engine bench report: bus efficiency per (W, quantizer, q) against
    d, one column group per B (docs/bench.md is made of these)."""
    rows = rep["rows"]
    out = []
    for W in sorted({r["W"] for r in rows}, reverse=True):
        Bs = sorted({r["B"] for r in rows if r["W"] == W})
        ds = sorted({r["d"] for r in rows if r["W"] == W})
        head = " | ".join(f"B={B} d={d}" for B in Bs for d in ds)
        out.append(f"W = {W} (bus efficiency = words / cycles over one epoch of "
                   f"n = {rows[0]['n']})\n")
        out.append(f"| quantizer | q | {head} |")
        out.append("|---|---|" + "---|" * (len(Bs) * len(ds)))
        keys = []
        for r in rows:
            k = (r["quantizer"], r["q"])
            if r["W"] == W and k not in keys:
                keys.append(k)
        idx = {(r["quantizer"], r["q"], r["B"], r["d"]): r for r in rows if r["W"] == W}
        for quant, q in keys:
            cells = []
            for B in Bs:
                for d in ds:
                    r = idx.get((quant, q, B, d))
                    cells.append(f"{r['efficiency']:.3f}" if r else "-")
            out.append(f"| {quant} | {q} | " + " | ".join(cells) + " |")
        out.append("")
    pnr = [p for p in rep.get("pnr", []) if "error" not in p]
    if pnr:
        out.append("| board | target | engine | Fmax MHz (target) | logic | FF | block RAM | "
                   "critical path |")
        out.append("|---|---|---|---|---|---|---|---|")
        for p in pnr:
            u = p.get("utilization") or {}

            def pct(*bels):
                for b in bels:
                    if b in u:
                        return f"{u[b]['used']}/{u[b]['available']} ({u[b]['percent']}%)"
                return "-"
            fmax = ", ".join(f"{v}" for v in (p.get("fmax_mhz") or {}).values())
            eng = p.get("engine") or {}
            cp = p.get("critical_path") or {}
            out.append(f"| {p.get('board')} | {p.get('target')} | W={eng.get('W')} "
                       f"D_MAX={eng.get('D_MAX')} | {fmax} ({p.get('target_mhz')}) | "
                       f"{pct('TRELLIS_COMB', 'ICESTORM_LC')} | {pct('TRELLIS_FF')} | "
                       f"{pct('DP16KD', 'ICESTORM_RAM')} | {cp.get('start')} -> {cp.get('end')}"
                       f" {cp.get('delay_ns')} ns |")
        out.append("")
    sims = rep["simulator"]["per_build"]
    out.append("| build | simulated cycles | seconds | cycles/s | build s |")
    out.append("|---|---|---|---|---|")
    for top, s in sims.items():
        out.append(f"| {top} | {s['cycles']} | {s['seconds']} | {s['cycles_per_s']} | "
                   f"{s['build_seconds']} |")
    return "\n".join(out) + "\n"


def _print_engine(rep, out):
    print(f"{'W':>3} {'quantizer':>13} {'q':>2} {'d':>5} {'B':>2} {'words':>8} {'cycles':>8} "
          f"{'eff':>6}", file=out)
    for r in rep["rows"]:
        print(f"{r['W']:>3} {r['quantizer']:>13} {r['q']:>2} {r['d']:>5} {r['B']:>2} "
              f"{r['words']:>8} {r['cycles']:>8} {r['efficiency']:>6.3f}", file=out)
    miss = rep["summary"]["miss_0.97"]
    print(f"simulator: {rep['simulator']['cycles_per_s']} cycles/s; efficiency < 0.97 at some "
          f"d >= 256 for: {', '.join(miss) if miss else 'none'}", file=out)


def main(argv=None) -> int:
    """``zipml bench engine|host``."""
    ap = argparse.ArgumentParser(prog="zipml bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    e = sub.add_parser("engine", help="bus efficiency of the engine RTL in Verilator")
    e.add_argument("--json", metavar="PATH", help="write the report here")
    e.add_argument("--W", type=int, nargs="+", default=[32, 8], choices=sorted(CONFIGS))
    e.add_argument("--q", type=int, nargs="+", default=list(DEFAULT_Q), choices=range(1, 9),
                   metavar="Q", help="bits, 1..8 (full always runs at 32)")
    e.add_argument("--d", type=int, nargs="+", default=list(DEFAULT_D))
    e.add_argument("--B", type=int, nargs="+", default=list(DEFAULT_B))
    e.add_argument("--n", type=int, default=64, help="samples per epoch (default 64)")
    e.add_argument("--quantizer", nargs="+", default=list(QUANTIZERS), choices=QUANTIZERS)
    e.add_argument("--pnr", nargs="*", metavar="PATH",
                   help="place-and-route reports to merge "
                        "(default results/build_*.json and results/pnr_*.json)")
    e.add_argument("--seed", type=int, default=0)
    for name, what in (("d-max", "D_MAX"), ("b-max", "B_MAX"), ("buf-depth", "BUF_DEPTH")):
        e.add_argument(f"--{name}", type=int, metavar="N", dest=what,
                       help=f"engine {what} instead of the board build's")
    e.add_argument("--arch", choices=ARCHS, dest="ARCH",
                   help="engine architecture instead of the board build's (docs/engine.md)")
    e.add_argument("--md", metavar="PATH", help="also write the tables as Markdown")
    p = sub.add_parser("pnr", help="merge place-and-route reports into an engine bench JSON")
    p.add_argument("--json", metavar="PATH", required=True, help="the engine bench JSON")
    p.add_argument("reports", nargs="*", metavar="REPORT",
                   help="zipml build --json reports "
                        "(default results/build_*.json and results/pnr_*.json)")
    bench_seeds.add_parser(sub)
    bench_store.add_parser(sub)
    bench_link.add_parser(sub)
    bench_fuzz.add_parser(sub)
    h = sub.add_parser("host", help="quantize+pack rate and link payload share")
    h.add_argument("--json", metavar="PATH")
    h.add_argument("--n", type=int, default=2000)
    h.add_argument("--d", type=int, default=784)
    h.add_argument("--W", type=int, default=32, choices=sorted(CONFIGS))
    h.add_argument("--repeat", type=int, default=5,
                   help="epochs timed per row, the best counts (default 5)")
    args = ap.parse_args(argv)
    try:
        if args.what == "engine":
            if args.n < 1:
                raise ValueError(f"--n must be >= 1, got {args.n}")
            if min(args.d) < 1 or min(args.B) < 1:
                raise ValueError("--d and --B must be >= 1")

            def progress(i, total, row):
                print(f"\r[{i}/{total}] W{row['W']} {row['quantizer']} q{row['q']} d{row['d']} "
                      f"B{row['B']}: {row['efficiency']:.3f}   ", end="", file=sys.stderr)

            configs = []
            for w in args.W:
                c = CONFIGS[w]
                over = {k: getattr(args, k) for k in ("D_MAX", "B_MAX", "BUF_DEPTH", "ARCH")
                        if getattr(args, k, None) is not None}
                configs.append(EngineConfig(**{**c.__dict__, **over}))
            rep = bench_engine(configs=configs, quantizers=tuple(args.quantizer),
                               qs=tuple(args.q), ds=tuple(args.d), Bs=tuple(args.B), n=args.n,
                               seed=args.seed, pnr=args.pnr, progress=progress)
            print(file=sys.stderr)
            _print_engine(rep, sys.stderr)
            if args.md:
                pathlib.Path(args.md).write_text(engine_markdown(rep))
        elif args.what == "seeds":
            rep = bench_seeds.run(args)
        elif args.what == "store":
            rep = bench_store.run(args)
        elif args.what == "link":
            rep = bench_link.run(args)
        elif args.what == "fuzz":
            rep = bench_fuzz.run(args)
        elif args.what == "pnr":
            path = pathlib.Path(args.json)
            rep = json.loads(path.read_text())
            rep["pnr"] = _pnr_reports(args.reports or _default_pnr_paths())
            write_json(path, rep)
            for r in rep["pnr"]:
                print(f"{r.get('board')} {r.get('target')}: Fmax {r.get('fmax_mhz')}",
                      file=sys.stderr)
            return 0
        else:
            rep = bench_host(n=args.n, d=args.d, W=args.W, repeat=args.repeat)
            for r in rep["rows"]:
                print(f"{r['quantizer']:>13} q{r['q']:<2}: {r['values_per_s']:>12,} values/s "
                      f"quantize+pack ({r['cpu_values_per_s']:>12,} per CPU second); link "
                      f"payload share {r['payload_share']}, {r['link_values_per_s']:>9,} "
                      f"values/s over the link", file=sys.stderr)
            print(f"load average before/after: {rep['host']['load_average']}", file=sys.stderr)
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"zipml bench: error: {exc}", file=sys.stderr)
        return 1
    if isinstance(rep, dict):           # every report names the code and the command
        rep.setdefault("commit", source_commit())
        if not rep.get("command"):
            rep["command"] = "zipml bench " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        write_json(args.json, rep)
    else:
        print(json.dumps(rep, indent=1))
    # the link and fuzz benches measure, and say by their exit code whether all came through
    return 1 if rep.get("model_equal_golden") is False or rep.get("ok") is False else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
