"""The one packer: quantized codes -> the engine's W-bit word stream (docs/engine.md).

Used by the golden model's tests, the cocotb/Verilator testbenches and the host driver, so the
stream layout lives here and nowhere else.  Words are ``uint64`` whatever W is (W <= 64).

Layout reminder (docs/engine.md, "Stream layout")::

    pass   := header  label{n_dot}  chunk{C}
    header := n_dot | n_grad << 4
    label  := ceil(32 / W) words of the 32-bit label word L, least significant first
    chunk k:= [grad group of each of the n_grad samples]  [dot group of each of the n_dot samples]
    group  := q plane words, MSB plane first; bit i = feature k*W + i

mode 0 (double) carries the grad groups (codes Q1 of the previous pass's samples); mode 1
(naive / deterministic / full) does not: the engine replays its buffered dot groups.

An epoch segment of n samples in batches of B is ``ceil(n / B) + 1`` passes: pass t carries the
dots of batch t (none in the last pass) and the grads of batch t-1 (none in the first).
"""

from __future__ import annotations

import numpy as np

from .golden import F, label_words, make_header, parse_header

__all__ = [
    "pack_planes", "unpack_planes", "label_word", "label_stream_words", "segment_headers",
    "segment_words", "pack_segment", "unpack_segment", "floor_group_codes",
]

_UINT_BY_BYTES = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
#: lane bytes (one per value and byte of its code) :func:`pack_segment` turns into planes at a
#: time: its temporaries stay in the L2 cache and come from the heap, not from fresh pages
_PACK_BLOCK = 1 << 18


def _check_W(W):
    if W not in (8, 16, 32, 64):
        raise ValueError(f"W must be a power of two in 8..64, got {W!r}")


def _check_q(q):
    if not (isinstance(q, (int, np.integer)) and 1 <= q <= 32):
        raise ValueError(f"q must be an integer in 1..32, got {q!r}")


def _check_codes(codes, q, name="codes"):
    c = np.asarray(codes)
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"{name} must be integer codes, got dtype {c.dtype}")
    top = (1 << q) - 1
    info = np.iinfo(c.dtype) if c.size else None
    # a bound the dtype guarantees is not scanned for (unsigned codes are >= 0; uint8 codes at
    # q = 8 and uint32 at q = 32, the quantizer's own output, need no scan at all)
    if c.size and ((info.min < 0 and c.min() < 0) or (info.max > top and c.max() > top)):
        raise ValueError(f"{name} must lie in 0..{top} for q={q}, "
                         f"got range {int(c.min())}..{int(c.max())}")
    return c


def _plane_words(c, q: int, W: int) -> np.ndarray:
    """(q, rows, C) plane words of checked (rows, d) codes as little-endian W-bit integers,
    MSB plane first.

    One byte lane of the codes at a time (q <= 8: one; else four, least significant first):
    a plane is ``lane & bit`` packed eight lanes to a byte by ``np.packbits`` (little bit
    order: lane i -> bit i), and W/8 consecutive bytes are one W-bit word.  Two passes over a
    byte per value per plane, no per-sample Python.  Plane-major because each plane is then
    one contiguous write; the interleaving into groups is the caller's one strided copy.
    """
    rows, d = c.shape
    C = -(-d // W)
    planes = np.empty((q, rows, C), dtype=_UINT_BY_BYTES[W // 8])
    if rows == 0:
        return planes
    nlanes = 1 if q <= 8 else 4
    src = np.ascontiguousarray(c, dtype=np.uint8 if q <= 8 else "<u4")
    src = src.view(np.uint8).reshape(rows, d, nlanes)
    lane = np.zeros((rows, C * W), dtype=np.uint8)      # lanes beyond d stay 0
    tmp = np.empty_like(lane)
    for byte in range(nlanes):
        lane[:, :d] = src[:, :, byte]
        for bit in range(min(8, q - 8 * byte)):
            np.bitwise_and(lane, np.uint8(1 << bit), out=tmp)
            packed = np.packbits(tmp.reshape(-1), bitorder="little")   # C*W lanes: whole bytes
            # code bit 8*byte+bit is plane q-1-(8*byte+bit): MSB plane first
            planes[q - 1 - 8 * byte - bit] = packed.view(planes.dtype).reshape(rows, C)
    return planes


def pack_planes(codes, q: int, W: int) -> np.ndarray:
    """Bit-planes of codes, chunk by chunk.

    Parameters
    ----------
    codes : int array (..., d)
        Codes in 0 .. 2**q - 1.
    q : int
        Bits per code, 1..32.
    W : int
        Stream width, 8/16/32/64.

    Returns
    -------
    planes : uint64 array (..., C, q), C = ceil(d / W)
        ``planes[..., k, p]`` has bit i = bit (q-1-p) of ``codes[..., k*W + i]`` (p = 0 is the
        MSB plane); lanes beyond d are 0.
    """
    _check_W(W)
    _check_q(q)
    c = _check_codes(codes, q)
    if c.ndim == 0:
        raise ValueError("codes must have at least one dimension (..., d)")
    lead, d = c.shape[:-1], c.shape[-1]
    planes = _plane_words(c.reshape(-1, d), q, W)
    return planes.transpose(1, 2, 0).astype(np.uint64).reshape(lead + planes.shape[2:] + (q,))


def unpack_planes(planes, q: int, W: int, d: int) -> np.ndarray:
    """Inverse of :func:`pack_planes`: (..., C, q) plane words -> (..., d) int64 codes."""
    _check_W(W)
    _check_q(q)
    p = np.asarray(planes, dtype=np.uint64)
    if p.shape[-1] != q or p.shape[-2] != -(-d // W):
        raise ValueError(f"planes must have shape (..., {-(-d // W)}, {q}), got {p.shape}")
    b = np.ascontiguousarray(p.astype("<u8")).view(np.uint8).reshape(p.shape + (8,))
    bits = np.unpackbits(b, axis=-1, bitorder="little")[..., :W].astype(np.int64)  # (..,C,q,W)
    weights = np.int64(1) << (q - 1 - np.arange(q, dtype=np.int64))
    codes = (bits * weights[:, None]).sum(axis=-2)                                   # (..,C,W)
    return codes.reshape(p.shape[:-2] + (p.shape[-2] * W,))[..., :d]


def label_word(b, q: int, grid: int = 0) -> np.ndarray:
    """Label word ``L = round(b * 2**F * k_q)`` (docs/engine.md, Loss).

    ``k_q = (2**q - 1) / 2**q`` on the symmetric grid (grid 0) matches the dot accumulator,
    whose planes weigh ``1/2**(p+1)``; on the floor grid (grid 1) the dot is exact and
    ``k_q = 1``, so one label word serves every q.  Rounding is half to even (``np.rint``); L is a
    host choice, the engine only subtracts it.  Returns int64 values that fit signed 32 bits
    (ValueError otherwise).
    """
    _check_q(q)
    b = np.asarray(b, dtype=np.float64)
    if not np.isfinite(b).all():
        raise ValueError("labels must be finite")
    k_q = 1.0 if grid else ((1 << q) - 1) / float(1 << q)
    L = np.rint(b * float(1 << F) * k_q)
    if b.size and (L.min() < -(1 << 31) or L.max() > (1 << 31) - 1):
        raise ValueError(f"a label is too large for a 32-bit Q8.24 label word "
                         f"(|b| must stay below 128, got max |b| = {np.abs(b).max():g})")
    return L.astype(np.int64)


def floor_group_codes(t, delta_dot, delta_grad=None) -> np.ndarray:
    """The floor grid's dot groups as codes :func:`pack_segment` packs at ``q + 1`` planes
    (``q + 2`` with ``delta_grad``): ``t << 1 | delta_dot`` (``t << 2 | delta_dot << 1 |
    delta_grad``), so the planes are t MSB first, then ``delta_dot``, then ``delta_grad``
    (docs/engine.md, "Stream layout").  Pack them with mode 1: no grad groups travel."""
    t = np.asarray(t, dtype=np.uint32)
    c = (t << np.uint32(1)) | np.asarray(delta_dot, dtype=np.uint32)
    if delta_grad is not None:
        c = (c << np.uint32(1)) | np.asarray(delta_grad, dtype=np.uint32)
    return c.astype(np.uint16 if int(c.max(initial=0)) < (1 << 16) else np.uint32)


def label_stream_words(L, W: int) -> np.ndarray:
    """(n,) signed 32-bit label words -> (n, ceil(32/W)) uint64 stream words, LS word first."""
    _check_W(W)
    L = np.asarray(L, dtype=np.int64)
    if L.size and (L.min() < -(1 << 31) or L.max() > (1 << 31) - 1):
        raise ValueError("label words must fit signed 32 bits")
    raw = (L & 0xFFFFFFFF).astype(np.uint64)
    LW = label_words(W)
    shifts = (np.arange(LW, dtype=np.uint64) * np.uint64(W))
    wmask = np.uint64((1 << W) - 1) if W < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return (raw[..., None] >> shifts) & wmask


def segment_headers(n: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_dot, n_grad) per pass of an epoch segment: ``ceil(n/B) + 1`` passes."""
    if not (isinstance(B, (int, np.integer)) and 1 <= B <= 15):
        raise ValueError(f"B must be an integer in 1..15, got {B!r}")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive number of samples, got {n!r}")
    nb = -(-n // B)
    n_dot = np.zeros(nb + 1, dtype=np.int64)
    n_dot[:nb] = B
    n_dot[nb - 1] = n - (nb - 1) * B
    n_grad = np.concatenate([[0], n_dot[:-1]])
    return n_dot, n_grad


def _layout(n, d, q, W, B, mode):
    n_dot, n_grad = segment_headers(n, B)
    C = -(-d // W)
    LW = label_words(W)
    gq = n_grad * q if mode == 0 else np.zeros_like(n_grad)
    chunk_len = gq + n_dot * q
    pass_len = 1 + n_dot * LW + C * chunk_len
    off = np.concatenate([[0], np.cumsum(pass_len)[:-1]])
    return n_dot, n_grad, C, LW, gq, chunk_len, pass_len, off


def segment_words(n: int, d: int, q: int, W: int, B: int = 1, mode: int = 0) -> int:
    """Length in words of the epoch segment :func:`pack_segment` builds (for bits moved)."""
    _check_W(W)
    _check_q(q)
    return int(_layout(n, d, q, W, B, mode)[6].sum())


def pack_segment(W: int, q: int, mode: int, dot_codes, L, B: int = 1,
                 grad_codes=None) -> np.ndarray:
    """The word stream of one epoch segment.

    Parameters
    ----------
    W, q : int
        Stream width and bits per code.
    mode : int
        0 = double: ``grad_codes`` (Q1) travel in the stream one pass after their sample's
        ``dot_codes`` (Q2); 1 = single: no grad groups (``grad_codes`` must be None).
    dot_codes : int array (n, d)
        Codes of the dot groups, samples in stream order.
    L : int array (n,)
        Signed 32-bit label words (:func:`label_word`).
    B : int
        Minibatch size; the last batch holds the remainder.
    grad_codes : int array (n, d), mode 0 only

    Returns
    -------
    words : uint64 array
    """
    _check_W(W)
    _check_q(q)
    if mode not in (0, 1):
        raise ValueError(f"mode must be 0 (double) or 1 (single), got {mode!r}")
    dot_codes = np.asarray(dot_codes)
    if dot_codes.ndim != 2 or dot_codes.shape[0] < 1 or dot_codes.shape[1] < 1:
        raise ValueError(f"dot_codes must have shape (n, d) with n, d >= 1, got {dot_codes.shape}")
    n, d = dot_codes.shape
    if mode == 0:
        if grad_codes is None or np.shape(grad_codes) != (n, d):
            raise ValueError(f"mode 0 (double) needs grad_codes of shape ({n}, {d}), got "
                             f"{None if grad_codes is None else np.shape(grad_codes)}")
    elif grad_codes is not None:
        raise ValueError("mode 1 (single) streams no grad groups: pass grad_codes=None")
    L = np.asarray(L)
    if L.shape != (n,):
        raise ValueError(f"L must have shape ({n},), got {L.shape}")

    dot_codes = _check_codes(dot_codes, q, "dot_codes")
    if mode == 0:
        grad_codes = _check_codes(grad_codes, q, "grad_codes")

    n_dot, n_grad, C, LW, _, _, pass_len, off = _layout(n, d, q, W, B, mode)
    out = np.zeros(int(pass_len.sum()), dtype=np.uint64)
    labels = label_stream_words(L, W)                              # (n, LW)
    # Passes with the same (n_dot, n_grad) have the same length, so a run of them is one
    # (passes, pass_len) block of the stream and every field is one strided copy.  A segment
    # has at most four runs: first, full batches, the remainder batch, the last (grads only).
    key = n_dot | (n_grad << 4)
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    ends = np.append(starts[1:], key.size)
    for t0, t1 in zip(starts.tolist(), ends.tolist()):
        nd, ng, plen = int(n_dot[t0]), int(n_grad[t0]), int(pass_len[t0])
        sg = ng if mode == 0 else 0             # grad groups in the stream
        cnt = t1 - t0
        blk = out[off[t0]:off[t0] + cnt * plen].reshape(cnt, plen)
        blk[:, 0] = make_header(nd, ng)
        data = blk[:, 1 + nd * LW:].reshape(cnt, C, sg + nd, q)
        # the dots of pass t are samples t*B.., its grads those of pass t-1: within a run every
        # pass but a lone remainder pass holds a full batch, so the samples are consecutive
        if nd:
            blk[:, 1:1 + nd * LW] = labels[t0 * B:t0 * B + cnt * nd].reshape(cnt, nd * LW)
            _put_groups(data[:, :, sg:], dot_codes, t0 * B, q, W)
        if sg:
            _put_groups(data[:, :, :sg], grad_codes, (t0 - 1) * B, q, W)
    return out


def _put_groups(data, codes, s0: int, q: int, W: int) -> None:
    """Write the groups of samples ``codes[s0:]`` into ``data`` (passes, C, per pass, q) of a
    run, a few passes at a time: the planes of a block (:data:`_PACK_BLOCK` bytes of lanes)
    stay in cache and no temporary grows with the segment."""
    passes, C, per = data.shape[:3]
    G = max(1, _PACK_BLOCK // (per * C * W))     # passes per block
    for g0 in range(0, passes, G):
        g1 = min(passes, g0 + G)
        planes = _plane_words(codes[s0 + g0 * per:s0 + g1 * per], q, W)   # (q, samples, C)
        data[g0:g1] = planes.reshape(q, g1 - g0, per, C).transpose(1, 3, 2, 0)


def unpack_segment(words, W: int, q: int, d: int, mode: int) -> dict:
    """Parse a stream pass by pass (walking the headers, as the engine does) back into its parts.

    Returns
    -------
    dict with ``n_dot``, ``n_grad`` (per pass), ``L`` (n,), ``dot_codes`` (n, d) and, for
    mode 0, ``grad_codes`` (n, d) (in the order their grad groups appear), else None.
    """
    _check_W(W)
    _check_q(q)
    words = np.asarray(words, dtype=np.uint64)
    C = -(-d // W)
    LW = label_words(W)
    pos = 0
    n_dot_l, n_grad_l, L_l, dot_l, grad_l = [], [], [], [], []
    while pos < words.size:
        nd, ng = parse_header(words[pos])
        pos += 1
        n_dot_l.append(nd)
        n_grad_l.append(ng)
        lab = words[pos:pos + nd * LW].reshape(nd, LW)
        pos += nd * LW
        shifts = np.arange(LW, dtype=np.uint64) * np.uint64(W)
        raw = (np.bitwise_or.reduce(lab << shifts, axis=-1) & np.uint64(0xFFFFFFFF)).astype(
            np.int64)
        L_l.append(np.where(raw >= 1 << 31, raw - (1 << 32), raw))
        sg = ng if mode == 0 else 0
        per = (sg + nd) * q
        if pos + C * per > words.size:
            raise ValueError(f"stream ends inside pass {len(n_dot_l) - 1}")
        blk = words[pos:pos + C * per].reshape(C, sg + nd, q)
        pos += C * per
        grad_l.append(unpack_planes(blk[:, :sg].transpose(1, 0, 2), q, W, d))
        dot_l.append(unpack_planes(blk[:, sg:].transpose(1, 0, 2), q, W, d))
    return {
        "n_dot": np.array(n_dot_l), "n_grad": np.array(n_grad_l),
        "L": np.concatenate(L_l) if L_l else np.zeros(0, np.int64),
        "dot_codes": np.concatenate(dot_l) if dot_l else np.zeros((0, d), np.int64),
        "grad_codes": (np.concatenate(grad_l) if grad_l else np.zeros((0, d), np.int64))
        if mode == 0 else None,
    }
