"""Planned routing: which spine each concurrent cross-leaf flow of a phase turns at.

After "Routing for Large ML Models" (arXiv 2503.05324) and C4's traffic planning (arXiv 2406.04594).
A planner sees one *phase* of the workload (all messages of one step of one collective op), reduced
to its cross-leaf flows ``(src leaf, dst leaf, bytes)``, and the ``s`` spines every such flow may
turn at (on a leaf-spine: all of them). It returns, per flow, the index of its spine. The load of a
link is the bytes of the flows pinned across it: flow f on spine j loads the uplink (src_f, j) and
the downlink (j, dst_f).

- ``edge_coloring``: the flows are the edges of a bipartite multigraph (source leaves | destination
  leaves); a proper edge colouring with Delta = max degree colours exists (König) and is found with
  alternating (Kempe) paths; colour c goes to spine c mod s. With Delta <= s every link carries at
  most one flow; otherwise at most ceil(Delta / s). Sizes are ignored (flows of a phase are usually
  equal).
- ``greedy``: largest flow first (ties by input order), each to the spine minimising
  max(load(src -> spine), load(spine -> dst)) after adding it, ties by spine index.
- ``annealing``: simulated annealing from the greedy plan, minimising the max link load then the sum
  of squared link loads; a fixed number of steps from a seeded generator, so deterministic.
- ``ilp``: exact min-max link load with ``scipy.optimize.milp`` (HiGHS): binary x[f, j], one spine
  per flow, load(link) <= z for every uplink and downlink, minimise z. Refuses instances of more
  than :data:`ILP_MAX_BINARIES` binaries.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, NamedTuple, Sequence

from pktsim.errors import InputError, TooLarge
from pktsim.registry import Registry

ILP_MAX_BINARIES = 5000
ILP_TIME_LIMIT_S = 60.0

class Flow(NamedTuple):
    """A cross-leaf flow a planner places. The first three fields are all the load-based planners
    read; the hosts and the job are for fairness-aware planning (host links and job rates)."""

    src: Hashable
    """Source leaf."""
    dst: Hashable
    """Destination leaf."""
    bytes: int
    src_host: Hashable = None
    dst_host: Hashable = None
    job: Hashable = None


@dataclass(frozen=True)
class PlanContext:
    """What a planner knows besides the flows: the fabric's turning points and link rates, the
    phase's flows that need no spine, and the knobs of the planners that have them."""

    spines: int
    """Turning points every flow may use, numbered 0..spines-1."""
    host_gbps: float = 100.0
    """Rate of every host link, each direction (bits/s / 1e9)."""
    fabric_gbps: float = 100.0
    """Rate of every leaf-spine link, each direction."""
    local: tuple[Flow, ...] = ()
    """Same-leaf flows of the phase: they take no spine but share host links with the others."""
    seed: int = 1
    """``annealing``: the generator's seed."""
    steps: int = 20_000
    """``annealing``: moves tried."""
    time_limit_s: float = 60.0
    """Exact planners: wall-clock limit of the solver (the best plan found so far is kept)."""


Planner = Callable[[Sequence[Flow], PlanContext], list[int]]
"""``planner(flows, context)``: the spine index (0..context.spines-1) of every flow."""

PLANNERS: Registry[Planner] = Registry("planner")
"""``lb.planner`` -> the planner (registered below each planner, in the order the scenario lists
them: edge_coloring, greedy, annealing, ilp)."""


def plan(planner: str, flows: Sequence[Flow | tuple], spines: int | PlanContext, *, seed: int = 1,
         steps: int = 20_000) -> list[int]:
    """The spine index (0..spines-1) of every flow, by ``planner``. ``spines`` is a count (with
    ``seed`` and ``steps``) or the whole :class:`PlanContext`; plain ``(src, dst, bytes)`` tuples
    are taken as flows without hosts or job."""
    if not flows:
        return []
    if planner not in PLANNERS:
        raise ValueError(f"unknown planner {planner!r} (known: {', '.join(PLANNERS)})")
    context = spines if isinstance(spines, PlanContext) else PlanContext(spines, seed=seed, steps=steps)
    return PLANNERS[planner]([Flow(*f) for f in flows], context)


# ---------------------------------------------------------------------------------------------
# Loads


def link_loads(flows: Sequence[Flow], assign: Sequence[int]) -> dict[tuple, int]:
    """Bytes per directed link: ``("up", src, j)`` and ``("down", j, dst)``."""
    load: dict[tuple, int] = defaultdict(int)
    for (a, b, size, *_), j in zip(flows, assign):
        load["up", a, j] += size
        load["down", j, b] += size
    return dict(load)


def max_link_load(flows: Sequence[Flow], assign: Sequence[int]) -> int:
    return max(link_loads(flows, assign).values(), default=0)


def lower_bound(flows: Sequence[Flow], spines: int) -> int:
    """No plan does better: the largest flow, and every leaf's bytes spread evenly over its links."""
    out: dict = defaultdict(int)
    into: dict = defaultdict(int)
    for a, b, size, *_ in flows:
        out[a] += size
        into[b] += size
    spread = max(-(-v // spines) for v in (*out.values(), *into.values()))
    return max(spread, max(size for _, _, size, *_ in flows))


# ---------------------------------------------------------------------------------------------
# Edge colouring


def edge_coloring(flows: Sequence[Flow], spines: int) -> list[int]:
    """A proper Delta-edge-colouring of the bipartite multigraph of flows, colours folded mod s.

    Kempe-chain algorithm: for edge (u, v), take a colour a free at u and b free at v; if a is not
    free at v, swap a and b along the a/b alternating path from v (in a bipartite graph it cannot
    reach u), after which a is free at both ends. O(E * (Delta + V))."""
    left: dict[Hashable, dict[int, int]] = defaultdict(dict)  # src leaf -> colour -> flow
    right: dict[Hashable, dict[int, int]] = defaultdict(dict)  # dst leaf -> colour -> flow
    deg_l: dict = defaultdict(int)
    deg_r: dict = defaultdict(int)
    for a, b, *_ in flows:
        deg_l[a] += 1
        deg_r[b] += 1
    delta = max(max(deg_l.values()), max(deg_r.values()))
    colour = [-1] * len(flows)

    def free(at: dict[int, int]) -> int:
        for c in range(delta):
            if c not in at:
                return c
        raise AssertionError("no free colour")  # impossible: degree <= delta

    for e, (u, v, *_) in enumerate(flows):
        lu, rv = left[u], right[v]
        a = free(lu)
        if a in rv:
            b = free(rv)
            # the path from v: edge coloured a at v, then b at its left end, then a, ...
            path = []
            node, side, c = v, right, a
            while c in side[node]:
                f = side[node][c]
                path.append(f)
                fu, fv, *_ = flows[f]
                node, side = (fu, left) if side is right else (fv, right)
                c = b if c == a else a
            for f in path:
                fu, fv, *_ = flows[f]
                del left[fu][colour[f]], right[fv][colour[f]]
            for f in path:
                fu, fv, *_ = flows[f]
                colour[f] = b if colour[f] == a else a
                left[fu][colour[f]] = right[fv][colour[f]] = f
        colour[e] = a
        lu[a] = rv[a] = e
    return [c % spines for c in colour]


PLANNERS.add("edge_coloring", lambda flows, ctx: edge_coloring(flows, ctx.spines))


# ---------------------------------------------------------------------------------------------
# Greedy and annealing


def greedy(flows: Sequence[Flow], spines: int) -> list[int]:
    up: dict = defaultdict(lambda: [0] * spines)
    down: dict = defaultdict(lambda: [0] * spines)
    assign = [0] * len(flows)
    for f in sorted(range(len(flows)), key=lambda f: (-flows[f][2], f)):
        a, b, size, *_ = flows[f]
        ua, db = up[a], down[b]
        best, best_load = 0, None
        for j in range(spines):
            load = max(ua[j], db[j])
            if best_load is None or load < best_load:
                best, best_load = j, load
        assign[f] = best
        ua[best] += size
        db[best] += size
    return assign


PLANNERS.add("greedy", lambda flows, ctx: greedy(flows, ctx.spines))


def annealing(flows: Sequence[Flow], spines: int, *, seed: int = 1, steps: int = 20_000) -> list[int]:
    """Simulated annealing from the greedy plan. A move re-pins one flow (half the time one crossing a
    most-loaded link) to another random spine; cost = (max load, sum of squared loads), compared as
    max * BIG + sum of squares, with the temperature in squared mean flow sizes cooling geometrically
    from 2 to 0.01. Loads are whole bytes (exact). Returns the best plan seen (so never worse than
    greedy); stops early once the max load reaches :func:`lower_bound`."""
    assign = greedy(flows, spines)
    if spines < 2:
        return assign
    lb = lower_bound(flows, spines)
    rng = random.Random(seed)
    sizes = [s for _, _, s, *_ in flows]
    unit2 = max(1.0, sum(sizes) / len(flows)) ** 2
    links: dict[tuple, int] = {}  # link -> index into load[]
    load: list[int] = []

    def link(key: tuple) -> int:
        i = links.get(key)
        if i is None:
            i = links[key] = len(load)
            load.append(0)
        return i

    up = [[link(("up", a, j)) for j in range(spines)] for a, *_ in flows]
    down = [[link(("down", j, b)) for j in range(spines)] for _, b, *_ in flows]
    on_link: list[set[int]] = [set() for _ in load]
    for f, j in enumerate(assign):
        for i in (up[f][j], down[f][j]):
            load[i] += sizes[f]
            on_link[i].add(f)
    big = 4 * sum(sizes) ** 2 + 1  # more than any change of the sum of squares
    cur_max = max(load)
    hot = {i for i, x in enumerate(load) if x == cur_max}  # the most-loaded links
    cur_sq = sum(x * x for x in load)
    best = list(assign)
    best_key = (cur_max, cur_sq)
    t0, t1 = 2.0 * unit2, 0.01 * unit2
    n = len(flows)
    for step in range(steps):
        if best_key[0] <= lb:
            break
        temp = t0 * (t1 / t0) ** (step / steps)
        if rng.random() < 0.5:
            i = sorted(hot)[rng.randrange(len(hot))]
            f = sorted(on_link[i])[rng.randrange(len(on_link[i]))]
        else:
            f = rng.randrange(n)
        old = assign[f]
        new = rng.randrange(spines - 1)
        new += new >= old
        s = sizes[f]
        ou, od, nu, nd = up[f][old], down[f][old], up[f][new], down[f][new]
        lou, lod, lnu, lnd = load[ou] - s, load[od] - s, load[nu] + s, load[nd] + s
        d_sq = (lnu * lnu - load[nu] ** 2 + lnd * lnd - load[nd] ** 2
                + lou * lou - load[ou] ** 2 + lod * lod - load[od] ** 2)
        new_max = max(cur_max, lnu, lnd)
        still_hot = None
        if new_max == cur_max:
            still_hot = (hot - {ou, od}) | {i for i, x in ((nu, lnu), (nd, lnd)) if x == cur_max}
            if not still_hot:  # the last most-loaded link dropped
                saved = load[ou], load[od], load[nu], load[nd]
                load[ou], load[od], load[nu], load[nd] = lou, lod, lnu, lnd
                new_max = max(load)
                load[ou], load[od], load[nu], load[nd] = saved
        delta = (new_max - cur_max) * big + d_sq
        if delta <= 0 or rng.random() < math.exp(-delta / temp):
            load[ou], load[od], load[nu], load[nd] = lou, lod, lnu, lnd
            assign[f] = new
            on_link[ou].discard(f)
            on_link[od].discard(f)
            on_link[nu].add(f)
            on_link[nd].add(f)
            if new_max == cur_max and still_hot:
                hot = still_hot
            else:
                cur_max = new_max
                hot = {i for i, x in enumerate(load) if x == cur_max}
            cur_sq += d_sq
            if (cur_max, cur_sq) < best_key:
                best_key, best = (cur_max, cur_sq), list(assign)
    return best


PLANNERS.add("annealing", lambda flows, ctx: annealing(flows, ctx.spines, seed=ctx.seed, steps=ctx.steps))


# ---------------------------------------------------------------------------------------------
# ILP


def ilp(flows: Sequence[Flow], spines: int, *, time_limit: float = ILP_TIME_LIMIT_S) -> list[int]:
    """Exact min-max link load (scipy.optimize.milp). The greedy plan bounds z from above and
    :func:`lower_bound` from below; flow 0 is fixed to spine 0 (the spines are interchangeable)."""
    nf = len(flows)
    nb = nf * spines
    if nb > ILP_MAX_BINARIES:
        raise TooLarge("lb.planner", "ilp",
                       f"instance too large for ilp ({nf} flows x {spines} spines); use edge_coloring")
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import lil_array
    except ImportError:
        raise InputError("lb.planner", "ilp", "needs scipy (pip install 'pktsim[planning]')") from None
    start = greedy(flows, spines)
    hi = max_link_load(flows, start)
    lo = lower_bound(flows, spines)
    if hi <= lo:
        return start
    scale = float(max(s for _, _, s, *_ in flows))
    srcs = sorted({a for a, *_ in flows}, key=str)
    dsts = sorted({b for _, b, *_ in flows}, key=str)
    si = {a: i for i, a in enumerate(srcs)}
    di = {b: i for i, b in enumerate(dsts)}
    n_links = (len(srcs) + len(dsts)) * spines
    A = lil_array((nf + n_links, nb + 1))
    for f, (a, b, size, *_) in enumerate(flows):
        for j in range(spines):
            x = f * spines + j
            A[f, x] = 1
            A[nf + si[a] * spines + j, x] = size / scale
            A[nf + (len(srcs) + di[b]) * spines + j, x] = size / scale
    A[nf:, nb] = -1
    lower = np.concatenate([np.ones(nf), np.full(n_links, -np.inf)])
    upper = np.concatenate([np.ones(nf), np.zeros(n_links)])
    c = np.zeros(nb + 1)
    c[nb] = 1
    lb_x = np.zeros(nb + 1)
    ub_x = np.ones(nb + 1)
    lb_x[0] = 1  # flow 0 on spine 0: breaks the spines' symmetry
    lb_x[nb], ub_x[nb] = lo / scale, hi / scale
    integrality = np.ones(nb + 1)
    integrality[nb] = 0
    res = milp(c, constraints=LinearConstraint(A.tocsr(), lower, upper), integrality=integrality,
               bounds=Bounds(lb_x, ub_x), options={"time_limit": time_limit})
    if res.x is None:
        return start
    x = res.x[:nb].reshape(nf, spines)
    assign = [int(j) for j in x.argmax(axis=1)]
    return assign if max_link_load(flows, assign) <= hi else start


PLANNERS.add("ilp", lambda flows, ctx: ilp(flows, ctx.spines, time_limit=ctx.time_limit_s))
