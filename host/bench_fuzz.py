"""``zipml bench fuzz``: random and mutated frames into the board system in Verilator.

Each frame is one of: a well-formed read (PING, READ_REG, READ_MODEL with any address, count
and length, right or wrong), an unknown command, a flipped bit, a deleted byte (truncation), a
dangling escape, junk bytes, or a frame longer than the board's ``max_payload`` (every length
up to 40 bytes past it). Effect commands appear only damaged, so the board's state stays as it
is and the next frame is judged like the first. The frames go one at a time (stop-and-wait, as
the host sends them) and the run checks that

* every frame gets exactly one answer: the command's (same seq) when it was well formed, a NAK
  otherwise, and a well-formed read answers with the status the protocol gives it (a damaged
  frame that still passes the CRC-16, as one in 65536 does, is well formed: it is counted in
  ``damaged_but_passed_crc16``, the case for an end-to-end check above the frames);
* every frame is counted once by the board: ``rx_ok`` + ``rx_bad`` grow by the frames sent
  (checked every `CHECK_EVERY` frames, the counter reads themselves included);
* nothing hangs (each answer within a deadline) and a PING, the ``id`` register and a model
  round trip still work at the end.

It writes the counts per kind and whether every check held; the exit code says so too.

    zipml bench fuzz [--frames 10000] [--seed 0] [--board NAME] --json PATH
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from zipml.hw import protocol as P

from ..reference.files import source_commit
from .device import Device, sim_transport_for

__all__ = ["fuzz_link", "add_parser", "run"]

KINDS = ("read", "unknown", "flip", "cut", "escape", "junk", "long")
CHECK_EVERY = 100


def _frame(rng, kind, seq, max_payload, d_max):
    """Wire bytes of one fuzz frame (with its leading FLAG) and the answer it must get:
    ``("ack", status)`` or ``("nak", None)``."""
    C, S = P.Command, P.Status
    if kind == "read":
        cmd = rng.choice([C.PING, C.READ_REG, C.READ_MODEL])
        n = rng.choice([0, 1, 2, 4, 5, rng.randrange(max_payload + 1)])
        payload = bytes(rng.randrange(256) for _ in range(n))
        if cmd == C.PING:
            status = S.OK                   # its payload, if any, is ignored (docs/link.md)
        elif cmd == C.READ_REG:
            if n != 1:
                status = S.BAD_LEN
            else:
                status = S.OK if payload[0] in P.REGISTER_BY_ADDR else S.BAD_ADDR
        else:
            addr = int.from_bytes(payload[:2], "little")
            count = int.from_bytes(payload[2:4], "little")
            if n != 4 or not 1 <= count <= (max_payload - 1) // 4:
                status = S.BAD_LEN
            else:
                status = S.OK if addr + count <= d_max else S.BAD_ADDR
        return P.encode_frame(seq, cmd, payload), ("ack", status)
    if kind == "unknown":
        cmd = rng.choice([0x00, *range(0x09, 0x7F)])
        n = rng.randrange(8)
        return (P.encode_frame(seq, cmd, bytes(rng.randrange(256) for _ in range(n))),
                ("ack", S.BAD_CMD))
    if kind == "long":
        # well formed but for its length, which `encode_frame` would refuse to write
        n = max_payload + 1 + rng.randrange(40)
        body = bytes([seq, rng.choice([c for c in C if c is not C.NAK]), n & 0xFF, n >> 8])
        body += bytes(rng.randrange(256) for _ in range(n))
        body += P.crc16(body).to_bytes(2, "big")
        return bytes([P.FLAG]) + P.stuff(body) + bytes([P.FLAG]), ("nak", None)
    cmd = rng.choice([c for c in P.Command if c is not P.Command.NAK])
    payload = bytes(rng.choice([P.FLAG, P.ESC, rng.randrange(256)])
                    for _ in range(rng.randrange(max_payload + 1)))
    f = bytearray(P.encode_frame(seq, cmd, payload))
    if kind == "flip":
        i = rng.randrange(1, len(f) - 1)
        f[i] ^= 1 << rng.randrange(8)
        if f[i] == P.FLAG:              # a FLAG splits the frame in two: two answers
            f[i] ^= 0x01
    elif kind == "cut":
        del f[rng.randrange(1, len(f) - 1)]
    elif kind == "escape":
        f.insert(len(f) - 1, P.ESC)     # a dangling escape before the closing FLAG
    else:                               # junk: bytes without structure, then a FLAG
        f = bytearray([P.FLAG]) + bytes(rng.choice([b for b in range(256) if b != P.FLAG])
                                        for _ in range(rng.randrange(1, 40))) + bytes([P.FLAG])
    # A damaged frame can still pass the CRC-16 (two changed bytes, e.g. a flipped ESC, pass
    # one time in 65536): then it is a well-formed frame and the board must judge it as one.
    try:
        frame = P.Frame.decode(P.unstuff(bytes(f[1:-1])))
    except P.FrameError:
        return bytes(f), ("nak", None)
    if len(frame.payload) > max_payload:
        return bytes(f), ("nak", None)
    return bytes(f), ("ack", None)


def fuzz_link(transport, frames=10_000, seed=0, timeout=0.05, progress=None) -> dict:
    """Send ``frames`` fuzz frames to ``transport`` (a `SimTransport`); returns the report."""
    rng = random.Random(seed)
    dev = Device(transport, timeout=timeout)
    max_payload, d_max = dev.params["max_payload"], dev.params["D_MAX"]
    link_mod = 1 << dev.params.get("LINK_BITS", P.LINK_BITS_FULL)
    counts = dict.fromkeys(KINDS, 0)
    failures = []
    answered = passed_crc = 0
    parser = P.FrameParser()

    def counted():
        return dev.read_reg("rx_ok") + dev.read_reg("rx_bad")

    start_count = counted()
    sent_since = 0
    t0 = time.perf_counter()
    for k in range(frames):
        kind = rng.choice(KINDS)
        counts[kind] += 1
        seq = k & 0xFF
        wire, (want, status) = _frame(rng, kind, seq, max_payload, d_max)
        transport.write(wire)
        sent_since += 1
        got = []
        until = dev.now() + timeout
        while not got and dev.now() < until:
            got += parser.feed(transport.read(timeout))
        got += parser.feed(transport.read(0.0005))      # a second answer would be a fault
        ok = len(got) == 1
        if ok and want == "ack":
            a, sent = got[0], P.Frame.decode(P.unstuff(wire[1:-1]))
            ok = (a.seq == sent.seq and a.cmd == sent.cmd | P.ACK and bool(a.payload)
                  and (status is None or a.payload[0] == status))
            passed_crc += status is None
        elif ok:
            ok = got[0].cmd == P.Command.NAK | P.ACK
        if ok:
            answered += 1
        elif len(failures) < 20:
            failures.append({"frame": k, "kind": kind, "wire": wire[:48].hex(),
                             "want": [want, None if status is None else int(status)],
                             "got": [[f.seq, f.cmd, f.payload[:8].hex()] for f in got]})
        if (k + 1) % CHECK_EVERY == 0 or k + 1 == frames:
            now = counted()
            # the two reads of `counted` are frames too: the first is counted before it is
            # read, so the previous check's second read and this check's first one add 2
            if (now - start_count - sent_since - 2) % link_mod and len(failures) < 20:
                failures.append({"frame": k, "kind": "count",
                                 "counted": (now - start_count) % link_mod,
                                 "sent": sent_since + 2})
            start_count, sent_since = now, 0
            if progress:
                progress(k + 1, frames, answered)
    # still alive: a ping, the id and a model round trip
    dev.ping()
    alive = dev.read_reg("id") == P.ID_MAGIC
    words = np.random.default_rng(seed).integers(-2**31, 2**31, size=min(8, d_max))
    dev.write_model(words)
    alive = alive and np.array_equal(dev.read_model(words.size), words)
    return {"commit": source_commit(),
            "command": "zipml bench fuzz " + " ".join(sys.argv[3:])
            if sys.argv[1:3] == ["bench", "fuzz"] else None,
            "frames": frames, "seed": seed, "kinds": counts, "answered": answered,
            "damaged_but_passed_crc16": passed_crc,
            "failures": failures, "alive_after": bool(alive),
            "seconds": round(time.perf_counter() - t0, 2),
            "ok": not failures and alive and answered == frames}


def add_parser(sub):
    s = sub.add_parser("fuzz", help="random and mutated frames into the simulated board")
    s.add_argument("--frames", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--board", default=None, help="the board's build (default golden's)")
    s.add_argument("--json", metavar="PATH")
    return s


def run(args) -> dict:
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    sim = sim_transport_for(board=args.board)
    try:
        rep = fuzz_link(sim, args.frames, args.seed, progress=lambda i, n, a: print(
            f"\r{i}/{n} frames, {a} answered as due", end="", file=sys.stderr))
    finally:
        sim.close()
    rep["board"] = args.board
    print(f"\n{rep['frames']} frames: {rep['answered']} answered as due, "
          f"{len(rep['failures'])} failures, alive after: {rep['alive_after']}", file=sys.stderr)
    return rep
