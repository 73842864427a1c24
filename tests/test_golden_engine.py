"""The golden model against an independent, loop-based, Python-int reading of docs/engine.md.

The slow engine below is written from the page, not from zipml.reference.golden: it walks the
stream word by word, chunk by chunk, lane by lane with Python integers (no width limits, so a
hidden int64 wrap in the golden model would show), and applies each chunk's update before that
chunk's dot products, exactly as the page words it.  The streams are built here too, by a
loop-based writer that puts random garbage in the inactive lanes and random batch sizes per
pass, so neither the packer nor the lane mask can hide a bug.
"""

import numpy as np
import pytest

from zipml.reference import golden
from zipml.reference.golden import EngineConfig, EngineRegs

G = 8


def slow_engine(config, regs, words, init_model):
    """docs/engine.md in plain Python integers."""
    W, q, d, mode, grid = config.W, regs.q, regs.d, regs.mode, regs.grid
    # floor grid: q + 1 planes, the carry weighs like the last plane; grad groups from the
    # buffer; a double dot group has one more word, the grad copy's carry (docs/engine.md)
    nplanes = q + grid
    shifts = [p + 1 for p in range(q)] + ([q] if grid else [])
    dot_words = q + (2 if grid and mode == 0 else grid)
    from_buffer = grid == 1 or mode == 1
    C = -(-d // W)
    LW = -(-32 // W)
    X = [int(v) for v in init_model]
    state = {"ovf": False}

    def sat(v):
        if v > 2**31 - 1:
            state["ovf"] = True
            return 2**31 - 1
        if v < -(2**31):
            state["ovf"] = True
            return -(2**31)
        return v

    words = [int(w) for w in words]
    pos = 0
    T_queue = []
    buffer = None
    step = regs.step
    count = 0
    samples = 0
    while pos < len(words):
        h = words[pos]
        pos += 1
        n_dot, n_grad = h & 15, (h >> 4) & 15
        assert n_grad == len(T_queue)
        labels = []
        for _ in range(n_dot):
            raw = 0
            for w in range(LW):
                raw |= words[pos] << (W * w)
                pos += 1
            raw &= 0xFFFFFFFF
            labels.append(raw - 2**32 if raw >= 2**31 else raw)
        A = [0] * n_dot
        new_buffer = []
        for k in range(C):
            grad_groups = []
            for s in range(n_grad):
                if not from_buffer:
                    grad_groups.append(words[pos:pos + q])
                    pos += q
                else:
                    grad_groups.append(buffer[k][s])
            if n_grad:
                for i in range(W):
                    j = k * W + i
                    if j >= d:
                        continue
                    U = 0
                    for s in range(n_grad):
                        for p in range(nplanes):
                            g = 1 if (grad_groups[s][p] >> i) & 1 else -1
                            U += g * ((T_queue[s] << G) >> shifts[p])
                    shrink = X[j] >> regs.l2_shift if regs.l2_shift else 0
                    X[j] = sat(X[j] - ((U + 2**(G - 1)) >> G) - shrink)
            dot_groups = []
            for s in range(n_dot):
                planes = words[pos:pos + dot_words]
                pos += dot_words
                # the buffer keeps t and the grad copy's carry (the last word)
                dot_groups.append(planes[:q] + planes[-1:] if grid else planes)
                for p in range(nplanes):
                    S = 0
                    for i in range(W):
                        j = k * W + i
                        if j < d:
                            S += X[j] if (planes[p] >> i) & 1 else -X[j]
                    A[s] += (S << G) >> shifts[p]
            new_buffer.append(dot_groups)
        buffer = new_buffer
        T_queue = []
        for s in range(n_dot):
            E = sat((A[s] >> G) - labels[s])
            R = 2**(regs.step_shift - 1) if regs.step_shift else 0
            T_queue.append(sat((E * step + R) >> regs.step_shift))
            samples += 1
            count += 1
            if regs.n_epoch and count == regs.n_epoch:
                count = 0
                if regs.decay_shift:
                    step = step - (step >> regs.decay_shift)
    return X, samples, pos, state["ovf"]


def write_stream(rng, W, q, d, mode, batches, label_range, garbage=True, grid=0):
    """Loop-based stream writer: pass t has len(batches[t]) dots; last pass has none."""
    stream_grad = 1 if (mode == 0 and not grid) else 0
    dot_words = q + (2 if grid and mode == 0 else grid)
    C = -(-d // W)
    LW = -(-32 // W)
    words = []
    prev = 0
    for n_dot in list(batches) + [0]:
        words.append(n_dot | (prev << 4))
        for _ in range(n_dot):
            L = int(rng.integers(-label_range, label_range + 1)) & 0xFFFFFFFF
            for w in range(LW):
                words.append((L >> (W * w)) & ((1 << min(W, 32)) - 1) if W < 32 else L)
        for k in range(C):
            for g in range(prev * stream_grad + n_dot):
                for _p in range(q if g < prev * stream_grad else dot_words):
                    word = 0
                    for i in range(W):
                        if k * W + i < d or garbage:
                            word |= int(rng.integers(0, 2)) << i
                    words.append(word)
        prev = n_dot
    return np.array(words, dtype=np.uint64)


def compare(config, regs, words, init_model):
    got = golden.run(config, regs, words, init_model=np.array(init_model, dtype=np.int64))
    X, samples, n_words, ovf = slow_engine(config, regs, words, init_model)
    assert got.model_words.tolist() == X
    assert (got.samples, got.words, got.overflow) == (samples, n_words, ovf)
    assert got.cycles is None
    return got, ovf


CASES = []
_rng = np.random.default_rng(20261123)
for W in (8, 16, 32, 64):
    for d in (1, W - 1, W, W + 1, int(_rng.integers(2 * W, 3 * W + 7))):
        CASES.append((W, d))


@pytest.mark.parametrize("W,d", CASES)
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("grid", [0, 1])
def test_golden_matches_slow_engine(W, d, mode, grid):
    rng = np.random.default_rng([W, d, mode, grid])
    B_MAX = 4
    config = EngineConfig(W=W, D_MAX=-(-300 // W) * W, B_MAX=B_MAX, BUF_DEPTH=2 * 4 * 10 * 32)
    for trial in range(3):
        q = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 32])) if trial else int(rng.integers(1, 9))
        batches = rng.integers(1, B_MAX + 1, size=int(rng.integers(1, 5)))
        regs = EngineRegs(q=q, mode=mode, d=d, step=int(rng.integers(1, 2**18)),
                          step_shift=int(rng.integers(14, 26)),
                          decay_shift=int(rng.integers(0, 4)), n_epoch=int(rng.integers(0, 4)),
                          l2_shift=int(rng.choice([0, 0, 3, 9])), grid=grid)
        init = rng.integers(-2**26, 2**26, size=d).tolist()
        words = write_stream(rng, W, q, d, mode, batches, 2**25, grid=grid)
        compare(config, regs, words, init)


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("grid", [0, 1])
def test_golden_saturation_sets_overflow_exactly_like_slow_engine(mode, grid):
    """Large model words, labels and steps: E, T and X' saturate; results must still agree."""
    rng = np.random.default_rng(7 + mode)
    config = EngineConfig(W=8, D_MAX=64, B_MAX=3, BUF_DEPTH=512)
    seen_ovf = False
    for trial in range(6):
        q = int(rng.integers(1, 9))
        d = int(rng.integers(1, 20))
        regs = EngineRegs(q=q, mode=mode, d=d, step=2**18 - 1, step_shift=int(rng.integers(0, 8)),
                          l2_shift=int(rng.choice([0, 1])), grid=grid)
        init = rng.integers(-2**31, 2**31, size=d).tolist()
        words = write_stream(rng, 8, q, d, mode, rng.integers(1, 4, size=3), 2**31 - 1,
                             grid=grid)
        _, ovf = compare(config, regs, words, init)
        seen_ovf |= ovf
    assert seen_ovf, "the saturation case never saturated: the test would prove nothing"


def test_golden_step_decay_inside_a_segment():
    """n_epoch smaller than the stream: the step decays between samples of one pass too."""
    rng = np.random.default_rng(3)
    config = EngineConfig(W=16, D_MAX=64, B_MAX=5, BUF_DEPTH=0)
    regs = EngineRegs(q=3, mode=0, d=20, step=200000, step_shift=22, decay_shift=1, n_epoch=3)
    words = write_stream(rng, 16, 3, 20, 0, [5, 4, 5, 2], 2**24)
    init = rng.integers(-2**25, 2**25, size=20).tolist()
    got, _ = compare(config, regs, words, init)
    # the decay must matter: the same stream with a constant step ends elsewhere
    flat = golden.run(config, EngineRegs(q=3, mode=0, d=20, step=200000, step_shift=22),
                      words, init_model=np.array(init))
    assert not np.array_equal(flat.model_words, got.model_words)


def test_packer_stream_runs_identically_in_both_models():
    """A stream from the real packer (not the test writer) through both models."""
    from zipml.reference import pack
    rng = np.random.default_rng(11)
    config = EngineConfig(W=32, D_MAX=128, B_MAX=4, BUF_DEPTH=2 * 4 * 4 * 8)
    for mode in (0, 1):
        n, d, q, B = 9, 37, 4, 3
        dot = rng.integers(0, 2**q, size=(n, d))
        grad = rng.integers(0, 2**q, size=(n, d)) if mode == 0 else None
        L = pack.label_word(rng.uniform(-1, 1, n), q)
        words = pack.pack_segment(32, q, mode, dot, L, B, grad)
        regs = EngineRegs(q=q, mode=mode, d=d, step=150000, step_shift=24, l2_shift=12)
        got, _ = compare(config, regs, words, rng.integers(-2**24, 2**24, size=d).tolist())
        assert got.samples == n and got.words == words.size


def test_block_functions_compose_to_the_engine():
    """The block functions the gateware tests use give the engine's A, E and T of one pass."""
    rng = np.random.default_rng(5)
    W, d, q = 16, 40, 5
    config = EngineConfig(W=W, D_MAX=64, B_MAX=2, BUF_DEPTH=0)
    regs = EngineRegs(q=q, mode=0, d=d, step=91234, step_shift=21)
    X = rng.integers(-2**27, 2**27, size=d)
    words = write_stream(rng, W, q, d, 0, [2], 2**25)
    res = golden.run(config, regs, words, init_model=X, trace=True)
    # recompute pass 0 with block functions only
    LW = golden.label_words(W)
    n_dot, n_grad = golden.parse_header(words[0])
    assert (n_dot, n_grad) == (2, 0)
    L = golden.parse_label(words[1:1 + 2 * LW].reshape(2, LW), W)
    mask = golden.lane_mask(d, W)
    Xc = np.zeros(mask.size, np.int64)
    Xc[:d] = X
    Xc = Xc.reshape(mask.shape)
    A = np.zeros(2, np.int64)
    pos = 1 + 2 * LW
    for k in range(mask.shape[0]):
        for s in range(2):
            for p in range(q):
                bits = (int(words[pos]) >> np.arange(W)) & 1
                pos += 1
                A[s] = golden.accumulate_dot(A[s], golden.plane_sum(Xc[k], bits, mask[k]), p)
    E, _ = golden.loss_squared(A, L)
    T, _ = golden.scalar(E, regs.step, regs.step_shift)
    np.testing.assert_array_equal(A, res.trace["A"][0])
    np.testing.assert_array_equal(E, res.trace["E"][0])
    np.testing.assert_array_equal(T, res.trace["T"][0])
    # and the update of pass 1 from block functions
    U = np.zeros_like(Xc)
    assert golden.parse_header(words[pos]) == (0, 2)
    pos += 1
    for k in range(mask.shape[0]):
        for s in range(2):
            for p in range(q):
                bits = (int(words[pos]) >> np.arange(W)) & 1
                pos += 1
                U[k] = golden.accumulate_update(U[k], bits, T[s], p)
    Xn, ovf = golden.update(Xc, U, regs.l2_shift, mask)
    np.testing.assert_array_equal(Xn.reshape(-1)[:d], res.model_words)
    assert not ovf.any() and not res.overflow


def test_block_saturation_and_rounding_by_hand():
    # values worked out by hand from docs/engine.md
    assert golden.sat32(2**31)[0] == 2**31 - 1 and golden.sat32(2**31)[1]
    assert golden.sat32(-(2**31) - 1)[0] == -(2**31)
    assert not golden.sat32(-(2**31))[1]
    # T = (E*STEP + 2**(s-1)) >> s: 3*1 + 2 >> 2 = 1 ; -3*1 + 2 >> 2 = -1 (floor of -0.25)
    assert golden.scalar(3, 1, 2)[0] == 1 and golden.scalar(-3, 1, 2)[0] == -1
    assert golden.scalar(-2, 1, 2)[0] == 0            # -0.5 rounds half up to 0
    # plane weight beyond G floors: (-1 << 8) >> 10 = -1
    assert golden.plane_weight(-1, 9) == -1 and golden.plane_weight(1, 9) == 0
    # update rounding: U = 128 -> (128 + 128) >> 8 = 1 ; U = 127 -> 0
    assert golden.update([10], [128], 0)[0][0] == 9 and golden.update([10], [127], 0)[0][0] == 10
    assert golden.update([-7], [0], 1)[0][0] == -3   # shrink floors: -7 - (-4)
    assert golden.decay(100, 2) == 75 and golden.decay(100, 0) == 100


@pytest.mark.parametrize("bad, match", [
    ("bmax", "exceeds B_MAX"),
    ("ngrad", "n_grad=2 but the previous pass had n_dot=1"),
    ("short", "stream ends inside the pass"),
    ("pending", "pending"),
    ("highbits", "bits set above"),
    ("buffer", "code buffer needs"),
])
def test_golden_rejects_malformed_streams(bad, match):
    config = EngineConfig(W=8, D_MAX=64, B_MAX=3, BUF_DEPTH=2 * 8)
    regs = EngineRegs(q=2, mode=1 if bad == "buffer" else 0, d=10, step=1, step_shift=0)
    rng = np.random.default_rng(0)
    words = write_stream(rng, 8, 2, 10, regs.mode, [1, 1], 100).tolist()
    if bad == "bmax":
        words[0] = 4
    elif bad == "ngrad":
        second = 1 + 4 + 2 * 1 * 2           # header, label (4 words at W=8), 2 chunks x q
        assert words[second] == 1 | (1 << 4)
        words[second] = 1 | (2 << 4)
    elif bad == "short":
        words = words[:-1]
    elif bad == "pending":
        words = write_stream(rng, 8, 2, 10, 0, [1], 100).tolist()[:1 + 4 + 2 * 2]
    elif bad == "highbits":
        words[1] |= 1 << 8
    elif bad == "buffer":
        words = write_stream(rng, 8, 2, 10, 1, [3], 100).tolist()
    with pytest.raises(ValueError, match=match):
        golden.run(config, regs, np.array(words, dtype=np.uint64))


def test_golden_rejects_bad_registers():
    config = EngineConfig(W=8, D_MAX=64)
    with pytest.raises(ValueError, match="EngineRegs.q"):
        golden.run(config, EngineRegs(q=0, mode=0, d=3, step=1, step_shift=0), np.zeros(0))
    with pytest.raises(ValueError, match="EngineRegs.d"):
        golden.run(config, EngineRegs(q=2, mode=0, d=65, step=1, step_shift=0), np.zeros(0))
    with pytest.raises(ValueError, match="W must be"):
        EngineConfig(W=12)
