"""The two-layer max-min value of a routing (issue 15), and the exact optimum of its first layer.

After "Routing for Large ML Models" (arXiv 2503.05324). Its full text was not at hand: the objective
below is our reconstruction of it, not the paper's own definition.

Given a routing (a spine per cross-leaf flow), every flow of the phase (cross-leaf and same-leaf)
gets its max-min fair rate by progressive filling over every link it crosses: its host's uplink
(host -> leaf, ``host_gbps``), the fabric uplink (leaf -> spine, ``fabric_gbps``) and downlink
(spine -> leaf) of its spine (cross-leaf flows only), its destination's host downlink. A job's rate
is its slowest flow's. The routing's value, to be maximised lexicographically:

1. the per-job rates sorted ascending, then
2. the per-flow rates sorted ascending.

Bytes play no part: rates are what the links share, whatever each flow has left to send.

Worked example (``host_gbps = fabric_gbps = 100``, 2 spines): leaf A's hosts a1, a2, a3 send to
leaf B's b1, b2, b3; job x is a1 -> b1 and a2 -> b2, job y is a3 -> b3. Three flows leave A over two
uplinks, so two of them share one (50 each) and the third runs alone (100; host links carry one
flow each):

- x's flows together on spine 0, y on spine 1: flows 50, 50, 100; jobs x = 50, y = 100; value
  ((50, 100), (50, 50, 100)).
- x's first flow and y on spine 0, x's second on spine 1: flows 50, 100, 50; jobs x = min(50, 100)
  = 50, y = 50; value ((50, 50), (50, 50, 100)), worse: same flow rates, a slower job.

Both have the first layer's optimum, 50 = 100 / ceil(3 / 2).

The first layer alone has a closed form (:func:`first_layer_optimum_gbps`): the slowest flow's rate
is the first level of progressive filling, min over links of capacity / flows on the link; host
links' counts do not depend on the routing, and the busiest fabric link of the best routing carries
ceil(Delta / s) flows (Delta: the most cross-leaf flows out of or into one leaf), which no routing
beats (a leaf's Delta flows over its s links) and an edge colouring reaches
(:func:`pktsim.planning.planners.edge_coloring`). :func:`first_layer_by_ilp` finds it with HiGHS
(the aggregated program of :func:`pktsim.planning.planners.min_max_counts` on unit flows), as an
independent check.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Hashable, NamedTuple, Sequence

import numpy as np

from pktsim.fluid.maxmin import max_min_rates, padded_rows
from pktsim.planning.planners import Flow, PlanContext, Solution, min_max_counts

DIGITS = 6
"""Rates in a :class:`RoutingValue` are rounded to 1e-6 Gbit/s, so that routings equal up to
floating-point noise compare equal."""


def max_min_gbps(paths: Sequence[Sequence[Hashable]], capacity_gbps: Callable[[Hashable], float]) -> np.ndarray:
    """Max-min fair rate (Gbit/s) of every flow, ``paths[f]`` the links it crosses with all its
    traffic, ``capacity_gbps(link)`` their rates: :func:`pktsim.fluid.maxmin.max_min_rates` on
    index arrays (rows padded with a link of infinite capacity)."""
    index: dict[Hashable, int] = {}
    rows = [[index.setdefault(link, len(index)) for link in path] for path in paths]
    links, weights = padded_rows(rows, None, len(index))
    capacity = np.array([*map(capacity_gbps, index), np.inf])
    return max_min_rates(links, weights, capacity)


def host_links(flow: Flow) -> list[tuple]:
    """The host links ``flow`` crosses: its source's uplink and its destination's downlink (none for
    a flow given without hosts)."""
    out = []
    if flow.src_host is not None:
        out.append(("host up", flow.src_host))
    if flow.dst_host is not None:
        out.append(("host down", flow.dst_host))
    return out


def flow_rates_gbps(flows: Sequence[Flow], assign: Sequence[int], context: PlanContext) -> np.ndarray:
    """Max-min fair rates (Gbit/s) of ``flows`` on their spines ``assign``, then of ``context.local``
    (same-leaf flows: host links only), in that order."""
    paths = [[*host_links(f), ("up", f.src, j), ("down", j, f.dst)] for f, j in zip(flows, assign)]
    paths += [host_links(f) for f in context.local]
    rate = {"host up": context.host_gbps, "host down": context.host_gbps}
    return max_min_gbps(paths, lambda link: rate.get(link[0], context.fabric_gbps))


class RoutingValue(NamedTuple):
    """A routing's two-layer value; a larger value (tuple order) is a better routing."""

    jobs: tuple[float, ...]
    """Every job's rate (its slowest flow's, Gbit/s), ascending."""
    flows: tuple[float, ...]
    """Every flow's rate (Gbit/s), ascending."""

    @property
    def slowest_gbps(self) -> float:
        """The first layer's first component: the slowest job's rate, i.e. the slowest flow's."""
        return self.jobs[0]


def routing_value(flows: Sequence[Flow], assign: Sequence[int], context: PlanContext) -> RoutingValue:
    """The two-layer max-min value of routing ``flows`` on spines ``assign`` (see the module)."""
    every = [*flows, *context.local]
    rates = [round(float(r), DIGITS) for r in flow_rates_gbps(flows, assign, context)]
    job_rate: dict[Hashable, float] = {}
    for f, r in zip(every, rates):
        job_rate[f.job] = min(r, job_rate.get(f.job, r))
    return RoutingValue(tuple(sorted(job_rate.values())), tuple(sorted(rates)))


def host_bound_gbps(flows: Sequence[Flow], context: PlanContext) -> float:
    """No flow can be slower in the first level than this: min over host links of host_gbps /
    flows on it (inf without hosts)."""
    count = Counter(link for f in (*flows, *context.local) for link in host_links(f))
    return context.host_gbps / max(count.values()) if count else float("inf")


def max_degree(flows: Sequence[Flow]) -> int:
    """Delta: the most cross-leaf flows out of one leaf or into one leaf."""
    return max(max(Counter(f.src for f in flows).values()), max(Counter(f.dst for f in flows).values()))


def first_layer_optimum_gbps(flows: Sequence[Flow], context: PlanContext) -> float:
    """The best slowest-flow rate any routing gives (Gbit/s): min(host bound, fabric_gbps /
    ceil(Delta / s)) (proof in the module docstring)."""
    return min(host_bound_gbps(flows, context), context.fabric_gbps / -(-max_degree(flows) // context.spines))


class FirstLayer(NamedTuple):
    """The first-layer optimum as HiGHS found it."""

    gbps: float
    """The best slowest-flow rate of the plan found (Gbit/s)."""
    upper_gbps: float
    """No routing does better (the solver's bound; equal to ``gbps`` when optimal)."""
    solution: Solution
    """The solver's counts per (source leaf, destination leaf) class and spine, status and gap."""


def first_layer_by_ilp(flows: Sequence[Flow], context: PlanContext, *, time_limit_s: float = 60.0) -> FirstLayer | None:
    """The first-layer optimum by HiGHS: minimise the most flows on a fabric link over integer
    counts per (source leaf, destination leaf) and spine (:func:`min_max_counts` with unit bytes,
    searched from 1 to all flows, no heuristic's plan given), then take the first level of
    progressive filling with the host links. None when HiGHS found no plan in time."""
    classes = Counter((f.src, f.dst) for f in flows)
    found = min_max_counts([(a, b, 1, n) for (a, b), n in classes.items()], context.spines, 1, len(flows),
                           time_limit_s)
    if found is None:
        return None
    host = host_bound_gbps(flows, context)
    bound = -(-found.bound // 1) if found.status != "optimal" else found.objective  # counts are whole
    return FirstLayer(min(host, context.fabric_gbps / found.objective), min(host, context.fabric_gbps / bound),
                      found)
