"""Register conversions of zipml.reference.engine_job (lr -> STEP/STEP_SHIFT, decay, L2, Q8.24)."""


import numpy as np
import pytest

from zipml.reference import engine_job as job
from zipml.reference.golden import EngineConfig


@pytest.mark.parametrize("q", [1, 2, 4, 8, 32])
@pytest.mark.parametrize("lr", [1e-6, 3.7e-4, 0.01, 0.5, 3.0, 100.0])
def test_step_registers_brute_force(lr, q):
    K = lr * 4.0**q / (2**q - 1) ** 2
    # brute force: the largest shift whose rounded mantissa fits 18 bits
    best = max(s for s in range(64) if round(K * 2.0**s) <= 2**18 - 1)
    step, shift = job.step_registers(lr, q)
    assert (step, shift) == (round(K * 2.0**best), best)
    assert 2**17 <= step < 2**18
    assert abs(job.effective_lr(step, shift, q) - lr) <= lr * 2.0**-17


def test_step_registers_limits():
    with pytest.raises(ValueError, match="too large"):
        job.step_registers(2.0**19, 8)
    with pytest.raises(ValueError, match="too small"):
        job.step_registers(1e-30, 8)
    with pytest.raises(ValueError, match="positive"):
        job.step_registers(-0.1, 8)
    # the largest lr that fits lands on shift 0: q=1 has K = 4 lr, so lr = 2^16 -> STEP = 2^18
    # does not fit, lr = (2^18 - 1) / 4 does
    assert job.step_registers((2**18 - 1) / 4, 1) == (2**18 - 1, 0)
    with pytest.raises(ValueError, match="too large"):
        job.step_registers(2.0**16, 1)


def test_decay_and_l2_shifts():
    assert job.decay_shift_for(None) == 0 and job.decay_shift_for(1.0) == 0
    assert job.decay_shift_for(0.5) == 1 and job.decay_shift_for(0.9) == 3   # 1-1/8 = 0.875
    assert job.decay_shift_for(0.99) == 7                                    # 1-1/128
    with pytest.raises(ValueError, match="decay factor"):
        job.decay_shift_for(0.2)
    assert job.l2_shift_for(0.1, 0.0) == 0
    assert job.l2_shift_for(0.01, 0.1) == 10                                 # 1e-3 ~ 2^-10
    with pytest.raises(ValueError, match="flip"):
        job.l2_shift_for(1.0, 2.0)
    # 1000 - 1000>>3 = 875, 875 - 109 = 766
    assert job.decayed_step(1000, 3, 2) == 766 and job.decayed_step(1000, 0, 5) == 1000


def test_model_words_round_trip_and_saturate():
    x = np.array([0.0, 1.0, -1.0, 2.0**-24, 127.5, -128.0, 1000.0, -1000.0])
    w = job.model_words(x)
    assert w.tolist() == [0, 2**24, -(2**24), 1, int(127.5 * 2**24), -(2**31), 2**31 - 1,
                          -(2**31)]
    np.testing.assert_array_equal(job.float_model(w[:6]), x[:6])


def test_engine_mode():
    assert job.engine_mode("double", 3) == (0, 3)
    assert job.engine_mode("naive", 3) == (1, 3)
    assert job.engine_mode("deterministic", 8) == (1, 8)
    assert job.engine_mode("full", 2) == (1, 32)
    with pytest.raises(ValueError, match="quantizer must be"):
        job.engine_mode("triple", 3)
    with pytest.raises(ValueError, match="1..8"):
        job.engine_mode("double", 9)


def _order(n, epoch, seed):
    return np.random.default_rng([seed, epoch, 99]).permutation(n)


def test_job_checks_engine_limits():
    A = np.zeros((10, 300))
    b = np.zeros(10)
    small = EngineConfig(W=32, D_MAX=256, B_MAX=4, BUF_DEPTH=2 * 4 * 8 * 8)
    with pytest.raises(ValueError, match="D_MAX"):
        job.EngineJob.build(A, b, quantizer="double", q=2, lr=0.1, order=_order, config=small)
    A = np.zeros((10, 200))
    with pytest.raises(ValueError, match="minibatch B"):
        job.EngineJob.build(A, b, quantizer="double", q=2, lr=0.1, B=5, order=_order,
                            config=small)
    with pytest.raises(ValueError, match="code-buffer"):
        job.EngineJob.build(A, b, quantizer="full", q=2, lr=0.1, B=4, order=_order, config=small)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        job.EngineJob.build(A + 2, b, quantizer="double", q=2, lr=0.1, order=_order)


def test_epoch_codes_and_stream():
    """Epoch e: samples in sample_order(n, e, seed), codes from default_rng([seed, e]) with Q1
    (grad) drawn before Q2 (dot), fresh every epoch; the stream carries exactly them."""
    from zipml.host.problem import sample_order
    from zipml.reference import pack
    from zipml.reference.quantize import quantize
    rng = np.random.default_rng(0)
    A = rng.uniform(-1, 1, size=(23, 41))
    b = rng.uniform(-1, 1, size=23)
    ej = job.EngineJob.build(A, b, quantizer="double", q=3, lr=0.05, B=2, seed=17,
                             grid="symmetric")
    for e in (0, 1):
        order, dot, grad, L = ej.epoch_codes(e)
        np.testing.assert_array_equal(order, sample_order(23, e, 17))
        r = np.random.default_rng([17, e])
        np.testing.assert_array_equal(grad, quantize(A[order], 3, r))
        np.testing.assert_array_equal(dot, quantize(A[order], 3, r))
        u = pack.unpack_segment(ej.epoch_stream(e), ej.config.W, 3, 41, 0)
        np.testing.assert_array_equal(u["dot_codes"], dot)
        np.testing.assert_array_equal(u["grad_codes"], grad)
        np.testing.assert_array_equal(u["L"], np.rint(b[order] * 2**24 * 7 / 8))
    assert not np.array_equal(ej.epoch_codes(0)[1], ej.epoch_codes(1)[1])
    assert ej.epoch_bits() == ej.config.W * ej.epoch_stream(0).size
    # single-sample quantizers: one code set, no grad codes in the stream
    nv = job.EngineJob.build(A, b, quantizer="deterministic", q=4, lr=0.05, seed=17,
                             grid="symmetric")
    _, dot, grad, _ = nv.epoch_codes(0)
    assert grad is None and nv.regs.mode == 1
    np.testing.assert_array_equal(
        dot, np.floor((A[sample_order(23, 0, 17)] + 1) / 2 * 15 + 0.5))


def test_floor_epoch_codes_and_stream():
    """Floor grid: the dot group packs t (q planes), the dot copy's carry and, for double, the
    grad copy's carry; the copies are the float reference's floor-grid codes (Q1 drawn first);
    labels are round(b 2^24) at every q; the step is lr itself."""
    from zipml.reference import pack
    from zipml.reference.order import sample_order
    from zipml.reference.quantize import quantize
    rng = np.random.default_rng(1)
    A = rng.uniform(-1, 1, size=(19, 37))
    A[:, -1] = 1.0                                  # the intercept
    A[0, :5] = [-1.0, 0.0, 0.5, -0.25, 0.999]
    b = rng.uniform(-1, 1, size=19)
    for quantizer, q in (("double", 3), ("naive", 2), ("deterministic", 5)):
        ej = job.EngineJob.build(A, b, quantizer=quantizer, q=q, lr=0.05, B=3, seed=5)
        assert ej.regs.grid == 1 and ej.regs.mode == (0 if quantizer == "double" else 1)
        assert job.effective_lr(ej.regs.step, ej.regs.step_shift, q, 1) == pytest.approx(
            0.05, rel=2**-16)
        for e in (0, 1):
            order = sample_order(19, e, 5)
            r = np.random.default_rng([5, e])
            a = A[order]
            t = np.minimum(np.floor((a + 1) * 2 ** (q - 1)), 2**q - 1).astype(np.int64)
            if quantizer == "double":
                c1 = quantize(a, q, r, grid="floor").astype(np.int64)
                c2 = quantize(a, q, r, grid="floor").astype(np.int64)
                want = (t << 2) | ((c2 - t) << 1) | (c1 - t)
                words = q + 2
            else:
                c = quantize(a, q, r, "stochastic" if quantizer == "naive" else "nearest",
                             grid="floor").astype(np.int64)
                want = (t << 1) | (c - t)
                words = q + 1
            assert set(np.unique(want & ((1 << (words - q)) - 1))) <= set(range(4))
            u = pack.unpack_segment(ej.epoch_stream(e), ej.config.W, words, 37, 1)
            np.testing.assert_array_equal(u["dot_codes"], want)
            np.testing.assert_array_equal(u["L"], np.rint(b[order] * 2**24))
            # the intercept is t = 2^q - 1 with every carry 1
            assert (want[:, -1] == (1 << (words - q)) * (2**q - 1) + (1 << (words - q)) - 1).all()
        assert ej.epoch_bits() == ej.config.W * ej.epoch_stream(0).size


def test_full_streams_on_the_symmetric_grid_at_q32():
    rng = np.random.default_rng(2)
    A = rng.uniform(-1, 1, size=(7, 5))
    ej = job.EngineJob.build(A, rng.uniform(-1, 1, 7), quantizer="full", q=2, lr=0.05)
    assert (ej.regs.q, ej.regs.mode, ej.regs.grid) == (32, 1, 0)


def test_store_mode_job():
    """Store mode: full trains on the stored value (q = p, floor, nearest); q > p and the
    symmetric grid are refused."""
    rng = np.random.default_rng(3)
    A = rng.uniform(-1, 1, size=(9, 6))
    b = rng.uniform(-1, 1, 9)
    full = job.EngineJob.build(A, b, quantizer="full", q=2, lr=0.05, store_p=8)
    assert (full.regs.q, full.regs.mode, full.regs.grid) == (8, 1, 1)
    assert full.feed_regs().round == 1
    dbl = job.EngineJob.build(A, b, quantizer="double", q=2, lr=0.05, store_p=8)
    assert dbl.feed_regs().round == 0 and dbl.store_bits() == dbl.config.W * dbl.stored_segment().size
    with pytest.raises(ValueError, match="exceeds the stored precision"):
        job.EngineJob.build(A, b, quantizer="double", q=8, lr=0.05, store_p=4)
    with pytest.raises(ValueError, match="floor"):
        job.EngineJob.build(A, b, quantizer="double", q=2, lr=0.05, store_p=8, grid="symmetric")
