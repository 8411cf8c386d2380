"""Planner speed and quality on cross-leaf permutations of the 32 spines x 64 leaves x 32 hosts fabric.

    python bench/bench_planners.py [--steps 20000] [--seed 1]

Three demands of 2048 flows of 64 MiB (every flow crosses leaves, every leaf sends and receives 32):
- ``shift``: rank r -> r + 32, built by FlowPlanner from the scenario
  ``-t ls32x64x32 -w permutation --set workload.jobs.0.ranks=2048 --set workload.jobs.0.shift=32``
  (all 32 flows of a leaf go to the next leaf: the planner's time inside FlowPlanner is printed too);
- ``random``: a seeded random host permutation with no flow inside a leaf;
- ``random x2``: each leaf sends 64 flows (two random permutations stacked), Delta = 2s.
Prints each planner's runtime and the max link load in flows (1 = every link carries one flow).
"""

from __future__ import annotations

import argparse
import random
import time

from pktsim.planning.planners import lower_bound, max_link_load, plan
from pktsim.planning.flow_plan import FlowPlanner
from pktsim.workload.collectives import build_workload
from pktsim.errors import InputError
from pktsim.scenario import load_scenario
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.topology import build_graph

SPINES, LEAVES, HOSTS = 32, 64, 32
SIZE = 64 * 2**20


def derange_random(rng: random.Random, copies: int = 1) -> list[tuple[str, str, int]]:
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
        flows += [(f"leaf{i // HOSTS}", f"leaf{p[i] // HOSTS}", SIZE) for i in range(n)]
    return flows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000, help="annealing steps")
    ap.add_argument("--seed", type=int, default=1)
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
    tor = fabric.tor_of
    demands = {
        "shift": [(tor[m.src], tor[m.dst], m.bytes) for m in wl.messages],
        "random": derange_random(rng),
        "random x2": derange_random(rng, copies=2),
    }
    print(f"{'demand':<10} {'planner':<14} {'seconds':>9} {'max load':>9} {'bound':>6}")
    for name, flows in demands.items():
        bound = lower_bound(flows, SPINES) / SIZE
        for planner in ("edge_coloring", "greedy", "annealing", "ilp"):
            t0 = time.perf_counter()
            try:
                assign = plan(planner, flows, SPINES, seed=args.seed, steps=args.steps)
            except InputError as e:
                print(f"{name:<10} {planner:<14} {'-':>9} {'-':>9} {bound:>6.0f}  {e.problem}")
                continue
            dt = time.perf_counter() - t0
            load = max_link_load(flows, assign) / SIZE
            print(f"{name:<10} {planner:<14} {dt:>9.4f} {load:>9.2f} {bound:>6.0f}")


if __name__ == "__main__":
    main()
