"""A prepared problem + training options -> what the engine is given, and back.

Forward: registers (q, mode, d, step/step_shift from the float lr, decay_shift, n_epoch,
l2_shift), per-epoch quantized codes and label words, and the packed word stream of each epoch
segment (docs/engine.md).  Backward: model words (signed 32-bit Q8.24) -> the float model in the
scaled units of :class:`zipml.host.problem.Prepared`.

Every backend that runs the engine (golden, rtl, sim, board) builds its streams here, so for the
same data, seed and options they are fed the same words.

Randomness: epoch e draws its codes from ``np.random.default_rng([seed, e])`` (Q1, the grad
codes, first, then Q2, the dot codes), so any epoch's stream can be rebuilt on its own, and the
samples come in the order ``sample_order(n, e, seed)`` of :mod:`zipml.reference.order`. In
store mode the board's generators are loaded before epoch e with ``EngineJob.feed_seed(e)``,
so there too an epoch stands on its own (what checkpoint and resume rely on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import pack, store
from .golden import F, STEP_BITS, EngineConfig, EngineRegs, decay, dot_group_words
from .order import sample_order
from .quantize import QUANTIZERS, STOCHASTIC, check_grid, floor_split, quantize

__all__ = [
    "DEFAULT_CONFIG", "QUANTIZERS", "ENGINE_MODE", "engine_mode", "step_registers", "effective_lr",
    "decay_shift_for", "l2_shift_for", "decayed_step", "model_words", "float_model",
    "quantize_codes", "EngineJob",
]

#: the ULX3S build of docs/engine.md (W=32): the default for golden and rtl runs
DEFAULT_CONFIG = EngineConfig(W=32, D_MAX=4096, B_MAX=8, BUF_DEPTH=2 * 8 * 128 * 8)

#: quantizer -> engine mode (0 = double, 1 = a single-sample quantizer; docs/engine.md)
ENGINE_MODE = {name: 0 if name == "double" else 1 for name in QUANTIZERS}
#: ``full`` in hardware is deterministic at q = 32 (docs/engine.md)
FULL_Q = 32


def engine_mode(quantizer: str, q: int) -> tuple[int, int]:
    """(mode, engine q) for a quantizer; ``full`` runs at q = 32 whatever ``q`` says."""
    if quantizer not in ENGINE_MODE:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {quantizer!r}")
    if quantizer == "full":
        return 1, FULL_Q
    if not (isinstance(q, (int, np.integer)) and 1 <= q <= 8):
        raise ValueError(f"the engine quantizes to q = 1..8 bits, got {q!r}")
    return ENGINE_MODE[quantizer], int(q)


def _step_factor(q: int, grid: int) -> float:
    """1 / k_q^2: the symmetric grid's two ``2**q / (2**q - 1)`` factors undo the ``1/2**(p+1)``
    plane weights of the dot and the grad; the floor grid's planes weigh exactly v(c)."""
    return 1.0 if grid else float(1 << (2 * q)) / float(((1 << q) - 1) ** 2)


def step_registers(lr: float, q: int, grid: int = 0) -> tuple[int, int]:
    """(STEP, STEP_SHIFT) with ``STEP * 2**-STEP_SHIFT ~= lr / k_q**2`` (docs/engine.md,
    Scalar).  STEP_SHIFT is the largest of 0..63 whose rounded STEP still fits 18 bits, so the
    mantissa keeps 17-18 significant bits.
    """
    if not (isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    K = float(lr) * _step_factor(q, grid)
    top = (1 << STEP_BITS) - 1
    if round(K) > top:
        raise ValueError(f"lr={lr:g} is too large for the engine's step register "
                         f"(needs STEP * 2^-STEP_SHIFT = {K:g} > {top})")
    # largest shift with round(K * 2^s) <= top: start from the exponent, fix up by one
    s = min(63, max(0, STEP_BITS - 1 - math.frexp(K)[1] + 1))
    while s < 63 and round(math.ldexp(K, s + 1)) <= top:
        s += 1
    while s > 0 and round(math.ldexp(K, s)) > top:
        s -= 1
    step = int(round(math.ldexp(K, s)))
    if step == 0:
        raise ValueError(f"lr={lr:g} is too small for the engine's step register "
                         f"(STEP rounds to 0 even at STEP_SHIFT=63)")
    return step, s


def effective_lr(step: int, step_shift: int, q: int, grid: int = 0) -> float:
    """The float lr the registers actually implement (inverse of :func:`step_registers`)."""
    return math.ldexp(step, -step_shift) / _step_factor(q, grid)


def decay_shift_for(decay_factor: float) -> int:
    """DECAY_SHIFT for a per-epoch step multiplier: ``1 - 2**-DECAY_SHIFT ~= decay_factor``.

    1 (or None) means a constant step (0).  The nearest shift in log scale of ``1 - factor``.
    """
    if decay_factor is None or decay_factor == 1:
        return 0
    if not (0.5 <= decay_factor < 1):
        raise ValueError(f"the engine decays the step by 1 - 2^-k per epoch (k = 1..31): "
                         f"the decay factor must be in [0.5, 1], got {decay_factor!r}")
    return int(min(31, max(1, round(-math.log2(1 - decay_factor)))))


def l2_shift_for(lr: float, l2: float) -> int:
    """L2_SHIFT with ``2**-L2_SHIFT ~= lr * l2`` (the shrink per update); 0 if l2 == 0."""
    if not l2:
        return 0
    if l2 < 0 or not math.isfinite(l2):
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    g = lr * l2
    if g >= 1:
        raise ValueError(f"lr * l2 = {g:g} >= 1: the L2 shrink would flip the model's sign")
    return int(min(63, max(1, round(-math.log2(g)))))


def decayed_step(step: int, decay_shift: int, epochs: int) -> int:
    """STEP after ``epochs`` decays (what the engine's working step is at epoch ``epochs``)."""
    for _ in range(epochs):
        step = decay(step, decay_shift)
    return step


def model_words(x) -> np.ndarray:
    """Float model (scaled units) -> signed 32-bit Q8.24 words, rounded, saturated."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.rint(x * (1 << F)), -(2**31), 2**31 - 1).astype(np.int64)


def float_model(words) -> np.ndarray:
    """Q8.24 model words -> float model in the scaled units of the prepared problem."""
    return np.asarray(words, dtype=np.int64).astype(np.float64) / float(1 << F)


def quantize_codes(a, q: int, rng, method: str, *, rows=None, copies=None) -> np.ndarray:
    """Codes of values in [-1, 1] on the uniform q-bit grid (of ``a[rows]``; ``copies``
    successive code arrays stacked, as :func:`zipml.reference.quantize.quantize`).

    Uses :func:`zipml.reference.quantize.quantize` (the one quantizer of the project) and checks
    that it returns integer codes.
    """
    codes = np.asarray(quantize(a, q, rng, method=method, rows=rows, copies=copies))
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"zipml.reference.quantize.quantize returned {codes.dtype}, not codes")
    return codes


@dataclass
class EngineJob:
    """Everything the engine needs to train one problem, epoch by epoch.

    Attributes
    ----------
    config : EngineConfig
    regs : EngineRegs
        Registers of epoch 0 (:meth:`epoch_regs` gives the decayed step of later epochs).
    quantizer : str
    A : ndarray (n, d)
        Scaled features in [-1, 1] (intercept column included).
    b : ndarray (n,)
        Scaled labels.
    B : int
        Minibatch.
    seed : int
    order : callable (n, epoch, seed) -> permutation
    """

    config: EngineConfig
    regs: EngineRegs
    quantizer: str
    A: np.ndarray
    b: np.ndarray
    B: int
    seed: int
    order: object
    store_p: int = 0
    _stored: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, A, b, *, quantizer: str, q: int, lr: float, B: int = 1, seed: int = 0,
              l2: float = 0.0, decay_factor: float | None = None, order=None,
              config: EngineConfig | None = None, grid: str = "floor",
              store_p: int = 0) -> "EngineJob":
        """Check the problem fits the engine and derive the registers.

        ``grid`` is ``floor`` or ``symmetric`` (docs/engine.md, "Grids"); ``full`` streams
        32-bit fixed point, where the grid makes no difference, on the symmetric grid.
        ``store_p`` > 0 is store mode (docs/store.md): the data is stored once at p bits and the
        store feed draws every epoch's floor-grid codes on chip; ``full`` then trains on the
        stored value itself (q = p).
        """
        config = config or DEFAULT_CONFIG
        A = np.asarray(A, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1 or b.shape != (A.shape[0],):
            raise ValueError(f"A must be (n, d) and b (n,), got {A.shape} and {b.shape}")
        if not np.isfinite(A).all() or np.abs(A).max() > 1:
            raise ValueError("A must be scaled into [-1, 1] (finite) before the engine sees it")
        n, d = A.shape
        check_grid(grid)
        if store_p:
            if not (isinstance(store_p, (int, np.integer)) and 1 <= store_p <= store.P_MAX):
                raise ValueError(f"stored precision p must be in 1..{store.P_MAX}, "
                                 f"got {store_p!r}")
            if grid != "floor":
                raise ValueError("store mode draws floor-grid codes on chip: it needs "
                                 "--grid floor (the symmetric grid streams only)")
            if quantizer == "full":
                mode, eq = 1, int(store_p)
            else:
                mode, eq = engine_mode(quantizer, q)
                if eq > store_p:
                    raise ValueError(f"q={eq} exceeds the stored precision p={store_p}")
        else:
            mode, eq = engine_mode(quantizer, q)
        g = 1 if (grid == "floor" and (quantizer != "full" or store_p)) else 0
        if d > config.D_MAX:
            raise ValueError(f"d={d} features exceed this engine's D_MAX={config.D_MAX}")
        if not (isinstance(B, (int, np.integer)) and 1 <= B <= config.B_MAX):
            raise ValueError(f"minibatch B must be in 1..{config.B_MAX} on this engine, got {B!r}")
        C = -(-d // config.W)
        if (mode == 1 or g) and min(B, n) * (eq + g) * C > config.BUF_DEPTH // 2:
            raise ValueError(
                f"{quantizer} at q={eq} with d={d}, B={B} needs {min(B, n) * (eq + g) * C} "
                f"code-buffer words per pass, the engine holds {config.BUF_DEPTH // 2}: lower B")
        step, step_shift = step_registers(lr, eq, g)
        regs = EngineRegs(q=eq, mode=mode, d=d, step=step, step_shift=step_shift,
                          decay_shift=decay_shift_for(decay_factor), n_epoch=n,
                          l2_shift=l2_shift_for(lr, l2), grid=g)
        regs.check(config)
        if order is None:
            order = sample_order
        return cls(config=config, regs=regs, quantizer=quantizer, A=A, b=b, B=int(B),
                   seed=int(seed), order=order, store_p=int(store_p))

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    def epoch_regs(self, epoch: int) -> EngineRegs:
        """Registers for epoch ``epoch``'s segment: the step decayed ``epoch`` times, exactly
        as the engine's own decay would have left it in one continuous stream."""
        return replace(self.regs, step=decayed_step(self.regs.step, self.regs.decay_shift, epoch))

    def epoch_codes(self, epoch: int):
        """(order, dot_codes, grad_codes or None, L) of one streamed epoch, samples in stream
        order.  On the floor grid the codes are :func:`zipml.reference.pack.floor_group_codes`
        (t and the carries, packed as one group) and grad_codes is None (they ride in the dot
        group)."""
        order = np.asarray(self.order(self.n, epoch, self.seed))
        q = self.regs.q
        rng = np.random.default_rng([self.seed, epoch])
        method = "stochastic" if self.quantizer in STOCHASTIC else "nearest"
        L = pack.label_word(self.b[order], q, self.regs.grid)
        if self.regs.grid:
            # Q1 (grad) then Q2 (dot): successive draws, as the float reference takes them
            t, deltas = floor_split(self.A, q, rng, method, rows=order,
                                    copies=2 if self.quantizer == "double" else 1)
            if self.quantizer == "double":
                return order, pack.floor_group_codes(t, deltas[1], deltas[0]), None, L
            return order, pack.floor_group_codes(t, deltas[0]), None, L
        # rows=order quantizes A[order] without building it (the same codes)
        if self.quantizer == "double":
            # Q1 (grad) then Q2 (dot, independent): two successive draws, in one pass over A
            grad, dot = quantize_codes(self.A, q, rng, "stochastic", rows=order, copies=2)
        else:
            dot, grad = quantize_codes(self.A, q, rng, method, rows=order), None
        return order, dot, grad, L

    @property
    def group_words(self) -> int:
        """Stream words of one dot group the engine takes (docs/engine.md, "Stream layout")."""
        return dot_group_words(self.regs.q, self.regs.mode, self.regs.grid)

    @property
    def pack_mode(self) -> int:
        """The packer's mode: the symmetric grid's mode, or 1 (no grad groups) on the floor."""
        return 1 if self.regs.grid else self.regs.mode

    def epoch_stream(self, epoch: int) -> np.ndarray:
        """The engine's word stream of epoch ``epoch``'s segment (in store mode: what the
        store feed makes of the stored segment in that epoch, from that epoch's seed)."""
        if self.store_p:
            return self._fed_stream(epoch)
        _, dot, grad, L = self.epoch_codes(epoch)
        return pack.pack_segment(self.config.W, self.group_words, self.pack_mode, dot, L,
                                 self.B, grad)

    def epoch_bits(self) -> int:
        """Bits of one epoch's engine stream (every word, headers and labels included)."""
        return self.config.W * pack.segment_words(self.n, self.d, self.group_words,
                                                  self.config.W, self.B, self.pack_mode)

    # ------------------------------------------------------------------ store mode

    def stored_segment(self) -> np.ndarray:
        """The segment the host uploads once: epoch 0's order, p-bit stored codes, floor-grid
        labels (docs/store.md, "What is stored")."""
        order = np.asarray(self.order(self.n, 0, self.seed))
        s = store.store_codes(self.A[order], self.store_p)
        L = pack.label_word(self.b[order], self.store_p, 1)
        return pack.pack_segment(self.config.W, self.store_p, 1, s, L, self.B)

    def store_bits(self) -> int:
        """Bits of the stored segment: uploaded once (``link_bits``), read every epoch."""
        return self.config.W * pack.segment_words(self.n, self.d, self.store_p, self.config.W,
                                                  self.B, 1)

    def feed_regs(self) -> store.FeedRegs:
        """The store feed's registers: nearest rounding for deterministic and full."""
        return store.FeedRegs(p=self.store_p,
                              round=0 if self.quantizer in STOCHASTIC else 1)

    def feed_seed(self, epoch: int = 0) -> int:
        """The 64-bit generator seed the host writes before store-mode epoch ``epoch``, derived
        from the job's seed and the epoch (a seed that loads a zero state is skipped).

        Each epoch is seeded afresh, as a streamed epoch draws from ``default_rng([seed, e])``,
        rather than letting the generators run on from the previous epoch: any epoch's draws
        can then be rebuilt on their own, so a run resumed from a checkpoint at epoch e loads
        the seed of epoch e and draws exactly what the uninterrupted run drew, on a board whose
        generator states cannot be read back or written one by one."""
        return store.epoch_seed(self.seed, epoch, self.config.W)

    def _fed_stream(self, epoch: int) -> np.ndarray:
        if self._stored is None:
            self._stored = self.stored_segment()
        words, _ = store.feed(self.config, self.epoch_regs(epoch), self.feed_regs(),
                              self._stored, store.seed_states(self.feed_seed(epoch),
                                                              self.config.W))
        return words
