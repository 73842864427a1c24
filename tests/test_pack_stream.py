"""The packer: bit-plane layout, labels, pass structure, round trip (docs/engine.md)."""

import numpy as np
import pytest

from zipml.reference import pack

QS = list(range(1, 9)) + [32]


def loop_planes(codes, q, W):
    """Bit-planes written one bit at a time from the page: word (k, p) bit i = bit q-1-p of
    code k*W+i."""
    d = len(codes)
    C = -(-d // W)
    out = []
    for k in range(C):
        row = []
        for p in range(q):
            word = 0
            for i in range(W):
                j = k * W + i
                if j < d:
                    word |= ((int(codes[j]) >> (q - 1 - p)) & 1) << i
            row.append(word)
        out.append(row)
    return out


@pytest.mark.parametrize("W", [8, 16, 32, 64])
@pytest.mark.parametrize("q", QS)
def test_pack_planes_matches_loop_and_round_trips(W, q):
    rng = np.random.default_rng([W, q])
    for d in (1, W - 1, W + 1, int(rng.integers(2, 3 * W))):
        codes = rng.integers(0, 2**q, size=(3, d), dtype=np.uint64)
        planes = pack.pack_planes(codes, q, W)
        assert planes.dtype == np.uint64 and planes.shape == (3, -(-d // W), q)
        for r in range(3):
            assert planes[r].tolist() == loop_planes(codes[r], q, W)
        np.testing.assert_array_equal(pack.unpack_planes(planes, q, W, d), codes)


def test_pack_planes_by_hand():
    # W=8, q=2, codes 3,0,1,2 on lanes 0..3: MSB plane = bits 1 of codes = lanes 0,3 -> 0b1001;
    # LSB plane = lanes 0,2 -> 0b0101
    assert pack.pack_planes([3, 0, 1, 2], 2, 8).tolist() == [[0b1001, 0b0101]]
    # the all-ones code (value +1) sets every lane of every plane: the intercept column
    assert pack.pack_planes(np.full(64, 255), 8, 64)[0].tolist() == [2**64 - 1] * 8


@pytest.mark.parametrize("W", [8, 16, 32, 64])
@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("mode", [0, 1])
def test_pack_segment_round_trip(W, q, mode):
    rng = np.random.default_rng([W, q, mode, 1])
    n, B = int(rng.integers(1, 12)), int(rng.integers(1, 6))
    d = int(rng.integers(1, 3 * W)) | 1               # odd: never a multiple of W
    dot = rng.integers(0, 2**q, size=(n, d), dtype=np.uint64)
    grad = rng.integers(0, 2**q, size=(n, d), dtype=np.uint64) if mode == 0 else None
    L = rng.integers(-2**31, 2**31, size=n)
    words = pack.pack_segment(W, q, mode, dot, L, B, grad)
    assert words.dtype == np.uint64
    assert W == 64 or not (words >> np.uint64(W)).any()
    u = pack.unpack_segment(words, W, q, d, mode)
    nb = -(-n // B)
    assert u["n_dot"].tolist() == [B] * (nb - 1) + [n - (nb - 1) * B, 0]
    assert u["n_grad"].tolist() == [0] + u["n_dot"][:-1].tolist()
    np.testing.assert_array_equal(u["dot_codes"], dot)
    np.testing.assert_array_equal(u["L"], L)
    if mode == 0:
        np.testing.assert_array_equal(u["grad_codes"], grad)
    else:
        assert u["grad_codes"] is None


def test_segment_length_by_hand():
    # n=5, B=2, d=10, q=3, W=8: passes carry dots 2,2,1,0 and grads 0,2,2,1; C=2; label 4 words
    # mode 0 words = 4 headers + 5*4 labels + 2 chunks * 3 planes * (dots 5 + grads 5) = 84
    assert pack.segment_words(5, 10, 3, 8, B=2, mode=0) == 4 + 20 + 2 * 3 * 10
    # mode 1 drops the grad groups: 4 + 20 + 2 * 3 * 5 = 54
    assert pack.segment_words(5, 10, 3, 8, B=2, mode=1) == 54
    rng = np.random.default_rng(0)
    words = pack.pack_segment(8, 3, 1, rng.integers(0, 8, (5, 10)), np.zeros(5, int), 2)
    assert words.size == 54
    assert [int(words[i]) for i in (0,)] == [2]        # first header: 2 dots, 0 grads


def test_first_pass_layout_by_hand():
    # W=32, q=1, d=3, B=1, mode 0, two samples: header, label, dot group of sample 0; then
    # header (1 dot, 1 grad), label, [grad of sample 0][dot of sample 1]; then header (0, 1), grad
    dot = np.array([[1, 0, 1], [0, 1, 1]])
    grad = np.array([[0, 0, 1], [1, 1, 0]])
    words = pack.pack_segment(32, 1, 0, dot, np.array([-1, 7]), 1, grad).tolist()
    assert words == [0x01, 0xFFFFFFFF, 0b101,
                     0x11, 7, 0b100, 0b110,
                     0x10, 0b011]


def test_label_words():
    # L = round(b * 2^24 * (2^q-1)/2^q): q=1, b=1 -> 2^23; q=2, b=-0.5 -> -0.5*2^24*3/4
    assert pack.label_word([1.0], 1).tolist() == [2**23]
    assert pack.label_word([-0.5], 2).tolist() == [-(3 * 2**21)]
    # W=8: four words, least significant first, two's complement
    assert pack.label_stream_words([-2], 8).tolist() == [[0xFE, 0xFF, 0xFF, 0xFF]]
    assert pack.label_stream_words([0x12345678], 16).tolist() == [[0x5678, 0x1234]]
    assert pack.label_stream_words([-1], 64).tolist() == [[0xFFFFFFFF]]


@pytest.mark.parametrize("call, match", [
    (lambda: pack.pack_planes([4], 2, 8), "must lie in 0..3"),
    (lambda: pack.pack_planes([1.5], 2, 8), "integer codes"),
    (lambda: pack.pack_planes([1], 2, 12), "W must be"),
    (lambda: pack.pack_planes([1], 33, 8), "q must be"),
    (lambda: pack.pack_segment(8, 2, 0, np.zeros((2, 3), int), [0, 0]), "needs grad_codes"),
    (lambda: pack.pack_segment(8, 2, 1, np.zeros((2, 3), int), [0, 0], 1, np.zeros((2, 3), int)),
     "no grad groups"),
    (lambda: pack.pack_segment(8, 2, 1, np.zeros((2, 3), int), [0]), "L must have shape"),
    (lambda: pack.pack_segment(8, 2, 1, np.zeros((2, 3), int), [0, 0], 16), "B must be"),
    (lambda: pack.label_word([200.0], 8), "too large"),
])
def test_pack_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
