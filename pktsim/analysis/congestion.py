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

import numpy as np

from pktsim.fabric.fabric import Fabric
from pktsim.workload.dag import Workload


class CongestionMeter:
    """Accumulates per-phase link loads from the flows as they complete."""

    def __init__(self, fabric: Fabric, workload: Workload) -> None:
        self.fabric = fabric
        self.workload = workload
        self.loads: dict[tuple[int, int], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        self._op, self._step = memoryview(workload.op), memoryview(workload.step)
        self._src, self._dst = memoryview(workload.src), memoryview(workload.dst)

    def add_flow(self, msg_id: int, path: list[str] | None, spine_bytes: list[tuple[str, int]]) -> None:
        """A flow of ``msg_id`` took ``path`` (nodes, or None when its packets spread) and carried
        ``spine_bytes`` (payload bytes per turning-point switch)."""
        load = self.loads[self._op[msg_id], self._step[msg_id]]
        if path is not None:
            nbytes = sum(b for _, b in spine_bytes)
            for u, v in zip(path[1:-2], path[2:-1]):
                load[u, v] += nbytes
            return
        hosts, tor_of = self.workload.hosts, self.fabric.tor_of
        a, b = tor_of[hosts[self._src[msg_id]]], tor_of[hosts[self._dst[msg_id]]]
        for turn, nbytes in spine_bytes:
            switches = self.fabric.via(a, b, turn)
            for u, v in zip(switches, switches[1:]):
                load[u, v] += nbytes

    def phases(self) -> list[dict]:
        """One record per phase with cross-ToR traffic, in (op, step) order: the busiest link, its
        bytes and the congestion. ``msg_ids``: the phase's messages (int64 array, in msg_id order)."""
        w = self.workload
        if not len(w.bytes):
            return []
        # Group the messages by phase with one stable sort (vectorised on purpose: every message).
        key = w.op.astype(np.int64) * (int(w.step.max()) + 1) + w.step
        order = np.argsort(key, kind="stable")
        keys = key[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        sizes = w.bytes[order]
        largest = np.maximum.reduceat(sizes, starts).tolist()
        total = np.add.reduceat(sizes, starts).tolist()
        bounds = np.append(starts, len(keys)).tolist()
        ops, steps = w.op[order[starts]].tolist(), w.step[order[starts]].tolist()
        where = {(o, s): k for k, (o, s) in enumerate(zip(ops, steps))}
        out = []
        for key in sorted(self.loads):
            load = self.loads[key]
            if not load:
                continue
            k = where[key]
            link, busiest = max(load.items(), key=lambda kv: (kv[1], kv[0]))
            op = w.collectives[key[0]]
            out.append({
                "op": key[0], "job": op.job, "collective": op.collective, "iteration": op.iteration,
                "step": key[1], "messages": bounds[k + 1] - bounds[k], "bytes": total[k], "max_link_bytes": busiest,
                "busiest_link": f"{link[0]}->{link[1]}", "congestion": busiest / largest[k],
                "msg_ids": order[bounds[k]:bounds[k + 1]],
            })
        return out
