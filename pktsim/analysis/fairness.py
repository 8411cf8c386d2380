"""Fair shares: each flow's max-min fair rate given the paths taken, per phase and per job.

The analytic view of how fair routing left the fabric, beside the rates the simulation achieved.

- **Competing flows** of a phase (one step of one collective op: all messages with the same
  ``(op, step)``): the flows of every phase whose ``[start, end]`` interval overlaps this phase's,
  its own included (start: first ``ready``, end: last ``end`` of the phase's messages), so
  concurrent jobs and overlapping steps (slices, channels) share the links. Phases without
  cross-ToR traffic compete too (on host links).
- **A flow's route**: the directed links of its path, host links included, each carrying all its
  traffic (weight 1); a flow whose packets spread puts on each turning point's path the fraction
  ``spine_bytes / sum(spine_bytes)`` of its traffic (shares add up where those paths meet; its host
  links weight 1). Capacities: the *healthy* fabric's link rates (Gbit/s): faults are ignored.
- **Fair rates**: max-min fair over those links. A route carries as many flows as the most any
  one competing phase puts on it: flows on one route in different phases are one connection's
  consecutive messages (a route runs host to host, and a queue pair serves its messages in order),
  so a ring's next step, overlapping this one on the same connections, adds no flow. Flows that
  spread, and every flow of a scheme whose paths vary from packet to packet or message to
  message (spraying, adaptive, flowlet: :attr:`LoadBalancing.varying_paths`), count by their
  endpoints (a sprayed connection's messages split differently each time, over other spines or
  all on one when they are a few packets), loading each link with their mean share.
  Computed by
  :func:`pktsim.fluid.maxmin.max_min_rates_by_bottlenecks`: progressive filling's allocation
  (the fluid backend's :func:`~pktsim.fluid.maxmin.max_min_rates`) in a few rounds instead of one
  per distinct rate (64 rings on ls32x64x32: ~5 rounds instead of ~450).
- **A message's fair rate**: its bytes / the longest time any of its subflows needs at its fair rate
  (one flow: that flow's rate). Per phase, over its own messages: ``fair_min_gbps`` (the slowest
  message: the job's rate in the phase, since a phase ends with its last flow), ``fair_median_gbps``,
  ``fair_jain`` (Jain's index ``(sum x)^2 / (n sum x^2)``, 1/n to 1), and ``throughput_gbps`` =
  the phase's bytes * 8 / its duration (achieved in the simulation). Zero-byte messages have no rate
  and are left out.

The max-min computation is cached per distinct competing set (the most recent few hundred, the
phases taken in time order): each phase is reduced to its
*signature* (the multiset of its flows' routes, interned: ring steps repeat the same connections)
and a competing set is keyed by the set of its phases' signatures. Overlapping phases are
found by a sweep over the intervals sorted by start (a phase starting after ``end`` or ending
before ``start`` cannot overlap; none lasts longer than the longest).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from pktsim.fluid.maxmin import max_min_rates_by_bottlenecks, padded_rows


CACHED = 256
"""Allocations kept (the most recently used): each holds a rate per route of its competing set."""


class Routes:
    """Interned routes: route id -> its directed links (fabric link ids), the fraction of the
    flow's traffic on each, and its class (the flows that count as one connection's)."""

    def __init__(self) -> None:
        self._ids: dict[tuple, int] = {}
        self.links: list[tuple[int, ...]] = []
        self.weights: list[tuple[float, ...]] = []
        self.classes: list[tuple] = []
        """Per route: ``("path", *links)``, or ``("ends", src, dst)`` for a connection whose
        flows may take other paths from one message to the next."""

    def __len__(self) -> int:
        return len(self.links)

    def add(self, weights: dict[int, float], ends: tuple[int, int] | None = None) -> int:
        """The id of the route loading link ``l`` with ``weights[l]`` (new or already known);
        ``ends`` (src, dst): its class is its endpoints', else its path's."""
        key = tuple(sorted(weights.items()))
        route = self._ids.get(key)
        if route is None:
            route = self._ids[key] = len(self.links)
            self.links.append(tuple(link for link, _ in key))
            self.weights.append(tuple(w for _, w in key))
            self.classes.append(("path", *self.links[-1]) if ends is None else ("ends", *ends))
        return route

    def padded(self, n_links: int) -> tuple[np.ndarray, np.ndarray]:
        """Every route as a row of links (int64, padded with link ``n_links``) and weights (0 there)."""
        return padded_rows(self.links, self.weights, n_links)


def max_min_fair_gbps(links: Sequence[Sequence[int]], weights: Sequence[Sequence[float]], counts: Sequence[int],
                      capacity_gbps: Sequence[float]) -> np.ndarray:
    """Max-min fair rates (Gbit/s) of ``counts[r]`` flows on each route r.

    Route r loads link ``links[r][k]`` (an index into ``capacity_gbps``) with the fraction
    ``weights[r][k]`` of each of its flows' traffic. Returns one rate per route: every flow of a
    route gets it (flows alike are served alike; ``counts`` scales their load).
    """
    routes = Routes()
    ids = [routes.add(dict(zip(row, w))) for row, w in zip(links, weights)]
    table_links, table_weights = routes.padded(len(capacity_gbps))
    unique, inverse = np.unique(np.array(ids, dtype=np.int64), return_inverse=True)
    merged = np.bincount(inverse, weights=np.asarray(counts, dtype=np.float64))
    capacity = np.append(np.asarray(capacity_gbps, dtype=np.float64), np.inf)
    rates = max_min_rates_by_bottlenecks(table_links[unique], table_weights[unique] * merged[:, None], capacity)
    return rates[inverse]


def jain_index(rates: np.ndarray) -> float:
    """Jain's fairness index ``(sum x)^2 / (n * sum x^2)`` of positive ``rates``: 1/n to 1."""
    return float(rates.sum() ** 2 / (len(rates) * np.square(rates).sum()))


def phase_fairness(
    phase_of_msg: np.ndarray, start_ps: np.ndarray, end_ps: np.ndarray, flow_msg: np.ndarray,
    flow_route: np.ndarray, flow_bytes: np.ndarray, msg_bytes: np.ndarray, routes: Routes,
    capacity_gbps: np.ndarray, wanted: Sequence[int],
) -> dict[int, dict]:
    """The fair-share columns of each phase in ``wanted`` (see the module docstring).

    ``phase_of_msg``: per message, its phase (0 .. P-1); ``start_ps`` / ``end_ps``: per phase, its
    interval (ps); ``flow_*``: per flow, its message, route (an id of ``routes``) and bytes;
    ``msg_bytes``: per message; ``capacity_gbps``: per fabric link id. Returns phase -> {
    ``fair_min_gbps``, ``fair_median_gbps``, ``fair_jain``, ``throughput_gbps``} (None where a
    phase has no rate: no bytes, or no duration).
    """
    class_of, table_links, table_weights = _route_classes(routes, flow_route, len(capacity_gbps))
    flow_route = class_of[flow_route]
    n_phases, n_routes = len(start_ps), max(len(table_links), 1)
    flow_phase = phase_of_msg[flow_msg]
    order = np.argsort(flow_phase, kind="stable")
    flow_bounds = np.searchsorted(flow_phase[order], np.arange(n_phases + 1)).tolist()
    # Each phase's signature: the multiset of its flows' routes, interned.
    pairs, pair_counts = np.unique(flow_phase.astype(np.int64) * n_routes + flow_route, return_counts=True)
    pair_bounds = np.searchsorted(pairs // n_routes, np.arange(n_phases + 1)).tolist()
    pair_routes = pairs % n_routes
    signature = np.zeros(n_phases, dtype=np.int64)
    members: list[tuple[np.ndarray, np.ndarray]] = []  # signature -> (routes, counts)
    seen: dict[bytes, int] = {}
    for p in range(n_phases):
        a, b = pair_bounds[p], pair_bounds[p + 1]
        key = pair_routes[a:b].tobytes() + b"|" + pair_counts[a:b].tobytes()
        sig = seen.get(key)
        if sig is None:
            sig = seen[key] = len(members)
            members.append((pair_routes[a:b], pair_counts[a:b]))
        signature[p] = sig
    capacity = np.append(capacity_gbps.astype(np.float64), np.inf)
    by_start = np.argsort(start_ps, kind="stable")
    sorted_start = start_ps[by_start]
    longest = float((end_ps - start_ps).max()) if n_phases else 0.0
    phase_bytes = np.bincount(phase_of_msg, weights=msg_bytes, minlength=n_phases)
    cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()  # the most recent CACHED
    out = {}
    for p in sorted(wanted, key=lambda p: (start_ps[p], p)):  # in time order: sets repeat nearby
        lo = int(np.searchsorted(sorted_start, start_ps[p] - longest, side="left"))
        hi = int(np.searchsorted(sorted_start, end_ps[p], side="right"))
        near = by_start[lo:hi]
        sigs = np.unique(signature[near[end_ps[near] >= start_ps[p]]])
        key = sigs.tobytes()
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = _allocation(sigs, members, table_links, table_weights, capacity)
            if len(cache) > CACHED:
                cache.popitem(last=False)
        ids, rates = cache[key]
        a, b = flow_bounds[p], flow_bounds[p + 1]
        flows = order[a:b]
        rate = rates[np.searchsorted(ids, flow_route[flows])]
        msgs, which = np.unique(flow_msg[flows], return_inverse=True)
        need_ns = np.zeros(len(msgs))
        np.maximum.at(need_ns, which, flow_bytes[flows] * 8 / rate)
        sizes = msg_bytes[msgs]
        x = sizes[sizes > 0] * 8 / need_ns[sizes > 0]
        duration_ps = end_ps[p] - start_ps[p]
        out[p] = {
            "fair_min_gbps": float(x.min()) if len(x) else None,
            "fair_median_gbps": float(np.median(x)) if len(x) else None,
            "fair_jain": jain_index(x) if len(x) else None,
            "throughput_gbps": float(phase_bytes[p] * 8 * 1000 / duration_ps) if duration_ps > 0 else None,
        }
    return {p: out[p] for p in wanted}


def _route_classes(routes: Routes, flow_route: np.ndarray,
                   n_links: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Routes -> their classes (:attr:`Routes.classes`): a sprayed connection's messages split
    differently each time (over other spines, or all on one, when they are a few packets), and
    are still the one connection. A class loads each link with the mean share of its flows.
    Returns per route its class, and per class its links (padded with ``n_links``) and shares."""
    classes: dict[tuple, int] = {}
    class_of = np.array([classes.setdefault(key, len(classes)) for key in routes.classes], dtype=np.int64)
    flows = np.bincount(flow_route, minlength=len(routes.links))
    share: list[dict[int, float]] = [{} for _ in classes]
    total = np.zeros(len(classes))
    for r, (links, weights) in enumerate(zip(routes.links, routes.weights)):
        c, n = class_of[r], flows[r]
        total[c] += n
        for link, w in zip(links, weights):
            share[c][link] = share[c].get(link, 0.0) + n * w
    links, weights = padded_rows([list(row) for row in share],
                                 [[w / total[c] if total[c] else 1.0 for w in row.values()]
                                  for c, row in enumerate(share)], n_links)
    return class_of, links, weights


def _allocation(sigs: np.ndarray, members: list[tuple[np.ndarray, np.ndarray]],
                table_links: np.ndarray, table_weights: np.ndarray,
                capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The competing set of phases with signatures ``sigs`` -> its routes (sorted ids) and each
    route's max-min fair rate (Gbit/s); a route carries the most flows any one phase puts on it."""
    ids = np.concatenate([members[s][0] for s in sigs.tolist()])
    counts = np.concatenate([members[s][1] for s in sigs.tolist()]).astype(np.float64)
    flows = np.zeros(len(table_links))
    np.maximum.at(flows, ids, counts)
    unique = np.flatnonzero(flows)
    return unique, max_min_rates_by_bottlenecks(table_links[unique], table_weights[unique] * flows[unique, None],
                                                capacity)
