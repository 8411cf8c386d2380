"""The fluid backend against closed forms, against max-min fairness from first principles, and
against the packet backend where the two must agree (bulk transfers, no congestion control,
unlimited buffers).

Notation as in test_physics: t = serialisation of a full packet at 100 Gb/s, d = propagation delay
of a link, h = links on the path, n = packets. With the micro NIC of conftest t = 88 ns exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from conftest import (
    HEADER, MTU, PAYLOAD, PS_PER_NS, directed_links, fat_tree, leaf_spine, make_scenario, one_message, run, ser_ps,
)

from pktsim.cli import main
from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation
from pktsim.fluid.maxmin import max_min_rates
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder

T = ser_ps(MTU, 100)
D = 1000 * PS_PER_NS


class FluidRun:
    def __init__(self, sc: Scenario, directory: Path, incremental: bool = True) -> None:
        self.sim = FluidSimulation(prepare(sc), incremental=incremental)
        self.summary = self.sim.run(Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows))
        self.dir = directory

    def rows(self, name: str) -> list[dict]:
        return pads.dataset(self.dir / name).to_table().to_pylist()


def fluid(sc: Scenario, directory: Path, incremental: bool = True) -> FluidRun:
    return FluidRun(sc, directory, incremental)


def cct(summary: dict) -> list[int]:
    return [c for j in summary["jobs"] for c in j["cct_ns"]]


# ---------------------------------------------------------------------------------------------
# Max-min fairness


def test_max_min_textbook() -> None:
    # f0 crosses L0 (10) and L1 (4); f1 only L0; f2 only L1. L1 is the first bottleneck: f0 and f2
    # get 4/2 = 2 each; f1 takes what is left of L0: 10 - 2 = 8.
    links = np.array([[0, 1], [0, 2], [1, 2]])  # link 2 is padding (infinite capacity, weight 0)
    weights = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert max_min_rates(links, weights, np.array([10.0, 4.0, np.inf])).tolist() == [2.0, 8.0, 2.0]
    # A sprayed flow with half its traffic on each of two unit links, and a flow on the first link:
    # the first link carries r/2 + r at the common level r, so r = 2/3 for both.
    rates = max_min_rates(np.array([[0, 1], [0, 2]]), np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([1.0, 1.0, np.inf]))
    assert np.allclose(rates, [2 / 3, 2 / 3])


def test_max_min_property_random() -> None:
    # The defining property: the allocation is feasible, and every flow crosses a saturated link on
    # which no flow has a larger rate (its bottleneck), so no rate can grow without lowering a smaller one.
    rng = np.random.default_rng(7)
    for _ in range(200):
        n_links, n_flows, width = rng.integers(1, 8), rng.integers(1, 12), rng.integers(1, 4)
        links = rng.integers(0, n_links, size=(n_flows, width))
        weights = rng.choice([0.25, 0.5, 1.0], size=(n_flows, width))
        weights[:, 0] = 1.0
        capacity = rng.choice([1.0, 2.5, 10.0], size=n_links)
        rate = max_min_rates(links, weights, capacity)
        load = np.zeros(n_links)
        np.add.at(load, links.ravel(), (weights * rate[:, None]).ravel())
        assert np.all(load <= capacity * (1 + 1e-9))
        saturated = load >= capacity * (1 - 1e-9)
        for f in range(n_flows):
            assert any(
                saturated[l] and rate[f] >= rate[np.any(links == l, axis=1)].max() * (1 - 1e-9)
                for l in links[f]
            ), f


# ---------------------------------------------------------------------------------------------
# A lone message: the packet closed form (test_physics derives the same numbers)

PATHS = {
    2: (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h1"),
    4: (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h2"),
    6: (fat_tree(k=4), "h0", "h4"),
}


@pytest.mark.parametrize("h", [2, 4, 6])
def test_lone_message_matches_packet_closed_form(h: int, tmp_path: Path) -> None:
    # Whole packets: n*t + (h-1)*t + h*d. Short last packet (tl): (n-1)*t + (h-1)*t + tl + h*d.
    # One packet of 500 B: h*(tl + d). The fluid drains the wire bytes at the link rate and adds
    # the pipeline's latency, so it is exact.
    topo, src, dst = PATHS[h]
    tl = ser_ps(400 + HEADER, 100)
    cases = [(100 * PAYLOAD, 100 * T + (h - 1) * T + h * D),
             (49 * PAYLOAD + 400, 49 * T + (h - 1) * T + tl + h * D),
             (400, h * (tl + D))]
    for i, (nbytes, expected_ps) in enumerate(cases):
        r = fluid(make_scenario(topo, one_message(src, dst, nbytes)), tmp_path / str(i))
        (m,) = r.rows("messages")
        assert m["fct_ns"] == m["single_path_fct_ns"] == expected_ps // PS_PER_NS
        assert m["ideal_fct_ns"] <= m["fct_ns"] and (m["ideal_fct_ns"] == m["fct_ns"]) == (i == 0)  # the bound
        (f,) = r.rows("flows")
        assert len(f["path"]) == h + 1 and f["path"][0] == src and f["path"][-1] == dst


def test_lone_message_mixed_rates(tmp_path: Path) -> None:
    # Hosts at 100 Gb/s, fabric at 400 (test_physics): FCT = n*t + t/4 + t/4 + t + 4*d.
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2, gbps=400, host_gbps=100)
    r = fluid(make_scenario(topo, one_message("h0", "h2", 40 * PAYLOAD)), tmp_path)
    (m,) = r.rows("messages")
    assert m["fct_ns"] * PS_PER_NS == 40 * T + 2 * ser_ps(MTU, 400) + T + 4 * D


# ---------------------------------------------------------------------------------------------
# Exact: a cross-leaf permutation under ECMP


def test_cross_leaf_permutation_is_busiest_link_bound(tmp_path: Path) -> None:
    # Every flow is alone on its NIC links; c flows share the busiest fabric link, each gets rate/c
    # there from start to end (no link has more flows, so no flow gets less), so the last flow
    # leaves its sender at c * wire / rate and arrives one path latency later:
    # CCT = c * wire * 8 / 100 Gb/s + 4*d + 3*t (store-and-forward at the three switches).
    n = 2000
    size = n * PAYLOAD
    sc = make_scenario(leaf_spine(spines=4, leaves=4, hosts_per_leaf=4),
                       [{"collective": "permutation", "ranks": 16, "shift": 4, "bytes": size}])
    r = fluid(sc, tmp_path)
    load = directed_links([f["path"] for f in r.rows("flows")])
    c = max(load.values())
    assert c > 1  # an ECMP collision, or this test checks little
    wire = size + n * HEADER
    expected_ps = c * wire * 8 * PS_PER_NS // 100 + 4 * D + 3 * T
    assert cct(r.summary) == [expected_ps // PS_PER_NS]


# ---------------------------------------------------------------------------------------------
# Agreement with the packet backend on bulk collectives

SMALL = leaf_spine(spines=4, leaves=4, hosts_per_leaf=4)
BULK = {
    # name: (topology, jobs, lb, subflows)
    "ring_packed": (SMALL, [{"collective": "ring_allreduce", "ranks": 16, "bytes": "16MiB"}], "ecmp", 1),
    "ring_random": (SMALL, [{"collective": "ring_allreduce", "ranks": 16, "bytes": "16MiB", "placement": "random"}],
                    "ecmp", 1),
    "alltoall": (SMALL, [{"collective": "alltoall", "ranks": 16, "bytes": "16MiB"}], "ecmp", 1),
    "alltoall_fat_tree": (fat_tree(k=4), [{"collective": "alltoall", "ranks": 16, "bytes": "8MiB"}], "ecmp", 1),
    "permutation_ecmp": (SMALL, [{"collective": "permutation", "ranks": 16, "shift": 4, "bytes": "8MiB"}], "ecmp", 1),
    "permutation_split": (SMALL, [{"collective": "permutation", "ranks": 16, "shift": 4, "bytes": "8MiB"}], "split", 4),
    # Spraying at less than full fabric load (2 hosts, 4 spines per leaf): no standing queue.
    "permutation_spray": (leaf_spine(spines=4, leaves=4, hosts_per_leaf=2),
                          [{"collective": "permutation", "ranks": 8, "shift": 2, "bytes": "16MiB"}], "spray", 1),
    # Spraying on a 2:1 oversubscribed fabric: the fluid's fractional link loads set the rate (1/2).
    "permutation_spray_oversub": (leaf_spine(spines=2, leaves=4, hosts_per_leaf=4),
                                  [{"collective": "permutation", "ranks": 16, "shift": 4, "bytes": "8MiB"}],
                                  "spray_switch", 1),
}


@pytest.mark.parametrize("name", list(BULK))
def test_bulk_collectives_agree_within_2_percent(name: str, tmp_path: Path) -> None:
    topo, jobs, lb, subflows = BULK[name]
    sc = make_scenario(topo, jobs, lb=lb, subflows=subflows, mtu=4096, header=64)
    f = fluid(sc, tmp_path / "fluid")
    p = run(sc, tmp_path / "packet")
    for cf, cp in zip(cct(f.summary), cct(p.summary)):
        assert abs(cp - cf) / cp < 0.02, (name, cp, cf)
    assert f.summary["packet_hops"] == p.summary["packet_hops"]
    assert f.summary["packets"] == p.summary["packets"]
    if lb in ("ecmp", "split"):  # the fluid's flows take the packet backend's paths
        paths = {(x["msg_id"], x["subflow"]): x["path"] for x in p.rows("flows")}
        assert {(x["msg_id"], x["subflow"]): x["path"] for x in f.rows("flows")} == paths


def test_spray_oversubscribed_rate_is_half(tmp_path: Path) -> None:
    # 4 hosts per leaf, 2 uplinks: a sprayed cross-leaf flow puts half its traffic on each uplink,
    # so the 4 flows of a leaf load each uplink with 2r: r = rate / 2, CCT = 2 * wire / rate + 4d + 3t.
    n = 1000
    sc = make_scenario(leaf_spine(spines=2, leaves=4, hosts_per_leaf=4),
                       [{"collective": "permutation", "ranks": 16, "shift": 4, "bytes": n * PAYLOAD}], lb="spray")
    r = fluid(sc, tmp_path)
    assert cct(r.summary) == [(2 * n * MTU * 8 * PS_PER_NS // 100 + 4 * D + 3 * T) // PS_PER_NS]
    for row in r.rows("flows"):  # the mean spread: half the bytes through each spine, no single path
        assert row["path"] is None
        assert [(s["node"], s["bytes"]) for s in row["spine_bytes"]] == [("spine0", n * PAYLOAD // 2),
                                                                          ("spine1", n * PAYLOAD // 2)]


# ---------------------------------------------------------------------------------------------
# Mechanics: connections are FIFO, incremental = full recomputation, determinism, tables


def test_connection_sends_its_flows_in_order(tmp_path: Path) -> None:
    # A 2-rank ring cut into 4 slices: step 0's 4 pieces h0 -> h1 are ready at 0 on one connection.
    # They go one after the other at the full NIC rate: piece j starts at j * wire / rate and is
    # received one path latency (t + 2d: two links, one switch) after it has been sent.
    piece = 25 * PAYLOAD
    sc = make_scenario(leaf_spine(spines=1, leaves=1, hosts_per_leaf=2),
                       [{"collective": "ring_allreduce", "ranks": 2, "bytes": 8 * piece, "slices": 4}])
    r = fluid(sc, tmp_path)
    first = sorted((x for x in r.rows("flows") if x["src"] == "h0"), key=lambda x: x["flow_id"])[:4]
    wire_ps = 25 * T
    assert [x["start_ns"] for x in first] == [j * wire_ps // PS_PER_NS for j in range(4)]
    assert [x["end_ns"] for x in first] == [((j + 1) * wire_ps + T + 2 * D) // PS_PER_NS for j in range(4)]


def test_incremental_equals_full_recomputation(tmp_path: Path) -> None:
    sc = load_scenario(workload="multi_job", overrides=["seed=3"])
    a = fluid(sc, tmp_path / "a")
    b = fluid(sc, tmp_path / "b", incremental=False)
    ends_a = {m["msg_id"]: m["end_ns"] for m in a.rows("messages")}
    ends_b = {m["msg_id"]: m["end_ns"] for m in b.rows("messages")}
    assert ends_a.keys() == ends_b.keys()
    assert max(abs(ends_a[i] - ends_b[i]) for i in ends_a) <= 1
    assert a.summary["events"] <= b.summary["events"]


def test_cli_fluid_run_tables_summary_and_determinism(tmp_path: Path) -> None:
    args = ["run", "--backend", "fluid", "-w", "multi_job", "--lb", "split", "--set", "lb.subflows=2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel

    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["backend"] == "fluid" and summary["largest_queue"] is None
    assert summary["events"] > 0 and summary["flows"] == 2 * summary["messages"]
    for table in ("queues", "links"):
        ds = pads.dataset(tmp_path / "a" / table)
        assert ds.count_rows() == 0
        assert ds.schema.metadata[b"pktsim.backend"] == b"fluid"
        assert b"not modelled" in ds.schema.metadata[b"pktsim.fluid"]
    msgs = pads.dataset(tmp_path / "a" / "messages").to_table().to_pylist()
    assert len(msgs) == summary["messages"]
    assert all(m["ready_ns"] <= m["start_ns"] < m["end_ns"] and m["fct_ns"] >= m["ideal_fct_ns"] for m in msgs)
    scenario = json.loads(pads.dataset(tmp_path / "a" / "messages").schema.metadata[b"pktsim.scenario"])
    assert scenario == summary["scenario"]


def test_cli_bad_backend_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["run", "--backend", "analytic", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'analytic'" in err[0]
    assert not (tmp_path / "x").exists()
