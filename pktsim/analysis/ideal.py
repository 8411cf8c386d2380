"""Closed forms for the ideal case: a message alone on an idle fabric."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from pktsim.workload.collectives import critical_path
from pktsim.scenario import Scenario
from pktsim.fabric.topology import host_tor
from pktsim.units import ns_to_ps, serialisation_ps
from pktsim.workload.dag import Workload


@dataclass(frozen=True)
class Hop:
    """One link of a path: its rate (Gbit/s), propagation delay (ns) and the fixed latency (ns)
    of the switch the packet crosses before it (0 for the first hop)."""

    gbps: float
    delay_ns: int
    switch_latency_ns: int = 0


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


class PathHops:
    """The links (as :class:`Hop`) of a shortest host-to-host path, memoised per pair of top-of-rack
    switches with one BFS per source ToR: every equal-cost path of these fabrics looks alike."""

    def __init__(self, graph: nx.Graph, switch_latency_ns: int) -> None:
        self.graph = graph
        self.latency = switch_latency_ns
        self._bfs: dict[str, dict[str, list[str]]] = {}
        self._hops: dict[tuple[str, str, bool], list[Hop]] = {}

    def __call__(self, src: str, dst: str) -> list[Hop]:
        g = self.graph
        a, b = host_tor(g, src), host_tor(g, dst)
        key = (a, b, src == dst)
        if key not in self._hops:
            if a not in self._bfs:
                self._bfs[a] = nx.single_source_shortest_path(g, a)
            nodes = [src, *self._bfs[a][b], dst]
            self._hops[key] = [
                Hop(g.edges[u, v]["gbps"], g.edges[u, v]["delay_ns"], self.latency if i else 0)
                for i, (u, v) in enumerate(zip(nodes, nodes[1:]))
            ]
        return self._hops[key]


def ideal_times(graph: nx.Graph, scenario: Scenario, workload: Workload) -> tuple[list[int], list[int]]:
    """Ideal times (ps) on an idle fabric: per message, its FCT alone (:func:`message_fct_ps`); per
    collective op, a lower bound on its duration: the larger of its critical path with every message
    at its ideal FCT and the time every host's NIC needs to serialise the wire bytes it sends (or
    receives) in the op."""
    nic = scenario.nic
    path_hops = PathHops(graph, scenario.switch.latency_ns)
    cache: dict[tuple, int] = {}
    fct = []
    for m in workload.messages:
        hops = path_hops(m.src, m.dst)
        key = (id(hops), m.bytes)
        if key not in cache:
            cache[key] = message_fct_ps(m.bytes, nic.mtu_bytes, nic.header_bytes, hops)
        fct.append(cache[key])
    chain = critical_path(workload, lambda m: fct[m.msg_id])
    ops = []
    for op, cp in zip(workload.collectives, chain):
        nic_bytes: dict[tuple[str, str], int] = {}
        for i in op.msg_ids:
            m = workload.messages[i]
            wire = m.bytes + -(-m.bytes // nic.payload_bytes) * nic.header_bytes
            for end in ((m.src, "tx"), (m.dst, "rx")):
                nic_bytes[end] = nic_bytes.get(end, 0) + wire
        nic_bound = max(
            serialisation_ps(b, graph.edges[host, host_tor(graph, host)]["gbps"]) for (host, _), b in nic_bytes.items()
        )
        ops.append(max(int(cp), nic_bound))
    return fct, ops
