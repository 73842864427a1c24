"""The board system's components (issue 10 item 3), each alone in Amaranth's simulator.

`zipml.hw.soc.System` wires them; here each is driven through its own ports and checked
against expectations worked out in the test from docs/link.md and `zipml.hw.protocol` (the
status table, the register map, the frame layout), never from values the component computes:

* `SkidBuffer`: every word offered reaches the output once, in order, under random valid and
  ready; its ``ready`` is a flip-flop; ``flush`` drops the words waiting in it.
* `Replay`: a store written through its port and replayed E epochs into a stalling consumer
  gives the store's words in order E times, ``replay_done`` counts the epochs, ``busy`` and
  ``replay_cycles`` end with the replay; ``stop`` ends it early.
* `Responder`: the response body (seq, cmd | 0x80, len, status, data) of status-only answers,
  READ_REG, READ_MODEL and NAK, under random backpressure.
* `Evaluator`: the status of random commands (right and wrong lengths, addresses, busy states,
  repeated seqs) by the protocol's table and order of faults.
* `RegisterFile`: the map's read, write, read-only and write-only behaviour, ctrl's strobes,
  the counter latch, the link counters' wrap.
* `CommandUnit`: frames through a model receive buffer and a stand-in evaluator: arguments,
  STREAM/STORE words assembled little endian, WRITE_MODEL words and addresses, REPLAY's
  start, WRITE_REG's states, the last seq.
"""

import random

import pytest
from amaranth.sim import Simulator

from zipml.hw import protocol as P
from zipml.hw.command import CommandFlags, CommandUnit
from zipml.hw.evaluate import Evaluator
from zipml.hw.registers import RegisterFile
from zipml.hw.replay import Replay
from zipml.hw.responder import Responder
from zipml.hw.skid import SkidBuffer

pytestmark = pytest.mark.filterwarnings("error")

C, S = P.Command, P.Status
FLAG_NAMES = [name for name, _ in CommandFlags]
KNOWN = {int(c): c for c in C if c is not C.NAK}     # command codes a host may send


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def cmd_flags(cmd):
    """CommandFlags value of a command code (all clear for an unknown one)."""
    name = KNOWN[cmd].name.lower() if cmd in KNOWN else None
    return {n: int(n == name) for n in FLAG_NAMES}


# ------------------------------------------------------------------------------ SkidBuffer

def run_skid(W, n, valid_p, ready_p, flush_p, seed):
    """Words through a SkidBuffer with random valid gaps, ready and flushes, against a queue
    model: a word offered is held until taken, a flush drops everything not delivered by the
    end of its clock. Returns (delivered indices, dropped indices, clocks, most words held)."""
    rng = random.Random(seed)
    words = [rng.getrandbits(W) for _ in range(n)]
    dut = SkidBuffer(W)
    res = {}

    async def bench(ctx):
        held = []                   # indices inside the buffer, oldest first
        got, dropped = [], []
        i, offering, clocks, most = 0, False, 0, 0
        while len(got) + len(dropped) < n:
            clocks += 1
            assert clocks < 20 * n + 100, "skid buffer stuck"
            if not offering and i < n and rng.random() < valid_p:
                offering = True
            ready = rng.random() < ready_p
            flush = rng.random() < flush_p
            ctx.set(dut.flush, int(flush))
            # The producers' ready is a flip-flop: whatever the consumer's ready and the
            # producer's valid and word in this clock, it does not move.
            seen = set()
            for r in (0, 1):
                for v in (0, 1):
                    ctx.set(dut.o_stream.ready, r)
                    ctx.set(dut.i_stream.valid, v)
                    ctx.set(dut.i_stream.payload, rng.getrandbits(W))
                    seen.add(ctx.get(dut.i_stream.ready))
            assert len(seen) == 1, "i_stream.ready depends on this clock's inputs"
            ctx.set(dut.o_stream.ready, int(ready))
            ctx.set(dut.i_stream.valid, int(offering))
            ctx.set(dut.i_stream.payload, words[i] if offering else rng.getrandbits(W))
            # A word taken shows on the output the next clock; empty says nothing waits.
            assert ctx.get(dut.empty) == (not held)
            assert ctx.get(dut.o_stream.valid) == bool(held)
            most = max(most, len(held))
            if ready and held:
                assert ctx.get(dut.o_stream.payload) == words[held[0]]
                got.append(held.pop(0))
            if offering and ctx.get(dut.i_stream.ready):
                held.append(i)
                i += 1
                offering = False
            if flush:
                dropped += held
                held = []
            await ctx.tick()
        ctx.set(dut.flush, 0)
        ctx.set(dut.i_stream.valid, 0)
        ctx.set(dut.o_stream.ready, 1)
        for _ in range(3):
            assert not ctx.get(dut.o_stream.valid)
            assert ctx.get(dut.empty)
            await ctx.tick()
        res.update(got=got, dropped=dropped, clocks=clocks, most=most)

    simulate(dut, bench)
    return res


@pytest.mark.parametrize("W,valid_p,ready_p,seed", [
    (8, 0.7, 0.5, 1), (32, 0.9, 0.9, 2), (16, 0.3, 0.8, 3), (64, 1.0, 0.3, 4)])
def test_skid_every_word_once_in_order(W, valid_p, ready_p, seed):
    n = 300
    r = run_skid(W, n, valid_p, ready_p, 0.0, seed)
    assert r["got"] == list(range(n)) and not r["dropped"]
    assert r["most"] == 2           # the spare was used (the consumer stalled a full buffer)


def test_skid_one_word_a_clock():
    n = 200
    r = run_skid(16, n, 1.0, 1.0, 0.0, 5)
    assert r["got"] == list(range(n))
    assert r["clocks"] <= n + 2     # latency 1, throughput one word a clock


def test_skid_flush_drops_waiting_words():
    n = 400
    r = run_skid(8, n, 0.8, 0.4, 0.08, 6)
    got, dropped = r["got"], r["dropped"]
    assert sorted(got + dropped) == list(range(n))     # each word delivered or dropped, once
    assert got == sorted(got)
    assert len(dropped) > 20                           # flushes met full buffers


# ------------------------------------------------------------------------------ Replay

class StoreModel:
    """The sample store as the replay sees it: a synchronous single-port RAM whose output is
    the word read in the previous clock and garbage in any other (a UP5K SPRAM does not
    hold it)."""

    def __init__(self, dut, depth, W, rng):
        self.dut, self.W, self.rng = dut, W, rng
        self.mem = [rng.getrandbits(W) for _ in range(depth)]
        self.pending = None

    def drive(self, ctx):
        """At the start of a clock: the output of the last clock's read."""
        value = self.mem[self.pending] if self.pending is not None else self.rng.getrandbits(self.W)
        ctx.set(self.dut.rdata, value)

    def sample(self, ctx):
        """Before the clock edge: the port's request."""
        we, re = ctx.get(self.dut.we), ctx.get(self.dut.re)
        assert not (we and re), "store read and written in one clock"
        addr = ctx.get(self.dut.addr)
        if we:
            self.mem[addr] = ctx.get(self.dut.wdata)
        self.pending = addr if re else None


@pytest.mark.parametrize("W,depth,n,epochs,ready_p,seed", [
    (8, 16, 16, 3, 0.6, 1),         # the whole store
    (32, 64, 1, 5, 0.5, 2),         # one word per epoch
    (16, 64, 2, 4, 1.0, 3),         # two words, the feed always ready
    (8, 32, 7, 3, 0.3, 4),
    (16, 32, 11, 2, 1.0, 5),
])
def test_replay_epochs_in_order_then_stop(W, depth, n, epochs, ready_p, seed):
    rng = random.Random(seed)
    dut = Replay(W, depth, 32)
    data = [rng.getrandbits(W) for _ in range(n)]
    store = StoreModel(dut, depth, W, rng)

    async def clock(ctx, ready, idle=1):
        """One clock with the feed's ready; returns (word taken or None, busy, replay_done)."""
        store.drive(ctx)
        ctx.set(dut.o_stream.ready, int(ready))
        ctx.set(dut.idle, idle)
        store.sample(ctx)
        word = ctx.get(dut.o_stream.payload) if ready and ctx.get(dut.o_stream.valid) else None
        busy, done = ctx.get(dut.busy), ctx.get(dut.replay_done)
        await ctx.tick()
        return word, busy, done

    async def pulse(ctx, port):
        ctx.set(port, 1)
        r = await clock(ctx, False)
        ctx.set(port, 0)
        return r

    async def bench(ctx):
        ctx.set(dut.feed_busy, 0)
        # STORE: words written through the replay's port (it owns the store), random gaps.
        for a, w in enumerate(data):
            while rng.random() < 0.3:
                await clock(ctx, False)
            ctx.set(dut.wr, 1)
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, w)
            assert ctx.get(dut.we) and ctx.get(dut.addr) == a and ctx.get(dut.wdata) == w
            await clock(ctx, False)
            ctx.set(dut.wr, 0)
        assert store.mem[:n] == data
        ctx.set(dut.store_len, n)
        for _ in range(2):
            await clock(ctx, False)

        # REPLAY epochs: the words in order, epochs times; the count and busy follow.
        ctx.set(dut.epochs, epochs)
        _, busy, _ = await pulse(ctx, dut.start)
        got, dones, clocks, first_word = [], [], 0, None
        last_take = None
        while len(got) < n * epochs:
            clocks += 1
            assert clocks < 50 * n * epochs + 50, "replay stuck"
            word, busy, done = await clock(ctx, rng.random() < ready_p, idle=0)
            assert busy, "busy dropped before the last word was taken"
            dones.append(done)
            if word is not None:
                got.append(word)
                first_word = first_word or clocks
                last_take = clocks
            # an epoch is counted once its words are read: at most two on their way
            assert done * n <= len(got) + 2
        assert got == data * epochs
        if ready_p == 1.0:
            assert last_take - first_word + 1 == n * epochs    # a word a clock
        # The end: busy drops, no word more; the time runs until the engine is idle too.
        idle_after = rng.randrange(0, 6)
        end = None
        for k in range(20):
            word, busy, done = await clock(ctx, True, idle=int(k >= idle_after))
            clocks += 1
            dones.append(done)
            assert word is None, "a word after the replay's last"
            if not busy and k >= idle_after and end is None:
                end = clocks
        assert not busy and dones[-1] == epochs
        assert all(b - a in (0, 1) for a, b in zip([0] + dones, dones))
        assert ctx.get(dut.replay_cycles) == end    # from the clock after start to the end

        # A long replay stopped: the words taken before it are a prefix, none after it.
        ctx.set(dut.epochs, 40)
        await pulse(ctx, dut.start)
        got, stop_at = [], rng.randrange(1, 3 * n + 2)
        while len(got) < stop_at:
            word, busy, done = await clock(ctx, rng.random() < ready_p)
            got += [] if word is None else [word]
        ctx.set(dut.stop, 1)
        word, _, _ = await clock(ctx, rng.random() < ready_p)
        ctx.set(dut.stop, 0)
        got += [] if word is None else [word]
        assert got == (data * 40)[:len(got)]
        stopped_done = ctx.get(dut.replay_done)
        for _ in range(3 * n + 10):
            word, busy, done = await clock(ctx, True)
            assert word is None and not busy and done == stopped_done
        assert stopped_done <= len(got) // n + 1

        # and the next replay starts from the store's first word
        ctx.set(dut.epochs, 1)
        await pulse(ctx, dut.start)
        got = []
        for _ in range(20 * n + 20):
            word, busy, done = await clock(ctx, rng.random() < ready_p)
            got += [] if word is None else [word]
        assert got == data and not busy and ctx.get(dut.replay_done) == 1

    simulate(dut, bench)


# ------------------------------------------------------------------------------ Responder

def response_body(seq, cmd, ok, status, data=b""):
    """The response frame's body before its CRC (zipml.hw.protocol): seq, cmd | ACK (NAK | ACK
    for a bad frame), payload length u16 LE, status, data."""
    payload = bytes([status]) + bytes(data)
    rcmd = (cmd | P.ACK) if ok else (C.NAK | P.ACK)
    body = bytes([seq, rcmd]) + len(payload).to_bytes(2, "little") + payload
    frame = P.Frame.decode(body + P.crc16(body).to_bytes(2, "big"))     # a protocol frame
    assert (frame.seq, frame.cmd, frame.payload) == (seq, rcmd, payload)
    return body


@pytest.mark.parametrize("max_payload,latency,seed", [(256, 4, 1), (1024, 1, 2), (64, 12, 3)])
def test_responder_bodies(max_payload, latency, seed):
    rng = random.Random(seed)
    max_count = (max_payload - 1) // 4
    dut = Responder(max_payload, latency)
    model = [rng.getrandbits(32) for _ in range(max_count + 8)]
    kinds = ["status", "read_reg", "read_model", "nak"] * 4 + ["read_model_max"]
    rng.shuffle(kinds)

    async def bench(ctx):
        maddr, history = 0, []          # the command unit's model address, per clock

        async def clock(ready, answer):
            """One clock; returns (byte, last) taken, done, model_next."""
            nonlocal maddr
            history.append(maddr)
            old = history[-1 - latency] if len(history) > latency else None
            ctx.set(dut.model_rdata, model[old] if old is not None and old < len(model)
                    else rng.getrandbits(32))
            ctx.set(dut.o_stream.ready, int(ready))
            ctx.set(dut.answer, int(answer))
            took = None
            if ready and ctx.get(dut.o_stream.valid):
                took = (ctx.get(dut.o_stream.payload.data), ctx.get(dut.o_stream.payload.last))
            done, nxt = ctx.get(dut.done), ctx.get(dut.model_next)
            await ctx.tick()
            maddr += nxt
            return took, done, nxt

        for kind in kinds:
            seq, cmd, ok = rng.randrange(256), rng.choice(list(C)[:-1]), 1
            data, status, count, base = b"", rng.choice(list(S)), 1, 0
            if kind == "read_reg":
                cmd, status, value = C.READ_REG, S.OK, rng.getrandbits(32)
                data = value.to_bytes(4, "little")
            elif kind.startswith("read_model"):
                cmd, status = C.READ_MODEL, S.OK
                count = max_count if kind == "read_model_max" else rng.randrange(1, max_count + 1)
                base = rng.randrange(0, len(model) - count + 1)
                data = b"".join(w.to_bytes(4, "little") for w in model[base:base + count])
            elif kind == "nak":
                cmd, ok, status = rng.randrange(256), 0, S.BAD_FRAME
            want = response_body(seq, cmd, ok, status, data)
            # JUDGE: the answer set up, the register read and the count taken (prepare);
            # the command unit's model address at the base.
            ctx.set(dut.header, {"ok": ok, "seq": seq, "cmd": cmd,
                                 "length": rng.randrange(max_payload + 1)})
            ctx.set(dut.resp_status, status)
            ctx.set(dut.resp_len, 1 + len(data))
            ctx.set(dut.has_data, int(bool(data)))
            ctx.set(dut.read_model, int(cmd == C.READ_MODEL and ok))
            ctx.set(dut.reg_rdata, int.from_bytes(data, "little") if kind == "read_reg"
                    else rng.getrandbits(32))
            ctx.set(dut.count, count if cmd == C.READ_MODEL else rng.randrange(max_count + 1))
            ctx.set(dut.prepare, 1)
            maddr = base
            await clock(False, False)
            ctx.set(dut.prepare, 0)
            ctx.set(dut.reg_rdata, rng.getrandbits(32))     # taken at prepare
            for _ in range(rng.randrange(3)):
                took, done, _ = await clock(True, False)
                assert took is None and not done
            # ANSWER until done; the command unit leaves ANSWER the clock after.
            got, nexts = [], 0
            for t in range(40 * len(want) + 50):
                took, done, nxt = await clock(rng.random() < 0.5, True)
                nexts += nxt
                if took is not None:
                    assert not done
                    got.append(took)
                if done:
                    break
            else:
                raise AssertionError(f"{kind}: no done after {len(got)} bytes")
            assert bytes(b for b, _ in got) == want, kind
            assert [last for _, last in got] == [0] * (len(want) - 1) + [1]
            assert nexts == (count if kind.startswith("read_model") else 0)
            for _ in range(4):
                took, done, nxt = await clock(True, False)
                assert took is None and not done and not nxt

    simulate(dut, bench)


# ------------------------------------------------------------------------------ Evaluator

EFFECT = {C.WRITE_REG, C.STREAM, C.STORE, C.REPLAY, C.WRITE_MODEL}   # docs/link.md, "effect"


def expected_answer(cfg, c):
    """(status, response payload length) of command ``c`` by docs/link.md: the protocol's
    table, and the order of faults (DUPLICATE, BAD_CMD, BAD_LEN, BUSY for STREAM, STORE and
    REPLAY, BAD_ADDR, BUSY for the others)."""
    W, D_MAX, depth, max_payload = cfg["W"], cfg["D_MAX"], cfg["depth"], cfg["max_payload"]
    wb, max_count = W // 8, (max_payload - 1) // 4
    cmd, n = c["cmd"], c["length"]
    if cmd in EFFECT and c["last_seq"] == c["seq"]:
        return S.DUPLICATE, 1
    if cmd not in KNOWN:
        return S.BAD_CMD, 1
    count, base = c["model_count"], c["model_base"]
    len_ok = {
        C.PING: True,
        C.READ_REG: n == 1,
        C.WRITE_REG: n == 5,
        C.STREAM: n > 0 and n % wb == 0,
        C.STORE: n > 0 and n % wb == 0,
        C.REPLAY: n == 2,
        C.READ_MODEL: n == 4 and 1 <= count <= max_count,
        C.WRITE_MODEL: n >= 6 and (n - 2) % 4 == 0,
    }[cmd]
    if not len_ok:
        return S.BAD_LEN, 1
    reg = P.REGISTER_BY_ADDR.get(c["addr"])
    addr_bad = {
        C.READ_REG: reg is None,
        C.WRITE_REG: reg is None or reg.access is P.Access.RO,
        C.STORE: c["store_wptr"] + n // wb > depth,
        C.REPLAY: not 1 <= c["store_len"] <= depth,
        C.READ_MODEL: base + count > D_MAX,
        C.WRITE_MODEL: base + (n - 2) // 4 > D_MAX,
    }.get(cmd, False)
    busy = ((cmd in (C.STREAM, C.STORE, C.REPLAY, C.READ_MODEL, C.WRITE_MODEL)
             and c["replay_busy"])
            or (cmd in (C.STREAM, C.REPLAY) and not c["enable"])
            or (cmd in (C.READ_MODEL, C.WRITE_MODEL) and not c["idle"]))
    if busy and cmd in (C.STREAM, C.STORE, C.REPLAY):
        return S.BUSY, 1
    if addr_bad:
        return S.BAD_ADDR, 1
    if busy:
        return S.BUSY, 1
    if cmd == C.READ_REG:
        return S.OK, 5
    if cmd == C.READ_MODEL:
        return S.OK, 1 + 4 * count
    return S.OK, 1


def random_command(rng, cfg):
    """A command made well formed for a state where it passes, then given faults at random
    (a repeated seq, a wrong length, an address out of range, each of the busy states),
    several at a time, so that the order of faults is exercised."""
    W, D_MAX, depth, max_payload = cfg["W"], cfg["D_MAX"], cfg["depth"], cfg["max_payload"]
    wb, max_count = W // 8, (max_payload - 1) // 4
    known = [c for c in C if c is not C.NAK]
    cmd = rng.choice(known * 4 + [0x00, 0x09, C.NAK, rng.randrange(256)])
    seq = rng.randrange(256)
    words = rng.randrange(1, max_payload // wb + 1)
    k = rng.randrange(1, (max_payload - 2) // 4 + 1)          # WRITE_MODEL words
    count = rng.randrange(1, max_count + 1)
    length = {C.PING: rng.randrange(8), C.READ_REG: 1, C.WRITE_REG: 5, C.STREAM: words * wb,
              C.STORE: words * wb, C.REPLAY: 2, C.READ_MODEL: 4,
              C.WRITE_MODEL: 2 + 4 * k}.get(cmd, rng.randrange(12))
    model_words = count if cmd == C.READ_MODEL else k
    c = {
        "cmd": int(cmd), "seq": seq,
        "last_seq": rng.choice([None, (seq + rng.randrange(1, 256)) % 256]),
        "length": length,
        "addr": rng.choice([r.addr for r in P.REGISTERS if cmd != C.WRITE_REG
                            or r.access is not P.Access.RO]),
        "model_base": rng.randrange(max(1, D_MAX - model_words + 1)), "model_count": count,
        "store_wptr": rng.randrange(max(1, depth - words + 1)) if words <= depth else 0,
        "store_len": rng.randrange(1, depth + 1),
        "enable": True, "idle": True, "replay_busy": False,
    }
    if rng.random() < 0.3:
        c["last_seq"] = seq
    if rng.random() < 0.3:                      # a wrong length (or a count out of range)
        if cmd == C.READ_MODEL and rng.random() < 0.5:
            c["model_count"] = rng.choice([0, max_count + 1, rng.getrandbits(16)])
        else:
            c["length"] = rng.choice([0, 1, 2, 4, 5, 6, length - 1, length + 1, length + wb,
                                      length + 4, rng.randrange(max_payload + 1)]
                                     ) % (max_payload + 1)
    if rng.random() < 0.3:                      # an address out of range
        unmapped = [a for a in range(256) if a not in P.REGISTER_BY_ADDR]
        read_only = [r.addr for r in P.REGISTERS if r.access is P.Access.RO]
        c["addr"] = rng.choice(unmapped + (read_only if cmd == C.WRITE_REG else []))
        c["store_len"] = rng.choice([0, depth + 1, rng.getrandbits(32)])
        c["store_wptr"] = rng.choice([depth - words + 1, depth, rng.randrange(depth),
                                      rng.getrandbits(32)])
        c["model_base"] = rng.choice([max(0, D_MAX - model_words + 1), D_MAX - 1,
                                      rng.getrandbits(16)])
    c["enable"] = rng.random() > 0.25
    c["idle"] = rng.random() > 0.25
    c["replay_busy"] = rng.random() < 0.25
    return c


# Faults together: the status the order of faults gives (docs/link.md, evaluate.py JUDGE).
PRECEDENCE_CASES = [
    # duplicate first, even of a command with a bad length, while busy
    (dict(cmd=C.WRITE_REG, length=3, last_seq="seq", replay_busy=True), S.DUPLICATE),
    (dict(cmd=C.STORE, length=0, last_seq="seq"), S.DUPLICATE),
    # a read repeating the seq is executed again
    (dict(cmd=C.READ_REG, length=1, addr=0x00, last_seq="seq"), S.OK),
    (dict(cmd=0x42, length=7, last_seq="seq"), S.BAD_CMD),
    # bad length before busy and bad address
    (dict(cmd=C.STREAM, length=0, enable=False, replay_busy=True), S.BAD_LEN),
    (dict(cmd=C.READ_MODEL, length=4, model_count=0, idle=False), S.BAD_LEN),
    (dict(cmd=C.READ_REG, length=2, addr=0xFF), S.BAD_LEN),
    # STREAM, STORE, REPLAY: busy before a bad address
    (dict(cmd=C.STORE, length=8, store_wptr="past", replay_busy=True), S.BUSY),
    (dict(cmd=C.REPLAY, length=2, store_len=0, replay_busy=True), S.BUSY),
    (dict(cmd=C.REPLAY, length=2, store_len=0, enable=False), S.BUSY),
    # model access: a bad address before busy
    (dict(cmd=C.READ_MODEL, length=4, model_count=3, model_base="past", idle=False), S.BAD_ADDR),
    (dict(cmd=C.WRITE_MODEL, length=10, model_base="past", replay_busy=True), S.BAD_ADDR),
    (dict(cmd=C.WRITE_REG, length=5, addr=P.REGISTER_BY_NAME["status"].addr), S.BAD_ADDR),
    (dict(cmd=C.WRITE_REG, length=5, addr=P.REGISTER_BY_NAME["seed_hi"].addr), S.OK),
    (dict(cmd=C.STREAM, length=8, enable=False), S.BUSY),
    (dict(cmd=C.STORE, length=8, enable=False), S.OK),     # STORE needs no enable
    (dict(cmd=C.PING, length=9, replay_busy=True, enable=False, idle=False), S.OK),
]


def run_evaluator(cfg, cases, narrow):
    """Judge each case; returns [(case, (status, resp_len, has_data, fail))]."""
    depth = cfg["depth"]
    sbits = depth.bit_length()
    store_bits = sbits + 1 if narrow else 32
    dut = Evaluator(cfg["W"], cfg["D_MAX"], depth, store_bits, cfg["max_payload"])
    out = []

    def store_reg(v):
        """What the register file holds for a written value: the whole of it, or (narrowed)
        the address bits and one bit for any bit above them."""
        return v if not narrow else (v & ((1 << sbits) - 1)) | (int(v >> sbits != 0) << sbits)

    async def bench(ctx):
        for c in cases:
            reg = P.REGISTER_BY_ADDR.get(c["addr"])
            ctx.set(dut.is_cmd, cmd_flags(c["cmd"]))
            ctx.set(dut.seq, c["seq"])
            ctx.set(dut.length, c["length"])
            ctx.set(dut.last_seq, 0x100 if c["last_seq"] is None else c["last_seq"])
            ctx.set(dut.model_base, c["model_base"])
            ctx.set(dut.model_count, c["model_count"])
            ctx.set(dut.store_wptr, store_reg(c["store_wptr"]))
            ctx.set(dut.store_len, store_reg(c["store_len"]))
            ctx.set(dut.readable, int(reg is not None))
            ctx.set(dut.writable, int(reg is not None and reg.access is not P.Access.RO))
            for port in ("enable", "idle", "replay_busy"):
                ctx.set(getattr(dut, port), int(c[port]))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            steps = []
            for _ in range(4):
                steps.append(tuple(ctx.get(getattr(dut, s))
                                   for s in ("check", "bound", "judge", "decode")))
                if steps[-1][1]:
                    assert ctx.get(dut.latch) == int(c["cmd"] == C.READ_REG
                                                     and c["length"] == 1)
                await ctx.tick()
            assert steps == [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]
            out.append((c, (ctx.get(dut.resp_status), ctx.get(dut.resp_len),
                            ctx.get(dut.has_data), ctx.get(dut.fail))))
            assert not any(ctx.get(getattr(dut, s)) for s in ("check", "bound", "judge",
                                                                 "decode"))
            if len(out) % 16 == 0:
                # a bad frame's answer: BAD_FRAME, no data
                ctx.set(dut.bad_frame, 1)
                await ctx.tick()
                ctx.set(dut.bad_frame, 0)
                assert (ctx.get(dut.resp_status), ctx.get(dut.resp_len),
                        ctx.get(dut.has_data)) == (S.BAD_FRAME, 1, 0)

    simulate(dut, bench)
    return out


EVAL_CONFIGS = [
    pytest.param(dict(W=8, D_MAX=64, depth=16384, max_payload=256), id="link_system"),
    pytest.param(dict(W=32, D_MAX=1024, depth=1000, max_payload=256, narrow=True),
                 id="wide_narrowed"),
    pytest.param(dict(W=64, D_MAX=512, depth=4096, max_payload=128), id="w64"),
    # tests/test_device_build.py's STORE_DEPTH = 64 at W = 8 (256 words fit in one frame)
    pytest.param(dict(W=8, D_MAX=64, depth=64, max_payload=256), id="small_store"),
    # a model smaller than a frame's words
    pytest.param(dict(W=8, D_MAX=16, depth=16384, max_payload=256), id="small_model"),
]


@pytest.mark.parametrize("cfg", EVAL_CONFIGS)
def test_evaluator_status_by_protocol_table(cfg):
    cfg = dict(cfg)
    narrow = cfg.pop("narrow", False)
    rng = random.Random(repr(sorted(cfg.items())))
    n_random = 800
    cases = [random_command(rng, cfg) for _ in range(n_random)]
    # a frame full of words at the store's last address: past it
    wb = cfg["W"] // 8
    cases.append(dict(random_command(rng, cfg), cmd=int(C.STORE), last_seq=None,
                      length=cfg["max_payload"] // wb * wb, store_wptr=cfg["depth"] - 1,
                      replay_busy=False))
    base = random_command(rng, cfg)
    for over, _ in PRECEDENCE_CASES:
        c = dict(base, enable=True, idle=True, replay_busy=False, last_seq=None,
                 model_count=2, store_len=1, store_wptr=0, model_base=0,
                 addr=P.REGISTER_BY_NAME["d"].addr)
        c.update(over)
        c["cmd"] = int(c["cmd"])
        if c["last_seq"] == "seq":
            c["last_seq"] = c["seq"]
        if c["store_wptr"] == "past":
            c["store_wptr"] = cfg["depth"] - c["length"] // (cfg["W"] // 8) + 1
        if c["model_base"] == "past":
            c["model_base"] = cfg["D_MAX"] - 1
        cases.append(c)
    results = run_evaluator(cfg, cases, narrow)
    wrong = []
    for c, (status, resp_len, has_data, fail) in results:
        want_status, want_len = expected_answer(cfg, c)
        got = (S(status), resp_len, has_data, fail)
        want = (want_status, want_len, int(want_len > 1), int(want_status != S.OK))
        if got != want:
            wrong.append((c, got, want))
    assert not wrong, f"{len(wrong)} of {len(results)} judged wrong, first: {wrong[:3]}"
    for (over, want), (c, (status, *_)) in zip(PRECEDENCE_CASES,
                                               results[-len(PRECEDENCE_CASES):]):
        assert S(status) == want, (over, c)         # the table's order, stated by hand too
    # the random commands met every status
    seen = {expected_answer(cfg, c)[0] for c, _ in results[:n_random]}
    assert seen == set(S) - {S.BAD_FRAME}


# ------------------------------------------------------------------------------ RegisterFile

def caps_by_hand(L2, arch, counter_bits, stall, link_bits, readback):
    """docs/link.md's caps layout: bit 0 L2, 1 no stall, 2 no readback, 8..11 architecture,
    16..21 counter width (0: 48), 24..28 link counter width (0: 16)."""
    return (int(L2) | (not stall) << 1 | (not readback) << 2 | arch << 8
            | (0 if counter_bits == 48 else counter_bits) << 16
            | (0 if link_bits == 16 else link_bits) << 24)


def random_params(rng):
    """The param_* registers' values (random: the register file reads what it is given)."""
    return {r.name: rng.getrandbits(32) for r in P.REGISTERS if r.name.startswith("param_")}


class RegisterBus:
    """A command's use of the register file, clock by clock as `System` drives it: CHECK
    decodes the address, BOUND takes the read (and the counter latch for READ_REG), WRITE_REG
    writes, WRITE_CTRL follows for ctrl."""

    def __init__(self, rf, ctx):
        self.rf, self.ctx = rf, ctx

    async def access(self, addr, write=None, read_reg=True):
        rf, ctx = self.rf, self.ctx
        ctx.set(rf.addr, addr)
        ctx.set(rf.wvalue, write or 0)
        ctx.set(rf.check, 1)
        await ctx.tick()
        ctx.set(rf.check, 0)
        readable, writable = ctx.get(rf.readable), ctx.get(rf.writable)
        ctx.set(rf.read, 1)
        ctx.set(rf.latch, int(read_reg))
        await ctx.tick()
        ctx.set(rf.read, 0)
        ctx.set(rf.latch, 0)
        value = ctx.get(rf.rdata)
        if write is not None:
            assert writable
            await self.write(write)
        return readable, writable, value

    async def write(self, value):
        rf, ctx = self.rf, self.ctx
        ctx.set(rf.wvalue, value)
        ctx.set(rf.write, 1)
        await ctx.tick()
        ctx.set(rf.write, 0)
        if ctx.get(rf.sel_ctrl):
            ctx.set(rf.write_ctrl, 1)
            await ctx.tick()
            ctx.set(rf.write_ctrl, 0)

    async def read(self, name):
        return (await self.access(P.REGISTER_BY_NAME[name].addr))[2]


@pytest.mark.parametrize("readback,counter_bits,stall,seed", [
    (True, 48, True, 1), (False, 32, False, 2), (True, 40, True, 3)])
def test_register_file_map(readback, counter_bits, stall, seed):
    rng = random.Random(seed)
    depth = rng.choice([64, 1000, 16384])
    sbits = depth.bit_length()
    params = random_params(rng)
    counters = {name: counter_bits for name in ("cycles", "samples", "words", "stall_cycles")
                if stall or name != "stall_cycles"}
    L2, arch = rng.random() < 0.5, rng.randrange(2)
    rf = RegisterFile(params, counters, depth, L2=L2, arch_code=arch, readback=readback)
    constants = {"id": P.ID_MAGIC, **params,
                 "caps": caps_by_hand(L2, arch, counter_bits, stall, 16, readback)}

    def held(name, v):
        """What a configuration register holds after writing v."""
        r = P.REGISTER_BY_NAME[name]
        v &= r.mask
        if not readback and name in ("store_wptr", "store_len"):
            v = (v & ((1 << sbits) - 1)) | (int(v >> sbits != 0) << sbits)
        return v

    async def bench(ctx):
        bus = RegisterBus(rf, ctx)
        # every address: a register's is readable, a writable one unless read-only
        for addr in range(256):
            ctx.set(rf.addr, addr)
            ctx.set(rf.check, 1)
            await ctx.tick()
            r = P.REGISTER_BY_ADDR.get(addr)
            assert ctx.get(rf.readable) == (r is not None), hex(addr)
            assert ctx.get(rf.writable) == (r is not None and r.access is not P.Access.RO)
            assert ctx.get(rf.sel_ctrl) == (r is not None and r.name == "ctrl")
        ctx.set(rf.check, 0)
        for name, v in constants.items():
            assert await bus.read(name) == v, name
        # configuration registers: all written, then all read (no cross-talk)
        written = {name: rng.choice([rng.getrandbits(32), 0xFFFFFFFF, 0,
                                     rng.getrandbits(P.REGISTER_BY_NAME[name].width)])
                   for name in P.CONFIG_REGISTERS}
        for name, v in written.items():
            await bus.access(P.REGISTER_BY_NAME[name].addr, write=v)
        for name, v in written.items():
            assert ctx.get(getattr(rf, name)) == held(name, v), name
            assert await bus.read(name) == (held(name, v) if readback else 0), name
        # the store pointer moves on with each STORE word, on its address bits
        w = rng.randrange(depth - 8)
        await bus.access(P.REGISTER_BY_NAME["store_wptr"].addr, write=w)
        k = rng.randrange(1, 8)
        ctx.set(rf.store_wr, 1)
        for _ in range(k):
            await ctx.tick()
        ctx.set(rf.store_wr, 0)
        await ctx.tick()
        assert ctx.get(rf.store_wptr) == w + k
        # read-only inputs of the system read through (up to their width)
        for name in ("status", "replay_done", "replay_cycles"):
            v = rng.getrandbits(P.REGISTER_BY_NAME[name].width)
            ctx.set(getattr(rf, name), v)
            assert await bus.read(name) == v, name
        # write-only seed halves: a one-clock load strobe with the value beside it; read 0
        for bit, name in enumerate(("seed_lo", "seed_hi")):
            v = rng.getrandbits(32)
            await bus.access(P.REGISTER_BY_NAME[name].addr, write=v)
            assert ctx.get(rf.seed_load) == 1 << bit and ctx.get(rf.wvalue) == v
            await ctx.tick()
            assert ctx.get(rf.seed_load) == 0
            assert await bus.read(name) == 0
        # engine counters: the low word latches the high word, which the high read returns
        for name in ("cycles", "samples", "words", "stall_cycles"):
            lo_r, hi_r = P.COUNTERS[name]
            if name not in counters:
                assert await bus.read(lo_r.name) == 0 and await bus.read(hi_r.name) == 0
                continue
            v = rng.getrandbits(counter_bits)
            ctx.set(getattr(rf, name), v)
            assert await bus.read(lo_r.name) == v & 0xFFFFFFFF
            ctx.set(getattr(rf, name), rng.getrandbits(counter_bits))  # runs on
            assert await bus.read(hi_r.name) == v >> 32, name          # 0 up to 32 bits
            # a register read that is not a READ_REG (another command's BOUND) latches nothing
            await bus.access(lo_r.addr, read_reg=False)
            assert await bus.read(hi_r.name) == v >> 32

    simulate(rf, bench)


def test_register_file_ctrl_strobes_and_bad_seen():
    rng = random.Random(7)
    rf = RegisterFile(random_params(rng), {"cycles": 48}, 256, L2=True, arch_code=0)
    ctrl = P.REGISTER_BY_NAME["ctrl"]

    async def bench(ctx):
        bus = RegisterBus(rf, ctx)
        enable = 0
        ctx.set(rf.frame_bad, 1)
        await ctx.tick()
        ctx.set(rf.frame_bad, 0)
        bad_seen = 1
        for _ in range(24):
            v = rng.getrandbits(32)
            bits = v & 0b111
            await bus.access(ctrl.addr)              # CHECK, BOUND
            ctx.set(rf.wvalue, v)
            ctx.set(rf.write, 1)                     # WRITE_REG
            await ctx.tick()
            ctx.set(rf.write, 0)
            # the strobes: one clock, the clock after WRITE_REG; enable one clock later
            assert ctx.get(rf.sel_ctrl)
            assert (ctx.get(rf.clear), ctx.get(rf.stop)) == (bits >> 1 & 1, bits >> 2 & 1)
            assert ctx.get(rf.enable) == enable
            if bits & P.CTRL_CLEAR:
                bad_seen = 0
            assert ctx.get(rf.bad_seen) == bad_seen
            ctx.set(rf.write_ctrl, 1)                # WRITE_CTRL
            await ctx.tick()
            ctx.set(rf.write_ctrl, 0)
            enable = bits & 1
            for _ in range(rng.randrange(1, 4)):
                assert (ctx.get(rf.clear), ctx.get(rf.stop)) == (0, 0)
                assert ctx.get(rf.enable) == enable
                await ctx.tick()
            # ctrl reads back the enable bit only (clear and stop are strobes)
            assert await bus.read("ctrl") == enable
            if rng.random() < 0.4:
                ctx.set(rf.frame_bad, 1)
                await ctx.tick()
                ctx.set(rf.frame_bad, 0)
                bad_seen = 1
            assert ctx.get(rf.bad_seen) == bad_seen

    simulate(rf, bench)


@pytest.mark.parametrize("link_bits,clocks", [(3, 200), (8, 700), (None, 700)])
def test_register_file_link_counters_wrap(link_bits, clocks):
    rng = random.Random(link_bits or 16)
    rf = RegisterFile(random_params(rng), {"cycles": 32}, 256, L2=False, arch_code=1,
                      link_bits=link_bits)
    events = {"rx_ok": "frame_ok", "rx_bad": "frame_bad", "rx_overrun": "overrun",
              "rx_uart_err": "uart_error"}          # docs/link.md's register table
    bits = link_bits or 16

    async def bench(ctx):
        bus = RegisterBus(rf, ctx)
        counts = dict.fromkeys(events, 0)
        p = {name: rng.uniform(0.3, 0.9) for name in events}
        for _ in range(clocks):
            for name, port in events.items():
                on = rng.random() < p[name]
                ctx.set(getattr(rf, port), int(on))
                counts[name] += on
            await ctx.tick()
        for port in events.values():
            ctx.set(getattr(rf, port), 0)
        for name in events:
            assert await bus.read(name) == counts[name] % (1 << bits), name
        if link_bits:
            assert any(c >= 1 << bits for c in counts.values())     # wrapped
        else:
            assert any(c > 255 for c in counts.values())            # 16 bits, not 8
        caps = await bus.read("caps")
        assert caps >> 24 & 0x1F == (0 if bits == 16 else bits)

    simulate(rf, bench)


# ------------------------------------------------------------------------------ CommandUnit

def random_frame(rng, W, D_MAX, max_payload):
    """(ok, seq, cmd, payload, fail, sel_ctrl) of a frame for the command unit: well formed
    for its command when the stand-in evaluator passes it."""
    wb = W // 8
    cmd = rng.choice([C.PING, C.READ_REG, C.WRITE_REG, C.STREAM, C.STREAM, C.STORE, C.STORE,
                      C.REPLAY, C.READ_MODEL, C.WRITE_MODEL, C.WRITE_MODEL, 0x33])
    ok = rng.random() > 0.1
    fail = cmd == 0x33 or rng.random() < 0.15
    sel_ctrl = False
    if cmd in (C.STREAM, C.STORE):
        payload = rng.randbytes(wb * rng.randrange(1, min(9, max_payload // wb + 1)))
    elif cmd == C.WRITE_MODEL:
        k = rng.randrange(1, 6)
        payload = rng.randrange(D_MAX - k + 1).to_bytes(2, "little") + rng.randbytes(4 * k)
    elif cmd == C.READ_MODEL:
        payload = rng.randrange(D_MAX).to_bytes(2, "little") + rng.randrange(1, 9).to_bytes(
            2, "little")
    elif cmd == C.WRITE_REG:
        sel_ctrl = rng.random() < 0.4
        payload = bytes([P.REGISTER_BY_NAME["ctrl" if sel_ctrl else "d"].addr]) + rng.randbytes(4)
    elif cmd == C.READ_REG:
        payload = bytes([rng.randrange(256)])
    elif cmd == C.REPLAY:
        payload = rng.randbytes(2)
    else:
        payload = rng.randbytes(rng.randrange(8))
    if fail and rng.random() < 0.5:
        payload = rng.randbytes(rng.randrange(12))      # a refused command: any length
    return ok, rng.randrange(256), int(cmd), payload, fail, sel_ctrl


@pytest.mark.parametrize("W,seed", [(8, 1), (32, 2), (64, 3)])
def test_command_unit_frames(W, seed):
    rng = random.Random(seed)
    D_MAX, max_payload = 128, 256
    wb = W // 8
    dut = CommandUnit(W, D_MAX, max_payload)
    frames = [random_frame(rng, W, D_MAX, max_payload) for _ in range(24)]
    frames.insert(0, (1, 5, int(C.STREAM), rng.randbytes(4 * wb), False, False))
    frames.insert(1, (1, 5, int(C.PING), b"", False, False))

    async def bench(ctx):
        last_seq = 0x100                            # none yet
        prev_addr = None
        for ok, seq, cmd, payload, fail, sel_ctrl in frames:
            buf = bytes(payload) + rng.randbytes(max_payload + 1 - len(payload))  # + stale bytes
            ctx.set(dut.frame.payload, {"ok": int(ok), "seq": seq, "cmd": cmd,
                                        "length": len(payload)})
            ctx.set(dut.frame.valid, 1)
            rec = dict(ok=0, bad=0, evaluate=0, words=[], store=[], model=[], replay=0,
                       write=0, write_ctrl=0, answer_at=None, last_word_at=None)
            eval_at, answer_for = None, rng.randrange(1, 5)
            for t in range(20 * max_payload + 200):
                # the receive buffer's synchronous read port
                ctx.set(dut.rd_data, buf[prev_addr] if prev_addr is not None
                        else rng.randrange(256))
                # the stand-in evaluator: CHECK, BOUND, JUDGE, DECODE after `evaluate`
                ctx.set(dut.judge, int(eval_at is not None and t == eval_at + 3))
                ctx.set(dut.decode, int(eval_at is not None and t == eval_at + 4))
                ctx.set(dut.fail, int(fail))
                ctx.set(dut.sel_ctrl, int(sel_ctrl and eval_at is not None and t > eval_at + 1))
                ready = rng.random() < 0.5
                ctx.set(dut.o_stream.ready, int(ready))
                ctx.set(dut.model_next, 0)
                # the responder: done a few clocks into ANSWER
                answering = ctx.get(dut.answer)
                if answering and rec["answer_at"] is None:
                    rec["answer_at"] = t
                ctx.set(dut.answered, int(answering and t >= rec["answer_at"] + answer_for))
                rec["ok"] += ctx.get(dut.frame_ok)
                rec["bad"] += ctx.get(dut.frame_bad)
                if ctx.get(dut.evaluate):
                    rec["evaluate"] += 1
                    eval_at = t
                    n = min(5, len(payload))
                    rec["args"] = ctx.get(dut.args.as_value()) & ((1 << 8 * n) - 1)
                    rec["is_cmd"] = {name: ctx.get(getattr(dut.is_cmd, name))
                                     for name in FLAG_NAMES}
                if ready and ctx.get(dut.o_stream.valid):
                    rec["words"].append(ctx.get(dut.o_stream.payload))
                    rec["last_word_at"] = t
                if ctx.get(dut.store_wr):
                    rec["store"].append(ctx.get(dut.args.word) & ((1 << W) - 1))
                if ctx.get(dut.model_we):
                    rec["model"].append((ctx.get(dut.model_addr),
                                         ctx.get(dut.args.word) & 0xFFFFFFFF))
                rec["replay"] += ctx.get(dut.replay_start)
                rec["write"] += ctx.get(dut.write)
                rec["write_ctrl"] += ctx.get(dut.write_ctrl)
                released = ctx.get(dut.frame.ready)
                prev_addr = ctx.get(dut.rd_addr)
                await ctx.tick()
                if released:
                    break
            else:
                raise AssertionError(f"frame {cmd:#x} never released")
            ctx.set(dut.frame.valid, 0)
            ctx.set(dut.answered, 0)
            for _ in range(2):                       # nothing more once released
                assert not any(ctx.get(getattr(dut, s)) for s in (
                    "answer", "replay_start", "store_wr", "model_we", "write", "write_ctrl",
                    "evaluate", "frame_ok", "frame_bad"))
                assert not ctx.get(dut.o_stream.valid)
                await ctx.tick()

            what = f"frame ok={ok} cmd={cmd:#x} fail={fail} len={len(payload)}"
            acts = not fail and ok
            assert (rec["ok"], rec["bad"]) == ((1, 0) if ok else (0, 1)), what
            assert rec["evaluate"] == int(bool(ok)), what
            assert rec["answer_at"] is not None, what
            if ok:
                n = min(5, len(payload))
                assert rec["args"] == int.from_bytes(payload[:n], "little"), what
                assert rec["is_cmd"] == cmd_flags(cmd), what
            words = [int.from_bytes(payload[i:i + wb], "little")
                     for i in range(0, len(payload), wb)]
            assert rec["words"] == (words if acts and cmd == C.STREAM else []), what
            if rec["words"]:
                assert rec["last_word_at"] < rec["answer_at"], "answered before the last word"
            assert rec["store"] == (words if acts and cmd == C.STORE else []), what
            if acts and cmd == C.WRITE_MODEL:
                base = int.from_bytes(payload[:2], "little")
                want = [(base + i, int.from_bytes(payload[2 + 4 * i:6 + 4 * i], "little"))
                        for i in range((len(payload) - 2) // 4)]
            else:
                want = []
            assert rec["model"] == want, what
            assert rec["replay"] == int(acts and cmd == C.REPLAY), what
            if acts and cmd == C.REPLAY:
                assert ctx.get(dut.args.epochs) == int.from_bytes(payload, "little")
            assert rec["write"] == int(acts and cmd == C.WRITE_REG), what
            assert rec["write_ctrl"] == int(acts and cmd == C.WRITE_REG and sel_ctrl), what
            if acts and cmd in EFFECT:
                last_seq = seq
            elif acts and cmd == C.PING:
                last_seq = 0x100
            assert ctx.get(dut.last_seq) == last_seq, what

    simulate(dut, bench)
