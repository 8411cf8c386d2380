"""Congestion: the load routing put on the fabric's links in each phase of the workload.

A *phase* is one step of one collective op (all messages with the same ``op`` and ``step``): the
flows a planner sees together. For each phase, every (sub)flow's bytes are added to the
switch-to-switch links of the path it took (a sprayed flow's bytes follow its per-turning-point
split; in these fabrics a turning point fixes the path). The phase's *congestion* is the busiest
link's load divided by the phase's largest message: the number of flows on the busiest link when
flows are equal (1 is the best a routing can do when no link must carry two), fractional under
splitting and spraying. Host links are left out: routing cannot change their load.
"""

from __future__ import annotations

from collections import defaultdict

from pktsim.fabric.fabric import Fabric
from pktsim.workload.dag import Workload


class CongestionMeter:
    """Accumulates per-phase link loads from the flows as they complete."""

    def __init__(self, fabric: Fabric, workload: Workload) -> None:
        self.fabric = fabric
        self.workload = workload
        self.loads: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))

    def add_flow(self, msg_id: int, path: list[str] | None, spine_bytes: list[tuple[str, int]]) -> None:
        """A flow of ``msg_id`` took ``path`` (nodes, or None when its packets spread) and carried
        ``spine_bytes`` (payload bytes per turning-point switch)."""
        m = self.workload.messages[msg_id]
        load = self.loads[m.op, m.step]
        if path is not None:
            nbytes = sum(b for _, b in spine_bytes)
            for u, v in zip(path[1:-2], path[2:-1]):
                load[u, v] += nbytes
            return
        for turn, nbytes in spine_bytes:
            switches = self.fabric.via(self.fabric.tor_of[m.src], self.fabric.tor_of[m.dst], turn)
            for u, v in zip(switches, switches[1:]):
                load[u, v] += nbytes

    def phases(self) -> list[dict]:
        """One record per phase with cross-ToR traffic, in (op, step) order: the busiest link, its
        bytes and the congestion."""
        largest: dict[tuple[int, int], int] = defaultdict(int)
        total: dict[tuple[int, int], int] = defaultdict(int)
        count: dict[tuple[int, int], int] = defaultdict(int)
        msg_ids: dict[tuple[int, int], list[int]] = defaultdict(list)
        for m in self.workload.messages:
            key = (m.op, m.step)
            largest[key] = max(largest[key], m.bytes)
            total[key] += m.bytes
            count[key] += 1
            msg_ids[key].append(m.msg_id)
        out = []
        for key in sorted(self.loads):
            load = self.loads[key]
            if not load:
                continue
            link, busiest = max(load.items(), key=lambda kv: (kv[1], kv[0]))
            op = self.workload.collectives[key[0]]
            out.append({
                "op": key[0], "job": op.job, "collective": op.collective, "iteration": op.iteration,
                "step": key[1], "messages": count[key], "bytes": total[key], "max_link_bytes": busiest,
                "busiest_link": f"{link[0]}->{link[1]}", "congestion": busiest / largest[key],
                "msg_ids": msg_ids[key],
            })
        return out
