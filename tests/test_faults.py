"""Faults as scenario input and as a routing timeline (pktsim/fabric/faults.py): the one-line
errors, the surviving equal-cost groups against a brute-force search, the reaction times against
their closed forms, the random generator, and re-planning around a dead link."""

from __future__ import annotations

import random
import subprocess
import sys

import networkx as nx
import pytest

from pktsim.errors import InputError
from pktsim.experiment import prepare
from pktsim.fabric.faults import draw_faults, surviving_next_hops
from pktsim.fluid.backend import FluidSimulation
from pktsim.packet.backend import Simulation
from pktsim.scenario import blame, load_scenario
from pktsim.units import ns_to_ps

RING4 = ["workload.jobs.0.iterations=2", "workload.jobs.0.compute_gap_ns=10us"]


def _faults(*faults: str) -> str:
    return "faults=[" + ", ".join(faults) + "]"


BAD = [
    # (overrides, field named, words in the message)
    ([_faults("{kind: link_dwn, link: [leaf0, spine1]}")], "faults[0].kind", "did you mean 'link_down'"),
    ([_faults("{kind: link_down, link: [leaf0, spine9]}")], "faults[0].link", "no node named 'spine9'"),
    ([_faults("{kind: link_down, link: [leaf0, leaf1]}")], "faults[0].link", "are not linked"),
    ([_faults("{kind: link_down, link: [leaf0]}")], "faults[0].link", "at least 2"),
    ([_faults("{kind: link_up, link: [leaf0, spine1]}")], "faults[0].kind", "no earlier fault took it down"),
    ([_faults("{kind: link_down, link: [leaf0, spine1]}", "{kind: link_down, at_ns: 1us, link: [spine1, leaf0]}")],
     "faults[1].kind", "already down"),
    ([_faults("{kind: link_down, link: [h0, leaf0]}")], "faults[0].link", "h0 could never send"),
    (["topology.spines=1", _faults("{kind: link_down, link: [leaf0, spine0]}")], "faults[0].link", "no path from"),
    ([_faults("{kind: straggler, host: h5, compute_factor: 2}")], "faults[0].host", "no compute gaps"),
    ([_faults("{kind: straggler, host: h99, compute_factor: 2}")], "faults[0].host", "no host named 'h99'"),
    (["workload.jobs.0.ranks=4", *RING4, _faults("{kind: straggler, host: h9, compute_factor: 2}")],
     "faults[0].host", "runs no rank"),
    ([_faults("{kind: link_loss, link: [leaf0, spine1], drop_rate: 2}")], "faults[0].drop_rate", "less than or equal to 1"),
    ([_faults("{kind: link_degrade, link: [leaf0, spine1]}")], "faults[0].gbps", "Field required"),
    ([_faults("{kind: link_down, link: [leaf0, spine1], direction: up, oneway: true}")], "faults[0]", "not both"),
    (["faults=3"], "faults", "expected a list of faults or {random: {...}}"),
    (["faults={random: {at: [0.5, 0.1]}}"], "faults.random", "ends before it starts"),
    (["faults={random: {at: [0.2, 1.5]}}"], "faults.random.at[1]", "[0, 1)"),
    (["faults={random: {at: [0.2, 200us]}}"], "faults.random", "both ends"),
    (["faults={random: {kinds: [link_up]}}"], "faults.random.kinds[0]", "link_down"),
    (["routing.converge_ns=1us"], "routing.converge_ns", "before detection"),
]


@pytest.mark.parametrize("overrides, field, words", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_faults_are_one_line_errors_naming_the_field(overrides, field, words):
    with pytest.raises(InputError) as info:
        scenario = load_scenario(overrides=overrides)
        try:
            prepare(scenario)
        except InputError as e:
            raise blame(e, scenario) from None
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--set faults") or message.startswith("--set routing") or \
        message.startswith("--set topology") or message.startswith("--set workload"), message
    assert f"{field}:" in message or f"{field} " in message, message
    assert words in message, message


def test_a_bad_fault_exits_2_without_a_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "pktsim", "run", "--out", str(out), "--set", "nic.transport=sr", "--set",
         "faults=[{kind: link_down, at_ns: 1us, link: [leaf0, spine7]}]"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "faults[0].link" in proc.stderr and "spine7" in proc.stderr
    assert not out.exists()


def test_dropping_faults_need_a_transport_that_resends():
    from pktsim.backends import backend

    scenario = load_scenario(overrides=[_faults("{kind: link_down, at_ns: 10us, link: [leaf0, spine1]}")])
    problem = backend("packet").unsupported(scenario)
    assert problem is not None and "faults[0].kind" in str(problem) and "nic.transport" in str(problem)
    ok = load_scenario(overrides=["nic.transport=sr", _faults("{kind: link_down, at_ns: 10us, link: [leaf0, spine1]}")])
    assert backend("packet").unsupported(ok) is None


# -- the surviving groups against a brute force ------------------------------------------------


def _brute_force_groups(fabric, dead: set) -> dict:
    """Per switch and ToR: the healthy next hops n with a live link to n and a live path from n
    down the healthy equal-cost DAG to the ToR (networkx search, one per pair)."""
    out = {}
    for tor in set(fabric.tor_of.values()):
        dag = nx.DiGraph()
        for s, groups in fabric.next_hops.items():
            for n in groups.get(tor, ()):
                if (s, n) not in dead:
                    dag.add_edge(s, n)
        for s, groups in fabric.next_hops.items():
            group = groups.get(tor)
            if group is None:
                continue
            kept = [n for n in group if (s, n) not in dead and (n == tor or (n in dag and tor in dag and nx.has_path(dag, n, tor)))]
            out[s, tor] = kept if kept else group
    return out


@pytest.mark.parametrize("topology", ["leaf_spine", "fat_tree"])
def test_surviving_groups_match_a_brute_force_search(topology):
    rng = random.Random(7)
    overrides = ["topology.kind=fat_tree", "topology.k=4"] if topology == "fat_tree" else \
        ["topology.spines=3", "topology.leaves=4", "topology.hosts_per_leaf=1", "workload.jobs.0.ranks=4"]
    fabric = prepare(load_scenario(overrides=overrides)).fabric
    fabric_links = [(u, v) for u, v in fabric.links if fabric.is_switch(u) and fabric.is_switch(v)]
    for _ in range(30):
        dead = set(rng.sample(fabric_links, rng.randint(1, 4)))
        groups = surviving_next_hops(fabric, set(), dead)
        brute = _brute_force_groups(fabric, dead)
        for (s, tor), kept in brute.items():
            assert groups[s][tor] == kept, (s, tor, dead)


def test_local_knowledge_only_changes_the_ends_of_the_link():
    fabric = prepare(load_scenario()).fabric
    groups = surviving_next_hops(fabric, {("leaf0", "spine1"), ("spine1", "leaf0")}, set())
    assert groups["leaf0"]["leaf1"] == ["spine0", "spine2", "spine3"]
    assert groups["leaf3"]["leaf0"] == ["spine0", "spine1", "spine2", "spine3"]  # not converged yet
    assert groups["spine1"]["leaf0"] == ["leaf0"]  # nothing left: the black hole until convergence


# -- reaction times ----------------------------------------------------------------------------------


def test_a_flap_shorter_than_detection_changes_no_route():
    scenario = load_scenario(overrides=[
        "routing.detect_ns=10us", _faults("{kind: link_down, at_ns: 100us, link: [leaf0, spine1]}",
                                          "{kind: link_up, at_ns: 105us, link: [leaf0, spine1]}",
                                          "{kind: link_down, at_ns: 200us, link: [leaf0, spine1]}",
                                          "{kind: link_up, at_ns: 300us, link: [leaf0, spine1]}")])
    schedule = prepare(scenario).faults
    rows = schedule.rows()
    assert [r.detected_ns for r in rows] == [None, None, 210_000, 310_000]
    assert schedule.route_changes[0].at_ps == ns_to_ps(210_000)


@pytest.mark.parametrize("scheme, reroute", [("ecmp", "switches"), ("spray", "switches"), ("adaptive", "local"),
                                             ("flowlet", "local"), ("planned", "planner"),
                                             ("split_minimal", "planner")])
def test_route_changes_follow_each_schemes_delays(scheme, reroute):
    detect, converge, replan = 30_000, 250_000, 2_000_000
    scenario = load_scenario(overrides=[
        f"lb.scheme={scheme}", f"routing.detect_ns={detect}", f"routing.converge_ns={converge}",
        f"routing.replan_ns={replan}",
        _faults("{kind: link_down, at_ns: 100us, link: [leaf0, spine1]}", "{kind: link_up, at_ns: 5ms, link: [leaf0, spine1]}"),
    ])
    schedule = prepare(scenario).faults
    assert schedule.reroute == reroute
    delays = {"switches": (detect, converge), "local": (0, converge), "planner": (replan, replan)}[reroute]
    expected = sorted({ns_to_ps(t + d) for t in (100_000, 5_000_000) for d in delays})
    assert [c.at_ps for c in schedule.route_changes] == expected
    assert all(c.replan == (reroute == "planner") for c in schedule.route_changes)
    final = schedule.route_changes[-1].next_hops
    assert final == schedule.route_changes[-1].next_hops and final["leaf0"]["leaf1"] == [f"spine{i}" for i in range(4)]
    rows = schedule.rows()
    assert [r.kind for r in rows] == ["link_down", "link_up"]
    if reroute == "planner":
        assert rows[0].replanned_ns == 100_000 + replan and rows[0].converged_ns is None
    else:
        assert (rows[0].detected_ns, rows[0].converged_ns) == (100_000 + delays[0], 100_000 + converge)
        assert rows[0].replanned_ns is None


# -- the random generator ------------------------------------------------------------------------------


def test_random_faults_are_reproducible_distinct_and_in_their_window():
    scenario = load_scenario(topology="ls16x16x16", overrides=["workload.jobs.0.ranks=16"])
    ex = prepare(scenario)
    spec = load_scenario(overrides=["faults={random: {count: 6, kinds: [link_down, link_degrade, link_loss], "
                                    "at: [100us, 300us], seed: 5}}"]).faults.random
    a = draw_faults(spec, ex.fabric, ex.workload, None, 1)
    assert a == draw_faults(spec, ex.fabric, ex.workload, None, 1)
    assert len({tuple(f["link"]) for f in a}) == 6
    assert all(100_000 <= f["at_ns"] <= 300_000 for f in a)
    assert all(ex.fabric.is_switch(u) and ex.fabric.is_switch(v) for u, v in (f["link"] for f in a))
    other = spec.model_copy(update={"seed": 6})
    assert draw_faults(other, ex.fabric, ex.workload, None, 1) != a
    unseeded = spec.model_copy(update={"seed": None})  # the scenario's seed (5) then draws
    assert draw_faults(unseeded, ex.fabric, ex.workload, None, 5) == a
    frac = load_scenario(overrides=["faults={random: {kinds: [link_down], at: [0.5, 0.5]}}"]).faults.random
    assert draw_faults(frac, ex.fabric, ex.workload, 1_000_000, 1)[0]["at_ns"] == 500_000
    hosts = load_scenario(overrides=["faults={random: {count: 3, kinds: [straggler], tier: host}}"]).faults.random
    drawn = draw_faults(hosts, ex.fabric, ex.workload, 10, 1)
    assert len({f["host"] for f in drawn}) == 3 and all(f["host"] in ex.fabric.host_index for f in drawn)


# -- re-planning around a dead link ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["planned", "split_minimal"])
def test_replanned_paths_avoid_the_dead_link_and_stay_balanced(scheme):
    scenario = load_scenario(topology="ls16x16x16", overrides=[
        f"lb.scheme={scheme}", "workload.jobs.0.ranks=64", "workload.jobs.0.placement=random",
        _faults("{kind: link_down, at_ns: 0, link: [leaf1, spine3]}"),
    ])
    ex = prepare(scenario)
    change = ex.faults.route_changes[-1]
    view = ex.fabric.with_next_hops(change.next_hops)
    ids = [m.msg_id for m in ex.workload.messages]
    ex.flow_plan.replan(view, ids, scenario, ex.workload)
    per_phase: dict = {}
    for m in ex.workload.messages:
        for size, entropy in ex.flow_plan.subflows(m):
            path = view.path(m.src, m.dst, entropy)
            hops = set(zip(path, path[1:]))
            assert not hops & {("leaf1", "spine3"), ("spine3", "leaf1")}, (m.msg_id, path)
            if len(path) > 3:
                key = (m.op, m.step, path[2])
                per_phase[key] = per_phase.get(key, 0) + size
    assert per_phase  # cross-leaf traffic exists and went somewhere


@pytest.mark.parametrize("backend", ["packet", "fluid"])
def test_a_fault_after_the_last_job_is_a_warning(backend: str) -> None:
    """A fault's absolute time cannot be checked against the run's length, which only the run
    knows: one set at or after the end of the last job changed nothing, and the summary says so
    (the fault during the run is not named)."""
    sc = load_scenario(topology="bench", workload="permutation", overrides=[
        "workload.jobs.0.bytes=256KiB",
        _faults("{kind: link_degrade, at_ns: 1us, link: [leaf0, spine0], gbps: 50}",
                "{kind: link_degrade, at_ns: 50ms, link: [leaf1, spine1], gbps: 50}")])
    exp = prepare(sc)
    summary = (Simulation(exp) if backend == "packet" else FluidSimulation(exp)).run()
    end_ns = max(j["end_ns"] for j in summary["jobs"])
    assert end_ns < 1_000_000
    (warning,) = summary["warnings"]
    assert warning.startswith("fault 1 (link_degrade leaf1-spine1 at 50.000 ms) comes after the last job ended")
