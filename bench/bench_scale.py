"""Scale benchmark: memory and time of the workload DAG, and the fluid backend at paper scale.

Every case runs in its own child process, so its peak RSS (``wait4``'s ``ru_maxrss``) is its own.

- ``dag8`` / ``dag32``: ``ls16x16x16``, ``ring_allreduce_256`` at 4 MiB per rank with 8 / 32 slices
  (2.09 M / 8.36 M messages): the experiment prepared (fabric, DAG, ideal times, flow plan, packet
  count) and a fresh :class:`~pktsim.workload.execution.DagExecution`, no run. Prints the setup
  time per stage, peak RSS and the bytes per message above the same scenario with 1 slice.
  Targets: <= 200 B per message of DAG + execution state; build and ideal times linear in messages.
- ``fluid2048``: ``pktsim run -t ls32x64x32 --backend fluid``, one 2048-rank ring AllReduce of 64 MiB,
  random placement (8.4 M messages). Target: under 60 s and 3 GB.
- ``fluid64``: the same fabric, 64 concurrent 32-rank rings (``workloads/ring_allreduce_64jobs.yaml``).
  Target: under 10 s.
- ``packet8`` / ``packet32`` (only with ``--full``; minutes each): the packet runs of ``dag8`` /
  ``dag32`` to the end. Targets: under 700 MB / 2 GB peak RSS.

    python bench/bench_scale.py                     # dag8 dag32 fluid64 fluid2048
    python bench/bench_scale.py dag8 fluid64        # some cases
    python bench/bench_scale.py --full              # and the packet runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

RING256 = ["-t", "ls16x16x16", "-w", "ring_allreduce_256", "--set", "workload.jobs.0.bytes=4MiB"]
FLUID2048 = ["-t", "ls32x64x32", "--backend", "fluid", "--set", "workload.jobs.0.ranks=2048",
             "--set", "workload.jobs.0.placement=random", "--set", "workload.jobs.0.bytes=64MiB"]
FLUID64 = ["-t", "ls32x64x32", "-w", "ring_allreduce_64jobs", "--backend", "fluid"]


def _child_dag(slices: int) -> None:
    """In the child: prepare the ring of ``slices`` slices, make its execution state, print JSON."""
    import resource

    from pktsim.analysis.ideal import ideal_times
    from pktsim.experiment import prepare
    from pktsim.fabric.fabric import Fabric
    from pktsim.fabric.topology import build_graph
    from pktsim.planning.flow_plan import FlowPlanner
    from pktsim.scenario import load_scenario
    from pktsim.workload.collectives import build_workload

    sc = load_scenario(topology="ls16x16x16", workload="ring_allreduce_256",
                       overrides=["workload.jobs.0.bytes=4MiB", f"workload.jobs.0.slices={slices}"])
    # Stage by stage (what prepare() does), timed; then prepare() itself for the execution state.
    t0 = time.perf_counter()
    fabric = Fabric(build_graph(sc.topology), sc.seed, sc.switch.latency_ns)
    t1 = time.perf_counter()
    wl = build_workload(sc.workload.jobs, fabric.hosts, sc.topology.hosts_per_tor, sc.seed)
    t2 = time.perf_counter()
    ideal_times(fabric, sc, wl)
    t3 = time.perf_counter()
    plan = FlowPlanner(sc, fabric, wl)
    plan.packets(wl, sc.nic.payload_bytes)
    t4 = time.perf_counter()
    del wl, plan
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t5 = time.perf_counter()
    ex = prepare(sc)
    dag = ex.execution()
    t6 = time.perf_counter()
    with open("/proc/self/status") as f:  # resident now (the DAG and execution state live)
        rss_now = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    print(json.dumps({"rss_now": rss_now,
        "messages": len(ex.workload.messages), "fabric_s": t1 - t0, "build_s": t2 - t1, "ideal_s": t3 - t2,
        "plan_s": t4 - t3, "prepare_s": t6 - t5, "rss_stages": rss_before, "ops": len(dag.op_left),
    }))


def _measured(argv: list[str], timeout_s: float) -> tuple[int, float, int, str]:
    """Run ``argv`` as a child and wait for it with ``wait4``: (exit code, wall s, peak RSS bytes, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = t0 + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.stderr.write(err.read()[-2000:])
        return proc.returncode, wall, usage.ru_maxrss * 1024, out.read()


def _status(code: int) -> str:
    return "ok" if code == 0 else ("TIMEOUT" if code == -9 else f"exit {code}")


def bench_dag(slices: int, baseline: tuple[int, int] | None) -> tuple[int, int]:
    """Returns (messages, peak RSS) for the bytes-per-message figure of the next case."""
    code, wall, rss, out = _measured([sys.executable, __file__, "--child-dag", str(slices)], 900)
    if code != 0:
        print(f"dag{slices}: {_status(code)}")
        return 0, 0
    r = json.loads(out)
    n = r["messages"]
    line = (f"dag{slices}: {n:,} messages  fabric {r['fabric_s']:.2f} s  build {r['build_s']:.2f} s  "
            f"ideal {r['ideal_s']:.2f} s  plan+packets {r['plan_s']:.2f} s  prepare+execution {r['prepare_s']:.2f} s  "
            f"peak RSS {rss / 2**20:,.0f} MiB  child wall {wall:.1f} s")
    line += f"  RSS after prepare+execution {r['rss_now'] / 2**20:,.0f} MiB"
    if baseline is not None and baseline[0] and n > baseline[0]:
        per = (r["rss_now"] - baseline[1]) / (n - baseline[0])
        line += f"  ~{per:.0f} B/message (live RSS over dag1, per extra message)"
    print(line, flush=True)
    return n, r["rss_now"]


def bench_cli(name: str, args: list[str], timeout_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "pktsim", "run", *args, "--quiet", "-o", os.path.join(tmp, "run")]
        code, wall, rss, _ = _measured(argv, timeout_s)
        extra = ""
        summary = os.path.join(tmp, "run", "summary.json")
        if code == 0 and os.path.exists(summary):
            with open(summary) as f:
                s = json.load(f)
            extra = (f"  loop {s['wall_s']:.1f} s  {s['messages']:,} messages  {s['flows']:,} flows  "
                     f"{s['events']:,} events  CCT {s['jobs'][0]['cct_ns'][0] / 1e6:.4f} ms")
        print(f"{name}: {_status(code)}  wall {wall:.1f} s  peak RSS {rss / 2**20:,.0f} MiB{extra}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", help="dag8 dag32 fluid64 fluid2048 packet8 packet32 (default: all but packet*)")
    p.add_argument("--full", action="store_true", help="also the packet runs (minutes)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per fluid/packet case (600)")
    p.add_argument("--child-dag", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_dag is not None:
        _child_dag(a.child_dag)
        return
    cases = a.cases or ["dag8", "dag32", "fluid64", "fluid2048"] + (["packet8", "packet32"] if a.full else [])
    baseline = None
    if any(c.startswith("dag") for c in cases):
        baseline = bench_dag(1, None)
    for c in cases:
        if c.startswith("dag"):
            bench_dag(int(c[3:]), baseline)
        elif c == "fluid64":
            bench_cli(c, FLUID64, a.timeout)
        elif c == "fluid2048":
            bench_cli(c, FLUID2048, a.timeout)
        elif c.startswith("packet"):
            bench_cli(c, [*RING256, "--set", f"workload.jobs.0.slices={c[6:]}"], a.timeout)
        else:
            p.error(f"unknown case {c}")


if __name__ == "__main__":
    main()
