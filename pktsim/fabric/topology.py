"""Fabric topologies as networkx graphs: leaf-spine (2-tier Clos) and k-ary fat-tree (3-tier).

Node attributes: ``kind`` ("host" or "switch"), ``tier`` (0 hosts, 1 leaf/edge, 2 spine/aggregation,
3 core). Edge attributes: ``gbps`` (rate of each direction, Gbit/s) and ``delay_ns`` (propagation).
Hosts are named ``h0, h1, ...`` in leaf order; switches carry their tier in the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pktsim.registry import Registry

if TYPE_CHECKING:  # the scenario's topology kinds are read from TOPOLOGY_KINDS below
    import networkx as nx

    from pktsim.scenario import FatTreeSpec, LeafSpineSpec, TopologySpec

TOPOLOGY_KINDS: Registry[Callable[[TopologySpec], nx.Graph]] = Registry("topology kind")
"""``topology.kind`` -> the builder of its graph from the kind's spec (:class:`pktsim.scenario.LeafSpineSpec`,
:class:`pktsim.scenario.FatTreeSpec`); the scenario accepts exactly these kinds."""


def build_graph(spec: TopologySpec) -> nx.Graph:
    """The fabric described by ``spec``."""
    return TOPOLOGY_KINDS[spec.kind](spec)


@TOPOLOGY_KINDS.register("leaf_spine")
def _build_leaf_spine(spec: LeafSpineSpec) -> nx.Graph:
    return leaf_spine(spec.spines, spec.leaves, spec.hosts_per_leaf, spec.link_gbps, spec.host_gbps, spec.link_delay_ns,
                      spec.spine_delay_ns)


@TOPOLOGY_KINDS.register("fat_tree")
def _build_fat_tree(spec: FatTreeSpec) -> nx.Graph:
    return fat_tree(spec.k, spec.link_gbps, spec.host_gbps, spec.link_delay_ns)


def _add_hosts(g: nx.Graph, tor: str, first: int, count: int, gbps: float, delay_ns: int) -> None:
    for h in range(first, first + count):
        g.add_node(f"h{h}", kind="host", tier=0)
        g.add_edge(f"h{h}", tor, gbps=gbps, delay_ns=delay_ns)


def leaf_spine(
    spines: int, leaves: int, hosts_per_leaf: int, link_gbps: float, host_gbps: float, delay_ns: int,
    spine_delay_ns: list[int] | None = None,
) -> nx.Graph:
    """Every leaf connects to every spine with one ``link_gbps`` link (delay ``spine_delay_ns[s]``
    for spine s if given); hosts hang off leaves."""
    import networkx as nx  # imported when used: the scenario imports this module for its registry

    g = nx.Graph(kind="leaf_spine")
    for s in range(spines):
        g.add_node(f"spine{s}", kind="switch", tier=2)
    for leaf in range(leaves):
        name = f"leaf{leaf}"
        g.add_node(name, kind="switch", tier=1)
        for s in range(spines):
            g.add_edge(name, f"spine{s}", gbps=link_gbps, delay_ns=spine_delay_ns[s] if spine_delay_ns else delay_ns)
        _add_hosts(g, name, leaf * hosts_per_leaf, hosts_per_leaf, host_gbps, delay_ns)
    return g


def fat_tree(k: int, link_gbps: float, host_gbps: float, delay_ns: int) -> nx.Graph:
    """k-ary fat-tree (Al-Fares et al.): k pods of k/2 edge and k/2 aggregation switches,
    (k/2)^2 cores; core (i, j) connects to aggregation switch i of every pod."""
    import networkx as nx  # imported when used: the scenario imports this module for its registry

    half = k // 2
    g = nx.Graph(kind="fat_tree")
    for c in range(half * half):
        g.add_node(f"core{c}", kind="switch", tier=3)
    for pod in range(k):
        for a in range(half):
            agg = f"agg{pod * half + a}"
            g.add_node(agg, kind="switch", tier=2)
            for j in range(half):
                g.add_edge(agg, f"core{a * half + j}", gbps=link_gbps, delay_ns=delay_ns)
        for e in range(half):
            edge_index = pod * half + e
            edge = f"edge{edge_index}"
            g.add_node(edge, kind="switch", tier=1)
            for a in range(half):
                g.add_edge(edge, f"agg{pod * half + a}", gbps=link_gbps, delay_ns=delay_ns)
            _add_hosts(g, edge, edge_index * half, half, host_gbps, delay_ns)
    return g


def hosts(g: nx.Graph) -> list[str]:
    """Host names in index order (h0, h1, ...)."""
    return sorted((n for n, d in g.nodes(data=True) if d["kind"] == "host"), key=lambda n: int(n[1:]))


def host_tor(g: nx.Graph, host: str) -> str:
    """The switch a host is attached to."""
    (tor,) = g.neighbors(host)
    return tor


def next_hops(g: nx.Graph) -> dict[str, dict[str, list[str]]]:
    """Equal-cost next hops: ``result[switch][tor]`` lists the neighbours of ``switch`` on a shortest
    path to the top-of-rack switch ``tor`` (empty at ``tor`` itself, which delivers to its hosts).

    Hosts are single-homed, so routing toward a host is routing toward its ToR; one BFS per ToR.
    """
    import networkx as nx  # imported when used: the scenario imports this module for its registry

    switches = [n for n, d in g.nodes(data=True) if d["kind"] == "switch"]
    fabric = g.subgraph(switches)
    tors = sorted({host_tor(g, h) for h in hosts(g)}, key=_natural)
    result: dict[str, dict[str, list[str]]] = {s: {} for s in switches}
    for tor in tors:
        dist = nx.single_source_shortest_path_length(fabric, tor)
        for s in switches:
            if s == tor:
                result[s][tor] = []
                continue
            result[s][tor] = sorted(
                (n for n in fabric.neighbors(s) if dist.get(n, -1) == dist[s] - 1), key=_natural
            )
    return result


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or 0)
