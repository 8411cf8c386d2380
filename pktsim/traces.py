"""Trace tables: every schema, one named row type per table, one Parquet-metadata builder, and the
recorder that streams a run's rows to Parquet parts as the run goes.

Each table of a run is a directory ``<run>/<table>/`` of ``part-NNNNN.parquet`` files, readable with
``pyarrow.dataset.dataset(path)`` at any moment of the run: every table has its (empty) first part
from the start, the part being filled is rewritten with the rows so far every :data:`FLUSH_S`
seconds (:meth:`Recorder.tick`), and every file is renamed into place once written (see
:class:`TableWriter`). Every part carries the resolved scenario in its metadata
(key ``pktsim.scenario``). The files written beside runs (the exported workload, the validation
table, the sweep table) have their schemas here too. All are documented in ``traces/README.md``.

The backends and the DAG execution hand the recorder named rows (:class:`MessageRow`, ...), never
positional tuples; the packet ports hand it raw occupancy samples in a :class:`PortLog`.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pktsim import __version__
from pktsim.units import PS_PER_NS, ps_to_ns, ps_to_ns_array
from pktsim.workload.dag import CollectiveOp, Message, Workload

_SPINE_BYTES = pa.list_(pa.struct([("node", pa.string()), ("bytes", pa.int64())]))

SCHEMAS: dict[str, pa.Schema] = {
    "messages": pa.schema([
        ("msg_id", pa.int64()), ("job", pa.string()), ("collective", pa.string()), ("iteration", pa.int32()),
        ("step", pa.int32()), ("channel", pa.int32()), ("src", pa.string()), ("dst", pa.string()),
        ("bytes", pa.int64()), ("ready_ns", pa.int64()), ("start_ns", pa.int64()), ("end_ns", pa.int64()),
        ("fct_ns", pa.int64()), ("ideal_fct_ns", pa.int64()), ("single_path_fct_ns", pa.int64()),
    ]),
    "flows": pa.schema([
        ("flow_id", pa.int64()), ("msg_id", pa.int64()), ("subflow", pa.int32()), ("src", pa.string()),
        ("dst", pa.string()), ("bytes", pa.int64()), ("start_ns", pa.int64()), ("end_ns", pa.int64()),
        ("packets", pa.int64()), ("retransmits", pa.int64()), ("spurious_retransmits", pa.int64()),
        ("discarded", pa.int64()), ("drops", pa.int64()), ("fault_drops", pa.int64()), ("entropy", pa.int32()),
        ("path", pa.list_(pa.string())), ("spine_bytes", _SPINE_BYTES),
    ]),
    "collectives": pa.schema([
        ("job", pa.string()), ("collective", pa.string()), ("iteration", pa.int32()), ("ranks", pa.int32()),
        ("bytes", pa.int64()), ("start_ns", pa.int64()), ("end_ns", pa.int64()), ("duration_ns", pa.int64()),
        ("ideal_ns", pa.int64()),
    ]),
    "congestion": pa.schema([
        ("job", pa.string()), ("collective", pa.string()), ("iteration", pa.int32()), ("step", pa.int32()),
        ("messages", pa.int64()), ("bytes", pa.int64()), ("max_link_bytes", pa.int64()),
        ("busiest_link", pa.string()), ("congestion", pa.float64()), ("start_ns", pa.int64()),
        ("end_ns", pa.int64()), ("duration_ns", pa.int64()), ("fair_min_gbps", pa.float64()),
        ("fair_median_gbps", pa.float64()), ("fair_jain", pa.float64()), ("throughput_gbps", pa.float64()),
    ]),
    "queues": pa.schema([
        ("time_ns", pa.int64()), ("node", pa.string()), ("port", pa.string()), ("max_bytes", pa.int64()),
        ("mean_bytes", pa.float64()), ("drops", pa.int64()), ("fault_drops", pa.int64()), ("ecn_marks", pa.int64()),
        ("paused_ns", pa.int64()),
    ]),
    "links": pa.schema([
        ("time_ns", pa.int64()), ("src", pa.string()), ("dst", pa.string()), ("bytes", pa.int64()),
        ("utilization", pa.float64()), ("gbps", pa.float64()),
    ]),
    "faults": pa.schema([
        ("fault_id", pa.int32()), ("at_ns", pa.int64()), ("kind", pa.string()), ("target", pa.string()),
        ("value", pa.float64()), ("detected_ns", pa.int64()), ("converged_ns", pa.int64()),
        ("replanned_ns", pa.int64()),
    ]),
}


FILE_SCHEMAS: dict[str, pa.Schema] = {
    "workload": pa.schema([
        ("msg_id", pa.int64()), ("op", pa.int64()), ("job", pa.string()), ("collective", pa.string()),
        ("iteration", pa.int32()), ("step", pa.int32()), ("channel", pa.int32()), ("src", pa.string()),
        ("dst", pa.string()), ("bytes", pa.int64()), ("deps", pa.list_(pa.int64())), ("after_op", pa.int64()),
        ("gap_ns", pa.int64()), ("ideal_fct_ns", pa.int64()), ("subflow_bytes", pa.list_(pa.int64())),
        ("entropy", pa.list_(pa.int32())), ("paths", pa.list_(pa.list_(pa.string()))),
    ]),
    "validation": pa.schema([
        ("msg_id", pa.int64()), ("job", pa.string()), ("collective", pa.string()), ("iteration", pa.int32()),
        ("step", pa.int32()), ("channel", pa.int32()), ("src", pa.string()), ("dst", pa.string()),
        ("bytes", pa.int64()), ("ready_packet_ns", pa.int64()), ("fct_packet_ns", pa.int64()),
        ("fct_fluid_ns", pa.int64()), ("ideal_fct_ns", pa.int64()), ("rel_error", pa.float64()),
    ]),
    "sweep": pa.schema([
        ("point", pa.int64()), ("status", pa.string()), ("error", pa.string()), ("backend", pa.string()),
        ("name", pa.string()), ("hosts", pa.int64()), ("jobs", pa.int64()), ("ranks", pa.int64()),
        ("bytes", pa.int64()), ("cct_ns", pa.float64()), ("ideal_ns", pa.float64()), ("slowdown", pa.float64()),
        ("job_names", pa.list_(pa.string())), ("job_cct_ns", pa.list_(pa.float64())),
        ("job_ideal_ns", pa.list_(pa.float64())), ("job_slowdown", pa.list_(pa.float64())),
        ("max_congestion", pa.float64()), ("mean_congestion", pa.float64()),
        ("fair_rate_gbps", pa.float64()), ("fair_jain", pa.float64()), ("throughput_gbps", pa.float64()),
        ("fct_p50_ns", pa.float64()), ("fct_p99_ns", pa.float64()),
        ("job_fair_rate_gbps", pa.list_(pa.float64())), ("job_throughput_gbps", pa.list_(pa.float64())),
        ("job_fct_p50_ns", pa.list_(pa.float64())), ("job_fct_p99_ns", pa.list_(pa.float64())),
        ("retransmits", pa.int64()), ("spurious_retransmits", pa.int64()), ("timeouts", pa.int64()),
        ("drops", pa.int64()), ("fault_drops", pa.int64()), ("paused_ns", pa.int64()),
        ("fault_target", pa.string()), ("fault_at_ns", pa.int64()), ("fault_free_ns", pa.float64()),
        ("plan_s", pa.float64()), ("wall_s", pa.float64()), ("sim_time_ns", pa.int64()), ("events", pa.int64()),
        ("packet_hops", pa.int64()), ("hash", pa.string()), ("command", pa.string()),
    ]),
}
"""Single-file tables: ``export-workload``'s DAG, ``validation.parquet``; and the columns every
``sweep.parquet`` row has after its axis columns (one part file per point)."""

RUN_UNITS = b"times in ns from the start of the simulation; sizes in bytes"


def parquet_metadata(scenario_json: dict | None, units: bytes = RUN_UNITS, **extra: str | bytes) -> dict[bytes, bytes]:
    """The key/values every pktsim Parquet file carries: the resolved scenario, the version, the
    units, then ``extra`` (``pktsim.<key>``)."""
    meta: dict[bytes, bytes] = {}
    if scenario_json is not None:
        meta[b"pktsim.scenario"] = json.dumps(scenario_json, sort_keys=True).encode()
    meta[b"pktsim.version"] = __version__.encode()
    meta[b"pktsim.units"] = units
    for key, value in extra.items():
        meta[f"pktsim.{key}".encode()] = value if isinstance(value, bytes) else value.encode()
    return meta


class MessageRow(NamedTuple):
    """A row of ``messages``: one message of the workload DAG (times in ns)."""

    msg_id: int
    job: str
    collective: str
    iteration: int
    step: int
    channel: int
    src: str
    dst: str
    bytes: int
    ready_ns: int
    start_ns: int
    end_ns: int
    fct_ns: int
    ideal_fct_ns: int
    single_path_fct_ns: int | None = None


class FlowRow(NamedTuple):
    """A row of ``flows``: one transport flow or subflow (times in ns; ``path`` None when the
    flow's packets spread, ``spine_bytes`` the payload bytes per turning-point switch)."""

    flow_id: int
    msg_id: int
    subflow: int
    src: str
    dst: str
    bytes: int
    start_ns: int
    end_ns: int
    packets: int
    retransmits: int
    spurious_retransmits: int
    discarded: int
    """Copies a go-back-N receiver threw away (out of order)."""
    drops: int
    """Copies of this flow's data dropped by a full buffer (congestion)."""
    fault_drops: int
    """Copies lost to a fault (a dead or lossy link, a black-holed route)."""
    entropy: int
    path: list[str] | None
    spine_bytes: list[dict]


class CollectiveRow(NamedTuple):
    """A row of ``collectives``: one collective operation (one iteration of one job)."""

    job: str
    collective: str
    iteration: int
    ranks: int
    bytes: int
    start_ns: int
    end_ns: int
    duration_ns: int
    ideal_ns: int


class FaultRow(NamedTuple):
    """A row of ``faults``: one fault and when the fabric reacted (ns; None: no such reaction)."""

    fault_id: int
    at_ns: int
    kind: str
    target: str
    value: float | None
    """``link_degrade``: the new rate (Gbit/s); ``link_loss``: the drop rate; ``straggler``: the factor."""
    detected_ns: int | None
    converged_ns: int | None
    replanned_ns: int | None


class CongestionRow(NamedTuple):
    """A row of ``congestion``: one phase (a step of a collective) with cross-ToR traffic."""

    job: str
    collective: str
    iteration: int
    step: int
    messages: int
    bytes: int
    max_link_bytes: int
    busiest_link: str
    congestion: float
    start_ns: int
    end_ns: int
    duration_ns: int
    fair_min_gbps: float | None
    """The phase's slowest message at its max-min fair rate (:mod:`pktsim.analysis.fairness`)."""
    fair_median_gbps: float | None
    fair_jain: float | None
    """Jain's index of the phase's messages' fair rates."""
    throughput_gbps: float | None
    """Achieved: the phase's bytes * 8 / its duration."""


ROWS: dict[str, type[tuple]] = {
    "messages": MessageRow, "flows": FlowRow, "collectives": CollectiveRow, "congestion": CongestionRow,
    "faults": FaultRow,
}
for _name, _row in ROWS.items():  # a row type and its schema can never drift apart
    assert _row._fields == tuple(SCHEMAS[_name].names), _name


class PortLog:
    """Raw occupancy samples of every port, one row per port per non-idle sampling interval, in
    compact columns (8 bytes a value) until the recorder converts them (:meth:`Recorder.port_samples`)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.start_ps = array("q")   # interval start
        self.port_id = array("q")
        self.max_ps = array("q")     # largest backlog, in ps of serialisation
        self.area2 = array("d")      # twice the time integral of the backlog, ps * ps
        self.busy_ps = array("q")    # time the link transmitted
        self.drops = array("q")      # packets refused by the buffer
        self.fault_drops = array("q")  # packets lost to a fault (dead or lossy link)
        self.marks = array("q")      # packets ECN-marked
        self.paused_ps = array("q")  # time the port was paused by PFC
        self.ps_per_byte = array("d")  # the link's rate when the interval closed (faults change it)

    def __len__(self) -> int:
        return len(self.port_id)

    def columns(self) -> dict[str, np.ndarray]:
        """Every column as a numpy view, cut to the rows all of them hold: a signal that stops the
        run while a row is being appended leaves that row partial, and it is not written."""
        columns = vars(self)  # the arrays clear() makes
        rows = min(map(len, columns.values()))
        return {name: np.frombuffer(c, dtype=np.float64 if c.typecode == "d" else np.int64)[:rows]
                for name, c in columns.items()}


FLUSH_S = 2.0
"""Wall-clock seconds between the recorder's time-based flushes (:meth:`Recorder.tick`): a run
killed outright (``kill -9``) loses at most about this much of its rows."""


class _Part:
    """The part a table is filling: its number, the rows completed parts hold before it, and its
    rows so far: Arrow ``chunks`` (rows converted or handed over in columns) then Python ``rows``
    (appended since). ``converted``: the rows in ``chunks``; ``saved``: the rows in the part file
    on disk (-1: none written). Every change to the writer's state is one attribute store or one
    list append (a part whose chunks change is a new :class:`_Part`), so an exception raised from
    a signal handler between any two bytecodes leaves the state consistent."""

    __slots__ = ("index", "before", "chunks", "converted", "room", "rows", "saved")

    def __init__(self, index: int, before: int, part_rows: int, chunks: tuple[pa.Table, ...] = (),
                 saved: int = -1) -> None:
        self.index = index
        self.before = before
        self.chunks = chunks
        self.converted = sum(c.num_rows for c in chunks)
        self.room = part_rows - self.converted
        """Python rows that complete the part (of ``part_rows``)."""
        self.rows: list[tuple] = []
        self.saved = saved

    def __len__(self) -> int:
        return self.converted + len(self.rows)


class TableWriter:
    """Buffers rows of one table and writes them as Parquet parts of at most ``part_rows`` rows.

    The table's first part is written at once, empty, so the schema is on disk from the start.
    Rows arrive one at a time (:meth:`append`) or in columns (:meth:`extend`), in any mix: the
    parts are the same as if every row had been appended.
    :meth:`checkpoint` writes the rows buffered so far into the part being filled (under its final
    name); the part is rewritten as rows arrive and is complete at ``part_rows`` rows or at
    :meth:`flush`, so the parts and their contents are the same however often it checkpoints.
    Every part file is written under a temporary name (``.part-NNNNN.parquet.tmp``, which
    ``pyarrow.dataset`` ignores) and renamed into place: a reader never sees half a file."""

    def __init__(self, directory: Path, name: str, metadata: dict[bytes, bytes], part_rows: int) -> None:
        self.schema = SCHEMAS[name].with_metadata(metadata)
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=False)
        self.part_rows = part_rows
        self.part = _Part(0, 0, part_rows)
        self.checkpoint(force=True)

    @property
    def parts(self) -> int:
        """Complete parts written."""
        return self.part.index

    @property
    def total(self) -> int:
        """Rows received, written or buffered."""
        return self.part.before + len(self.part)

    def append(self, row: tuple) -> None:
        part = self.part
        rows = part.rows
        rows.append(row)
        if len(rows) >= part.room:  # inlined: once per row
            self._complete()

    def extend(self, columns: Sequence) -> None:
        """Append the rows of ready-made columns (in schema order, all of one length: numpy arrays,
        lists or Arrow arrays), as if each row were :meth:`append` ed."""
        table = self._table(columns)
        offset = 0
        while offset < table.num_rows:
            part = self.part
            piece = table.slice(offset, self.part_rows - len(part))
            self.part = self._with_chunk(part, piece)
            offset += piece.num_rows
            if len(self.part) >= self.part_rows:
                self._complete()

    def write_columns(self, columns: Sequence) -> None:
        """Write ready-made columns (in schema order) as parts of their own, of at most ``part_rows``
        rows (the part being filled is completed first)."""
        if len(self.part):
            self._complete()
        self.extend(columns)
        if len(self.part):
            self._complete()

    def checkpoint(self, force: bool = False) -> None:
        """Write the buffered rows into the part being filled, if any arrived since the last time
        (``force``: even if none did, e.g. to rewrite it with new metadata)."""
        part = self.part
        if part.index > 0 and not len(part):
            return  # nothing buffered: the complete parts are on disk
        if force or part.saved != len(part):
            table = self._buffered(part)
            self._write(part.index, table)
            self.part = _Part(part.index, part.before, self.part_rows, (table,), table.num_rows)  # converted once

    def flush(self) -> None:
        """Complete the part being filled (the empty first part when the table has no rows)."""
        if len(self.part) or self.part.index == 0:
            self._complete()

    def _complete(self) -> None:
        part = self.part
        table = self._buffered(part)
        self._write(part.index, table)
        self.part = _Part(part.index + 1, part.before + table.num_rows, self.part_rows)

    def _table(self, columns: Sequence) -> pa.Table:
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, self.schema)],
                                    schema=self.schema)

    def _with_chunk(self, part: _Part, chunk: pa.Table) -> _Part:
        """``part`` with ``chunk`` after its rows, as a new part (its Python rows converted)."""
        return _Part(part.index, part.before, self.part_rows, (*self._converted(part), chunk), part.saved)

    def _converted(self, part: _Part) -> tuple[pa.Table, ...]:
        """The part's chunks, its Python rows converted to one more chunk at their end."""
        if not part.rows:
            return part.chunks
        return (*part.chunks, self._table(list(zip(*part.rows))))

    def _buffered(self, part: _Part) -> pa.Table:
        """The part's rows as one table."""
        chunks = self._converted(part)
        if not chunks:
            return self._table([[] for _ in self.schema])
        if len(chunks) == 1:
            return chunks[0]
        return pa.concat_tables(chunks).combine_chunks()

    def _write(self, index: int, table: pa.Table) -> None:
        path = self.dir / f"part-{index:05d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.replace_schema_metadata(self.schema.metadata), tmp)
        os.replace(tmp, path)


def _gather(per_message: Sequence[int] | np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``per_message[i]`` for every i of ``ids`` (int64): a numpy array indexed at once, a list
    element by element (not converted whole: it is the whole workload's)."""
    if isinstance(per_message, np.ndarray):
        return per_message[ids].astype(np.int64)
    return np.fromiter(map(per_message.__getitem__, ids.tolist()), dtype=np.int64, count=len(ids))


class _NameTables(NamedTuple):
    """A workload's name tables as Arrow string arrays, to turn code columns into names (``take``)."""

    workload: Workload
    jobs: pa.Array
    collectives: pa.Array
    hosts: pa.Array


class FlowColumns(NamedTuple):
    """Single-path flows in columns, one element per flow (see :meth:`Recorder.flows_done`); a
    flow's endpoints are its message's."""

    flow_id: np.ndarray
    msg_id: np.ndarray
    subflow: np.ndarray
    bytes: np.ndarray
    start_ps: np.ndarray
    """First byte sent (float64 ps)."""
    end_ps: np.ndarray
    """Last byte received (float64 ps)."""
    packets: np.ndarray
    entropy: np.ndarray
    path_id: np.ndarray
    """The flow's path: an index into the ``paths`` given with the columns."""


class Recorder:
    """All tables of one run directory. Port samples arrive raw (picoseconds and serialisation
    times, see :class:`pktsim.packet.ports.Port`) and are converted here, in bulk, with numpy."""

    def __init__(self, directory: Path, scenario_json: dict, part_rows: int, flush_s: float = FLUSH_S) -> None:
        """Every table's directory and empty first part are written at once. ``flush_s``: wall-clock
        seconds between time-based flushes (:meth:`tick`)."""
        self.dir = directory
        metadata = parquet_metadata(scenario_json)
        self.tables = {name: TableWriter(directory, name, metadata, part_rows) for name in SCHEMAS}
        self.part_rows = part_rows
        self.flush_s = flush_s
        self._flushed_at = time.monotonic()
        self._port_info: tuple | None = None
        self._name_tables: _NameTables | None = None

    def add_metadata(self, metadata: dict[bytes, bytes]) -> None:
        """More key/values for every table's Parquet metadata (before the first complete part is
        written; the part on disk is rewritten with them)."""
        for table in self.tables.values():
            table.schema = table.schema.with_metadata({**table.schema.metadata, **metadata})
            table.checkpoint(force=True)

    def tick(self) -> None:
        """Called often (from the backends' progress reports): every ``flush_s`` seconds of wall
        time, write every table's buffered rows to disk (:meth:`TableWriter.checkpoint`), so a
        killed run keeps all but its last seconds of rows."""
        if time.monotonic() - self._flushed_at >= self.flush_s:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write every table's buffered rows to disk now (the run goes on)."""
        for table in self.tables.values():
            table.checkpoint()
        self._flushed_at = time.monotonic()

    # -- rows from the DAG execution and the backends ------------------------------------------

    def message_done(self, m: Message, ready_ps: float, start_ps: float, end_ps: float, ideal_fct_ps: int,
                     single_path_fct_ps: int | None = None) -> None:
        """``m`` was fully received at ``end_ps`` (times in ps)."""
        self.tables["messages"].append(MessageRow(
            msg_id=m.msg_id, job=m.job, collective=m.collective, iteration=m.iteration, step=m.step,
            channel=m.channel, src=m.src, dst=m.dst, bytes=m.bytes, ready_ns=ps_to_ns(ready_ps),
            start_ns=ps_to_ns(start_ps), end_ns=ps_to_ns(end_ps), fct_ns=ps_to_ns(end_ps - ready_ps),
            ideal_fct_ns=ps_to_ns(ideal_fct_ps),
            single_path_fct_ns=None if single_path_fct_ps is None else ps_to_ns(single_path_fct_ps),
        ))

    def collective_done(self, op: CollectiveOp, start_ps: float, end_ps: float, ideal_ps: int) -> None:
        """Every message of ``op`` was received; it started at ``start_ps`` (times in ps)."""
        self.tables["collectives"].append(CollectiveRow(
            job=op.job, collective=op.collective, iteration=op.iteration, ranks=op.ranks, bytes=op.bytes,
            start_ns=ps_to_ns(start_ps), end_ns=ps_to_ns(end_ps), duration_ns=ps_to_ns(end_ps - start_ps),
            ideal_ns=ps_to_ns(ideal_ps),
        ))

    def phase_done(self, p: dict) -> None:
        """A phase's congestion and times (see :meth:`pktsim.analysis.congestion.CongestionMeter.phases`)."""
        self.tables["congestion"].append(CongestionRow(
            job=p["job"], collective=p["collective"], iteration=p["iteration"], step=p["step"],
            messages=p["messages"], bytes=p["bytes"], max_link_bytes=p["max_link_bytes"],
            busiest_link=p["busiest_link"], congestion=p["congestion"], start_ns=ps_to_ns(p["start_ps"]),
            end_ns=ps_to_ns(p["end_ps"]), duration_ns=ps_to_ns(p["end_ps"] - p["start_ps"]),
            fair_min_gbps=p["fair_min_gbps"], fair_median_gbps=p["fair_median_gbps"], fair_jain=p["fair_jain"],
            throughput_gbps=p["throughput_gbps"],
        ))

    def flow_done(self, row: FlowRow) -> None:
        self.tables["flows"].append(row)

    # -- rows in columns, from the compiled fluid engine ---------------------------------------

    def messages_done(self, workload: Workload, msg_ids: np.ndarray, ready_ps: np.ndarray, start_ps: np.ndarray,
                      end_ps: np.ndarray, ideal_fct_ps: Sequence[int] | np.ndarray,
                      single_path_fct_ps: Sequence[int] | np.ndarray | None = None) -> None:
        """Messages ``msg_ids`` (int64, in completion order) of ``workload`` completed: the rows
        :meth:`message_done` would write for each in turn. ``ready_ps`` / ``start_ps`` / ``end_ps``:
        float64 ps aligned with ``msg_ids``; ``ideal_fct_ps`` / ``single_path_fct_ps``: int ps per
        message of the whole workload (indexed by msg_id)."""
        ids = np.asarray(msg_ids, dtype=np.int64)
        w = workload
        names = self._names(w)
        ready, end = np.asarray(ready_ps, dtype=np.float64), np.asarray(end_ps, dtype=np.float64)
        self.tables["messages"].extend([
            ids, names.jobs.take(w.job[ids]), names.collectives.take(w.collective[ids]), w.iteration[ids],
            w.step[ids], w.channel[ids], names.hosts.take(w.src[ids]), names.hosts.take(w.dst[ids]), w.bytes[ids],
            ps_to_ns_array(ready), ps_to_ns_array(start_ps), ps_to_ns_array(end), ps_to_ns_array(end - ready),
            ps_to_ns_array(_gather(ideal_fct_ps, ids)),
            pa.nulls(len(ids), pa.int64()) if single_path_fct_ps is None
            else ps_to_ns_array(_gather(single_path_fct_ps, ids)),
        ])

    def flows_done(self, workload: Workload, flows: FlowColumns, paths: Sequence[Sequence[str]],
                   turns: Sequence[str]) -> None:
        """Single-path flows of ``workload``'s messages received (in receive order): the rows
        :meth:`flow_done` would write for each in turn, as the fluid backend does (no retransmits
        nor drops; all bytes through the turning point of the flow's path). ``paths[p]``: the
        nodes of path ``p`` (``flows.path_id``); ``turns[p]``: its turning point
        (:meth:`pktsim.fabric.fabric.Fabric.turning_point`)."""
        f = flows
        msg = np.asarray(f.msg_id, dtype=np.int64)
        names = self._names(workload)
        # the list columns from offsets, for the distinct paths of these flows, then one take per row
        used, inverse = np.unique(np.asarray(f.path_id, dtype=np.int64), return_inverse=True)
        used = used.tolist()
        offsets = np.zeros(len(used) + 1, dtype=np.int32)
        np.cumsum([len(paths[p]) for p in used], out=offsets[1:])
        nodes = pa.array([node for p in used for node in paths[p]], type=pa.string())
        path_column = pa.ListArray.from_arrays(pa.array(offsets), nodes).take(inverse)
        turn_column = pa.array([turns[p] for p in used], type=pa.string()).take(inverse)
        spine_bytes = pa.ListArray.from_arrays(
            pa.array(np.arange(len(msg) + 1, dtype=np.int32)),
            pa.StructArray.from_arrays([turn_column, pa.array(f.bytes, type=pa.int64())], names=["node", "bytes"]),
        )
        zeros = np.zeros(len(msg), dtype=np.int64)
        self.tables["flows"].extend([
            f.flow_id, msg, f.subflow, names.hosts.take(workload.src[msg]), names.hosts.take(workload.dst[msg]),
            f.bytes, ps_to_ns_array(f.start_ps), ps_to_ns_array(f.end_ps), f.packets, zeros, zeros, zeros, zeros,
            zeros, f.entropy, path_column, spine_bytes,
        ])

    def _names(self, workload: Workload) -> _NameTables:
        """The workload's name tables as Arrow arrays (built once per workload)."""
        if self._name_tables is None or self._name_tables.workload is not workload:
            self._name_tables = _NameTables(
                workload, pa.array(workload.job_names, type=pa.string()),
                pa.array(workload.collective_names, type=pa.string()), pa.array(workload.hosts, type=pa.string()),
            )
        return self._name_tables

    def faults(self, rows: list[FaultRow]) -> None:
        """The run's faults and the fabric's reactions (written once, at the start)."""
        for row in rows:
            self.tables["faults"].append(row)

    # -- port samples from the packet backend -------------------------------------------------

    def describe_ports(self, owners: list[str], peers: list[str], ps_per_byte: list[float], interval_ps: int) -> None:
        """Names and rates of the ports whose raw samples :meth:`port_samples` will receive."""
        self._port_info = (np.array(owners, dtype=object), np.array(peers, dtype=object),
                           np.array(ps_per_byte, dtype=np.float64), interval_ps)
        self._busy_ps = np.zeros(len(owners), dtype=np.int64)  # per port, busy time logged so far

    def port_samples(self, log: PortLog) -> None:
        """Convert the ports' raw samples (picoseconds and serialisation times) into rows of the
        ``queues`` and ``links`` tables."""
        if not len(log):
            return
        owners, peers, _, interval = self._port_info
        c = log.columns()
        port, busy, rate = c["port_id"], c["busy_ps"], c["ps_per_byte"]  # rate: ps per byte, per row
        time_ns = c["start_ps"] // PS_PER_NS
        self.tables["queues"].write_columns([
            time_ns, owners[port], peers[port], np.rint(c["max_ps"] / rate).astype(np.int64),
            c["area2"] / 2.0 / interval / rate, c["drops"], c["fault_drops"], c["marks"], c["paused_ps"] // PS_PER_NS,
        ])
        self.tables["links"].write_columns([
            time_ns, owners[port], peers[port], self._carried_bytes(port, busy, rate), busy / interval,
            8000.0 / rate,
        ])

    def _carried_bytes(self, port: np.ndarray, busy_ps: np.ndarray, ps_per_byte: np.ndarray) -> np.ndarray:
        """Bytes each row's link carried, rounded so that a link's rows add up to its exact total:
        each row gets round(busy so far / rate) - round(busy before it / rate)."""
        order = np.argsort(port, kind="stable")
        p, b = port[order], busy_ps[order]
        cum = np.cumsum(b)
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        ends = np.r_[starts[1:], len(p)]
        cum_after = cum - np.repeat(cum[starts] - b[starts], ends - starts) + self._busy_ps[p]
        self._busy_ps[p[ends - 1]] = cum_after[ends - 1]
        rate = ps_per_byte[order]
        carried = np.rint(cum_after / rate) - np.rint((cum_after - b) / rate)
        out = np.empty_like(carried)
        out[order] = carried
        return out.astype(np.int64)

    def close(self) -> None:
        """Write every table's last part (idempotent: safe to call again after an interruption)."""
        for table in self.tables.values():
            table.flush()
