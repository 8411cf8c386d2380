"""``lb.planner: mmf``: routes for max-min fairness, host links included, within a factor 2 of the best.

The objective is :mod:`pktsim.planning.fairness`'s two-layer max-min value (our reconstruction of
arXiv 2503.05324's). Notation: s spines, C = ``fabric_gbps``, H = ``host_gbps``; a routing R gives
every flow its max-min fair rate r^R (progressive filling over its host and fabric links).

The planner, in two steps:

(a) Demands d: the max-min fair rates of the phase's flows (same-leaf ones included) on the *relaxed
    fabric*, where each leaf's s uplinks are pooled into one link of capacity s*C (its s downlinks
    likewise), every cross-leaf flow is also capped by C (it takes one path) and every flow by its
    host links (H). d is flow-level max-min, not job-level first: the proof needs d to leximin-
    dominate every routing's flow rates, which the max-min point of a set has and a job-first one
    does not in general (both have the same first level).
(b) Sorted slots: at each source leaf, its cross-leaf flows sorted by decreasing d (ties: input
    order) are cut into chunks of s consecutive flows, the leaf's *source slots*; the same at each
    destination leaf over its incoming flows (*destination slots*). A flow is an edge from its
    source slot to its destination slot; every slot has at most s edges, so this bipartite
    multigraph has a proper s-edge-colouring (König), found by :func:`edge_coloring` (Kempe chains,
    a colour free at both ends first).
    Colour = spine.

Lemma 1 (relaxed model). Every routing's allocation r^R is feasible on the relaxed fabric (a
leaf's uplinks carry at most s*C together, each flow crosses a link of C and its host links), and
max-min fair points by progressive filling on a set of link constraints are the leximin maximum of
that set; so sorted(d) >=lex sorted(r^R) for every R, and min d >= min r^R.

Lemma 2 (link loads). On mmf's routes, every fabric link carries at most 2C of demand. Proof for
the uplink (a, j) (downlinks alike): its flows have colour j, at most one per source slot of a,
since the colouring is proper. Let a's flows sorted be d_1 >= d_2 >= ... >= d_m, chunks
K_0, K_1, ... of s each (the last may be shorter), W_a = sum of d over a's flows. The load is at most
sum_k max(K_k) <= d_1 + sum_{k>=1} min(K_{k-1}) (sorted: max(K_k) <= min(K_{k-1})) <= d_1 +
sum_{k>=1} |K_{k-1}|^-1 sum(K_{k-1}) <= C + W_a / s <= 2C (each K_{k-1} before the last is full:
|K_{k-1}| = s; d_1 <= C by the path cap; W_a <= s*C by the pooled link).

Theorem. Let r be the max-min rates on mmf's routes and R* any routing (e.g. the optimum).
(i) d/2 is feasible on mmf's routes (Lemma 2 for fabric links, d's own feasibility for host links),
    so sorted(r) >=lex sorted(d/2) >=lex sorted(r^R*)/2 (Lemma 1, halved): the flow-rate vector,
    sorted ascending, is lexicographically at least half the optimum's; the slowest flow's rate,
    which is the slowest job's, is at least half the optimum's.
(ii) Stronger, for the first layer: mmf is exact. Each uplink (a, j) carries at most one flow per
    slot of a, so at most ceil(out_a / s) <= ceil(Delta / s) flows (downlinks alike); the first
    level of progressive filling, min over links of capacity / flows, is then the optimum
    min(host bound, C / ceil(Delta / s)) (:func:`pktsim.planning.fairness.first_layer_optimum_gbps`).
(iii) Each flow f's rate is at least half the mean demand of the flows on its bottleneck link l (a
    saturated link where f's rate is the largest): r_f >= mean_{g on l} r_g = cap_l / n_l >=
    mean_{g on l} d_g / 2, since d/2 fits on l.
Nothing more is proven for the job layer beyond its first component: a job's rate is its slowest
flow's, and (i) compares sorted flow vectors, not job vectors; mmf ignores jobs (ties in d are
broken by input order), so of two routings with the same flow rates it may pick the one with a
slower second job (see the example in :mod:`pktsim.planning.fairness`). Also note (i) follows from
(ii) alone once the first layer is optimal (the first components already differ by a factor 2);
its content is that the chain holds through d, which (iii) makes per-flow.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from pktsim.planning.fairness import host_links, max_degree, max_min_gbps
from pktsim.planning.planners import PLANNERS, Flow, PlanContext, edge_coloring


def relaxed_demands_gbps(flows: Sequence[Flow], context: PlanContext) -> np.ndarray:
    """Demands d (Gbit/s) of the cross-leaf ``flows``, then of ``context.local``: their max-min fair
    rates on the fabric whose leaves' s uplinks (and downlinks) are pooled into one link of
    s * fabric_gbps, each cross-leaf flow capped by fabric_gbps (one path), every flow by its host
    links."""
    s, c = context.spines, context.fabric_gbps
    paths = [[*host_links(f), ("pooled up", f.src), ("pooled down", f.dst), ("path", i)]
             for i, f in enumerate(flows)]
    paths += [host_links(f) for f in context.local]
    rate = {"path": c, "pooled up": s * c, "pooled down": s * c}
    return max_min_gbps(paths, lambda link: rate.get(link[0], context.host_gbps))


def sorted_slots(flows: Sequence[Flow], demand: Sequence[float], spines: int) -> list[tuple[int, int]]:
    """Per flow, its (source slot, destination slot), numbered in order of first use: the k-th
    chunk of ``spines`` flows out of (into) a leaf, its flows sorted by decreasing demand, ties by
    index."""
    order = sorted(range(len(flows)), key=lambda f: (-demand[f], f))
    out: dict = defaultdict(int)
    into: dict = defaultdict(int)
    number: dict[tuple, int] = {}
    slot: list = [None] * len(flows)
    for f in order:
        a, b = flows[f].src, flows[f].dst
        slot[f] = (number.setdefault(("out", a, out[a] // spines), len(number)),
                   number.setdefault(("in", b, into[b] // spines), len(number)))
        out[a] += 1
        into[b] += 1
    return slot


def mmf(flows: Sequence[Flow], context: PlanContext) -> list[int]:
    """Spines for max-min fairness within a factor 2 (module docstring): relaxed-fabric demands,
    then an s-edge-colouring of the sorted-slot multigraph. With at most s flows out of and into
    every leaf each leaf is one slot, so the demands are not computed (the same plan)."""
    if max_degree(flows) <= context.spines:  # one slot per leaf whatever the demands: skip them
        return edge_coloring(flows, context.spines, common_first=True)
    demand = relaxed_demands_gbps(flows, context)[:len(flows)]
    return edge_coloring(sorted_slots(flows, demand.tolist(), context.spines), context.spines, common_first=True)


PLANNERS.add("mmf", mmf)
