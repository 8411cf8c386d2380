"""Evaluation of ``pktsim diagnose`` (issue 12): inject one fault per run, diagnose it from the traces,
score the diagnosis against the truth.

The logic is :func:`pktsim.experiments.diagnosis_evaluation.evaluate` (also ``pktsim diagnose --evaluate``): small
leaf-spine fabrics of 16 hosts (4x4x4, 4x8x2, 8x4x4, 8x8x2, 100 Gb/s), four workloads (ring AllReduce
packed and randomly placed, all-to-all, three concurrent jobs), two iterations with 20 us compute
gaps. Per (workload, seed) group one fault-free ECMP run fixes the cables the workload uses and its
makespan; then one run per fault kind: a link degraded to 50 % and to 25 % (from a time in the first
half of the run), 1 % loss (selective repeat), a link down between 20 % and 60 % of the run
(selective repeat), a 1.5x straggler. A false-alarm sweep adds fault-free runs over schemes (ecmp,
spray, split4, split_minimal, adaptive, flowlet, planned) and transports (ideal, sr, the roce profile).

Top-1 / top-3: the faulty link (either direction) or host is the first / among the first three
suspects, a suspect tied with it counting as ahead of it.

    python bench/bench_diagnose.py                      # 100 fault runs + 40 fault-free, ~6 min on 2 cores
    python bench/bench_diagnose.py --runs 200 --seed 2
    python bench/bench_diagnose.py --no-counters        # without the ports' lost-packet counters
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pktsim.experiments.diagnosis_evaluation import evaluate, print_evaluation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100, help="fault runs (100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", "-j", type=int, default=2, help="parallel runs (2)")
    p.add_argument("--no-counters", action="store_true", help="leave out queues.fault_drops")
    p.add_argument("--out", help="write the rows and tables here as JSON")
    args = p.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-diagnose-") as work:
        result = evaluate(args.runs, args.seed, args.jobs, counters=not args.no_counters, work=work)
    command = (f"python bench/bench_diagnose.py --runs {args.runs} --seed {args.seed} --jobs {args.jobs}"
               + (" --no-counters" if args.no_counters else ""))
    print_evaluation(result, command)
    print(f"{len(result['rows'])} runs in {time.perf_counter() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "command": command}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
