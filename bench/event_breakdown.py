"""Where a packet run's engine events go: per kind of event (the object and its callbacks), the
count and the count per packet-hop, on the benchmark scenario (bench/bench_core.py's permutation).

    python bench/event_breakdown.py                         # the transport model: --profile roce, no DCQCN
    python bench/event_breakdown.py --profile ideal --set nic.transport=sr
    python bench/event_breakdown.py --profile ideal         # the ideal fabric: 1.000 per hop

It replaces the backend's run loop (``step_events``) by one that looks at each event before it
fires, so it runs slower than a plain run; the counts are exact. The transport model's target is
at most 1.2 events per packet-hop: this shows which kinds stand between it and that.
"""

from __future__ import annotations

import argparse
import collections

import simpy

from pktsim.experiment import prepare
from pktsim.packet import backend
from pktsim.packet.backend import Simulation
from pktsim.scenario import load_scenario


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="roce")
    p.add_argument("--set", action="append", default=None, help="scenario overrides (default: nic.cc=none)")
    p.add_argument("--mib", type=int, default=2, help="flow size in MiB (default 2)")
    a = p.parse_args()
    overrides = [f"workload.jobs.0.bytes={a.mib}MiB", *(a.set if a.set is not None else ["nic.cc=none"])]
    sc = load_scenario(topology="bench", workload="permutation", profile=a.profile, overrides=overrides)
    counts: collections.Counter[str] = collections.Counter()

    def counted(env: simpy.Environment, limit: int) -> int:
        """backend.step_events, one ``env.step()`` at a time, counting each event before it fires."""
        for n in range(limit):
            if not env._queue:
                return n
            event = env._queue[0][3]
            names = ",".join(getattr(c, "__qualname__", type(c).__name__) for c in (event.callbacks or ()))
            where = ""
            if hasattr(event, "source"):  # an egress port: at a NIC (it pulls from the NIC) or at a switch
                where = " at a NIC" if event.source is not None else " at a switch"
            counts[f"{type(event).__name__}{where}: {names}"] += 1
            env.step()
        return limit

    step_events = backend.step_events
    backend.step_events = counted
    try:
        summary = Simulation(prepare(sc)).run(None)
    finally:
        backend.step_events = step_events
    hops = summary["packet_hops"]
    print(f"--profile {a.profile} {' '.join('--set ' + s for s in overrides)}")
    print(f"{summary['events']:,} events, {hops:,} packet-hops: {summary['events'] / hops:.3f} events per hop")
    for name, n in counts.most_common():
        print(f"{n:>10,}  {n / hops:6.3f}/hop  {name}")


if __name__ == "__main__":
    main()
