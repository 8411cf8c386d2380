"""Array helpers shared by the vectorised passes over every message of a workload."""

from __future__ import annotations

import numpy as np

DENSE_FACTOR = 4
""":func:`unique_first` counts in a table when the keys span at most this many times their number."""


def unique_first(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)`` for non-negative integer keys:
    (the distinct keys ascending, the index of each one's first occurrence, each key's index among
    them). Keys spanning a small range (the usual case: codes packed into one integer) are counted
    in a table instead of sorted: on purpose, a sort of millions of keys takes seconds."""
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    n = len(keys)
    span = int(keys.max(initial=-1)) + 1
    if n == 0 or keys.min() < 0 or span > DENSE_FACTOR * n + 1024:
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return distinct, first, inverse.reshape(-1)
    first_at = np.full(span, n, dtype=np.int64)
    np.minimum.at(first_at, keys, np.arange(n, dtype=np.int64))
    present = first_at < n
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present), first_at[present], rank[keys]
