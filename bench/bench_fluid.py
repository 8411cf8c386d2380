"""Fluid-backend benchmark: speed against the packet backend, and a 2048-host fabric.

(a) The core benchmark scenario (bench/bench_core.py: 4 spines x 8 leaves x 4 hosts, 100 Gb/s, a
    cross-leaf permutation of 64 MiB flows under ECMP), on both backends in this process, traces on.
    Target: the fluid backend at least 100x faster.
(b) ls32x64x32 (32 spines x 64 leaves x 32 hosts, 400 Gb/s) carrying 64 concurrent 32-rank ring
    AllReduce jobs of 64 MiB with random placement (workloads/ring_allreduce_64jobs.yaml), traces on.
    Target: under a minute on the 2-core development machine.

Times: "loop" is the simulation itself (summary.json's wall_s); "total" adds building the scenario's
workload, routes and ideal times and closing the tables.

    python bench/bench_fluid.py               # both (about 1 min)
    python bench/bench_fluid.py --only a      # just (a)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pktsim.backends import backend
from pktsim.experiment import prepare
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder


def timed_run(name: str, scenario: Scenario, out: Path) -> tuple[dict, float]:
    """Prepare and run ``scenario`` on backend ``name`` with traces into ``out``; returns (summary,
    total wall seconds)."""
    t0 = time.perf_counter()
    recorder = Recorder(out, scenario.model_dump(mode="json"), scenario.traces.part_rows)
    summary = backend(name).run(prepare(scenario), recorder)
    return summary, time.perf_counter() - t0


def bench_core(mib: int, tmp: Path) -> None:
    sc = load_scenario(topology="bench", workload="permutation", lb="ecmp",
                       overrides=[f"workload.jobs.0.bytes={mib}MiB"])
    tiny = load_scenario(topology="bench", workload="permutation", overrides=["workload.jobs.0.bytes=64KiB"])
    for name in ("fluid", "packet"):  # first use of pyarrow's writers etc. is slow: not timed
        timed_run(name, tiny, tmp / f"warm-{name}")
    f, f_total = timed_run("fluid", sc, tmp / "a-fluid")
    p, p_total = timed_run("packet", sc, tmp / "a-packet")
    cf, cp = f["jobs"][0]["cct_ns"][0], p["jobs"][0]["cct_ns"][0]
    print(f"(a) bench permutation, {mib} MiB flows, ECMP ({f['flows']} flows, {p['packet_hops']:,} packet-hops)")
    print(f"    packet  loop {p['wall_s']:8.3f} s  total {p_total:7.3f} s  CCT {cp / 1e6:.4f} ms  "
          f"({p['events']:,} events)")
    print(f"    fluid   loop {f['wall_s']:8.4f} s  total {f_total:7.3f} s  CCT {cf / 1e6:.4f} ms  "
          f"({f['events']} rate recomputations)")
    print(f"    speed-up: {p['wall_s'] / f['wall_s']:,.0f}x (loop), {p_total / f_total:,.0f}x (total); "
          f"CCT rel. error (packet - fluid) / packet = {(cp - cf) / cp:+.5f}")


def bench_large(tmp: Path) -> None:
    sc = load_scenario(topology="ls32x64x32", workload="ring_allreduce_64jobs")
    f, total = timed_run("fluid", sc, tmp / "b-fluid")
    slow = sorted(j["slowdown"] for j in f["jobs"])
    print(f"(b) ls32x64x32, 64 x 32-rank ring AllReduce (64 MiB, random placement), ECMP: "
          f"{f['messages']:,} messages, {f['flows']:,} flows")
    print(f"    fluid   loop {f['wall_s']:8.2f} s  total {total:7.2f} s  ({f['events']:,} rate recomputations, "
          f"{f['events'] / f['wall_s']:,.0f}/s; standing for {f['packet_hops']:,} packet-hops)")
    print(f"    simulated {f['sim_time_ns'] / 1e6:.3f} ms; job slowdown vs ideal: min {slow[0]:.2f}x, "
          f"median {slow[len(slow) // 2]:.2f}x, max {slow[-1]:.2f}x (ECMP collisions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("a", "b"), help="run one part")
    parser.add_argument("--mib", type=int, default=64, help="(a): flow size in MiB (default 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "a"):
            bench_core(args.mib, Path(tmp))
        if args.only in (None, "b"):
            bench_large(Path(tmp))


if __name__ == "__main__":
    main()
