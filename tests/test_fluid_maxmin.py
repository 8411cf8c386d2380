"""The plain-Python progressive filling gives the array version's rates to the bit."""

from __future__ import annotations

import random

import numpy as np

from pktsim.fluid.maxmin import max_min_rates, max_min_rates_small


def test_small_max_min_equals_the_array_version() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        n_links, n_flows = rng.randint(1, 12), rng.randint(1, 15)
        capacity = [rng.choice([100.0, 400.0, 800.0, rng.uniform(1, 800)]) for _ in range(n_links)]
        rows = [rng.sample(range(n_links), rng.randint(1, min(4, n_links))) for _ in range(n_flows)]
        width = max(map(len, rows))
        links = np.full((n_flows, width), n_links)
        weights = np.zeros((n_flows, width))
        for f, row in enumerate(rows):
            links[f, : len(row)] = row
            weights[f, : len(row)] = 1.0
        expected = max_min_rates(links, weights, np.array([*capacity, np.inf]))
        assert max_min_rates_small(rows, capacity) == expected.tolist()


def test_small_max_min_shares_a_bottleneck() -> None:
    # flows 0 and 1 share link 0 (10), flow 1 also crosses link 1 (4): 1 gets 4, 0 gets the rest
    assert max_min_rates_small([[0], [0, 1]], [10.0, 4.0]) == [6.0, 4.0]
