"""Max-min fair rates by progressive filling: where the fluid backend computes its rates."""

from __future__ import annotations

import numpy as np


def max_min_rates(links: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates by progressive filling.

    ``links[f, k]`` is the k-th link used by flow f and ``weights[f, k]`` the fraction of the flow's
    traffic on it (1 for a single path; rows are padded with weight 0). ``capacity[l]`` is link l's
    capacity (any rate unit; ``inf`` for a padding link). Returns each flow's rate in that unit.

    Every round raises the rate of all unfrozen flows by the largest step that saturates no link,
    then freezes the flows crossing the links it saturated: one round per distinct bottleneck level,
    each a few array operations over the flows x links incidence.
    """
    n = len(links)
    rate = np.zeros(n)
    if n == 0:
        return rate
    flat = links.ravel()
    left = capacity.astype(np.float64)
    unfrozen = np.ones(n, dtype=bool)
    uses = weights > 0
    while True:
        load = np.bincount(flat, weights=(weights * unfrozen[:, None]).ravel(), minlength=len(capacity))
        loaded = load > 0
        share = np.full(len(capacity), np.inf)
        np.divide(left, load, out=share, where=loaded)
        step = share.min()
        rate[unfrozen] += step
        left -= step * load
        saturated = loaded & (share <= step * (1 + 1e-9))
        hit = (saturated[links] & uses).any(axis=1) & unfrozen
        unfrozen &= ~hit
        if not unfrozen.any():
            return rate
