"""``zipml bench link``: training through a bad line, bit for bit.

The board system in Verilator (`zipml.host.device.sim_transport_for`: the board's build, or
golden's engine at 12 MHz and 3 Mbaud) behind `zipml.host.transport.FaultyLine`, which flips,
drops, inserts and bursts bytes at a given rate in both directions. A real dataset trains for
a few epochs through it and the integer model is compared with the golden model's, bit for
bit. It reports the frames sent, the faults injected, the resends and NAKs, the seconds, and
``model_equal_golden``; it measures, and its exit code says whether the model was equal.

    zipml bench link [DATA] --fault-rate R [--seed S] [--board NAME] [--epochs 3]
                     [--bits 4] [--replay] --json PATH
"""

from __future__ import annotations

import sys
import time

from . import datasets
from .backend_engine import board_build, train_golden
from ..reference.files import source_commit
from .device import Device, _train_on, sim_transport_for
from .problem import TrainOptions, prepare, resolve
from .transport import FaultyLine

__all__ = ["bench_link", "add_parser", "run"]


def bench_link(data="diabetes", *, fault_rate, seed=0, board=None, epochs=3, bits=4,
               replay=False, timeout=0.005, retries=16) -> dict:
    ds = datasets.load(data, "regression")
    if ds.X.shape[0] < 100:
        raise ValueError(f"{data} has {ds.X.shape[0]} samples; the link bench trains at least "
                         f"100")
    prepared = prepare(ds.X, ds.y, "regression")
    opts = resolve(prepared, TrainOptions(bits=bits, quantizer="double", epochs=epochs,
                                          seed=seed, board=board, backend="sim",
                                          replay=replay).validate())
    config = board_build(board, None).config
    gold = train_golden(prepared, opts)
    sim = sim_transport_for(config, board=board)
    line = FaultyLine(sim, fault_rate, seed=seed)
    t0 = time.perf_counter()
    try:
        device = Device(line, timeout=timeout, retries=retries)
        res = _train_on(device, prepared, opts, None, config, "sim")
        cycles = int(sim.cycles)
    finally:
        sim.close()
    seconds = time.perf_counter() - t0
    stats = device.stats.as_dict()
    return {
        "commit": source_commit(),
        "command": "zipml bench link " + " ".join(sys.argv[3:])
        if sys.argv[1:3] == ["bench", "link"] else None,
        "data": data, "n": int(prepared.n), "d": int(prepared.A.shape[1]), "board": board,
        "bits": bits, "epochs": epochs, "store_mode": bool(res.extra.get("store_p")),
        "fault_rate": fault_rate, "seed": seed, "timeout": timeout, "retries": retries,
        "frames": stats["commands"] + stats["resends"], "commands": stats["commands"],
        "faults_injected": line.faults_injected, "faults": line.faults,
        "retries_used": stats["resends"], "naks": stats["naks"], "bad_rx": stats["bad_rx"],
        "link_bytes": {"tx": stats["tx_bytes"], "rx": stats["rx_bytes"]},
        "sim_cycles": cycles,
        "seconds": round(seconds, 2),
        "model_equal_golden": res.model_raw == gold.model_raw,
        "mse_equal_golden": res.mse == gold.mse,
    }


def add_parser(sub):
    s = sub.add_parser("link", help="train through a line that flips, drops and inserts bytes")
    s.add_argument("data", nargs="?", default="diabetes")
    s.add_argument("--fault-rate", type=float, required=True, metavar="R",
                   help="probability that a byte is hit, each direction")
    s.add_argument("--seed", type=int, default=0, help="seed of the faults and of training")
    s.add_argument("--board", default=None, help="the board's build (default golden's)")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--bits", type=int, default=4)
    s.add_argument("--replay", action="store_true", help="store mode instead of streaming")
    s.add_argument("--json", metavar="PATH")
    return s


def run(args) -> dict:
    if args.epochs < 3:
        raise ValueError(f"--epochs must be >= 3, got {args.epochs}")
    rep = bench_link(args.data, fault_rate=args.fault_rate, seed=args.seed, board=args.board,
                     epochs=args.epochs, bits=args.bits, replay=args.replay)
    print(f"fault rate {rep['fault_rate']:g}: {rep['faults_injected']} faults in "
          f"{rep['frames']} frames ({rep['retries_used']} resends, {rep['naks']} NAKs), "
          f"{rep['seconds']} s; model equal to golden: {rep['model_equal_golden']}",
          file=sys.stderr)
    return rep
