"""Faults on the fluid backend (pktsim/fluid/backend.py, "Faults" in its docstring), each against a
number worked out here: closed forms from bytes, headers and rates, the time a flow is stalled,
the share a sprayed flow loses, the packet backend.

The micro fabric of conftest: 2 spines, 2 leaves, 2 hosts per leaf, 100 Gb/s, 1 us per link, no
switch latency; packets of 1100 B on the wire carrying 1000 B, so a full packet takes t = 88 ns at
100 Gb/s and 176 ns at 50 Gb/s. A message h0 -> h2 crosses h0-leaf0, leaf0-spine, spine-leaf1,
leaf1-h2 (4 hops); alone and healthy, n full packets take n*t + 3*t + 4*d.
"""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from conftest import PAYLOAD, PS_PER_NS, leaf_spine, make_scenario, one_message, ser_ps

from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidBackend, FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.scenario import Scenario
from pktsim.traces import Recorder

T = ser_ps(1100, 100) // PS_PER_NS  # 88 ns: a full packet at 100 Gb/s
D = 1000  # ns per link
ROUTING = {"detect_ns": 10_000, "converge_ns": 30_000, "replan_ns": 50_000}
MB = 1_000_000  # 1000 full packets: 92 264 ns alone and healthy


def healthy_fct_ns(nbytes: int) -> int:
    n = nbytes // PAYLOAD
    return n * T + 3 * T + 4 * D


def with_faults(sc: Scenario, faults: list[dict], routing: dict | None = None, start_ns: int = 0) -> Scenario:
    data = sc.model_dump(mode="json")
    data["faults"] = faults
    data["routing"] = routing or ROUTING
    for job in data["workload"]["jobs"]:
        job["start_ns"] = start_ns
    return Scenario.model_validate(data)


class Checked(FluidSimulation):
    """The fluid run, checking after every rate computation that no flow loads a dead link and no
    link carries more than its capacity, and integrating every link's load (bits it carried)."""

    def __init__(self, experiment, incremental: bool = True) -> None:
        super().__init__(experiment, incremental)
        self.carried = np.zeros(len(self.capacity))
        self._load = np.zeros(len(self.capacity))
        self._t = 0.0

    def _recompute(self) -> bool:
        out = super()._recompute()
        act = self.active
        idx = np.flatnonzero(act.used)
        send = act.rate[idx] / act.gain[idx]  # the max-min (sending) rate; ``rate`` is the delivered one
        load = np.bincount(act.links[idx].ravel(), weights=(act.weights[idx] * send[:, None]).ravel(),
                           minlength=len(self.capacity))
        assert all(load[link] == 0 for link in self.dead), "a dead link carries traffic"
        assert np.all(load[:-1] <= self.capacity[:-1] * (1 + 1e-9) + 1e-9)
        self.carried += self._load * (self.now - self._t) / PS_PER_NS  # Gbit/s x ns = bits
        self._load, self._t = load, self.now
        return out


class FluidRun:
    def __init__(self, sc: Scenario, directory: Path | None = None, fault_free=None) -> None:
        self.experiment = prepare(sc, fault_free)
        self.sim = Checked(self.experiment)
        recorder = Recorder(directory, sc.model_dump(mode="json"), sc.traces.part_rows) if directory else None
        self.summary = self.sim.run(recorder)
        self.dir = directory

    def rows(self, name: str) -> list[dict]:
        return pads.dataset(self.dir / name).to_table().to_pylist()

    def cct(self) -> list[int]:
        return [c for j in self.summary["jobs"] for c in j["cct_ns"]]


def lone(lb: str = "ecmp", nbytes: int = MB) -> Scenario:
    return make_scenario(leaf_spine(), one_message("h0", "h2", nbytes), lb=lb)


def healthy_path(sc: Scenario) -> list[str]:
    """The path of the message's first subflow (split_minimal cuts a lone message in two, one per
    spine, the first through spine0)."""
    ex = prepare(sc)
    entropy = ex.flow_plan.subflows(ex.workload.messages[0])[0][1]
    return ex.fabric.path("h0", "h2", entropy)


def other_spine(spine: str) -> str:
    return "spine1" if spine == "spine0" else "spine0"


# ---------------------------------------------------------------------------------------------
# link_degrade


def test_lone_flow_on_degraded_link_is_the_closed_form_at_that_rate(tmp_path: Path) -> None:
    # leaf0 -> spine degraded to 50 Gb/s from t = 0. Store and forward, by hand: the first packet
    # crosses the four hops (t, 2t, t, t, plus 4 d); the 99 others follow it out of the slow link
    # one every 2t (the links after it are faster, so they never queue again).
    nbytes = 100 * PAYLOAD
    sc = lone(nbytes=nbytes)
    spine = healthy_path(sc)[2]
    faulted = with_faults(sc, [{"kind": "link_degrade", "at_ns": 0, "link": ["leaf0", spine], "gbps": 50}])
    expected = (T + 2 * T + T + T + 4 * D) + 99 * 2 * T
    assert expected == 21_864
    f = FluidRun(faulted, tmp_path / "fluid")
    [msg] = f.rows("messages")
    assert msg["fct_ns"] == expected
    assert f.summary["faults"][0]["kind"] == "link_degrade" and f.summary["faults"][0]["value"] == 50
    assert f.rows("faults")[0]["target"] == f"leaf0-{spine}"
    # The packet backend, ideal transport, on the same degraded link.
    p = Simulation(prepare(faulted))
    p.run(Recorder(tmp_path / "packet", faulted.model_dump(mode="json"), faulted.traces.part_rows))
    [pmsg] = pads.dataset(tmp_path / "packet" / "messages").to_table().to_pylist()
    assert pmsg["fct_ns"] == f.rows("messages")[0]["fct_ns"] == expected


def test_degrade_mid_flow_slows_the_rest(tmp_path: Path) -> None:
    # At 100 Gb/s for 20 us (2e6 bits of 8.8e6), then 50 Gb/s for the remaining 6.8e6 bits (136 us):
    # the drain ends at 156 us instead of 88 us. The latency after the drain is the closed form at
    # the slow rate minus its drain (see the test above): t + t + t + 4d = 4264 ns.
    sc = lone()
    spine = healthy_path(sc)[2]
    f = FluidRun(with_faults(sc, [{"kind": "link_degrade", "at_ns": 20_000, "link": ["leaf0", spine], "gbps": 50}]),
                 tmp_path)
    assert f.rows("messages")[0]["fct_ns"] == 20_000 + 136_000 + 3 * T + 4 * D


# ---------------------------------------------------------------------------------------------
# link_down / link_up


@pytest.mark.parametrize("lb,start_ns", [("ecmp", 40_000), ("planned", 60_000), ("split_minimal", 60_000)])
def test_link_down_before_the_flow_starts(lb: str, start_ns: int, tmp_path: Path) -> None:
    # The link on the healthy path dies at 0; the flow starts after the fabric converged (ECMP:
    # 30 us) or was re-planned (50 us): it takes the other spine at the healthy FCT (split_minimal
    # re-plans its two pieces as one, on the spine left).
    sc = lone(lb)
    spine = healthy_path(sc)[2]
    f = FluidRun(with_faults(sc, [{"kind": "link_down", "at_ns": 0, "link": [spine, "leaf1"]}], start_ns=start_ns),
                 tmp_path)
    [msg] = f.rows("messages")
    [flow] = f.rows("flows")
    assert msg["ready_ns"] == start_ns and msg["fct_ns"] == healthy_fct_ns(MB)
    assert flow["path"] == ["h0", "leaf0", other_spine(spine), "leaf1", "h2"]
    assert flow["spine_bytes"] == [{"node": other_spine(spine), "bytes": MB}]
    m = f.experiment.workload.messages[0]  # re-planned in the run's own copy of the plan
    assert f.experiment.flow_plan.subflows(m) == prepare(sc).flow_plan.subflows(m)


@pytest.mark.parametrize("link,moved_ns", [
    ("down_spine", 30_000),  # spine -> leaf1: leaf0 learns only at convergence
    ("up_leaf", 10_000),  # leaf0 -> spine: leaf0 is at its end, it stops choosing it at detection
])
def test_link_down_mid_flow_stalls_until_the_route_moves_it(link: str, moved_ns: int, tmp_path: Path) -> None:
    sc = lone()
    spine = healthy_path(sc)[2]
    ends = [spine, "leaf1"] if link == "down_spine" else ["leaf0", spine]
    f = FluidRun(with_faults(sc, [{"kind": "link_down", "at_ns": 20_000, "link": ends}]), tmp_path)
    [msg] = f.rows("messages")
    assert msg["fct_ns"] == healthy_fct_ns(MB) + moved_ns
    # Its bytes by the spine that carried them: 20 us at 100 Gb/s is 250 000 of its 1 100 000 wire
    # bytes before the fault, all the rest after the route change.
    [flow] = f.rows("flows")
    before = round(Fraction(MB * 250_000, 1_100_000))
    assert flow["path"] is None
    assert {r["node"]: r["bytes"] for r in flow["spine_bytes"]} == {spine: before, other_spine(spine): MB - before}
    assert f.rows("faults")[0]["converged_ns"] == 20_000 + 30_000


@pytest.mark.parametrize("lb", ["planned", "split_minimal"])
def test_pinned_flow_stalls_until_replanned(lb: str, tmp_path: Path) -> None:
    # planned: the lone flow stalls from 20 us to the re-plan at 70 us. split_minimal: its two
    # halves (4.4e6 bits each) share h0's link until 20 us (1e6 bits each); the one through the dead
    # link stalls, the other takes the whole link and ends at 20 + 34 us; the stalled one resumes at
    # 70 us, on spine1, with 3.4e6 bits: the drain ends at 104 us instead of 88.
    sc = lone(lb)
    spine = healthy_path(sc)[2]
    f = FluidRun(with_faults(sc, [{"kind": "link_down", "at_ns": 20_000, "link": [spine, "leaf1"]}]), tmp_path)
    late = ROUTING["replan_ns"] if lb == "planned" else 104_000 - 88_000
    assert f.rows("messages")[0]["fct_ns"] == healthy_fct_ns(MB) + late
    assert f.rows("faults")[0]["replanned_ns"] == 20_000 + ROUTING["replan_ns"]


def test_link_up_before_detection_resumes_the_flow_at_once(tmp_path: Path) -> None:
    # Down at 20 us, up at 25 us, before detection: the fabric never reacts (a flap shorter than
    # detection), the flow resumes on its path when the link does: 5 us of stall, every byte via
    # the same spine.
    sc = lone()
    spine = healthy_path(sc)[2]
    ends = [spine, "leaf1"]
    f = FluidRun(with_faults(sc, [{"kind": "link_down", "at_ns": 20_000, "link": ends},
                                  {"kind": "link_up", "at_ns": 25_000, "link": ends}]), tmp_path)
    [flow] = f.rows("flows")
    assert f.rows("messages")[0]["fct_ns"] == healthy_fct_ns(MB) + 5_000
    assert {r["node"]: r["bytes"] for r in flow["spine_bytes"]} == {spine: MB}
    assert f.experiment.faults.route_changes == []


def test_sprayed_flow_loses_the_share_sent_into_the_dead_link(tmp_path: Path) -> None:
    # Half the spray goes through spine0 -> leaf1; from the fault (20 us) to convergence (50 us) that
    # half is lost: the flow delivers 50 Gb/s for 30 us, i.e. 15 us late. Bytes by spine: half of the
    # first 2e6 bits through each, then everything through spine1.
    sc = lone("spray")
    f = FluidRun(with_faults(sc, [{"kind": "link_down", "at_ns": 20_000, "link": ["spine0", "leaf1"]}]), tmp_path)
    assert f.rows("messages")[0]["fct_ns"] == healthy_fct_ns(MB) + 15_000
    [flow] = f.rows("flows")
    via0 = round(Fraction(MB * 1_000_000, 8_800_000))
    assert {r["node"]: r["bytes"] for r in flow["spine_bytes"]} == {"spine0": via0, "spine1": MB - via0}
    # The sender's link carried the lost bits too (30 us at 100 Gb/s, half of which were lost);
    # the receiver's link carried exactly the flow's wire bytes.
    index = f.sim.fabric.link_index
    assert f.sim.carried[index["h0", "leaf0"]] == pytest.approx(8_800_000 + 1_500_000)
    assert f.sim.carried[index["leaf1", "h2"]] == pytest.approx(8_800_000)


def test_incremental_rates_equal_full_recomputation_across_faults(tmp_path: Path) -> None:
    # Rerouting moves flows between links: the incremental engine (rates of the flows connected to
    # a change only) must keep its link -> flows index right and agree with recomputing everything.
    job = {"name": "job0", "collective": "alltoall", "ranks": 8, "placement": "random", "bytes": 400_000}
    sc = make_scenario(leaf_spine(4, 4, 2), [job], seed=3)
    faulted = with_faults(sc, [{"kind": "link_down", "at_ns": 5_000, "link": ["leaf1", "spine2"]},
                               {"kind": "link_degrade", "at_ns": 7_000, "link": ["leaf3", "spine0"], "gbps": 40},
                               {"kind": "link_up", "at_ns": 30_000, "link": ["leaf1", "spine2"]}],
                          {"detect_ns": 2_000, "converge_ns": 6_000, "replan_ns": 10_000})
    ends = []
    for incremental in (True, False):
        sim = FluidSimulation(prepare(faulted), incremental=incremental)
        sim.run()
        ends.append(sim.dag.end_ps)
    assert np.allclose(ends[0], ends[1], rtol=0, atol=1.0)


# ---------------------------------------------------------------------------------------------
# Stragglers, unsupported faults, the summary


def test_straggler_stretches_its_compute_gaps(tmp_path: Path) -> None:
    # A 2-rank ring on h0 and h2 starting at 3 us, 3 iterations with 5 us of compute between them;
    # h0 is 3x slower from 0: its messages of iterations 1 and 2 are ready 15 us after the previous
    # iteration ends, h2's after 5 us. The job's start is not compute: both start at 3 us.
    job = {"name": "job0", "collective": "ring_allreduce", "ranks": 2, "placement": ["h0", "h2"], "bytes": 20_000,
           "iterations": 3, "compute_gap_ns": 5_000}
    sc = make_scenario(leaf_spine(), [job])
    f = FluidRun(with_faults(sc, [{"kind": "straggler", "at_ns": 0, "host": "h0", "compute_factor": 3}],
                             start_ns=3_000), tmp_path)
    msgs = f.rows("messages")
    ops = {c["iteration"]: c for c in f.rows("collectives")}
    stretched = 0
    for m in msgs:
        if m["iteration"] == 0 and m["step"] == 0:
            assert m["ready_ns"] == 3_000
        elif m["iteration"] > 0 and m["step"] == 0:
            gap = 15_000 if m["src"] == "h0" else 5_000
            assert m["ready_ns"] == ops[m["iteration"] - 1]["end_ns"] + gap
            stretched += m["src"] == "h0"
    assert stretched == 2
    assert f.rows("faults")[0]["kind"] == "straggler"


def test_link_loss_is_refused_in_one_line() -> None:
    sc = with_faults(lone(), [{"kind": "link_degrade", "link": ["leaf0", "spine0"], "gbps": 50},
                              {"kind": "link_loss", "link": ["leaf0", "spine0"], "drop_rate": 0.01}])
    problem = FluidBackend().unsupported(sc)
    assert problem is not None and "\n" not in str(problem)
    assert "faults[1].kind" in str(problem) and "link_loss has no fluid model" in str(problem)
    data = lone().model_dump(mode="json")
    data["faults"] = {"random": {"kinds": ["link_down", "link_loss"]}}
    assert "faults.random.kinds" in str(FluidBackend().unsupported(Scenario.model_validate(data)))
    assert FluidBackend().unsupported(with_faults(lone(), [{"kind": "link_down", "link": ["leaf0", "spine0"]}])) is None


def test_summary_carries_faults_and_the_fault_free_run(tmp_path: Path) -> None:
    sc = lone()
    healthy = FluidRun(sc).summary
    fault_free = {j["name"]: j["cct_ns"] for j in healthy["jobs"]}
    faulted = with_faults(sc, [{"kind": "link_down", "at_ns": 20_000, "link": ["leaf0", "spine0"], "direction": "up"},
                               {"kind": "link_up", "at_ns": 60_000, "link": ["leaf0", "spine0"], "direction": "up"}])
    f = FluidRun(faulted, tmp_path, fault_free=fault_free)
    job = f.summary["jobs"][0]
    assert job["fault_free_cct_ns"] == fault_free["job0"]
    assert job["fault_slowdown"] == pytest.approx(job["mean_cct_ns"] / fault_free["job0"][0])
    assert [r["fault_id"] for r in f.summary["faults"]] == [0, 1]
    assert f.summary.to_json()["faults"] == [{**r} for r in f.rows("faults")]
    assert "faults" not in healthy.to_json()


# ---------------------------------------------------------------------------------------------
# Random small scenarios


SCHEMES = ["ecmp", "spray", "split", "split_minimal", "planned"]


def _random_case(rng: random.Random, contended: bool) -> tuple[Scenario, Scenario]:
    spines, leaves = rng.choice([2, 3, 4]), rng.choice([2, 3])
    lb = rng.choice(SCHEMES)
    if contended:
        job = {"name": "job0", "collective": rng.choice(["ring_allreduce", "alltoall", "permutation"]),
               "ranks": 2 * leaves, "placement": rng.choice(["packed", "random"])}
    else:  # two ranks on two leaves: the flows never share a directed link
        job = {"name": "job0", "collective": "ring_allreduce", "ranks": 2, "placement": ["h0", f"h{2 * leaves - 1}"]}
    job.update(bytes=rng.choice([32_000, 100_000, 250_000]), iterations=rng.choice([1, 2]), compute_gap_ns=2_000)
    sc = make_scenario(leaf_spine(spines, leaves, 2), [job], lb=lb, subflows=2 if lb in ("split", "planned") else 1,
                       seed=rng.randrange(100))
    makespan = FluidSimulation(prepare(sc)).run().sim_time_ns
    at = rng.randrange(0, int(0.8 * makespan))
    if rng.random() < 0.25:
        h = rng.randrange(2 * leaves)
        link = [f"h{h}", f"leaf{h // 2}"]  # a host link must come back up
    else:
        link = [f"leaf{rng.randrange(leaves)}", f"spine{rng.randrange(spines)}"]
    kind = rng.choice(["link_degrade", "link_down", "link_down_up"])
    if kind == "link_degrade":
        faults = [{"kind": kind, "at_ns": at, "link": link, "gbps": rng.choice([25, 50, 80])}]
    elif kind == "link_down" and link[0].startswith("leaf"):
        faults = [{"kind": kind, "at_ns": at, "link": link, "direction": rng.choice(["both", "up", "down"])}]
    else:
        faults = [{"kind": "link_down", "at_ns": at, "link": link},
                  {"kind": "link_up", "at_ns": at + rng.randrange(1_000, 20_000), "link": link}]
    detect = rng.choice([500, 2_000])
    routing = {"detect_ns": detect, "converge_ns": detect * rng.choice([1, 3]), "replan_ns": rng.choice([3_000, 8_000])}
    return sc, with_faults(sc, faults, routing)


def _check_run(f: FluidRun, sc: Scenario) -> None:
    """Every message completes once, its flows carry its bytes, each receiver's link carried exactly
    the wire bits sent to it."""
    workload = f.experiment.workload
    msgs = f.rows("messages")
    assert sorted(m["msg_id"] for m in msgs) == list(range(len(workload.messages)))
    flows = f.rows("flows")
    per_msg: dict[int, int] = {}
    for row in flows:
        per_msg[row["msg_id"]] = per_msg.get(row["msg_id"], 0) + row["bytes"]
        assert sum(s["bytes"] for s in row["spine_bytes"]) == row["bytes"]
    assert per_msg == {m.msg_id: m.bytes for m in workload.messages}
    nic = sc.nic
    to_host: dict[str, int] = {}
    for row in flows:
        wire = row["bytes"] + -(-row["bytes"] // (nic.mtu_bytes - nic.header_bytes)) * nic.header_bytes
        to_host[row["dst"]] = to_host.get(row["dst"], 0) + 8 * wire
    fabric = f.sim.fabric
    for host, bits in to_host.items():
        assert f.sim.carried[fabric.link_index[fabric.tor_of[host], host]] == pytest.approx(bits, rel=1e-9)
    assert not f.sim.stalled and not f.sim.active.count


def test_random_faults_complete_and_respect_the_bounds(tmp_path: Path) -> None:
    """Over random small scenarios with a random link_degrade, link_down or link_down + link_up:
    every message completes once with its bytes, no dead link carries anything, every CCT is at
    least the healthy fabric's ideal. With contention, a fault does not always slow the job down
    (the ECMP rehash after convergence can undo a collision; max-min rates are not monotone in
    capacity: a flow slowed at one link leaves more of another to the flows there); without it
    (two ranks whose flows share no link), every iteration is at least as slow as healthy, but under
    split_minimal: re-planned on a fabric with fewer spines, a message is cut into fewer pieces,
    hence fewer packets and headers on the wire, and can end a few ns earlier."""
    rng = random.Random(12)
    slower = 0
    for i in range(48):
        contended = i % 2 == 0
        sc, faulted = _random_case(rng, contended)
        h = FluidRun(sc, tmp_path / f"h{i}")
        f = FluidRun(faulted, tmp_path / f"f{i}")
        _check_run(f, faulted)
        ideal = [c for j in h.summary["jobs"] for c in j["ideal_cct_ns"]]
        assert all(c >= lo for c, lo in zip(f.cct(), ideal)), (faulted.faults, f.cct(), ideal)
        if not contended and faulted.lb.scheme != "split_minimal":
            assert all(c >= c0 for c, c0 in zip(f.cct(), h.cct())), (faulted.lb.scheme, faulted.faults)
        slower += f.cct() > h.cct()
    assert slower > 20  # the faults do bite
