"""The fabric service: every question about path geometry, answered in one place, built once per run.

Hosts, their index and ToR; the switches and their tiers; the equal-cost next hops of every switch
toward every ToR; the per-switch hash salts; the one numbering of directed links (the packet
backend's port ids and the fluid backend's link ids); the path a packet with a given 5-tuple key
takes; the spread of a sprayed flow; turning points and hop counts. The packet network, the flow
planner, the fluid backend, congestion, ideal times, export and validation all ask this object, so
they cannot disagree about where a byte goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

from pktsim.fabric.hashing import flow_key, salted_hash, switch_salt
from pktsim.fabric.topology import host_tor, hosts, next_hops


@dataclass(frozen=True)
class Hop:
    """One link of a path: its rate (Gbit/s), propagation delay (ns) and the fixed latency (ns)
    of the switch the packet crosses before it (0 for the first hop)."""

    gbps: float
    delay_ns: int
    switch_latency_ns: int = 0


class Fabric:
    """Path geometry of one fabric (a topology graph) under one seed (the switches' salts).

    Links are directed and numbered once: ``sorted(graph.edges)``, each edge as (u, v) then (v, u);
    ``links[i]`` is link i, ``link_index[(u, v)]`` its number.
    """

    def __init__(self, graph: nx.Graph, seed: int, switch_latency_ns: int = 0) -> None:
        self.graph = graph
        self.seed = seed
        self.switch_latency_ns = switch_latency_ns
        self.hosts: list[str] = hosts(graph)
        """Host names in index order (h0, h1, ...)."""
        self.host_index = {h: i for i, h in enumerate(self.hosts)}
        self.tor_of: dict[str, str] = {h: host_tor(graph, h) for h in self.hosts}
        self.switches: list[str] = [n for n, d in graph.nodes(data=True) if d["kind"] == "switch"]
        """Switch names in the graph's node order (the packet backend's switch index)."""
        self.tier: dict[str, int] = {n: d["tier"] for n, d in graph.nodes(data=True)}
        self.next_hops: dict[str, dict[str, list[str]]] = next_hops(graph)
        """``next_hops[switch][tor]``: the neighbours of ``switch`` on a shortest path to ``tor``."""
        self.salts: dict[str, int] = {s: switch_salt(seed, s) for s in self.next_hops}
        self.links: list[tuple[str, str]] = []
        for u, v in sorted(graph.edges):
            self.links += [(u, v), (v, u)]
        self.link_index: dict[tuple[str, str], int] = {uv: i for i, uv in enumerate(self.links)}
        self.node_order = {n: i for i, n in enumerate(graph.nodes)}
        self._switch_graph = graph.subgraph(self.switches)
        self._turning: dict[tuple[str, str], list[str]] = {}
        self._spread: dict[tuple[str, str], tuple[dict, dict]] = {}
        self._hops: dict[tuple[str, str], int] = {}
        self._via: dict[tuple[str, str, str], list[str]] = {}
        self._bfs: dict[str, dict[str, list[str]]] = {}
        self._path_hops: dict[tuple[str, str, bool], list[Hop]] = {}

    def with_next_hops(self, next_hops: dict[str, dict[str, list[str]]]) -> Fabric:
        """The same fabric (links, numbering, salts) with other equal-cost groups: what the
        switches choose among after a fault (:func:`pktsim.fabric.faults.surviving_next_hops`).
        Every path question asked of it follows those groups."""
        view = Fabric.__new__(Fabric)
        view.__dict__.update(self.__dict__)
        view.next_hops = next_hops
        view._turning, view._spread, view._via = {}, {}, {}
        return view

    # -- links ---------------------------------------------------------------------------------

    def link_gbps(self, u: str, v: str) -> float:
        return self.graph.edges[u, v]["gbps"]

    def link_delay_ns(self, u: str, v: str) -> int:
        return self.graph.edges[u, v]["delay_ns"]

    def goes_down(self, u: str, v: str) -> bool:
        """True when the link u -> v goes down the tree (toward hosts)."""
        return self.tier[v] < self.tier[u]

    def is_switch(self, node: str) -> bool:
        return self.tier[node] > 0

    # -- paths -----------------------------------------------------------------------------------

    def ecmp_path(self, src: str, dst: str, key: int) -> list[str]:
        """The nodes a packet with 5-tuple ``key`` crosses from host ``src`` to host ``dst`` when
        every switch hashes (what :meth:`pktsim.packet.switch.Switch.on_arrival` does)."""
        path = [src]
        node, target = self.tor_of[src], self.tor_of[dst]
        while node != target:
            path.append(node)
            group = self.next_hops[node][target]
            node = group[salted_hash(key, self.salts[node]) % len(group)]
        path += [node, dst]
        return path

    def path(self, src: str, dst: str, entropy: int) -> list[str]:
        """The path of a connection with ``entropy`` (the NIC's UDP source port)."""
        return self.ecmp_path(src, dst, flow_key(self.host_index[src], self.host_index[dst], entropy))

    def spread(self, src: str, dst: str) -> tuple[dict[tuple[str, str], Fraction], dict[str, Fraction]]:
        """A sprayed flow's share of traffic on each link, and on each turning-point switch, when
        every switch splits evenly among its equal-cost next hops (exact fractions)."""
        a, b = self.tor_of[src], self.tor_of[dst]
        if (a, b) not in self._spread:
            on_node = {a: Fraction(1)}
            on_link: dict[tuple[str, str], Fraction] = {}
            level = [a]
            while level and level != [b]:
                nxt: dict[str, Fraction] = {}
                for node in level:
                    group = self.next_hops[node][b]
                    for hop in group:
                        share = on_node[node] / len(group)
                        on_link[node, hop] = on_link.get((node, hop), Fraction(0)) + share
                        nxt[hop] = nxt.get(hop, Fraction(0)) + share
                on_node.update(nxt)
                level = sorted(nxt)
            top = max(self.tier[n] for n in on_node)
            turning = {n: f for n, f in on_node.items() if self.tier[n] == top}
            self._spread[a, b] = (on_link, turning)
        on_link, turning = self._spread[a, b]
        return {(src, a): Fraction(1), **on_link, (b, dst): Fraction(1)}, turning

    def turning_point(self, path: list[str]) -> str:
        """The switch where ``path`` stops going up (highest tier on it)."""
        return max(path[1:-1], key=self.tier.__getitem__)

    def turning_points(self, a: str, b: str) -> list[str]:
        """The switches where shortest paths from ToR ``a`` to ToR ``b`` turn (spines, cores)."""
        if (a, b) not in self._turning:
            frontier, tops = [a], set()
            while frontier:  # walk every equal-cost path; keep the highest switch of each
                nxt = []
                for node in frontier:
                    for n in self.next_hops[node][b]:
                        if self.tier[n] > self.tier[node]:
                            nxt.append(n)
                        else:
                            tops.add(node)
                frontier = sorted(set(nxt))
            self._turning[a, b] = sorted(tops, key=lambda n: (len(n), n))
        return self._turning[a, b]

    def via(self, a: str, b: str, turn: str) -> list[str]:
        """The switches of a shortest path from ToR ``a`` up to ``turn`` and down to ToR ``b``."""
        key = (a, b, turn)
        if key not in self._via:
            up = nx.shortest_path(self._switch_graph, a, turn)
            down = nx.shortest_path(self._switch_graph, turn, b)
            self._via[key] = up + down[1:]
        return self._via[key]

    def hop_count(self, src: str, dst: str) -> int:
        """Links on a shortest path from host ``src`` to host ``dst``."""
        a, b = self.tor_of[src], self.tor_of[dst]
        if (a, b) not in self._hops:
            self._hops[a, b] = nx.shortest_path_length(self.graph, a, b) + 2
        return self._hops[a, b]

    def path_hops(self, src: str, dst: str) -> list[Hop]:
        """The links of a shortest path from host ``src`` to host ``dst`` with their rates, delays
        and switch latencies (every equal-cost path of these fabrics looks alike)."""
        g = self.graph
        a, b = self.tor_of[src], self.tor_of[dst]
        key = (a, b, src == dst)
        if key not in self._path_hops:
            if a not in self._bfs:
                self._bfs[a] = nx.single_source_shortest_path(g, a)
            nodes = [src, *self._bfs[a][b], dst]
            self._path_hops[key] = [
                Hop(g.edges[u, v]["gbps"], g.edges[u, v]["delay_ns"], self.switch_latency_ns if i else 0)
                for i, (u, v) in enumerate(zip(nodes, nodes[1:]))
            ]
        return self._path_hops[key]

    def host_link_gbps(self, host: str) -> float:
        """Rate of the link between ``host`` and its ToR."""
        return self.graph.edges[host, self.tor_of[host]]["gbps"]
