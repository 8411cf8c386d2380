"""``pktsim diagnose``: fault-free runs raise no alarm; an injected fault is named (top-1 or top-3)
from the traces alone; the command writes diagnosis.json and refuses what is not a complete run
directory with one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pktsim.analysis.diagnose import diagnose, load_run, flow_links
from pktsim.cli import main

REPO = Path(__file__).resolve().parent.parent
FABRIC = {"kind": "leaf_spine", "spines": 4, "leaves": 4, "hosts_per_leaf": 4, "link_gbps": 100}


def scenario(jobs: list[dict], lb: str = "ecmp", seed: int = 1, faults: list[dict] | None = None,
             transport: str | None = None) -> dict:
    sc = {"name": "diag-test", "seed": seed, "topology": FABRIC, "lb": {"scheme": lb}, "workload": {"jobs": jobs},
          "faults": faults or []}
    if transport:
        sc["nic"] = {"transport": transport}
    return sc


def ring(placement: str = "packed", nbytes: int = 2 << 20, iterations: int = 2) -> list[dict]:
    return [{"name": "job0", "collective": "ring_allreduce", "bytes": nbytes, "ranks": 16, "placement": placement,
             "iterations": iterations, "compute_gap_ns": 20_000}]


def alltoall(nbytes: int = 2 << 20) -> list[dict]:
    return [{"name": "job0", "collective": "alltoall", "bytes": nbytes, "ranks": 16, "placement": "packed",
             "iterations": 1}]


def run(tmp: Path, name: str, sc: dict, backend: str = "packet") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sc))
    out = tmp / name
    assert main(["run", str(path), "-q", "--backend", backend, "--out", str(out)]) == 0
    return out


def fabric_link_of(run_dir: Path) -> list[str]:
    """A leaf -> spine link some flow of the run crossed (a link the workload uses)."""
    r = load_run(run_dir)
    for pl in flow_links(r).per_flow:
        for lid, _ in pl:
            u, v = r.fabric.links[lid]
            if u.startswith("leaf") and v.startswith("spine"):
                return [u, v]
    raise AssertionError("no flow crossed the fabric")


def same_link(suspect: dict, link: list[str]) -> bool:
    return suspect["kind"] == "link" and set(suspect["link"]) == set(link)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("diagnose")


@pytest.fixture(scope="module")
def healthy_ring(tmp: Path) -> Path:
    return run(tmp, "healthy-ring", scenario(ring()))


@pytest.mark.parametrize("name,jobs,lb,seed", [
    ("ring-random-ecmp", ring("random", 1 << 20), "ecmp", 2),
    ("ring-random-spray", ring("random", 1 << 20), "spray", 3),
    ("alltoall-ecmp", alltoall(1 << 20), "ecmp", 4),
    ("ring-random-flowlet", ring("random", 1 << 20), "flowlet", 5),
])
def test_fault_free_runs_raise_no_alarm(tmp: Path, name: str, jobs: list[dict], lb: str, seed: int) -> None:
    report = diagnose(run(tmp, name, scenario(jobs, lb, seed)))
    assert report["fault_found"] is False and report["suspects"] == []


def test_degraded_link_is_top_1(tmp: Path, healthy_ring: Path) -> None:
    link = fabric_link_of(healthy_ring)
    out = run(tmp, "degrade", scenario(ring(), faults=[{"kind": "link_degrade", "at_ns": 0, "link": link,
                                                        "gbps": 25}]))
    report = diagnose(out)
    assert report["fault_found"] and same_link(report["suspects"][0], link), report["suspects"][:3]
    assert "rate" in report["suspects"][0]["strengths"]


def test_straggler_is_top_1(tmp: Path) -> None:
    out = run(tmp, "straggler", scenario(ring(nbytes=1 << 20), faults=[{"kind": "straggler", "host": "h5",
                                                                        "compute_factor": 1.5}]))
    report = diagnose(out)
    top = report["suspects"][0]
    assert top["kind"] == "host" and top["host"] == "h5", report["suspects"][:3]


def test_lossy_link_is_in_top_3(tmp: Path, healthy_ring: Path) -> None:
    link = fabric_link_of(healthy_ring)
    out = run(tmp, "loss", scenario(ring(nbytes=1 << 20, iterations=1), transport="sr",
                                    faults=[{"kind": "link_loss", "link": link, "drop_rate": 0.01}]))
    report = diagnose(out)
    assert any(same_link(s, link) for s in report["suspects"][:3]), report["suspects"][:3]


def test_fluid_degrade_is_top_1(tmp: Path) -> None:
    healthy = run(tmp, "fluid-healthy", scenario(alltoall()), backend="fluid")
    assert diagnose(healthy)["fault_found"] is False
    link = fabric_link_of(healthy)
    out = run(tmp, "fluid-degrade", scenario(alltoall(), faults=[{"kind": "link_degrade", "link": link, "gbps": 50}]),
              backend="fluid")
    report = diagnose(out)
    assert report["backend"] == "fluid" and report["notes"]
    assert report["fault_found"] and same_link(report["suspects"][0], link), report["suspects"][:3]


def test_command_writes_diagnosis_and_says_no_fault(healthy_ring: Path, capsys) -> None:
    assert main(["diagnose", str(healthy_ring)]) == 0
    assert "no fault found" in capsys.readouterr().out
    written = json.loads((healthy_ring / "diagnosis.json").read_text())
    assert written["fault_found"] is False and written["suspects"] == []
    assert main(["diagnose", str(healthy_ring), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fault_found"] is False


def test_diagnosis_never_reads_the_faults(tmp: Path, healthy_ring: Path, monkeypatch) -> None:
    """The faults table and the scenario's faults are out of reach: with them erased the same
    diagnosis comes out."""
    import shutil

    link = fabric_link_of(healthy_ring)
    out = run(tmp, "degrade-blind", scenario(ring(), faults=[{"kind": "link_degrade", "link": link, "gbps": 25}]))
    before = diagnose(out)
    shutil.rmtree(out / "faults", ignore_errors=True)
    summary = json.loads((out / "summary.json").read_text())
    summary = {k: v for k, v in summary.items() if "fault" not in k and k != "scenario"}
    (out / "summary.json").write_text(json.dumps(summary))
    after = diagnose(out)
    assert [s["link"] for s in after["suspects"]] == [s["link"] for s in before["suspects"]]


@pytest.mark.parametrize("setup", ["missing", "incomplete", "not-a-run"])
def test_bad_run_dir_is_one_line_exit_2(tmp_path: Path, healthy_ring: Path, setup: str) -> None:
    target = tmp_path / "x"
    if setup == "incomplete":
        import shutil

        shutil.copytree(healthy_ring, target, ignore=shutil.ignore_patterns("diagnosis.json"))
        (target / "INCOMPLETE").write_text("stopped by SIGTERM at now\n")
    elif setup == "not-a-run":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    res = subprocess.run([sys.executable, "-m", "pktsim", "diagnose", str(target)], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pktsim: error: {target}") and "Traceback" not in res.stderr
    assert not (target / "diagnosis.json").exists()
