"""Planner speed and quality on phases of the 32 spines x 64 leaves x 32 hosts fabric (400 Gb/s).

    python bench/bench_planners.py [--steps 20000] [--seed 1] [--repeat 3] [--time-limit 60] [--highs-first-layer]
                                   [--tiny 300]

Four phases of 64 MiB flows, every host sending one flow (two for ``random x2``):
- ``shift``: rank r -> r + 32, built by FlowPlanner from the scenario
  ``-t ls32x64x32 -w permutation --set workload.jobs.0.ranks=2048 --set workload.jobs.0.shift=32``
  (all 32 flows of a leaf go to the next leaf: the planner's time inside FlowPlanner is printed too);
- ``random``: a seeded random host permutation with no flow inside a leaf (2048 flows);
- ``random x2``: each host sends two flows (two random permutations stacked), Delta = 2s;
- ``4 rings``: step 0 of four concurrent 512-rank ring AllReduce jobs placed at random, built by
  pktsim's workload generator on the fabric (the phase ``lb.plan_scope: cluster`` plans): its
  cross-leaf flows, and its same-leaf ones as the context's local flows.
Per planner: runtime (the best of ``--repeat`` runs); the max link load in flows (1 = every link carries one flow); the first layer
of the two-layer max-min value (slowest flow, Gbit/s, host links included) against the exact optimum
(closed form: min(host bound, C / ceil(Delta / s))); the mean flow rate (Gbit/s); ``ilp``'s solver
status and MIP gap. ``--highs-first-layer`` also solves the first layer with HiGHS from no plan
(aggregated counts per leaf pair, ``--time-limit``) and prints its status, gap and value.

Then ``--tiny`` random tiny phases (2-4 leaves, 2-3 spines, 1-3 hosts per leaf, 1-3 jobs, 2-7
cross-leaf flows between random hosts, up to 2 same-leaf flows, host links 50, 100 or 200 Gb/s
against 100 Gb/s fabric links), each planner against the brute-force two-layer optimum over all
s^n routings: how often it reaches it, how often its job vector or only its first layer does.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

from pktsim.errors import InputError
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.topology import build_graph
from pktsim.planning.fairness import first_layer_by_ilp, first_layer_optimum_gbps, flow_rates_gbps, routing_value
from pktsim.planning.flow_plan import FlowPlanner
from pktsim.planning.planners import PLANNERS, Flow, PlanContext, max_link_load, plan
from pktsim.scenario import load_scenario
from pktsim.workload.collectives import build_workload

SPINES, LEAVES, HOSTS = 32, 64, 32
SIZE = 64 * 2**20
GBPS = 400.0


def derange_random(rng: random.Random, copies: int = 1) -> list[Flow]:
    """A random permutation repaired so no host sends inside its leaf (swap offenders with others)."""
    flows = []
    n = LEAVES * HOSTS
    for _ in range(copies):
        p = list(range(n))
        rng.shuffle(p)
        bad = True
        while bad:
            bad = False
            for i in range(n):
                if i // HOSTS == p[i] // HOSTS:
                    j = rng.randrange(n)
                    if j // HOSTS != p[i] // HOSTS and i // HOSTS != p[j] // HOSTS:
                        p[i], p[j] = p[j], p[i]
                    bad = True
        flows += [Flow(f"leaf{i // HOSTS}", f"leaf{p[i] // HOSTS}", SIZE, f"h{i}", f"h{p[i]}", "job0")
                  for i in range(n)]
    return flows


def scenario_phase(sc, fabric: Fabric) -> tuple[list[Flow], tuple[Flow, ...]]:
    """The cross-leaf and same-leaf flows of step 0 of iteration 0 of every job of ``sc``."""
    wl = build_workload(sc.workload.jobs, fabric.hosts, sc.topology.hosts_per_tor, sc.seed)
    tor = fabric.tor_of
    phase = [m for m in wl.messages if m.iteration == 0 and m.step == 0]
    every = [Flow(tor[m.src], tor[m.dst], m.bytes, m.src, m.dst, m.job) for m in phase]
    return [f for f in every if f.src != f.dst], tuple(f for f in every if f.src == f.dst)


def tiny_phase(rng: random.Random) -> tuple[list[Flow], PlanContext]:
    """A random tiny phase (see the module docstring)."""
    leaves, spines, hosts, jobs = rng.randint(2, 4), rng.randint(2, 3), rng.randint(1, 3), rng.randint(1, 3)
    n = rng.randint(2, 7 if spines == 2 else 5)
    flows: list[Flow] = []
    while len(flows) < n:
        a, b = rng.randrange(leaves), rng.randrange(leaves)
        if a != b:
            flows.append(Flow(f"leaf{a}", f"leaf{b}", 1, f"h{a}.{rng.randrange(hosts)}", f"h{b}.{rng.randrange(hosts)}",
                              f"job{rng.randrange(jobs)}"))
    local = []
    for _ in range(rng.randint(0, 2)):
        a = rng.randrange(leaves)
        ha, hb = f"h{a}.{rng.randrange(hosts)}", f"h{a}.{rng.randrange(hosts)}"
        if ha != hb:
            local.append(Flow(f"leaf{a}", f"leaf{a}", 1, ha, hb, f"job{rng.randrange(jobs)}"))
    return flows, PlanContext(spines, host_gbps=rng.choice([50.0, 100.0, 200.0]), fabric_gbps=100.0,
                              local=tuple(local))


def tiny_quality(n: int, seed: int) -> None:
    """Per planner: the share of ``n`` tiny phases where it reaches the brute-force optimum."""
    rng = random.Random(seed)
    hits = {p: [0, 0, 0] for p in PLANNERS}  # two-layer optimum, job layer optimum, first layer optimum
    for _ in range(n):
        flows, ctx = tiny_phase(rng)
        best = max(routing_value(flows, a, ctx) for a in itertools.product(range(ctx.spines), repeat=len(flows)))
        for planner in PLANNERS:
            got = routing_value(flows, plan(planner, flows, ctx), ctx)
            hits[planner][0] += got == best
            hits[planner][1] += got.jobs == best.jobs
            hits[planner][2] += got.slowest_gbps == best.slowest_gbps
    print(f"\n{n} tiny random phases, share at the brute-force optimum:")
    print(f"{'planner':<14} {'two-layer':>9} {'job layer':>9} {'slowest':>8}")
    for planner, (both, jobs, first) in hits.items():
        print(f"{planner:<14} {both / n:>9.1%} {jobs / n:>9.1%} {first / n:>8.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000, help="annealing steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs per planner (the fastest is shown)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="exact solvers' limit (s)")
    ap.add_argument("--highs-first-layer", action="store_true", help="solve the first layer with HiGHS too")
    ap.add_argument("--tiny", type=int, default=300, help="tiny random phases against brute force (0: none)")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    # the scenario's shift-32 permutation, as FlowPlanner sees it (one phase)
    sc = load_scenario(topology="ls32x64x32", workload="permutation", lb="planned",
                       overrides=["workload.jobs.0.ranks=2048", "workload.jobs.0.shift=32"])
    fabric = Fabric(build_graph(sc.topology), sc.seed)
    wl = build_workload(sc.workload.jobs, fabric.hosts, sc.topology.hosts_per_tor, sc.seed)
    t0 = time.perf_counter()
    fp = FlowPlanner(sc, fabric, wl)
    total = time.perf_counter() - t0
    print(f"FlowPlanner(shift 32, edge_coloring): plan_seconds {fp.plan_seconds * 1e3:.1f} ms, "
          f"with entropy pinning {total:.2f} s, {len(wl.messages)} messages")
    rings = [{"name": f"job{j}", "collective": "ring_allreduce", "placement": "random", "ranks": 512,
              "bytes": "64MiB"} for j in range(4)]
    ring_sc = load_scenario(topology="ls32x64x32", lb="planned", seed=args.seed,
                            overrides=[f"workload.jobs={rings}".replace("'", ""), "lb.plan_scope=cluster"])
    ring_flows, ring_local = scenario_phase(ring_sc, fabric)
    phases = {
        "shift": scenario_phase(sc, fabric),
        "random": (derange_random(rng), ()),
        "random x2": (derange_random(rng, copies=2), ()),
        "4 rings": (ring_flows, ring_local),
    }
    print(f"{'phase':<10} {'flows':>5} {'planner':<14} {'seconds':>8} {'max load':>8} {'slowest':>8} "
          f"{'optimum':>8} {'mean':>6}  ilp status (gap)")
    for name, (flows, local) in phases.items():
        base = PlanContext(SPINES, host_gbps=GBPS, fabric_gbps=GBPS, local=local, seed=args.seed, steps=args.steps,
                           time_limit_s=args.time_limit)
        best = first_layer_optimum_gbps(flows, base)
        size = flows[0].bytes
        for planner in PLANNERS:
            dt = float("inf")
            try:
                for _ in range(args.repeat):
                    ctx = PlanContext(**{**base.__dict__, "stats": {}})
                    t0 = time.perf_counter()
                    assign = plan(planner, flows, ctx)
                    dt = min(dt, time.perf_counter() - t0)
            except InputError as e:
                print(f"{name:<10} {len(flows):>5} {planner:<14} {'-':>8}  {e.problem}")
                continue
            rates = flow_rates_gbps(flows, assign, ctx)
            status = f"  {ctx.stats['status']} ({ctx.stats['mip_gap']:.3f})" if ctx.stats else ""
            print(f"{name:<10} {len(flows):>5} {planner:<14} {dt:>8.4f} {max_link_load(flows, assign) / size:>8.2f} "
                  f"{rates.min():>8.1f} {best:>8.1f} {rates.mean():>6.1f}{status}")
        if args.highs_first_layer:
            t0 = time.perf_counter()
            found = first_layer_by_ilp(flows, base, time_limit_s=args.time_limit)
            dt = time.perf_counter() - t0
            said = ("no plan found" if found is None else
                    f"{found.solution.status} (gap {found.solution.mip_gap:.3f}): {found.gbps:.1f} Gb/s, "
                    f"bound {found.upper_gbps:.1f}")
            print(f"{name:<10} {len(flows):>5} {'HiGHS layer 1':<14} {dt:>8.2f}  {said}")
    if args.tiny:
        tiny_quality(args.tiny, args.seed)


if __name__ == "__main__":
    main()
