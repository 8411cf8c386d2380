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
  cross-leaf flows as (src leaf, dst leaf, bytes, hosts, job) and picks each one's spine; the
  message stays one flow (``lb.subflows`` equal ones if more than 1), pinned to that spine by an
  entropy found the same way as for ``split_minimal``. The NIC
  enforces the plan with the entropy rather than a source route because that is what a RoCE NIC can
  do on a fabric of unmodified ECMP switches. Planner runtime per phase is in ``phase_seconds``.

A phase is one step of one collective op by default (``lb.plan_scope: job``): each job is planned
alone, blind to the others. ``lb.plan_scope: cluster`` plans step k of iteration i of every job
together, as a cluster-wide planner (C4) would, but only among jobs that run in lockstep (the same
collective, bytes, ranks, iterations, channels, slices, start and compute gap): a job with no such
partner is planned per job (and a warning names it), since steps of jobs out of lockstep need not
overlap in time. ``planned`` with ``lb.subflows`` k > 1 cuts each message into k equal subflows
(:func:`~pktsim.units.split_evenly`), each on its own connection and each a flow the planner places.

``lb.plan_scope: connection`` (``planned`` only; :class:`ConnectionPlan`) plans persistent
connections, not steps, as C4 and arXiv 2503.05324's controller do: a connection is (job, src
host, dst host, channel, subflow), the queue pair, and keeps its spine from one plan to the next.
The first plan, at time 0, places the connections of every job's first phase, weighted by their
bytes there, all jobs together. Then every ``lb.replan_ns`` (times R, 2R, ...) the planner
re-plans every *live* connection together: those on which a message was posted in the window
[t - R, t) before the re-plan at t, weighted by the bytes posted on them in it; a connection not
live keeps its spine, and one never planned goes by its ECMP hash (its usual entropy) until a
re-plan sees it, as under a periodic controller. Messages posted at or after t use the new
entropies (a new queue pair in the packet backend). A re-plan at t reads only posts before t and
changes only posts from t on, so the backends run it at their first post (or routing change) at
or after t: the same plan as a timer at t, without a timer that would outlive the run. A fault's
re-plan (``routing.replan_ns`` after it) re-plans every connection planned so far, with the bytes
it was last planned with, on the surviving fabric; the periodic re-plans after it use that fabric.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from math import gcd
from typing import TYPE_CHECKING, Callable

import numpy as np

from pktsim.arrays import unique_first
from pktsim.errors import InputError
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.hashing import connection_entropy
from pktsim.fabric.selectors import LoadBalancing
from pktsim.planning.planners import Flow, PlanContext, plan
from pktsim.scenario import Scenario
from pktsim.units import ns_to_ps, split_evenly
from pktsim.workload.dag import Message, Workload

if TYPE_CHECKING:
    from pktsim.fabric.faults import FaultSchedule

Subflow = tuple[int, int]
"""(payload bytes, entropy)."""

Place = Callable[[tuple, list[Flow], tuple[Flow, ...], bool], list[int]]
"""``place(key, flows, local, check)``: the entropy pinning each cross-leaf flow to the spine the
planner picks for it (see :meth:`FlowPlanner._place`)."""


class FlowPlanner:
    """The subflows of every message of a workload, decided before the run (and, with faults or
    the connection scope, changed during it: see :meth:`for_run`)."""

    def __init__(self, scenario: Scenario, fabric: Fabric, workload: Workload) -> None:
        self.seed = scenario.seed
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self._spec = scenario.lb
        self.pieces = self.lb.subflows
        """Subflows per message (``split`` and ``planned``: ``lb.subflows``; 1 otherwise)."""
        self._plans: dict[int, list[Subflow]] = {}
        self.phase_seconds: dict[tuple, float] = {}
        """``planned``: wall seconds the planner took per phase (see :meth:`_phases`), or per plan
        of the connection scope (``("connections", k)``: its k-th plan, 0 the first)."""
        self._warnings: list[str] = []
        self.solver_gaps: dict[tuple, float] = {}
        """Exact planners (``ilp``): the relative MIP gap of each plan the solver left unproven
        (stopped at ``lb.time_limit_s``), keyed as :attr:`phase_seconds`."""
        self._groups = self._plan_groups(scenario)
        self.connections: ConnectionPlan | None = None
        """``plan_scope: connection``: the connections' plan."""
        self.next_replan_ps: float = float("inf")
        """When the next periodic re-plan is due (ps; inf: never): a backend calls
        :meth:`replan_due` at its first post at or after it."""
        if self.lb.flow_plan == "split_minimal":
            self._paths = _PathPinner(fabric, scenario.seed)
            self._plan_minimal(workload)
        elif self.lb.flow_plan == "planned":
            self._paths = _PathPinner(fabric, scenario.seed)
            if scenario.lb.plan_scope == "connection":
                self.connections = ConnectionPlan(workload, fabric.tor_of, self.pieces,
                                                  ns_to_ps(scenario.lb.replan_ns), self.seed)
                self.connections.first_plan(workload, self._place)
                self.next_replan_ps = self.connections.next_ps
            else:
                self._plan_phases(workload)

    def for_run(self, fabric: Fabric, faults: FaultSchedule | None) -> FlowPlanner:
        """The plan one run uses: this one when nothing changes it during the run, else a copy of
        it (sharing ``fabric`` and what never changes) that the run's re-plans change, so this one
        stays as prepared for any other run of the experiment."""
        if self.connections is None and not (faults and any(rc.replan for rc in faults.route_changes)):
            return self
        memo: dict = {id(fabric): fabric}
        if self.connections is not None:
            memo[id(self.connections.index)] = self.connections.index
        return copy.deepcopy(self, memo)

    def replan_due(self, now_ps: float, posted_ps) -> None:
        """Run the periodic re-plans due by ``now_ps`` (connection scope), from ``posted_ps``: per
        message its post time (ps; negative: not posted), e.g. :attr:`DagExecution.ready_ps`."""
        if self.connections is not None:
            self.connections.catch_up(now_ps, np.frombuffer(posted_ps, dtype=np.float64), self._place)
            self.next_replan_ps = self.connections.next_ps

    def on_route_change(self, fabric: Fabric, posted_ps, now_ps: float, scenario: Scenario,
                        workload: Workload) -> None:
        """A fault's re-plan at ``now_ps`` on ``fabric``, the surviving fabric's view: the periodic
        re-plans due before it first (on the fabric they saw), then :meth:`replan` of the messages
        not yet posted (``posted_ps`` as for :meth:`replan_due`)."""
        self.replan_due(now_ps, posted_ps)
        unposted = np.flatnonzero(np.frombuffer(posted_ps, dtype=np.float64) < 0).tolist()
        self.replan(fabric, unposted, scenario, workload)

    def replan(self, fabric: Fabric, msg_ids: list[int], scenario: Scenario, workload: Workload) -> None:
        """Re-plan the messages ``msg_ids`` (those not yet posted) on ``fabric``, a view of the
        surviving fabric after a fault (:meth:`pktsim.fabric.fabric.Fabric.with_next_hops`): their
        phases are planned again over the turning points that are left, and their entropies found
        on the switches' new groups. The planner sees every turning point left; a flow it puts on
        one its leaves cannot reach any more is moved to the least loaded one they can. With the
        connection scope every connection planned so far is re-planned instead (whatever
        ``msg_ids``). Other schemes have no plan: nothing changes."""
        if self.lb.flow_plan is None:
            return
        self._paths = _PathPinner(fabric, scenario.seed)
        if self.connections is not None:
            self.connections.replan_known(self._place)
            return
        if not msg_ids:
            return
        keep = set(msg_ids)
        for i in keep:
            self._plans.pop(i, None)
        if self.lb.flow_plan == "split_minimal":
            self._plan_minimal(workload, only=keep)
        else:
            self._plan_phases(workload, only=keep)

    def _plan_groups(self, scenario: Scenario) -> list[int]:
        """Per job (scenario order), the group it is planned with: itself with the job scope; with
        the cluster scope, the first job of those that run in lockstep with it (the same
        collective, bytes, ranks, iterations, channels, slices, start, and compute gap when it
        runs more than one iteration). A warning names the jobs planned alone."""
        jobs = scenario.workload.jobs
        if scenario.lb.plan_scope != "cluster":
            return list(range(len(jobs)))
        first: dict[tuple, int] = {}
        groups = []
        for i, j in enumerate(jobs):
            shape = (j.collective, j.bytes, j.ranks, j.iterations, j.channels, j.slices, j.start_ns,
                     j.compute_gap_ns if j.iterations > 1 else 0)
            groups.append(first.setdefault(shape, i))
        alone = [jobs[i].name for i, g in enumerate(groups) if groups.count(g) == 1]
        if alone and len(jobs) > 1:
            self._warnings.append(
                f"lb.plan_scope: cluster plans step k of jobs in lockstep together; {', '.join(alone)} "
                f"{'runs' if len(alone) == 1 else 'run'} in lockstep with no other job (collective, size, ranks, "
                "iterations, channels, slices, start or compute gap differ) and "
                f"{'is' if len(alone) == 1 else 'are'} planned alone")
        return groups

    @property
    def warnings(self) -> list[str]:
        """What a user should know about the plan (one line each)."""
        if not self.solver_gaps:
            return list(self._warnings)
        gap = max(self.solver_gaps.values())
        return [*self._warnings, f"lb.planner {self._spec.planner}: {len(self.solver_gaps)} of "
                f"{len(self.phase_seconds)} plans not proven optimal within lb.time_limit_s={self._spec.time_limit_s:g} s "
                f"(largest MIP gap {gap:.1%}); the best plans found were used"]

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
            k = np.minimum(self.pieces, nbytes)
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
        sizes = split_evenly(m.bytes, min(self.pieces, m.bytes))
        if self.connections is not None:
            return self.connections.subflows(m, sizes)
        return [(size, connection_entropy(self.seed, m.job, m.src, m.dst, m.channel, sub))
                for sub, size in enumerate(sizes)]

    def subflow_table(self, workload: Workload) -> tuple[np.ndarray, list[list[Subflow]]]:
        """Every message's subflows at once, for a run whose plan never changes (not the connection
        scope): (per message the index of its subflow list, the distinct lists). Vectorised on
        purpose: a message without a plan of its own is cut by its (job, src, dst, channel, bytes)
        alone, so those are looked up once per distinct key. Messages sharing a list share their
        connection's (job, src, dst, channel) too."""
        if self.connections is not None:
            raise ValueError("the connection scope's subflows change during the run")
        w = workload
        planned = np.zeros(len(w.bytes), dtype=bool)
        planned[list(self._plans)] = True
        sizes = np.searchsorted(np.unique(w.bytes), w.bytes)
        columns = (w.job, w.src, w.dst, w.channel, sizes)
        plain = np.flatnonzero(~planned)
        widths = [int(c.max(initial=0)).bit_length() for c in columns]
        if sum(widths) <= 62:  # the key's columns packed into one integer
            key = np.zeros(len(w.bytes), dtype=np.int64)
            for column, bits in zip(columns, widths):
                key = (key << bits) | column.astype(np.int64)
            _, first, inverse = unique_first(key[plain])
        else:  # too wide to pack: compare the columns themselves
            key = np.stack(columns, axis=1).astype(np.int64)[plain]
            _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        msgs = w.messages
        lists = [self.subflows(msgs[int(plain[i])]) for i in first.tolist()]
        pattern = np.empty(len(w.bytes), dtype=np.int64)
        pattern[plain] = inverse.reshape(-1)
        index: dict[tuple, int] = {}  # a planned message's list, with its connection
        for i in np.flatnonzero(planned).tolist():
            conn = (int(w.job[i]), int(w.src[i]), int(w.dst[i]), int(w.channel[i]), *self._plans[i])
            k = index.get(conn)
            if k is None:
                k = index[conn] = len(lists)
                lists.append(list(self._plans[i]))
            pattern[i] = k
        return pattern, lists

    def _phases(self, workload: Workload, only: set[int] | None = None,
                local: bool = False) -> dict[tuple[int, int, int], list[Message]]:
        """The cross-rack messages of each phase (``local``: all its messages), the flows a plan sees
        together: keyed by (group, iteration, step), the group of the message's job (see
        :meth:`_plan_groups`: the job itself with the job scope, so a phase is (op, step))
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
        group = np.array(self._groups, dtype=np.int64)[workload.job]
        phases: dict[tuple[int, int, int], list[Message]] = defaultdict(list)
        for i in np.flatnonzero(cross).tolist():
            phases[int(group[i]), int(workload.iteration[i]), int(workload.step[i])].append(msgs[i])
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

    def _plan_phases(self, workload: Workload, only: set[int] | None = None) -> None:
        """``planned`` with the job or cluster scope: each phase's cross-leaf (sub)flows placed
        together, its same-leaf ones as the context's ``local`` flows."""
        tor_of = self._paths.tor_of
        for key, every in self._phases(workload, only, local=True).items():
            flows: list[Flow] = []
            local: list[Flow] = []
            owners: list[tuple[int, int]] = []  # per cross-leaf flow: (message, its size)
            for m in every:
                a, b = tor_of[m.src], tor_of[m.dst]
                for size in split_evenly(m.bytes, min(self.pieces, m.bytes)):
                    (flows if a != b else local).append(Flow(a, b, size, m.src, m.dst, m.job))
                    if a != b:
                        owners.append((m.msg_id, size))
            if not flows:
                continue
            for i in {i for i, _ in owners}:
                self._plans[i] = []
            for (i, size), entropy in zip(owners, self._place(key, flows, tuple(local), only is None)):
                self._plans[i].append((size, entropy))

    def _place(self, key: tuple, flows: list[Flow], local: tuple[Flow, ...], check: bool) -> list[int]:
        """The entropy pinning each of ``flows`` (cross-leaf, with their hosts) to the spine the
        planner (``lb.planner``) picks for it, ``local`` the same-leaf flows beside them; its time
        is added to ``phase_seconds[key]``. ``check``: refuse flows whose turning points differ
        (not a leaf-spine); otherwise (a damaged fabric) a flow put on a spine its leaves cannot
        reach any more is moved to the least loaded one they can."""
        lb = self._spec
        fabric = self._paths.fabric
        reachable = [self._paths.turning_points(f.src, f.dst) for f in flows]
        spines = sorted(set().union(*reachable), key=lambda n: (len(n), n))
        if check and any(r != spines for r in reachable):
            raise InputError("scenario", "lb.scheme", "planned routing needs every cross-leaf flow of a "
                             "phase to have the same turning points (a leaf-spine fabric)")
        seed = lb.planner_seed if lb.planner_seed is not None else self.seed
        context = PlanContext(len(spines), host_gbps=fabric.host_link_gbps(flows[0].src_host),
                              fabric_gbps=fabric.link_gbps(flows[0].src, spines[0]), local=local, seed=seed,
                              steps=lb.annealing_steps, time_limit_s=lb.time_limit_s)
        t0 = time.perf_counter()
        choice = plan(lb.planner, flows, context)
        self.phase_seconds[key] = self.phase_seconds.get(key, 0.0) + time.perf_counter() - t0
        if context.stats.get("mip_gap"):
            self.solver_gaps[key] = context.stats["mip_gap"]
        load = dict.fromkeys(spines, 0)
        for f, j in zip(flows, choice):
            load[spines[j]] += f.bytes
        out = []
        for f, j, ok in zip(flows, choice, reachable):
            spine = spines[j]
            if spine not in ok:  # re-planned on a damaged fabric: the least loaded spine it can reach
                load[spine] -= f.bytes
                spine = min(ok, key=lambda n: (load[n], spines.index(n)))
                load[spine] += f.bytes
            out.append(self._paths.entropy_via(f.src_host, f.dst_host, spine))
        return out


class ConnectionIndex:
    """Every connection (job, src host, dst host, channel) of a workload, numbered in that order
    of the workload's codes, and each message's. Never changes: copies of a plan share it."""

    def __init__(self, workload: Workload, tor_of: dict[str, str]) -> None:
        w = workload
        hosts = np.int64(len(w.hosts))
        channels = np.int64(int(w.channel.max()) + 1 if len(w.channel) else 1)
        key = ((w.job.astype(np.int64) * hosts + w.src) * hosts + w.dst) * channels + w.channel
        _, first, self.of = np.unique(key, return_index=True, return_inverse=True)
        self.of = self.of.astype(np.int64).ravel()
        """Per message, its connection."""
        self.bytes = w.bytes
        jobs, src, dst = w.job[first].tolist(), w.src[first].tolist(), w.dst[first].tolist()
        self.ends = [(w.job_names[j], w.hosts[a], w.hosts[b], tor_of[w.hosts[a]], tor_of[w.hosts[b]])
                     for j, a, b in zip(jobs, src, dst)]
        """Per connection: (job, src host, dst host, src ToR, dst ToR)."""


class ConnectionPlan:
    """``lb.plan_scope: connection``: the spine of every planned connection and subflow, the first
    plan and the periodic and fault re-plans (see the module docstring). Entropies are per
    (connection, subflow)."""

    def __init__(self, workload: Workload, tor_of: dict[str, str], pieces: int, period_ps: int, seed: int) -> None:
        self.index = ConnectionIndex(workload, tor_of)
        self.pieces = pieces
        self.period_ps = period_ps
        self.seed = seed
        self.next_ps = period_ps
        """When the next periodic re-plan is due (ps)."""
        self.plans = 0
        """Plans made so far (the first included)."""
        self.entropy: dict[tuple[int, int], int] = {}
        """(connection, subflow) -> the entropy of its planned spine."""
        self.known: dict[tuple[int, int], int] = {}
        """(connection, subflow) -> the bytes it was last planned with (same-leaf ones too: the
        planner's context)."""
        self._hashed: dict[tuple[int, int], int] = {}

    def subflows(self, m: Message, sizes: list[int]) -> list[Subflow]:
        """``m`` cut into ``sizes``, each subflow on its connection's planned entropy (its ECMP
        entropy when never planned)."""
        c = int(self.index.of[m.msg_id])
        out = []
        for sub, size in enumerate(sizes):
            e = self.entropy.get((c, sub))
            if e is None:
                e = self._hashed.get((c, sub))
                if e is None:
                    e = self._hashed[c, sub] = connection_entropy(self.seed, m.job, m.src, m.dst, m.channel, sub)
            out.append((size, e))
        return out

    def first_plan(self, workload: Workload, place: Place) -> None:
        """At time 0: every job's first phase (the first step of its first op), all jobs together."""
        w = workload
        first = np.zeros(len(w.bytes), dtype=bool)
        for j in np.unique(w.job).tolist():
            op = int(w.op[w.job == j].min())
            of_op = w.op == op
            first |= of_op & (w.step == int(w.step[of_op].min()))
        self._plan(self._weights(np.flatnonzero(first)), place, check=True)

    def catch_up(self, now_ps: float, posted_ps: np.ndarray, place: Place) -> None:
        """The periodic re-plans due by ``now_ps``. Called at the first post (or routing change) at
        or after the next due time t, so every post before t is known and none after it: the
        re-plan at t is the one a timer would make; later ones due by now saw no post (their
        windows lie between t and now) and change nothing."""
        t = self.next_ps
        if t > now_ps:
            return
        live = self._weights(np.flatnonzero((posted_ps >= t - self.period_ps) & (posted_ps < t)))
        if live:
            self._plan(live, place, check=False)
        self.next_ps = t + self.period_ps * (int((now_ps - t) // self.period_ps) + 1)

    def replan_known(self, place: Place) -> None:
        """A fault's re-plan: every connection planned so far, with the bytes it was last planned
        with (``place`` on the surviving fabric)."""
        if self.known:
            self._plan(dict(self.known), place, check=False)

    def _weights(self, msg_ids: np.ndarray) -> dict[tuple[int, int], int]:
        """Bytes per (connection, subflow) of the messages ``msg_ids``, each cut into
        min(pieces, bytes) subflows as :func:`split_evenly` cuts it (exact integers)."""
        conn = self.index.of[msg_ids]
        nbytes = self.index.bytes[msg_ids].astype(np.int64)
        ids, inverse = np.unique(conn, return_inverse=True)
        k = np.minimum(self.pieces, nbytes)
        base, extra = nbytes // k, nbytes % k
        out: dict[tuple[int, int], int] = {}
        for sub in range(min(self.pieces, int(nbytes.max(initial=0)))):
            size = np.where(sub < k, base + (sub < extra), 0)
            total = np.zeros(len(ids), dtype=np.int64)
            np.add.at(total, inverse.ravel(), size)
            for c, b in zip(ids.tolist(), total.tolist()):
                if b:
                    out[c, sub] = b
        return out

    def _plan(self, weights: dict[tuple[int, int], int], place: Place, check: bool) -> None:
        """Place the (connection, subflow)s of ``weights`` (bytes each) together."""
        flows: list[Flow] = []
        local: list[Flow] = []
        keys = []
        for key in sorted(weights):
            job, src, dst, a, b = self.index.ends[key[0]]
            flow = Flow(a, b, weights[key], src, dst, job)
            if a == b:
                local.append(flow)
            else:
                flows.append(flow)
                keys.append(key)
        if flows:
            for key, e in zip(keys, place(("connections", self.plans), flows, tuple(local), check)):
                self.entropy[key] = e
        self.known.update(weights)
        self.plans += 1


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
