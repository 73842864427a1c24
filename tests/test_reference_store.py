"""Store mode's golden model (zipml.reference.store, docs/store.md): exactness against a slow
reading of the page, and the randomness claims as statistical tests with stated bounds on the
feed's own draws (the on-chip generator's bits: the gateware feed equals this model bit for bit,
tests/test_hw_store_feed.py)."""

import numpy as np
import pytest

from zipml.reference import pack, store
from zipml.reference.golden import EngineConfig, EngineRegs, dot_group_words

W = 8
CONFIG = EngineConfig(W=W, D_MAX=64, B_MAX=4, BUF_DEPTH=2 * 4 * 8 * 10)


def regs(q, mode, d):
    return EngineRegs(q=q, mode=mode, d=d, step=1, step_shift=0, grid=1)


def stored(rng, n, d, p, B=2):
    s = rng.integers(0, 1 << p, size=(n, d))
    L = rng.integers(-2**30, 2**30, size=n)
    return s, pack.pack_segment(W, p, 1, s, L, B)


def decode(words, q, mode, d):
    """(t, delta_dot, delta_grad) per value of a fed stream, via the packer's inverse."""
    Dq = dot_group_words(q, mode, 1)
    c = pack.unpack_segment(words, W, Dq, d, 1)["dot_codes"].astype(np.int64)
    if mode == 0:
        return c >> 2, (c >> 1) & 1, c & 1
    return c >> 1, c & 1, c & 1


def test_xorshift64_known_answers():
    # Marsaglia (2003), shifts 13, 7, 17: the first states from 1
    x = 1
    out = []
    for _ in range(3):
        x = store.xorshift64(x)
        out.append(x)
    assert out[0] == 1082269761
    assert out[1] == 1152992998833853505
    assert all(0 < v < 2**64 for v in out)
    assert store.seed_states(5, 32) == [5]
    assert store.seed_states(5, 64) == [5, 5 ^ store.GOLDEN_GAMMA]
    assert store.state_bits(32) == store.state_bits(64) == 64
    assert store.generators(32) == 1 and store.generators(64) == 2


def test_xorshift32_known_answers():
    # Marsaglia (2003), shifts 13, 17, 5: from 1 the first output is 270369; period 2^32 - 1
    x = store.xorshift32(1)
    assert x == 270369
    assert store.xorshift32(x) == 67634689
    assert store.xorshift32(2463534242) == 723471715      # Marsaglia's default seed
    assert store.state_bits(8) == store.state_bits(16) == 32
    assert store.generators(8) == store.generators(16) == 1
    # W <= 16: one generator, the seed's low 32 bits (the high half is not used)
    assert store.seed_states(5, 8) == [5]
    assert store.seed_states((7 << 32) | 5, 16) == [5]
    with pytest.raises(ValueError, match="zero"):
        store.check_seed(0, 8)
    with pytest.raises(ValueError, match="low 32 bits"):
        store.check_seed(1 << 32, 16)
    assert store.check_seed(1 << 32, 32) == 1 << 32            # xorshift64: nonzero state
    with pytest.raises(ValueError, match="32-bit"):            # a 64-bit state at W = 8
        store.feed(CONFIG, regs(2, 0, 9), store.FeedRegs(8), np.zeros(1, np.uint64), [1 << 40])


def slow_feed(words, q, mode, p, d, rnd, state):
    """docs/store.md value by value: u as an integer from the random bits (MSB first, bit of
    remainder plane j is u's bit m-1-j), delta = [u <= r]; one generator step (W = 8: the
    xorshift32) per remainder plane."""
    words = [int(w) for w in words]
    m = p - q
    C = -(-d // W)
    out, pos = [], 0
    while pos < len(words):
        n_dot = words[pos] & 15
        out += words[pos:pos + 1 + n_dot * 4]          # W = 8: four label words
        pos += 1 + n_dot * 4
        for _ in range(C * n_dot):
            planes = words[pos:pos + p]
            pos += p
            rand = []
            for _j in range(m):
                state = store.xorshift32(state)
                rand.append(state)
            d_dot = d_grad = 0
            for i in range(W):
                r = sum(((planes[q + j] >> i) & 1) << (m - 1 - j) for j in range(m))
                if rnd:
                    u1 = u2 = (1 << (m - 1)) - 1 if m else 0
                else:
                    u1 = sum(((rand[j] >> i) & 1) << (m - 1 - j) for j in range(m))
                    u2 = sum(((rand[j] >> (W + i)) & 1) << (m - 1 - j) for j in range(m))
                d_dot |= int(u1 <= r) << i
                d_grad |= int(u2 <= r) << i
            out += planes[:q] + [d_dot] + ([d_grad] if mode == 0 else [])
    return out, state


@pytest.mark.parametrize("q, p, mode, rnd", [
    (2, 8, 0, 0), (3, 8, 1, 0), (1, 5, 0, 0), (4, 8, 1, 1), (6, 6, 1, 1), (8, 11, 0, 0),
    (5, 8, 0, 1),
])
def test_feed_equals_the_page(q, p, mode, rnd):
    rng = np.random.default_rng([q, p, mode, rnd])
    d = 13
    _, words = stored(rng, 7, d, p)
    st = [0x9ABC_DEF1]
    want_state = st[0]
    for _epoch in range(2):                         # the state carries from epoch to epoch
        got, st = store.feed(CONFIG, regs(q, mode, d), store.FeedRegs(p, rnd), words, st)
        want, want_state = slow_feed(words, q, mode, p, d, rnd, want_state)
        assert got.tolist() == want
        assert st == [want_state]


def test_feed_pass_through_and_refusals():
    rng = np.random.default_rng(0)
    _, words = stored(rng, 5, 9, 8)
    got, st = store.feed(CONFIG, regs(2, 0, 9), store.FeedRegs(0), words, [7])
    assert got.tolist() == words.tolist() and st == [7]
    with pytest.raises(ValueError, match="exceeds the stored precision"):
        store.feed(CONFIG, regs(6, 0, 9), store.FeedRegs(4), words, [7])
    with pytest.raises(ValueError, match="grid must be floor"):
        store.feed(CONFIG, EngineRegs(q=2, mode=0, d=9, step=1, step_shift=0, grid=0),
                   store.FeedRegs(8), words, [7])
    with pytest.raises(ValueError, match="ends inside a pass"):
        store.feed(CONFIG, regs(2, 0, 9), store.FeedRegs(8), words[:-2], [7])


def test_store_codes_round_trip():
    a = np.array([-1.0, -0.5, 0.0, 0.3, 1.0])
    s = store.store_codes(a, 8)
    v = store.stored_value(s, 8)
    assert v[-1] == 1.0 and v[2] == 0.0                  # +1 and 0 exactly
    assert np.abs(v - a).max() <= 2.0 ** -7 + 1e-12      # -1 becomes -1 + 2^(1-p)
    with pytest.raises(ValueError, match="stored precision"):
        store.store_codes(a, 17)


def _epochs(q, p, mode, rnd, E, seed=11, n=40, d=16):
    """Codes of E consecutive epochs of one stored segment, each epoch's generators loaded
    from its own seed as a job's are (`zipml.reference.store.epoch_seed`): (E, n, d) arrays."""
    rng = np.random.default_rng(seed)
    s, words = stored(rng, n, d, p)
    t, dd, dg = [], [], []
    for e in range(E):
        st = store.seed_states(store.epoch_seed(seed, e, W), W)
        out, _ = store.feed(CONFIG, regs(q, mode, d), store.FeedRegs(p, rnd), words, st)
        a, b, c = decode(out, q, mode, d)
        t.append(a), dd.append(b), dg.append(c)
    return s, np.array(t), np.array(dd), np.array(dg)


def test_codes_are_unbiased_for_the_stored_value():
    """Claim: E[t + delta] = (s + 1) / 2^m, so v(t + delta) averages to the stored value.
    Bound: per value, the mean of E = 300 epochs' carries is within 5 standard errors of its
    probability (r + 1) / 2^m (exact Bernoulli variance); over all 640 values at most 2 exceed
    4 standard errors (expected 0.04), and the pooled z-score is below 5 in size."""
    q, p, E = 2, 8, 300
    s, t, dd, dg = _epochs(q, p, 0, 0, E)
    m = p - q
    assert (t == (s >> m)).all()                            # the floor is the stored top planes
    prob = ((s & ((1 << m) - 1)) + 1) / 2.0**m
    for carries in (dd, dg):
        mean = carries.mean(axis=0)
        se = np.sqrt(prob * (1 - prob) / E)
        z = np.where(se > 0, (mean - prob) / np.where(se > 0, se, 1), 0.0)
        assert (np.abs(z) <= 5).all()
        assert (np.abs(z) > 4).sum() <= 2
        assert abs(z.sum() / np.sqrt(z.size)) < 5
        # the value: the mean code's value is the stored value within the same bound
        v = 2.0 * (t + carries).mean(axis=0) / 2**q - 1
        assert np.abs(v - store.stored_value(s, p)).max() <= 5 * se.max() * 2 / 2**q + 1e-12


def test_double_copies_are_uncorrelated_and_naive_is_biased():
    """Claim: delta_dot and delta_grad are independent given the stored value, so the product
    of the two copies' values averages to a_s^2 (double is unbiased), while naive's one copy
    used twice averages to a_s^2 + var (its bias).  Bounds: the correlation of the two carries'
    errors over 300 epochs x 640 values is below 5 / sqrt(N); the double product's mean is
    within 5 standard errors of a_s^2 on every value; naive's exceeds a_s^2 by its variance
    within 5 standard errors, and significantly (> 5 se) where the variance is large."""
    q, p, E = 2, 8, 300
    s, t, dd, dg = _epochs(q, p, 0, 0, E)
    m = p - q
    prob = ((s & ((1 << m) - 1)) + 1) / 2.0**m
    e1, e2 = (dd - prob).ravel(), (dg - prob).ravel()
    corr = np.corrcoef(e1, e2)[0, 1]
    assert abs(corr) < 5 / np.sqrt(e1.size)
    a = store.stored_value(s, p)
    step = 2.0 / 2**q
    v1, v2 = 2.0 * (t + dd) / 2**q - 1, 2.0 * (t + dg) / 2**q - 1
    var = prob * (1 - prob) * step**2
    # exact moments of one copy's value v = v_lo + step * delta (not estimated: a sample
    # standard deviation of a rare event can be 0)
    v_lo = 2.0 * t[0] / 2**q - 1
    v_hi = v_lo + step
    m2 = (1 - prob) * v_lo**2 + prob * v_hi**2                    # E[v^2] = a^2 + var
    m4 = (1 - prob) * v_lo**4 + prob * v_hi**4
    se = np.sqrt(np.maximum(m2**2 - a**4, 0) / E) + 1e-12         # Var(v1 v2) = m2^2 - a^4
    z = (v1 * v2).mean(axis=0) - a**2
    assert (np.abs(z) <= 5 * se).all()
    # naive: the feed's single carry, used for both copies: E[v^2] = a^2 + var
    _, tn, dn, _ = _epochs(q, p, 1, 0, E)
    vn = 2.0 * (tn + dn) / 2**q - 1
    se_n = np.sqrt(np.maximum(m4 - m2**2, 0) / E) + 1e-12
    bias = (vn * vn).mean(axis=0) - a**2
    assert (np.abs(bias - var) <= 5 * se_n).all()
    # pooled over the values whose rounding variance is large, naive's bias is significant
    big = var > 0.04
    assert big.sum() >= 20
    pooled_se = np.sqrt((se_n[big] ** 2).sum()) / big.sum()
    assert bias[big].mean() > 5 * pooled_se
    assert abs(bias[big].mean() - var[big].mean()) <= 5 * pooled_se


def test_epochs_draw_fresh_carries():
    """Claim: every epoch draws anew.  Bound: the correlation of one epoch's carry errors with
    the next epoch's, over 299 epoch pairs x 640 values, is below 5 / sqrt(N); and no two epochs
    give the same carries (a frozen replay would)."""
    q, p, E = 3, 8, 300
    s, t, dd, _ = _epochs(q, p, 1, 0, E)
    m = p - q
    prob = ((s & ((1 << m) - 1)) + 1) / 2.0**m
    err = dd - prob
    x, y = err[:-1].ravel(), err[1:].ravel()
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / np.sqrt(x.size)
    flat = dd.reshape(E, -1)
    assert len({row.tobytes() for row in flat}) == E


def test_nearest_and_full_are_deterministic():
    q, p = 3, 8
    s, t, dd, _ = _epochs(q, p, 1, 1, 3)
    m = p - q
    r = s & ((1 << m) - 1)
    # nearest level, ties up: delta = [(r + 1) / 2^m >= 1/2]
    assert (dd == ((r + 1) * 2 >= (1 << m))).all()
    s, t, dd, _ = _epochs(p, p, 1, 1, 2)
    assert (t + dd == s + 1).all()                        # full: the stored value itself
