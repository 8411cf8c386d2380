"""Helpers for the physics and load-balancing tests: build micro-scenarios, run them with a recorder,
read the tables back, and independent reference models (exact serialisation times, a FIFO queue).

Nothing here reuses pktsim's own timing code: the reference numbers are computed from first
principles (bits / rate, store-and-forward, a work-conserving FIFO) so the tests check the simulator
against physics, not against itself.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from pktsim.scenario import Scenario
from pktsim.experiment import prepare
from pktsim.packet.backend import Simulation
from pktsim.traces import Recorder

PS_PER_NS = 1000

# Micro-scenario NIC: 1100 bytes on the wire, 1000 bytes of payload. At 100 Gb/s a full packet takes
# exactly 88 ns and every byte 80 ps, so the closed forms below are whole nanoseconds.
MTU = 1100
HEADER = 100
PAYLOAD = MTU - HEADER


# ---------------------------------------------------------------------------------------------
# Scenarios and runs


def leaf_spine(spines: int = 2, leaves: int = 2, hosts_per_leaf: int = 2, gbps: float = 100,
               host_gbps: float | None = None, delay_ns: int = 1000) -> dict:
    topo = {"kind": "leaf_spine", "spines": spines, "leaves": leaves, "hosts_per_leaf": hosts_per_leaf,
            "link_gbps": gbps, "link_delay_ns": delay_ns}
    if host_gbps is not None:
        topo["host_link_gbps"] = host_gbps
    return topo


def fat_tree(k: int = 4, gbps: float = 100, delay_ns: int = 1000) -> dict:
    return {"kind": "fat_tree", "k": k, "link_gbps": gbps, "link_delay_ns": delay_ns}


def make_scenario(
    topology: dict, jobs: list[dict], *, lb: str = "ecmp", subflows: int = 1, mtu: int = MTU,
    header: int = HEADER, latency_ns: int = 0, seed: int = 1, queue_interval_ns: int = 10_000,
    part_rows: int = 200_000,
) -> Scenario:
    return Scenario.model_validate({
        "name": "test",
        "seed": seed,
        "topology": topology,
        "nic": {"mtu_bytes": mtu, "header_bytes": header},
        "switch": {"latency_ns": latency_ns},
        "lb": {"scheme": lb, "subflows": subflows},
        "workload": {"jobs": jobs},
        "traces": {"queue_interval_ns": queue_interval_ns, "part_rows": part_rows},
    })


def one_message(src: str, dst: str, nbytes: int) -> list[dict]:
    """A workload of exactly one message src -> dst (an incast of two ranks)."""
    return [{"name": "job0", "collective": "incast", "ranks": 2, "receiver": 0, "placement": [dst, src],
             "bytes": nbytes}]


@dataclass
class Run:
    scenario: Scenario
    sim: Simulation
    summary: dict
    dir: Path

    def table(self, name: str) -> pa.Table:
        return pads.dataset(self.dir / name).to_table()

    def rows(self, name: str) -> list[dict[str, Any]]:
        return self.table(name).to_pylist()


def run(sc: Scenario, directory: Path) -> Run:
    """Run ``sc`` on the packet backend, writing its tables under ``directory``."""
    sim = Simulation(prepare(sc))
    summary = sim.run(Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows))
    return Run(sc, sim, summary, directory)


@pytest.fixture
def run_in(tmp_path: Path):
    """``run_in(scenario, name="run")`` runs a scenario into ``tmp_path/name``."""
    def _run(sc: Scenario, name: str = "run") -> Run:
        return run(sc, tmp_path / name)
    return _run


# ---------------------------------------------------------------------------------------------
# Reference physics


def ser_ps(nbytes: int, gbps: float) -> int:
    """Exact serialisation time of ``nbytes`` at ``gbps`` in ps; the tests pick rates and sizes
    for which it is a whole number of picoseconds."""
    t = Fraction(nbytes * 8 * 1000) / Fraction(gbps).limit_denominator(10**6)
    assert t.denominator == 1, f"{nbytes} B at {gbps} Gb/s is not a whole number of ps"
    return int(t)


def ps_per_byte(gbps: float) -> Fraction:
    return Fraction(8000) / Fraction(gbps).limit_denominator(10**6)


def ns(ps: int | Fraction) -> int:
    """ps -> ns, asserting the value is a whole number of ns (the micro-scenarios are chosen so)."""
    assert ps % PS_PER_NS == 0, f"{ps} ps is not a whole number of ns"
    return int(ps // PS_PER_NS)


def fifo_samples(arrivals: list[tuple[int, int]], interval_ps: int) -> dict[int, tuple[Fraction, Fraction]]:
    """Reference model of one FIFO egress port.

    ``arrivals`` are (enqueue time, serialisation time) in ps. The backlog, in ps of work, is what
    is queued plus the unsent part of the packet on the wire: it jumps by a packet's serialisation
    time at enqueue and drains at one ps per ps while positive. Returns, for every sampling interval
    [a, a + interval) in which the link transmitted, ``{a: (max backlog, integral of backlog)}``
    (ps and ps^2). Brute force over the breakpoints; independent of pktsim's incremental bookkeeping.
    """
    arrivals = sorted(arrivals)
    by_interval: dict[int, list[Fraction]] = {}  # a -> [max, area, busy]
    t = 0
    backlog = Fraction(0)

    def advance(to: int) -> None:
        nonlocal t, backlog
        while t < to:
            a = (t // interval_ps) * interval_ps
            end = min(to, a + interval_ps)
            dt = end - t
            if backlog > 0:
                stats = by_interval.setdefault(a, [Fraction(0), Fraction(0), Fraction(0)])
                stats[0] = max(stats[0], backlog)  # backlog at t (an interval start or an enqueue)
                drained = min(backlog, dt)
                stats[1] += backlog * drained - drained * drained / 2
                stats[2] += drained
                backlog -= drained
            t = end

    for when, work in arrivals:
        advance(when)
        backlog += work
        a = (when // interval_ps) * interval_ps
        stats = by_interval.setdefault(a, [Fraction(0), Fraction(0), Fraction(0)])
        stats[0] = max(stats[0], backlog)
    advance(t + int(backlog) + 1)
    return {a: (s[0], s[1]) for a, s in sorted(by_interval.items()) if s[2] > 0}


def directed_links(paths: list[list[str]]) -> Counter:
    """How many paths cross each directed link (u, v)."""
    count: Counter = Counter()
    for p in paths:
        for u, v in zip(p, p[1:]):
            count[u, v] += 1
    return count


def ecmp_choice(switch, key: int, group):
    """The port ``switch`` picks in ``group`` for a packet with 5-tuple hash ``key``: its
    ``select(pkt, group)`` policy when it has one, else the salted hash that
    ``pktsim.routing.salted_hash`` documents (``group[salted_hash(key, salt) % len(group)]``)."""
    select = getattr(switch, "select", None)
    if select is not None:
        return select(SimpleNamespace(key=key), group)
    from pktsim.fabric.hashing import salted_hash

    return group[salted_hash(key, switch.salt) % len(group)]
