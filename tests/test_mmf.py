"""The mmf planner and the exact optima (issue 15): the two-layer max-min value checked by hand, the
brute-force optimum over all s^n routings, the factor-2 lemma's link loads, the first layer's closed
form against brute force and HiGHS, the aggregated ILP against a per-flow binary ILP written here."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from pktsim.planning.fairness import (first_layer_by_ilp, first_layer_optimum_gbps, flow_rates_gbps, host_links,
                                     routing_value)
from pktsim.planning.mmf import mmf, relaxed_demands_gbps
from pktsim.planning.planners import (PLANNERS, Flow, PlanContext, flow_classes, lower_bound, max_link_load,
                                      min_max_counts, plan)

TOL = 1e-6


def random_phase(rng: random.Random, n: int, *, leaves: int | None = None, spines: int | None = None,
                 hosts: int | None = None, local: int | None = None) -> tuple[list[Flow], PlanContext]:
    """n cross-leaf flows between random hosts (a host may send or receive several: host-link
    bottlenecks), of 1-3 jobs, sizes 1-3; a few same-leaf flows; host links slower, equal or faster
    than fabric links."""
    leaves = leaves or rng.randint(2, 4)
    spines = spines or rng.randint(2, 3)
    hosts = hosts or rng.randint(1, 3)
    jobs = rng.randint(1, 3)

    def host() -> tuple[int, str]:
        leaf = rng.randrange(leaves)
        return leaf, f"h{leaf}.{rng.randrange(hosts)}"

    flows, locals_ = [], []
    while len(flows) < n:
        (a, ha), (b, hb) = host(), host()
        if a != b:
            flows.append(Flow(f"leaf{a}", f"leaf{b}", rng.randint(1, 3), ha, hb, f"job{rng.randrange(jobs)}"))
    for _ in range(rng.randint(0, 2) if local is None else local):
        (a, ha), (_, hb) = host(), host()
        hb = f"h{a}.{rng.randrange(hosts)}"
        if ha != hb:
            locals_.append(Flow(f"leaf{a}", f"leaf{a}", 1, ha, hb, f"job{rng.randrange(jobs)}"))
    context = PlanContext(spines, host_gbps=rng.choice([50.0, 100.0, 200.0]), fabric_gbps=100.0,
                          local=tuple(locals_))
    return flows, context


def all_routings(flows, context):
    return itertools.product(range(context.spines), repeat=len(flows))


def leximin_at_least(x, y) -> bool:
    """sorted(x) >= sorted(y) lexicographically, up to TOL per component."""
    for a, b in zip(sorted(x), sorted(y)):
        if a > b + TOL:
            return True
        if a < b - TOL:
            return False
    return True


def test_routing_value_worked_example() -> None:
    """The module docstring's example, by hand: three flows out of leaf A over two uplinks."""
    flows = [Flow("A", "B", 1, "a1", "b1", "x"), Flow("A", "B", 1, "a2", "b2", "x"), Flow("A", "B", 1, "a3", "b3", "y")]
    ctx = PlanContext(2)
    assert routing_value(flows, [0, 0, 1], ctx) == ((50, 100), (50, 50, 100))
    assert routing_value(flows, [0, 1, 0], ctx) == ((50, 50), (50, 50, 100))
    assert first_layer_optimum_gbps(flows, ctx) == 50
    # a host sending two flows: its uplink halves both, whatever the spines; the same-leaf flow a2 -> a3
    # shares a3's downlink with nothing and a2's uplink with flow 1 (at 50: host link 100 - 50)
    flows = [Flow("A", "B", 1, "a1", "b1", "x"), Flow("A", "B", 1, "a1", "b2", "x"), Flow("A", "B", 1, "a2", "b3", "y")]
    ctx = PlanContext(2, local=(Flow("A", "A", 1, "a2", "a3", "y"),))
    assert routing_value(flows, [0, 1, 0], ctx) == ((50, 50), (50, 50, 50, 50))


def test_brute_force_two_layer_optimum_against_every_planner_and_the_bounds() -> None:
    """On random tiny phases: no planner beats the brute-force optimum (two-layer key); mmf's first
    layer equals it (so is >= half of it and never above), as does the closed form; mmf's sorted
    flow rates are lexicographically >= half the optimum's; the relaxed demands leximin-dominate
    every routing's rates (Lemma 1); every flow is at least half the mean demand on one of its links."""
    rng = random.Random(15)
    for trial in range(40):
        s = rng.choice([2, 3])
        flows, ctx = random_phase(rng, rng.randint(2, 7 if s == 2 else 5), spines=s)
        values = {a: routing_value(flows, a, ctx) for a in all_routings(flows, ctx)}
        best = max(values.values())
        for name in PLANNERS:
            assign = plan(name, flows, ctx)
            assert values[tuple(assign)] <= best, name
        assign = mmf(flows, ctx)
        got = values[tuple(assign)]
        assert got.slowest_gbps == pytest.approx(best.slowest_gbps) == first_layer_optimum_gbps(flows, ctx)
        assert leximin_at_least(got.flows, [r / 2 for r in best.flows])
        demand = relaxed_demands_gbps(flows, ctx)
        for a in values:
            assert leximin_at_least(demand, flow_rates_gbps(flows, a, ctx)), (trial, a)
        # (iii): r_f >= mean of d/2 over the flows of f's bottleneck, one of f's links
        every = [*flows, *ctx.local]
        links = [[*host_links(f), ("up", f.src, j), ("down", j, f.dst)] for f, j in zip(flows, assign)]
        links += [host_links(f) for f in ctx.local]
        on = defaultdict(list)
        for f, ls in enumerate(links):
            for link in ls:
                on[link].append(f)
        rates = flow_rates_gbps(flows, assign, ctx)
        for f in range(len(every)):
            assert rates[f] >= min(np.mean([demand[g] / 2 for g in on[link]]) for link in links[f]) - TOL


def demand_loads(flows, assign, demand):
    load = Counter()
    for f, j, d in zip(flows, assign, demand):
        load["up", f.src, j] += d
        load["down", j, f.dst] += d
    return load


def test_lemma_two_demand_loads_at_most_2c_and_first_layer_exact() -> None:
    """Larger phases (more flows per leaf than spines): on mmf's routes each fabric link carries at
    most 2C of demand and at most ceil(Delta / s) flows; the demands are feasible on the relaxed
    fabric (pooled links s*C, one path C, host links H)."""
    rng = random.Random(2)
    worst = 0.0
    for _ in range(60):
        flows, ctx = random_phase(rng, rng.randint(10, 120), leaves=rng.randint(2, 8), spines=rng.randint(2, 6),
                                  hosts=rng.randint(2, 8))
        c, s = ctx.fabric_gbps, ctx.spines
        demand = relaxed_demands_gbps(flows, ctx)
        assert max(demand[:len(flows)]) <= c + TOL
        pooled, host = Counter(), Counter()
        for f, d in zip([*flows, *ctx.local], demand):
            if f.src != f.dst:
                pooled["out", f.src] += d
                pooled["in", f.dst] += d
            host["up", f.src_host] += d
            host["down", f.dst_host] += d
        assert max(pooled.values()) <= s * c + TOL and max(host.values()) <= ctx.host_gbps + TOL
        assign = mmf(flows, ctx)
        loads = demand_loads(flows, assign, demand)
        assert max(loads.values()) <= 2 * c + TOL
        worst = max(worst, max(loads.values()) / c)
        delta = max(max(Counter(f.src for f in flows).values()), max(Counter(f.dst for f in flows).values()))
        count = Counter()
        for f, j in zip(flows, assign):
            count["up", f.src, j] += 1
            count["down", j, f.dst] += 1
        assert max(count.values()) == -(-delta // s)
    assert worst > 1.2  # the bound is not vacuous: links do carry more than C of demand


def per_flow_ilp(flows, s) -> float:
    """The per-flow binary program, written here: x[f, j] in {0, 1}, sum_j x[f, j] = 1, every link's
    bytes <= z, minimise z."""
    nf, nb = len(flows), len(flows) * s
    links = sorted({("up", a, j) for a, _, _ in flows for j in range(s)}
                   | {("down", j, b) for _, b, _ in flows for j in range(s)})
    li = {link: i for i, link in enumerate(links)}
    A = np.zeros((nf + len(links), nb + 1))
    for f, (a, b, size) in enumerate(flows):
        for j in range(s):
            A[f, f * s + j] = 1
            A[nf + li["up", a, j], f * s + j] = size
            A[nf + li["down", j, b], f * s + j] = size
    A[nf:, nb] = -1
    res = milp(np.eye(nb + 1)[nb], constraints=LinearConstraint(A, np.r_[np.ones(nf), np.full(len(links), -np.inf)],
                                                                np.r_[np.ones(nf), np.zeros(len(links))]),
               integrality=np.r_[np.ones(nb), 0], bounds=Bounds(np.zeros(nb + 1), np.r_[np.ones(nb), np.inf]))
    return res.fun


def test_aggregated_ilp_equals_per_flow_ilp() -> None:
    """The aggregated program (counts per class and spine), solved from no bound at all, and the ilp
    planner, against the per-flow binary program on instances small enough for it."""
    rng = random.Random(4)
    for _ in range(25):
        s = rng.randint(2, 4)
        leaves = rng.randint(2, 5)
        flows = []
        while len(flows) < rng.randint(3, 16):
            a, b = rng.randrange(leaves), rng.randrange(leaves)
            if a != b:
                flows.append((f"l{a}", f"l{b}", rng.choice([1, 1, 2, 3])))
        optimum = per_flow_ilp(flows, s)
        classes = flow_classes([Flow(*f) for f in flows])
        found = min_max_counts([(*k, len(v)) for k, v in classes.items()], s, 0, sum(f[2] for f in flows), 60)
        assert found.status == "optimal" and found.objective == pytest.approx(optimum)
        assert max_link_load(flows, plan("ilp", flows, s)) == pytest.approx(optimum)


def test_first_layer_closed_form_is_the_brute_force_and_highs_optimum() -> None:
    rng = random.Random(6)
    for _ in range(25):
        flows, ctx = random_phase(rng, rng.randint(2, 6), spines=2)
        brute = max(routing_value(flows, a, ctx).slowest_gbps for a in all_routings(flows, ctx))
        highs = first_layer_by_ilp(flows, ctx)
        assert highs.solution.status == "optimal"
        assert brute == pytest.approx(first_layer_optimum_gbps(flows, ctx)) == pytest.approx(highs.gbps)
    for _ in range(5):  # beyond brute force: HiGHS from no plan at all
        flows, ctx = random_phase(rng, 80, leaves=8, spines=4, hosts=6)
        highs = first_layer_by_ilp(flows, ctx)
        assert highs.solution.status == "optimal"
        assert highs.gbps == pytest.approx(first_layer_optimum_gbps(flows, ctx)) == highs.upper_gbps


def test_ilp_reports_status_and_gap() -> None:
    """Through the registry, ilp fills context.stats: optimal with gap 0 when solved; with a tiny time
    limit on an instance no heuristic solves, the solver's status and a positive gap, consistent
    with the plan's own max load and the lower bound."""
    flows = [Flow("l0", "l1", 1), Flow("l0", "l1", 2), Flow("l0", "l2", 3), Flow("l2", "l1", 2)]
    ctx = PlanContext(2)
    assign = plan("ilp", flows, ctx)
    assert ctx.stats["status"] in ("optimal", "heuristic at bound") and ctx.stats["mip_gap"] == 0
    assert ctx.stats["objective"] == max_link_load(flows, assign)
    rng = random.Random(8)
    flows = []
    while len(flows) < 600:
        a, b = rng.randrange(24), rng.randrange(24)
        if a != b:
            flows.append(Flow(f"l{a}", f"l{b}", rng.choice([3, 5, 7, 11, 13])))
    ctx = PlanContext(8, time_limit_s=0.05)
    assign = plan("ilp", flows, ctx)
    st = ctx.stats
    assert st["status"] not in ("optimal", "heuristic at bound"), st
    assert st["objective"] == max_link_load(flows, assign) and lower_bound(flows, 8) <= st["bound"] < st["objective"]
    assert st["mip_gap"] == pytest.approx((st["objective"] - st["bound"]) / st["objective"]) and st["mip_gap"] > 0


def test_mmf_deterministic_and_one_flow_per_link_when_degree_at_most_s() -> None:
    """A phase with at most s flows per leaf each way (a permutation, a ring step): every fabric link
    carries one flow, as edge colouring's; the same plan twice."""
    rng = random.Random(3)
    for _ in range(20):
        s, leaves = rng.randint(2, 8), rng.randint(2, 10)
        perm = list(range(leaves * s))
        rng.shuffle(perm)
        flows = [Flow(f"l{i // s}", f"l{p // s}", 1, f"h{i}", f"h{p}") for i, p in enumerate(perm) if i // s != p // s]
        if not flows:
            continue
        ctx = PlanContext(s)
        assign = mmf(flows, ctx)
        assert assign == mmf(flows, ctx)
        assert max_link_load(flows, assign) == 1
