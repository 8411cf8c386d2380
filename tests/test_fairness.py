"""Fair shares (pktsim/analysis/fairness.py): max-min allocations against hand computations, and
what traces/README.md promises for every run over seeded random scenarios, every load-balancing
scheme each backend supports and both backends:

- per phase, the fair rates recomputed here from the ``flows`` table (routes from the recorded
  paths, competing phases by brute force over every pair of intervals, one row per flow) are a
  max-min allocation: no link over capacity, and every flow has a bottleneck link (saturated, and
  no flow on it faster) — the certificate; the ``congestion`` row's min / median / Jain agree;
- 1/n <= Jain <= 1, min <= median, achieved throughput <= host link rate x messages;
- per job, ``summary.json``'s fair rate, Jain and throughput are the means / ratio of its phases'
  rows, and its FCT percentiles those of the ``messages`` table (p50 <= p99);
- packet and fluid backends give the same fair rates under ECMP (same paths) wherever the phases'
  competing sets are the same.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from pktsim.analysis.fairness import jain_index, max_min_fair_gbps
from pktsim.errors import InputError
from pktsim.experiment import prepare
from pktsim.fabric.selectors import SCHEMES
from pktsim.fluid.backend import FluidBackend, FluidSimulation
from pktsim.fluid.maxmin import max_min_rates, max_min_rates_by_bottlenecks
from pktsim.packet.backend import Simulation
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder

# ---------------------------------------------------------------------------------------------
# 1. Hand-computed allocations


def test_two_flows_share_a_link_and_a_third_is_alone() -> None:
    rates = max_min_fair_gbps([[0], [0], [1]], [[1.0], [1.0], [1.0]], [1, 1, 1], [10.0, 10.0])
    assert rates.tolist() == pytest.approx([5.0, 5.0, 10.0])
    # The same flows as one route of two: each of them still gets 5.
    assert max_min_fair_gbps([[0], [1]], [[1.0], [1.0]], [2, 1], [10.0, 10.0]).tolist() == pytest.approx([5.0, 10.0])


@pytest.mark.parametrize("n", [1, 2, 5])
def test_parking_lot(n: int) -> None:
    """n links of capacity C in a chain, one short flow on each and one long flow over all of them:
    every flow gets C/2."""
    c = 40.0
    links = [[i] for i in range(n)] + [list(range(n))]
    rates = max_min_fair_gbps(links, [[1.0] * len(row) for row in links], [1] * (n + 1), [c] * n)
    assert rates.tolist() == pytest.approx([c / 2] * (n + 1))


def test_parking_lot_with_uneven_short_flows() -> None:
    """k_i short flows on link i of the chain (capacities C_i): the long flow gets the smallest
    C_i / (k_i + 1); the short flows on link i share what it leaves, (C_i - long) / k_i."""
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 6)
        k = [rng.randint(1, 4) for _ in range(n)]
        cap = [rng.choice([10.0, 25.0, 40.0, 100.0]) for _ in range(n)]
        links = [[i] for i in range(n)] + [list(range(n))]
        rates = max_min_fair_gbps(links, [[1.0] * len(row) for row in links], k + [1], cap)
        long = min(c / (ki + 1) for c, ki in zip(cap, k))
        assert rates[-1] == pytest.approx(long)
        assert rates[:-1].tolist() == pytest.approx([(c - long) / ki for c, ki in zip(cap, k)])


def test_a_spread_flow_loads_each_path_with_its_share() -> None:
    """Flow A puts half its traffic on each of links 0 and 1 (capacity 10), flow B all of its on
    link 0: link 0 carries 0.5 a + b = 10 with a = b, so both get 20/3 (link 1 keeps room)."""
    rates = max_min_fair_gbps([[0, 1], [0]], [[0.5, 0.5], [1.0]], [1, 1], [10.0, 10.0])
    assert rates.tolist() == pytest.approx([20 / 3, 20 / 3])


def test_bottleneck_rounds_give_progressive_fillings_allocation() -> None:
    """Random instances (repeated links, weights 0 to 3, uneven capacities): the allocation
    frozen a bottleneck level at a time equals the one frozen a rate level at a time."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        n_links, n, width = rng.integers(2, 30), rng.integers(1, 60), rng.integers(1, 5)
        links = rng.integers(0, n_links, size=(n, width))
        weights = rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, 3.0], size=(n, width))
        weights[:, 0] = np.maximum(weights[:, 0], 0.5)
        capacity = np.append(rng.choice([10.0, 25.0, 40.0, 100.0], size=n_links), np.inf)
        assert max_min_rates_by_bottlenecks(links, weights, capacity) == pytest.approx(
            max_min_rates(links, weights, capacity), rel=1e-12)


def test_jain_index() -> None:
    assert jain_index(np.array([3.0, 3.0, 3.0])) == pytest.approx(1.0)
    assert jain_index(np.array([1.0, 3.0])) == pytest.approx(16 / 20)
    assert jain_index(np.array([1.0, 1e-9, 1e-9, 1e-9])) == pytest.approx(1 / 4, rel=1e-6)


def test_ecmp_permutation_slowest_flow_is_link_rate_over_congestion(tmp_path: Path) -> None:
    """One phase, every link 100 Gbit/s, every flow one path, each host sending and receiving one
    flow: the busiest link's k flows get 100 / k, and no flow less."""
    sc = load_scenario(topology="bench", workload="permutation", overrides=["workload.jobs.0.bytes=64KiB"])
    _, directory = _run(sc, "fluid", tmp_path)
    (row,) = _table(directory, "congestion")
    assert row["congestion"] > 1
    assert row["fair_min_gbps"] == pytest.approx(100 / row["congestion"])



def test_a_rings_overlapping_steps_do_not_compete_with_each_other(tmp_path: Path) -> None:
    """A packed ring on bench under ECMP: every ring flow has its links to itself (one flow per
    host link each way; the leaf-crossing flows are one per leaf pair, so no two share a path),
    though step k + 1 starts before step k has ended on the same connections: every phase's
    slowest message gets the whole 100 Gbit/s."""
    sc = load_scenario(topology="bench", workload="ring_allreduce", overrides=["workload.jobs.0.bytes=1MiB"])
    _, directory = _run(sc, "packet", tmp_path)
    rows = _table(directory, "congestion")
    assert len(rows) > 1 and all(r["congestion"] == 1 for r in rows)
    starts = sorted((r["start_ns"], r["end_ns"]) for r in rows)
    assert any(b[0] < a[1] for a, b in zip(starts, starts[1:])), "the steps should overlap"
    assert all(r["fair_min_gbps"] == pytest.approx(100) for r in rows)


def test_a_sprayed_connection_counts_once_however_its_messages_split(tmp_path: Path) -> None:
    """A packed ring on bench, sprayed, with messages of two or three packets: each one lands on
    other spines, or all on one (then it has a path), yet every ring connection is one flow and
    alone on its leaf's links: every phase's slowest message gets the whole 100 Gbit/s."""
    sc = load_scenario(topology="bench", lb="spray", overrides=[
        'workload.jobs=[{"name": "job0", "collective": "ring_allreduce", "ranks": 32, "bytes": "256KiB"}]'])
    _, directory = _run(sc, "packet", tmp_path)
    flows = _table(directory, "flows")
    assert any(f["path"] is None for f in flows) and any(f["path"] is not None and f["spine_bytes"][0]["node"]
                                                         .startswith("spine") for f in flows)
    assert all(r["fair_min_gbps"] == pytest.approx(100) for r in _table(directory, "congestion"))

# ---------------------------------------------------------------------------------------------
# 2. Properties over random scenarios


def _supported(backend: str) -> list[str]:
    """The schemes of the registry ``backend`` runs (the fluid one: on the ideal transport)."""
    if backend == "packet":
        return list(SCHEMES)
    schemes = []
    for s in SCHEMES:
        try:
            if FluidBackend().unsupported(load_scenario(lb=s)) is None:
                schemes.append(s)
        except InputError:  # needs what the ideal transport has not (reps: echoed entropies)
            pass
    return schemes


COLLECTIVES = ["ring_allreduce", "alltoall", "permutation", "allgather", "reduce_scatter"]
CASES = {"packet": 18, "fluid": 12}


def _random_scenario(seed: int, backend: str) -> Scenario:
    rng = random.Random(seed)
    schemes = _supported(backend)
    scheme = schemes[seed % len(schemes)]
    spines, leaves, per_leaf = rng.randint(2, 4), rng.randint(2, 4), rng.randint(1, 3)
    hosts = leaves * per_leaf
    n_jobs = rng.choice([1, 2]) if hosts >= 4 else 1
    overrides = [
        f"lb.scheme={scheme}", f"topology.spines={spines}", f"topology.leaves={leaves}",
        f"topology.hosts_per_leaf={per_leaf}", f"topology.link_gbps={rng.choice([100, 200])}",
        "traces.queue_interval_ns=1us", f"seed={seed}",
    ]
    jobs = []
    for j in range(n_jobs):
        collective = rng.choice(COLLECTIVES)
        most = hosts // n_jobs
        ranks = rng.randint(2, most)
        job = {"name": f"job{j}", "collective": collective, "ranks": ranks, "placement": "random",
               "bytes": rng.choice([4096, 40_000, 200_000]), "iterations": rng.choice([1, 2]),
               "compute_gap_ns": 2000, "start_ns": rng.choice([0, 0, 3000])}
        if collective == "permutation":
            job["shift"] = 1
        jobs.append(job)
    overrides.append(f"workload.jobs={jobs}".replace("'", '"'))
    if scheme == "split":
        overrides.append("lb.subflows=3")
    if backend == "packet" and (scheme == "reps" or rng.random() < 0.5):
        overrides.append(f"nic.transport={rng.choice(['sr', 'gbn'])}")
    return load_scenario(overrides=overrides)


def _run(sc: Scenario, backend: str, tmp_path: Path):
    exp = prepare(sc)
    sim = Simulation(exp) if backend == "packet" else FluidSimulation(exp)
    directory = tmp_path / backend
    summary = sim.run(Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows))
    return (exp, sim.dag, summary), directory


def _table(directory: Path, name: str) -> list[dict]:
    return pads.dataset(directory / name).to_table().to_pylist()


def _route(fabric, flow: dict) -> dict[int, float]:
    """The links a recorded flow loaded, with its share of traffic on each (from the flows table)."""
    index = fabric.link_index
    if flow["path"] is not None:
        return {index[uv]: 1.0 for uv in zip(flow["path"], flow["path"][1:])}
    a, b = fabric.tor_of[flow["src"]], fabric.tor_of[flow["dst"]]
    share = {index[flow["src"], a]: 1.0, index[b, flow["dst"]]: 1.0}
    total = sum(e["bytes"] for e in flow["spine_bytes"])
    for e in flow["spine_bytes"]:
        switches = fabric.via(a, b, e["node"])
        for uv in zip(switches, switches[1:]):
            share[index[uv]] = share.get(index[uv], 0.0) + e["bytes"] / total
    return share


def _class(fabric, flow: dict, by_endpoints: bool) -> tuple:
    """A recorded flow's class: its endpoints when it spread over several paths or its scheme's
    paths vary (``by_endpoints``), else its path."""
    if by_endpoints or flow["path"] is None:
        return ("ends", flow["src"], flow["dst"])
    return tuple(sorted(_route(fabric, flow)))


def _fair_phases(exp, dag, directory: Path) -> dict[tuple, dict]:
    """Per phase with a congestion row: its message fair rates recomputed from the traces, and
    the keys of its competing phases; checks the max-min certificate of every allocation."""
    fabric = exp.fabric
    capacity = np.array([fabric.link_gbps(u, v) for u, v in fabric.links])
    messages = {m["msg_id"]: m for m in _table(directory, "messages")}
    phase_of = {}
    for w_id, op, step in zip(range(len(exp.workload.bytes)), exp.workload.op.tolist(), exp.workload.step.tolist()):
        phase_of[w_id] = (op, step)
    flows_of: dict[tuple, list[dict]] = defaultdict(list)
    mean_share: dict[tuple, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[tuple, int] = defaultdict(int)
    for f in _table(directory, "flows"):
        flows_of[phase_of[f["msg_id"]]].append(f)
        c = _class(fabric, f, exp.lb.varying_paths)
        count[c] += 1
        for link, w in _route(fabric, f).items():
            mean_share[c][link] += w
    mean_share = {c: {link: w / count[c] for link, w in row.items()} for c, row in mean_share.items()}
    span: dict[tuple, list[float]] = {}  # first ready, last end of the phase's messages (ps)
    for i, key in phase_of.items():
        lo, hi = span.get(key, (float("inf"), -1))
        span[key] = [min(lo, dag.ready_ps[i]), max(hi, dag.end_ps[i])]
    ops = {(op.job, op.iteration, op.collective): op.op for op in exp.workload.collectives}
    out = {}
    for row in _table(directory, "congestion"):
        key = (ops[row["job"], row["iteration"], row["collective"]], row["step"])
        start, end = span[key]
        competing = sorted(k for k, (s, e) in span.items() if s <= end and e >= start)
        # a route carries the most flows any one competing phase puts on it (one connection's
        # consecutive messages in overlapping phases are one flow)
        # a path, or the endpoints of a flow that spread, is one class loading each link with its
        # flows' mean share; a class carries the most flows any one competing phase puts on it
        # (one connection's consecutive messages in overlapping phases are one flow)
        flows_on: dict[tuple, int] = {}
        for k in competing:
            here: dict[tuple, int] = defaultdict(int)
            for f in flows_of[k]:
                here[_class(fabric, f, exp.lb.varying_paths)] += 1
            for c, n in here.items():
                flows_on[c] = max(flows_on.get(c, 0), n)
        classes = [c for c, n in flows_on.items() for _ in range(n)]  # one entry per flow
        shares = [mean_share[c] for c in classes]
        rates = max_min_fair_gbps([list(r) for r in shares], [list(r.values()) for r in shares], [1] * len(classes),
                                  capacity)
        _check_certificate(shares, rates, capacity)
        rate_of = dict(zip(classes, rates))
        need: dict[int, float] = defaultdict(float)
        for f in flows_of[key]:
            r = rate_of[_class(fabric, f, exp.lb.varying_paths)]
            need[f["msg_id"]] = max(need[f["msg_id"]], f["bytes"] * 8 / r)
        x = np.array([messages[m]["bytes"] * 8 / t for m, t in need.items() if messages[m]["bytes"]])
        out[key] = {"row": row, "rates": x, "competing": competing}
    return out


def _check_certificate(routes: list[dict[int, float]], rates: np.ndarray, capacity: np.ndarray) -> None:
    load = defaultdict(float)
    fastest = defaultdict(float)
    for route, r in zip(routes, rates):
        for link, w in route.items():
            load[link] += w * r
            fastest[link] = max(fastest[link], r)
    for link, total in load.items():
        assert total <= capacity[link] * (1 + 1e-9), (link, total)
    for route, r in zip(routes, rates):
        assert any(load[link] >= capacity[link] * (1 - 1e-7) and r >= fastest[link] * (1 - 1e-7) for link in route), \
            "a flow without a bottleneck link"


@pytest.mark.parametrize("backend,seed", [(b, s) for b in ("packet", "fluid") for s in range(CASES[b])])
def test_fair_shares_hold_over_random_scenarios(backend: str, seed: int, tmp_path: Path) -> None:
    sc = _random_scenario(seed, backend)
    (exp, dag, summary), directory = _run(sc, backend, tmp_path)
    phases = _fair_phases(exp, dag, directory)
    host_gbps = max(exp.fabric.host_link_gbps(h) for h in exp.fabric.hosts)
    for p in phases.values():
        row, x = p["row"], p["rates"]
        if not len(x):
            assert row["fair_min_gbps"] is None
            continue
        assert row["fair_min_gbps"] == pytest.approx(x.min(), rel=1e-9)
        assert row["fair_median_gbps"] == pytest.approx(float(np.median(x)), rel=1e-9)
        assert row["fair_jain"] == pytest.approx(jain_index(x), rel=1e-9)
        assert 1 / len(x) * (1 - 1e-12) <= row["fair_jain"] <= 1 + 1e-12
        assert row["fair_min_gbps"] <= row["fair_median_gbps"] <= host_gbps * (1 + 1e-12)
        assert 0 < row["throughput_gbps"] <= host_gbps * row["messages"] * (1 + 1e-9)
        assert row["throughput_gbps"] == pytest.approx(row["bytes"] * 8 / row["duration_ns"], rel=2e-3)
    rows = _table(directory, "congestion")
    fct: dict[str, list[int]] = defaultdict(list)
    for m in _table(directory, "messages"):
        fct[m["job"]].append(m["fct_ns"])
    for job in summary["jobs"]:
        mine = [r for r in rows if r["job"] == job["name"]]
        assert job["fct_p50_ns"] == pytest.approx(np.percentile(fct[job["name"]], 50))
        assert job["fct_p99_ns"] == pytest.approx(np.percentile(fct[job["name"]], 99))
        assert job["fct_p50_ns"] <= job["fct_p99_ns"]
        if not mine:
            assert job["fair_rate_gbps"] is None and job["throughput_gbps"] is None
            continue
        assert job["fair_rate_gbps"] == pytest.approx(np.mean([r["fair_min_gbps"] for r in mine]))
        assert job["fair_jain"] == pytest.approx(np.mean([r["fair_jain"] for r in mine]))
        assert job["throughput_gbps"] == pytest.approx(
            sum(r["bytes"] for r in mine) * 8 / sum(r["duration_ns"] for r in mine), rel=2e-3)


@pytest.mark.parametrize("workload,overrides", [
    ("permutation", ["workload.jobs.0.bytes=256KiB"]),
    ("ring_allreduce", ["workload.jobs.0.bytes=256KiB", "workload.jobs.0.ranks=16"]),
    ("multi_job", ["workload.jobs.0.bytes=128KiB", "workload.jobs.1.bytes=128KiB"]),
])
def test_packet_and_fluid_agree_on_ecmp_fair_rates(workload: str, overrides: list[str], tmp_path: Path) -> None:
    """Same paths (ECMP, same entropy) -> the same fair rates, for every phase whose competing
    phases are the same in both runs (their timing decides which phases overlap)."""
    sc = load_scenario(topology="bench", workload=workload, overrides=overrides)
    seen = {}
    for backend in ("packet", "fluid"):
        (exp, dag, _), directory = _run(sc, backend, tmp_path)
        seen[backend] = _fair_phases(exp, dag, directory)
    assert seen["packet"].keys() == seen["fluid"].keys()
    same = [k for k in seen["packet"] if seen["packet"][k]["competing"] == seen["fluid"][k]["competing"]]
    assert same
    for key in same:
        a, b = seen["packet"][key]["row"], seen["fluid"][key]["row"]
        for col in ("fair_min_gbps", "fair_median_gbps", "fair_jain"):
            assert a[col] == pytest.approx(b[col], rel=1e-12), (key, col)
