"""The end-of-run report fits an 80-column terminal and says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pktsim.cli import main
from pktsim.report import WIDTH, print_summary


@pytest.mark.parametrize("args", [
    ["-w", "multi_job", "-t", "bench", "--set", "workload.jobs.0.bytes=256KiB"],
    ["-t", "bench", "-w", "alltoall_allreduce", "--profile", "roce", "--set", "workload.jobs.0.bytes=256KiB"],
    ["--backend", "fluid", "--set", "workload.jobs.0.iterations=2"],
])
def test_summary_fits_80_columns(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str]) -> None:
    assert main(["run", *args, "--quiet", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    summary["jobs"][0]["name"] = "a_job_with_a_long_name_" * 2
    print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    text = " ".join(" ".join(lines).split())  # rich wraps long lines at the width
    makespan = max(j["end_ns"] for j in summary["jobs"])
    assert "makespan" in text and "traces:" in text
    if summary["backend"] == "packet":
        assert "sampling interval from t =" in text
        if summary["sim_time_ns"] > makespan:  # timers outlive the last message on the transport model
            assert "idle timers" in text
