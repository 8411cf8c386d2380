"""Recording cost: the columnar calls (the compiled fluid engine's) against the row-wise ones.

For ``messages`` rows (``Recorder.messages_done`` vs ``message_done``), ``flows`` rows
(``Recorder.flows_done`` vs ``flow_done(FlowRow(...))`` as the fluid backend builds them) and the
congestion meter (``CongestionMeter.add_flows`` vs ``add_flow``): seconds per million rows, the
bulk calls in chunks of ``--chunk`` rows. The rows are those of a real workload (a random-ring
all-reduce on the bench fabric, its messages repeated to make up ``--rows``), with random times,
and the flows take the ECMP paths of their messages' connections. Part files are written to a
temporary directory (part_rows 16384, the default); the row-wise runs use ``--rows // 10`` rows.

    python bench/bench_bulk_recording.py
    python bench/bench_bulk_recording.py --rows 2000000 --chunk 50000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pktsim.analysis.congestion import CongestionMeter
from pktsim.experiment import prepare
from pktsim.scenario import load_scenario
from pktsim.traces import FlowColumns, FlowRow, Recorder
from pktsim.units import ps_to_ns


def _timed(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    args = ap.parse_args()
    n, few, chunk = args.rows, args.rows // 10, args.chunk

    ex = prepare(load_scenario(topology="bench", workload="ring_allreduce_random", lb="ecmp", seed=1,
                               overrides=["workload.jobs.0.ranks=32"]))
    w, fabric = ex.workload, ex.fabric
    rng = np.random.default_rng(0)
    msg = rng.integers(0, len(w), n)
    ready = rng.uniform(0, 1e12, n)
    start = ready + rng.uniform(0, 1e6, n)
    end = start + rng.uniform(0, 1e9, n)
    # paths: per message, its connection's ECMP path (entropy 0..3 by subflow)
    subflow = rng.integers(0, 4, n)
    path_id: dict[tuple, int] = {}
    paths: list[list[str]] = []
    pid = np.empty(n, dtype=np.int64)
    for k, (m, s) in enumerate(zip(msg.tolist(), subflow.tolist())):
        key = (int(w.src[m]), int(w.dst[m]), s)
        if key not in path_id:
            path_id[key] = len(paths)
            paths.append(fabric.path(w.hosts[key[0]], w.hosts[key[1]], s))
        pid[k] = path_id[key]
    turns = [fabric.turning_point(p) for p in paths]
    size = w.bytes[msg]
    flows = FlowColumns(np.arange(n), msg, subflow, size, start, end, -(-size // 4096), subflow, pid)

    with tempfile.TemporaryDirectory() as tmp:
        def recorder(name: str) -> Recorder:
            return Recorder(Path(tmp) / name, {}, 16384)

        def messages_rows() -> None:
            r, msgs = recorder("m-rows"), w.messages
            for k in range(few):
                r.message_done(msgs[int(msg[k])], float(ready[k]), float(start[k]), float(end[k]),
                               ex.ideal_fct_ps[msg[k]], ex.single_path_fct_ps[msg[k]])
            r.close()

        def messages_bulk() -> None:
            r = recorder("m-bulk")
            for lo in range(0, n, chunk):
                part = slice(lo, lo + chunk)
                r.messages_done(w, msg[part], ready[part], start[part], end[part], ex.ideal_fct_ps,
                                ex.single_path_fct_ps)
            r.close()

        def flows_rows() -> None:
            r, hosts = recorder("f-rows"), w.hosts
            for k in range(few):
                m, p, b = int(msg[k]), paths[pid[k]], int(size[k])
                r.flow_done(FlowRow(
                    flow_id=k, msg_id=m, subflow=int(subflow[k]), src=hosts[w.src[m]], dst=hosts[w.dst[m]], bytes=b,
                    start_ns=ps_to_ns(float(start[k])), end_ns=ps_to_ns(float(end[k])), packets=-(-b // 4096),
                    retransmits=0, spurious_retransmits=0, discarded=0, drops=0, fault_drops=0,
                    entropy=int(subflow[k]), path=p, spine_bytes=[{"node": turns[pid[k]], "bytes": b}],
                ))
            r.close()

        def flows_bulk() -> None:
            r = recorder("f-bulk")
            for lo in range(0, n, chunk):
                r.flows_done(w, FlowColumns(*(c[lo:lo + chunk] for c in flows)), paths, turns)
            r.close()

        def meter_rows() -> None:
            meter = CongestionMeter(fabric, w)
            for k in range(few):
                b = int(size[k])
                meter.add_flow(int(msg[k]), b, paths[pid[k]], [(turns[pid[k]], b)])

        def meter_bulk() -> None:
            meter = CongestionMeter(fabric, w)
            for lo in range(0, n, chunk):
                meter.add_flows(msg[lo:lo + chunk], size[lo:lo + chunk], pid[lo:lo + chunk], paths)

        print(f"{n} rows (row-wise: {few}), bulk chunks of {chunk} rows; seconds per million rows")
        print(f"{'':10} {'row-wise':>10} {'bulk':>10} {'speed-up':>10}")
        for name, rows, bulk in [("messages", messages_rows, messages_bulk), ("flows", flows_rows, flows_bulk),
                                 ("meter", meter_rows, meter_bulk)]:
            per_row = _timed(rows) / few * 1e6
            per_bulk = _timed(bulk) / n * 1e6
            print(f"{name:10} {per_row:10.2f} {per_bulk:10.3f} {per_row / per_bulk:9.0f}x")


if __name__ == "__main__":
    main()
