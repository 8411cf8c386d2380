"""Max-min fair rates by progressive filling: where the fluid backend computes its rates, and the
fair-share metrics theirs (:mod:`pktsim.analysis.fairness`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SATURATION_TOLERANCE = 1e-9
"""A link saturates in a round when its fair share is within this relative margin of the round's step."""


def padded_rows(links: Sequence[Sequence[int]], weights: Sequence[Sequence[float]] | None,
                pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of link ids (and each link's fraction of the flow's traffic; None: all 1) as the arrays
    :func:`max_min_rates` takes: int64 links padded with link ``pad`` (give it infinite capacity),
    float weights 0 there."""
    width = max((len(row) for row in links), default=1) or 1
    table = np.full((len(links), width), pad, dtype=np.int64)
    shares = np.zeros((len(links), width))
    for r, row in enumerate(links):
        table[r, :len(row)] = row
        shares[r, :len(row)] = 1.0 if weights is None else weights[r]
    return table, shares


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
        saturated = loaded & (share <= step * (1 + SATURATION_TOLERANCE))
        hit = (saturated[links] & uses).any(axis=1) & unfrozen
        unfrozen &= ~hit
        if not unfrozen.any():
            return rate


def max_min_rates_small(links: list[list[int]], capacity: list[float]) -> list[float]:
    """Max-min fair rates by progressive filling, in plain Python, for a few single-path flows.

    ``links[f]`` lists the links of flow f (each carrying all its traffic: weight 1) and
    ``capacity[l]`` is link l's capacity (any rate unit). Returns each flow's rate in that unit.

    The same rounds, tolerance and floating-point operations as :func:`max_min_rates` (so the
    same rates to the bit), without numpy: on purpose, because for the handful of flows a change
    usually touches, numpy's per-call cost is most of the time. Loads are integer counts (weights
    are 1) kept up to date as flows freeze, and every unfrozen flow's rate is the running sum of
    the steps (``level``), so a round costs its loaded links plus the flows it freezes.
    """
    n = len(links)
    if n == 1 and links[0]:  # one flow (the commonest component): the slowest link, as one round gives
        return [0.0 + min(capacity[link] for link in links[0])]
    rate = [0.0] * n
    users: dict[int, list[int]] = {}
    for f, row in enumerate(links):
        for link in row:
            users.setdefault(link, []).append(f)
    left = {link: capacity[link] for link in users}
    count = {link: len(fs) for link, fs in users.items()}
    frozen = [False] * n
    unfrozen = n
    level = 0.0
    while unfrozen:
        if not count:  # flows crossing no link: unbounded (the array version is never asked)
            return [r if frozen[f] else float("inf") for f, r in enumerate(rate)]
        share = {link: left[link] / c for link, c in count.items()}
        step = min(share.values())
        level += step
        limit = step * (1 + SATURATION_TOLERANCE)
        hit = []
        for link, c in count.items():
            left[link] -= step * c
            if share[link] <= limit:
                hit.append(link)
        for link in hit:
            for f in users[link]:
                if not frozen[f]:
                    frozen[f] = True
                    unfrozen -= 1
                    rate[f] = level
                    for other in links[f]:
                        c = count[other] - 1
                        if c:
                            count[other] = c
                        else:
                            del count[other]
    return rate


def max_min_rates_by_bottlenecks(links: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """The allocation of :func:`max_min_rates` (same arguments), in far fewer rounds when flows
    settle at many distinct levels.

    Each link's *level* is the rate its unfrozen flows would get if it saturated now:
    ``(capacity - frozen flows' load) / unfrozen weight``. Levels only rise as flows freeze (a flow
    freezes below every level on its path). So a link whose level is no higher than any level on
    its unfrozen flows' paths saturates exactly at it, and every such link's flows are frozen in the
    same round (progressive filling freezes only the lowest). One round per step of the longest
    chain of bottlenecks, not per level; rates equal progressive filling's up to rounding. A flow
    on no link (all weights 0) is unbounded: ``inf``.
    """
    rate = np.zeros(len(links))
    frozen_load = np.zeros(len(capacity))
    somewhere = (weights > 0).any(axis=1)
    rate[~somewhere] = np.inf
    left = np.flatnonzero(somewhere)  # the unfrozen flows; links and weights keep only their rows
    links, weights = links[somewhere], weights[somewhere]
    while len(left):
        uses = weights > 0
        load = np.bincount(links.ravel(), weights=weights.ravel(), minlength=len(capacity))
        level = np.full(len(capacity), np.inf)
        np.divide(capacity - frozen_load, load, out=level, where=load > 0)
        on_path = np.where(uses, level[links], np.inf)
        lowest = on_path.min(axis=1)  # per flow: the lowest level on its path
        # A link is not (yet) a bottleneck when one of its flows has a lower level elsewhere.
        held = uses & (lowest[:, None] * (1 + SATURATION_TOLERANCE) < on_path)
        waiting = np.bincount(links.ravel(), weights=held.ravel(), minlength=len(capacity))
        bottleneck = (load > 0) & (waiting == 0)
        hit = (bottleneck[links] & uses).any(axis=1)
        rate[left[hit]] = lowest[hit]
        frozen_load += np.bincount(links[hit].ravel(), weights=(weights[hit] * lowest[hit, None]).ravel(),
                                   minlength=len(capacity))
        keep = ~hit
        left, links, weights = left[keep], links[keep], weights[keep]
    return rate
