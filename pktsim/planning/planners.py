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
- ``ilp``: exact min-max link load with ``scipy.optimize.milp`` (HiGHS), aggregated: the flows with
  the same (source leaf, destination leaf, bytes) are one class, y[class, j] the integer number of
  them on spine j (summing to the class size), load(link) <= z for every uplink and downlink,
  minimise z; then each class's flows are dealt to the spines by the counts, in input order. It
  fills ``context.stats`` (status, MIP gap) and refuses instances of more than
  :data:`ILP_MAX_BINARIES` flows x spines.
- ``mmf`` (:mod:`pktsim.planning.mmf`): max-min fairness with host links, within a factor 2 of the
  optimum (registered by :mod:`pktsim.planning`).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable, NamedTuple, Sequence

from pktsim.errors import InputError, TooLarge
from pktsim.registry import Registry

ILP_MAX_BINARIES = 131_072
"""``ilp``: the most flows x spines it accepts (the binaries of a per-flow program, and a bound on the
aggregated program's integer variables, classes x spines); above, :class:`TooLarge`."""
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
    stats: dict = field(default_factory=dict, compare=False, repr=False)
    """Filled by the exact planners for the caller: ``status`` (``optimal``, ``heuristic at bound``,
    ``time limit``, ...), ``mip_gap`` (relative, 0 when proven optimal), ``objective`` and
    ``bound`` (bytes on the busiest link: the plan's and the solver's lower bound)."""


Planner = Callable[[Sequence[Flow], PlanContext], list[int]]
"""``planner(flows, context)``: the spine index (0..context.spines-1) of every flow."""

PLANNERS: Registry[Planner] = Registry("planner")
"""``lb.planner`` -> the planner (registered below each planner, in the order the scenario lists
them: edge_coloring, greedy, annealing, ilp; then mmf, from its own module)."""


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


def edge_coloring(flows: Sequence[Flow] | Sequence[tuple], spines: int, *, common_first: bool = False) -> list[int]:
    """A proper Delta-edge-colouring of the bipartite multigraph of flows, colours folded mod s.

    Kempe-chain algorithm: for edge (u, v), take a colour a free at u and b free at v; if a is not
    free at v, swap a and b along the a/b alternating path from v (in a bipartite graph it cannot
    reach u), after which a is free at both ends. O(E * (Delta + V)). ``a`` is the lowest colour
    free at u, or with ``common_first`` the lowest free at both ends when there is one (fewer swaps:
    the same guarantee, a different colouring). Only the first two fields of a flow are read."""
    left: dict[Hashable, dict[int, int]] = defaultdict(dict)  # src leaf -> colour -> flow
    right: dict[Hashable, dict[int, int]] = defaultdict(dict)  # dst leaf -> colour -> flow
    used_l: dict[Hashable, int] = defaultdict(int)  # src leaf -> bit c set when colour c is used there
    used_r: dict[Hashable, int] = defaultdict(int)
    deg_l: dict = defaultdict(int)
    deg_r: dict = defaultdict(int)
    for a, b, *_ in flows:
        deg_l[a] += 1
        deg_r[b] += 1
    delta = max(max(deg_l.values()), max(deg_r.values()))
    every = (1 << delta) - 1
    colour = [-1] * len(flows)

    def lowest_free(used: int) -> int:  # < delta: a node has fewer than delta coloured edges here
        return ((used + 1) & ~used).bit_length() - 1

    for e, (u, v, *_) in enumerate(flows):
        lu, rv = left[u], right[v]
        common = every & ~(used_l[u] | used_r[v]) if common_first else 0
        a = (common & -common).bit_length() - 1 if common else lowest_free(used_l[u])
        if used_r[v] >> a & 1:
            b = lowest_free(used_r[v])
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
            # the path's inner nodes keep both colours; its two ends (v, and the node it stopped at)
            # trade one for the other
            flip = 1 << a | 1 << b
            used_r[v] ^= flip
            (used_l if side is left else used_r)[node] ^= flip
        colour[e] = a
        lu[a] = rv[a] = e
        used_l[u] |= 1 << a
        used_r[v] |= 1 << a
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




class Solution(NamedTuple):
    """What :func:`min_max_counts` found: per class, how many of its flows go to each spine."""

    counts: list[list[int]]
    """counts[c][j]: flows of class c on spine j."""
    status: str
    """``optimal``, ``time limit`` (stopped early: the best plan found), or the solver's word."""
    objective: float
    """The busiest link's load of ``counts`` (bytes)."""
    bound: float
    """No plan has a busier link below this (bytes): the solver's dual bound."""

    @property
    def mip_gap(self) -> float:
        """Relative gap (objective - bound) / objective; 0 when proven optimal."""
        return (self.objective - self.bound) / self.objective if self.objective > 0 else 0.0


def flow_classes(flows: Sequence[Flow]) -> dict[tuple, list[int]]:
    """The flows with the same (source leaf, destination leaf, bytes), in order of first appearance:
    class key -> indices of its flows (input order)."""
    classes: dict[tuple, list[int]] = defaultdict(list)
    for f, (a, b, size, *_) in enumerate(flows):
        classes[a, b, size].append(f)
    return dict(classes)


def min_max_counts(classes: Sequence[tuple[Hashable, Hashable, int, int]], spines: int, lo: float, hi: float,
                   time_limit: float) -> Solution | None:
    """The aggregated min-max link load program, solved by HiGHS (``scipy.optimize.milp``).

    ``classes``: (source leaf, destination leaf, bytes per flow, flows). Integer y[c, j] >= 0 with
    sum_j y[c, j] = flows of c; for every uplink (a, j) sum over classes out of a of bytes * y[c, j]
    <= z, the same for every downlink (j, b); minimise z in [lo, hi] (bytes). The spines are
    interchangeable, so y[0, j] >= y[0, j + 1] (any plan can be relabelled so). None when the
    solver found no plan within ``time_limit`` seconds."""
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array
    except ImportError:
        raise InputError("lb.planner", "ilp", "needs scipy (pip install 'pktsim[planning]')") from None
    nc = len(classes)
    nv = nc * spines
    scale = float(max(size for _, _, size, _ in classes))
    srcs = {a: i for i, a in enumerate(dict.fromkeys(a for a, *_ in classes))}
    dsts = {b: i for i, b in enumerate(dict.fromkeys(b for _, b, *_ in classes))}
    n_links = (len(srcs) + len(dsts)) * spines
    rows, cols, vals = [], [], []
    for c, (a, b, size, _) in enumerate(classes):
        for j in range(spines):
            x = c * spines + j
            rows += [c, nc + srcs[a] * spines + j, nc + (len(srcs) + dsts[b]) * spines + j]
            cols += [x, x, x]
            vals += [1.0, size / scale, size / scale]
    first = nc + n_links  # symmetry: y[0, j] - y[0, j + 1] >= 0
    for j in range(spines - 1):
        rows += [first + j, first + j]
        cols += [j, j + 1]
        vals += [1.0, -1.0]
    rows += list(range(nc, nc + n_links))
    cols += [nv] * n_links
    vals += [-1.0] * n_links
    A = coo_array((vals, (rows, cols)), shape=(first + spines - 1, nv + 1)).tocsr()
    sizes = np.array([n for *_, n in classes], dtype=float)
    lower = np.concatenate([sizes, np.full(n_links, -np.inf), np.zeros(spines - 1)])
    upper = np.concatenate([sizes, np.zeros(n_links), np.full(spines - 1, np.inf)])
    c = np.zeros(nv + 1)
    c[nv] = 1
    ub_x = np.append(np.repeat(sizes, spines), hi / scale)
    lb_x = np.zeros(nv + 1)
    lb_x[nv] = lo / scale
    integrality = np.ones(nv + 1)
    integrality[nv] = 0
    res = milp(c, constraints=LinearConstraint(A, lower, upper), integrality=integrality,
               bounds=Bounds(lb_x, ub_x), options={"time_limit": time_limit})
    if res.x is None:
        return None
    y = np.rint(res.x[:nv]).astype(int).reshape(nc, spines)
    load: dict[tuple, float] = defaultdict(float)
    for (a, b, size, _), row in zip(classes, y.tolist()):
        for j, k in enumerate(row):
            load["up", a, j] += size * k
            load["down", j, b] += size * k
    status = {0: "optimal", 1: "time limit"}.get(res.status, res.message)
    bound = getattr(res, "mip_dual_bound", None)
    bound = lo if bound is None or not np.isfinite(bound) else max(lo, bound * scale)
    objective = max(load.values())
    return Solution(y.tolist(), status, objective, objective if status == "optimal" else min(bound, objective))


def ilp(flows: Sequence[Flow], spines: int, *, time_limit: float = ILP_TIME_LIMIT_S,
        stats: dict | None = None) -> list[int]:
    """Exact min-max link load, aggregated (:func:`min_max_counts`): the greedy plan, or the edge
    colouring where it is better, bounds z from above (and is kept when it meets
    :func:`lower_bound`, or when the solver finds nothing better in ``time_limit`` seconds); each class's flows are dealt to spines 0, 1, ... by its counts, in
    input order. ``stats`` (e.g. ``context.stats``) gets ``status``, ``mip_gap``, ``objective`` and
    ``bound`` (bytes)."""
    if len(flows) * spines > ILP_MAX_BINARIES:
        raise TooLarge("lb.planner", "ilp", f"instance too large for ilp ({len(flows)} flows x {spines} spines, "
                       f"more than {ILP_MAX_BINARIES}); use mmf or edge_coloring")
    stats = {} if stats is None else stats
    lo = lower_bound(flows, spines)
    start = greedy(flows, spines)
    hi = max_link_load(flows, start)
    if hi > lo:  # edge colouring meets the bound on equal flows (no solver finds that quickly)
        coloured = edge_coloring(flows, spines)
        if max_link_load(flows, coloured) < hi:
            start, hi = coloured, max_link_load(flows, coloured)
    stats.update(status="heuristic at bound", mip_gap=0.0, objective=hi, bound=lo)
    if hi <= lo:
        return start
    classes = flow_classes(flows)
    keys = list(classes)
    found = min_max_counts([(*k, len(classes[k])) for k in keys], spines, lo, hi, time_limit)
    if found is None or found.objective > hi:
        stats.update(status="no better plan found" if found is None else found.status,
                     mip_gap=(hi - lo) / hi, objective=hi, bound=lo if found is None else found.bound)
        return start
    stats.update(status=found.status, mip_gap=found.mip_gap, objective=found.objective, bound=found.bound)
    assign = [0] * len(flows)
    for key, row in zip(keys, found.counts):
        members = iter(classes[key])
        for j, k in enumerate(row):
            for _ in range(k):
                assign[next(members)] = j
    return assign


PLANNERS.add("ilp", lambda flows, ctx: ilp(flows, ctx.spines, time_limit=ctx.time_limit_s, stats=ctx.stats))
