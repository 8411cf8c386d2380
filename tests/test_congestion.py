"""Congestion per phase (busiest fabric link load / largest message), checked against the paths
the flows recorded, and ECMP's balls-into-bins statistics."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import run
from pktsim.analysis.congestion import LinkLoads
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.hashing import flow_key
from pktsim.scenario import load_scenario
from pktsim.experiment import prepare
from pktsim.packet.backend import Simulation
from pktsim.fabric.topology import build_graph, hosts


def _fabric_links(path: list[str]) -> list[tuple[str, str]]:
    switches = path[1:-1]
    return list(zip(switches, switches[1:]))


@pytest.mark.parametrize("lb", ["ecmp", "split"])
def test_congestion_equals_busiest_link_of_recorded_paths(lb: str, tmp_path: Path) -> None:
    sc = load_scenario(topology="bench", workload="ring_allreduce_random", lb=lb, seed=3, overrides=[
        "workload.jobs.0.ranks=32", "workload.jobs.0.bytes=256KiB", *(["lb.subflows=2"] if lb == "split" else [])])
    r = run(sc, tmp_path / "run")
    msgs = {m["msg_id"]: m for m in r.rows("messages")}
    loads: dict[int, Counter] = defaultdict(Counter)
    largest: dict[int, int] = defaultdict(int)
    for m in msgs.values():
        largest[m["step"]] = max(largest[m["step"]], m["bytes"])
    for f in r.rows("flows"):
        for link in _fabric_links(f["path"]):
            loads[msgs[f["msg_id"]]["step"]][link] += f["bytes"]
    rows = {c["step"]: c for c in r.rows("congestion")}
    assert set(rows) == {step for step, load in loads.items() if load}
    for step, c in rows.items():
        busiest = max(loads[step].values())
        assert c["max_link_bytes"] == busiest
        assert c["congestion"] == pytest.approx(busiest / largest[step])
        link = tuple(c["busiest_link"].split("->"))
        assert loads[step][link] == busiest
    job = r.summary["jobs"][0]
    assert job["max_congestion"] == pytest.approx(max(c["congestion"] for c in rows.values()))


def test_spray_congestion_from_per_spine_bytes_and_fluid_agrees(tmp_path: Path) -> None:
    """Sprayed flows load each spine's up- and downlink with their per-spine bytes; the fluid
    backend's even split gives congestion 1 on a non-blocking permutation."""
    sc = load_scenario(topology="bench", workload="permutation", lb="spray", overrides=["workload.jobs.0.bytes=1MiB"])
    r = run(sc, tmp_path / "run")
    size = 2**20
    load: Counter = Counter()
    for f in r.rows("flows"):
        src_leaf = f"leaf{int(f['src'][1:]) // 4}"
        dst_leaf = f"leaf{int(f['dst'][1:]) // 4}"
        for entry in f["spine_bytes"]:
            load[src_leaf, entry["node"]] += entry["bytes"]
            load[entry["node"], dst_leaf] += entry["bytes"]
    (row,) = r.rows("congestion")
    assert row["max_link_bytes"] == max(load.values())
    assert row["congestion"] == pytest.approx(max(load.values()) / size)
    assert 1.0 <= row["congestion"] < 1.2

    from pktsim.fluid.backend import FluidSimulation
    fluid = FluidSimulation(prepare(sc)).run(None)
    assert fluid["jobs"][0]["max_congestion"] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [4, 16])
def test_ecmp_uses_balls_into_bins_fraction_of_uplinks(n: int) -> None:
    """n equal flows from a leaf hashed onto its n uplinks use 1 - (1 - 1/n)^n of them on average."""
    fraction = []
    for seed in range(12):
        sc = load_scenario(topology="small", workload="permutation", seed=seed, overrides=[
            f"topology.spines={n}", "topology.leaves=8", f"topology.hosts_per_leaf={n}",
            f"workload.jobs.0.ranks={8 * n}", f"workload.jobs.0.shift={n}", "workload.jobs.0.bytes=4KiB"])
        g = build_graph(sc.topology)
        names = hosts(g)
        index = {h: i for i, h in enumerate(names)}
        ecmp_path = Fabric(g, seed).ecmp_path
        sim = Simulation(prepare(sc))
        used: dict[str, set] = defaultdict(set)
        for m in sim.workload.messages:
            ((_, entropy),) = sim.planner.subflows(m)
            path = ecmp_path(m.src, m.dst, flow_key(index[m.src], index[m.dst], entropy))
            used[path[1]].add(path[2])
        fraction += [len(spines) / n for spines in used.values()]
    expected = 1 - (1 - 1 / n) ** n
    assert sum(fraction) / len(fraction) == pytest.approx(expected, abs=0.04)


@pytest.mark.parametrize("seed", range(5))
def test_link_loads_against_a_dict_per_phase(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """LinkLoads (triples summed per pair as its buffer fills) against a dict per phase: the same
    sums, and the busiest link of each phase with ties to the name that sorts last."""
    rng = random.Random(seed)
    monkeypatch.setattr(LinkLoads, "COMPACT_AT", rng.choice([1, 7, 1000]))
    names = [(f"s{rng.randrange(4)}", f"l{rng.randrange(4)}") for _ in range(12)]
    loads, want = LinkLoads(), defaultdict(Counter)
    for _ in range(300):
        phase, uv, nbytes = rng.randrange(6), rng.choice(names), rng.choice([0, 1, 5, 5, 1000])
        want[phase][uv] += nbytes
        if rng.random() < 0.5:
            loads.add(phase, loads.link(uv), nbytes)
        else:
            loads.add_many(np.array([phase]), np.array([loads.link(uv)]), np.array([nbytes]))
    phase, link, nbytes = loads.busiest()
    got = {p: (loads.links[k], b) for p, k, b in zip(phase.tolist(), link.tolist(), nbytes.tolist())}
    assert got == {p: max(c.items(), key=lambda kv: (kv[1], kv[0])) for p, c in want.items()}
