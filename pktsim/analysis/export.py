"""``python -m pktsim export-workload``: the message DAG, with the paths the packet backend would
take, as one Parquet file, to feed an external flow-level model.

One row per message (schema in ``traces/README.md``). A message is ready when every message in
``deps`` has been fully received and, if ``after_op >= 0``, every message of collective op
``after_op`` (column ``op``) too, plus ``gap_ns``; without either it is ready at ``gap_ns``
(absolute). Each message is sent as ``len(subflow_bytes)`` subflows, each on its own connection
with its ``entropy``; ``paths[k]`` is subflow k's path (null when the scheme sprays: the subflow
then spreads over every equal-cost path).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pktsim import __version__
from pktsim.fluid.backend import Routes
from pktsim.planning.flow_plan import FlowPlanner
from pktsim.scenario import Scenario
from pktsim.workload.collectives import build_workload
from pktsim.analysis.ideal import ideal_times
from pktsim.fabric.topology import build_graph, hosts
from pktsim.traces import ps_to_ns

WORKLOAD_SCHEMA = pa.schema([
    ("msg_id", pa.int64()), ("op", pa.int64()), ("job", pa.string()), ("collective", pa.string()),
    ("iteration", pa.int32()), ("step", pa.int32()), ("channel", pa.int32()), ("src", pa.string()),
    ("dst", pa.string()), ("bytes", pa.int64()), ("deps", pa.list_(pa.int64())), ("after_op", pa.int64()),
    ("gap_ns", pa.int64()), ("ideal_fct_ns", pa.int64()), ("subflow_bytes", pa.list_(pa.int64())),
    ("entropy", pa.list_(pa.int32())), ("paths", pa.list_(pa.list_(pa.string()))),
])


def workload_table(scenario: Scenario) -> pa.Table:
    """The scenario's message DAG with its subflows, entropies and paths (see the module doc)."""
    graph = build_graph(scenario.topology)
    names = hosts(graph)
    workload = build_workload(scenario.workload.jobs, names, scenario.topology.hosts_per_tor, scenario.seed)
    ideal_fct_ps, _ = ideal_times(graph, scenario, workload)
    routes = Routes(graph, scenario, names)
    planner = FlowPlanner(scenario, graph, workload)
    cols: dict[str, list] = {f.name: [] for f in WORKLOAD_SCHEMA}
    for m in workload.messages:
        sizes, entropies = (list(c) for c in zip(*planner.subflows(m)))
        paths = [None if routes.sprayed else routes.path(m.src, m.dst, e) for e in entropies]
        for name, value in (
            ("msg_id", m.msg_id), ("op", m.op), ("job", m.job), ("collective", m.collective),
            ("iteration", m.iteration), ("step", m.step), ("channel", m.channel), ("src", m.src), ("dst", m.dst),
            ("bytes", m.bytes), ("deps", list(m.deps)), ("after_op", m.after_op), ("gap_ns", m.gap_ns),
            ("ideal_fct_ns", ps_to_ns(ideal_fct_ps[m.msg_id])), ("subflow_bytes", sizes),
            ("entropy", entropies), ("paths", paths),
        ):
            cols[name].append(value)
    meta = {
        b"pktsim.scenario": json.dumps(scenario.model_dump(mode="json"), sort_keys=True).encode(),
        b"pktsim.version": __version__.encode(),
        b"pktsim.units": b"times in ns; sizes in bytes",
        b"pktsim.lb": scenario.lb.scheme.encode(),
    }
    return pa.table(cols, schema=WORKLOAD_SCHEMA).replace_schema_metadata(meta)


def write_workload(scenario: Scenario, out: Path) -> pa.Table:
    """Write :func:`workload_table` to ``out`` (a new Parquet file); returns the table."""
    table = workload_table(scenario)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table
