"""The store feed (`zipml.hw.store_feed`) in the Amaranth simulator against
`zipml.reference.store.feed`, bit for bit: random stored segments, random input valid gaps and
output backpressure, epochs in a row with the generator state carried, both widths of the
boards, every quantizer's register setting; and the generators alone against ``xorshift32`` (W <= 16)
and ``xorshift64``.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.store_feed import Generators, StoreFeed
from zipml.reference import pack, store
from zipml.reference.golden import EngineConfig, EngineRegs

pytestmark = pytest.mark.filterwarnings("error")


def stored_segment(rng, W, p, n, d, B):
    s = rng.integers(0, 1 << p, size=(n, d))
    L = rng.integers(-(1 << 26), 1 << 26, size=n)
    return pack.pack_segment(W, p, 1, s, L, B)


def seed_halves(seed):
    return seed & 0xFFFFFFFF, seed >> 32


def run_feed(W, regs, fregs, segments, seed, *, gap=0.3, stall=0.3, restart_between=True,
             rng_seed=0, load_seed=True):
    """Feed ``segments`` (one list of words per epoch) through a StoreFeed; returns the words
    it emitted per epoch. The seed is loaded once, at the start."""
    dut = StoreFeed(W, D_MAX=1024)
    rng = np.random.default_rng(rng_seed)
    out = []

    async def bench(ctx):
        for name in ("q", "mode", "d"):
            ctx.set(getattr(dut, name), int(getattr(regs, name)))
        ctx.set(dut.store_p, fregs.p)
        ctx.set(dut.store_round, fregs.round)
        if load_seed:
            lo, hi = seed_halves(seed)
            ctx.set(dut.seed, lo)
            ctx.set(dut.seed_load, 1)
            await ctx.tick()
            ctx.set(dut.seed, hi)
            ctx.set(dut.seed_load, 2)
            await ctx.tick()
            ctx.set(dut.seed_load, 0)
        await ctx.tick()
        for e, words in enumerate(segments):
            if restart_between or e == 0:
                ctx.set(dut.restart, 1)
                await ctx.tick()
                ctx.set(dut.restart, 0)
            got = []
            i = idle = 0
            while True:
                valid = i < len(words) and not (gap and rng.random() < gap)
                ready = not (stall and rng.random() < stall)
                ctx.set(dut.i_stream.valid, int(valid))
                ctx.set(dut.i_stream.payload, int(words[i]) if i < len(words) else 0)
                ctx.set(dut.o_stream.ready, int(ready))
                if valid and ctx.get(dut.i_stream.ready):
                    i += 1
                if ready and ctx.get(dut.o_stream.valid):
                    got.append(ctx.get(dut.o_stream.payload))
                busy = ctx.get(dut.busy)
                await ctx.tick()
                if i == len(words) and not busy:
                    idle += 1
                    if idle > 2:
                        break
                assert len(got) < 10 * len(words) + 100
            ctx.set(dut.i_stream.valid, 0)
            out.append(np.array(got, dtype=np.uint64))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def golden_epochs(W, regs, fregs, segments, seed):
    config = EngineConfig(W=W, D_MAX=1024, B_MAX=8, BUF_DEPTH=4096)
    states = store.seed_states(seed, W)
    out = []
    for words in segments:
        words_out, states = store.feed(config, regs, fregs, words, states)
        out.append(words_out)
    return out


def regs_for(q, mode, d, grid=1):
    return EngineRegs(q=q, mode=mode, d=d, step=1, step_shift=0, grid=grid)


CASES = [
    # W, p, q, mode, round, n, d, B
    (8, 8, 2, 0, 0, 7, 13, 1),     # double q=2 p=8
    (8, 8, 3, 1, 0, 6, 9, 2),      # naive
    (8, 8, 4, 1, 1, 5, 17, 1),     # deterministic
    (8, 8, 8, 1, 1, 5, 11, 3),     # full: q = p
    (8, 6, 5, 0, 0, 6, 8, 1),      # double, one remainder plane
    (8, 4, 4, 0, 0, 4, 7, 1),      # double, q = p: both carries 1
    (8, 12, 3, 0, 0, 4, 10, 2),    # p > 8
    (8, 5, 1, 0, 1, 5, 12, 1),     # double rounded: delta_grad = delta_dot
    (16, 8, 2, 0, 0, 5, 21, 1),    # W = 16: both copies from the xorshift32's 32 bits
    (32, 8, 2, 0, 0, 6, 40, 1),
    (32, 8, 3, 1, 0, 5, 33, 2),
    (32, 7, 4, 1, 1, 4, 20, 1),
    (32, 10, 10, 1, 1, 3, 65, 1),
]


@pytest.mark.parametrize("W,p,q,mode,rnd,n,d,B", CASES)
def test_feed_matches_golden(W, p, q, mode, rnd, n, d, B):
    rng = np.random.default_rng([W, p, q, mode, rnd, n, d])
    seg = stored_segment(rng, W, p, n, d, B)
    regs = regs_for(q, mode, d)
    fregs = store.FeedRegs(p=p, round=rnd)
    seed = store.check_seed(int(rng.integers(1, 1 << 63)) * 2 + 1, W)
    segments = [seg] * 3
    want = golden_epochs(W, regs, fregs, segments, seed)
    got = run_feed(W, regs, fregs, segments, seed, restart_between=bool(d % 2),
                   rng_seed=int(rng.integers(1 << 30)))
    for e, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), f"epoch {e}: {len(g)} words, golden {len(w)}"
    if rnd == 0 and p > q:
        assert not np.array_equal(want[0], want[1])    # fresh carries every epoch


def test_feed_segments_differ_between_epochs():
    """Different segments in a row (the replay of one, then another upload): the parser
    follows each, the generator carries on."""
    W, p, q = 8, 8, 2
    rng = np.random.default_rng(5)
    regs = regs_for(q, 0, 10)
    fregs = store.FeedRegs(p=p)
    segs = [stored_segment(rng, W, p, n, 10, 1) for n in (3, 5, 1)]
    seed = 0x0123456789ABCDEF
    want = golden_epochs(W, regs, fregs, segs, seed)
    got = run_feed(W, regs, fregs, segs, seed, gap=0.5, stall=0.5, restart_between=False)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("W", [8, 32])
def test_feed_pass_through(W):
    rng = np.random.default_rng(W)
    words = [rng.integers(0, 1 << W, size=40, dtype=np.uint64) for _ in range(2)]
    regs = regs_for(3, 0, 9, grid=0)
    got = run_feed(W, regs, store.FeedRegs(p=0), words, 1, load_seed=False)
    for g, w in zip(got, words):
        assert np.array_equal(g, w)


def test_restart_drops_a_partial_pass():
    """A stop mid-pass (restart) forgets the pass: the next segment is parsed from its header."""
    W, p, q = 8, 8, 3
    rng = np.random.default_rng(9)
    regs = regs_for(q, 1, 12)
    fregs = store.FeedRegs(p=p, round=1)      # no generator: the epochs are comparable alone
    seg = stored_segment(rng, W, p, 4, 12, 1)
    half = seg[:len(seg) // 2 + 3]
    got = run_feed(W, regs, fregs, [half, seg], 7)
    want = golden_epochs(W, regs, fregs, [seg], 7)[0]
    assert np.array_equal(got[1], want)


@pytest.mark.parametrize("W", [8, 16, 32, 64])
def test_generators_match_the_model(W):
    dut = Generators(W)
    seed = 0x9E3779B97F4A7C15 ^ 0x1234_5678_9ABC_DEF0
    rng = np.random.default_rng(W)
    steps = [int(s) for s in rng.integers(0, 2, size=60)]
    sb = store.state_bits(W)
    step = store.xorshift32 if sb == 32 else store.xorshift64
    assert dut.K == store.generators(W) and sb == (32 if W <= 16 else 64)

    async def bench(ctx):
        # an old seed first: a new one replaces the state whole
        for s in (0xDEAD_BEEF_0000_0001, seed):
            lo, hi = seed_halves(s)
            ctx.set(dut.seed, lo)
            ctx.set(dut.seed_load, 1)
            await ctx.tick()
            ctx.set(dut.seed, hi)
            ctx.set(dut.seed_load, 2)
            await ctx.tick()
            ctx.set(dut.seed_load, 0)
            await ctx.tick()
        states = store.seed_states(seed, W)
        for s in steps:
            nxt = [step(x) for x in states]
            word = sum(x << (sb * k) for k, x in enumerate(nxt)) & ((1 << 2 * W) - 1)
            assert ctx.get(dut.bits) == word
            ctx.set(dut.step, s)
            await ctx.tick()
            if s:
                states = nxt
        ctx.set(dut.step, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
