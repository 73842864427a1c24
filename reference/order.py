"""The order samples are visited in: one seeded shuffle per epoch, shared by every backend."""

from __future__ import annotations

import numpy as np

__all__ = ["ORDERS", "sample_order", "fixed_order", "order_function"]


def sample_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """The seeded shuffle of epoch ``epoch``: a permutation of ``range(n)`` (int64).

    Every backend uses this one order.  Its generator is keyed (seed, epoch, 0x0D) so it is
    independent of the quantizers' stream ``default_rng([seed, epoch])``.
    """
    return np.random.default_rng([int(seed), int(epoch), 0x0D]).permutation(int(n))



def fixed_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """Epoch 0's shuffle in every epoch: the order of store mode, whose store holds the samples
    in epoch 0's order (docs/store.md, "Epoch order")."""
    return sample_order(n, 0, seed)


#: ``--order``: a fresh shuffle every epoch, or epoch 0's shuffle every epoch
ORDERS = {"shuffle": sample_order, "fixed": fixed_order}


def order_function(name: str):
    """The order function of ``--order NAME``, or one ValueError naming the choices."""
    if name not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {name!r}")
    return ORDERS[name]
