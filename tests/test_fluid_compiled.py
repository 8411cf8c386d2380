"""The compiled fluid loop (pktsim/fluid/compiled.py) against the Python loop it compiles: the same
tables, row for row, and the same summary, on random scenarios of every scheme it covers."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation, _Active
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder

SCHEMES = [
    {"scheme": "ecmp"}, {"scheme": "split", "subflows": 3}, {"scheme": "split_minimal"},
    {"scheme": "planned"}, {"scheme": "planned", "planner": "greedy", "plan_scope": "cluster"},
    {"scheme": "planned", "planner": "mmf", "subflows": 2},
]
COLLECTIVES = ["ring_allreduce", "alltoall_allreduce", "alltoall", "allgather", "reduce_scatter", "permutation"]


def _random_scenario(seed: int) -> Scenario:
    """Scenario ``seed``: the scheme cycles; fabric (leaf-spine or fat-tree), jobs (one to three,
    staggered, several iterations with compute gaps), sizes and NIC drawn from the seed."""
    rng = random.Random(seed)
    lb = SCHEMES[seed % len(SCHEMES)]
    rates = {"link_gbps": rng.choice([100, 200, 400]), "host_link_gbps": rng.choice([100, 400]),
             "link_delay_ns": rng.choice([100, 1000])}
    if lb["scheme"] in ("ecmp", "split") and rng.random() < 0.4:  # planned routing is leaf-spine only
        topology, hosts = {"kind": "fat_tree", "k": 4, **rates}, 16
    else:
        spines, leaves, per_leaf = rng.randint(1, 4), rng.randint(2, 4), rng.randint(2, 4)
        topology = {"kind": "leaf_spine", "spines": spines, "leaves": leaves, "hosts_per_leaf": per_leaf, **rates}
        hosts = leaves * per_leaf
    jobs = []
    free = hosts  # jobs take hosts of their own
    for j in range(rng.choice([1, 1, 2, 3])):
        if free < 2:
            break
        ranks = rng.randint(2, min(free, 8))
        free -= ranks
        job = {"name": f"job{j}", "collective": rng.choice(COLLECTIVES), "ranks": ranks,
               "bytes": max(ranks, int(10 ** rng.uniform(2, 6.3))), "placement": rng.choice(["packed", "random"]),
               "iterations": rng.choice([1, 2]), "channels": rng.choice([1, 2]),
               "start_ns": rng.choice([0, 0, 5000]), "compute_gap_ns": rng.choice([0, 2000])}
        jobs.append(job)
    return Scenario.model_validate({
        "name": f"compiled{seed}", "seed": seed,
        "topology": topology,
        "nic": rng.choice([{"mtu_bytes": 4096, "header_bytes": 64}, {"mtu_bytes": 1500, "header_bytes": 48}]),
        "switch": {"latency_ns": rng.choice([0, 300])},
        "lb": lb,
        "workload": {"jobs": jobs},
    })


def _run(sc: Scenario, compiled: bool, out: Path) -> tuple[dict, dict[str, list[dict]]]:
    sim = FluidSimulation(prepare(sc), compiled=compiled)
    assert sim.compiled is compiled
    summary = sim.run(Recorder(out, sc.model_dump(mode="json"), part_rows=50))
    tables = {d.name: pads.dataset(d, format="parquet").to_table().to_pylist() for d in sorted(out.iterdir())
              if d.is_dir()}
    parts = {d.name: sorted(p.name for p in d.iterdir()) for d in out.iterdir() if d.is_dir()}
    summary = {k: v for k, v in summary.items() if k not in ("wall_s", "packet_hops_per_s", "plan_s")}
    return summary | {"parts": parts}, tables


def _same(sc: Scenario, tmp_path: Path) -> dict:
    want, want_tables = _run(sc, False, tmp_path / "python")
    got, got_tables = _run(sc, True, tmp_path / "compiled")
    assert got == want
    assert got_tables.keys() == want_tables.keys()
    for name, rows in want_tables.items():
        assert got_tables[name] == rows, name
    return want


SEEDS = range(24)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_scenarios_give_the_python_loops_tables(seed: int, tmp_path: Path) -> None:
    summary = _same(_random_scenario(seed), tmp_path)
    assert summary["events"] > 0


def test_the_random_scenarios_span_both_fabrics_and_every_scheme() -> None:
    scs = [_random_scenario(s) for s in SEEDS]
    assert {sc.topology.kind for sc in scs} == {"leaf_spine", "fat_tree"}
    assert len({(sc.lb.scheme, sc.lb.planner, sc.lb.plan_scope, sc.lb.subflows) for sc in scs}) == len(SCHEMES)
    assert any(len(sc.workload.jobs) > 1 for sc in scs)


def test_a_fabric_wide_ring_with_collisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hundred concurrent flows with ECMP collisions: components big enough that some rate
    computations take every active flow (more than half of them connected)."""
    whole = []
    component = _Active.component

    def counted(self: _Active, links: set[int], limit: int):
        found = component(self, links, limit)
        whole.append(found is None)
        return found

    monkeypatch.setattr(_Active, "component", counted)  # seen in the Python loop's run
    sc = load_scenario(topology="ls16x16x16", overrides=["workload.jobs.0.ranks=128", "workload.jobs.0.bytes=4MiB",
                                                          "workload.jobs.0.placement=random"])
    summary = _same(sc, tmp_path)
    assert summary["flows"] == 128 * 2 * 127
    assert any(whole) and not all(whole)


def test_the_runs_it_does_not_cover_keep_the_python_loop() -> None:
    for lb, overrides in [("spray", []), ("planned", ["lb.plan_scope=connection"]),
                          ("ecmp", ["faults=[{kind: link_down, at_ns: 10us, link: [leaf0, spine0]}]"])]:
        sc = load_scenario(topology="bench", workload="permutation", lb=lb, overrides=overrides)
        assert not FluidSimulation(prepare(sc)).compiled, lb
    sc = load_scenario(topology="bench", workload="permutation")
    assert FluidSimulation(prepare(sc)).compiled


class _FirstCallSlow:
    """``advance`` as a fresh process meets it: nothing compiled yet, and a first call that takes
    a while (numba compiling the loop)."""

    signatures: list = []

    def __init__(self, advance) -> None:
        self.advance, self.calls = advance, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.5)
        return self.advance(*args)


def test_the_progress_says_compiling_until_the_loop_has_run_once(monkeypatch) -> None:
    """The first compiled run after an install spends about 20 s in numba before the loop's first
    chunk: the progress reports say so (stage ``compiling``) instead of standing still, and say
    ``simulating`` from the first chunk on."""
    from pktsim.fluid import compiled

    monkeypatch.setattr(compiled, "advance", _FirstCallSlow(compiled.advance))
    sc = load_scenario(topology="bench", workload="permutation", overrides=["workload.jobs.0.bytes=64KiB"])
    sim = FluidSimulation(prepare(sc))
    assert sim.compiled
    stages = []
    sim.run(progress=lambda p: stages.append(p.stage))
    n = stages.count("compiling")  # reported every 0.2 s while waiting for the first chunk, and only then
    assert n >= 2 and stages[:n] == ["compiling"] * n
