"""The vectorized packer against a per-value packer written here from docs/engine.md.

The reference below builds the stream one word and one bit at a time, walking passes, chunks,
groups and planes in the order "Stream layout" gives them, with no NumPy.  The packer works in
blocks of passes (``pack._PACK_BLOCK`` bytes of lanes); a tiny block forces a block per pass,
so the block seams are compared too.
"""

import numpy as np
import pytest

from zipml.reference import pack

QS = list(range(1, 9)) + [32]


def per_value_segment(W, q, mode, dot, L, B, grad):
    """docs/engine.md "Stream layout", word by word."""
    n, d = len(dot), len(dot[0])
    C = -(-d // W)
    LW = -(-32 // W)
    batches = [list(range(s, min(n, s + B))) for s in range(0, n, B)] + [[]]
    words = []
    for t, dots in enumerate(batches):
        grads = batches[t - 1] if t > 0 else []
        words.append(len(dots) | (len(grads) << 4))                 # header
        for s in dots:                                              # labels, LS word first
            raw = int(L[s]) & 0xFFFFFFFF
            words += [(raw >> (j * W)) & ((1 << W) - 1) for j in range(LW)]
        groups = ([grad[s] for s in grads] if mode == 0 else []) + [dot[s] for s in dots]
        for k in range(C):
            for codes in groups:                                    # grad groups, then dots
                for p in range(q):                                  # MSB plane first
                    word = 0
                    for i in range(W):                              # bit i = feature k*W + i
                        if k * W + i < d:
                            word |= ((int(codes[k * W + i]) >> (q - 1 - p)) & 1) << i
                    words.append(word)
    return words


def _case(rng, W, q, mode):
    n, B = int(rng.integers(1, 14)), int(rng.integers(1, 6))
    d = int(rng.integers(1, 2 * W))
    if d % W == 0:                                                  # never a multiple of W
        d += 1
    dtype = rng.choice([np.uint8 if q <= 8 else np.uint32, np.int64])
    dot = rng.integers(0, 2**q, size=(n, d)).astype(dtype)
    grad = rng.integers(0, 2**q, size=(n, d)).astype(dtype) if mode == 0 else None
    L = rng.integers(-2**31, 2**31, size=n)
    return dot, L, B, grad


@pytest.mark.parametrize("block", [None, 1])
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("W", [8, 16, 32, 64])
def test_pack_segment_matches_the_per_value_packer(W, q, mode, block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(pack, "_PACK_BLOCK", block)
    rng = np.random.default_rng([W, q, mode, 7])
    for _ in range(2):
        dot, L, B, grad = _case(rng, W, q, mode)
        words = pack.pack_segment(W, q, mode, dot, L, B, grad)
        assert words.dtype == np.uint64
        assert words.tolist() == per_value_segment(W, q, mode, dot.tolist(), L, B,
                                                   None if grad is None else grad.tolist())


@pytest.mark.parametrize("q", QS)
def test_pack_planes_of_many_rows_and_strided_codes(q):
    """pack_planes of a (rows, a, d) array and of a non-contiguous view: the per-value planes
    of every sample (the stream above carries them as groups)."""
    rng = np.random.default_rng(q)
    W, d = 16, 37
    codes = rng.integers(0, 2**q, size=(3, 2, 2 * d), dtype=np.uint64)[..., ::2]  # strided
    planes = pack.pack_planes(codes, q, W)
    assert planes.shape == (3, 2, -(-d // W), q)
    for idx in np.ndindex(3, 2):
        expect = per_value_segment(W, q, 1, [codes[idx].tolist()], [0], 1, None)
        # one sample, mode 1: header, two label words (W = 16), its C*q plane words, then the
        # last pass's header
        assert planes[idx].reshape(-1).tolist() == expect[3:-1]
