"""The reproduction study (pktsim/experiments/study.py), a sweep: one row per point, numbers that
match what the schemes guarantee on the bench fabric, determinism, the shipped presets, and one-line
errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pktsim.cli import main
from pktsim.errors import InputError
from pktsim.experiments import study
from pktsim.experiments.executors import LocalProcesses
from pktsim.experiments.sweep import read_table, run_sweep
from pktsim.experiments.sweep_spec import read_sweep
from pktsim.scenario.presets import preset_candidates

SCHEMES = ["ecmp", "spray", "split_minimal", "planned:edge_coloring"]
RING_BYTES = 2**20


def _rows(tmp: Path, **options) -> list[dict]:
    data, _ = study.sweep_data(**options)
    sweep = read_sweep(data, yaml.safe_dump(data), "study", Path.cwd(), tmp, skip_invalid=True)
    return run_sweep(sweep, tmp, LocalProcesses(1), progress=False).rows


def _quick_rows(tmp: Path) -> list[dict]:
    # The permutation at the quick size; the ring at 1 MiB per rank (32 KiB messages): at 256 KiB its
    # 8 KiB messages are two packets, and cutting them into pieces changes the store-and-forward
    # latency by a few percent, which is packetisation, not load balancing.
    perm = _rows(tmp / "perm", fabrics=["bench"], workloads=["permutation"], schemes=SCHEMES, seeds=1,
                 nbytes=study.QUICK_BYTES)
    ring = _rows(tmp / "ring", fabrics=["bench"], workloads=["ring_packed"], schemes=SCHEMES, seeds=1,
                 nbytes=RING_BYTES)
    return perm + ring


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    return _quick_rows(tmp_path_factory.mktemp("study"))


def _by(rows: list[dict], workload: str) -> dict[str, dict]:
    return {r["scheme"]: r for r in rows if r["workload"] == workload}


def test_one_ok_row_per_point_in_study_order(rows: list[dict]) -> None:
    assert [(r["workload"], r["scheme"], r["seed"]) for r in rows] == [
        (w, s, 1) for w in ("permutation", "ring_packed") for s in SCHEMES
    ]
    for r in rows:
        assert r["status"] == "ok" and r["backend"] == "packet" and r["topology"] == "bench"
        assert r["cct_ns"] > 0 and r["ideal_ns"] > 0 and r["ranks"] == 32
        assert r["slowdown"] == pytest.approx(r["cct_ns"] / r["ideal_ns"])
    assert {r["bytes"] for r in rows} == {study.QUICK_BYTES, RING_BYTES}


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


def test_deterministic(rows: list[dict], tmp_path: Path) -> None:
    again = _quick_rows(tmp_path)
    # (wall times differ; the commands name the directory their inline base was written into)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_s", "plan_s", "command")} for r in rs]  # noqa: E731
    assert strip(again) == strip(rows)


def test_ilp_refusal_is_a_row(tmp_path: Path) -> None:
    # A 128-rank all-to-all on ls32x64x32: one phase of ~16,000 flows x 32 spines, above the ILP's limit.
    rows = _rows(tmp_path, fabrics=["ls32x64x32"], workloads=["alltoall"], schemes=["planned:ilp"], seeds=1,
                 nbytes=4096, ranks=128)
    assert [(r["status"], r["backend"]) for r in rows] == [("too large", "fluid")]


def test_fluid_parts_leave_out_what_fluid_cannot_model() -> None:
    data, notes = study.sweep_data(["ls16x16x16", "ls32x64x32"], ["ring_packed"], ["ecmp", "flowlet"], 1, 4096)
    packet, fluid = data["parts"]
    assert (packet["backend"], list(packet["grid"]["scheme"])) == ("packet", ["ecmp", "flowlet"])
    assert (fluid["backend"], list(fluid["grid"]["scheme"])) == ("fluid", ["ecmp"])
    assert notes == ["ls32x64x32 (fluid backend): left out what it cannot model: flowlet"]
    forced, _ = study.sweep_data(["ls32x64x32"], ["ring_packed"], ["flowlet"], 1, 4096, backend_name="packet")
    assert forced["backend"] == "packet" and list(forced["grid"]["scheme"]) == ["flowlet"]
    with pytest.raises(InputError, match="nothing to run"):  # the fluid model has no transport model
        study.sweep_data(["ls32x64x32"], ["permutation"], ["ecmp"], 1, 4096, profile="roce")


def test_ranks_size_the_workloads() -> None:
    data, _ = study.sweep_data(["ls32x64x32"], ["ring_random", "multi_job"], ["ecmp"], 1, 4096, ranks=256)
    workloads = data["grid"]["workload"]
    assert [j["ranks"] for j in workloads["ring_random"]["workload.jobs"]] == [256]
    assert [j["ranks"] for j in workloads["multi_job"]["workload.jobs"]] == [64] * 4
    with pytest.raises(InputError, match="--ranks"):
        study.sweep_data(["bench"], ["ring_random"], ["ecmp"], 1, 4096, ranks=33)


@pytest.mark.parametrize("name", list(study.PRESETS))
def test_shipped_presets_are_what_the_study_writes(name: str) -> None:
    shipped = next(c for c in preset_candidates("sweep", name) if c.is_file())
    assert shipped.read_text() == study.preset_text(name), (
        "regenerate with: python -c 'from pktsim.experiments import study; study.write_presets()'")


@pytest.mark.parametrize("args, fragment", [
    (["--scheme", "bogus"], "unknown scheme 'bogus'"),
    (["--scheme", "planned:magic"], "unknown planner"),
    (["--fabric", "nope"], "no topology preset or file named 'nope'"),
    (["--workload", "ring"], "unknown workload 'ring'"),
    (["--bytes", "lots"], "--bytes"),
    (["--seeds", "0"], "--seeds"),
    (["--faults", "meteor"], "unknown fault case 'meteor'"),
])
def test_bad_input_is_one_line(args: list[str], fragment: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert main(["study", "--quick", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pktsim: error: ") and fragment in err
    assert not out.exists()


def test_cli_study_is_the_preset_sweep(tmp_path: Path) -> None:
    # `pktsim study --quick` and `pktsim sweep --preset reproduction-quick` write the same table.
    a, b = tmp_path / "study", tmp_path / "sweep"
    assert main(["study", "--quick", "--workload", "permutation", "--scheme", "ecmp", "--scheme", "split4",
                 "--jobs", "2", "--out", str(a), "--quiet"]) == 0
    rows = read_table(a).to_pylist()
    assert sorted((r["scheme"], r["status"]) for r in rows) == [("ecmp", "ok"), ("split4", "ok")]
    assert main(["sweep", "--preset", "reproduction-quick", "--jobs", "2", "--out", str(b), "--quiet"]) == 0
    full = {r["hash"]: r for r in read_table(b).to_pylist()}
    assert len(full) == 30 and all(r["status"] == "ok" for r in full.values())
    for r in rows:  # the same points (same resolved scenarios) give the same numbers
        assert (full[r["hash"]]["cct_ns"], full[r["hash"]]["events"]) == (r["cct_ns"], r["events"])


def test_scheme_names() -> None:
    assert study.scheme_fields("split16") == {"lb.scheme": "split", "lb.subflows": 16}
    assert study.scheme_fields("planned:ilp") == {"lb.scheme": "planned", "lb.planner": "ilp"}
    assert study.scheme_fields("planned:greedy/cluster") == {
        "lb.scheme": "planned", "lb.planner": "greedy", "lb.plan_scope": "cluster"}
    assert study.scheme_fields("split_minimal/cluster") == {"lb.scheme": "split_minimal", "lb.plan_scope": "cluster"}
    for bad in ("split", "ecmp/cluster", "planned:greedy/job"):
        with pytest.raises(InputError):
            study.scheme_fields(bad)
