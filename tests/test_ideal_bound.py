"""The ideal times are lower bounds: for every scheme, on every topology, in both backends, no message
finishes before its ``ideal_fct_ns`` and no collective before its ``ideal_ns``.

The bound (``pktsim/analysis/ideal.py``, derived in ``traces/README.md``) is the message alone with
every equal-cost path and the best cut into packets. Checked here: seeded random scenarios (leaf-spine
with 1-4 spines, oversubscribed either way, per-spine delays, fat-tree k=4; every scheme; 1 B to a few
MiB; several collectives; both backends), the two counterexamples of issue 11 against the old
single-path ideal, exhaustive packetisations of small messages in an independent store-and-forward
model, and where the bound is exact (whole packets: the one-path closed form) or attained.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from conftest import HEADER, MTU, PAYLOAD, PS_PER_NS, fat_tree, leaf_spine, make_scenario, one_message

from pktsim.analysis.ideal import Route, message_bound_ps, message_fct_ps, route
from pktsim.experiment import prepare
from pktsim.fabric.selectors import fields_read
from pktsim.fluid.backend import FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.scenario import LbSpec, Scenario, load_scenario
from pktsim.traces import Recorder
from pktsim.units import ps_to_ns

SCHEMES = ["ecmp", "spray", "spray_switch", "split", "split_minimal", "planned", "adaptive", "flowlet"]
QUEUE_AWARE = {"adaptive", "flowlet"}  # the fluid backend refuses them
COLLECTIVES = ["ring_allreduce", "alltoall_allreduce", "alltoall", "allgather", "reduce_scatter",
               "permutation", "incast"]
NICS = [(4096, 64), (1100, 100), (1500, 48), (512, 40)]


def _simulate(sc: Scenario, backend: str, directory: Path | None = None):
    """Run ``sc``; returns (experiment, its DAG execution with the exact times)."""
    exp = prepare(sc)
    sim = Simulation(exp) if backend == "packet" else FluidSimulation(exp)
    recorder = Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows) if directory else None
    sim.run(recorder)
    return exp, sim.dag


FLOAT_PS = 1.0
"""The fluid engine's times are float ps: a difference of two of them may miss the exact value by a
rounding error (and drains due within 1 ps are one event); integer ps in the packet backend."""


def _check_bounds(exp, dag) -> tuple[float, float]:
    """Every message and collective op at or above its bound, in ps (up to the fluid engine's float
    error) and as the tables round them to ns; returns the smallest ratios (message, op) seen."""
    slack = FLOAT_PS if isinstance(dag.end_ps[0], float) else 0
    worst_msg = worst_op = float("inf")
    for m in exp.workload.messages:
        fct = dag.end_ps[m.msg_id] - dag.ready_ps[m.msg_id]
        ideal = exp.ideal_fct_ps[m.msg_id]
        assert fct >= ideal - slack, (m, fct, ideal)
        assert ps_to_ns(fct) >= ps_to_ns(ideal)
        worst_msg = min(worst_msg, fct / ideal)
    for op in exp.workload.collectives:
        cct = dag.op_end_ps[op.op] - dag.op_start_ps(op.op)
        ideal = exp.ideal_op_ps[op.op]
        assert cct >= ideal - slack, (op.job, op.iteration, cct, ideal)
        assert ps_to_ns(cct) >= ps_to_ns(ideal)
        worst_op = min(worst_op, cct / ideal)
    return worst_msg, worst_op


# ---------------------------------------------------------------------------------------------
# 1. Random scenarios


def _random_scenario(seed: int) -> Scenario:
    """Scenario ``seed``: the scheme cycles through all of them; the rest is drawn from the seed."""
    rng = random.Random(seed)
    scheme = SCHEMES[seed % len(SCHEMES)]
    rates = [100, 200, 400]
    if scheme != "planned" and rng.random() < 0.25:  # planned routing is leaf-spine only
        topo = {"kind": "fat_tree", "k": 4, "link_gbps": rng.choice(rates), "host_link_gbps": rng.choice(rates),
                "link_delay_ns": rng.choice([100, 1000])}
        hosts = 16
    else:
        spines, leaves, per_leaf = rng.randint(1, 4), rng.randint(2, 4), rng.randint(1, 4)
        topo = {"kind": "leaf_spine", "spines": spines, "leaves": leaves, "hosts_per_leaf": per_leaf,
                "link_gbps": rng.choice(rates), "host_link_gbps": rng.choice(rates),
                "link_delay_ns": rng.choice([100, 1000])}
        if rng.random() < 0.3:
            topo["spine_delay_ns"] = [rng.choice([100, 500, 1000, 3000]) for _ in range(spines)]
        hosts = leaves * per_leaf
    collective = COLLECTIVES[rng.randrange(len(COLLECTIVES))]
    ranks = rng.randint(2, min(hosts, 8))
    mtu, header = rng.choice(NICS)
    size = int(10 ** rng.uniform(0, 6.9))  # 1 B to ~8 MB, at least a byte per rank,
    size = max(ranks, min(size, 20_000 * (mtu - header) // ranks))  # and some 20k packets at most
    job = {"name": "job0", "collective": collective, "bytes": size, "ranks": ranks,
           "placement": rng.choice(["packed", "random"]), "iterations": rng.choice([1, 1, 2]),
           "channels": rng.choice([1, 1, 2])}
    if collective == "ring_allreduce":
        job["slices"] = rng.choice([1, 2, 3])
    latency_ns, subflows = rng.choice([0, 0, 300]), rng.randint(1, 8)  # subflows: if the scheme cuts messages
    return Scenario.model_validate({
        "name": f"bound{seed}", "seed": seed, "topology": topo, "nic": {"mtu_bytes": mtu, "header_bytes": header},
        "switch": {"latency_ns": latency_ns},
        "lb": {"scheme": scheme, **({"subflows": subflows} if "subflows" in fields_read(scheme, LbSpec()) else {})},
        "workload": {"jobs": [job]},
    })


SEEDS = range(64)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_scenarios_never_beat_the_bound(seed: int) -> None:
    sc = _random_scenario(seed)
    backends = ["packet"] if sc.lb.scheme in QUEUE_AWARE else ["packet", "fluid"]
    for backend in backends:
        exp, dag = _simulate(sc, backend)  # the generator makes valid scenarios only: no case is skipped
        _check_bounds(exp, dag)


def test_random_scenarios_cover_what_they_claim() -> None:
    """The seeds above span every scheme, both topology kinds, oversubscription both ways, one and
    several spines, and sizes from a few bytes to MiB."""
    scs = [_random_scenario(s) for s in SEEDS]
    assert {sc.lb.scheme for sc in scs} == set(SCHEMES)
    assert {sc.topology.kind for sc in scs} == {"leaf_spine", "fat_tree"}
    assert any(sc.topology.host_gbps > sc.topology.link_gbps for sc in scs)
    assert any(sc.topology.host_gbps < sc.topology.link_gbps for sc in scs)
    spines = {sc.topology.spines for sc in scs if sc.topology.kind == "leaf_spine"}
    assert 1 in spines and max(spines) >= 3
    sizes = [sc.workload.jobs[0].bytes for sc in scs]
    assert min(sizes) <= 16 and max(sizes) >= 2**20
    assert len({sc.workload.jobs[0].collective for sc in scs}) >= 6


# ---------------------------------------------------------------------------------------------
# 2. The counterexamples of issue 11 (the old ideal was the message alone on one path)


def _messages(directory: Path) -> list[dict]:
    return pads.dataset(directory / "messages").to_table().to_pylist()


@pytest.mark.parametrize("backend", ["packet", "fluid"])
def test_split_into_subflows_pipelines_better(backend: str, tmp_path: Path) -> None:
    """`pktsim run --lb split --set lb.subflows=8 --set workload.jobs.0.bytes=16KiB`: every 1 KiB ring
    message is cut into 8 one-packet subflows, which pipeline through the switches better than the
    NIC's one packet: every message beats the one-path closed form, none beats the bound."""
    sc = load_scenario(lb="split", overrides=["lb.subflows=8", "workload.jobs.0.bytes=16KiB"])
    exp, dag = _simulate(sc, backend, tmp_path / "run")
    worst_msg, worst_op = _check_bounds(exp, dag)
    msgs = _messages(tmp_path / "run")
    assert all(m["fct_ns"] < m["single_path_fct_ns"] for m in msgs)  # the old ideal: slowdown < 1
    assert all(m["ideal_fct_ns"] <= m["fct_ns"] for m in msgs)
    assert 1 <= worst_msg < 1.01 and 1 <= worst_op < 1.01  # and the bound is close


@pytest.mark.parametrize("backend", ["packet", "fluid"])
def test_split_minimal_uses_every_uplink_when_oversubscribed(backend: str, tmp_path: Path) -> None:
    """8 spines x 16 leaves x 8 hosts, 400G hosts, 200G uplinks (2:1), split_minimal: a cross-leaf
    ring message is cut over the spines and leaves at the host's 400G, twice the rate of its one
    path; the bound counts every equal-cost path, capped by the NICs."""
    sc = load_scenario(lb="split_minimal", overrides=[
        "topology.spines=8", "topology.leaves=16", "topology.hosts_per_leaf=8", "topology.link_gbps=200",
        "topology.host_link_gbps=400", "workload.jobs.0.placement=random", "workload.jobs.0.bytes=4MiB"])
    exp, dag = _simulate(sc, backend, tmp_path / "run")
    worst_msg, worst_op = _check_bounds(exp, dag)
    msgs = _messages(tmp_path / "run")
    cross = [m for m in msgs if exp.fabric.tor_of[m["src"]] != exp.fabric.tor_of[m["dst"]]]
    assert cross and min(m["fct_ns"] / m["single_path_fct_ns"] for m in cross) < 0.75
    assert all(m["fct_ns"] >= m["ideal_fct_ns"] for m in msgs)
    c = pads.dataset(tmp_path / "run" / "collectives").to_table().to_pylist()
    assert all(x["duration_ns"] >= x["ideal_ns"] for x in c)
    assert worst_op < 1.05


# ---------------------------------------------------------------------------------------------
# 3. Exhaustive packetisations in an independent model


def _store_and_forward(sizes: list[int], spines: list[int], tiers: int, byte_ps: int, delay_ps: int) -> int:
    """Last arrival (ps) of packets of ``sizes`` wire bytes sent back to back by a host, through
    ``tiers`` links: the host link, then (tiers = 4) an uplink and a downlink of spine ``spines[i]``,
    then the receiver's link; every link FIFO in arrival order, store-and-forward, equal rates."""
    ready = [0] * len(sizes)  # when each packet is fully at the head of the current link
    for tier in range(tiers):
        free: dict[int, int] = {}
        port = [0 if tier in (0, tiers - 1) else spines[i] for i in range(len(sizes))]
        for i in sorted(range(len(sizes)), key=lambda i: (ready[i], i)):
            start = max(ready[i], free.get(port[i], 0))
            free[port[i]] = start + sizes[i] * byte_ps
            ready[i] = free[port[i]] + delay_ps
    return max(ready)


def _compositions(total: int, largest: int, most: int):
    """Ordered ways to write ``total`` as at most ``most`` parts of 1..``largest``."""
    if total == 0:
        yield ()
        return
    if most == 0:
        return
    for first in range(1, min(largest, total) + 1):
        for rest in _compositions(total - first, largest, most - 1):
            yield (first, *rest)


@pytest.mark.parametrize("tiers,spines", [(2, 1), (4, 1), (4, 2)])
def test_no_packetisation_beats_the_bound(tiers: int, spines: int) -> None:
    """Every cut of B payload bytes into up to 5 packets (in every order, every packet on any spine)
    of a toy NIC (6-byte payload, 2-byte header, 1 ns per byte, 1 ns links) takes at least the bound,
    and the best of them is within one byte per hop of it (the bound also covers the fluid model,
    whose last subflow to drain may be the smaller of two near-equal ones), exactly on it for some B."""
    mtu, header, byte_ps, delay_ps = 8, 2, 1000, 1000
    fabric_tiers = tiers - 2
    r = Route(gbps=(8.0,) * tiers, links=(1, *(spines,) * fabric_tiers, 1),
              capacity_gbps=(8.0, *(8.0 * spines,) * fabric_tiers, 8.0), fixed_ps=tiers * delay_ps)
    exact = 0
    for B in range(1, 15):
        best = min(
            _store_and_forward([p + header for p in parts], list(choice), tiers, byte_ps, delay_ps)
            for parts in _compositions(B, mtu - header, 5)
            for choice in itertools.product(range(spines), repeat=len(parts))
        )
        bound = message_bound_ps(B, mtu, header, r)
        assert bound <= best <= bound + (tiers - 1) * byte_ps, (B, bound, best)
        exact += bound == best
    assert exact >= 2


# ---------------------------------------------------------------------------------------------
# 4. Where the bound is exact, and where it is not the one-path closed form


T = 88 * PS_PER_NS  # a full micro packet (1100 B) at 100 Gb/s
D = 1000 * PS_PER_NS


def _best_equal_cut_ps(nbytes: int, h: int, byte_ps: Fraction, hops: int) -> int:
    """On equal-rate links: the best n near-equal packets (the largest of B/n bytes, rounded down as
    a fluid subflow's), W(n) bytes through the first link and the largest packet through the others,
    plus the propagation delays: min over n of (B + n*header + (hops - 1) * (B//n + header)) * byte."""
    n0 = -(-nbytes // PAYLOAD)
    best = min((nbytes + n * h + (hops - 1) * (nbytes // n + h)) for n in range(n0, nbytes + 1))
    return int(best * byte_ps) + hops * D


@pytest.mark.parametrize("topo,src,dst,hops", [
    (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h1", 2),
    (leaf_spine(spines=1, leaves=2, hosts_per_leaf=2), "h0", "h2", 4),
    (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h2", 4),
    (fat_tree(k=4), "h0", "h4", 6),
])
def test_whole_packets_meet_the_closed_form(topo: dict, src: str, dst: str, hops: int) -> None:
    """100 full packets (n*t + (h-1)*t + h*d, the NIC's cut) on one path or several: no other cut or
    spread does better, so the bound is the closed form; with a short last packet or one small
    packet, near-equal packets pipeline better, on one path as on several."""
    exp = prepare(make_scenario(topo, one_message(src, dst, 100 * PAYLOAD)))
    r = route(exp.fabric, src, dst)
    assert r.single_path == (hops == 2 or topo.get("spines") == 1)
    whole = 100 * T + (hops - 1) * T + hops * D
    assert exp.ideal_fct_ps == exp.single_path_fct_ps == [whole]
    byte_ps = Fraction(80)
    for nbytes in (49 * PAYLOAD + 400, 400, 1):
        alone = message_fct_ps(nbytes, MTU, HEADER, exp.fabric.path_hops(src, dst))
        bound = message_bound_ps(nbytes, MTU, HEADER, r)
        assert bound == _best_equal_cut_ps(nbytes, HEADER, byte_ps, hops) <= alone
    assert message_bound_ps(1, MTU, HEADER, r) == hops * (101 * 80 + D)  # one packet: no choice


def test_faster_fabric_whole_packets_exact(run_in) -> None:
    # Hosts 100G, fabric 400G, two spines: n*t + t/4 + t/4 + t + 4*d (test_physics) is the bound too.
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2, gbps=400, host_gbps=100)
    r = run_in(make_scenario(topo, one_message("h0", "h2", 40 * PAYLOAD)))
    (m,) = r.rows("messages")
    assert m["fct_ns"] == m["ideal_fct_ns"] == m["single_path_fct_ns"] == (40 * T + T // 2 + T + 4 * D) // PS_PER_NS


def test_equal_subflows_attain_the_bound(run_in) -> None:
    """49 full packets and a 400-byte one on one path (h0 -> h1 under one leaf): the NIC's own cut
    takes (n-1)*t + t + tl + 2d; split into 50 subflows of 988 bytes (one packet each, sent round
    robin) it takes 50 * 1088 B + 1088 B + 2d, 12 bytes' time less, which is exactly the bound."""
    topo = leaf_spine(spines=1, leaves=2, hosts_per_leaf=2)
    nbytes = 49 * PAYLOAD + 400
    ecmp = run_in(make_scenario(topo, one_message("h0", "h1", nbytes)), "ecmp")
    split = run_in(make_scenario(topo, one_message("h0", "h1", nbytes), lb="split", subflows=50), "split")
    (a,), (b,) = ecmp.rows("messages"), split.rows("messages")
    assert a["fct_ns"] == a["single_path_fct_ns"] == (49 * T + T + 40_000 + 2 * D) // PS_PER_NS
    assert b["fct_ns"] == b["ideal_fct_ns"] == a["ideal_fct_ns"] == (51 * 1088 * 80 + 2 * D) // PS_PER_NS
    assert b["fct_ns"] < a["fct_ns"]


def test_route_tiers() -> None:
    """The tiers the bound sees: host link, every equal-cost link per fabric tier, host link; the
    smallest delay per tier (per-spine delays), and the switch latencies."""
    sc = make_scenario(leaf_spine(spines=3, leaves=2, hosts_per_leaf=2, gbps=200, host_gbps=400),
                       one_message("h0", "h2", 1), latency_ns=50)
    sc = sc.model_copy(update={"topology": sc.topology.model_copy(update={"spine_delay_ns": [3000, 700, 2000]})})
    r = route(prepare(sc).fabric, "h0", "h2")
    assert r.links == (1, 3, 3, 1) and r.gbps == (400, 200, 200, 400) and r.capacity_gbps == (400, 600, 600, 400)
    assert r.fixed_ps == (1000 + 700 + 700 + 1000 + 3 * 50) * PS_PER_NS
    ft = route(prepare(make_scenario(fat_tree(k=4), one_message("h0", "h4", 1))).fabric, "h0", "h4")
    assert ft.links == (1, 2, 4, 4, 2, 1) and not ft.single_path
    local = route(prepare(make_scenario(fat_tree(k=4), one_message("h0", "h1", 1))).fabric, "h0", "h1")
    assert local.links == (1, 1) and local.single_path
