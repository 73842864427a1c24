"""Store mode, bit-exact (docs/store.md): stored codes, the on-chip generator, the store feed.

The host uploads an epoch segment of p-bit **stored codes** once; every epoch the board's store
feed turns it into the engine's floor-grid stream, drawing each carry afresh from the on-chip
generators (one ``xorshift32`` for W <= 16, ``xorshift64`` ones above).  This module is the
feed's golden model: :func:`feed` returns exactly the words the gateware feed
(`zipml.hw.store_feed`) gives the engine, and the generator state it leaves, which the next
epoch continues from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .golden import EngineConfig, EngineRegs, label_words, parse_header

__all__ = ["P_MAX", "GOLDEN_GAMMA", "MASK32", "MASK64", "FeedRegs", "xorshift32", "xorshift64",
           "state_bits", "generators", "seed_states", "check_seed", "epoch_seed", "store_codes",
           "stored_value", "feed"]

#: largest stored precision p (the feed's ``store_p`` register is 5 bits; 0 = pass-through)
P_MAX = 16
#: seed of generator k = seed XOR (k * GOLDEN_GAMMA mod 2^64), cut to its state width
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1


def state_bits(W: int) -> int:
    """Bits of one generator's state (and of the random bits one step gives) at width W: the
    feed needs 2W random bits per remainder plane, so W <= 16 takes one ``xorshift32`` (32
    bits), wider W ``xorshift64`` generators (64 bits each)."""
    return 32 if 2 * int(W) <= 32 else 64


def generators(W: int) -> int:
    """K = ceil(2W / state_bits(W)) generators: 2W random bits per remainder plane (two copies,
    W lanes). K = 1 up to W = 32 (W <= 16: one xorshift32), 2 at W = 64."""
    return -(-2 * int(W) // state_bits(W))


def xorshift32(x: int) -> int:
    """One step of Marsaglia's xorshift32 (13, 17, 5): period 2^32 - 1 on nonzero states."""
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def xorshift64(x: int) -> int:
    """One step of Marsaglia's xorshift64 (13, 7, 17): period 2^64 - 1 on nonzero states."""
    x ^= (x << 13) & MASK64
    x ^= x >> 7
    x ^= (x << 17) & MASK64
    return x


def _step_function(W: int):
    return xorshift32 if state_bits(W) == 32 else xorshift64


def seed_states(seed: int, W: int) -> list[int]:
    """The K generator states the 64-bit ``seed`` register loads: generator k gets ``seed XOR
    (k * GOLDEN_GAMMA mod 2^64)`` cut to its state width, so W <= 16's one xorshift32 gets the
    seed's low 32 bits (its high half is not used there)."""
    seed = int(seed)
    if not 0 <= seed <= MASK64:
        raise ValueError(f"seed must be an unsigned 64-bit integer, got {seed}")
    mask = (1 << state_bits(W)) - 1
    return [(seed ^ ((k * GOLDEN_GAMMA) & MASK64)) & mask for k in range(generators(W))]


def check_seed(seed: int, W: int) -> int:
    """``seed`` if every generator state it loads is nonzero, else one ValueError."""
    states = seed_states(seed, W)
    if not all(states):
        name = f"xorshift{state_bits(W)}"
        extra = " (W <= 16 uses the seed's low 32 bits)" if state_bits(W) == 32 else ""
        raise ValueError(f"seed {seed:#x} loads a zero {name} state (it would never move)"
                         f"{extra}")
    return int(seed)


@dataclass(frozen=True)
class FeedRegs:
    """The store feed's registers.

    Parameters
    ----------
    p : int
        Stored planes per value, ``q <= p <= P_MAX``; 0 = pass every word through.
    round : int
        0 = stochastic carries from the generator; 1 = nearest level (ties up).
    """

    p: int
    round: int = 0

    def check(self, regs: EngineRegs) -> None:
        if not isinstance(self.p, (int, np.integer)) or not 0 <= self.p <= P_MAX:
            raise ValueError(f"FeedRegs.p must be an integer in 0..{P_MAX}, got {self.p!r}")
        if self.round not in (0, 1):
            raise ValueError(f"FeedRegs.round must be 0 or 1, got {self.round!r}")
        if self.p and regs.grid != 1:
            raise ValueError("the store feed draws floor-grid codes: the engine's grid must be "
                             "floor (1)")
        if self.p and regs.q > self.p:
            raise ValueError(f"q={regs.q} exceeds the stored precision p={self.p}")


def epoch_seed(seed: int, epoch: int, W: int) -> int:
    """The 64-bit generator seed of store-mode epoch ``epoch`` of a job seeded ``seed``, for a
    feed of width ``W``: drawn from ``default_rng([seed, 0x5EED, epoch])``, skipping any that
    would load a zero state (:func:`check_seed`)."""
    rng = np.random.default_rng([int(seed), 0x5EED, int(epoch)])
    while True:
        s = int(rng.integers(1, 1 << 63)) << 1 | int(rng.integers(0, 2))
        try:
            return check_seed(s, W)
        except ValueError:
            continue


def store_codes(a, p: int) -> np.ndarray:
    """Stored p-bit codes of values in [-1, 1]: ``s = clip(round((a + 1) 2^(p-1)) - 1, 0,
    2^p - 1)`` (round half to even), so ``stored_value(s) = 2 (s + 1) / 2^p - 1``."""
    if not isinstance(p, (int, np.integer)) or not 1 <= p <= P_MAX:
        raise ValueError(f"stored precision p must be an integer in 1..{P_MAX}, got {p!r}")
    a = np.asarray(a, dtype=np.float64)
    s = np.rint((a + 1.0) * float(1 << (p - 1))) - 1.0
    dtype = np.uint8 if p <= 8 else np.uint16
    return np.clip(s, 0, (1 << p) - 1).astype(dtype)


def stored_value(s, p: int) -> np.ndarray:
    """The value a stored code stands for: ``2 (s + 1) / 2^p - 1``."""
    return 2.0 * (np.asarray(s, dtype=np.float64) + 1.0) / float(1 << p) - 1.0


def _random_bits(states: list[int], count: int, W: int) -> tuple[np.ndarray, list[int]]:
    """(count, 2W) random bits of ``count`` generator steps, and the states after them: per
    step the K new states side by side, generator 0 in the low bits (bit i is lane i's
    ``delta_dot`` bit, bit W + i its ``delta_grad`` bit)."""
    K = len(states)
    sb = state_bits(W)
    step = _step_function(W)
    st = list(states)
    flat = []
    for _ in range(count):
        for k in range(K):
            st[k] = step(st[k])
            flat.append(st[k])
    dtype = np.uint32 if sb == 32 else np.uint64
    out = np.array(flat, dtype=dtype).reshape(count, K)
    as_bytes = out.astype(f"<u{sb // 8}").view(np.uint8).reshape(count, sb // 8 * K)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :2 * W], st


def _words_to_bits(words: np.ndarray, W: int) -> np.ndarray:
    b = np.ascontiguousarray(words.astype("<u8")).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(b, axis=1, bitorder="little")[:, :W]


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    W = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (64,), dtype=np.uint8)
    padded[..., :W] = bits
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8")[..., 0]


def _carry(r_bits: np.ndarray, u_bits: np.ndarray) -> np.ndarray:
    """delta = [u <= r], MSB first over the remainder planes: (m, ..., W) -> (..., W)."""
    gt = np.zeros(r_bits.shape[1:], dtype=bool)
    lt = np.zeros(r_bits.shape[1:], dtype=bool)
    for j in range(r_bits.shape[0]):
        r, u = r_bits[j].astype(bool), u_bits[j].astype(bool)
        und = ~(gt | lt)
        lt |= und & r & ~u
        gt |= und & u & ~r
    return (~gt).astype(np.uint8)


def feed(config: EngineConfig, regs: EngineRegs, fregs: FeedRegs, words, states):
    """The engine stream the store feed makes of a stored segment, and the generator states
    after it.

    Parameters
    ----------
    config : EngineConfig
    regs : EngineRegs
        The engine's registers (q, mode, d, grid are read).
    fregs : FeedRegs
    words : 1-D unsigned int array
        The stored segment (``pack_segment(W, p, 1, s, L, B)``).
    states : list of int
        The K generator states before the segment (:func:`seed_states`, or a previous call's).

    Returns
    -------
    (engine_words, states) : (uint64 array, list of int)
    """
    regs.check(config)
    fregs.check(regs)
    W = config.W
    words = np.asarray(words, dtype=np.uint64)
    states = [int(s) for s in states]
    if len(states) != generators(W):
        raise ValueError(f"W={W} needs {generators(W)} generator states, got {len(states)}")
    if not all(0 <= s < 1 << state_bits(W) for s in states):
        raise ValueError(f"W={W}'s generators are xorshift{state_bits(W)}: states must be "
                         f"{state_bits(W)}-bit unsigned, got {[hex(s) for s in states]}")
    if fregs.p == 0:
        return words.copy(), states
    p, q, mode, rnd = int(fregs.p), int(regs.q), int(regs.mode), int(fregs.round)
    m = p - q
    C = -(-int(regs.d) // W)
    LW = label_words(W)
    out_g = q + 2 if mode == 0 else q + 1
    # walk the passes (headers only), then draw and compare every group of the segment at once
    wl = words.tolist()
    N = len(wl)
    passes = []                          # (first word, header+label words, groups)
    pos = 0
    while pos < N:
        n_dot, _ = parse_header(wl[pos])
        need = n_dot * LW + C * n_dot * p
        if pos + 1 + need > N:
            raise ValueError(f"stored segment ends inside a pass (word {pos}: needs {need} "
                             f"words after the header, {N - pos - 1} left)")
        passes.append((pos, 1 + n_dot * LW, C * n_dot))
        pos += 1 + need
    groups = sum(g for _, _, g in passes)
    if not groups:
        return words.copy(), states
    first = np.array([a + h for a, h, g in passes for _ in range(g)], dtype=np.int64)
    nth = np.concatenate([np.arange(g) for _, _, g in passes if g])
    idx = (first + nth * p)[:, None] + np.arange(p)[None, :]           # (groups, p)
    planes = _words_to_bits(words[idx.ravel()], W).reshape(groups, p, W)
    outb = np.empty((groups, out_g, W), dtype=np.uint8)
    outb[:, :q] = planes[:, :q]
    # the generator steps once per remainder plane, group after group
    u, states = _random_bits(states, groups * m, W)
    u = u.reshape(groups, m, 2 * W).transpose(1, 0, 2)                 # (m, groups, 2W)
    r = planes[:, q:].transpose(1, 0, 2)                                # (m, groups, W)
    if rnd:
        u_dot = np.ones((m, groups, W), dtype=np.uint8)
        if m:
            u_dot[0] = 0
    else:
        u_dot = u[:, :, :W]
    outb[:, q] = _carry(r, u_dot)
    if mode == 0:
        outb[:, q + 1] = _carry(r, u[:, :, W:]) if not rnd else outb[:, q]
    fed = _bits_to_words(outb.reshape(-1, W))
    pieces = []
    g0 = 0
    for a, h, g in passes:
        pieces.append(words[a:a + h])
        pieces.append(fed[g0 * out_g:(g0 + g) * out_g])
        g0 += g
    out = np.concatenate(pieces)
    return out.astype(np.uint64), states
