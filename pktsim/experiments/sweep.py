"""``pktsim sweep``: run every point of a sweep file and stream one row per point into a Parquet dataset.

The sweep is resolved first (:mod:`pktsim.experiments.sweep_spec`: every point validated, nothing
written until all are). Points then run on an executor (:mod:`pktsim.experiments.executors`:
local processes or Dask) and each finished point's row is written at once as its own part file
``DIR/sweep.parquet/part-<hash>.parquet`` (under a temporary name, renamed into place), so a sweep
killed any way loses at most the points that were running. Running the sweep again into the same
directory (or with ``--resume``) skips every point whose scenario hash already has an ok row, so
an interrupted sweep resumed ends with the table an uninterrupted one writes (apart from wall
times). Rows of points that failed are replaced when they run again.

A row: the point's value on every axis (columns named after the axes), then
:data:`pktsim.traces.FILE_SCHEMAS` ``["sweep"]``: ``status`` (ok | error | too large | invalid),
``error``, the run's metrics (those of the job with the largest slowdown for ``cct_ns``,
``ideal_ns``, ``slowdown``, ``bytes``; every job's in the ``job_*`` lists), the scenario ``hash``
and the ``command`` that reproduces the row with ``pktsim run``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pktsim.errors import InputError, TooLarge
from pktsim.experiments.executors import Executor
from pktsim.experiments.sweep_spec import Point, Sweep, column_value, reload
from pktsim.traces import FILE_SCHEMAS, parquet_metadata

TABLE = "sweep.parquet"
RUNS = "runs"
MAIN_METRIC = "slowdown"
"""What the end-of-sweep table and ``pktsim plot`` show by default: CCT / ideal of the worst job."""
SEED_AXES = ("seed",)
"""Axes that repeat a point rather than vary it: the summary and the plot average over them."""
FIXED = FILE_SCHEMAS["sweep"]
AXIS_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one point: no files, only the resolved scenario."""

    scenario: dict
    backend: str
    traces: str | None = None
    """The run directory to write (``--keep-traces``), or None for a run without traces."""


def run_point(task: Task) -> dict:
    """Run one point (in a worker) -> the metric columns of its row, its status and error."""
    from pktsim.backends import backend
    from pktsim.experiment import prepare_on
    from pktsim.rundir import record_run

    t0 = time.perf_counter()
    try:
        engine = backend(task.backend)
        experiment = prepare_on(engine, reload(task.scenario))
        if task.traces is None:
            summary = engine.run(experiment)
        else:
            out = Path(task.traces)
            if out.exists():  # left by an attempt that was killed: this one replaces it
                shutil.rmtree(out)
            summary = record_run(engine, experiment, out)
        row = {"status": "ok", **metrics(summary), "hosts": experiment.scenario.topology.n_hosts}
    except TooLarge as e:
        return {"status": "too large", "error": str(e)}
    except InputError as e:
        return {"status": "error", "error": str(e)}
    except Exception as e:  # one point's crash must not lose the others: its row says what happened
        return {"status": "error", "error": f"{type(e).__name__}: {e}"}
    return {**row, "wall_s": time.perf_counter() - t0}


def metrics(summary: Any) -> dict:
    """A run summary -> the row's metric columns."""
    jobs = summary["jobs"]
    worst = max(jobs, key=lambda j: j["slowdown"] or 0.0)
    maxes = [j["max_congestion"] for j in jobs if j["max_congestion"] is not None]
    means = [j["mean_congestion"] for j in jobs if j["mean_congestion"] is not None]
    faults = summary.get("faults") or []
    healthy = worst.get("fault_free_cct_ns")
    row = {
        "name": summary["name"], "jobs": len(jobs), "ranks": sum(j["ranks"] for j in jobs), "bytes": worst["bytes"],
        "cct_ns": float(worst["mean_cct_ns"]), "ideal_ns": float(worst["mean_ideal_cct_ns"]),
        "slowdown": worst["slowdown"],
        "job_names": [j["name"] for j in jobs], "job_cct_ns": [float(j["mean_cct_ns"]) for j in jobs],
        "job_ideal_ns": [float(j["mean_ideal_cct_ns"]) for j in jobs], "job_slowdown": [j["slowdown"] for j in jobs],
        "max_congestion": max(maxes) if maxes else None,
        "mean_congestion": sum(means) / len(means) if means else None,
        "fair_rate_gbps": _extreme(min, jobs, "fair_rate_gbps"), "fair_jain": _extreme(min, jobs, "fair_jain"),
        "throughput_gbps": _extreme(min, jobs, "throughput_gbps"),
        "fct_p50_ns": _extreme(max, jobs, "fct_p50_ns"), "fct_p99_ns": _extreme(max, jobs, "fct_p99_ns"),
        "job_fair_rate_gbps": [j["fair_rate_gbps"] for j in jobs],
        "job_throughput_gbps": [j["throughput_gbps"] for j in jobs],
        "job_fct_p50_ns": [j["fct_p50_ns"] for j in jobs], "job_fct_p99_ns": [j["fct_p99_ns"] for j in jobs],
        "fault_target": ", ".join(f["target"] for f in faults) or None,
        "fault_at_ns": min((f["at_ns"] for f in faults), default=None),
        "fault_free_ns": float(sum(healthy) / len(healthy)) if healthy else None,
        "plan_s": float(summary["plan_s"] or 0.0), "sim_time_ns": summary["sim_time_ns"],
        "events": summary["events"], "packet_hops": summary["packet_hops"],
    }
    transport = summary.get("transport")
    if transport is not None:
        row.update({key: transport.get(key) for key in
                    ("retransmits", "spurious_retransmits", "timeouts", "drops", "fault_drops", "paused_ns")})
    return row


def _extreme(pick: Callable, jobs: list[dict], key: str) -> float | None:
    """``pick`` (min or max) of the jobs' non-null ``key``, or None."""
    values = [j[key] for j in jobs if j.get(key) is not None]
    return pick(values) if values else None


# ---------------------------------------------------------------------------------------------
# The table


class SweepTable:
    """``DIR/sweep.parquet``: one part file per point, every part with the sweep's schema and metadata."""

    def __init__(self, out: Path, sweep: Sweep) -> None:
        self.dir = out / TABLE
        axes = [pa.field(name, AXIS_TYPES[kind]) for name, kind in sweep.axes.items() if name not in FIXED.names]
        meta = parquet_metadata(None, sweep=sweep.text, source=sweep.source,
                                base=json.dumps(sweep.bases, sort_keys=True), axes=json.dumps(sweep.axes))
        self.schema = pa.schema([*axes, *FIXED]).with_metadata(meta)

    def existing(self) -> dict[str, str]:
        """hash -> status of the rows already written (a resumed sweep). Raises InputError when the
        directory holds a sweep with other columns: its rows could not share one table."""
        if not self.dir.is_dir():
            return {}
        import pyarrow.dataset as ds

        try:
            data = ds.dataset(self.dir, format="parquet")
            old = data.schema
            table = data.to_table(columns=["hash", "status"])
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(str(self.dir), "", f"cannot read the sweep's earlier rows: {e}") from None
        if not old.remove_metadata().equals(self.schema.remove_metadata()):
            theirs = ", ".join(f"{f.name} ({f.type})" for f in old if f.name not in FIXED.names)
            raise InputError(str(self.dir.parent), "", f"holds a sweep with other columns (axes: {theirs}); "
                             f"give another --out")
        return dict(zip(table["hash"].to_pylist(), table["status"].to_pylist()))

    def write(self, row: dict) -> None:
        """One point's row, as its own part (replacing an earlier row of the same point)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([row], schema=self.schema)
        final = self.dir / f"part-{row['hash']}.parquet"
        tmp = self.dir / f".{final.name}.tmp"  # pyarrow.dataset skips names starting with "."
        pq.write_table(table, tmp)
        os.replace(tmp, final)

    def rows(self) -> list[dict]:
        """Every row, in point order."""
        if not self.dir.is_dir():
            return []
        return sorted(read_table(self.dir.parent).to_pylist(), key=lambda r: r["point"])


def read_table(out: Path) -> pa.Table:
    """A sweep directory's table (every part), with the sweep's metadata."""
    import pyarrow.dataset as ds

    data = ds.dataset(out / TABLE, format="parquet")
    return data.to_table().replace_schema_metadata(data.schema.metadata)


def _row(point: Point, sweep: Sweep, result: dict) -> dict:
    row = dict.fromkeys(FIXED.names)
    row.update({name: column_value(point.values.get(name), kind) for name, kind in sweep.axes.items()
                if name not in FIXED.names})
    row.update(result)
    row.update(point=point.index, backend=point.backend, hash=point.hash, command=point.command)
    return row


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    """What a sweep run did: the rows of this sweep's points, and how many ran now."""

    rows: list[dict]
    ran: int
    skipped: int
    """Points not run because an ok row existed (resumed)."""


def run_sweep(sweep: Sweep, out: Path, executor: Executor, keep_traces: bool = False,
              progress: bool = True, done: dict[str, str] | None = None) -> Outcome:
    """Run the points of ``sweep`` without an ok row in ``out`` on ``executor``, each row written as
    its point finishes; invalid points (``--skip-invalid``) are written as rows without running.
    ``done``: :meth:`SweepTable.existing` when the caller has read it already."""
    table = SweepTable(out, sweep)
    if done is None:
        done = table.existing()
    todo = []
    for point in sweep.points:
        if point.error is not None:
            table.write(_row(point, sweep, {"status": "invalid", "error": point.error}))
        elif done.get(point.hash) != "ok":
            todo.append(point)
    # (absolute: a worker's working directory is its own)
    tasks = [Task(p.scenario, p.backend, str((out / RUNS / p.hash).resolve()) if keep_traces else None) for p in todo]
    bar = _Bar(len(sweep.points), len(sweep.points) - len(todo), executor.workers) if progress else None
    try:
        for i, result in executor.results(run_point, tasks):
            if isinstance(result, BaseException):
                result = {"status": "error", "error": f"{type(result).__name__}: {result}"}
            table.write(_row(todo[i], sweep, result))
            if bar is not None:
                bar.advance(todo[i], result["status"])
    finally:
        executor.close()
        if bar is not None:
            bar.stop()
    hashes = {p.hash for p in sweep.points}
    rows = [r for r in table.rows() if r["hash"] in hashes]
    return Outcome(rows, len(todo), len(sweep.points) - len(todo))


class _Bar:
    """A rich progress bar over the points: done, failed, running, ETA."""

    def __init__(self, total: int, already: int, workers: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.total, self.workers, self.failed, self.done = total, workers, 0, already
        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task("points", total=total, completed=already, state=self._state())
        self.progress.start()

    def _state(self) -> str:
        running = min(self.workers, self.total - self.done)
        return f"{self.failed} failed, {running} running"

    def advance(self, point: Point, status: str) -> None:
        self.done += 1
        self.failed += status != "ok"
        self.progress.update(self.task, advance=1, state=self._state())

    def stop(self) -> None:
        self.progress.stop()


# ---------------------------------------------------------------------------------------------
# The summary


def varied_axes(rows: Sequence[dict], axes: Sequence[str]) -> list[str]:
    """The axes with more than one value among ``rows``."""
    return [a for a in axes if len({json.dumps(r[a], sort_keys=True) for r in rows}) > 1]


@dataclass(frozen=True)
class Stat:
    """``metric`` over the ok points at one value of an axis: how many, mean, min, max (None when none)."""

    value: Any
    n: int
    mean: float | None
    lo: float | None
    hi: float | None


def stats(rows: Sequence[dict], x: str, metric: str, numeric: bool = False) -> list[Stat]:
    """Per value of ``x`` (ascending when ``numeric``, else in order of first appearance): ``metric``
    over the ok rows (NaN and null left out). The end-of-sweep table and the plot's marks."""
    by_value: dict[Any, list[float]] = {}
    for r in rows:
        vals = by_value.setdefault(r[x], [])
        value = r[metric]
        if r["status"] == "ok" and value is not None and not (isinstance(value, float) and math.isnan(value)):
            vals.append(float(value))
    return [Stat(v, len(vals), sum(vals) / len(vals), min(vals), max(vals)) if vals else Stat(v, 0, None, None, None)
            for v, vals in ((v, by_value[v]) for v in (sorted(by_value) if numeric else by_value))]


def print_summary(rows: Sequence[dict], axes: Sequence[str], metric: str = MAIN_METRIC,
                  print_: Callable[..., None] | None = None) -> None:
    """The end-of-sweep table: ``metric`` per value of each varied axis (fits 80 columns), the
    status counts, and the first errors."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=80) if print_ is None else None
    show = print_ or console.print
    table = Table(title=f"{metric} per axis value (mean over the ok points)", box=box.SIMPLE_HEAD)
    for name, justify in (("axis", "left"), ("value", "left"), ("ok", "right"), ("mean", "right"),
                          ("min", "right"), ("max", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    last = None
    for axis in varied_axes(rows, axes):
        if axis in SEED_AXES:  # repeats, not a variation
            continue
        for mark in stats(rows, axis, metric):
            shown = mark.value if isinstance(mark.value, str) else json.dumps(mark.value)
            table.add_row(axis if axis != last else "", shown, str(mark.n),
                          *(f"{v:.3f}" if v is not None else "-" for v in (mark.mean, mark.lo, mark.hi)))
            last = axis
    if table.row_count:
        show(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    show(f"{len(rows)} points: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for r in [r for r in rows if r["status"] != "ok"][:5]:
        show(f"  point {r['point']} {r['status']}: {r['error']}")
