"""What the docs promise for every run still holds with faults, over seeded random scenarios,
every load-balancing scheme and both backends:

- every message completes exactly once, its flows carry exactly its bytes;
- no message and no collective beats its ideal (the healthy fabric's lower bound);
- per flow, every copy put on the wire arrived or was dropped: ``retransmits = spurious_retransmits
  + discarded + drops + fault_drops`` (congestion and faults counted apart);
- packets are lost to faults only at the ports of faulty links, and a link that is down carries
  no byte;
- the same scenario and seed give byte-identical tables.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from pktsim.experiment import prepare
from pktsim.fabric.selectors import SCHEMES as SCHEME_REGISTRY
from pktsim.fluid.backend import FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder
from pktsim.units import ps_to_ns

SCHEMES = [s for s in ("ecmp", "spray", "split", "split_minimal", "planned", "adaptive", "flowlet", "reps")
           if s in SCHEME_REGISTRY]
FLUID_SCHEMES = ["ecmp", "spray", "split", "split_minimal", "planned"]
COLLECTIVES = ["ring_allreduce", "alltoall", "permutation", "allgather"]
CASES = 24


def _random_scenario(seed: int, backend: str) -> Scenario:
    rng = random.Random(seed)
    schemes = SCHEMES if backend == "packet" else FLUID_SCHEMES
    scheme = schemes[seed % len(schemes)]
    spines, leaves, per_leaf = rng.randint(2, 4), rng.randint(2, 4), rng.randint(1, 3)
    hosts = leaves * per_leaf
    collective = rng.choice(COLLECTIVES)
    ranks = rng.randint(max(2, per_leaf + 1), hosts) if collective == "permutation" else rng.randint(2, hosts)
    iterations = rng.choice([1, 2])
    placement = rng.choice(["packed", "random"])
    overrides = [
        f"lb.scheme={scheme}", f"topology.spines={spines}", f"topology.leaves={leaves}",
        f"topology.hosts_per_leaf={per_leaf}", f"workload.jobs.0.collective={collective}",
        f"workload.jobs.0.ranks={ranks}", f"workload.jobs.0.bytes={rng.choice([4096, 40_000, 200_000])}",
        f"workload.jobs.0.placement={placement}",
        f"workload.jobs.0.iterations={iterations}", "workload.jobs.0.compute_gap_ns=5us",
        "routing.detect_ns=3us", "routing.converge_ns=10us", "routing.replan_ns=25us",
        "traces.queue_interval_ns=1us", f"seed={seed}",
    ]
    if collective == "permutation":
        overrides.append(f"workload.jobs.0.shift={per_leaf}")
    if scheme == "split":
        overrides.append("lb.subflows=3")
    if backend == "packet" and (scheme == "reps" or rng.random() < 0.7):
        overrides.append(f"nic.transport={rng.choice(['sr', 'gbn'])}")
    transport = any(o.startswith("nic.transport=") for o in overrides)
    links = [[f"leaf{rng.randrange(leaves)}", f"spine{rng.randrange(spines)}"] for _ in range(2)]
    kinds = ["link_degrade"] + (["link_down", "link_loss"] if transport else []) + \
        (["link_down"] if backend == "fluid" else [])
    faults = []
    for link in links[:rng.randint(1, 2)]:
        if any(f.get("link") in (link, link[::-1]) for f in faults):
            continue
        kind = rng.choice(kinds)
        at = rng.choice([0, 2_000, 8_000])
        fault = {"kind": kind, "at_ns": at, "link": link}
        if kind == "link_degrade":
            fault["gbps"] = rng.choice([25, 50])
        elif kind == "link_loss":
            fault["drop_rate"] = rng.choice([0.01, 0.05])
        faults.append(fault)
        if kind == "link_down" and (spines <= 2 or rng.random() < 0.5):
            faults.append({"kind": "link_up", "at_ns": at + rng.choice([5_000, 30_000]), "link": link})
    if iterations == 2 and placement == "packed" and rng.random() < 0.4:  # packed: h0 runs rank 0
        faults.append({"kind": "straggler", "host": "h0", "compute_factor": 2.0})
    overrides.append(f"faults={faults}".replace("'", '"'))
    return load_scenario(overrides=overrides)


def _run(sc: Scenario, backend: str, directory: Path):
    exp = prepare(sc)
    sim = Simulation(exp) if backend == "packet" else FluidSimulation(exp)
    recorder = Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows)
    summary = sim.run(recorder)
    return exp, sim.dag, summary


def _table(directory: Path, name: str) -> list[dict]:
    return pads.dataset(directory / name).to_table().to_pylist()


@pytest.mark.parametrize("backend", ["packet", "fluid"])
@pytest.mark.parametrize("seed", range(CASES))
def test_invariants_hold_with_faults(seed, backend, tmp_path):
    sc = _random_scenario(seed, backend)
    exp, dag, summary = _run(sc, backend, tmp_path)
    msgs = _table(tmp_path, "messages")
    assert sorted(m["msg_id"] for m in msgs) == list(range(len(exp.workload.messages)))  # each exactly once
    flows = _table(tmp_path, "flows")
    carried: dict[int, int] = {}
    for f in flows:
        carried[f["msg_id"]] = carried.get(f["msg_id"], 0) + f["bytes"]
        assert f["retransmits"] == f["spurious_retransmits"] + f["discarded"] + f["drops"] + f["fault_drops"], f
        assert sum(s["bytes"] for s in f["spine_bytes"]) == f["bytes"]
    assert carried == {m.msg_id: m.bytes for m in exp.workload.messages}
    slack = 1.0 if backend == "fluid" else 0
    for m in exp.workload.messages:
        assert dag.end_ps[m.msg_id] - dag.ready_ps[m.msg_id] >= exp.ideal_fct_ps[m.msg_id] - slack
    for op in exp.workload.collectives:
        assert dag.op_end_ps[op.op] - dag.op_start_ps(op.op) >= exp.ideal_op_ps[op.op] - slack
    assert len(_table(tmp_path, "faults")) == len(sc.faults)
    if backend == "packet":
        _check_fault_drops_and_dead_links(sc, exp, tmp_path)


def _check_fault_drops_and_dead_links(sc: Scenario, exp, directory: Path) -> None:
    faulty = {tuple(link) for f in exp.faults.faults for link in f.links if f.kind in ("link_down", "link_loss")}
    interval = sc.traces.queue_interval_ns
    for q in _table(directory, "queues"):
        if q["fault_drops"]:
            assert (q["node"], q["port"]) in faulty, q
    down: dict[tuple, list[tuple[int, int]]] = {}
    for f in exp.faults.link_events:
        for link in f.links:
            if f.kind == "link_down":
                down.setdefault(link, []).append((ps_to_ns(f.at_ps), 10**18))
            elif f.kind == "link_up":
                start, _ = down[link][-1]
                down[link][-1] = (start, ps_to_ns(f.at_ps))
    for row in _table(directory, "links"):
        for start, end in down.get((row["src"], row["dst"]), ()):
            # an interval wholly inside the down period carries nothing
            if row["time_ns"] >= start + interval and row["time_ns"] + interval <= end:
                assert row["bytes"] == 0, (row, start, end)


def test_faulty_runs_are_deterministic(tmp_path):
    sc = load_scenario(overrides=[
        "nic.transport=sr", "lb.scheme=spray", "workload.jobs.0.bytes=256KiB", "routing.detect_ns=5us",
        "routing.converge_ns=20us",
        'faults=[{kind: link_down, at_ns: 10us, link: [leaf0, spine1]}, '
        '{kind: link_loss, link: [leaf2, spine0], drop_rate: 0.02}, {kind: link_degrade, link: [spine3, leaf1], gbps: 40}]',
    ])
    tables = []
    for i in range(2):
        d = tmp_path / str(i)
        _run(sc, "packet", d)
        tables.append({name: pads.dataset(d / name).to_table() for name in
                       ("messages", "flows", "collectives", "queues", "links", "faults")})
    for name in tables[0]:
        assert tables[0][name].equals(tables[1][name]), name
    assert sum(tables[0]["queues"].column("fault_drops").to_pylist()) > 0
