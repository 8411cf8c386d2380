"""Ideal times: lower bounds on what any scheme can achieve on an idle fabric, and the closed form of
a message alone on one path.

Per message, :func:`message_bound_ps` is a **lower bound** on its FCT under every load-balancing
scheme, every split into subflows and packets, in the packet backend and in the fluid backend:
the message alone, free to use every equal-cost path at once and the best pipelining any cut into
packets of at most ``mtu_bytes`` could give. :func:`message_fct_ps` is the closed form of the
message alone on *one* shortest path, cut as the NIC cuts it (full packets, then the remainder):
what ECMP achieves alone, and the fluid backend's latency ``L``; a scheme that spreads a message
over several paths, or cuts it into smaller packets, can beat it.

The derivation of the bound (also in ``traces/README.md``)
-----------------------------------------------------------
Notation. ``B`` payload bytes, header ``h``, payload per full packet ``P = mtu - h``. Every shortest
path has ``H`` links; *tier* ``j`` is the set of j-th links of the equal-cost paths (tier 1 the
sender's host link, tier ``H`` the receiver's, one link each). ``p_j`` is the serialisation time of
one byte on a tier-j link (ps/B), ``c_j = p_j / (links in tier j)`` the same at the tier's aggregate
capacity, ``F`` the sum over tiers of the smallest propagation delay in the tier plus the switch
latencies (``H - 1`` of them). A split into ``n >= n0 = ceil(B / P)`` packets puts
``W(n) = B + n*h`` bytes on the wire; its largest packet has at least ``s(n) = ceil(B/n) + h`` bytes,
its smallest at least ``q(n) = h + max(1, B - (n-1)*P)`` (``q(n0)`` is the NIC's remainder packet,
``h + 1`` beyond). Times below are after ``F``, which every packet pays on top of serialisation.

Packet backend (store-and-forward, FIFO links), for a split into n packets, the FCT is at least:

- *cut at tier j*: ``W c_j + q * sum_{l != j} p_l``: no tier-j link is busy before the first packet
  crossed tiers 1..j-1, the tier carries all W bytes, and the last of them still crosses the rest;
- *the largest packet*: ``s * sum_l p_l``;
- *one path* (every tier a single link, so every link serves the packets in the same order, a
  permutation flow shop): for tiers u < v, along the lattice path "packet 1 through tiers < u,
  packets 1..k at tier u, packet k (the largest) through tiers u+1..v-1, packets k..n at tier v,
  packet n through tiers > v": ``q (sum_{l<u} + sum_{l>v}) p_l + W min(p_u, p_v) + s (max(p_u, p_v)
  + sum_{u<l<v} p_l)``. With equal rates and (u, v) = (1, H) this is ``W p + (H-1) s p``, the
  closed form when whole packets are best;
- *several paths* (packets may overtake each other in the fabric). Relaxation: the sender's link
  sends the packets back to back (``S_i`` bytes up to and including packet i, in sending order);
  packet i reaches the receiver's link no earlier than ``S_i p_1 + s_i phi`` (``phi = sum_{1<l<H}
  p_l``: the fabric without contention, on any path), and that link serves in arrival order. For
  every packet i, ``T >= r_i + p_H * (bytes served from i on)``, i.e. ``T >= W p_H + S_i (p_1 - p_H) +
  s_i (p_H + phi) - p_H |Y_i| + p_H |Z_i|``, with ``Y_i`` the packets sent after i that arrive before it
  and ``Z_i`` those sent before it that arrive after. Weighted by ``s_i`` and summed over i, the
  overtaking terms cancel pair by pair (y is in ``Y_i`` exactly when i is in ``Z_y``), and with
  ``sum s_i S_i = (W^2 + sum s_i^2) / 2``: ``T >= W p_bar + (p_bar + phi) sum s_i^2 / W >= W p_bar +
  (p_bar + phi) W / n`` (``p_bar`` the mean of the host links' p): what n equal packets take on one
  path. Spreading over several paths adds capacity (the cuts) but pipelines no better than that;
  whole full packets give the closed form. Also, with k the largest packet:
  ``W min(p_1, p_H) + min(s (max(p_1, p_H) + phi), s min(p_1, p_H) + q (p_1 + phi))`` (if something
  overtakes k, it left after k and crossed the fabric before k entered the last link).

Fluid backend (a subflow of first packet ``f`` drains at its max-min rate, then arrives ``L`` later,
``L = message_fct_ps(subflow) - wire * p_slowest``): the message's last subflow to drain does so
after ``W c_min`` (every byte crosses every tier, at most at its aggregate rate), and its ``L`` is at
least ``f sum_{l<v} p_l + (h + 1) sum_{l>v} p_l`` for the last tier v of the slowest rate (the
lattice bound of the closed form, minus the drain at that tier). The subflows of a message are
near-equal (every scheme cuts with :func:`pktsim.units.split_evenly`), so that subflow holds at
least ``floor(B/k) >= floor(B/n)`` bytes (k subflows, n packets): ``f >= floor(B/n) + h``.

The bound is ``F + min(min_n max(packet terms), min_n fluid term)``, rounded down to a ps, so it
holds for both backends. It equals :func:`message_fct_ps` for a message of whole full packets (on
one path or several) when the fabric is at least as fast as the hosts and more, smaller packets
would not pipeline better (about ``(H - 1) P / h`` packets or more). It is lower where a scheme can
beat the NIC alone on one path: smaller packets (short messages, a short last packet), and several
paths whose links together are faster than one path's slow fabric links.

A collective op's bound is the larger of the DAG's critical path with every message at its bound
and every host NIC's serialisation of the wire bytes it sends (and receives) in the op, at the
fewest packets (``W(n0)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm
from typing import NamedTuple

import numpy as np

from pktsim.arrays import unique_first
from pktsim.fabric.fabric import Fabric, Hop
from pktsim.scenario import Scenario
from pktsim.units import ns_to_ps, ps_per_byte, serialisation_ps
from pktsim.workload.collectives import critical_path_array
from pktsim.workload.dag import Workload


def wire_bytes(payload: int, mtu_bytes: int, header_bytes: int) -> int:
    """Bytes on the wire for ``payload`` bytes: one header per (mtu - header) bytes of payload."""
    return payload + -(-payload // (mtu_bytes - header_bytes)) * header_bytes


def message_fct_ps(payload_bytes: int, mtu_bytes: int, header_bytes: int, hops: list[Hop]) -> int:
    """Completion time (ps) of a message sent alone at line rate along ``hops``: first byte on the
    first link to last byte received, with store-and-forward at every switch.

    Packets are ``mtu_bytes`` on the wire but the last, which carries the remainder. The departure
    of packet i from hop j is D[j][i] = max(D[j][i-1], D[j-1][i] + delay[j-1]) + ser[j](i); for the
    n-1 equal full packets this has the closed form D[j][1] + (i-1) * max(ser[1..j]) (they queue
    behind the slowest link so far), and the last packet follows by the recurrence.
    """
    payload = mtu_bytes - header_bytes
    n_full, rest = divmod(payload_bytes, payload)
    if rest == 0:
        n_full, rest = n_full - 1, payload
    last_size = rest + header_bytes
    slowest = 0  # largest full-packet serialisation time so far
    arrive_first = arrive_last = t_first = 0
    for j, hop in enumerate(hops):
        full, short = serialisation_ps(mtu_bytes, hop.gbps), serialisation_ps(last_size, hop.gbps)
        lat = ns_to_ps(hop.switch_latency_ns)
        if n_full:
            slowest = max(slowest, full)
            t_first = arrive_first + lat + full
            t_full_last = t_first + (n_full - 1) * slowest
            t_last = max(t_full_last, arrive_last + lat) + short
        else:
            t_last = arrive_last + lat + short
        d = ns_to_ps(hop.delay_ns)
        arrive_first, arrive_last = t_first + d, t_last + d
    return arrive_last


@dataclass(frozen=True)
class Route:
    """The equal-cost paths between two hosts, tier by tier (tier j: the j-th links of the paths)."""

    gbps: tuple[float, ...]
    """Per tier: the fastest link's rate (Gbit/s)."""
    links: tuple[int, ...]
    """Per tier: how many distinct links the equal-cost paths use (1 for the host links)."""
    capacity_gbps: tuple[float, ...]
    """Per tier: the sum of those links' rates (a cut between the two hosts)."""
    fixed_ps: int
    """Per tier the smallest propagation delay, summed, plus the switch latencies (ps)."""

    @property
    def single_path(self) -> bool:
        return all(n == 1 for n in self.links)


def route(fabric: Fabric, src: str, dst: str) -> Route:
    """The tiers of the equal-cost paths from host ``src`` to host ``dst`` (the next hops every
    scheme chooses among), with their rates, link counts and the fixed latency."""
    g = fabric.graph
    a, b = fabric.tor_of[src], fabric.tor_of[dst]
    tiers: list[list[tuple[str, str]]] = [[(src, a)]]
    level = {a}
    while level != {b}:
        links = sorted({(u, n) for u in level for n in fabric.next_hops[u][b]})
        tiers.append(links)
        level = {n for _, n in links}
    tiers.append([(b, dst)])
    rates = [[g.edges[u, v]["gbps"] for u, v in links] for links in tiers]
    # Per tier the shortest delay (a packet's head and another's tail may take different paths).
    delay = sum(min(g.edges[u, v]["delay_ns"] for u, v in links) for links in tiers)
    return Route(
        gbps=tuple(max(r) for r in rates), links=tuple(len(r) for r in rates),
        capacity_gbps=tuple(sum(r) for r in rates),
        fixed_ps=ns_to_ps(delay + (len(tiers) - 1) * fabric.switch_latency_ns),
    )


def message_bound_ps(payload_bytes: int, mtu_bytes: int, header_bytes: int, r: Route, max_counts: int = 4000) -> int:
    """A lower bound (ps) on the FCT of ``payload_bytes`` from one host to another along the tiers
    ``r``, whatever the scheme, the split into subflows and packets, and the backend (see the module
    docstring for the derivation). Packet counts n are tried from the fewest up while they could
    still do better (at most ``max_counts`` of them; the others are bounded by what grows with n)."""
    B, h = payload_bytes, header_bytes
    P = mtu_bytes - h
    pf = [ps_per_byte(x) for x in r.gbps]
    cf = [ps_per_byte(x) for x in r.capacity_gbps]
    den = 2 * lcm(*(x.denominator for x in pf + cf))
    p = [int(x * den) for x in pf]  # exact: every time below is in ps * den (den even: p-bar is whole)
    c = [int(x * den) for x in cf]
    H = len(p)
    total = sum(p)
    # Packet terms valid for any n packets, as (coefficient of W, of s, of q): cuts, the largest packet.
    terms = [(c[j], 0, total - p[j]) for j in range(H)] + [(0, total, 0)]
    if r.single_path:  # the lattice paths of the permutation flow shop
        for u in range(H):
            for v in range(u + 1, H):
                terms.append((min(p[u], p[v]), max(p[u], p[v]) + sum(p[u + 1:v]), sum(p[:u]) + sum(p[v + 1:])))
    # Any paths, overtaking included (the relaxation): W p-bar + (p-bar + phi) W / n, and the largest packet's.
    p_bar, phi = (p[0] + p[-1]) // 2, sum(p[1:-1])
    lo, hi = min(p[0], p[-1]), max(p[0], p[-1])
    # Fluid term: W * c_slowest + f * A + (h + 1) * Z, v the last tier of the slowest rate.
    c_min_rate = max(c)
    v = max(j for j in range(H) if p[j] == max(p))
    fa, fz = sum(p[:v]), sum(p[v + 1:])

    def packet(n: int) -> int:
        w, s, q = B + n * h, -(-B // n) + h, h + max(1, B - (n - 1) * P)
        best = max(kw * w + ks * s + kq * q for kw, ks, kq in terms)
        energy = w * p_bar + (p_bar + phi) * w // n
        largest = lo * w + min((hi + phi) * s, lo * s + (p[0] + phi) * q)
        return max(best, energy, largest)

    def fluid(n: int) -> int:
        return (B + n * h) * c_min_rate + (B // n + h) * fa + (h + 1) * fz

    def floors(n: int) -> tuple[int, int]:
        """What every count >= n > n0 needs at least (q = h + 1 from n0 + 1 on): the cut terms
        for packets, and the fluid term with its smallest first packet."""
        w = B + n * h
        return max(c[j] * w + (h + 1) * (total - p[j]) for j in range(H)), w * c_min_rate + (h + 1) * (fa + fz)

    n0 = max(1, -(-B // P))
    best_p, best_f = packet(n0), fluid(n0)
    for n in range(n0 + 1, min(B, n0 + max_counts) + 1):
        floor_p, floor_f = floors(n)
        if floor_p >= best_p and floor_f >= best_f:
            break
        best_p, best_f = min(best_p, packet(n)), min(best_f, fluid(n))
    else:
        if n0 + max_counts < B:  # counts not tried: at least their floors
            floor_p, floor_f = floors(n0 + max_counts + 1)
            best_p, best_f = min(best_p, floor_p), min(best_f, floor_f)
    return r.fixed_ps + min(best_p, best_f) // den


class IdealTimes(NamedTuple):
    fct_ps: list[int]
    """Per message: the lower bound on its FCT (:func:`message_bound_ps`)."""
    op_ps: list[int]
    """Per collective op: the lower bound on its duration."""
    single_path_fct_ps: list[int]
    """Per message: the closed form alone on one shortest path (:func:`message_fct_ps`)."""


def ideal_times(fabric: Fabric, scenario: Scenario, workload: Workload) -> IdealTimes:
    """Ideal times (ps) on an idle fabric: per message, the lower bound on its FCT and the closed form
    alone on one path; per collective op, a lower bound on its duration: the larger of its critical
    path with every message at its bound and the time every host's NIC needs to serialise the wire
    bytes it sends (or receives) in the op.

    Vectorised on purpose: messages are grouped by (ToR pair, same host, bytes) with numpy and each
    group's times computed once, from its first message (what a scan in msg_id order with caches
    computes); the per-message lists share the groups' int objects."""
    nic = scenario.nic
    w = workload
    n = len(w.bytes)
    tor_names = sorted({fabric.tor_of[h] for h in w.hosts})
    tor_code = np.array([tor_names.index(fabric.tor_of[h]) for h in w.hosts], dtype=np.int64)
    n_tors = max(len(tor_names), 1)
    src, dst = w.src.astype(np.int64), w.dst.astype(np.int64)
    sizes = np.unique(w.bytes)
    size_code = np.searchsorted(sizes, w.bytes)
    route_key = (tor_code[src] * n_tors + tor_code[dst]) * 2 + (src == dst)
    key = route_key * max(len(sizes), 1) + size_code
    _, first, inverse = unique_first(key)
    routes: dict[int, Route] = {}
    bounds: dict[tuple[Route, int], int] = {}
    fct_of, alone_of = [0] * len(first), [0] * len(first)
    for g in np.argsort(first, kind="stable").tolist():  # groups in order of their first message
        i = int(first[g])
        m_src, m_dst, nbytes = w.hosts[src[i]], w.hosts[dst[i]], int(w.bytes[i])
        rk = int(route_key[i])
        r = routes.get(rk)
        if r is None:
            r = routes[rk] = route(fabric, m_src, m_dst)
        if (r, nbytes) not in bounds:  # pairs of ToRs alike share their bounds
            bounds[r, nbytes] = message_bound_ps(nbytes, nic.mtu_bytes, nic.header_bytes, r)
        hops = fabric.path_hops(m_src, m_dst)
        fct_of[g], alone_of[g] = bounds[r, nbytes], message_fct_ps(nbytes, nic.mtu_bytes, nic.header_bytes, hops)
    groups = inverse.tolist()
    fct = list(map(fct_of.__getitem__, groups))
    alone = list(map(alone_of.__getitem__, groups))
    del groups
    chain = critical_path_array(workload, np.array(fct_of, dtype=np.float64)[inverse] if n else np.zeros(0))
    payload = nic.mtu_bytes - nic.header_bytes
    wire = w.bytes + -(-w.bytes // payload) * nic.header_bytes  # wire_bytes(), vectorised
    ops = []
    for op, cp in zip(workload.collectives, chain):
        a, b = op.msg_ids.start, op.msg_ids.stop
        nic_bound = 0
        for codes in (src[a:b], dst[a:b]):  # the op's senders (tx), then its receivers (rx)
            # float64 sums of integers below 2**53 (bytes per host per op): exact
            per_host = np.bincount(codes, weights=wire[a:b], minlength=len(w.hosts))
            hosts = np.flatnonzero(np.bincount(codes, minlength=len(w.hosts)))
            for h, nbytes in zip(hosts.tolist(), per_host[hosts].tolist()):
                host = w.hosts[h]
                nic_bound = max(nic_bound, serialisation_ps(int(nbytes), fabric.host_link_gbps(host)))
        ops.append(max(int(cp), nic_bound))
    return IdealTimes(fct, ops, alone)
