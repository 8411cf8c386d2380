"""Columnar recording (the compiled fluid engine's): every bulk call gives exactly what the row-wise
calls in the same order give — the same Parquet part files byte for byte, the same meter state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pktsim.analysis.congestion import CongestionMeter, phase_groups
from pktsim.experiment import prepare
from pktsim.fluid.backend import FluidSimulation
from pktsim.scenario import load_scenario
from pktsim.traces import FlowColumns, FlowRow, MessageRow, Recorder, TableWriter, parquet_metadata
from pktsim.units import ps_to_ns, ps_to_ns_array

META = parquet_metadata({"test": 1})


def _parts(directory: Path) -> dict[str, bytes]:
    """Every file of a table directory (names, temporary files included) -> its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _random_message_row(rng: random.Random, i: int) -> MessageRow:
    return MessageRow(i, rng.choice(["a", "b"]), "c", rng.randrange(3), rng.randrange(5), 0, f"h{rng.randrange(9)}",
                      "h1", rng.randrange(1 << 40), rng.randrange(10**9), 1, 2, 3, 4,
                      rng.choice([None, rng.randrange(100)]))


def _columns(rows: list[tuple]) -> list[list]:
    return [list(c) for c in zip(*rows)] if rows else [[] for _ in MessageRow._fields]


@pytest.mark.parametrize("seed", range(6))
def test_extend_interleaved_with_append_writes_the_parts_of_appending_row_by_row(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    rows = [_random_message_row(rng, i) for i in range(rng.randrange(0, 60))]
    reference = TableWriter(tmp_path / "ref", "messages", META, part_rows=7)
    for row in rows:
        reference.append(row)
    reference.flush()

    mixed = TableWriter(tmp_path / "mixed", "messages", META, part_rows=7)
    k = 0
    while k < len(rows):
        n = rng.choice([1, 1, 2, 3, 6, 7, 8, 15, 20])
        batch = rows[k:k + n]
        if rng.random() < 0.5:
            for row in batch:
                mixed.append(row)
        else:
            columns = _columns(batch)
            if rng.random() < 0.5:  # as numpy arrays (a column with nulls stays a list)
                columns = [c if None in c else np.array(c) for c in columns]
            mixed.extend(columns)
        k += len(batch)
        assert mixed.total == k
        if rng.random() < 0.4:
            mixed.checkpoint()
            # the part being filled is on disk with exactly the rows it has so far
            index, first = mixed.parts, 7 * mixed.parts
            if k > first or index == 0:
                on_disk = pq.read_table(tmp_path / "mixed" / "messages" / f"part-{index:05d}.parquet")
                assert on_disk.to_pylist() == [r._asdict() for r in rows[first:k]]
    mixed.extend(_columns([]))  # nothing: no part
    mixed.flush()
    assert mixed.parts == reference.parts == max(1, -(-len(rows) // 7))
    assert _parts(tmp_path / "mixed" / "messages") == _parts(tmp_path / "ref" / "messages")
    read = [r for p in sorted((tmp_path / "mixed" / "messages").iterdir()) for r in pq.read_table(p).to_pylist()]
    assert read == [r._asdict() for r in rows]


def test_write_columns_still_writes_parts_of_their_own(tmp_path: Path) -> None:
    w = TableWriter(tmp_path, "messages", META, part_rows=7)
    rows = [_random_message_row(random.Random(1), i) for i in range(12)]
    w.append(rows[0])
    w.write_columns(_columns(rows[1:10]))  # completes the part of row 0, then parts of 7 and 2 rows
    w.append(rows[10])
    w.flush()
    sizes = [pq.read_table(p).num_rows for p in sorted((tmp_path / "messages").iterdir())]
    assert sizes == [1, 7, 2, 1]


def test_ps_to_ns_array_is_ps_to_ns() -> None:
    rng = np.random.default_rng(0)
    halves = np.array([0.5, 1.5, 2.5, 499.5, 500.5, 1499.5, 1500.5, 2**51 + 0.5, 2**52 - 0.5, -0.5, -1.0])
    values = np.concatenate([halves, rng.uniform(0, 1e13, 1000), rng.integers(0, 10**6, 1000) * 1000 + 499.5,
                             rng.integers(0, 10**6, 1000) * 1000 + 500.5, [2.0**62, 9.1e18]])
    assert ps_to_ns_array(values).tolist() == [ps_to_ns(float(v)) for v in values]
    ints = [0, 499, 500, 1499, 1500, 2**62 + 1, 2**53 + 1]  # integers: exact, no detour through floats
    assert ps_to_ns_array(ints).tolist() == [ps_to_ns(v) for v in ints]


@pytest.fixture(scope="module")
def experiment():
    sc = load_scenario(topology="bench", workload="ring_allreduce_random", lb="split", seed=5,
                       overrides=["workload.jobs.0.ranks=16", "workload.jobs.0.bytes=64KiB", "lb.subflows=2"])
    return prepare(sc)


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Float ps with many exact halves around ns boundaries, some large."""
    kind = rng.integers(0, 3, n)
    return np.where(kind == 0, rng.integers(0, 10**9, n) * 1000 + rng.choice([499.5, 500.5, 500.0, 0.5], n),
                    np.where(kind == 1, rng.uniform(0, 1e15, n), rng.integers(0, 2**40, n) + 0.5))


@pytest.mark.parametrize("single", [False, True])
def test_messages_done_writes_the_rows_of_message_done(experiment, single: bool, tmp_path: Path) -> None:
    w = experiment.workload
    rng = np.random.default_rng(7)
    n = len(w)
    ids = rng.permutation(n)[: n - 3]
    ready = _times(rng, len(ids))
    start = ready + rng.choice([0.0, 0.5, 1234.5], len(ids))
    end = start + _times(rng, len(ids))
    ideal = [int(v) for v in rng.integers(0, 10**12, n)]
    single_path = ([int(v) for v in rng.integers(0, 10**12, n)]) if single else None
    rows, bulk = Recorder(tmp_path / "rows", {}, 5), Recorder(tmp_path / "bulk", {}, 5)
    for k, i in enumerate(ids.tolist()):
        rows.message_done(w.messages[i], float(ready[k]), float(start[k]), float(end[k]), ideal[i],
                          None if single_path is None else single_path[i])
    cut = len(ids) // 3  # two calls, the second with the ideal times as numpy arrays
    bulk.messages_done(w, ids[:cut], ready[:cut], start[:cut], end[:cut], ideal, single_path)
    bulk.messages_done(w, ids[cut:], ready[cut:], start[cut:], end[cut:], np.array(ideal),
                       None if single_path is None else np.array(single_path))
    rows.close()
    bulk.close()
    assert _parts(tmp_path / "bulk" / "messages") == _parts(tmp_path / "rows" / "messages")


def test_flows_done_writes_the_rows_of_flow_done(experiment, tmp_path: Path) -> None:
    w = experiment.workload
    rng = np.random.default_rng(3)
    paths = [["h0", *(f"s{v}" for v in rng.integers(0, 9, rng.integers(1, 5))), "h1"] for _ in range(10)]
    turns = [str(rng.choice(p[1:-1])) for p in paths]
    n = 400
    f = FlowColumns(
        flow_id=np.arange(n, dtype=np.int64) * 3, msg_id=rng.integers(0, len(w), n), subflow=rng.integers(0, 4, n),
        bytes=rng.integers(1, 2**40, n), start_ps=_times(rng, n), end_ps=_times(rng, n),
        packets=rng.integers(1, 10**6, n), entropy=rng.integers(0, 65536, n), path_id=rng.integers(0, len(paths), n),
    )
    rows, bulk = Recorder(tmp_path / "rows", {}, 64), Recorder(tmp_path / "bulk", {}, 64)
    for k in range(n):
        p, m = int(f.path_id[k]), w.messages[int(f.msg_id[k])]
        rows.flow_done(FlowRow(
            flow_id=int(f.flow_id[k]), msg_id=m.msg_id, subflow=int(f.subflow[k]), src=m.src, dst=m.dst,
            bytes=int(f.bytes[k]), start_ns=ps_to_ns(float(f.start_ps[k])), end_ns=ps_to_ns(float(f.end_ps[k])),
            packets=int(f.packets[k]), retransmits=0, spurious_retransmits=0, discarded=0, drops=0, fault_drops=0,
            entropy=int(f.entropy[k]), path=paths[p], spine_bytes=[{"node": turns[p], "bytes": int(f.bytes[k])}],
        ))
    for lo, hi in [(0, 1), (1, 150), (150, 150), (150, n)]:
        bulk.flows_done(w, FlowColumns(*(c[lo:hi] for c in f)), paths, turns)
    rows.close()
    bulk.close()
    assert _parts(tmp_path / "bulk" / "flows") == _parts(tmp_path / "rows" / "flows")


def _meter_state(m: CongestionMeter) -> tuple:
    phase, link, nbytes = m.loads.pairs()
    loads = {(p, m.loads.links[k]): b for p, k, b in zip(phase.tolist(), link.tolist(), nbytes.tolist())}
    return (m.flow_msg.tolist(), m.flow_route.tolist(), m.flow_bytes.tolist(), m.routes.links, m.routes.weights,
            m.routes.classes, m.routes._ids, m._route_of, loads)


@pytest.mark.parametrize("workload,lb", [("permutation", "ecmp"), ("ring_allreduce_random", "ecmp"),
                                         ("ring_allreduce_random", "planned"), ("ring_allreduce_random", "split")])
def test_bulk_calls_replay_a_fluid_run(workload: str, lb: str, tmp_path: Path) -> None:
    """A real fluid run's flows and messages, captured as the row-wise calls get them, replayed
    through the bulk calls in chunks: the same tables and the same meter (loads, routes, phases)."""
    sc = load_scenario(topology="bench", workload=workload, lb=lb, seed=2,
                       overrides=["workload.jobs.0.ranks=16", "workload.jobs.0.bytes=256KiB"])
    ex = prepare(sc)
    sim = FluidSimulation(ex, compiled=False)  # the Python loop: the row-wise calls, one per flow
    flows, messages, flow_rows = [], [], []
    meter = sim.dag.congestion
    flow_received = sim.dag.flow_received  # hands the meter its add_flow arguments unchanged
    sim.dag.flow_received = lambda *call: (flows.append(call), flow_received(*call))[1]
    recorder = Recorder(tmp_path / "rows", {}, 50)
    message_done, flow_done = recorder.message_done, recorder.flow_done
    recorder.message_done = lambda m, *t: (messages.append((m.msg_id, *t)), message_done(m, *t))[1]
    recorder.flow_done = lambda row: (flow_rows.append(row), flow_done(row))[1]
    sim.run(recorder)
    recorder.close()
    assert len(flows) == len(flow_rows) > 0 and all(f[4] is not None for f in flows)

    replay = CongestionMeter(ex.fabric, ex.workload, ex.lb.varying_paths)
    bulk = Recorder(tmp_path / "bulk", {}, 50)
    bulk.add_metadata(recorder.tables["flows"].schema.metadata)  # the backend's keys (and no scenario: {})
    # the engine's path table: in no particular order, a path possibly twice (routes: by first flow seen)
    distinct = sorted({tuple(f[4]) for f in flows}, reverse=True)
    paths = [list(p) for p in distinct + distinct[:3]]
    rng = np.random.default_rng(len(flows))
    pid = np.array([distinct.index(tuple(f[4])) for f in flows], dtype=np.int64)
    pid = np.where((pid < 3) & (rng.random(len(pid)) < 0.5), pid + len(distinct), pid)
    turns = [ex.fabric.turning_point(p) for p in paths]
    msg = np.array([f[0] for f in flows], dtype=np.int64)
    size = np.array([f[1] for f in flows], dtype=np.int64)
    assert all(f[5] == [(turns[pid[k]], size[k])] for k, f in enumerate(flows))  # what add_flows assumes
    columns = FlowColumns(
        flow_id=np.array([r.flow_id for r in flow_rows]), msg_id=msg, subflow=np.array([r.subflow for r in flow_rows]),
        bytes=size, start_ps=np.array([f[2] for f in flows]), end_ps=np.array([f[3] for f in flows]),
        packets=np.array([r.packets for r in flow_rows]), entropy=np.array([r.entropy for r in flow_rows]),
        path_id=pid,
    )
    done = np.array([m[0] for m in messages], dtype=np.int64)
    times = [np.array([m[j] for m in messages], dtype=np.float64) for j in (1, 2, 3)]
    cuts = sorted({0, len(flows), *np.random.default_rng(1).integers(0, len(flows), 4).tolist()})
    for lo, hi in zip(cuts, cuts[1:]):
        replay.add_flows(msg[lo:hi], size[lo:hi], pid[lo:hi], paths)
        bulk.flows_done(ex.workload, FlowColumns(*(c[lo:hi] for c in columns)), paths, turns)
    half = len(done) // 2
    for part in (slice(0, half), slice(half, None)):
        bulk.messages_done(ex.workload, done[part], *(t[part] for t in times), ex.ideal_fct_ps, ex.single_path_fct_ps)
    bulk.close()

    assert _meter_state(replay) == _meter_state(meter)
    # counted by endpoints (a scheme whose paths vary; none the fluid backend models): the same too
    by_flow, by_batch = (CongestionMeter(ex.fabric, ex.workload, by_endpoints=True) for _ in range(2))
    for f in flows:
        by_flow.add_flow(f[0], f[1], f[4], f[5])
    by_batch.add_flows(msg, size, pid, paths)
    assert _meter_state(by_batch) == _meter_state(by_flow)
    assert by_batch.routes.classes[0][0] == "ends"
    groups = phase_groups(ex.workload)
    strip = lambda ps: [{k: v for k, v in p.items() if k != "msg_ids"} for p in ps]  # noqa: E731
    assert strip(replay.phases(groups)) == strip(meter.phases(groups))
    assert _parts(tmp_path / "bulk" / "messages") == _parts(tmp_path / "rows" / "messages")
    assert _parts(tmp_path / "bulk" / "flows") == _parts(tmp_path / "rows" / "flows")
