"""``python -m pktsim validate``: a flow-level model against the packet backend, message by message.

The packet backend is the reference. The model is the built-in fluid backend
(:mod:`pktsim.fluid`) or a user's results (``--against FILE``). Both executed the same message DAG,
so the comparison is a join on ``msg_id``.

Sign convention: ``rel_error = (fct_packet - fct_model) / fct_packet``. Positive: the model is
*optimistic* (its message finished sooner than with packets); negative: pessimistic. The same
convention is used for collective completion times (CCT).

A user's file (Parquet or CSV) has one row per message of the workload: ``msg_id`` and ``fct_ns``
or ``end_ns`` (optionally ``ready_ns``), nanoseconds. The model's schedule is completed from the DAG
with the backends' rule (a message is ready when its dependencies have ended, plus ``gap_ns``;
see :mod:`pktsim.workload`): from ``end_ns``, each message's ready time is derived from its
dependencies' ends (unless ``ready_ns`` is given); from ``fct_ns`` alone, the DAG is replayed
(ready from dependencies, end = ready + fct). Collective completion time = last end - first ready
of the operation's messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pktsim.errors import InputError
from pktsim.experiment import Experiment
from pktsim.traces import FILE_SCHEMAS, SCHEMAS, parquet_metadata
from pktsim.units import format_bytes, format_ns
from pktsim.workload.dag import Workload

PERCENTILES = (50, 90, 99)

VALIDATION_SCHEMA = FILE_SCHEMAS["validation"]


@dataclass
class ModelTimes:
    """A model's schedule of the workload, indexed by msg_id (ns), and its CCT per collective op."""

    label: str
    ready_ns: np.ndarray
    end_ns: np.ndarray
    fct_ns: np.ndarray
    op_cct_ns: np.ndarray


# ---------------------------------------------------------------------------------------------
# Inputs


def schedule(workload: Workload, *, fct_ns: np.ndarray | None = None, end_ns: np.ndarray | None = None,
             ready_ns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ready, end) of every message (ns, float) from a model's end times (ready derived from the
    DAG unless given) or, without end times, by replaying the DAG with the model's FCTs."""
    msgs = workload.messages
    ready = np.zeros(len(msgs)) if ready_ns is None else ready_ns.astype(np.float64)
    end = np.zeros(len(msgs)) if end_ns is None else end_ns.astype(np.float64)
    op_end = np.zeros(len(workload.collectives))
    for m in msgs:  # msg_ids are a topological order, and an after_op op precedes its waiters
        i = m.msg_id
        if ready_ns is None:
            base = max([end[d] for d in m.deps] + ([op_end[m.after_op]] if m.after_op >= 0 else []), default=0.0)
            ready[i] = base + m.gap_ns
        if end_ns is None:
            end[i] = ready[i] + fct_ns[i]
        op_end[m.op] = max(op_end[m.op], end[i])
    return ready, end


def _op_cct(workload: Workload, ready: np.ndarray, end: np.ndarray) -> np.ndarray:
    return np.array([end[list(op.msg_ids)].max() - ready[list(op.msg_ids)].min() for op in workload.collectives])


def read_model_file(path: str, workload: Workload) -> ModelTimes:
    """A user's flow-level results (Parquet or CSV keyed by msg_id). Bad files raise
    :class:`InputError` naming the file and the column."""
    p = Path(path)
    run = p.parent.parent  # a part of a run's table, <run>/<table>/part-NNNNN.parquet?
    if p.name.startswith("part-") and p.parent.name in SCHEMAS and all((run / t).is_dir() for t in SCHEMAS):
        why = incomplete(run)
        if why is not None:
            raise InputError(path, "", f"is part of the incomplete run {run}/ ({why}); its tables hold only the "
                                       f"rows written before it stopped: rerun it to the end")
    try:
        if p.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(p)
        elif p.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(p)
        else:
            raise InputError(path, "", "expected a .parquet or .csv file")
    except (OSError, pa.ArrowException) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(path, "", f"cannot read: {msg}") from None
    names = set(table.column_names)
    if "msg_id" not in names:
        raise InputError(path, "msg_id", f"missing column (columns: {', '.join(table.column_names) or 'none'})")
    if "fct_ns" not in names and "end_ns" not in names:
        raise InputError(path, "fct_ns", "missing column: give fct_ns or end_ns (ns) per msg_id")
    cols = {}
    for name in ("msg_id", "fct_ns", "end_ns", "ready_ns"):
        if name in names:
            cols[name] = _numeric(table.column(name), path, name)
    ids = cols["msg_id"]
    if np.any(ids != np.round(ids)):
        raise InputError(path, "msg_id", "must be whole numbers")
    ids = ids.astype(np.int64)
    n = len(workload.messages)
    unknown = ids[(ids < 0) | (ids >= n)]
    if len(unknown):
        raise InputError(path, "msg_id", f"unknown msg_id {unknown[0]} (the workload has msg_ids 0..{n - 1})")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise InputError(path, "msg_id", f"msg_id {uniq[counts > 1][0]} appears {counts[counts > 1][0]} times")
    if len(uniq) < n:
        missing = np.setdiff1d(np.arange(n), uniq)
        raise InputError(path, "msg_id", f"no row for {len(missing)} of the workload's {n} messages "
                                         f"(first: msg_id {missing[0]})")
    order = np.argsort(ids)
    by_id = {name: col[order] for name, col in cols.items() if name != "msg_id"}
    for name, col in by_id.items():
        if np.any(col < 0):
            raise InputError(path, name, f"negative value at msg_id {int(np.flatnonzero(col < 0)[0])}")
    ready, end = schedule(workload, fct_ns=by_id.get("fct_ns"), end_ns=by_id.get("end_ns"),
                          ready_ns=by_id.get("ready_ns"))
    fct = by_id["fct_ns"] if "fct_ns" in by_id else end - ready
    if np.any(fct <= 0):
        raise InputError(path, "end_ns" if "fct_ns" not in by_id else "fct_ns",
                         f"message {int(np.flatnonzero(fct <= 0)[0])} takes no time (end <= ready)")
    return ModelTimes(str(path), ready, end, fct.astype(np.float64), _op_cct(workload, ready, end))


def _numeric(col: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise InputError(path, name, f"expected numbers, got {col.type}")
    if col.null_count:
        raise InputError(path, name, f"{col.null_count} empty value(s)")
    values = col.to_numpy().astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(path, name, "values must be finite")
    return values


def incomplete(run_dir: Path) -> str | None:
    """Why the run directory ``run_dir`` is incomplete (what the first line of its ``INCOMPLETE``
    file says, or that it has no ``summary.json``), or None when the run finished."""
    marker = run_dir / "INCOMPLETE"
    if marker.exists():
        lines = marker.read_text(errors="replace").strip().splitlines()
        return f"INCOMPLETE: {lines[0] if lines else 'no reason given'}"
    if not (run_dir / "summary.json").exists():
        return "no summary.json"
    return None


def read_run(run_dir: Path, label: str, workload: Workload) -> ModelTimes:
    """A backend's run directory as a model's schedule (its own collective durations as CCT).
    An incomplete run (see :func:`incomplete`) raises :class:`InputError`: it lacks messages."""
    why = incomplete(run_dir)
    if why is not None:
        raise InputError(str(run_dir), "", f"incomplete run ({why}); its tables hold only the rows written "
                                           f"before it stopped: rerun it to the end")
    m = pads.dataset(run_dir / "messages").to_table().sort_by("msg_id")
    c = pads.dataset(run_dir / "collectives").to_table()
    op_of = {(op.job, op.iteration): op.op for op in workload.collectives}
    cct = np.zeros(len(workload.collectives))
    for job, it, d in zip(c["job"].to_pylist(), c["iteration"].to_pylist(), c["duration_ns"].to_pylist()):
        cct[op_of[job, it]] = d
    return ModelTimes(label, m["ready_ns"].to_numpy().astype(np.float64), m["end_ns"].to_numpy().astype(np.float64),
                      m["fct_ns"].to_numpy().astype(np.float64), cct)


# ---------------------------------------------------------------------------------------------
# Comparison


def rel_error(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """``(reference - model) / reference``: positive when the model is optimistic (faster)."""
    return (reference - model) / reference


def compare(experiment: Experiment, packet_dir: Path, model: ModelTimes, worst: int = 5) -> tuple[pa.Table, dict]:
    """The ``validation.parquet`` table and the report (per job and overall CCT and FCT errors, the
    ``worst`` most optimistic and most pessimistic messages with their paths and their path's most
    congested port)."""
    scenario, workload = experiment.scenario, experiment.workload
    packet = read_run(packet_dir, "packet", workload)
    msgs = pads.dataset(packet_dir / "messages").to_table().sort_by("msg_id")
    err = rel_error(packet.fct_ns, model.fct_ns)
    table = pa.table({
        "msg_id": msgs["msg_id"], "job": msgs["job"], "collective": msgs["collective"],
        "iteration": msgs["iteration"], "step": msgs["step"], "channel": msgs["channel"], "src": msgs["src"],
        "dst": msgs["dst"], "bytes": msgs["bytes"], "ready_packet_ns": msgs["ready_ns"],
        "fct_packet_ns": msgs["fct_ns"], "fct_fluid_ns": np.rint(model.fct_ns).astype(np.int64),
        "ideal_fct_ns": msgs["ideal_fct_ns"], "rel_error": err,
    }, schema=VALIDATION_SCHEMA)
    jobs = []
    job_of_msg = np.array(msgs["job"].to_pylist(), dtype=object)
    for job in scenario.workload.jobs:
        ops = [op.op for op in workload.collectives if op.job == job.name]
        cct_p, cct_m = packet.op_cct_ns[ops].mean(), model.op_cct_ns[ops].mean()
        jobs.append({"job": job.name, "collective": job.collective, "messages": int(np.sum(job_of_msg == job.name)),
                     "cct_packet_ns": float(cct_p), "cct_model_ns": float(cct_m),
                     "cct_rel_error": float((cct_p - cct_m) / cct_p),
                     "fct_rel_error": _distribution(err[job_of_msg == job.name])})
    end_p, end_m = packet.end_ns.max(), model.end_ns.max()
    report = {
        "model": model.label,
        "sign": "rel_error = (packet - model) / packet: positive = model optimistic (faster than packets)",
        "jobs": jobs,
        "overall": {"messages": len(err), "makespan_packet_ns": float(end_p), "makespan_model_ns": float(end_m),
                    "makespan_rel_error": float((end_p - end_m) / end_p), "fct_rel_error": _distribution(err)},
        "worst": _worst(experiment, packet_dir, msgs, model, err, worst),
    }
    return table, report


def _distribution(err: np.ndarray) -> dict:
    out = {f"p{q}": float(np.percentile(err, q)) for q in PERCENTILES}
    out.update(min=float(err.min()), max=float(err.max()), mean_abs=float(np.abs(err).mean()))
    return out


def _worst(experiment: Experiment, packet_dir: Path, msgs: pa.Table, model: ModelTimes, err: np.ndarray, n: int) -> dict:
    """The ``n`` messages with the largest positive error (model optimistic) and the ``n`` with the
    most negative (pessimistic), where they ran (the packet run's paths) and which port of their
    path held the largest queue while they were in flight."""
    if n <= 0:
        return {"optimistic": [], "pessimistic": []}
    ranked = np.lexsort((np.arange(len(err)), -err))  # by error, largest first; ties by msg_id
    optimistic = [int(i) for i in ranked[:n] if err[i] > 0]
    pessimistic = [int(i) for i in ranked[::-1][:n] if err[i] < 0]
    described = _describe(experiment, packet_dir, msgs, model, err, sorted(set(optimistic + pessimistic)))
    return {"optimistic": [described[i] for i in optimistic], "pessimistic": [described[i] for i in pessimistic]}


def _describe(experiment: Experiment, packet_dir: Path, msgs: pa.Table, model: ModelTimes, err: np.ndarray,
              order: list[int]) -> dict[int, dict]:
    """Per message of ``order``: its rows, packet paths and hottest port (see :func:`_worst`)."""
    if not order:
        return {}
    flows = pads.dataset(packet_dir / "flows").to_table(columns=["msg_id", "subflow", "src", "dst", "path"])
    wanted = pc.is_in(flows["msg_id"], pa.array(order, type=pa.int64()))
    paths: dict[int, list] = {}
    for row in flows.filter(wanted).sort_by([("msg_id", "ascending"), ("subflow", "ascending")]).to_pylist():
        paths.setdefault(row["msg_id"], []).append(row)
    queues = _Queues(packet_dir, experiment.scenario.traces.queue_interval_ns)
    fabric = experiment.fabric
    out = {}
    rows = msgs.take(order).to_pylist()
    for i, m in zip(order, rows):
        links: list[tuple[str, str]] = []
        shown = []
        for f in paths.get(i, []):
            if f["path"] is not None:
                shown.append(" > ".join(f["path"]))
                links += list(zip(f["path"], f["path"][1:]))
            else:  # sprayed: every equal-cost link
                on_link, _ = fabric.spread(f["src"], f["dst"])
                shown.append(f"{f['src']} > sprayed over {len(on_link) - 2} fabric links > {f['dst']}")
                links += sorted(on_link)
        hot = queues.hottest(sorted(set(links)), m["ready_ns"], m["end_ns"])
        out[i] = {
            "msg_id": i, "job": m["job"], "step": m["step"], "src": m["src"], "dst": m["dst"], "bytes": m["bytes"],
            "fct_packet_ns": int(m["fct_ns"]), "fct_model_ns": float(model.fct_ns[i]), "rel_error": float(err[i]),
            "paths": shown, "hot_port": hot,
        }
    return out


class _Queues:
    """The packet run's ``queues`` table, indexed for "largest backlog on these ports in this window"."""

    def __init__(self, run_dir: Path, interval_ns: int) -> None:
        t = pads.dataset(run_dir / "queues").to_table(columns=["time_ns", "node", "port", "max_bytes"])
        key = pc.binary_join_element_wise(t["node"], t["port"], "\x1f").combine_chunks().dictionary_encode()
        self.names = [tuple(k.split("\x1f")) for k in key.dictionary.to_pylist()]
        self.ids = {k: j for j, k in enumerate(self.names)}
        self.port = key.indices.to_numpy(zero_copy_only=False)
        self.time = t["time_ns"].to_numpy()
        self.max_bytes = t["max_bytes"].to_numpy()
        self.interval = interval_ns

    def hottest(self, links: list[tuple[str, str]], start_ns: int, end_ns: int) -> dict | None:
        """The port among ``links`` with the largest ``max_bytes`` in an interval overlapping
        [start_ns, end_ns], or None when none of them queued."""
        ids = [self.ids[uv] for uv in links if uv in self.ids]
        if not ids:
            return None
        rows = np.flatnonzero(np.isin(self.port, ids) & (self.time + self.interval > start_ns) & (self.time < end_ns))
        if not len(rows):
            return None
        best = rows[np.argmax(self.max_bytes[rows])]
        node, port = self.names[int(self.port[best])]
        return {"node": node, "port": port, "max_bytes": int(self.max_bytes[best]), "time_ns": int(self.time[best])}


# ---------------------------------------------------------------------------------------------
# Outputs


def write_outputs(out: Path, table: pa.Table, report: dict, scenario_json: dict) -> str | None:
    """``validation.parquet``, ``validation.png`` (when matplotlib is installed) and, last,
    ``validation.json`` (the report). Returns a note when the plot was skipped."""
    meta = parquet_metadata(scenario_json, model=report["model"], rel_error=report["sign"])
    pq.write_table(table.replace_schema_metadata(meta), out / "validation.parquet")
    note = plot(table, report, out / "validation.png")
    (out / "validation.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return note


def plot(table: pa.Table, report: dict, path: Path) -> str | None:
    """Packet vs model FCT per message, log-log, with the y = x line. None, or why it was skipped."""
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
        from matplotlib.ticker import LogFormatter
    except ImportError:
        return "matplotlib is not installed: validation.png skipped (pip install -e '.[plots]')"
    x = table["fct_packet_ns"].to_numpy() / 1e3
    y = table["fct_fluid_ns"].to_numpy() / 1e3
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    jobs = table["job"].to_numpy(zero_copy_only=False)
    for job in dict.fromkeys(jobs):
        sel = jobs == job
        ax.scatter(x[sel], y[sel], s=6, alpha=0.6, label=job)
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers; minor ticks labelled only over a short range
        axis.set_major_formatter(LogFormatter())
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    ax.set_xlabel("FCT, packet backend (us)")
    ax.set_ylabel(f"FCT, {Path(report['model']).name if report['model'] != 'fluid backend' else 'fluid backend'} (us)")
    d = report["overall"]["fct_rel_error"]
    ax.set_title(f"rel. error p50 {d['p50']:+.3f}, p99 {d['p99']:+.3f} (+: model faster)", fontsize=9)
    if len(dict.fromkeys(jobs)) <= 10:
        ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return None


def print_report(report: dict) -> None:
    """The human-readable report: per job CCTs and FCT errors, then the worst messages and why."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = 140
    t = Table(title=f"validation: packet backend vs {report['model']} (rel. error = (packet - model) / packet, "
                    f"+ = model optimistic)", box=box.SIMPLE_HEAD)
    for col in ("job", "msgs", "CCT packet", "CCT model", "CCT err", "FCT err p50", "p90", "p99", "max", "min"):
        t.add_column(col, justify="left" if col == "job" else "right", no_wrap=True)

    def row(name: str, n: int, cp: float, cm: float, ce: float, d: dict) -> None:
        t.add_row(name, str(n), format_ns(cp), format_ns(cm), f"{ce:+.4f}", f"{d['p50']:+.4f}", f"{d['p90']:+.4f}",
                  f"{d['p99']:+.4f}", f"{d['max']:+.4f}", f"{d['min']:+.4f}")

    for j in report["jobs"]:
        row(j["job"], j["messages"], j["cct_packet_ns"], j["cct_model_ns"], j["cct_rel_error"], j["fct_rel_error"])
    o = report["overall"]
    row("all (makespan)", o["messages"], o["makespan_packet_ns"], o["makespan_model_ns"], o["makespan_rel_error"],
        o["fct_rel_error"])
    console.print(t)
    for side, what in (("optimistic", "model faster than packets"), ("pessimistic", "model slower than packets")):
        if not report["worst"][side]:
            continue
        console.print(f"largest {side} errors ({what}); the packet path and its most congested port while the "
                      f"message was in flight:", highlight=False)
        for w in report["worst"][side]:
            hot = w["hot_port"]
            where = (f"hot port {hot['node']} -> {hot['port']} ({format_bytes(hot['max_bytes'])} max backlog, "
                     f"interval from {format_ns(hot['time_ns'])})" if hot else "no queue on its path")
            console.print(f"  msg {w['msg_id']} ({w['job']} step {w['step']}, {w['src']} -> {w['dst']}, "
                          f"{format_bytes(w['bytes'])}): packet {format_ns(w['fct_packet_ns'])}, model "
                          f"{format_ns(w['fct_model_ns'])}, error {w['rel_error']:+.3f}; {where}", highlight=False)
            for p in w["paths"]:
                console.print(f"      {p}", highlight=False)
