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

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pktsim.experiment import Experiment
from pktsim.traces import FILE_SCHEMAS, parquet_metadata
from pktsim.units import ps_to_ns

WORKLOAD_SCHEMA = FILE_SCHEMAS["workload"]


def workload_table(experiment: Experiment) -> pa.Table:
    """The experiment's message DAG with its subflows, entropies and paths (see the module doc)."""
    scenario, fabric, planner = experiment.scenario, experiment.fabric, experiment.flow_plan
    sprayed = experiment.lb.spreads
    cols: dict[str, list] = {f.name: [] for f in WORKLOAD_SCHEMA}
    for m in experiment.workload.messages:
        sizes, entropies = (list(c) for c in zip(*planner.subflows(m)))
        paths = [None if sprayed else fabric.path(m.src, m.dst, e) for e in entropies]
        for name, value in (
            ("msg_id", m.msg_id), ("op", m.op), ("job", m.job), ("collective", m.collective),
            ("iteration", m.iteration), ("step", m.step), ("channel", m.channel), ("src", m.src), ("dst", m.dst),
            ("bytes", m.bytes), ("deps", list(m.deps)), ("after_op", m.after_op), ("gap_ns", m.gap_ns),
            ("ideal_fct_ns", ps_to_ns(experiment.ideal_fct_ps[m.msg_id])), ("subflow_bytes", sizes),
            ("entropy", entropies), ("paths", paths),
        ):
            cols[name].append(value)
    meta = parquet_metadata(scenario.model_dump(mode="json"), units=b"times in ns; sizes in bytes",
                            lb=scenario.lb.scheme)
    return pa.table(cols, schema=WORKLOAD_SCHEMA).replace_schema_metadata(meta)


def write_workload(experiment: Experiment, out: Path) -> pa.Table:
    """Write :func:`workload_table` to ``out`` (a new Parquet file); returns the table. The file is
    written under a temporary name and renamed into place, so an error or a signal while writing
    leaves no half file at ``out``."""
    table = workload_table(experiment)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return table
