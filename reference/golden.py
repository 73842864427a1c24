"""Bit-exact integer golden model of the engine (docs/engine.md).

This module is the executable form of docs/engine.md: every shift, floor, rounding and
saturation of the gateware is here, and nothing else.  It has two layers:

* block functions (:func:`plane_sum`, :func:`accumulate_dot`, :func:`loss_squared`,
  :func:`scalar`, :func:`decay`, :func:`grad_term`, :func:`accumulate_update`, :func:`update`,
  :func:`parse_header`, :func:`parse_label`), pure integer NumPy functions with exactly the widths
  of docs/engine.md, for the per-block unit tests of ``zipml.hw``;
* :func:`run`, the whole engine: it consumes the packed word stream (parsing headers, labels and
  groups like the hardware, so a packer bug cannot hide) and returns an :class:`EngineResult`.

Integer widths (why int64 is enough; docs/golden.md has the full argument):

==========================  ===============================  =================================
quantity                    bound                            bits (D_MAX <= 2**22, W <= 64)
==========================  ===============================  =================================
model word X                signed 32                        32
plane sum S                 W * 2**31                        <= 38
S << G                      2**(38 + 8)                      <= 46
dot accumulator A           2**G * D_MAX * 2**31 (sum 2**-p) <= 32 + 22 + 8 + 1 = 63
E * STEP + R                2**31 * 2**18 + 2**62            < 2**63
(T << G) >> (p+1), summed   2**39 * n_grad(<=15)             <= 44
==========================  ===============================  =================================

so every intermediate fits a signed int64 and no object arrays are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MW", "F", "G", "STEP_BITS", "HEADER_FIELD_BITS",
    "EngineConfig", "EngineRegs", "EngineResult",
    "sat32", "plane_sum", "plane_weight", "accumulate_dot", "loss_squared", "scalar",
    "round_const", "decay", "grad_term", "accumulate_update", "update", "shrink",
    "label_words", "group_planes", "dot_group_words", "buffered", "plane_shifts",
    "parse_header", "make_header", "parse_label", "lane_mask", "run",
]

#: model word width (signed), fraction bits (Q8.24), guard bits, step mantissa width
MW = 32
F = 24
G = 8
STEP_BITS = 18
#: header: bits [3:0] n_dot, [7:4] n_grad
HEADER_FIELD_BITS = 4

_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1
#: the int64 argument in the module docstring holds up to this D_MAX
_D_MAX_LIMIT = 1 << 22


# ----------------------------------------------------------------------------------------------
# configuration and result types (shared with zipml.sim.engine_rtl)
# ----------------------------------------------------------------------------------------------

#: the gateware architectures of the engine (`EngineConfig.ARCH`)
ARCHS = ("parallel", "serial")


@dataclass(frozen=True)
class EngineConfig:
    """Synthesis parameters of one engine build (docs/engine.md, "Synthesis parameters").

    Parameters
    ----------
    W : int
        Stream width = lanes = features per chunk; a power of two in 8..64.
    D_MAX : int
        Largest d, a multiple of W.
    B_MAX : int
        Largest minibatch, 1..15 (the header fields are 4 bits).
    BUF_DEPTH : int
        Words of the single-sample (mode 1) code buffer, both halves together.
    ARCH : str
        Which gateware implements the contract: ``"parallel"`` (`zipml.hw.engine.Engine`, a
        chunk per cycle) or ``"serial"`` (`zipml.hw.serial_engine.SerialEngine`, a lane per
        cycle, small enough for the iCE40 UP5K). The arithmetic, and so this model, is the same.
    """

    W: int = 32
    D_MAX: int = 4096
    B_MAX: int = 8
    BUF_DEPTH: int = 2 * 8 * 128 * 8
    ARCH: str = "parallel"

    def __post_init__(self):
        W, D_MAX, B_MAX, BUF = self.W, self.D_MAX, self.B_MAX, self.BUF_DEPTH
        if not (isinstance(W, (int, np.integer)) and W in (8, 16, 32, 64)):
            raise ValueError(f"EngineConfig: W must be a power of two in 8..64, got {W!r}")
        if not (isinstance(D_MAX, (int, np.integer)) and 0 < D_MAX <= _D_MAX_LIMIT
                and D_MAX % W == 0):
            raise ValueError(
                f"EngineConfig: D_MAX must be a positive multiple of W={W} up to "
                f"{_D_MAX_LIMIT}, got {D_MAX!r}")
        if not (isinstance(B_MAX, (int, np.integer)) and 1 <= B_MAX <= 15):
            raise ValueError(f"EngineConfig: B_MAX must be in 1..15, got {B_MAX!r}")
        if not (isinstance(BUF, (int, np.integer)) and BUF >= 0 and BUF % 2 == 0):
            raise ValueError(f"EngineConfig: BUF_DEPTH must be an even count >= 0, got {BUF!r}")
        if self.ARCH not in ARCHS:
            raise ValueError(f"EngineConfig: ARCH must be one of {', '.join(ARCHS)}, "
                             f"got {self.ARCH!r}")

    @property
    def C_MAX(self) -> int:
        return self.D_MAX // self.W


@dataclass(frozen=True)
class EngineRegs:
    """Run-time registers of the engine (docs/engine.md, "Registers of the engine").

    Parameters
    ----------
    q : int
        Bits per code, 1..32.
    mode : int
        0 = double, 1 = single-sample quantizer (naive, deterministic, full).
        Symmetric grid: mode 0 carries grad groups in the stream, mode 1 replays the buffered
        dot groups.  Floor grid: grad groups always come from the code buffer; a mode-0 dot
        group carries one more word, the grad copy's carry (docs/engine.md, "Stream layout").
    d : int
        Number of features, 1..D_MAX.
    step : int
        Step mantissa, unsigned 18 bits.  ``clear`` loads the working step from it.
    step_shift : int
        Step exponent, 0..63.
    decay_shift : int
        0..31; 0 = constant step.
    n_epoch : int
        Samples per epoch for the decay counter, unsigned 32 bits; 0 = the counter never wraps.
    l2_shift : int
        0..63; 0 = no L2 shrink.
    grid : int
        0 = symmetric (q planes per group), 1 = floor (q planes of the shared floor t and a
        carry plane; docs/engine.md, "Grids").
    """

    q: int
    mode: int
    d: int
    step: int
    step_shift: int
    decay_shift: int = 0
    n_epoch: int = 0
    l2_shift: int = 0
    grid: int = 0

    def check(self, config: EngineConfig) -> None:
        """Raise ValueError naming the first register that does not fit ``config``."""
        limits = {
            "q": (1, 32), "mode": (0, 1), "d": (1, config.D_MAX),
            "step": (0, (1 << STEP_BITS) - 1), "step_shift": (0, 63),
            "decay_shift": (0, 31), "n_epoch": (0, (1 << 32) - 1), "l2_shift": (0, 63),
            "grid": (0, 1),
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"EngineRegs.{name} must be an integer in {lo}..{hi}, got {v!r}")


@dataclass
class EngineResult:
    """What one engine run leaves behind (golden and rtl return the same type).

    Attributes
    ----------
    model_words : ndarray of int64, shape (d,)
        The signed 32-bit Q8.24 model words after the stream.
    samples : int
        Dot groups completed (the ``samples`` counter).
    words : int
        Stream words consumed (the ``words`` counter).
    overflow : bool
        Sticky overflow flag (any saturation of E, T or X').
    cycles, stall_cycles : int or None
        Cycle counters; None for the golden model (it has no clock).
    trace : dict or None
        Golden only, on request: per-pass arrays ``A``, ``E``, ``T`` (lists of int64 arrays) for
        debugging a mismatch against the RTL.
    """

    model_words: np.ndarray
    samples: int
    words: int
    overflow: bool
    cycles: int | None = None
    stall_cycles: int | None = None
    trace: dict | None = field(default=None, repr=False, compare=False)


# ----------------------------------------------------------------------------------------------
# block functions: exact integer arithmetic of docs/engine.md, vectorized over any leading axes
# ----------------------------------------------------------------------------------------------

def sat32(x):
    """Saturate to signed 32 bits.

    Returns
    -------
    (y, ovf) : (int64 array, bool array)
        ``y = clip(x, -2**31, 2**31 - 1)``; ``ovf`` is True where clipping happened.
    """
    x = np.asarray(x, dtype=np.int64)
    y = np.clip(x, _I32_MIN, _I32_MAX)
    return y, y != x


def lane_mask(d: int, W: int) -> np.ndarray:
    """Active-lane mask, shape (C, W), C = ceil(d / W): lane i of chunk k is active iff
    ``k*W + i < d``."""
    C = -(-d // W)
    return (np.arange(C * W) < d).reshape(C, W)


def plane_sum(X_chunk, bits, mask=None):
    """One plane of the dot product: ``S = sum over active lanes of s_i * X_i``.

    Parameters
    ----------
    X_chunk : int array (..., W)
        Model words of the chunk (signed 32 bits).
    bits : 0/1 array (..., W)
        The plane word's bits; bit 1 -> +X, bit 0 -> -X.
    mask : bool array (..., W), optional
        Active lanes; inactive lanes contribute 0.  Default: all active.

    Returns
    -------
    S : int64 array (...)
        Width MW + log2(W) bits.
    """
    X = np.asarray(X_chunk, dtype=np.int64)
    s = 2 * np.asarray(bits, dtype=np.int64) - 1
    if mask is not None:
        s = s * np.asarray(mask, dtype=np.int64)
    return (s * X).sum(axis=-1)


def plane_weight(S, p):
    """``(S << G) >> (p + 1)``: a plane's contribution at plane index p (p = 0 is the MSB plane).

    Exact for p + 1 <= G; floor (arithmetic shift) beyond, which only q > G reaches.
    """
    S = np.asarray(S, dtype=np.int64)
    return (S << G) >> (np.asarray(p, dtype=np.int64) + 1)


def accumulate_dot(A, S, p):
    """``A + ((S << G) >> (p + 1))``: the dot accumulator after plane p (A starts at 0 each
    pass; width MW + log2(D_MAX) + G + 1, never overflows)."""
    return np.asarray(A, dtype=np.int64) + plane_weight(S, p)


def loss_squared(A, L):
    """Squared-loss error ``E = sat32((A >> G) - L)``.

    Parameters
    ----------
    A : int64 array
        Dot accumulators after the last chunk.
    L : int array
        Signed 32-bit label words.

    Returns
    -------
    (E, ovf)
    """
    A = np.asarray(A, dtype=np.int64)
    return sat32((A >> G) - np.asarray(L, dtype=np.int64))


def round_const(step_shift: int) -> int:
    """R of the scalar stage: ``2**(STEP_SHIFT-1)`` if STEP_SHIFT > 0 else 0."""
    return (1 << (int(step_shift) - 1)) if step_shift > 0 else 0


def scalar(E, step, step_shift):
    """Scalar stage ``T = sat32((E * STEP + R) >> STEP_SHIFT)`` (round half up).

    ``E`` is signed 32, ``STEP`` unsigned 18: the product has 50 bits and R < 2**63, so the sum
    fits int64.  ``step`` may be an array (one per sample, for step decay inside a pass).

    Returns
    -------
    (T, ovf)
    """
    E = np.asarray(E, dtype=np.int64)
    step = np.asarray(step, dtype=np.int64)
    R = np.int64(round_const(step_shift))
    return sat32((E * step + R) >> np.int64(step_shift))


def decay(step: int, decay_shift: int) -> int:
    """One step decay: ``STEP - (STEP >> DECAY_SHIFT)`` if DECAY_SHIFT > 0, else STEP."""
    step = int(step)
    return step - (step >> decay_shift) if decay_shift > 0 else step


def grad_term(T, p):
    """``(T << G) >> (p + 1)``: what a set/clear bit of grad plane p adds/subtracts to U."""
    T = np.asarray(T, dtype=np.int64)
    return (T << G) >> (np.asarray(p, dtype=np.int64) + 1)


def accumulate_update(U, bits, T, p):
    """``U_i + g_i * ((T << G) >> (p + 1))`` per lane (g_i = +1 for bit 1, -1 for bit 0).

    Parameters
    ----------
    U : int64 array (..., W)
    bits : 0/1 array (..., W)
        Grad plane p of one grad group.
    T : int array (...)
        The group's scalar.
    p : int
        Plane index.
    """
    s = 2 * np.asarray(bits, dtype=np.int64) - 1
    return np.asarray(U, dtype=np.int64) + s * grad_term(T, p)[..., None]


def shrink(X, l2_shift):
    """L2 shrink ``X >> L2_SHIFT`` if L2_SHIFT > 0, else 0."""
    X = np.asarray(X, dtype=np.int64)
    if l2_shift > 0:
        return X >> np.int64(l2_shift)
    return np.zeros_like(X)


def update(X, U, l2_shift, mask=None):
    """Model write-back ``X' = sat32(X - ((U + 2**(G-1)) >> G) - shrink(X))``.

    Parameters
    ----------
    X, U : int arrays (..., W)
    l2_shift : int
    mask : bool array (..., W), optional
        Active lanes; inactive lanes keep X and never raise overflow.

    Returns
    -------
    (X', ovf) : ovf is a bool array (True where an active lane saturated).
    """
    X = np.asarray(X, dtype=np.int64)
    U = np.asarray(U, dtype=np.int64)
    Xn, ovf = sat32(X - ((U + (1 << (G - 1))) >> G) - shrink(X, l2_shift))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        Xn = np.where(mask, Xn, X)
        ovf = ovf & mask
    return Xn, ovf


def group_planes(q: int, grid: int) -> int:
    """Planes per group the dot and the update use: q (symmetric), q + 1 (floor: t planes and
    the carry)."""
    return int(q) + int(grid)


def dot_group_words(q: int, mode: int, grid: int) -> int:
    """Stream words of one dot group: the group's planes, plus the grad copy's carry for
    double (mode 0) on the floor grid."""
    return int(q) + (2 if grid and mode == 0 else int(grid))


def buffered(mode: int, grid: int) -> bool:
    """Whether grad groups come from the code buffer (every floor-grid mode, symmetric mode 1)."""
    return bool(grid) or mode == 1


def plane_shifts(q: int, grid: int) -> np.ndarray:
    """``sh(p)`` for the planes of a group: ``p + 1`` for the q planes of the code (or of t),
    and ``q`` for the floor grid's carry plane (the weight of the last plane)."""
    sh = list(range(1, int(q) + 1)) + ([int(q)] if grid else [])
    return np.asarray(sh, dtype=np.int64)


def label_words(W: int) -> int:
    """Stream words per label: ceil(32 / W)."""
    return -(-32 // W)


def make_header(n_dot: int, n_grad: int) -> int:
    """Header word: bits [3:0] = n_dot, [7:4] = n_grad, rest 0."""
    if not (0 <= n_dot <= 15 and 0 <= n_grad <= 15):
        raise ValueError(f"header fields must be in 0..15, got n_dot={n_dot}, n_grad={n_grad}")
    return int(n_dot) | (int(n_grad) << HEADER_FIELD_BITS)


def parse_header(word) -> tuple[int, int]:
    """(n_dot, n_grad) of a header word; ValueError if bits above 7 are set."""
    word = int(word)
    if word >> (2 * HEADER_FIELD_BITS):
        raise ValueError(f"header word {word:#x} has bits set above bit 7")
    return word & 0xF, (word >> HEADER_FIELD_BITS) & 0xF


def parse_label(words, W: int):
    """Signed 32-bit label word(s) from label stream words.

    Parameters
    ----------
    words : uint array (..., ceil(32/W))
        Least significant word first; for W >= 32 the low 32 bits of the single word.
    """
    words = np.asarray(words, dtype=np.uint64)
    if W >= 32:
        raw = words[..., 0] & np.uint64(0xFFFFFFFF)
    else:
        shifts = (np.arange(words.shape[-1], dtype=np.uint64) * np.uint64(W))
        raw = np.bitwise_or.reduce(words << shifts, axis=-1) & np.uint64(0xFFFFFFFF)
    raw = raw.astype(np.int64)
    return np.where(raw >= (1 << 31), raw - (1 << 32), raw)


# ----------------------------------------------------------------------------------------------
# the whole engine
# ----------------------------------------------------------------------------------------------

def _clip32(x):
    # np.clip has a large per-call overhead; the run loop calls this 3 times per pass
    return np.minimum(np.maximum(x, _I32_MIN), _I32_MAX)


def _words_to_bits(words: np.ndarray, W: int) -> np.ndarray:
    """(N,) uint64 words -> (N, W) uint8 bits, bit i of the word at column i."""
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :W]


def _check_words(words, W: int) -> np.ndarray:
    w = np.asarray(words)
    if w.ndim != 1:
        raise ValueError(f"words must be a 1-D array of stream words, got shape {w.shape}")
    if w.size and not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"words must be integers, got dtype {w.dtype}")
    if w.size and np.issubdtype(w.dtype, np.signedinteger) and (w < 0).any():
        raise ValueError("words must be unsigned (no negative stream words)")
    w = w.astype(np.uint64)
    if W < 64 and w.size and (w >> np.uint64(W)).any():
        raise ValueError(f"a stream word has bits set above bit {W - 1} (W = {W})")
    return w


def run(config: EngineConfig, regs: EngineRegs, words, init_model=None,
        trace: bool = False) -> EngineResult:
    """Run the engine on a word stream, from ``clear``.

    Models: write the model port with ``init_model`` (zeros if None), strobe ``clear`` (counters,
    overflow, decay counter, T queue, pass state to 0; working step <- ``regs.step``), then
    consume ``words`` pass by pass exactly as docs/engine.md says.

    Parameters
    ----------
    config : EngineConfig
    regs : EngineRegs
    words : 1-D unsigned int array
        The packed stream (:mod:`zipml.reference.pack`); each word < 2**W.
    init_model : int array (d,), optional
        Signed 32-bit model words before the stream.
    trace : bool
        Record per-pass ``A``, ``E``, ``T`` in ``EngineResult.trace``.

    Returns
    -------
    EngineResult

    Raises
    ------
    ValueError
        On a stream the engine cannot consume: header fields above B_MAX, n_grad different
        from the previous pass's n_dot (the T queue would underflow or leak), a stream that
        ends inside a pass or with T values pending, a mode-1 pass larger than a buffer half.
    """
    regs.check(config)
    W, q, d, mode, grid = config.W, int(regs.q), int(regs.d), int(regs.mode), int(regs.grid)
    words = _check_words(words, W)
    C = -(-d // W)
    LW = label_words(W)
    mask = lane_mask(d, W)

    X = np.zeros(C * W, dtype=np.int64)
    if init_model is not None:
        m = np.asarray(init_model)
        if m.shape != (d,) or not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"init_model must be an integer array of shape ({d},), "
                             f"got {m.dtype} {m.shape}")
        if (m.astype(np.int64) < _I32_MIN).any() or (m.astype(np.int64) > _I32_MAX).any():
            raise ValueError("init_model words must fit signed 32 bits")
        X[:d] = m
    X = X.reshape(C, W)

    bits = _words_to_bits(words, W)
    N = words.size
    plane_shift = plane_shifts(q, grid)                       # sh(p) for p = 0..Gq-1
    Gq = group_planes(q, grid)
    Dq = dot_group_words(q, mode, grid)
    from_buf = buffered(mode, grid)
    half = config.BUF_DEPTH // 2
    step = int(regs.step)
    step_shift = int(regs.step_shift)
    R = np.int64(round_const(step_shift))
    count = 0                                                 # decay counter
    samples = 0
    overflow = False
    T_queue = np.zeros(0, dtype=np.int64)                     # T of the previous pass's dots
    buf = None                                                # previous pass's buffered signs
    tr = {"A": [], "E": [], "T": []} if trace else None

    # Walk the headers first (the control path: it needs only the header words), checking
    # everything the engine needs from a stream; then parse every label at once.
    wl = words.tolist()
    passes = []                        # (first label word, n_dot, n_grad, first chunk word)
    pos = 0
    prev_dot = 0
    while pos < N:
        n_pass = len(passes)
        n_dot, n_grad = parse_header(wl[pos])
        if n_dot > config.B_MAX or n_grad > config.B_MAX:
            raise ValueError(f"pass {n_pass} (word {pos}): header n_dot={n_dot}, "
                             f"n_grad={n_grad} exceeds B_MAX={config.B_MAX}")
        if n_grad != prev_dot:
            raise ValueError(f"pass {n_pass} (word {pos}): n_grad={n_grad} but the previous "
                             f"pass had n_dot={prev_dot} (n_grad(t+1) must equal n_dot(t))")
        if from_buf and C * n_dot * Gq > half:
            raise ValueError(f"pass {n_pass}: the code buffer needs {C * n_dot * Gq} words "
                             f"but a half of BUF_DEPTH={config.BUF_DEPTH} holds {half}")
        need = n_dot * LW + C * ((0 if from_buf else n_grad * q) + n_dot * Dq)
        if pos + 1 + need > N:
            raise ValueError(f"pass {n_pass}: stream ends inside the pass "
                             f"(needs {need} words after the header, {N - pos - 1} left)")
        passes.append((pos + 1, n_dot, n_grad, pos + 1 + n_dot * LW))
        pos += 1 + need
        prev_dot = n_dot
    if prev_dot:
        raise ValueError(f"stream ends with {prev_dot} T value(s) pending: end the segment "
                         f"with a pass of n_dot = 0 that carries their grad groups")
    label_idx = np.concatenate(
        [np.arange(p[0], p[3]) for p in passes] + [np.zeros(0, np.int64)]).astype(np.int64)
    L_all = parse_label(words[label_idx].reshape(-1, LW), W)
    L_at = 0

    for (_, n_dot, n_grad, pos) in passes:
        stream_grad = 0 if from_buf else n_grad
        L = L_all[L_at:L_at + n_dot]
        L_at += n_dot
        n_words = C * (stream_grad * q + n_dot * Dq)
        chunks = bits[pos:pos + n_words].reshape(C, -1, W)
        # signs +1/-1; inactive lanes need no mask here: their model words are 0 and are never
        # written (the np.where below), so they add 0 to every dot
        signs = 2 * chunks.astype(np.int64) - 1
        g_stream = signs[:, :stream_grad * q].reshape(C, stream_grad, q, W)
        d_words = signs[:, stream_grad * q:].reshape(C, n_dot, Dq, W)

        # update: sum of the n_grad group updates, then one write per active lane
        if n_grad:
            g_signs = buf[:, :n_grad] if from_buf else g_stream
            tw = (T_queue[:, None] << G) >> plane_shift[None, :]          # (n_grad, q)
            U = np.einsum("cspw,sp->cw", g_signs, tw)
            Xn = X - ((U + (1 << (G - 1))) >> G)
            if regs.l2_shift:
                Xn -= X >> np.int64(regs.l2_shift)
            Xs = _clip32(Xn)
            overflow |= bool(((Xs != Xn) & mask).any())
            X = np.where(mask, Xs, X)

        # dots against the updated model
        if n_dot:
            d_signs = d_words[:, :, :Gq]
            if from_buf:
                # floor mode 0: the grad copy's carry takes the place of the dot copy's
                buf = (d_signs if Dq == Gq else
                       np.concatenate([d_words[:, :, :q], d_words[:, :, q + 1:]], axis=2))
            S = np.einsum("cspw,cw->csp", d_signs, X)                       # (C, n_dot, q)
            A = ((S << G) >> plane_shift).sum(axis=(0, 2))                  # (n_dot,)
            En = (A >> G) - L
            E = _clip32(En)
            overflow |= bool((E != En).any())
            if regs.decay_shift and regs.n_epoch:
                steps = np.empty(n_dot, dtype=np.int64)
                for s in range(n_dot):      # at most B_MAX samples; decay is sequential
                    steps[s] = step
                    count += 1
                    if count == regs.n_epoch:
                        count = 0
                        step = decay(step, regs.decay_shift)
            else:
                steps = np.int64(step)
                count = (count + n_dot) % regs.n_epoch if regs.n_epoch else count + n_dot
            Tn = (E * steps + R) >> np.int64(step_shift)
            T_queue = _clip32(Tn)
            overflow |= bool((T_queue != Tn).any())
            samples += n_dot
            if tr is not None:
                tr["A"].append(A)
                tr["E"].append(E)
                tr["T"].append(T_queue.copy())
        else:
            T_queue = np.zeros(0, dtype=np.int64)
            buf = None

    return EngineResult(model_words=X.reshape(-1)[:d].copy(), samples=samples, words=int(N),
                        overflow=overflow, trace=tr)
