"""The scenario spec: one topology spec per kind (what each knows against the graph it builds), fields
of another kind refused as one-line errors, allowed names read from the registries, PFC physics."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from pktsim.errors import InputError, TooLarge
from pktsim.fabric import pfc
from pktsim.fabric.selectors import SCHEMES
from pktsim.fabric.topology import TOPOLOGY_KINDS, build_graph, host_tor, hosts
from pktsim.planning.planners import ILP_MAX_BINARIES, PLANNERS, ilp, plan
from pktsim.scenario import (
    LB_SCHEMES,
    PAUSE_FRAME_BYTES,
    TOPOLOGY_SPECS,
    FatTreeSpec,
    JobSpec,
    LbSpec,
    LeafSpineSpec,
    Scenario,
    TopologySpec,
    load_scenario,
    pfc_headroom_bytes,
    preset_names,
)
from pktsim.workload.collectives import COLLECTIVES

REPO = Path(__file__).resolve().parent.parent

TOPOLOGIES = [
    {"kind": "leaf_spine"},
    {"kind": "leaf_spine", "spines": 3, "leaves": 5, "hosts_per_leaf": 6, "link_gbps": 400, "host_link_gbps": 100},
    {"kind": "leaf_spine", "spines": 2, "leaves": 7, "hosts_per_leaf": 2, "spine_delay_ns": [1000, 3500]},
    {"kind": "leaf_spine", "spines": 9, "leaves": 2, "hosts_per_leaf": 1},
    {},  # kind omitted: leaf_spine
    {"kind": "fat_tree"},
    {"kind": "fat_tree", "k": 2},
    {"kind": "fat_tree", "k": 6, "link_gbps": 200, "host_link_gbps": 50, "link_delay_ns": 700},
    {"kind": "fat_tree", "k": 8},
]


def topology(fields: dict) -> TopologySpec:
    return Scenario.model_validate({"topology": fields, "workload": {"jobs": [{"ranks": 2}]}}).topology


@pytest.mark.parametrize("fields", TOPOLOGIES, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()) or "default")
def test_topology_spec_knows_the_graph_it_builds(fields: dict) -> None:
    spec = topology(fields)
    assert isinstance(spec, TOPOLOGY_SPECS[fields.get("kind", "leaf_spine")])
    g = spec.build_graph()
    assert g.graph["kind"] == spec.kind
    assert sorted(g.nodes) == sorted(build_graph(spec).nodes)
    host_names = hosts(g)
    assert len(host_names) == spec.n_hosts == sum(1 for _, d in g.nodes(data=True) if d["kind"] == "host")
    per_tor = Counter(host_tor(g, h) for h in host_names)
    assert set(per_tor.values()) == {spec.hosts_per_tor}
    # hosts are numbered ToR by ToR: host i is under ToR i // hosts_per_tor
    tors = [host_tor(g, h) for h in host_names]
    assert all(tors[i] == tors[i - i % spec.hosts_per_tor] for i in range(len(tors)))
    switches = [n for n, d in g.nodes(data=True) if d["kind"] == "switch"]
    assert max(g.degree(s) for s in switches) == spec.max_switch_ports
    assert max(d["delay_ns"] for _, _, d in g.edges(data=True)) == spec.max_link_delay_ns
    assert {d["gbps"] for u, v, d in g.edges(data=True) if "h" in (u[0], v[0])} == {spec.host_gbps}
    longest = max(len(p) - 1 for p in _host_paths(g, host_names))
    assert longest == spec.max_path_links
    # what the projected work (pktsim.scenario.limits) counts before anything is built
    assert len(set(tors)) == spec.n_tors
    assert 2 * sum(1 for u, v in g.edges if u in switches and v in switches) == spec.n_fabric_ports
    assert sum(g.degree(s) for s in switches) == spec.n_switch_ports


def _host_paths(g, host_names):
    import networkx as nx

    for a in host_names[:1] + host_names[-1:]:
        for b, path in nx.single_source_shortest_path(g, a).items():
            if b in host_names:
                yield path


def test_topology_kind_defaults_to_leaf_spine_and_dumps_only_its_own_fields() -> None:
    assert isinstance(Scenario().topology, LeafSpineSpec)
    leaf = topology({"spines": 2, "leaves": 2, "hosts_per_leaf": 2})
    assert leaf.kind == "leaf_spine"
    assert list(leaf.model_dump()) == ["kind", "spines", "leaves", "hosts_per_leaf", "link_gbps", "host_link_gbps",
                                       "link_delay_ns", "spine_delay_ns"]
    fat = topology({"kind": "fat_tree", "k": 4})
    assert list(fat.model_dump()) == ["kind", "k", "link_gbps", "host_link_gbps", "link_delay_ns"]
    for spec in (leaf, fat):  # the dump is a valid topology again
        assert topology(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize("kind,field,value,owner", [
    ("leaf_spine", "k", 8, "fat_tree"),
    ("fat_tree", "spines", 8, "leaf_spine"),
    ("fat_tree", "leaves", 2, "leaf_spine"),
    ("fat_tree", "hosts_per_leaf", 16, "leaf_spine"),
    ("fat_tree", "spine_delay_ns", [1000, 2000], "leaf_spine"),
])
def test_a_field_of_another_kind_is_a_one_line_error_naming_it(tmp_path: Path, kind, field, value, owner) -> None:
    base = "small" if kind == "leaf_spine" else "fat_tree_k4"
    with pytest.raises(InputError) as e:
        load_scenario(topology=base, overrides=[f"topology.{field}={value}"])
    assert (e.value.source, e.value.field, e.value.problem) == (
        f"--set topology.{field}", f"topology.{field}", f"only for {owner} topologies")
    # the same in a topology file: the error names the file
    path = tmp_path / "topo.yaml"
    path.write_text(f"kind: {kind}\n{field}: {value}\n")
    with pytest.raises(InputError) as e:
        load_scenario(topology=str(path))
    assert str(e.value) == f"{path}: topology.{field}: only for {owner} topologies"


def test_k_on_a_leaf_spine_is_refused_by_the_command_line_in_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pktsim", "run", "--set", "topology.k=8"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "pktsim: error: --set topology.k: topology.k: only for fat_tree topologies"]
    assert not (tmp_path / "traces").exists()


def test_a_field_of_another_kind_is_an_error_even_at_its_default() -> None:
    """No field is silently ignored: ``k`` means nothing on a leaf-spine, whatever its value."""
    for topology, field in ((None, "k=4"), ("fat_tree_k4", "spines=4"), ("fat_tree_k4", "spine_delay_ns=null")):
        with pytest.raises(InputError) as e:
            load_scenario(topology=topology, overrides=[f"topology.{field}"])
        assert e.value.field == f"topology.{field.split('=')[0]}" and "only for" in e.value.problem


def test_set_topology_kind_switches_the_kind_of_a_preset() -> None:
    sc = load_scenario(overrides=["topology.kind=fat_tree", "topology.k=4"])  # the default preset is a leaf-spine
    assert sc.topology == FatTreeSpec(k=4) and sc.topology.n_hosts == 16
    assert sc.model_dump(mode="json")["topology"] == {"kind": "fat_tree", "k": 4, "link_gbps": 100.0,
                                                      "host_link_gbps": None, "link_delay_ns": 1000}
    sc = load_scenario(topology="fat_tree_k8", overrides=["topology.kind=leaf_spine", "topology.spines=2"])
    assert sc.topology == LeafSpineSpec(spines=2)
    # what the command line sets is still checked against the new kind
    with pytest.raises(InputError, match=r"^--set topology.spines: topology.spines: only for leaf_spine"):
        load_scenario(overrides=["topology.kind=fat_tree", "topology.spines=8"])
    with pytest.raises(InputError, match=r"^--set topology.kind: topology.kind: Input should be 'leaf_spine' or "
                                         r"'fat_tree' \(got 'torus'\)$"):
        load_scenario(overrides=["topology.kind=torus"])


def test_every_topology_preset_loads() -> None:
    names = preset_names("topology")
    assert names == sorted(p.stem for p in (REPO / "topologies").glob("*.yaml"))
    for name in names:
        sc = load_scenario(topology=name)
        assert sc.topology.n_hosts >= 16 and sc.topology.kind in TOPOLOGY_SPECS


def test_registries_are_the_scenarios_choices() -> None:
    assert get_args(LbSpec.model_fields["scheme"].annotation) == SCHEMES.names() == LB_SCHEMES
    assert get_args(LbSpec.model_fields["planner"].annotation) == PLANNERS.names()
    assert PLANNERS.names() == ("edge_coloring", "greedy", "annealing", "ilp", "mmf")
    assert get_args(JobSpec.model_fields["collective"].annotation) == COLLECTIVES.names()
    assert set(COLLECTIVES.names()) == {"ring_allreduce", "alltoall_allreduce", "alltoall", "allgather",
                                        "reduce_scatter", "permutation", "incast"}
    assert tuple(TOPOLOGY_SPECS) == TOPOLOGY_KINDS.names() == ("leaf_spine", "fat_tree")
    for kind, cls in TOPOLOGY_SPECS.items():
        assert get_args(cls.model_fields["kind"].annotation) == (kind,)
    from pktsim.packet.cc import CONGESTION_CONTROLS
    from pktsim.packet.recovery import LOSS_RECOVERIES
    from pktsim.scenario import NicSpec

    assert get_args(NicSpec.model_fields["cc"].annotation) == CONGESTION_CONTROLS.names() == ("none", "dcqcn", "dctcp")
    assert get_args(NicSpec.model_fields["transport"].annotation) == LOSS_RECOVERIES.names() == ("ideal", "gbn", "sr")
    for name in COLLECTIVES:  # every registered collective validates and generates messages
        job = {"collective": name, "ranks": 4, "bytes": 4096}
        sc = load_scenario(overrides=[f"workload.jobs=[{job}]".replace("'", "")])
        assert sc.workload.jobs[0].collective == name


def test_plan_dispatches_through_the_registry() -> None:
    flows = [("l0", "l1", 10), ("l0", "l1", 10), ("l1", "l0", 10)]
    for name in PLANNERS:
        assign = plan(name, flows, 2, seed=1, steps=100)
        assert len(assign) == 3 and set(assign) <= {0, 1}
    with pytest.raises(ValueError, match="unknown planner 'magic'"):
        plan("magic", flows, 2)


def test_ilp_refuses_large_instances_with_a_typed_error() -> None:
    spines = 2
    flows = [(f"l{i % 7}", f"l{(i + 1) % 7}", 1) for i in range(ILP_MAX_BINARIES // spines + 1)]
    with pytest.raises(TooLarge) as e:
        ilp(flows, spines)
    assert isinstance(e.value, InputError) and "too large" in e.value.problem


def test_pfc_headroom_physics() -> None:
    import pktsim.scenario as scenario

    assert scenario.pfc_headroom_bytes is pfc.pfc_headroom_bytes and PAUSE_FRAME_BYTES == pfc.PAUSE_FRAME_BYTES == 64
    sc = load_scenario(topology="bench", profile="roce")
    # 2 x (1 us + 0 latency) at 100 Gb/s = 25,000 bytes, + 2 MTU of 4096 + the pause frame
    assert pfc_headroom_bytes(sc) == 25_000 + 2 * 4096 + 64
    sc = load_scenario(topology="bench", profile="roce", overrides=["topology.spine_delay_ns=[1000, 5000, 1000, 1000]"])
    assert pfc_headroom_bytes(sc) == 125_000 + 2 * 4096 + 64
    # the validation still uses them: bench's largest switch (a leaf: 4 hosts + 4 spines, or a spine: 8
    # leaves) has 8 ports, and 8 x (xoff + headroom) must fit the buffer
    with pytest.raises(InputError, match=r"switch.pfc.xoff_bytes: PFC thresholds above the buffer: 8 ports x "
                                         r"\(xoff 262144 \+ headroom 33256\) = 2363200 bytes"):
        load_scenario(topology="bench", profile="roce", overrides=["switch.buffer_bytes=1MiB"])


def _leaves(model, prefix=()):
    """Every leaf field of ``model`` (nested models walked), as dotted --set keys."""
    out = []
    for name, info in model.model_fields.items():
        nested = [a for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        out += _leaves(nested[0], (*prefix, name)) if nested else [".".join((*prefix, name))]
    return out


SCENARIO_LEAVES = sorted(
    {key for key in _leaves(Scenario) if not key.startswith(("topology", "workload"))}
    | {f"topology.{k}" for k in _leaves(LeafSpineSpec) if k != "kind"}
    | {f"workload.jobs.0.{k}" for k in _leaves(JobSpec)}
)


@pytest.mark.parametrize("value", ["1000000000000000000000000000000", ".inf", "-.inf", ".nan"])
def test_every_field_has_bounds(value: str) -> None:
    """No count, size, rate or time is unbounded: 10**30 and infinities are refused everywhere, as a
    one-line error naming the field."""
    assert len(SCENARIO_LEAVES) > 60
    for key in SCENARIO_LEAVES:
        with pytest.raises(InputError) as e:
            load_scenario(overrides=[f"{key}={value}"])
        assert e.value.field.replace("[0]", ".0") == key, str(e.value)
    for key in _leaves(FatTreeSpec):
        with pytest.raises(InputError) as e:
            load_scenario(topology="fat_tree_k4", overrides=[f"topology.{key}={value}"])
        assert e.value.field == f"topology.{key}", str(e.value)


def test_a_run_without_a_name_is_named_after_its_presets() -> None:
    assert load_scenario().name == "small-ring_allreduce"
    assert load_scenario(topology="bench", workload="permutation").name == "bench-permutation"
    assert load_scenario(topology="bench", overrides=["name=mine"]).name == "mine"
