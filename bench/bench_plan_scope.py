"""Plan scopes side by side: per step (job), per lockstep group (cluster) and per connection with
periodic re-plans (connection), on the bench fabric (8 leaves x 4 spines x 4 hosts, 100 Gbit/s).

    python bench/bench_plan_scope.py [--backend packet|fluid] [--planner edge_coloring] [--seeds 1 2]

Cases:
- ``4 rings``: four 8-rank ring AllReduce jobs of 2 MiB at random places, two iterations 150 us
  apart (jobs in lockstep: what the cluster scope is exact for);
- ``ring + a2a``: an 8-rank 2 MiB ring and an 8-rank 4 MiB all-to-all starting at 100 us (not in
  lockstep);
- ``permutation``: the bench permutation (4 flows per leaf pair), 2 MiB, two iterations.
Prints, per case, scope and seed: each job's mean CCT (us) and slowdown against its ideal, the
largest per-step congestion of any job (1: no link carries two of a job's flows in a step), how
many plans the connection scope made, and the planner's wall time.
"""

from __future__ import annotations

import argparse
import json

from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.scenario import load_scenario

RINGS = [{"name": f"ring{j}", "collective": "ring_allreduce", "placement": "random", "ranks": 8, "bytes": "2MiB",
          "iterations": 2, "compute_gap_ns": 150_000} for j in range(4)]
MIX = [{"name": "ring", "collective": "ring_allreduce", "ranks": 8, "bytes": "2MiB", "placement": "random"},
       {"name": "a2a", "collective": "alltoall", "ranks": 8, "bytes": "4MiB", "placement": "random",
        "start_ns": 100_000}]
PERM = [{"name": "perm", "collective": "permutation", "ranks": 32, "bytes": "2MiB", "iterations": 2}]
CASES = {"4 rings": RINGS, "ring + a2a": MIX, "permutation": PERM}
SCOPES = {"job": [], "cluster": [], "connection 100us": ["lb.replan_ns=100us"], "connection 1ms": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="packet", choices=("packet", "fluid"))
    ap.add_argument("--planner", default="edge_coloring")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    simulation = Simulation if args.backend == "packet" else FluidSimulation
    print(f"{'case':12s} {'scope':17s} seed  {'mean CCT us (slowdown) per job':58s} cong  plans  plan ms")
    for case, jobs in CASES.items():
        for scope, sets in SCOPES.items():
            for seed in args.seeds:
                sc = load_scenario(topology="bench", lb="planned", seed=seed, overrides=[
                    f"workload.jobs={json.dumps(jobs)}", f"lb.plan_scope={scope.split()[0]}",
                    f"lb.planner={args.planner}", *sets])
                sim = simulation(prepare(sc))
                summary = sim.run(None)
                cct = "  ".join(f"{j['name']} {j['mean_cct_ns'] / 1e3:.0f} ({j['slowdown']:.2f})" for j in summary.jobs)
                congestion = max(j["max_congestion"] for j in summary.jobs)
                plans = "-" if sim.planner.connections is None else str(sim.planner.connections.plans)
                print(f"{case:12s} {scope:17s} {seed:4d}  {cct:58s} {congestion:4.2f}  {plans:>5s}  "
                      f"{summary.plan_s * 1e3:7.2f}")


if __name__ == "__main__":
    main()
