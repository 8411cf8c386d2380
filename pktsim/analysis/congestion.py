"""Congestion: the load routing put on the fabric's links in each phase of the workload.

A *phase* is one step of one collective op (all messages with the same ``op`` and ``step``): the
flows a planner sees together. For each phase, every (sub)flow's bytes are added to the
switch-to-switch links of the path it took (a sprayed flow's bytes follow its per-turning-point
split; in these fabrics a turning point fixes the path). The phase's *congestion* is the busiest
link's load divided by the phase's largest message: the number of flows on the busiest link when
flows are equal (1 is the best a routing can do when no link must carry two), fractional under
splitting and spraying. Host links are left out: routing cannot change their load.

The meter also keeps, per (sub)flow, what the fair-share metrics need
(:mod:`pktsim.analysis.fairness`): its message, its bytes and its *route* (the directed links it
loads, host links included, with the fraction of its traffic on each), compactly: three typed
arrays of small ints, the routes interned (a connection's route repeats every step).
"""

from __future__ import annotations

from array import array
from typing import NamedTuple, Sequence

import numpy as np

from pktsim.analysis.fairness import Routes, phase_fairness
from pktsim.fabric.fabric import Fabric
from pktsim.workload.dag import Workload


class PhaseGroups(NamedTuple):
    """Every phase (op, step) of a workload, with or without cross-ToR traffic, in (op, step) order."""

    ops: list[int]
    steps: list[int]
    order: np.ndarray
    """The message ids grouped by phase (int64; stable: in msg_id order within a phase)."""
    bounds: np.ndarray
    """Phase k's messages are ``order[bounds[k]:bounds[k + 1]]`` (int64, one more than phases)."""

    def phase_of_message(self) -> np.ndarray:
        """Per message: the index of its phase (int64)."""
        phase = np.empty(len(self.order), dtype=np.int64)
        phase[self.order] = np.repeat(np.arange(len(self.ops)), np.diff(self.bounds))
        return phase


def phase_groups(workload: Workload) -> PhaseGroups:
    """Group the messages by phase with one stable sort (vectorised on purpose: every message)."""
    w = workload
    key = w.op.astype(np.int64) * (int(w.step.max()) + 1) + w.step
    order = np.argsort(key, kind="stable")
    keys = key[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return PhaseGroups(w.op[order[starts]].tolist(), w.step[order[starts]].tolist(), order,
                       np.append(starts, len(keys)))


class LinkLoads:
    """Bytes per (phase, switch-to-switch link), accumulated as flat arrays of (pair key, bytes)
    and summed per pair whenever the buffer outgrows the pairs summed so far (amortised: each
    entry is summed O(log) times), so memory follows the distinct pairs, not the flows: a dict per
    phase cost ~100 B a pair and most of a large fluid run's time. Links are numbered in
    first-seen order; phase keys are ``op * steps + step``; a pair's key is
    ``phase << LINK_BITS | link``."""

    COMPACT_AT = 1 << 20
    """Entries buffered before the first sum."""

    LINK_BITS = 24

    def __init__(self) -> None:
        self.link_of: dict[tuple[str, str], int] = {}
        self.links: list[tuple[str, str]] = []
        self._key = array("q")
        self._bytes = array("q")
        self._summed = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        """The pairs summed so far: (keys ascending, bytes)."""

    def link(self, uv: tuple[str, str]) -> int:
        """The number of link ``uv`` (given on first sight)."""
        i = self.link_of.get(uv)
        if i is None:
            i = self.link_of[uv] = len(self.links)
            self.links.append(uv)
        return i

    def add(self, phase: int, link: int, nbytes: int) -> None:
        self._key.append(phase << self.LINK_BITS | link)
        self._bytes.append(nbytes)
        if len(self._key) >= self.COMPACT_AT and len(self._key) >= len(self._summed[0]):
            self._compact()

    def add_many(self, phase: np.ndarray, link: np.ndarray, nbytes: np.ndarray) -> None:
        key = np.asarray(phase, dtype=np.int64) << self.LINK_BITS | np.asarray(link, dtype=np.int64)
        self._key.frombytes(key.tobytes())
        self._bytes.frombytes(np.ascontiguousarray(nbytes, dtype=np.int64).tobytes())
        if len(self._key) >= self.COMPACT_AT and len(self._key) >= len(self._summed[0]):
            self._compact()

    def _compact(self) -> None:
        key = np.concatenate([self._summed[0], np.frombuffer(self._key, dtype=np.int64)])
        nbytes = np.concatenate([self._summed[1], np.frombuffer(self._bytes, dtype=np.int64)])
        self._key, self._bytes = array("q"), array("q")
        order = np.argsort(key, kind="stable")
        key, nbytes = key[order], nbytes[order]
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.zeros(0, np.int64)
        sums = np.add.reduceat(nbytes, starts) if len(key) else nbytes  # exact integer sums
        self._summed = (key[starts], sums)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (phase key, link) pair loaded so far with its bytes, sorted by phase then link."""
        self._compact()
        key, nbytes = self._summed
        return key >> self.LINK_BITS, key & ((1 << self.LINK_BITS) - 1), nbytes

    def busiest(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per phase with any load, ascending: (phase key, its busiest link, that link's bytes);
        ties go to the link whose (from, to) names sort last."""
        phase, link, nbytes = self.pairs()
        if not len(phase):
            return phase, link, nbytes
        rank = np.empty(len(self.links), dtype=np.int64)
        rank[sorted(range(len(self.links)), key=self.links.__getitem__)] = np.arange(len(self.links))
        starts = np.flatnonzero(np.concatenate([[True], phase[1:] != phase[:-1]]))  # pairs are sorted by phase
        count = np.diff(np.append(starts, len(phase)))
        most = np.maximum.reduceat(nbytes, starts)
        name = np.where(nbytes == np.repeat(most, count), rank[link], -1)  # among the busiest, the last name
        best = np.maximum.reduceat(name, starts)
        by_rank = np.empty(len(self.links), dtype=np.int64)
        by_rank[rank] = np.arange(len(self.links))
        return phase[starts], by_rank[best], most


class CongestionMeter:
    """Accumulates per-phase link loads from the flows as they complete."""

    def __init__(self, fabric: Fabric, workload: Workload, by_endpoints: bool = False) -> None:
        """``by_endpoints``: the scheme's paths vary from packet to packet or message to message,
        so flows count as their endpoints' connection (:class:`~pktsim.analysis.fairness.Routes`)."""
        self.fabric = fabric
        self.workload = workload
        self.loads = LinkLoads()
        self._op, self._step = memoryview(workload.op), memoryview(workload.step)
        self._src, self._dst = memoryview(workload.src), memoryview(workload.dst)
        self._steps = int(workload.step.max()) + 1 if len(workload.step) else 1  # phase key: op * _steps + step
        self.by_endpoints = by_endpoints
        self.routes = Routes()
        self._route_of: dict[tuple, int] = {}  # a path, or (src, dst, spine_bytes) of a spread flow
        self.flow_msg = array("i")
        self.flow_route = array("i")
        self.flow_bytes = array("q")

    def add_flow(self, msg_id: int, nbytes: int, path: list[str] | None, spine_bytes: list[tuple[str, int]]) -> None:
        """A flow of ``msg_id`` (``nbytes``) took ``path`` (nodes, or None when its packets spread)
        and carried ``spine_bytes`` (payload bytes per turning-point switch)."""
        self.flow_msg.append(msg_id)
        self.flow_bytes.append(nbytes)
        key = tuple(path) if path is not None else (self._src[msg_id], self._dst[msg_id], *spine_bytes)
        route = self._route_of.get(key)
        if route is None:
            ends = (self._src[msg_id], self._dst[msg_id]) if self.by_endpoints or path is None else None
            route = self._route_of[key] = self.routes.add(self._route_links(msg_id, path, spine_bytes), ends)
        self.flow_route.append(route)
        loads, phase = self.loads, self._op[msg_id] * self._steps + self._step[msg_id]
        if path is not None:
            nbytes = sum(b for _, b in spine_bytes)
            for uv in zip(path[1:-2], path[2:-1]):
                loads.add(phase, loads.link(uv), nbytes)
            return
        hosts, tor_of = self.workload.hosts, self.fabric.tor_of
        a, b = tor_of[hosts[self._src[msg_id]]], tor_of[hosts[self._dst[msg_id]]]
        for turn, nbytes in spine_bytes:
            switches = self.fabric.via(a, b, turn)
            for uv in zip(switches, switches[1:]):
                loads.add(phase, loads.link(uv), nbytes)

    def add_flows(self, msg_ids: np.ndarray, nbytes: np.ndarray, path_ids: np.ndarray,
                  paths: Sequence[Sequence[str]]) -> None:
        """Single-path flows in columns (in receive order): flow k of ``msg_ids[k]`` carried
        ``nbytes[k]`` along ``paths[path_ids[k]]``. The same state as :meth:`add_flow` for each
        in turn, with all its bytes at its path's turning point (routes interned in the same
        order), except the order of the keys of ``loads``, which nothing depends on
        (:meth:`phases` sorts the phases and breaks ties between links by name)."""
        if not len(msg_ids):
            return
        msg = np.asarray(msg_ids, dtype=np.int64)
        size = np.asarray(nbytes, dtype=np.int64)
        pid = np.asarray(path_ids, dtype=np.int64)
        self.flow_msg.frombytes(msg.astype(np.int32).tobytes())
        self.flow_bytes.frombytes(size.tobytes())
        used, first, inverse = np.unique(pid, return_index=True, return_inverse=True)
        route = np.empty(len(used), dtype=np.int32)
        for u in np.argsort(first).tolist():  # paths in first-seen order, as add_flow numbers new routes
            path = paths[used[u]]
            key = tuple(path)
            r = self._route_of.get(key)
            if r is None:
                m = int(msg[first[u]])
                ends = (self._src[m], self._dst[m]) if self.by_endpoints else None
                r = self._route_of[key] = self.routes.add(self._route_links(m, list(path), []), ends)
            route[u] = r
        self.flow_route.frombytes(route[inverse].tobytes())
        self._add_loads(msg, size, [paths[p] for p in used.tolist()], inverse)

    def _add_loads(self, msg: np.ndarray, size: np.ndarray, paths: list[Sequence[str]], path_of: np.ndarray) -> None:
        """Add flow k's ``size[k]`` bytes to every switch-to-switch link of ``paths[path_of[k]]``
        in the load of its message's phase."""
        w, loads = self.workload, self.loads
        per_path = [[loads.link(uv) for uv in zip(p[1:-2], p[2:-1])] for p in paths]
        counts = np.array([len(links) for links in per_path], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        flat = np.array([link for links in per_path for link in links], dtype=np.int64)
        phase = w.op[msg].astype(np.int64) * self._steps + w.step[msg]
        # (flow, link) pairs: flow k repeated once per switch link of its path
        reps = counts[path_of]
        flow = np.repeat(np.arange(len(msg)), reps)
        link = flat[np.repeat(starts[path_of] - np.cumsum(reps) + reps, reps) + np.arange(len(flow))]
        loads.add_many(phase[flow], link, size[flow])

    def _route_links(self, msg_id: int, path: list[str] | None,
                     spine_bytes: list[tuple[str, int]]) -> dict[int, float]:
        """A flow's directed links (fabric link ids, host links included) -> the fraction of its
        traffic on each: 1 along a path; a spread flow's per-turning-point share of its bytes on
        that turning point's path (shares add up where the paths meet), 1 on its host links."""
        index = self.fabric.link_index
        if path is not None:
            return {index[uv]: 1.0 for uv in zip(path, path[1:])}
        hosts, tor_of = self.workload.hosts, self.fabric.tor_of
        src, dst = hosts[self._src[msg_id]], hosts[self._dst[msg_id]]
        a, b = tor_of[src], tor_of[dst]
        weights = {index[src, a]: 1.0, index[b, dst]: 1.0}
        total = sum(nbytes for _, nbytes in spine_bytes)
        for turn, nbytes in spine_bytes:
            switches = self.fabric.via(a, b, turn)
            for uv in zip(switches, switches[1:]):
                weights[index[uv]] = weights.get(index[uv], 0.0) + nbytes / total
        return weights

    def capacity_gbps(self) -> np.ndarray:
        """Every directed link's rate on the healthy fabric (Gbit/s, by fabric link id)."""
        return np.array([self.fabric.link_gbps(u, v) for u, v in self.fabric.links], dtype=np.float64)

    def fairness(self, groups: PhaseGroups, start_ps: np.ndarray, end_ps: np.ndarray,
                 wanted: list[int]) -> dict[int, dict]:
        """The fair-share columns of the phases ``wanted`` (indices into ``groups``; every phase's
        interval in ``start_ps`` / ``end_ps``, ps) from the flows added so far: see
        :func:`pktsim.analysis.fairness.phase_fairness`."""
        return phase_fairness(
            groups.phase_of_message(), start_ps, end_ps, np.frombuffer(self.flow_msg, dtype=np.int32),
            np.frombuffer(self.flow_route, dtype=np.int32), np.frombuffer(self.flow_bytes, dtype=np.int64),
            self.workload.bytes, self.routes, self.capacity_gbps(), wanted,
        )

    def phases(self, groups: PhaseGroups) -> list[dict]:
        """One record per phase of ``groups`` with cross-ToR traffic, in (op, step) order: the
        busiest link, its bytes and the congestion. ``msg_ids``: the phase's messages (int64 array,
        in msg_id order); ``group``: its index in ``groups``."""
        w = self.workload
        if not len(w.bytes):
            return []
        order, starts = groups.order, groups.bounds[:-1]
        sizes = w.bytes[order]
        largest = np.maximum.reduceat(sizes, starts).tolist()
        total = np.add.reduceat(sizes, starts).tolist()
        bounds = groups.bounds.tolist()
        where = {(o, s): k for k, (o, s) in enumerate(zip(groups.ops, groups.steps))}
        out = []
        phases, links, most = self.loads.busiest()
        for key, link, busiest in zip(phases.tolist(), links.tolist(), most.tolist()):
            op_id, step = divmod(key, self._steps)
            k = where[op_id, step]
            op = w.collectives[op_id]
            u, v = self.loads.links[link]
            out.append({
                "op": op_id, "job": op.job, "collective": op.collective, "iteration": op.iteration,
                "step": step, "messages": bounds[k + 1] - bounds[k], "bytes": total[k], "max_link_bytes": busiest,
                "busiest_link": f"{u}->{v}", "congestion": busiest / largest[k],
                "msg_ids": order[bounds[k]:bounds[k + 1]], "group": k,
            })
        return out
