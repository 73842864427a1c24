"""The order samples are visited in: one seeded shuffle per epoch, shared by every backend."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_order"]


def sample_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """The seeded shuffle of epoch ``epoch``: a permutation of ``range(n)`` (int64).

    Every backend uses this one order.  Its generator is keyed (seed, epoch, 0x0D) so it is
    independent of the quantizers' stream ``default_rng([seed, epoch])``.
    """
    return np.random.default_rng([int(seed), int(epoch), 0x0D]).permutation(int(n))
