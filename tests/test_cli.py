"""The command line: bad input is one line naming file, field and problem, exit 2, no run directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pktsim.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pktsim", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_run_writes_tables_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(["run", "--topology", "small", "--workload", "ring_allreduce", "--set", "workload.jobs.0.bytes=256KiB",
               "--lb", "spray", "--seed", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "seed", "version", "wall_s", "events", "packet_hops", "sim_time_ns", "jobs"):
        assert key in summary
    assert summary["seed"] == 3 and summary["scenario"]["lb"]["scheme"] == "spray"
    assert summary["scenario"]["workload"]["jobs"][0]["bytes"] == 256 * 1024
    job = summary["jobs"][0]
    assert job["mean_cct_ns"] >= job["mean_ideal_cct_ns"] > 0
    for table in ("messages", "flows", "collectives", "queues", "links"):
        assert any((out / table).glob("part-*.parquet")), table


def test_default_scenario_runs_from_any_directory(tmp_path: Path) -> None:
    res = run_cli(["run", "--set", "workload.jobs.0.bytes=64KiB"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "slowdown" in res.stdout and "largest queue" in res.stdout
    (run_dir,) = (tmp_path / "traces").iterdir()
    assert (run_dir / "summary.json").is_file()


BAD_INPUTS = [
    (["--topology", "nosuch"], "--topology: topology: no preset or file named 'nosuch'"),
    (["--workload", "nosuch"], "--workload: workload: no preset or file named 'nosuch'"),
    (["--lb", "magic"], "--lb: lb.scheme: Input should be"),
    (["--set", "workload.jobs.0.bytes=-5MiB"], "--set workload.jobs.0.bytes: workload.jobs[0].bytes: must not be negative"),
    (["--set", "workload.jobs.0.bytes=12 parsecs"], "workload.jobs[0].bytes: cannot read '12 parsecs' as bytes"),
    (["--set", "workload.jobs.0.ranks=999"], "workload.jobs[0].ranks: 999 ranks but the topology has 16 hosts"),
    (["--set", "topology.spines=0"], "topology.spines: Input should be greater than or equal to 1"),
    (["--set", "topology.colour=red"], "topology.colour: unknown field"),
    (["--set", "nic.header_bytes=5000"], "nic: header_bytes (5000) must be smaller than mtu_bytes (4096)"),
    (["--set", "workload.jobs.0.placement=[h0, h99]"], "placement lists 2 hosts for 16 ranks"),
    (["--set", "noequals"], "--set: noequals: expected key=value"),
    (["--frobnicate"], "command line: unrecognized arguments: --frobnicate"),
    (["--backend", "fluid", "--lb", "adaptive"], "--backend fluid: lb.scheme: 'adaptive' chooses paths from queue state"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path: Path, args: list[str], expected: str) -> None:
    res = run_cli(["run", *args], tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert expected in lines[0]
    assert not (tmp_path / "traces").exists()


def test_bad_files(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("topology: {spines: 4\nworkload: [\n")
    res = run_cli(["run", str(bad_yaml)], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith(f"pktsim: error: {bad_yaml}: malformed YAML: line")

    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: x\ntopology: small\nworkload:\n  jobs:\n    - {collective: ring_allreduce, ranks: 4, placement: [h0, h1, h2, h77]}\n")
    res = run_cli(["run", str(scenario)], tmp_path)
    assert res.returncode == 2 and "workload.jobs[0].placement: host h77 does not exist" in res.stderr

    topo = tmp_path / "topo.yaml"
    topo.write_text("kind: leaf_spine\nspines: -1\n")
    res = run_cli(["run", "--topology", str(topo)], tmp_path)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"pktsim: error: {topo}: topology.spines:")

    res = run_cli(["run", str(tmp_path / "missing.yaml")], tmp_path)
    assert res.returncode == 2 and "missing.yaml: cannot read scenario" in res.stderr
    assert not (tmp_path / "traces").exists()


def test_out_dir_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = run_cli(["run", "--out", str(out)], tmp_path)
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (out / "keep.txt").read_text() == "precious"


def test_readme_scenario_example_is_a_valid_scenario(tmp_path: Path) -> None:
    """The scenario file shown in the README validates (the documentation cannot drift)."""
    from pktsim.scenario import load_scenario

    text = (REPO / "README.md").read_text()
    block = text.split("### Scenario files", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(block)
    sc = load_scenario(str(path))
    assert sc.name == "example" and sc.topology.spines == 4 and sc.workload.jobs[0].bytes == 64 * 2**20


def test_presets_in_the_working_directory_come_first(tmp_path: Path) -> None:
    """``./topologies/NAME.yaml`` (and workloads, profiles) is found before the shipped preset of that
    name and beside the shipped ones; an explicit path works from anywhere."""
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "small.yaml").write_text("kind: leaf_spine\nspines: 1\nleaves: 2\nhosts_per_leaf: 2\n")
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "pair.yaml").write_text("jobs: [{collective: permutation, ranks: 2, bytes: 8KiB}]\n")
    res = run_cli(["run", "-w", "pair", "--quiet", "--out", "a"], tmp_path)
    assert res.returncode == 0, res.stderr
    topo = json.loads((tmp_path / "a" / "summary.json").read_text())["scenario"]["topology"]
    assert (topo["spines"], topo["leaves"], topo["hosts_per_leaf"]) == (1, 2, 2)
    res = run_cli(["run", "-t", "nosuch"], tmp_path)  # the error lists local and shipped presets alike
    assert res.returncode == 2 and "presets: bench, fat_tree_k4" in res.stderr and "small" in res.stderr
    res = run_cli(["run", "-w", "nosuch"], tmp_path)
    assert res.returncode == 2 and "alltoall" in res.stderr and "pair" in res.stderr
    res = run_cli(["run", "-t", str(REPO / "topologies" / "bench.yaml"), "-w", "pair", "--quiet", "--out", "b"],
                  tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["scenario"]["topology"]["leaves"] == 8
