"""Sweep executors: how fast ``pktsim sweep`` runs one sweep on local processes and on Dask.

The sweep: the bench fabric (4 spines x 8 leaves x 4 hosts), one 32-rank ring all-reduce of
``--bytes`` (default 8 MiB: about a second per point), every scheme of ``--schemes`` x ``--seeds``
seeds (default 6 x 6 = 36 points). It is resolved once (``read_sweep``) and run with
``run_sweep(progress=False)``, each time into a fresh temporary directory, on:

  (a) the local executor, 1 process (``--jobs 1``: the points run in this process, one by one);
  (b) the local executor, 2 processes (``--jobs 2``);
  (c) a Dask LocalCluster with 1 worker (``--dask local --workers 1``);
  (d) a Dask LocalCluster with 2 workers.

Prints, per run: the wall time of the sweep (the cluster's start-up and shutdown are measured
apart and left out), the sum of the points' own ``wall_s`` and the overhead per point
((wall - sum of wall_s) / points: the cost of the executor, writing the rows, and a worker's first
imports); then the speed-up of 2 workers over 1 for both executors (the goal: >= 1.8x with points
of a second or more, on a machine with 2 free cores) next to the ceiling the machine allows (how much
slower each point ran two at a time than alone: shared caches and memory bandwidth, other load),
and the cluster start-up times. Every run's table is checked to be the same as run (a)'s, wall
times aside.

    python bench/bench_sweep.py                 # the full benchmark (~2.5 min on 2 cores)
    python bench/bench_sweep.py --quick         # a smoke run: 4 small points (~10 s, mostly cluster start-up)
    python bench/bench_sweep.py --bytes 16MiB --seeds 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pktsim.experiments.executors import DaskCluster, Executor, LocalProcesses
from pktsim.experiments.sweep import run_sweep
from pktsim.experiments.sweep_spec import Sweep, read_sweep

SCHEMES = ["ecmp", "spray", "split", "flowlet", "adaptive", "planned"]
WALL_CLOCK = ("wall_s", "plan_s")


def sweep_data(nbytes: str, schemes: list[str], seeds: int) -> dict:
    return {"base": {"topology": "bench",
                     "workload": {"jobs": [{"name": "job0", "collective": "ring_allreduce", "ranks": 32,
                                            "bytes": nbytes}]}},
            "grid": {"lb.scheme": schemes, "seed": list(range(1, seeds + 1))}}


class Timed:
    """An executor whose ``close`` (the cluster's shutdown, which run_sweep calls) is timed apart."""

    def __init__(self, inner: Executor) -> None:
        self.inner, self.workers, self.where, self.close_s = inner, inner.workers, inner.where, 0.0

    def results(self, fn, tasks):
        return self.inner.results(fn, tasks)

    def close(self) -> None:
        t0 = time.perf_counter()
        self.inner.close()
        self.close_s += time.perf_counter() - t0


@dataclass
class Run:
    name: str
    workers: int
    start_s: float
    """Opening the executor: a LocalCluster's start-up and the workers' version check (0 locally)."""
    wall_s: float
    """run_sweep, less the executor's close."""
    close_s: float
    points_s: float
    """The sum of the points' own wall_s."""
    rows: list[dict]


def run(name: str, workers: int, open_executor, data: dict, text: str, tmp: Path) -> Run:
    out = Path(tempfile.mkdtemp(prefix=f"{name.replace(' ', '-')}-", dir=tmp)) / "sweep"
    sweep: Sweep = read_sweep(data, text, "bench_sweep", tmp, out)
    t0 = time.perf_counter()
    executor = Timed(open_executor(workers))
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcome = run_sweep(sweep, out, executor, progress=False)
    wall = time.perf_counter() - t0 - executor.close_s
    bad = [r for r in outcome.rows if r["status"] != "ok"]
    if bad or len(outcome.rows) != len(sweep.points):
        raise SystemExit(f"{name}: {len(bad)} points failed, e.g. {bad[0]['error'] if bad else '?'}")
    rows = sorted(outcome.rows, key=lambda r: r["point"])
    return Run(name, workers, start, wall, executor.close_s, sum(r["wall_s"] for r in rows), rows)


def same_table(a: Run, b: Run) -> bool:
    def strip(rows: list[dict]) -> list[dict]:
        # the reproducing command names the sweep's own directory: compare everything else
        return [{k: v for k, v in r.items() if k not in (*WALL_CLOCK, "command")} for r in rows]

    return strip(a.rows) == strip(b.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bytes", default="8MiB", help="the all-reduce's size (default 8MiB: ~1 s a point)")
    parser.add_argument("--seeds", type=int, default=6, help="seeds per scheme (default 6)")
    parser.add_argument("--schemes", default=",".join(SCHEMES),
                        help=f"lb.scheme values, comma-separated (default {','.join(SCHEMES)}); "
                             f"points = schemes x seeds")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 256KiB, ecmp and spray, 2 seeds")
    args = parser.parse_args()
    if args.quick:
        args.bytes, args.seeds, args.schemes = "256KiB", 2, "ecmp,spray"
    schemes = [s for s in args.schemes.split(",") if s]
    data = sweep_data(args.bytes, schemes, args.seeds)
    text = yaml.safe_dump(data, sort_keys=False)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        points = len(read_sweep(data, text, "bench_sweep", tmp, tmp / "resolve").points)
        resolve = time.perf_counter() - t0
        print(f"sweep    {points} points: bench fabric, ring all-reduce of {args.bytes} x lb.scheme "
              f"({', '.join(schemes)}) x {args.seeds} seeds; resolving them took {resolve:.2f} s (not counted below)")
        # This process's one-off imports (the first Parquet write imports pandas, through pyarrow)
        # would land on run (a): a one-point sweep pays them first. Dask's fresh workers pay theirs.
        t0 = time.perf_counter()
        warm = sweep_data("64KiB", schemes[:1], 1)
        run("warm-up", 1, LocalProcesses, warm, yaml.safe_dump(warm, sort_keys=False), tmp)
        print(f"warm-up  one small point in this process: {time.perf_counter() - t0:.2f} s (not counted below)")
        runs = []
        for name, workers, opener in (("local", 1, LocalProcesses), ("local", 2, LocalProcesses),
                                      ("dask", 1, lambda n: DaskCluster("local", n)),
                                      ("dask", 2, lambda n: DaskCluster("local", n))):
            r = run(name, workers, opener, data, text, tmp)
            runs.append(r)
            label = f"{name} x{workers}"
            overhead = (r.wall_s - r.points_s) / points if workers == 1 else None
            print(f"{label:8s} {r.wall_s:7.2f} s wall ({r.wall_s / points:.3f} s a point), points' own wall_s "
                  f"{r.points_s:7.2f} s" + (f", overhead {overhead * 1e3:6.1f} ms a point" if overhead is not None
                                             else f", {r.points_s / r.wall_s:.2f} points running on average")
                  + (f"; start-up {r.start_s:.2f} s, shutdown {r.close_s:.2f} s" if name == "dask" else ""))
        local1, local2, dask1, dask2 = runs
        print(f"speed-up 2 over 1: local processes {local1.wall_s / local2.wall_s:.2f}x, "
              f"Dask workers {dask1.wall_s / dask2.wall_s:.2f}x (goal >= 1.8x for points of >= 1 s); "
              f"Dask with start-up and shutdown: "
              f"{(dask1.start_s + dask1.wall_s + dask1.close_s) / (dask2.start_s + dask2.wall_s + dask2.close_s):.2f}x")
        print(f"ceiling  two at a time each point ran {local2.points_s / local1.points_s:.2f}x (local) and "
              f"{dask2.points_s / dask1.points_s:.2f}x (Dask) slower than alone (shared caches and memory bandwidth, "
              f"other load: 1-min load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after), so 2 workers "
              f"could give at most {2 * local1.points_s / local2.points_s:.2f}x and "
              f"{2 * dask1.points_s / dask2.points_s:.2f}x")
        print(f"overhead a point, 1 worker: local {(local1.wall_s - local1.points_s) / points * 1e3:.1f} ms, "
              f"Dask {(dask1.wall_s - dask1.points_s) / points * 1e3:.1f} ms (goal < 50 ms); "
              f"LocalCluster start-up {dask1.start_s:.2f} s (1 worker), {dask2.start_s:.2f} s (2 workers)")
        same = all(same_table(local1, r) for r in runs[1:])
        print(f"tables   {'the same' if same else 'DIFFERENT'} on every executor (wall times and commands aside)")


if __name__ == "__main__":
    main()
