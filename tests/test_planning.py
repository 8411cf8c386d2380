"""Minimal flow splitting (split_minimal): the plan, its loads, and its effect on collectives."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from conftest import leaf_spine, make_scenario, run
from pktsim.planning.flow_plan import minimal_split
from pktsim.scenario import load_scenario


@pytest.mark.parametrize("n,pieces", [(1, 16), (12, 4), (16, 1), (20, 4), (5, 16)])
def test_minimal_split_pieces_and_even_load(n: int, pieces: int) -> None:
    """s = 16 spines: pieces per leftover flow = s / gcd(n mod s, s); every spine carries n / s flows."""
    plan = minimal_split(n, 16)
    assert len(plan) == n
    leftover = plan[n - n % 16:]
    assert all(len(p) == pieces for p in leftover)
    assert all(len(p) == 1 for p in plan[: n - n % 16])
    load = [0.0] * 16
    for flow in plan:
        assert len(set(flow)) == len(flow)
        for spine in flow:
            load[spine] += 1 / len(flow)
    assert load == pytest.approx([n / 16] * 16)


@pytest.mark.parametrize("n,pieces", [(1, 16), (12, 4), (16, 1)])
def test_split_minimal_in_the_packets(n: int, pieces: int, tmp_path: Path) -> None:
    """n equal flows from leaf0 to leaf1 over 16 spines: each flow is cut into the planned pieces,
    each piece takes one path, and every uplink of leaf0 carries exactly n x size / 16 bytes."""
    size = 16 * 4000  # divisible by every piece count
    placement = [f"h{i}" for i in range(n)] + [f"h{16 + i}" for i in range(n)]
    job = {"name": "perm", "collective": "permutation", "ranks": 2 * n, "shift": n, "bytes": size,
           "placement": placement}
    sc = make_scenario(leaf_spine(spines=16, leaves=2, hosts_per_leaf=16), [job], lb="split_minimal")
    r = run(sc, tmp_path / "run")
    flows = r.rows("flows")
    per_msg = defaultdict(list)
    spine_load = defaultdict(int)
    for f in flows:
        if f["src"] in placement[:n]:
            per_msg[f["msg_id"]].append(f)
            assert len(f["spine_bytes"]) == 1 and f["path"] is not None  # one path per piece
            spine_load[f["spine_bytes"][0]["node"]] += f["bytes"]
    assert len(per_msg) == n
    assert all(len(pieces_) == pieces for pieces_ in per_msg.values())
    assert sorted(spine_load) == sorted(f"spine{s}" for s in range(16))
    assert set(spine_load.values()) == {n * size // 16}
    # the uplinks' link bytes agree (wire bytes include one header per packet of every piece)
    up = {row["dst"]: 0 for row in r.rows("links") if row["src"] == "leaf0" and row["dst"].startswith("spine")}
    for row in r.rows("links"):
        if row["src"] == "leaf0" and row["dst"] in up:
            up[row["dst"]] += row["bytes"]
    assert len(set(up.values())) == 1


def test_ring_allreduce_packed_ecmp_spray_split_minimal_agree(tmp_path: Path) -> None:
    """Packed ring neighbours use disjoint paths on a 1:1 leaf-spine: the schemes agree within a few %."""
    cct = {}
    for lb in ("ecmp", "spray", "split_minimal"):
        sc = load_scenario(topology="bench", workload="ring_allreduce", lb=lb, overrides=[
            "workload.jobs.0.ranks=32", "workload.jobs.0.bytes=8MiB"])
        cct[lb] = run(sc, tmp_path / lb).summary["jobs"][0]["mean_cct_ns"]
    assert max(cct.values()) / min(cct.values()) < 1.03, cct


def test_split_minimal_balances_a_cross_leaf_permutation(tmp_path: Path) -> None:
    """The bench permutation (4 flows per leaf pair over 4 spines): one flow per spine, so the
    collective runs at the ideal, as spraying would, while ECMP collides."""
    out = {}
    for lb in ("ecmp", "split_minimal"):
        sc = load_scenario(topology="bench", workload="permutation", lb=lb, overrides=["workload.jobs.0.bytes=2MiB"])
        out[lb] = run(sc, tmp_path / lb).summary["jobs"][0]["slowdown"]
    assert out["split_minimal"] < 1.01 < 1.5 < out["ecmp"]


def test_cluster_scope_warns_when_jobs_are_not_in_lockstep(tmp_path: Path) -> None:
    """Cluster planning is exact for jobs in lockstep; a mix of a ring and an all-to-all is not."""
    from pktsim.cli import main

    ring = {"name": "a", "collective": "ring_allreduce", "ranks": 8, "bytes": "64KiB", "placement": "random"}
    mixes = {"lockstep": [ring, {**ring, "name": "b"}],
             "mixed": [ring, {**ring, "name": "b", "collective": "alltoall"}]}
    for name, jobs in mixes.items():
        out = tmp_path / name
        jobs_yaml = str(jobs).replace("'", "")
        assert main(["run", "-t", "bench", "--lb", "planned", "--set", "lb.plan_scope=cluster",
                     "--set", f"workload.jobs={jobs_yaml}", "--quiet", "--out", str(out)]) == 0
        import json

        warnings = json.loads((out / "summary.json").read_text()).get("warnings", [])
        assert bool(warnings) == (name == "mixed") and all("lockstep" in w for w in warnings)
