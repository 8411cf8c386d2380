"""The reproduction study (pktsim/study.py): one row per run, numbers that match what the schemes
guarantee on the bench fabric, determinism, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pktsim.experiments import study
from pktsim.cli import main
from pktsim.errors import InputError

SCHEMES = ["ecmp", "spray", "split_minimal", "planned:edge_coloring"]
WORKLOADS = ["permutation", "ring_packed"]


RING_BYTES = 2**20


def _quick_rows() -> list[dict]:
    # The permutation at the quick size; the ring at 1 MiB per rank (32 KiB messages): at 256 KiB its
    # 8 KiB messages are two packets, and cutting them into pieces changes the store-and-forward
    # latency by a few percent, which is packetisation, not load balancing.
    runs = study.plan_runs(["bench"], ["permutation"], SCHEMES, 1, study.QUICK_BYTES, "auto")
    runs += study.plan_runs(["bench"], ["ring_packed"], SCHEMES, 1, RING_BYTES, "auto")
    return study.run_study(runs, jobs=1)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _quick_rows()


def _by(rows: list[dict], workload: str) -> dict[str, dict]:
    return {r["scheme"]: r for r in rows if r["workload"] == workload}


def test_one_ok_row_per_run_in_study_order(rows: list[dict]) -> None:
    assert [(r["workload"], r["scheme"], r["seed"]) for r in rows] == [
        (w, s, 1) for w in WORKLOADS for s in SCHEMES
    ]
    for r in rows:
        assert r["status"] == "ok" and r["backend"] == "packet" and r["fabric"] == "bench"
        assert r["cct_ns"] > 0 and r["ideal_ns"] > 0
        assert r["slowdown"] == pytest.approx(r["cct_ns"] / r["ideal_ns"])
        assert set(r) == set(study.COLUMNS)


def test_permutation_schemes(rows: list[dict]) -> None:
    # Shift = hosts per leaf: every leaf sends 4 flows to one other leaf over 4 spines. Minimal
    # splitting and edge colouring put one flow per spine (congestion 1, the ideal time); ECMP
    # hashes 4 flows onto 4 uplinks and collides (with seed 1: 3 flows on one link).
    perm = _by(rows, "permutation")
    for s in ("split_minimal", "planned:edge_coloring"):
        assert perm[s]["max_congestion"] == pytest.approx(1.0)
        assert perm[s]["slowdown"] < 1.02
    assert perm["ecmp"]["max_congestion"] > 1
    assert perm["ecmp"]["slowdown"] > 1.5
    assert perm["spray"]["slowdown"] < perm["ecmp"]["slowdown"]


def test_packed_ring_schemes_agree(rows: list[dict]) -> None:
    # Ring neighbours with packed placement: the leaf-crossing hops use disjoint paths.
    ring = _by(rows, "ring_packed")
    ccts = [r["cct_ns"] for r in ring.values()]
    assert max(ccts) / min(ccts) < 1.03


def test_deterministic(rows: list[dict]) -> None:
    again = _quick_rows()
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_s", "plan_s")} for r in rs]  # noqa: E731
    assert strip(again) == strip(rows)


def test_ilp_refusal_and_skips_are_rows() -> None:
    # The ls32x64x32 permutation: 2,048 flows x 32 spines = 65,536 binaries, above the ILP's limit.
    runs = study.plan_runs(["ls32x64x32"], ["permutation"], ["planned:ilp"], 1, 4096, "auto")
    assert study.execute(runs[0])["status"] == "too large"
    skipped = study.plan_runs(["bench"], ["permutation"], ["adaptive", "ecmp"], 1, 4096, "fluid")
    assert [r.backend for r in skipped] == ["skip", "fluid"]
    assert study.execute(skipped[0])["status"] == "skipped: fluid cannot model"
    assert study.execute(skipped[1])["status"] == "ok"


def test_ranks_size_the_workloads_and_the_roce_profile_skips_fluid() -> None:
    runs = study.plan_runs(["ls32x64x32"], ["ring_random", "multi_job"], ["ecmp"], 1, 4096, "auto", ranks=256)
    assert [r.ranks for r in runs] == [256, 256]
    jobs = [json.loads(r.overrides[0].split("=", 1)[1]) for r in runs]
    assert [j["ranks"] for j in jobs[0]] == [256] and [j["ranks"] for j in jobs[1]] == [64] * 4
    with pytest.raises(InputError, match="--ranks"):
        study.plan_runs(["bench"], ["ring_random"], ["ecmp"], 1, 4096, "auto", ranks=33)
    roce = study.plan_runs(["ls32x64x32"], ["permutation"], ["ecmp"], 1, 4096, "auto", profile="roce")
    assert [r.backend for r in roce] == ["skip"]  # the fluid model cannot model the transport


def test_auto_backend() -> None:
    runs = study.plan_runs(["ls16x16x16", "ls32x64x32"], ["ring_packed"], ["ecmp", "flowlet"], 1, 4096, "auto")
    assert [(r.fabric, r.scheme, r.backend) for r in runs] == [
        ("ls16x16x16", "ecmp", "packet"), ("ls16x16x16", "flowlet", "packet"),
        ("ls32x64x32", "ecmp", "fluid"), ("ls32x64x32", "flowlet", "skip"),
    ]
    assert [r.backend for r in study.plan_runs(["ls32x64x32"], ["ring_packed"], ["flowlet"], 1, 4096, "packet")] == [
        "packet"
    ]


@pytest.mark.parametrize("args, fragment", [
    (["--scheme", "bogus"], "unknown scheme 'bogus'"),
    (["--scheme", "planned:magic"], "unknown planner"),
    (["--fabric", "nope"], "no topology preset or file named 'nope'"),
    (["--workload", "ring"], "unknown workload 'ring'"),
    (["--bytes", "lots"], "--bytes"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_input_is_one_line(args: list[str], fragment: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert main(["study", "--quick", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pktsim: error: ") and fragment in err
    assert not out.exists()


def test_cli_quick_writes_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "study"
    rc = main(["study", "--quick", "--workload", "permutation", "--scheme", "ecmp", "--scheme", "split4",
               "--jobs", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    table = pq.read_table(out / "study.parquet")
    assert table.column_names == list(study.COLUMNS)
    assert table.column("scheme").to_pylist() == ["ecmp", "split4"]
    assert table.column("status").to_pylist() == ["ok", "ok"]
    pytest.importorskip("matplotlib")
    assert (out / "study.png").stat().st_size > 0


def test_scheme_names() -> None:
    assert study.scheme_overrides("split16") == ["lb.scheme=split", "lb.subflows=16"]
    assert study.scheme_overrides("planned:ilp") == ["lb.scheme=planned", "lb.planner=ilp"]
    assert study.scheme_overrides("planned:greedy/cluster") == [
        "lb.scheme=planned", "lb.planner=greedy", "lb.plan_scope=cluster"]
    assert study.scheme_overrides("split_minimal/cluster") == ["lb.scheme=split_minimal", "lb.plan_scope=cluster"]
    for bad in ("split", "ecmp/cluster", "planned:greedy/job"):
        with pytest.raises(InputError):
            study.scheme_overrides(bad)
