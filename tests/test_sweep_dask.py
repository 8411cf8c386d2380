"""``pktsim sweep --dask``: a real LocalCluster and a real scheduler + worker started as separate
processes write the table the local-process executor writes (apart from wall times), and the
command-line mistakes are one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from pktsim.cli import main  # noqa: E402
from pktsim.experiments import executors  # noqa: E402
from pktsim.experiments.sweep import read_table  # noqa: E402

SWEEP = """\
base:
  topology: bench
  workload: {jobs: [{name: job0, collective: ring_allreduce, ranks: 32, bytes: 256KiB}]}
grid:
  lb.scheme: [ecmp, spray]
  seed: [1, 2, 3]
"""
POINTS = 6
WALL_CLOCK = ("wall_s", "plan_s")
"""Columns that are wall times (of the run, of the planner): they differ between any two runs."""
START_S = 60


def rows(out: Path) -> list[dict]:
    """The table's rows in point order, without the wall-clock columns; the reproducing command
    names the sweep's directory (its base.yaml), so that is replaced by DIR."""
    table = sorted(read_table(out).to_pylist(), key=lambda r: r["point"])
    for row in table:
        for column in WALL_CLOCK:
            row.pop(column)
        row["command"] = row["command"].replace(f"{out}/", "DIR/")
    return table


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("sweep") / "s.yaml"
    file.write_text(SWEEP)
    return file


@pytest.fixture(scope="module")
def local_rows(sweep_file: Path) -> list[dict]:
    """The local-process executor's table (--jobs 2), the reference for the Dask ones."""
    out = sweep_file.parent / "local"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    table = rows(out)
    assert len(table) == POINTS and {r["status"] for r in table} == {"ok"}, table
    return table


def test_local_cluster_writes_the_local_executors_table(sweep_file: Path, local_rows: list[dict],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "dask"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--dask", "local", "--workers", "2", "--quiet"]) == 0
    assert rows(out) == local_rows


def _dask(*args: str, log: Path, cwd: Path) -> subprocess.Popen:
    """``dask <args>`` of this venv, in its own process, with this environment (so a worker imports
    this pktsim), its output in ``log``."""
    command = [str(Path(sys.executable).parent / "dask"), *args]
    with open(log, "wb") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=cwd)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_running_scheduler_and_worker_processes(sweep_file: Path, local_rows: list[dict], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Also --keep-traces with a relative --out: the worker (in a working directory of its own)
    writes each point's run directory under the sweep's directory all the same."""
    scheduler_file = tmp_path / "scheduler.json"
    worker_dir, submit_dir = tmp_path / "worker", tmp_path / "submit"
    worker_dir.mkdir()
    submit_dir.mkdir()
    processes = []
    try:
        scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(scheduler_file),
                          "--no-dashboard", log=tmp_path / "scheduler.log", cwd=tmp_path)
        processes.append(scheduler)
        deadline = time.monotonic() + START_S
        address = None
        while address is None:
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler wrote no scheduler file"
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):  # not there yet, or half written
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:")
        # --death-timeout: the worker also goes if the scheduler is gone before it is stopped
        processes.append(_dask("worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                               "--death-timeout", "30", log=tmp_path / "worker.log", cwd=worker_dir))
        monkeypatch.chdir(submit_dir)
        out = Path("dask")
        # the sweep waits for the scheduler's first worker itself (DASK_WORKERS_S)
        assert main(["sweep", str(sweep_file), "--out", str(out), "--dask", address, "--keep-traces",
                     "--quiet"]) == 0
        table = rows(out)
        assert table == local_rows
        assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r["hash"] for r in table)
        assert all((out / "runs" / r["hash"] / "summary.json").is_file() for r in table)
        assert not (worker_dir / "dask").exists()
    finally:
        for process in reversed(processes):  # the worker first, then its scheduler
            _stop(process)


def test_unreachable_scheduler_is_one_line_and_nothing_written(sweep_file: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture, monkeypatch) -> None:
    """Nothing listens on port 1: refused at once (a probe before distributed, which would retry
    until DASK_CONNECT_S)."""
    monkeypatch.setattr(executors, "DASK_CONNECT_S", 1)
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--out", str(out), "--dask", "tcp://127.0.0.1:1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pktsim: error: --dask") and err.count("\n") == 1, err
    assert "127.0.0.1:1" in err
    assert not out.exists()


def test_workers_without_dask_is_refused(sweep_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--out", str(out), "--workers", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pktsim: error: --workers") and err.count("\n") == 1, err
    assert not out.exists()
