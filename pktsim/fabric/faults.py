"""Faults are events on the fabric: a link goes down or up, its rate changes, it starts losing
packets, a GPU slows down. Each happens at a time; the switches and the planner react after their
own delays, as real ones do (``routing`` in the scenario):

- ``detect_ns`` after a link goes down (or up), the switches at its two ends stop (or resume)
  choosing it: the salted hash spreads over the remaining next hops;
- ``converge_ns`` after, every switch also avoids next hops whose only way to a destination
  crossed it (a spine that lost its link to leaf j is no longer chosen for traffic to leaf j);
- ``replan_ns`` after, a central planner has re-planned the messages not yet sent.

How a load-balancing scheme's traffic follows is its :attr:`~pktsim.fabric.selectors.LoadBalancing.reroute`:
``switches`` (ECMP, split, spray, REPS: the switches' tables change after detection and
convergence), ``local`` (adaptive, flowlet: the switch at a dead port's end sees it at once;
the others converge as above), ``planner`` (planned, split_minimal: pinned paths are kept, and
packets pinned across a dead link are lost, until the planner re-plans; then every switch follows
the surviving fabric).

:class:`FaultSchedule` resolves a scenario's faults against the fabric (one-line errors naming
the field), and derives the timeline every backend follows: the link changes (:attr:`link_events`)
and the routing changes (:attr:`route_changes`, each the whole fabric's equal-cost groups from
then on). :func:`draw_faults` turns ``faults: {random: ...}`` into an explicit list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from pktsim.errors import InputError
from pktsim.scenario.loading import closest_name
from pktsim.traces import FaultRow
from pktsim.units import ns_to_ps, ps_to_ns

if TYPE_CHECKING:
    from pktsim.fabric.fabric import Fabric
    from pktsim.scenario import Scenario
    from pktsim.workload.dag import Workload

LINK_KINDS = ("link_down", "link_up", "link_degrade", "link_loss")
DROPPING_KINDS = ("link_down", "link_loss")
"""Faults that lose packets: only a transport that resends can survive them."""
REROUTES = ("switches", "local", "planner")
"""How a scheme's traffic reacts to a link going down (see the module's docstring)."""

NextHops = dict[str, dict[str, list[str]]]
"""``next_hops[switch][tor]``: the neighbours a switch may choose toward a ToR."""


@dataclass(frozen=True)
class Fault:
    """One fault of the scenario, resolved against the fabric. Times in ps."""

    index: int
    """Its position in ``scenario.faults`` (the ``faults`` table's ``fault_id``)."""
    kind: str
    at_ps: int
    target: str
    """``leaf0-spine1`` (both directions), ``leaf0->spine1`` (one), or a host name."""
    links: tuple[tuple[str, str], ...] = ()
    """The directed links it acts on (none for a straggler)."""
    value: float | None = None
    """``link_degrade``: the new rate (Gbit/s); ``link_loss``: the drop rate; ``straggler``: the
    compute factor."""
    host: str | None = None


@dataclass(frozen=True)
class RouteChange:
    """From ``at_ps`` on, every switch chooses among ``next_hops`` (``replan``: and the planner
    re-plans the messages not yet posted on the same view of the fabric)."""

    at_ps: int
    next_hops: NextHops
    replan: bool = False


@dataclass
class Reaction:
    """When the fabric reacted to one fault (ps; None: it does not react to this kind)."""

    detected_ps: int | None = None
    converged_ps: int | None = None
    replanned_ps: int | None = None


@dataclass
class FaultSchedule:
    """A scenario's faults against one fabric, and the timeline of the fabric's reactions under one
    load-balancing scheme's :attr:`~pktsim.fabric.selectors.LoadBalancing.reroute`."""

    faults: list[Fault]
    reroute: str
    route_changes: list[RouteChange] = field(default_factory=list)
    reactions: list[Reaction] = field(default_factory=list)

    @property
    def link_events(self) -> list[Fault]:
        """The faults that change a link, in time order (ties: scenario order)."""
        return sorted((f for f in self.faults if f.kind in LINK_KINDS), key=lambda f: (f.at_ps, f.index))

    @property
    def stragglers(self) -> list[Fault]:
        return [f for f in self.faults if f.kind == "straggler"]

    def __bool__(self) -> bool:
        return bool(self.faults)

    def compute_factor(self, host: str, t_ps: float) -> float:
        """How much longer ``host``'s compute gaps that start at ``t_ps`` last (1: not slowed)."""
        factor = 1.0
        for f in self.faults:
            if f.kind == "straggler" and f.host == host and f.at_ps <= t_ps:
                factor *= f.value
        return factor

    def rows(self) -> list[FaultRow]:
        """The ``faults`` table: every fault with the fabric's reactions (ns)."""
        out = []
        for f in self.faults:
            r = self.reactions[f.index]
            out.append(FaultRow(
                fault_id=f.index, at_ns=ps_to_ns(f.at_ps), kind=f.kind, target=f.target, value=f.value,
                detected_ns=_ns(r.detected_ps), converged_ns=_ns(r.converged_ps), replanned_ns=_ns(r.replanned_ps),
            ))
        return out

    def drops_packets(self) -> Fault | None:
        """The first fault that loses packets, if any."""
        return next((f for f in self.faults if f.kind in DROPPING_KINDS), None)


def _ns(t_ps: int | None) -> int | None:
    return None if t_ps is None else ps_to_ns(t_ps)


def fault_schedule(scenario: Scenario, fabric: Fabric, workload: Workload, reroute: str) -> FaultSchedule:
    """Resolve ``scenario.faults`` (an explicit list; see :func:`draw_faults` for a generator)
    against ``fabric`` and derive the routing timeline. Raises :class:`InputError` naming the
    field (``faults[2].link``) for links or hosts that do not exist, a link that goes up without
    having gone down (or down twice), faults that leave two ToRs without a path for good, and
    stragglers that would change nothing."""
    specs = scenario.faults
    if not isinstance(specs, list):
        raise InputError("scenario", "faults", "the random fault generator must be drawn before the run "
                         "(pktsim.fabric.faults.draw_faults)")
    faults = [_resolve(i, spec, fabric, scenario, workload) for i, spec in enumerate(specs)]
    schedule = FaultSchedule(faults, reroute)
    _check_link_states(schedule, fabric)
    _route(schedule, fabric, scenario.routing)
    return schedule


# -- resolving each fault ------------------------------------------------------------------------


def _resolve(i: int, spec, fabric: Fabric, scenario: Scenario, workload: Workload) -> Fault:
    at_ps = ns_to_ps(spec.at_ns)
    if spec.kind == "straggler":
        return _straggler(i, spec, at_ps, fabric, scenario, workload)
    a, b = spec.link
    where = f"faults[{i}].link"
    for node in (a, b):
        if node not in fabric.tier:
            raise InputError("scenario", where, f"no node named {node!r} in the topology{_near(node, fabric.tier)}")
    if not fabric.graph.has_edge(a, b):
        raise InputError("scenario", where, f"{a} and {b} are not linked")
    if spec.oneway:
        links, target = ((a, b),), f"{a}->{b}"
    elif spec.direction == "both":
        links, target = ((a, b), (b, a)), f"{a}-{b}"
    else:
        up = (a, b) if fabric.tier[b] > fabric.tier[a] else (b, a)
        links = (up,) if spec.direction == "up" else ((up[1], up[0]),)
        target = f"{links[0][0]}->{links[0][1]}"
    value = spec.gbps if spec.kind == "link_degrade" else spec.drop_rate if spec.kind == "link_loss" else None
    return Fault(i, spec.kind, at_ps, target, links, value)


def _straggler(i: int, spec, at_ps: int, fabric: Fabric, scenario: Scenario, workload: Workload) -> Fault:
    where = f"faults[{i}].host"
    if spec.host not in fabric.host_index:
        raise InputError("scenario", where, f"no host named {spec.host!r} in the topology "
                         f"(h0 .. h{len(fabric.hosts) - 1})")
    import numpy as np  # imported when used, like the workload's columns it reads

    code = workload.host_codes([spec.host])[0]
    jobs = {workload.job_names[j] for j in np.unique(workload.job[workload.src == code]).tolist()}
    if not jobs:
        raise InputError("scenario", where, f"{spec.host} runs no rank of the workload: a straggler there "
                         "would change nothing")
    for j, job in enumerate(scenario.workload.jobs):
        if job.name in jobs and job.compute_gap_ns == 0:
            raise InputError("scenario", where, f"{spec.host} runs job {job.name}, which has no compute gaps "
                             f"(workload.jobs[{j}].compute_gap_ns is 0): a straggler would change nothing")
    return Fault(i, "straggler", at_ps, spec.host, value=spec.compute_factor, host=spec.host)


def _near(name: str, names: Iterable[str]) -> str:
    close = closest_name(name, list(names))
    return f" (did you mean {close!r}?)" if close else ""


def _check_link_states(schedule: FaultSchedule, fabric: Fabric) -> None:
    """Links go down before they go up, once at a time; no fault may leave two ToRs (hence two
    hosts) without any path for the rest of the run."""
    down: dict[tuple[str, str], int] = {}
    for f in schedule.link_events:
        if f.kind == "link_down":
            for link in f.links:
                if link in down:
                    raise InputError("scenario", f"faults[{f.index}].kind", f"{link[0]}->{link[1]} is already "
                                     f"down (faults[{down[link]}])")
                down[link] = f.index
        elif f.kind == "link_up":
            for link in f.links:
                if link not in down:
                    raise InputError("scenario", f"faults[{f.index}].kind", f"{link[0]}->{link[1]} goes up "
                                     "but no earlier fault took it down")
                del down[link]
    if not down:
        return
    dead = set(down)
    for a, b in sorted(dead):  # a dead host link isolates its host
        host = a if not fabric.is_switch(a) else b if not fabric.is_switch(b) else None
        if host is not None:
            raise InputError("scenario", f"faults[{down[a, b]}].link", f"{a}->{b} stays down to the end: "
                             f"{host} could never send or receive again (add a link_up)")
    tors = sorted(set(fabric.tor_of.values()), key=fabric.node_order.__getitem__)
    for t in tors:
        reach = _reachable(fabric.next_hops, t, dead)
        for s in tors:
            if s != t and not reach(s):
                culprit = min(down.values())
                raise InputError("scenario", f"faults[{culprit}].link", f"the links down to the end of the run "
                                 f"leave no path from {s} to {t}")


# -- the routing timeline ------------------------------------------------------------------------


def _reachable(next_hops: NextHops, tor: str, dead: set[tuple[str, str]]):
    """``reach(node)``: True when ``node`` can still get a packet to ``tor`` down its equal-cost
    groups without crossing a link in ``dead``."""
    memo: dict[str, bool] = {tor: True}

    def reach(node: str) -> bool:
        if node not in memo:
            memo[node] = False  # the groups lead toward the ToR: no cycles, but be safe
            memo[node] = any((node, n) not in dead and reach(n) for n in next_hops[node].get(tor, ()))
        return memo[node]
    return reach


def surviving_next_hops(fabric: Fabric, local: set[tuple[str, str]], converged: set[tuple[str, str]]) -> NextHops:
    """Every switch's equal-cost groups when the switches at the ends of the links in ``local``
    know they are dead, and every switch knows about those in ``converged``. A group whose every
    member is ruled out is kept whole: packets sent there are lost at the dead link (a black hole
    until the fabric converges)."""
    healthy = fabric.next_hops
    if not local and not converged:
        return healthy
    out: NextHops = {}
    reach_of = {}
    for s, groups in healthy.items():
        row: dict[str, list[str]] = {}
        for tor, group in groups.items():
            if tor not in reach_of:
                reach_of[tor] = _reachable(healthy, tor, converged)
            reach = reach_of[tor]
            kept = [n for n in group if (s, n) not in local and (s, n) not in converged and reach(n)]
            row[tor] = kept if kept else group
        out[s] = row
    return out


def _flaps(schedule: FaultSchedule, detect_ps: int) -> set[int]:
    """The link_down faults whose link came back up before the down was detected, and those
    link_up faults: the fabric never reacts to either (a flap shorter than detection)."""
    pending: dict[tuple, Fault] = {}
    out: set[int] = set()
    for f in schedule.link_events:
        if f.kind == "link_down":
            pending[f.links] = f
        elif f.kind == "link_up" and f.links in pending:
            down = pending.pop(f.links)
            if f.at_ps < down.at_ps + detect_ps:
                out |= {down.index, f.index}
    return out


def _route(schedule: FaultSchedule, fabric: Fabric, routing) -> None:
    """Fill ``schedule.route_changes`` and ``schedule.reactions`` (see the module's docstring)."""
    detect, converge, replan = (ns_to_ps(routing.detect_ns), ns_to_ps(routing.converge_ns),
                                ns_to_ps(routing.replan_ns))
    reroute = schedule.reroute
    if reroute == "switches":
        local_delay, global_delay = detect, converge
    elif reroute == "local":
        local_delay, global_delay = 0, converge
    else:
        local_delay = global_delay = replan
    # (time, order, fault index, which set, add?, links)
    steps: list[tuple[int, int, int, str, bool, tuple]] = []
    schedule.reactions = [Reaction() for _ in schedule.faults]
    unseen = _flaps(schedule, detect if reroute == "planner" else local_delay)
    for f in schedule.faults:
        if f.kind not in ("link_down", "link_up") or f.index in unseen:
            continue
        add = f.kind == "link_down"
        steps.append((f.at_ps + local_delay, 0, f.index, "local", add, f.links))
        steps.append((f.at_ps + global_delay, 1, f.index, "converged", add, f.links))
        r = schedule.reactions[f.index]
        if reroute == "planner":
            r.detected_ps, r.replanned_ps = f.at_ps + detect, f.at_ps + replan
        else:
            r.detected_ps, r.converged_ps = f.at_ps + local_delay, f.at_ps + global_delay
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    sets: dict[str, set[tuple[str, str]]] = {"local": set(), "converged": set()}
    i = 0
    while i < len(steps):
        t = steps[i][0]
        while i < len(steps) and steps[i][0] == t:
            _, _, _, which, add, links = steps[i]
            (sets[which].update if add else sets[which].difference_update)(links)
            i += 1
        view = surviving_next_hops(fabric, set(sets["local"]), set(sets["converged"]))
        schedule.route_changes.append(RouteChange(t, view, replan=reroute == "planner"))


# -- the generator ---------------------------------------------------------------------------------


def draw_faults(spec, fabric: Fabric, workload: Workload, makespan_ns: int | None, seed: int) -> list[dict]:
    """``faults: {random: ...}`` as an explicit list of fault mappings (what a scenario file would
    say), drawn from ``spec.seed`` (``seed``, the scenario's, when it has none): distinct links of ``spec.tier`` (or hosts of the workload for
    stragglers), times uniform in ``spec.at`` (fractions of ``makespan_ns``, the fault-free run's,
    when given as fractions)."""
    rng = random.Random(spec.seed if spec.seed is not None else seed)
    lo, hi = spec.at
    if spec.fractional:
        if makespan_ns is None:
            raise InputError("scenario", "faults.random.at", "fractions of the fault-free run need that run first")
        lo, hi = lo * makespan_ns, hi * makespan_ns
    edges = sorted(
        (u, v) if fabric.tier[u] < fabric.tier[v] or (fabric.tier[u] == fabric.tier[v] and u < v) else (v, u)
        for u, v in fabric.graph.edges
    )
    host_edge = [not fabric.is_switch(u) for u, _ in edges]
    pool = [e for e, h in zip(edges, host_edge)
            if spec.tier == "any" or (spec.tier == "host") == h]
    import numpy as np  # imported when used, like the workload's columns it reads

    hosts = sorted({workload.hosts[c] for c in np.unique(workload.src).tolist()}, key=fabric.host_index.__getitem__)
    used: set = set()
    out: list[dict] = []
    for _ in range(spec.count):
        kind = rng.choice(spec.kinds)
        at_ns = int(round(lo + (hi - lo) * rng.random()))
        if kind == "straggler":
            choices = [h for h in hosts if h not in used]
            if not choices:
                raise InputError("scenario", "faults.random.count", f"more stragglers than the {len(hosts)} hosts "
                                 "of the workload")
            host = rng.choice(choices)
            used.add(host)
            out.append({"kind": kind, "at_ns": at_ns, "host": host, "compute_factor": spec.compute_factor})
            continue
        choices = [e for e in pool if e not in used]
        if not choices:
            raise InputError("scenario", "faults.random.count", f"more faults than the {len(pool)} links of "
                             f"tier {spec.tier}")
        u, v = rng.choice(choices)
        used.add((u, v))
        fault = {"kind": kind, "at_ns": at_ns, "link": [u, v]}
        if kind == "link_degrade":
            fault["gbps"] = fabric.link_gbps(u, v) * spec.degrade_to
        elif kind == "link_loss":
            fault["drop_rate"] = spec.drop_rate
        out.append(fault)
    return out
