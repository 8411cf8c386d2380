"""``python -m pktsim validate`` and ``export-workload``: the comparison's numbers, where the fluid
model is optimistic or pessimistic and why, user files (``--against``) and their errors.

Sign convention under test: rel_error = (fct_packet - fct_model) / fct_packet, positive when the
model is optimistic (finishes sooner than the packets).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from conftest import run

from pktsim.cli import main
from pktsim.scenario import load_scenario
from pktsim.experiment import prepare

RING = ["-w", "ring_allreduce_random", "--set", "workload.jobs.0.bytes=1MiB"]
INCAST = ["-w", "incast", "--set", "workload.jobs.0.bytes=1MiB"]   # h1..h7 -> h0, 7 x 1 MiB
SHORT = ["-w", "alltoall", "--set", "workload.jobs.0.bytes=64KiB"]  # 240 messages of 4 KiB


def validate(tmp_path: Path, name: str, args: list[str]) -> tuple[Path, dict]:
    out = tmp_path / name
    assert main(["validate", *args, "--out", str(out), "--quiet"]) == 0
    return out, json.loads((out / "validation.json").read_text())


def test_validate_writes_runs_table_report_and_plot(tmp_path: Path) -> None:
    out, report = validate(tmp_path, "v", RING)
    for backend in ("packet", "fluid"):
        summary = json.loads((out / backend / "summary.json").read_text())
        assert summary["backend"] == backend
    assert (out / "validation.png").stat().st_size > 0
    table = pq.read_table(out / "validation.parquet")
    assert table.schema.metadata[b"pktsim.model"] == b"fluid backend"
    assert b"positive = model optimistic" in table.schema.metadata[b"pktsim.rel_error"]
    v = table.to_pylist()
    packet = {m["msg_id"]: m for m in pads.dataset(out / "packet" / "messages").to_table().to_pylist()}
    fluid = {m["msg_id"]: m for m in pads.dataset(out / "fluid" / "messages").to_table().to_pylist()}
    assert [r["msg_id"] for r in v] == sorted(packet) == sorted(fluid)
    for r in v:
        p, f = packet[r["msg_id"]]["fct_ns"], fluid[r["msg_id"]]["fct_ns"]
        assert (r["fct_packet_ns"], r["fct_fluid_ns"]) == (p, f)
        assert r["rel_error"] == pytest.approx((p - f) / p)
        assert (r["src"], r["dst"], r["bytes"]) == (packet[r["msg_id"]]["src"], packet[r["msg_id"]]["dst"],
                                                     packet[r["msg_id"]]["bytes"])
    (job,) = report["jobs"]
    cp = json.loads((out / "packet" / "summary.json").read_text())["jobs"][0]["mean_cct_ns"]
    cf = json.loads((out / "fluid" / "summary.json").read_text())["jobs"][0]["mean_cct_ns"]
    assert (job["cct_packet_ns"], job["cct_model_ns"]) == (cp, cf)
    assert job["cct_rel_error"] == pytest.approx((cp - cf) / cp)
    errors = np.array([r["rel_error"] for r in v])
    assert job["fct_rel_error"]["p50"] == pytest.approx(np.percentile(errors, 50))
    assert job["fct_rel_error"]["max"] == pytest.approx(errors.max())


def test_incast_cct_agrees_fluid_pessimistic_per_message_and_names_the_incast_port(tmp_path: Path) -> None:
    # Seven 1 MiB flows into h0. Both models keep leaf0 -> h0 busy from the first byte to the last,
    # so the CCT agrees. Per message they differ: the packet FIFO serves flows in proportion to
    # their arrival rates and lets h0's leaf-mates (nearer, with a head start) finish early, while
    # max-min gives every flow the same share, so all finish together at the end: the fluid model is
    # pessimistic (negative error) for every message, and the port that explains it is leaf0 -> h0.
    _, report = validate(tmp_path, "v", [*INCAST, "--worst", "7"])
    assert abs(report["overall"]["makespan_rel_error"]) < 0.01
    assert report["overall"]["fct_rel_error"]["max"] < 0
    assert report["worst"]["optimistic"] == []
    worst = report["worst"]["pessimistic"]
    assert len(worst) == 7
    assert all((w["hot_port"]["node"], w["hot_port"]["port"]) == ("leaf0", "h0") for w in worst)
    assert worst[0]["hot_port"]["max_bytes"] > 2**20  # megabytes queue up there


def test_many_short_messages_fluid_optimistic(tmp_path: Path) -> None:
    # An all-to-all of 4 KiB messages: the packets queue behind each other at the fabric ports the
    # messages share; the fluid model gives every flow its fair share at once. It is optimistic:
    # positive CCT error and median message error, and the worst messages name a queue on their path.
    _, report = validate(tmp_path, "v", SHORT)
    assert report["overall"]["makespan_rel_error"] > 0.1
    assert report["overall"]["fct_rel_error"]["p50"] > 0
    worst = report["worst"]["optimistic"]
    assert worst and all(w["rel_error"] > 0.2 and w["hot_port"]["max_bytes"] > 0 for w in worst)


def test_against_a_model_file_round_trip(tmp_path: Path) -> None:
    # The fluid backend's own results given back as a user's file reproduce its comparison: from
    # fct_ns, every message's error exactly, and the CCT (the DAG replayed with FCTs rounded to ns)
    # to within 1 ns per message on the ring's chain of 2 * (16 - 1) steps; from end_ns (ready times
    # then derived from the DAG), every FCT to within the rounding of the times to ns.
    out, report = validate(tmp_path, "fluid", RING)
    fluid = pads.dataset(out / "fluid" / "messages").to_table()
    csv = tmp_path / "model.csv"
    pacsv.write_csv(fluid.select(["msg_id", "fct_ns"]), csv)
    out2, report2 = validate(tmp_path, "csv", [*RING, "--against", str(csv)])
    assert report2["model"] == str(csv)
    assert not (out2 / "fluid").exists()
    a = pq.read_table(out / "validation.parquet")
    b = pq.read_table(out2 / "validation.parquet")
    assert a.column("rel_error").equals(b.column("rel_error"))
    assert report2["jobs"][0]["cct_model_ns"] == pytest.approx(report["jobs"][0]["cct_model_ns"], abs=30)

    ends = tmp_path / "ends.parquet"
    pq.write_table(fluid.select(["msg_id", "end_ns"]).sort_by([("msg_id", "descending")]), ends)
    out3, report3 = validate(tmp_path, "ends", [*RING, "--against", str(ends)])
    c = pq.read_table(out3 / "validation.parquet")
    assert np.abs(c["fct_fluid_ns"].to_numpy() - a["fct_fluid_ns"].to_numpy()).max() <= 1
    assert report3["jobs"][0]["cct_rel_error"] == pytest.approx(report["jobs"][0]["cct_rel_error"], abs=1e-5)


def _write(path: Path, columns: dict) -> str:
    table = pa.table(columns)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return str(path)


N_INCAST = 7  # messages of the INCAST workload: msg_ids 0..6
IDS = list(range(N_INCAST))
BAD_FILES = [
    ("missing.csv", None, ": cannot read:"),
    ("model.txt", {"msg_id": [0]}, ": expected a .parquet or .csv file"),
    ("model.csv", {"id": IDS, "fct_ns": [5] * 7}, ": msg_id: missing column (columns: id, fct_ns)"),
    ("model.parquet", {"msg_id": IDS, "fct": [5] * 7}, ": fct_ns: missing column: give fct_ns or end_ns"),
    ("model.csv", {"msg_id": [*IDS, 99], "fct_ns": [5] * 8},
     ": msg_id: unknown msg_id 99 (the workload has msg_ids 0..6)"),
    ("model.csv", {"msg_id": [0, 0, 1], "fct_ns": [5, 5, 5]}, ": msg_id: msg_id 0 appears 2 times"),
    ("model.parquet", {"msg_id": [0, 1], "end_ns": [5, 6]},
     ": msg_id: no row for 5 of the workload's 7 messages (first: msg_id 2)"),
    ("model.csv", {"msg_id": IDS, "fct_ns": ["fast"] * 7}, ": fct_ns: expected numbers, got string"),
    ("model.parquet", {"msg_id": IDS, "end_ns": [5, 6, -1, 7, 8, 9, 9]}, ": end_ns: negative value at msg_id 2"),
    ("model.parquet", {"msg_id": IDS, "fct_ns": [5, None, 5, 5, 5, 5, 5]}, ": fct_ns: 1 empty value(s)"),
]


@pytest.mark.parametrize("name,columns,expected", BAD_FILES)
def test_against_bad_files_one_line_exit_2_nothing_written(name, columns, expected, tmp_path: Path, capsys) -> None:
    path = tmp_path / name
    if columns is not None:
        _write(path, columns)
    out = tmp_path / "out"
    assert main(["validate", *INCAST, "--against", str(path), "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pktsim: error: {path}"), lines
    assert expected in lines[0]
    assert not out.exists()


def test_validate_bad_options(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    for args, expected in ((["--worst", "-1"], "--worst: must not be negative"),
                           (["--set", "workload.jobs.0.ranks=99"], "99 ranks but the topology has 16 hosts")):
        assert main(["validate", *INCAST, *args, "--out", str(out), "--quiet"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0]
        assert not out.exists()


# ---------------------------------------------------------------------------------------------
# export-workload


def test_export_workload_matches_the_dag_and_the_packet_paths(tmp_path: Path, capsys) -> None:
    args = ["-w", "multi_job", "--lb", "split", "--set", "lb.subflows=2", "--set", "workload.jobs.0.bytes=256KiB",
            "--set", "workload.jobs.1.bytes=64KiB", "--set", "workload.jobs.2.bytes=64KiB"]
    f = tmp_path / "dag.parquet"
    assert main(["export-workload", *args, "--out", str(f)]) == 0
    assert str(f) in capsys.readouterr().out
    rows = pq.read_table(f).to_pylist()
    sc = load_scenario(workload="multi_job", lb="split", overrides=[a for a in args[4:] if a != "--set"])
    wl = prepare(sc).workload
    assert [r["msg_id"] for r in rows] == [m.msg_id for m in wl.messages]
    for r, m in zip(rows, wl.messages):
        assert (r["src"], r["dst"], r["bytes"], r["op"], r["after_op"], r["gap_ns"]) == (
            m.src, m.dst, m.bytes, m.op, m.after_op, m.gap_ns)
        assert r["deps"] == list(m.deps)
        assert sum(r["subflow_bytes"]) == m.bytes and len(r["subflow_bytes"]) == 2
    # The paths and entropies are the packet backend's, subflow by subflow.
    flows = run(sc, tmp_path / "packet").rows("flows")
    by_msg = {r["msg_id"]: r for r in rows}
    for fl in flows:
        r = by_msg[fl["msg_id"]]
        assert r["paths"][fl["subflow"]] == fl["path"]
        assert r["entropy"][fl["subflow"]] == fl["entropy"]
        assert r["subflow_bytes"][fl["subflow"]] == fl["bytes"]

    sprayed = tmp_path / "spray.parquet"
    assert main(["export-workload", *INCAST, "--lb", "spray", "--out", str(sprayed)]) == 0
    assert all(p is None for r in pq.read_table(sprayed).to_pylist() for p in r["paths"])


def test_export_workload_errors(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "dag.parquet"
    existing.write_text("keep")
    for args, expected in (([str(existing)], "already exists"),
                           ([str(tmp_path / "dag.csv")], "expected a file name ending in .parquet")):
        assert main(["export-workload", *INCAST, "--out", *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0]
    assert existing.read_text() == "keep"
    assert main(["export-workload", *INCAST]) == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_export_workload_stopped_while_writing_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """A signal (Ctrl-C: KeyboardInterrupt) while the Parquet file is written leaves neither the file
    nor its temporary: the half-written bytes never sit under the name asked for."""
    out = tmp_path / "dag.parquet"
    write_table = pq.write_table

    def interrupted(table, where, **kwargs):
        write_table(table.slice(0, 1), where, **kwargs)  # some bytes are on disk, then the signal
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", interrupted)
    assert main(["export-workload", *INCAST, "--out", str(out)]) == 130  # 128 + SIGINT
    assert list(tmp_path.iterdir()) == []
