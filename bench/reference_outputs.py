"""Fingerprints of every output file of a reference set of runs, to prove a refactor changed nothing.

    python bench/reference_outputs.py record  [--file F]   # write the fingerprints (JSON)
    python bench/reference_outputs.py check   [--file F]   # rerun and compare, file by file

Each case is a command line of ``pktsim`` (run, validate, export-workload, study, sweep) covering both
backends, every load-balancing scheme and planner, both plan scopes, the ``roce`` profile with
go-back-N and selective repeat, and a fat-tree. A Parquet file is fingerprinted by the md5 of its
content: schema, every row, and the key/values of its metadata; JSON files (summary.json,
validation.json) by the md5 of their content. Left out: the fields that measure wall-clock time or
name the output directory, which differ between any two runs, and, in the resolved scenario that
summaries and metadata carry, the topology fields that do not apply to its kind (``k`` of a
leaf-spine, ``spines``/``leaves``/``hosts_per_leaf``/``spine_delay_ns`` of a fat-tree), which
older versions listed with their defaults and newer ones do not.

To check a change against an older version, record with the older code on the path:

    git worktree add /tmp/base <commit>
    PYTHONPATH=/tmp/base python bench/reference_outputs.py record --file /tmp/ref.json
    python bench/reference_outputs.py check --file /tmp/ref.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pktsim.cli import main

SMALL = ["--set", "workload.jobs.0.bytes=1MiB"]
PERM = ["-t", "bench", "-w", "permutation", *SMALL]

FAULTS = ("[{kind: link_down, at_ns: 20us, link: [leaf0, spine1]}, {kind: link_up, at_ns: 400us, link: [leaf0, spine1]}, "
          "{kind: link_degrade, link: [spine2, leaf3], gbps: 40}, {kind: link_loss, link: [leaf1, spine0], drop_rate: 0.01}]")
"""Every link fault kind at once (the fault cases add the routing reactions to the healthy ones)."""

CASES: dict[str, list[str]] = {
    "default": ["run"],
    "default-fluid": ["run", "--backend", "fluid"],
    "perm-ecmp": ["run", *PERM],
    "perm-spray": ["run", *PERM, "--lb", "spray"],
    "perm-spray_switch": ["run", *PERM, "--lb", "spray_switch"],
    "perm-split4": ["run", *PERM, "--lb", "split", "--set", "lb.subflows=4"],
    "perm-split_minimal": ["run", *PERM, "--lb", "split_minimal"],
    "perm-adaptive": ["run", *PERM, "--lb", "adaptive"],
    "perm-adaptive2": ["run", *PERM, "--lb", "adaptive", "--set", "lb.adaptive_choices=2"],
    "perm-flowlet": ["run", *PERM, "--lb", "flowlet"],
    "perm-spray-fluid": ["run", *PERM, "--lb", "spray", "--backend", "fluid"],
    "perm-split_minimal-fluid": ["run", *PERM, "--lb", "split_minimal", "--backend", "fluid"],
    "ring-random-edge_coloring": ["run", "-w", "ring_allreduce_random", "--lb", "planned"],
    "ring-random-greedy": ["run", "-w", "ring_allreduce_random", "--lb", "planned", "--set", "lb.planner=greedy"],
    "ring-random-annealing": ["run", "-w", "ring_allreduce_random", "--lb", "planned",
                              "--set", "lb.planner=annealing", "--set", "lb.annealing_steps=2000"],
    "ring-random-ilp": ["run", "-w", "ring_allreduce_random", "--lb", "planned", "--set", "lb.planner=ilp",
                        "--set", "workload.jobs.0.bytes=1MiB"],
    "multi-job-cluster": ["run", "-t", "bench", "-w", "multi_job", "--lb", "planned", "--set", "lb.plan_scope=cluster",
                          "--set", "workload.jobs.0.bytes=512KiB"],
    "multi-job-fluid": ["run", "-t", "bench", "-w", "multi_job", "--backend", "fluid"],
    "roce-gbn-spray": ["run", *PERM, "--lb", "spray", "--profile", "roce"],
    "roce-sr-spray": ["run", *PERM, "--lb", "spray", "--profile", "roce", "--set", "nic.transport=sr"],
    "roce-dctcp": ["run", *PERM, "--profile", "roce", "--set", "nic.cc=dctcp", "--set", "nic.transport=sr"],
    "roce-incast-lossy": ["run", "-t", "bench", "-w", "incast", "--profile", "roce", "--set", "switch.pfc.enabled=false",
                          "--set", "switch.buffer_bytes=1MiB", "--set", "workload.jobs.0.bytes=1MiB"],
    "fat-tree": ["run", "-t", "fat_tree_k4", "-w", "ring_allreduce_random", *SMALL],
    "fat-tree-fluid-spray": ["run", "-t", "fat_tree_k4", "-w", "alltoall", "--lb", "spray", "--backend", "fluid",
                             *SMALL],
    "validate": ["validate", "-w", "ring_allreduce_random", *SMALL],
    "export-workload": ["export-workload", "-w", "alltoall", "--lb", "split", "--set", "lb.subflows=2"],
    "study-quick": ["study", "--quick", "--jobs", "1"],
    "faults-sr-ecmp": ["run", *PERM, "--set", "nic.transport=sr", "--set", f"faults={FAULTS}"],
    "faults-sr-reps": ["run", *PERM, "--lb", "reps", "--set", "nic.transport=sr", "--set", f"faults={FAULTS}"],
    "faults-roce-planned": ["run", "-w", "ring_allreduce_random", "--lb", "planned", "--profile", "roce",
                            "--set", f"faults={FAULTS}"],
    "faults-fluid-spray": ["run", *PERM, "--lb", "spray", "--backend", "fluid",
                           "--set", "faults=[{kind: link_down, at_ns: 20us, link: [leaf0, spine1]}, "
                           "{kind: link_degrade, link: [spine2, leaf3], gbps: 40}]"],
}

VOLATILE = {"wall_s", "packet_hops_per_s", "out", "plan_s", "command"}
"""Keys (in JSON) and columns (in tables) that measure wall-clock time or name the output directory
(a sweep row's command names the inline base written into it)."""


NOT_FOR_KIND = {
    "leaf_spine": {"k"},
    "fat_tree": {"spines", "leaves", "hosts_per_leaf", "spine_delay_ns"},
}
"""Topology fields that do not apply to a kind (older versions dumped them with their defaults)."""


def _without(value: object) -> object:
    if isinstance(value, dict):
        drop = VOLATILE | NOT_FOR_KIND.get(value.get("kind"), set()) if "link_gbps" in value else VOLATILE
        return {k: _without(v) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_without(v) for v in value]
    return value


def _md5(value: object) -> str:
    return hashlib.md5(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(path: Path) -> str:
    if path.suffix == ".json":
        return _md5(_without(json.loads(path.read_text())))
    table = pq.read_table(path)
    table = table.drop_columns([c for c in table.column_names if c in VOLATILE])
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "pktsim.scenario" in meta:
        meta["pktsim.scenario"] = _without(json.loads(meta["pktsim.scenario"]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:  # every row, bit for bit
        writer.write_table(table.replace_schema_metadata(None))
    return _md5([meta, hashlib.md5(sink.getvalue().to_pybytes()).hexdigest()])


def run_case(name: str, argv: list[str], tmp: Path) -> dict[str, str]:
    out = tmp / name
    target = out / "dag.parquet" if argv[0] == "export-workload" else out
    if argv[0] == "export-workload":
        out.mkdir(parents=True)
    code = main([*argv, "--out", str(target)] + ([] if argv[0] == "export-workload" else ["--quiet"]))
    if code != 0:
        raise SystemExit(f"{name}: exit code {code}")
    return {
        str(p.relative_to(out)): fingerprint(p)
        for p in sorted(out.rglob("*")) if p.is_file() and p.suffix in (".parquet", ".json")
    }


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("--file", default=str(Path(__file__).with_name("reference_outputs.json")))
    ap.add_argument("--case", action="append", help="only these cases")
    args = ap.parse_args(argv)
    cases = {k: v for k, v in CASES.items() if not args.case or k in args.case}
    with tempfile.TemporaryDirectory() as tmp:
        got = {name: run_case(name, argv, Path(tmp)) for name, argv in cases.items()}
    path = Path(args.file)
    if args.mode == "record":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"{sum(len(v) for v in got.values())} files of {len(got)} cases -> {path}")
        return 0
    want = json.loads(path.read_text())
    bad = 0
    for name, files in got.items():
        ref = want.get(name, {})
        diff = sorted(k for k in set(ref) | set(files) if ref.get(k) != files.get(k))
        bad += bool(diff)
        print(f"{name:28s} {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff)} ({len(files)} files)")
    print(f"{len(got) - bad} of {len(got)} cases identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
