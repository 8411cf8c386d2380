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
- ``planned`` (after arXiv 2503.05324 and C4, arXiv 2406.04594): in each phase (all messages of one
  step of one collective op), a planner (:mod:`pktsim.planners`, ``lb.planner``) sees the phase's
  cross-leaf flows as (src leaf, dst leaf, bytes) and picks each one's spine; the message stays one
  flow, pinned to that spine by an entropy found the same way as for ``split_minimal``. The NIC
  enforces the plan with the entropy rather than a source route because that is what a RoCE NIC can
  do on a fabric of unmodified ECMP switches. Planner runtime per phase is in ``phase_seconds``.

A phase is one step of one collective op by default (``lb.plan_scope: job``): each job is planned
alone, blind to the others. ``lb.plan_scope: cluster`` plans step k of iteration i of every job
together, as a cluster-wide planner (C4) would for jobs that run in lockstep.
"""

from __future__ import annotations

import time
from collections import defaultdict
from math import gcd

import numpy as np

from pktsim.errors import InputError
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.hashing import connection_entropy
from pktsim.fabric.selectors import LoadBalancing
from pktsim.planning.planners import Flow, PlanContext, plan
from pktsim.scenario import Scenario
from pktsim.units import split_evenly
from pktsim.workload.dag import Message, Workload

Subflow = tuple[int, int]
"""(payload bytes, entropy)."""


class FlowPlanner:
    """The subflows of every message of a workload, decided before the run."""

    def __init__(self, scenario: Scenario, fabric: Fabric, workload: Workload) -> None:
        self.seed = scenario.seed
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self.cluster_scope = scenario.lb.plan_scope == "cluster"
        self._plans: dict[int, list[Subflow]] = {}
        self.phase_seconds: dict[tuple[int, int], float] = {}
        """``planned``: wall seconds the planner took per phase (see :meth:`_phases`)."""
        self.warnings: list[str] = []
        """What a user should know about the plan (one line each)."""
        if self.cluster_scope:
            self._check_lockstep(scenario)
        if self.lb.flow_plan == "split_minimal":
            self._paths = _PathPinner(fabric, scenario.seed)
            self._plan_minimal(workload)
        elif self.lb.flow_plan == "planned":
            self._paths = _PathPinner(fabric, scenario.seed)
            self._plan_phases(workload, scenario)

    def replan(self, fabric: Fabric, msg_ids: list[int], scenario: Scenario, workload: Workload) -> None:
        """Re-plan the messages ``msg_ids`` (those not yet posted) on ``fabric``, a view of the
        surviving fabric after a fault (:meth:`pktsim.fabric.fabric.Fabric.with_next_hops`): their
        phases are planned again over the turning points that are left, and their entropies found
        on the switches' new groups. The planner sees every turning point left; a flow it puts on
        one its leaves cannot reach any more is moved to the least loaded one they can. Other
        schemes have no plan: nothing changes."""
        if self.lb.flow_plan is None or not msg_ids:
            return
        keep = set(msg_ids)
        self._paths = _PathPinner(fabric, scenario.seed)
        for i in keep:
            self._plans.pop(i, None)
        if self.lb.flow_plan == "split_minimal":
            self._plan_minimal(workload, only=keep)
        else:
            self._plan_phases(workload, scenario, only=keep)

    def _check_lockstep(self, scenario: Scenario) -> None:
        """Cluster scope plans step k of every job together, which is exact only when the jobs
        run in lockstep: the same collective over the same bytes, ranks and iterations."""
        shapes = {(j.collective, j.bytes, j.ranks, j.iterations, j.channels, j.slices, j.start_ns)
                  for j in scenario.workload.jobs}
        if len(shapes) > 1:
            self.warnings.append(
                "lb.plan_scope: cluster plans step k of every job together, but the jobs do not run in "
                "lockstep (their collective, size, ranks or start differ): steps planned together may not "
                "overlap in time, and a job's own flows may collide; use plan_scope: job for such mixes")

    @property
    def plan_seconds(self) -> float:
        """Total wall seconds spent in the planner (``planned``; 0 for other schemes). Excludes the
        search for the entropies that pin flows to their spines."""
        return sum(self.phase_seconds.values())

    def packets(self, workload: Workload, payload_bytes: int) -> int:
        """Packets the workload puts on the wire, its messages cut into the planned subflows.

        Vectorised on purpose: a message without a plan is cut by :func:`split_evenly` into
        k = min(subflows, bytes) parts, ``bytes % k`` of them one byte larger than the rest."""
        sizes, counts = np.unique(workload.bytes, return_counts=True)  # few distinct sizes

        def unplanned(nbytes: np.ndarray) -> np.ndarray:
            k = np.minimum(self.lb.subflows, nbytes)
            base, extra = nbytes // k, nbytes % k
            return extra * -(-(base + 1) // payload_bytes) + (k - extra) * -(-base // payload_bytes)

        total = int((unplanned(sizes) * counts).sum())
        for i, pieces in self._plans.items():
            total += sum(-(-size // payload_bytes) for size, _ in pieces) - int(unplanned(workload.bytes[i:i + 1])[0])
        return total

    def subflows(self, m: Message) -> list[Subflow]:
        """(bytes, entropy) of each subflow of ``m``; the bytes sum to ``m.bytes``."""
        plan = self._plans.get(m.msg_id)
        if plan is not None:
            return plan
        return [
            (size, connection_entropy(self.seed, m.job, m.src, m.dst, m.channel, sub))
            for sub, size in enumerate(split_evenly(m.bytes, min(self.lb.subflows, m.bytes)))
        ]

    def _phases(self, workload: Workload, only: set[int] | None = None,
                local: bool = False) -> dict[tuple[int, int], list[Message]]:
        """The cross-rack messages of each phase (``local``: all its messages), the flows a plan sees
        together: keyed by (op, step), or (iteration, step) across all jobs with the cluster scope
        (``only``: of these messages)."""
        tor_of = self._paths.tor_of
        tor = np.array([tor_of[h] for h in workload.hosts], dtype=object)
        cross = tor[workload.src] != tor[workload.dst]  # vectorised on purpose: every message
        if local:
            cross = np.ones(len(cross), dtype=bool)
        if only is not None:
            keep = np.zeros(len(cross), dtype=bool)
            keep[sorted(only)] = True
            cross &= keep
        msgs = workload.messages
        group = workload.iteration if self.cluster_scope else workload.op
        phases: dict[tuple[int, int], list[Message]] = defaultdict(list)
        for i in np.flatnonzero(cross).tolist():
            phases[int(group[i]), int(workload.step[i])].append(msgs[i])
        return phases

    def _plan_minimal(self, workload: Workload, only: set[int] | None = None) -> None:
        for msgs in self._phases(workload, only).values():
            pairs: dict[tuple[str, str], list[Message]] = defaultdict(list)
            for m in msgs:
                pairs[self._paths.tor_of[m.src], self._paths.tor_of[m.dst]].append(m)
            for (a, b), flows in pairs.items():
                spines = self._paths.turning_points(a, b)
                for m, pieces in zip(flows, minimal_split(len(flows), len(spines))):
                    sizes = split_evenly(m.bytes, len(pieces))
                    self._plans[m.msg_id] = [
                        (size, self._paths.entropy_via(m.src, m.dst, spines[spine]))
                        for size, spine in zip(sizes, pieces) if size
                    ]

    def _plan_phases(self, workload: Workload, scenario: Scenario, only: set[int] | None = None) -> None:
        lb = scenario.lb
        seed = lb.planner_seed if lb.planner_seed is not None else scenario.seed
        tor_of = self._paths.tor_of
        fabric = self._paths.fabric
        for key, every in self._phases(workload, only, local=True).items():
            msgs = [m for m in every if tor_of[m.src] != tor_of[m.dst]]
            if not msgs:
                continue
            local = tuple(Flow(tor_of[m.src], tor_of[m.dst], m.bytes, m.src, m.dst, m.job)
                          for m in every if tor_of[m.src] == tor_of[m.dst])
            tors = [(tor_of[m.src], tor_of[m.dst]) for m in msgs]
            reachable = [self._paths.turning_points(a, b) for a, b in tors]
            spines = sorted(set().union(*reachable), key=lambda n: (len(n), n))
            if only is None and any(r != spines for r in reachable):
                raise InputError("scenario", "lb.scheme", "planned routing needs every cross-leaf flow of a "
                                 "phase to have the same turning points (a leaf-spine fabric)")
            flows = [Flow(a, b, m.bytes, m.src, m.dst, m.job) for (a, b), m in zip(tors, msgs)]
            context = PlanContext(len(spines), host_gbps=fabric.host_link_gbps(msgs[0].src),
                                  fabric_gbps=fabric.link_gbps(tors[0][0], spines[0]), local=local, seed=seed,
                                  steps=lb.annealing_steps)
            t0 = time.perf_counter()
            choice = plan(lb.planner, flows, context)
            self.phase_seconds[key] = self.phase_seconds.get(key, 0.0) + time.perf_counter() - t0
            load = dict.fromkeys(spines, 0)
            for m, j in zip(msgs, choice):
                load[spines[j]] += m.bytes
            for m, j, ok in zip(msgs, choice, reachable):
                spine = spines[j]
                if spine not in ok:  # re-planned on a damaged fabric: the least loaded spine it can reach
                    load[spine] -= m.bytes
                    spine = min(ok, key=lambda n: (load[n], spines.index(n)))
                    load[spine] += m.bytes
                self._plans[m.msg_id] = [(m.bytes, self._paths.entropy_via(m.src, m.dst, spine))]


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


class _PathPinner:
    """Finds, for a pair of hosts, an entropy whose ECMP path turns at a given switch."""

    SEARCH = 1 << 16

    def __init__(self, fabric: Fabric, seed: int) -> None:
        self.fabric = fabric
        self.seed = seed
        self.tor_of = fabric.tor_of
        self.turning_points = fabric.turning_points
        self._entropy: dict[tuple[str, str, str], int] = {}

    def entropy_via(self, src: str, dst: str, turn: str) -> int:
        """The first entropy, in a seeded order, whose path from ``src`` to ``dst`` turns at ``turn``."""
        key = (src, dst, turn)
        if key not in self._entropy:
            tier = self.fabric.tier
            start = connection_entropy(self.seed, "pin", src, dst, 0, 0)
            for i in range(self.SEARCH):
                e = (start + i) & 0xFFFF
                path = self.fabric.path(src, dst, e)
                if turn in path and tier[turn] == max(tier[n] for n in path[1:-1]):
                    self._entropy[key] = e
                    break
            else:
                raise RuntimeError(f"no entropy routes {src} -> {dst} through {turn}")
        return self._entropy[key]
