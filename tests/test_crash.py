"""Crash safety (issue 11, part 1): a run stopped any way at all leaves a marked, readable directory.

Real ``python -m pktsim`` processes, stopped mid-run with SIGTERM (what ``timeout``, Slurm and
``docker stop`` send), SIGINT (Ctrl-C) and SIGKILL (``kill -9``). Every table must then be readable
with ``pyarrow.dataset`` with its full schema, hold a consistent prefix of the run (every message's
dependencies and flows are there), and ``INCOMPLETE`` must say why. The bad ``--out`` and ``--seed``
inputs of the same issue are here too. Each test is bounded (a stuck process is killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pktsim.errors import InputError
from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation
from pktsim.scenario import load_scenario
from pktsim.traces import SCHEMAS, FlowRow, MessageRow, PortLog, Recorder, TableWriter

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}

# A permutation on the bench fabric, 4 MiB per sender, iterated: 32 messages finish every few tenths
# of a second for far longer than any test waits (each iteration waits for the previous one).
LONG_SETS = ["workload.jobs.0.bytes=4MiB", "workload.jobs.0.iterations=400"]
LONG = ["-t", "bench", "-w", "permutation", *(a for s in LONG_SETS for a in ("--set", s))]
WAIT_S = 25  # at most this long for rows to reach the disk (a loaded machine), then the test fails


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pktsim", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows_on_disk(out: Path, table: str = "messages") -> int:
    """Rows of ``table`` a reader sees now; also checks the marker is there whenever the directory is."""
    if not out.exists():
        return 0
    assert (out / "INCOMPLETE").is_file(), "a run directory without INCOMPLETE while the run is going"
    if not (out / table).is_dir():
        return 0
    return pads.dataset(out / table).count_rows()


def _wait_for_rows(proc: subprocess.Popen, out: Path, table: str = "messages") -> int:
    """Poll until the running process has flushed rows of ``table``; returns how many."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early (exit {proc.returncode}): {proc.stderr.read()}"
        n = _rows_on_disk(out, table)
        if n:
            return n
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no {table} rows on disk after {WAIT_S} s")


def _finish(proc: subprocess.Popen, timeout: float = 20) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the process did not exit within {timeout} s of the signal")
    return proc.returncode, err


def _check_tables(out: Path) -> dict[str, pa.Table]:
    """Every table is readable as a dataset with its full schema and the run's metadata."""
    tables = {}
    for name, schema in SCHEMAS.items():
        dataset = pads.dataset(out / name)
        assert dataset.schema.remove_metadata().equals(schema), name
        assert b"pktsim.scenario" in dataset.schema.metadata, name
        assert dataset.files, name
        tables[name] = dataset.to_table()
    return tables


def _check_prefix(tables: dict[str, pa.Table]) -> None:
    """The rows are a consistent prefix of the run: unique ids, sane times, every message's
    dependencies and flows present, every recorded collective's messages present."""
    workload = prepare(load_scenario(topology="bench", workload="permutation", overrides=LONG_SETS)).workload
    m = tables["messages"]
    ids = m["msg_id"].to_pylist()
    assert ids and len(set(ids)) == len(ids), "msg_ids must be unique"
    ready, start, end, fct = (m[c].to_pylist() for c in ("ready_ns", "start_ns", "end_ns", "fct_ns"))
    assert all(r <= s <= e and abs(f - (e - r)) <= 1 for r, s, e, f in zip(ready, start, end, fct))  # ns rounding
    last = max(end)
    assert all(e <= last for e in end)
    present = set(ids)
    for i in ids:
        msg = workload.messages[i]
        assert set(msg.deps) <= present, f"message {i} is recorded but not all its dependencies"
        if msg.after_op >= 0:
            assert set(workload.collectives[msg.after_op].msg_ids) <= present
    flows = tables["flows"]
    flow_bytes: dict[int, int] = {}
    for i, b in zip(flows["msg_id"].to_pylist(), flows["bytes"].to_pylist()):
        flow_bytes[i] = flow_bytes.get(i, 0) + b
    assert len(set(flows["flow_id"].to_pylist())) == flows.num_rows
    for i, b in zip(ids, m["bytes"].to_pylist()):
        assert flow_bytes.get(i) == b, f"message {i} is recorded without its flows"
    ops = {(op.job, op.iteration): op for op in workload.collectives}
    for job, it, e in zip(*(tables["collectives"][c].to_pylist() for c in ("job", "iteration", "end_ns"))):
        assert set(ops[job, it].msg_ids) <= present and e <= last


def _no_temporary_files(out: Path) -> None:
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


# ---------------------------------------------------------------------------------------------
# SIGTERM, SIGINT, SIGKILL mid-run


def _stopped_run(tmp: Path, signum: int) -> tuple[Path, int, str, int]:
    out = tmp / "run"
    proc = _start(["run", *LONG, "-q", "--out", str(out)], tmp)
    before = _wait_for_rows(proc, out)
    proc.send_signal(signum)
    code, err = _finish(proc)
    return out, code, err, before


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory) -> tuple[Path, int, str, int]:
    return _stopped_run(tmp_path_factory.mktemp("sigterm"), signal.SIGTERM)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_flushes_marks_and_exits(signum, code, sigterm_run, tmp_path) -> None:
    out, got, err, before = sigterm_run if signum == signal.SIGTERM else _stopped_run(tmp_path, signum)
    name = signal.Signals(signum).name
    assert got == code, err
    assert err.strip().splitlines() == [f"pktsim: stopped by {name}; {out} is incomplete (see {out / 'INCOMPLETE'})"]
    assert not (out / "summary.json").exists()
    marker = (out / "INCOMPLETE").read_text().splitlines()
    assert marker[0].startswith(f"stopped by {name} at ") and "every table was flushed" in marker[1]
    tables = _check_tables(out)
    assert tables["messages"].num_rows >= before > 0
    assert tables["collectives"].num_rows > 0
    _check_prefix(tables)
    _no_temporary_files(out)


def test_kill_9_leaves_marker_and_readable_tables(tmp_path) -> None:
    out = tmp_path / "run"
    proc = _start(["run", *LONG, "-q", "--out", str(out)], tmp_path)
    before = _wait_for_rows(proc, out)  # completed messages flushed: more than the flush interval ago
    time.sleep(1.0)
    proc.kill()
    _finish(proc)
    assert proc.returncode == -signal.SIGKILL
    assert (out / "INCOMPLETE").read_text().startswith("running since ")
    assert not (out / "summary.json").exists()
    tables = _check_tables(out)
    assert tables["messages"].num_rows >= before > 0 and tables["flows"].num_rows > 0
    _check_prefix(tables)


def test_normal_run_leaves_no_marker(tmp_path) -> None:
    out = tmp_path / "run"
    proc = _start(["run", "-t", "bench", "-w", "permutation", "--set", "workload.jobs.0.bytes=1MiB", "-q",
                   "--out", str(out)], tmp_path)
    code, err = _finish(proc, timeout=60)
    assert code == 0, err
    assert (out / "summary.json").is_file() and not (out / "INCOMPLETE").exists()
    _check_tables(out)
    _no_temporary_files(out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary directory either


def test_sweep_stopped_is_marked_and_keeps_its_finished_rows(tmp_path) -> None:
    out = tmp_path / "study"
    proc = _start(["study", "--quick", "--bytes", "2MiB", "--jobs", "1", "-q", "--out", str(out)], tmp_path)
    deadline = time.monotonic() + WAIT_S
    parts = lambda: list((out / "sweep.parquet").glob("part-*.parquet"))  # noqa: E731
    while (not out.exists() or len(parts()) < 2) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert (out / "INCOMPLETE").is_file()
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc)
    assert code == 143, err
    assert (out / "INCOMPLETE").read_text().startswith("stopped by SIGTERM at ")
    assert 2 <= len(parts()) < 30
    assert not [p for p in (out / "sweep.parquet").iterdir() if p.name.startswith(".")]  # no half-written part


# ---------------------------------------------------------------------------------------------
# Readers of incomplete runs


def test_validate_refuses_an_incomplete_run(sigterm_run, tmp_path) -> None:
    from pktsim.analysis import validate

    out = sigterm_run[0]
    part = out / "messages" / "part-00000.parquet"
    res = subprocess.run([sys.executable, "-m", "pktsim", "validate", *LONG, "--against", str(part),
                          "--out", str(tmp_path / "v")], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert f"is part of the incomplete run {out}/ (INCOMPLETE: stopped by SIGTERM at" in line
    assert not (tmp_path / "v").exists()
    workload = prepare(load_scenario(topology="bench", workload="permutation", overrides=LONG_SETS)).workload
    with pytest.raises(InputError, match="incomplete run .INCOMPLETE: stopped by SIGTERM"):
        validate.read_run(out, "x", workload)
    assert validate.incomplete(out).startswith("INCOMPLETE: stopped by SIGTERM")


def test_notebook_flags_an_incomplete_run(sigterm_run, tmp_path, monkeypatch) -> None:
    for module in ("nbformat", "nbclient", "ipykernel", "matplotlib", "pandas"):
        pytest.importorskip(module)
    from test_notebook import _check_no_errors, _execute, _text

    out = sigterm_run[0]
    nb, _ = _execute(tmp_path, monkeypatch, runs={"stopped": str(out)})
    _check_no_errors(nb)
    text = _text(nb)
    assert f"WARNING: INCOMPLETE RUN {out}: it did not finish (INCOMPLETE: stopped by SIGTERM at" in text


# ---------------------------------------------------------------------------------------------
# Flushing: checkpoints change nothing in the files


def _rows(n: int) -> list[tuple]:
    return [FlowRow(i, i // 2, i % 2, "h0", f"h{i % 7}", 1000 + i, i, 2 * i, 3, 0, 0, 0, 0, 0, i % 65536,
                    None if i % 3 else ["h0", "leaf0", f"spine{i % 4}", "leaf1", "h5"],
                    [{"node": f"spine{i % 4}", "bytes": 1000 + i}]) for i in range(n)]


def test_checkpoints_leave_the_parts_byte_identical(tmp_path) -> None:
    meta = {b"pktsim.scenario": b"{}"}
    rows = _rows(1000)
    plain = TableWriter(tmp_path / "a", "flows", meta, part_rows=300)
    ticked = TableWriter(tmp_path / "b", "flows", meta, part_rows=300)
    seen = []
    for i, row in enumerate(rows):
        plain.append(row)
        ticked.append(row)
        if i % 37 == 0:
            ticked.checkpoint()
            seen.append(pads.dataset(tmp_path / "b" / "flows").count_rows())
    assert seen == sorted(seen) and seen[-1] > 900  # what a reader sees only grows
    plain.flush()
    ticked.flush()
    ticked.flush()  # closing twice (after an interruption) changes nothing
    a, b = (sorted((tmp_path / d / "flows").iterdir()) for d in ("a", "b"))
    assert [p.name for p in a] == [p.name for p in b] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert pads.dataset(tmp_path / "b" / "flows").to_table().to_pylist() == [r._asdict() for r in rows]


def test_schema_on_disk_from_the_start_and_metadata_added_later(tmp_path) -> None:
    rec = Recorder(tmp_path / "r", {"name": "x"}, part_rows=100, flush_s=0.0)
    for name, schema in SCHEMAS.items():
        dataset = pads.dataset(tmp_path / "r" / name)
        assert dataset.count_rows() == 0 and dataset.schema.remove_metadata().equals(schema)
    rec.add_metadata({b"pktsim.backend": b"fluid"})  # the fluid backend does this before any row
    assert pq.read_schema(tmp_path / "r" / "queues" / "part-00000.parquet").metadata[b"pktsim.backend"] == b"fluid"
    row = MessageRow(0, "job0", "permutation", 0, 0, 0, "h0", "h4", 10, 0, 1, 5, 5, 4)
    rec.tables["messages"].append(row)
    rec.tick()  # flush_s = 0: every tick writes what is buffered
    assert pads.dataset(tmp_path / "r" / "messages").to_table().to_pylist() == [row._asdict()]
    rec.close()
    assert [p.name for p in (tmp_path / "r" / "messages").iterdir()] == ["part-00000.parquet"]


# ---------------------------------------------------------------------------------------------
# Bad --out and --seed: one line, exit 2, nothing written


BAD = [
    (["run", "--out", "afile/x"], "--out: cannot create afile/x: {tmp}/afile is not a directory"),
    (["run", "--out", ""], "--out: must not be empty"),
    (["run", "--seed", "-1", "-w", "ring_allreduce_random"], "--seed: must be a non-negative integer (got -1)"),
    (["run", "--seed", "-1"], "--seed: must be a non-negative integer (got -1)"),
    (["run", "--seed", "1.5"], "--seed: must be a non-negative integer (got '1.5')"),
    (["validate", "--out", "afile/x"], "--out: cannot create afile/x: {tmp}/afile is not a directory"),
    (["validate", "--seed", "-3"], "--seed: must be a non-negative integer (got -3)"),
    (["study", "--quick", "--out", ""], "--out: must not be empty"),
    (["study", "--quick", "--out", "afile/x"], "--out: cannot create afile/x: {tmp}/afile is not a directory"),
    (["export-workload", "--out", "afile/x.parquet"], "--out: cannot create afile/x.parquet: {tmp}/afile is not a directory"),
]


@pytest.mark.parametrize("args,expected", BAD)
def test_bad_out_and_seed(args, expected, tmp_path) -> None:
    (tmp_path / "afile").write_text("a regular file\n")
    res = subprocess.run([sys.executable, "-m", "pktsim", *args], cwd=tmp_path, env=ENV, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pktsim: error: {expected.format(tmp=tmp_path)}"), lines
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_a_port_row_half_appended_when_the_run_stopped_is_not_written(tmp_path) -> None:
    """A signal can stop the run between two of a port row's appends: the rows every column holds
    are written, the partial one is not (the columns' lengths would not match)."""
    recorder = Recorder(tmp_path / "run", {}, part_rows=16)
    recorder.describe_ports(["leaf0", "spine0"], ["spine0", "leaf0"], [80.0, 80.0], interval_ps=10_000)
    log = PortLog()
    for row in range(3):
        for column, value in [("start_ps", 10_000 * row), ("port_id", row % 2), ("max_ps", 800), ("area2", 1.6e7),
                              ("busy_ps", 5000), ("drops", 0), ("fault_drops", 0), ("marks", 0), ("paused_ps", 0),
                              ("ps_per_byte", 80.0)]:
            if row == 2 and column == "busy_ps":
                break  # the stop lands here
            getattr(log, column).append(value)
    recorder.port_samples(log)
    recorder.close()
    queues = pads.dataset(tmp_path / "run" / "queues", format="parquet").to_table()
    assert queues["time_ns"].to_pylist() == [0, 10]
    assert queues["max_bytes"].to_pylist() == [10, 10]  # 800 ps at 80 ps per byte


def test_sigterm_stops_a_compiled_fluid_run(tmp_path) -> None:
    """The fluid backend's compiled loop runs in a thread of its own: SIGTERM still stops the run
    in order (the loop stops after its chunk), and the tables hold every row handed on, each
    recorded message with all its flows."""
    tiny = load_scenario(topology="bench", workload="permutation", overrides=["workload.jobs.0.bytes=64KiB"])
    assert FluidSimulation(prepare(tiny)).run(None)  # compiles the loop first (numba caches it for the run below)
    out = tmp_path / "run"
    proc = _start(["run", "-t", "bench", "-w", "permutation", "--backend", "fluid", "--set", "workload.jobs.0.bytes=64KiB",
                   "--set", "workload.jobs.0.iterations=20000", "-q", "--out", str(out)], tmp_path)
    before = _wait_for_rows(proc, out)
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc)
    assert code == 143, err
    assert (out / "INCOMPLETE").read_text().startswith("stopped by SIGTERM at ")
    tables = _check_tables(out)
    messages, flows = tables["messages"], tables["flows"]
    assert messages.num_rows >= before > 0
    assert set(flows["msg_id"].to_pylist()) >= set(messages["msg_id"].to_pylist())
    assert messages.num_rows < 32 * 20000  # stopped before the end
    _no_temporary_files(out)
