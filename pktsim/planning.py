"""Flow plans: how each message is cut into subflows and which entropy (hence path) each one gets.

Every backend asks :class:`FlowPlanner` for a message's subflows, so the packet and fluid backends
(and the exported workload) carry the same flows on the same paths.

- ``ecmp``, ``spray``, ``spray_switch``, ``split``: ``lb.subflows`` equal subflows (one for all but
  ``split``), each on its own connection with the connection's fixed entropy.
- ``split_minimal`` (after "Challenging the Need for Packet Spraying", arXiv 2407.00550): in each
  phase of a collective (one step of one op), the n concurrent flows from a leaf to another leaf are
  spread over the s equal-cost turning points (spines): floor(n/s) * s flows go whole, one per spine
  round-robin; each of the r = n mod s leftover flows is cut into s / gcd(r, s) equal pieces, spread
  so that every spine carries the same load. Each piece is pinned to its spine by its *entropy*: the
  NIC picks the UDP source port whose ECMP hash lands on that spine (what a RoCE NIC can do with no
  help from the switches), found by trying entropies in a seeded order.
"""

from __future__ import annotations

from collections import defaultdict
from math import gcd

import networkx as nx

from .routing import LoadBalancing, connection_entropy, ecmp_path, flow_key, subflow_sizes, switch_salt
from .scenario import Scenario
from .topology import host_tor, hosts, next_hops
from .workload import Message, Workload

Subflow = tuple[int, int]
"""(payload bytes, entropy)."""


class FlowPlanner:
    """The subflows of every message of a workload, decided before the run."""

    def __init__(self, scenario: Scenario, graph: nx.Graph, workload: Workload) -> None:
        self.seed = scenario.seed
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self.minimal = scenario.lb.scheme == "split_minimal"
        self._plans: dict[int, list[Subflow]] = {}
        if self.minimal:
            self._paths = _PathPinner(graph, scenario.seed)
            self._plan_minimal(workload)

    def subflows(self, m: Message) -> list[Subflow]:
        """(bytes, entropy) of each subflow of ``m``; the bytes sum to ``m.bytes``."""
        plan = self._plans.get(m.msg_id)
        if plan is not None:
            return plan
        return [
            (size, connection_entropy(self.seed, m.job, m.src, m.dst, m.channel, sub))
            for sub, size in enumerate(subflow_sizes(m.bytes, self.lb))
        ]

    def _plan_minimal(self, workload: Workload) -> None:
        phases: dict[tuple, list[Message]] = defaultdict(list)
        for m in workload.messages:
            a, b = self._paths.tor_of[m.src], self._paths.tor_of[m.dst]
            if a != b:
                phases[m.op, m.step, a, b].append(m)
        for (_, _, a, b), flows in phases.items():
            spines = self._paths.turning_points(a, b)
            for m, pieces in zip(flows, minimal_split(len(flows), len(spines))):
                sizes = _split(m.bytes, len(pieces))
                self._plans[m.msg_id] = [
                    (size, self._paths.entropy_via(m.src, m.dst, spines[spine]))
                    for size, spine in zip(sizes, pieces) if size
                ]


def minimal_split(n: int, s: int) -> list[list[int]]:
    """For n equal flows over s spines: per flow, the spine index of each of its equal pieces.
    Whole flows take spines round-robin; the r = n mod s others are cut into s / gcd(r, s) pieces
    dealt round-robin over the spines, so every spine carries n / s flows' worth of bytes."""
    whole = n - n % s
    out = [[f % s] for f in range(whole)]
    r = n % s
    if r:
        k = s // gcd(r, s)
        spine = 0
        for _ in range(r):
            out.append([(spine + i) % s for i in range(k)])
            spine = (spine + k) % s
    return out


def _split(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (i < extra) for i in range(n)]


class _PathPinner:
    """Finds, for a pair of hosts, an entropy whose ECMP path turns at a given switch."""

    SEARCH = 1 << 16

    def __init__(self, graph: nx.Graph, seed: int) -> None:
        self.seed = seed
        names = hosts(graph)
        self.index = {h: i for i, h in enumerate(names)}
        self.tor_of = {h: host_tor(graph, h) for h in names}
        self.tier = {n: d["tier"] for n, d in graph.nodes(data=True)}
        self.next_hops = next_hops(graph)
        self.salts = {s: switch_salt(seed, s) for s in self.next_hops}
        self._turning: dict[tuple[str, str], list[str]] = {}
        self._entropy: dict[tuple[str, str, str], int] = {}

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

    def entropy_via(self, src: str, dst: str, turn: str) -> int:
        """The first entropy, in a seeded order, whose path from ``src`` to ``dst`` turns at ``turn``."""
        key = (src, dst, turn)
        if key not in self._entropy:
            s, d = self.index[src], self.index[dst]
            start = connection_entropy(self.seed, "pin", src, dst, 0, 0)
            for i in range(self.SEARCH):
                e = (start + i) & 0xFFFF
                path = ecmp_path(self.next_hops, self.tor_of, self.salts, src, dst, flow_key(s, d, e))
                if turn in path and self.tier[turn] == max(self.tier[n] for n in path[1:-1]):
                    self._entropy[key] = e
                    break
            else:
                raise RuntimeError(f"no entropy routes {src} -> {dst} through {turn}")
        return self._entropy[key]
