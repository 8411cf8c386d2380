"""Plan scopes of planned routing: per connection with periodic re-plans (lb.plan_scope: connection),
the cluster scope for jobs not in lockstep, and planned subflows (lb.subflows > 1).

The connection plan is checked against a controller simulated here from the run's post times and
the planner function alone (what each re-plan sees, and when its routes take effect), and against
the recorded paths; congestion against the per-step plans; the packet backend against the fluid
one."""

from __future__ import annotations

import json
from array import array
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from conftest import run
from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.planning.planners import Flow, PlanContext, plan
from pktsim.scenario import load_scenario
from pktsim.traces import Recorder

MIX = [{"name": "ring", "collective": "ring_allreduce", "ranks": 8, "bytes": "2MiB", "placement": "random"},
       {"name": "a2a", "collective": "alltoall", "ranks": 8, "bytes": "4MiB", "placement": "random",
        "start_ns": 100_000}]
"""A ring next to an all-to-all of another size that starts later: not in lockstep."""


def scenario(jobs: list[dict], *sets: str, seed: int = 1, workload: str | None = None):
    overrides = [*sets] if workload else [f"workload.jobs={json.dumps(jobs)}", *sets]
    return load_scenario(topology="bench", workload=workload, lb="planned", seed=seed, overrides=overrides)


def controller(exp, posted_ps, period_ps: int) -> dict[tuple[int, int], str | None]:
    """Per (message, subflow), the spine a periodic controller pins it to, computed here: the first
    plan from every job's first step, then at t = R, 2R, ... the connections with a message posted
    in [t - R, t), weighted by those bytes; None: never planned (ECMP). Spines by index in name
    order; connections in (job, src host, dst host, channel, subflow) order."""
    w, fabric = exp.workload, exp.fabric
    lb = exp.scenario.lb
    msgs = list(w.messages)
    jobs = [j.name for j in exp.scenario.workload.jobs]
    host = {h: i for i, h in enumerate(w.hosts)}
    spines = sorted({n for n in fabric.tier if n.startswith("spine")}, key=lambda n: (len(n), n))
    tor = fabric.tor_of

    def connection(m) -> tuple:
        return jobs.index(m.job), host[m.src], host[m.dst], m.channel

    def pieces(m) -> list[int]:
        k = min(lb.subflows, m.bytes)
        return [m.bytes // k + (i < m.bytes % k) for i in range(k)]

    def place(weights: dict) -> dict:
        keys = [key for key in sorted(weights) if tor[w.hosts[key[0][1]]] != tor[w.hosts[key[0][2]]]]
        flows = [Flow(tor[w.hosts[c[1]]], tor[w.hosts[c[2]]], weights[c, s], w.hosts[c[1]], w.hosts[c[2]], jobs[c[0]])
                 for c, s in keys]
        return {key: spines[j] for key, j in zip(keys, plan(lb.planner, flows, PlanContext(len(spines))))}

    first: dict = defaultdict(int)
    for job in jobs:
        mine = [m for m in msgs if m.job == job]
        op = min(m.op for m in mine)
        step = min(m.step for m in mine if m.op == op)
        for m in mine:
            if (m.op, m.step) == (op, step):
                for s, size in enumerate(pieces(m)):
                    first[connection(m), s] += size
    spine = place(first)
    expect: dict = {}
    window: dict = defaultdict(int)
    t = period_ps
    for i in sorted(range(len(msgs)), key=lambda i: posted_ps[i]):
        while posted_ps[i] >= t:
            if window:
                spine.update(place(window))
            window, t = defaultdict(int), t + period_ps
        m = msgs[i]
        for s, size in enumerate(pieces(m)):
            expect[i, s] = spine.get((connection(m), s))
            window[connection(m), s] += size
    return expect


def turning(path: list[str] | None) -> str | None:
    return path[2] if path is not None and len(path) == 5 else None


@pytest.mark.parametrize("planner", ["greedy", "edge_coloring"])
def test_connection_scope_follows_a_periodic_controller(planner: str, tmp_path: Path) -> None:
    """Ring + a later all-to-all, re-planned every 50 us: every cross-leaf flow turns where the
    controller simulated here puts its connection at its post time; a connection keeps one path
    within each window, and some connections do move at a re-plan."""
    period_ns = 50_000
    sc = scenario(MIX, "lb.plan_scope=connection", f"lb.replan_ns={period_ns}", f"lb.planner={planner}")
    r = run(sc, tmp_path / "run")
    posted = list(r.sim.dag.ready_ps)
    expect = controller(r.sim.experiment, posted, period_ns * 1000)
    msgs = r.sim.workload.messages
    per_window: dict = defaultdict(set)
    paths: dict = defaultdict(set)
    checked = 0
    for f in r.rows("flows"):
        spine = turning(f["path"])
        if spine is None:
            continue
        m = msgs[f["msg_id"]]
        assert spine == expect[f["msg_id"], f["subflow"]], (f["msg_id"], spine)
        conn = (m.job, m.src, m.dst, m.channel, f["subflow"])
        per_window[conn, posted[f["msg_id"]] // (period_ns * 1000)].add(tuple(f["path"]))
        paths[conn].add(tuple(f["path"]))
        checked += 1
    assert checked > 100
    assert all(len(p) == 1 for p in per_window.values())
    moved = sum(len(p) > 1 for p in paths.values())
    assert moved > 0, "no connection changed spine: the test would not see a wrong re-plan"
    assert r.summary["plan_s"] > 0


def test_replan_longer_than_the_run_keeps_the_first_plan(tmp_path: Path) -> None:
    """With lb.replan_ns beyond the run every connection keeps the spine the first plan (each job's
    first step, all jobs together) gave it, for the whole run."""
    sc = scenario(MIX, "lb.plan_scope=connection", "lb.replan_ns=1s", "lb.planner=greedy")
    r = run(sc, tmp_path / "run")
    assert r.summary["sim_time_ns"] < 10**9
    expect = controller(r.sim.experiment, list(r.sim.dag.ready_ps), 10**12)
    paths: dict = defaultdict(set)
    msgs = r.sim.workload.messages
    for f in r.rows("flows"):
        if turning(f["path"]) is not None:
            assert turning(f["path"]) == expect[f["msg_id"], f["subflow"]]
            m = msgs[f["msg_id"]]
            paths[m.job, m.src, m.dst, m.channel].add(tuple(f["path"]))
    assert paths and all(len(p) == 1 for p in paths.values())
    assert r.sim.planner.connections.plans == 1


def test_connection_scope_permutation_has_congestion_one_like_per_step(tmp_path: Path) -> None:
    """The bench permutation (4 flows per leaf pair, 4 spines) with edge colouring: one flow per
    link per step whether planned per step or per connection, and the collective at the ideal."""
    out = {}
    for scope in ("job", "connection"):
        sc = scenario([], f"lb.plan_scope={scope}", "workload.jobs.0.bytes=1MiB",
                      "workload.jobs.0.iterations=2", *(["lb.replan_ns=20us"] if scope == "connection" else []),
                      workload="permutation")
        job = Simulation(prepare(sc)).run(None).jobs[0]
        out[scope] = (job["max_congestion"], job["slowdown"])
    assert out["job"][0] == out["connection"][0] == 1, out
    assert out["connection"][1] < 1.01, out


def test_cluster_scope_plans_a_job_out_of_lockstep_alone(tmp_path: Path) -> None:
    """A ring next to an all-to-all of another size: the cluster scope used to plan the ring's step
    k with the all-to-all's (ring congestion 2 on this case); now each is planned alone, so the
    ring's own flows never share a link (congestion 1, as with the job scope), and a warning says so."""
    jobs = [{"name": "ring", "collective": "ring_allreduce", "ranks": 16, "bytes": "2MiB", "placement": "random"},
            {"name": "a2a", "collective": "alltoall", "ranks": 16, "bytes": "1MiB", "placement": "random"}]
    got = {}
    for scope in ("job", "cluster"):
        summary = Simulation(prepare(scenario(jobs, f"lb.plan_scope={scope}"))).run(None)
        got[scope] = ({j["name"]: j["max_congestion"] for j in summary.jobs}, summary.warnings)
    assert got["cluster"][0] == got["job"][0] and got["cluster"][0]["ring"] == 1, got
    (warning,) = got["cluster"][1]
    assert "ring, a2a" in warning and "planned alone" in warning and "lockstep" in warning


def test_cluster_scope_still_plans_jobs_in_lockstep_together() -> None:
    """Two identical rings and an all-to-all: the rings' step k is one phase, the all-to-all alone."""
    ring = {"collective": "ring_allreduce", "ranks": 8, "bytes": "256KiB", "placement": "random"}
    jobs = [{"name": "r0", **ring}, {"name": "r1", **ring},
            {"name": "a2a", "collective": "alltoall", "ranks": 8, "bytes": "64KiB", "placement": "random"}]
    planner = prepare(scenario(jobs, "lb.plan_scope=cluster")).flow_plan
    groups = {key[0] for key in planner.phase_seconds}
    assert groups == {0, 2}  # r0 and r1 under r0's group, a2a its own
    assert len(planner.warnings) == 1 and "a2a" in planner.warnings[0] and "r0" not in planner.warnings[0]


@pytest.mark.parametrize("scope", ["job", "connection"])
def test_planned_subflows_are_each_placed(scope: str, tmp_path: Path) -> None:
    """planned with lb.subflows=4: one cross-leaf message is cut into 4 equal subflows (split_evenly's
    sizes), and edge colouring gives the 4 flows of that leaf pair the 4 spines."""
    nbytes = 1_000_003
    job = [{"name": "one", "collective": "permutation", "ranks": 2, "shift": 1, "bytes": nbytes,
            "placement": ["h0", "h4"]}]
    r = run(scenario(job, "lb.subflows=4", f"lb.plan_scope={scope}"), tmp_path / scope)
    flows = [f for f in r.rows("flows") if f["src"] == "h0"]
    assert sorted(f["bytes"] for f in flows) == [250_000, 250_001, 250_001, 250_001]
    assert sorted(turning(f["path"]) for f in flows) == [f"spine{i}" for i in range(4)]


def test_planned_subflows_keep_a_permutation_at_congestion_one(tmp_path: Path) -> None:
    """The bench permutation with 2 subflows per message: 8 subflows per leaf pair on 4 spines, 2 per
    link, i.e. one message's bytes: congestion 1 and the ideal CCT."""
    sc = scenario([], "lb.subflows=2", "workload.jobs.0.bytes=1MiB", workload="permutation")
    job = Simulation(prepare(sc)).run(None).jobs[0]
    assert job["max_congestion"] == 1 and job["slowdown"] < 1.01, job


def test_packet_and_fluid_agree_with_connection_scope() -> None:
    """Four 8-rank random rings, two iterations 150 us apart, re-planned every 100 us (so some
    windows are idle): both backends re-plan at their own posts, plan alike, and their CCTs agree
    within 2%; every job's flows stay at one per link."""
    rings = [{"name": f"job{j}", "collective": "ring_allreduce", "placement": "random", "ranks": 8, "bytes": "2MiB",
              "iterations": 2, "compute_gap_ns": 150_000} for j in range(4)]
    sc = scenario(rings, "lb.plan_scope=connection", "lb.replan_ns=100us")
    exp = prepare(sc)
    packet, fluid = Simulation(exp), FluidSimulation(exp)
    jobs = zip(packet.run(None).jobs, fluid.run(None).jobs)
    for p, f in jobs:
        assert abs(f["mean_cct_ns"] / p["mean_cct_ns"] - 1) < 0.02, (p["name"], p["cct_ns"], f["cct_ns"])
        assert p["max_congestion"] == f["max_congestion"] == 1
    assert packet.planner.connections.plans > 4 and fluid.planner.connections.plans > 4
    assert exp.flow_plan.connections.plans == 1  # the runs re-planned their own copies


def faulty(*sets: str) -> tuple:
    """MIX with the uplink the ring's first message is pinned to dying at 40 us (detected 5 us,
    converged 10 us, re-planned 20 us later): the scenario and the dead link's two directions."""
    healthy = prepare(scenario(MIX, *sets))
    m = healthy.workload.messages[0]
    (_, entropy), = healthy.flow_plan.subflows(m)
    leaf, spine = healthy.fabric.path(m.src, m.dst, entropy)[1:3]
    fault = f"faults=[{{kind: link_down, at_ns: 40us, link: [{leaf}, {spine}]}}]"
    sc = scenario(MIX, *sets, "routing.detect_ns=5us", "routing.converge_ns=10us", "routing.replan_ns=20us", fault)
    return sc, {(leaf, spine), (spine, leaf)}


def test_periodic_replans_are_caught_up_before_a_fault_replan() -> None:
    """R = 30 us, messages posted at 10 us, the fault's re-plan at 65 us: the re-plan due at 30 us
    runs first (its window holds the posts), the one at 60 us sees nothing, the fault's re-plans
    every connection planned so far on the surviving fabric, and the next is due at 90 us. The
    experiment's own plan is untouched (the run re-plans a copy)."""
    sc, dead = faulty("lb.plan_scope=connection", "lb.replan_ns=30us")
    exp = prepare(sc)
    fp = exp.flow_plan.for_run(exp.fabric, exp.faults)
    assert fp is not exp.flow_plan and fp.connections.index is exp.flow_plan.connections.index
    posted = array("d", [-1.0]) * len(exp.workload.messages)
    for i in range(8):  # the ring's first step
        posted[i] = 10_000_000.0
    view = exp.fabric.with_next_hops(exp.faults.route_changes[-1].next_hops)
    fp.on_route_change(view, posted, 65_000_000, sc, exp.workload)
    assert fp.connections.plans == 3 and fp.next_replan_ps == 90_000_000
    assert len(fp.phase_seconds) == 3
    ends = fp.connections.index.ends
    for (c, _), e in fp.connections.entropy.items():
        _, src, dst, a, b = ends[c]
        path = view.path(src, dst, e)
        assert not dead & set(zip(path, path[1:])) and path[2] in view.turning_points(a, b)
    assert exp.flow_plan.connections.plans == 1 and exp.flow_plan.next_replan_ps == 30_000_000


@pytest.mark.parametrize("backend", ["fluid", "packet"])
def test_connection_scope_runs_through_a_fault(backend: str, tmp_path: Path) -> None:
    """A spine link the ring is pinned across dies at 40 us; the fault's re-plan (20 us later) and
    the periodic ones after it keep every flow off it: only flows that started before the re-plan
    crossed it (the packet backend, with selective repeat, lost packets there until then)."""
    sc, dead = faulty("lb.plan_scope=connection", "lb.replan_ns=30us",
                      *(["nic.transport=sr"] if backend == "packet" else []))
    exp = prepare(sc)
    sim = FluidSimulation(exp) if backend == "fluid" else Simulation(exp)
    summary = sim.run(Recorder(tmp_path / "run", sc.model_dump(mode="json"), sc.traces.part_rows))
    flows = pads.dataset(tmp_path / "run" / "flows").to_table().to_pylist()
    crossing = [f["start_ns"] for f in flows if dead & set(zip(f["path"] or [], (f["path"] or [])[1:]))]
    assert crossing and max(crossing) < 60_000
    if backend == "packet":
        assert summary.transport["fault_drops"] > 0
    assert summary.sim_time_ns > 200_000  # traffic went on long after the re-plan
    assert sim.planner.connections.plans > 3  # periodic re-plans after the fault's


def _tables(directory: Path) -> dict[str, list]:
    return {name: pads.dataset(directory / name).to_table().to_pylist()
            for name in ("flows", "messages", "congestion", "collectives")}


def test_connection_scope_is_deterministic(tmp_path: Path) -> None:
    sc = scenario(MIX, "lb.plan_scope=connection", "lb.replan_ns=40us", "lb.planner=annealing",
                  "lb.annealing_steps=200")
    tables = []
    for name in ("a", "b"):
        exp = prepare(sc)
        Simulation(exp).run(Recorder(tmp_path / name, sc.model_dump(mode="json"), sc.traces.part_rows))
        tables.append(_tables(tmp_path / name))
    assert tables[0] == tables[1]


@pytest.mark.parametrize("sets,field", [
    (["--lb", "split_minimal", "--set", "lb.plan_scope=connection"], "lb.plan_scope"),
    (["--lb", "ecmp", "--set", "lb.plan_scope=connection"], "lb.plan_scope"),
    (["--lb", "planned", "--set", "lb.replan_ns=100us"], "lb.replan_ns"),
    (["--lb", "planned", "--set", "lb.plan_scope=cluster", "--set", "lb.replan_ns=100us"], "lb.replan_ns"),
    (["--lb", "planned", "--set", "lb.plan_scope=connection", "--set", "lb.replan_ns=0"], "lb.replan_ns"),
    (["--lb", "planned", "--set", "lb.time_limit_s=5"], "lb.time_limit_s"),
    (["--lb", "planned", "--set", "lb.planner=ilp", "--set", "lb.time_limit_s=0"], "lb.time_limit_s"),
])
def test_bad_combinations_are_one_line_errors(sets: list[str], field: str, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "pktsim", "run", *sets, "--quiet", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], p.stderr


def test_an_unproven_ilp_plan_is_reported_with_its_gap() -> None:
    """A solver stopped by lb.time_limit_s: the plan is used and the run's warnings say how far from
    proven it is; with time to prove it, no warning."""
    rushed = prepare(scenario([], "workload.jobs.0.placement=random", "lb.planner=ilp", "lb.time_limit_s=0.001",
                              workload="alltoall"))
    gaps = rushed.flow_plan.solver_gaps
    assert gaps and all(0 < g < 1 for g in gaps.values())
    assert any("not proven optimal" in w and "MIP gap" in w for w in rushed.flow_plan.warnings)
    proven = prepare(scenario([], "lb.planner=ilp", workload="permutation"))
    assert not proven.flow_plan.solver_gaps and not proven.flow_plan.warnings
