"""``pktsim sweep``: points expanded and validated before anything runs, one row per point streamed
into a Parquet dataset, resumed after a kill without running a point twice, and every row's
command reproducing its numbers with ``pktsim run``."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from pktsim import __version__
from pktsim.cli import main
from pktsim.errors import InputError
from pktsim.experiments.executors import LocalProcesses
from pktsim.experiments.sweep import metrics, read_table
from pktsim.experiments.sweep_spec import read_sweep, reload, set_text
from pktsim.scenario import load_scenario

BASE = {"topology": "bench", "workload": {"jobs": [{"name": "job0", "collective": "ring_allreduce", "ranks": 16,
                                                    "bytes": "64KiB"}]}}
WALL = ("wall_s", "plan_s")
"""Wall-clock columns: the only ones two runs of one point may disagree on."""


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _sweep(tmp: Path, data: dict, *extra: str, name: str = "s.yaml") -> tuple[int, Path]:
    out = tmp / f"out-{name}"
    return main(["sweep", str(_write(tmp / name, data)), "--out", str(out), "--jobs", "1", "--quiet", *extra]), out


def _strip(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in WALL} for r in rows), key=lambda r: r["point"])


# -- expansion ----------------------------------------------------------------------------------


def test_points_are_zip_rows_times_the_grid_in_order(tmp_path: Path) -> None:
    data = {"base": BASE,
            "grid": {"lb.scheme": ["ecmp", "spray"],
                     "split": {"two": {"lb.scheme": "split", "lb.subflows": 2}, "none": {}}},
            "zip": {"seed": [1, 2], "workload.jobs.0.bytes": ["64KiB", "128KiB"]}}
    sweep = read_sweep(data, "", "s.yaml", tmp_path, tmp_path / "out")
    got = [(p.values["seed"], p.values["workload.jobs.0.bytes"], p.values["lb.scheme"], p.values["split"])
           for p in sweep.points]
    assert got == [(seed, size, lb, split) for seed, size in ((1, "64KiB"), (2, "128KiB"))
                   for lb in ("ecmp", "spray") for split in ("two", "none")]
    assert sweep.axes == {"seed": "int64", "workload.jobs.0.bytes": "string", "lb.scheme": "string",
                          "split": "string"}
    # A named value's fields are applied after the axes before it: "two" overrides lb.scheme.
    assert [p.scenario["lb"]["scheme"] for p in sweep.points[:4]] == ["split", "ecmp", "split", "spray"]
    assert len({p.hash for p in sweep.points}) == 6  # spray+two == ecmp+two: the same scenario
    words = shlex.split(sweep.points[0].command)
    assert words[:2] == ["pktsim", "run"] and Path(words[2]).resolve() == (tmp_path / "out" / "base.yaml").resolve()
    assert words[3:] == ["--set", "seed=1", "--set", "workload.jobs.0.bytes=64KiB", "--set", "lb.scheme=ecmp",
                         "--set", "lb.scheme=split", "--set", "lb.subflows=2"]


FIELD_POOL = {
    "lb.scheme": ["ecmp", "spray", "split_minimal", "adaptive", "flowlet"],
    "seed": [0, 1, 2, 7],
    "workload.jobs.0.bytes": [4096, "8KiB", 65536],
    "workload.jobs.0.ranks": [2, 8, 16, 32],
    "nic.mtu_bytes": [1024, 2048, 4096],
    "topology.link_gbps": [100, 200, 400.0],
    "topology.link_delay_ns": [0, 500, "1us"],
}


def _at(scenario: dict, dotted: str):
    node = scenario
    for key in dotted.split("."):
        node = node[int(key)] if key.isdigit() else node[key]
    return node


@pytest.mark.parametrize("seed", range(12))
def test_random_grids_expand_to_every_combination_once(seed: int, tmp_path: Path) -> None:
    # Property: over random grids and zips, the points are the product of the grid with the zip
    # rows, each combination exactly once, and every resolved scenario holds its point's values.
    rng = random.Random(seed)
    names = rng.sample(list(FIELD_POOL), rng.randint(1, 4))
    zipped = names[: rng.randint(0, len(names) - 1)] if len(names) > 1 else []
    zip_len = rng.randint(1, 3)
    grid = {n: rng.sample(FIELD_POOL[n], rng.randint(1, len(FIELD_POOL[n]))) for n in names if n not in zipped}
    zips = {n: [rng.choice(FIELD_POOL[n]) for _ in range(zip_len)] for n in zipped}
    sweep = read_sweep({"base": BASE, "grid": grid, "zip": zips}, "", "s.yaml", tmp_path, tmp_path)
    expected = [(*row, *combo) for row in (zip(*zips.values()) if zips else [()])
                for combo in itertools.product(*grid.values())]
    assert [tuple(p.values[n] for n in (*zips, *grid)) for p in sweep.points] == expected
    for p in sweep.points:
        assert reload(p.scenario).model_dump(mode="json") == p.scenario  # what a worker runs is what was hashed
        for name, value in p.values.items():
            want = load_scenario(topology="bench", overrides=[set_text(name, value)])
            assert _at(p.scenario, name) == _at(want.model_dump(mode="json"), name)


# -- validation: one line naming the point and the field, nothing written -------------------------


@pytest.mark.parametrize("data, fragment", [
    ({"base": BASE, "grid": {"lb.scheme": ["ecmp", "bogus"]}}, "point 1 (lb.scheme=bogus): lb.scheme"),
    ({"base": BASE, "grid": {"workload.jobs.0.ranks": [16, 64]}}, "point 1 (workload.jobs.0.ranks=64)"),
    ({"base": BASE, "grid": {"topology.spinez": [2]}}, "topology.spinez"),
    ({"base": BASE, "zip": {"seed": [1, 2], "lb.scheme": ["ecmp"]}}, "zip: the zipped axes must have one length"),
    ({"base": BASE, "grid": {"seed": []}}, "grid.seed: an axis needs at least one value"),
    ({"base": BASE, "gird": {"seed": [1]}}, "gird: unknown field"),
    ({"base": "missing.yaml", "grid": {"seed": [1]}}, "base: no scenario file"),
    ({"base": BASE, "grid": {"status": ["a"]}}, "status: an axis cannot be named like a column"),
    ({"base": BASE, "grid": {"backend": ["packet", "quantum"]}}, "unknown backend 'quantum'"),
    ({"base": BASE, "grid": {"lb.scheme": ["adaptive"]}, "backend": "fluid"}, "point 0 (lb.scheme=adaptive)"),
])
def test_a_bad_point_is_one_line_and_nothing_is_written(data: dict, fragment: str, tmp_path: Path, capsys) -> None:
    rc, out = _sweep(tmp_path, data)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("pktsim: error: "), err
    assert fragment in err
    assert not out.exists()


def test_skip_invalid_writes_invalid_points_as_rows(tmp_path: Path) -> None:
    rc, out = _sweep(tmp_path, {"base": BASE, "grid": {"workload.jobs.0.ranks": [8, 64]}}, "--skip-invalid")
    assert rc == 0
    rows = _strip(read_table(out).to_pylist())
    assert [(r["workload.jobs.0.ranks"], r["status"]) for r in rows] == [(8, "ok"), (64, "invalid")]
    assert "64 ranks but the topology has 32 hosts" in rows[1]["error"] and rows[1]["cct_ns"] is None


def test_another_sweep_is_not_mixed_into_a_directory(tmp_path: Path, capsys) -> None:
    rc, out = _sweep(tmp_path, {"base": BASE, "grid": {"seed": [1]}})
    assert rc == 0
    other = _write(tmp_path / "t.yaml", {"base": BASE, "grid": {"lb.scheme": ["ecmp"]}})
    assert main(["sweep", str(other), "--out", str(out), "--quiet"]) == 2
    assert "holds a sweep with other columns" in capsys.readouterr().err
    assert main(["sweep", str(other), "--out", str(tmp_path / "new"), "--resume", "--quiet"]) == 2


# -- the table ------------------------------------------------------------------------------------


def test_table_is_a_dataset_with_the_sweep_in_its_metadata(tmp_path: Path) -> None:
    data = {"base": BASE, "grid": {"lb.scheme": ["ecmp", "spray"], "seed": [1, 2]}}
    rc, out = _sweep(tmp_path, data)
    assert rc == 0
    dataset = ds.dataset(out / "sweep.parquet", format="parquet")
    assert dataset.count_rows() == 4 and len(dataset.files) == 4
    meta = dataset.schema.metadata
    assert meta[b"pktsim.version"].decode() == __version__
    assert yaml.safe_load(meta[b"pktsim.sweep"]) == data
    assert json.loads(meta[b"pktsim.base"]) == [BASE]
    rows = _strip(dataset.to_table().to_pylist())
    assert [(r["lb.scheme"], r["seed"]) for r in rows] == [("ecmp", 1), ("ecmp", 2), ("spray", 1), ("spray", 2)]
    for r in rows:
        assert r["status"] == "ok" and r["slowdown"] >= 1.0 and r["hosts"] == 32 and r["ranks"] == 16
        assert r["bytes"] == 65536 and r["job_names"] == ["job0"] and r["job_cct_ns"] == [r["cct_ns"]]
        assert r["slowdown"] == pytest.approx(r["cct_ns"] / r["ideal_ns"])
    assert not (out / "INCOMPLETE").exists() and (out / "sweep.yaml").read_text() == yaml.safe_dump(data, sort_keys=False)


def test_keep_traces_keeps_each_points_run_directory(tmp_path: Path) -> None:
    rc, out = _sweep(tmp_path, {"base": BASE, "grid": {"seed": [1, 2]}}, "--keep-traces")
    assert rc == 0
    for r in read_table(out).to_pylist():
        run = out / "runs" / r["hash"]
        summary = json.loads((run / "summary.json").read_text())
        assert (run / "messages").is_dir() and not (run / "INCOMPLETE").exists()
        assert summary["events"] == r["events"] and summary["seed"] == r["seed"]


def test_every_rows_command_reproduces_its_numbers(tmp_path: Path, monkeypatch) -> None:
    # A base file, a named axis and a fluid point: run each row's command as a user would.
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "base.yaml", BASE)
    data = {"base": "base.yaml", "grid": {
        "backend": ["packet", "fluid"],
        "scheme": {"split4": {"lb.scheme": "split", "lb.subflows": 4}, "planned": {"lb.scheme": "planned"}},
        "workload.jobs.0.collective": ["ring_allreduce", "alltoall"]}}
    rc, out = _sweep(tmp_path, data)
    assert rc == 0
    rows = read_table(out).to_pylist()
    assert len(rows) == 8
    for i, r in enumerate(rows):
        words = shlex.split(r["command"])
        assert words[:2] == ["pktsim", "run"]
        assert main([*words[1:], "--out", f"run{i}", "--quiet"]) == 0
        summary = json.loads(Path(f"run{i}", "summary.json").read_text())
        again = metrics(summary)
        assert {k: r[k] for k in again if k not in WALL} == {k: v for k, v in again.items() if k not in WALL}


# -- resuming ---------------------------------------------------------------------------------------


def _parts(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "sweep.parquet").glob("part-*.parquet")}


def test_a_killed_sweep_resumes_to_the_uninterrupted_table(tmp_path: Path) -> None:
    # (A base file: the commands of an inline base name the directory it is written into.)
    _write(tmp_path / "base.yaml", {**BASE, "workload": {"jobs": [{**BASE["workload"]["jobs"][0], "bytes": "1MiB"}]}})
    data = {"base": "base.yaml", "grid": {"lb.scheme": ["ecmp", "spray", "split_minimal"], "seed": [1, 2, 3]}}
    sweep_file = _write(tmp_path / "s.yaml", data)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pktsim", "sweep", str(sweep_file), "--out", str(out),
                             "--jobs", "1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_parts(out)) < 3 if out.exists() else True:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    before = _parts(out)
    assert 3 <= len(before) < 9 and (out / "INCOMPLETE").exists()
    assert main(["sweep", str(sweep_file), "--out", str(out), "--resume", "--jobs", "1", "--quiet"]) == 0
    after = _parts(out)
    assert len(after) == 9 and {k: after[k] for k in before} == before  # no finished point ran again
    assert not (out / "INCOMPLETE").exists()
    whole = tmp_path / "whole"
    assert main(["sweep", str(sweep_file), "--out", str(whole), "--jobs", "2", "--quiet"]) == 0
    assert _strip(read_table(out).to_pylist()) == _strip(read_table(whole).to_pylist())


def test_a_failed_point_runs_again_and_its_row_is_replaced(tmp_path: Path, monkeypatch) -> None:
    import pktsim.experiments.sweep as sweep_module

    real = sweep_module.metrics
    calls = []

    def flaky(summary):
        calls.append(summary["seed"])
        if summary["seed"] == 2 and calls.count(2) == 1:
            raise RuntimeError("disk full")
        return real(summary)

    monkeypatch.setattr(sweep_module, "metrics", flaky)
    rc, out = _sweep(tmp_path, {"base": BASE, "grid": {"seed": [1, 2]}})
    assert rc == 0
    assert [r["status"] for r in _strip(read_table(out).to_pylist())] == ["ok", "error"]
    rc, out = _sweep(tmp_path, {"base": BASE, "grid": {"seed": [1, 2]}})
    rows = _strip(read_table(out).to_pylist())
    assert rc == 0 and [r["status"] for r in rows] == ["ok", "ok"] and calls == [1, 2, 2]


def test_bad_options_are_one_line(tmp_path: Path, capsys) -> None:
    f = _write(tmp_path / "s.yaml", {"base": BASE, "grid": {"seed": [1]}})
    for args, fragment in ((["--jobs", "0"], "--jobs"), (["--workers", "2"], "--workers"),
                           (["--preset", "nope"], "give a sweep file"), (["--resume"], "--resume")):
        assert main(["sweep", str(f), *args, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err, err
    assert main(["sweep", "--preset", "nope", "--quiet"]) == 2
    assert "no sweep preset named 'nope'" in capsys.readouterr().err
    with pytest.raises(InputError):
        read_sweep([1, 2], "", "s.yaml", tmp_path, tmp_path)
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())
    assert os.listdir(tmp_path) == ["s.yaml"]


@pytest.mark.parametrize("preset", ["permutation-schemes", "fair-routing", "fair-routing-packet"])
def test_shipped_sweep_presets_resolve(preset: str, tmp_path: Path) -> None:
    """Every point of a shipped sweep validates as `pktsim run` would (the study's presets are
    checked in tests/test_study.py)."""
    from pktsim.experiments.sweep_spec import sweep_source
    from pktsim.scenario.presets import preset_names

    assert preset in preset_names("sweep")
    data, text, source, root = sweep_source(None, preset)
    sweep = read_sweep(data, text, source, root, tmp_path)
    assert sweep.points and all(p.error is None for p in sweep.points)
    assert len({p.hash for p in sweep.points}) == len(sweep.points)


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_local_processes_stopped_early_abandon_the_running_points() -> None:
    """A sweep stopped while points run (SIGTERM to pktsim alone, from ``timeout`` or Slurm) closes
    its executor: the running points' workers are terminated, not waited for (the interpreter
    would otherwise join them on exit, an hour later for an hour-long point)."""
    executor = LocalProcesses(2)
    results = executor.results(_nap, [0, 60, 60])
    assert next(results) == (0, 0)
    assert len(multiprocessing.active_children()) >= 2
    executor.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()
