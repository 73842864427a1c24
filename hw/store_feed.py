"""The store feed: stored p-bit codes -> the engine's floor-grid stream, fresh carries per epoch.

docs/store.md is the contract; `zipml.reference.store.feed` is the bit-exact model
(`feed(config, regs, fregs, words, states)`), `zipml.reference.store.xorshift32` (W <= 16) and
`~zipml.reference.store.xorshift64` (wider W) the generators'. The board system
(`zipml.hw.soc.System`) puts `StoreFeed` between the sample store's replay and the engine;
STREAM words bypass it.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from ..reference.golden import label_words
from ..reference.store import GOLDEN_GAMMA, MASK64, generators, state_bits

__all__ = ["StoreFeed", "Generators", "xorshift32_next", "xorshift64_next"]


def xorshift32_next(x):
    """One xorshift32 step (13, 17, 5) of a 32-bit value, as an Amaranth expression: a layer
    of XORs (each output bit is the XOR of at most 7 state bits)."""
    x1 = x ^ (x << 13)[:32]
    x2 = x1 ^ (x1 >> 17)
    return x2 ^ (x2 << 5)[:32]


def xorshift64_next(x):
    """One xorshift64 step (13, 7, 17) of a 64-bit value, as an Amaranth expression: a layer
    of XORs (each output bit is the XOR of at most 8 state bits)."""
    x1 = x ^ (x << 13)[:64]
    x2 = x1 ^ (x1 >> 7)
    return x2 ^ (x2 << 17)[:64]


class Generators(wiring.Component):
    """The feed's random bits: one xorshift32 for W <= 16, else K = ceil(2W / 64) xorshift64
    (`zipml.reference.store.state_bits`, `~zipml.reference.store.generators`), seeded by two
    32-bit halves.

    The flip-flops hold the *next* random word, already stepped (``bits`` = the states after
    the next step), so a consumer uses flip-flops, not the XOR layer, in its own decision.

    Parameters
    ----------
    W : int
        Lanes: ``bits`` is 2W wide (two copies of W lanes).

    Ports
    -----
    seed : In(32)
        Half of the 64-bit seed.
    seed_load : In(2)
        Strobes: bit 0 loads the low 32 bits of every generator's state from ``seed``, bit 1
        the high 32 bits (generator k gets ``seed XOR (k * GOLDEN_GAMMA)``, a constant; the
        xorshift32 of W <= 16 has no high half: its state is the seed's low half) and arms the
        step that makes ``bits`` the first random word. Load the low half first; a seed is
        complete with its high half. Do not ``step`` in the clock after a high load.
    step : In(1)
        Take ``bits`` (one remainder plane's random word): every generator steps once.
    bits : Out(2W)
        Random bits of the next step: generator 0's new state in the low bits, then
        generator 1 (W = 64).

    Latency: ``bits`` is the first word of a seed two clocks after its high half's strobe, the
    next word one clock after a ``step``.
    """

    def __init__(self, W):
        self.W = W
        self.K = generators(W)
        self.state_bits = state_bits(W)
        super().__init__({"seed": In(32), "seed_load": In(2), "step": In(1),
                          "bits": Out(2 * W)})

    def elaborate(self, platform):
        m = Module()
        sb = self.state_bits
        step_next = xorshift32_next if sb == 32 else xorshift64_next
        states = [Signal(sb, name=f"gen{k}") for k in range(self.K)]
        fresh = Signal()           # a seed's high half was loaded: step once to its first word
        m.d.sync += fresh.eq(self.seed_load[1])
        for k, y in enumerate(states):
            gamma = (k * GOLDEN_GAMMA) & MASK64
            with m.If(self.seed_load[0]):
                m.d.sync += y[:32].eq(self.seed ^ (gamma & 0xFFFFFFFF))
            if sb == 64:
                with m.Elif(self.seed_load[1]):
                    m.d.sync += y[32:].eq(self.seed ^ (gamma >> 32))
            with m.Elif(self.step | fresh):
                m.d.sync += y.eq(step_next(y))
        m.d.comb += self.bits.eq(Cat(*states)[:2 * self.W])
        return m


class StoreFeed(wiring.Component):
    """Between the sample store's replay and the engine: draws the floor-grid codes of a stored
    segment (docs/store.md).

    With ``store_p`` = 0 every word passes through. Otherwise the feed walks the stored passes
    as the engine does (header -> n_dot; ``n_dot * ceil(32/W)`` label words; C = ceil(d / W)
    chunks of n_dot groups of p planes), passes headers, labels and the first q planes of each
    group through, consumes the p - q remainder planes (comparing them MSB first with the
    random bits, per lane and copy; the generators step once per remainder plane) and then
    emits ``delta_dot`` and, in mode 0, ``delta_grad``.

    Parameters
    ----------
    W : int
        Stream width and lanes (8, 16, 32, 64).
    D_MAX : int
        Largest d (sizes the chunk counter); default 65535 (the 16-bit ``d`` register).

    Ports
    -----
    i_stream : In(stream.Signature(W))
        The stored words (the replay). ``ready`` is a gate of flip-flops and ``o_stream.ready``.
    o_stream : Out(stream.Signature(W))
        The engine's words, from a register.
    q, mode, d : In
        The engine's registers (bits per code, 0 double / 1 single, features).
    store_p : In(5)
        Stored planes per value (q <= p <= 16); 0 = pass-through.
    store_round : In(1)
        1: nearest level, the constant ``u`` = 0111..1 (``delta_grad`` = ``delta_dot``).
    seed : In(32), seed_load : In(2)
        The generators' seed, one 32-bit half per strobe (`Generators`).
    restart : In(1)
        Strobe: back to a pass header, the output register emptied, the carries forgotten (a
        replay's start, stop or clear). The generators' state is kept.
    busy : Out(1)
        A word in the output register or a carry to emit.

    The registers are read through a register stage (copies beside the logic that uses them):
    change them only between replays.

    Latency: a word taken appears on ``o_stream`` the next clock. Throughput: one word taken a
    clock and at most one emitted; a group's carry words take one clock (mode 1) or two
    (mode 0) after its last stored plane, in which no word is taken. Remainder planes are taken
    whatever ``o_stream.ready`` says.
    """

    def __init__(self, W, D_MAX=65535):
        if W not in (8, 16, 32, 64):
            raise ValueError(f"W must be 8, 16, 32 or 64, got {W!r}")
        self.W, self.D_MAX = W, D_MAX
        super().__init__({
            "i_stream": In(stream.Signature(W)),
            "o_stream": Out(stream.Signature(W)),
            "q": In(6), "mode": In(1), "d": In(range(D_MAX + 1)),
            "store_p": In(5), "store_round": In(1),
            "seed": In(32), "seed_load": In(2),
            "restart": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.W
        lw = (W - 1).bit_length()
        LW = label_words(W)
        m.submodules.gen = gen = Generators(W)
        m.d.comb += [gen.seed.eq(self.seed), gen.seed_load.eq(self.seed_load)]

        # The registers, registered (they change only between replays): every decision below
        # starts at flip-flops, copies placed beside it (the register file's own flip-flops
        # are far away on a full UP5K).
        cbits = max(1, ((self.D_MAX - 1) >> lw).bit_length())
        thru = Signal()
        dbl = Signal()
        rnd = Signal()
        q = Signal(6)
        rem = Signal(6)             # p - q
        q_one, rem_zero, rem_one = Signal(), Signal(), Signal()
        cm1 = Signal(cbits)         # chunks - 1
        c_one = Signal()
        diff = Signal(7)
        m.d.comb += diff.eq(self.store_p - self.q)
        m.d.sync += [thru.eq(self.store_p == 0), dbl.eq(~self.mode), rnd.eq(self.store_round),
                     q.eq(self.q), rem.eq(diff), q_one.eq(self.q == 1),
                     rem_zero.eq(diff == 0), rem_one.eq(diff == 1),
                     cm1.eq((self.d - 1) >> lw), c_one.eq(self.d <= W)]

        # Pass parser: one flip-flop per state.
        HDR, LAB, PASS, REM, CAR = (Signal(name=f"st_{s}", init=int(s == "hdr"))
                                    for s in ("hdr", "lab", "pass", "rem", "car"))
        second = Signal()           # CAR: delta_dot sent, delta_grad next
        cnt = Signal(6)             # words left in LAB, PASS or REM
        cnt_last = Signal()         # cnt == 1
        ndot = Signal(4)
        ndot_one = Signal()
        dot_left = Signal(4)        # groups left in this chunk
        dot_last = Signal()
        chunk_left = Signal(cbits)  # chunks left after this one
        chunk_last = Signal()
        first = Signal()            # the next remainder plane is the one just below t

        # Output register.
        o_valid = Signal()
        o_data = Signal(W)
        m.d.comb += [self.o_stream.valid.eq(o_valid), self.o_stream.payload.eq(o_data)]
        o_free = Signal()
        m.d.comb += o_free.eq(~o_valid | self.o_stream.ready)
        m.d.comb += [self.i_stream.ready.eq(~CAR & (REM | o_free)),
                     self.busy.eq(o_valid | CAR)]
        tk = Signal()
        m.d.comb += tk.eq(self.i_stream.valid & self.i_stream.ready)
        word = self.i_stream.payload

        # Per lane and copy: dec (u and r differ at a plane seen so far) and val (the carry so
        # far: r at the first differing plane, 1 while equal), i.e. delta = not gt.
        dec = Signal(2 * W)
        val = Signal(2 * W, init=(1 << 2 * W) - 1)
        r2 = Cat(word, word)
        u = Mux(rnd, Mux(first, 0, (1 << 2 * W) - 1), gen.bits)
        differ = r2 ^ u
        take_rem = Signal()
        m.d.comb += [take_rem.eq(tk & REM & ~thru), gen.step.eq(take_rem)]
        group_done = Signal()       # the group's last carry word goes out this clock
        m.d.comb += group_done.eq(CAR & o_free & (second | ~dbl))

        with m.If(self.restart | group_done):
            m.d.sync += [dec.eq(0), val.eq(val.init)]
        with m.Elif(take_rem):
            m.d.sync += [dec.eq(dec | differ),
                         val.eq((val & (dec | ~differ)) | (r2 & ~dec & differ))]

        # Output: words passed through, or the carries.
        with m.If(tk & ~(REM & ~thru)):
            m.d.sync += [o_data.eq(word), o_valid.eq(1)]
        with m.Elif(CAR & o_free):
            m.d.sync += [o_data.eq(Mux(second, val[W:], val[:W])), o_valid.eq(1)]
        with m.Elif(self.o_stream.ready):
            m.d.sync += o_valid.eq(0)

        def goto(state):
            for s in (HDR, LAB, PASS, REM, CAR):
                m.d.sync += s.eq(s is state)

        def count(n, last):
            m.d.sync += [cnt.eq(n), cnt_last.eq(last)]

        def count_down():
            m.d.sync += [cnt.eq(cnt - 1), cnt_last.eq(cnt == 2)]

        def to_pass():
            goto(PASS)
            count(q, q_one)

        with m.If(self.restart):
            goto(HDR)
            m.d.sync += [second.eq(0), o_valid.eq(0)]
        with m.Elif(tk & ~thru):
            with m.If(HDR):
                n = word[:4]
                m.d.sync += [ndot.eq(n), ndot_one.eq(n == 1), dot_left.eq(n),
                             dot_last.eq(n == 1), chunk_left.eq(cm1), chunk_last.eq(c_one)]
                with m.If(n != 0):
                    goto(LAB)
                    count(n * LW, (n == 1) if LW == 1 else 0)
            with m.If(LAB):
                with m.If(cnt_last):
                    to_pass()
                with m.Else():
                    count_down()
            with m.If(PASS):
                with m.If(cnt_last):
                    with m.If(rem_zero):
                        goto(CAR)
                    with m.Else():
                        goto(REM)
                        count(rem, rem_one)
                        m.d.sync += first.eq(1)
                with m.Else():
                    count_down()
            with m.If(REM):
                m.d.sync += first.eq(0)
                with m.If(cnt_last):
                    goto(CAR)
                with m.Else():
                    count_down()
        with m.Elif(CAR & o_free):
            with m.If(~group_done):
                m.d.sync += second.eq(1)
            with m.Else():
                m.d.sync += second.eq(0)
                with m.If(~dot_last):
                    m.d.sync += [dot_left.eq(dot_left - 1), dot_last.eq(dot_left == 2)]
                    to_pass()
                with m.Elif(~chunk_last):
                    m.d.sync += [dot_left.eq(ndot), dot_last.eq(ndot_one),
                                 chunk_left.eq(chunk_left - 1), chunk_last.eq(chunk_left == 1)]
                    to_pass()
                with m.Else():
                    goto(HDR)
        return m
