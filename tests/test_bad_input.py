"""Bad input, fuzzed: every case is one line naming where the value was written (the scenario file,
``--set KEY``, a flag, a preset), the field and the problem; exit code 2; no traceback; no run
directory; and no hang (each is refused before anything is built).

The table is the regression suite of issue 11: add a row for every new way to break the loader.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pktsim.cli import main
from pktsim.errors import InputError, TooLarge
from pktsim.experiment import prepare
from pktsim.scenario import (
    DcqcnSpec,
    DctcpSpec,
    EcnSpec,
    NicSpec,
    PfcSpec,
    Scenario,
    SwitchSpec,
    blame,
    load_scenario,
    projected_work,
    provenance,
)
from pktsim.scenario import limits

REPO = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 5.0
"""Not a speed test: a bad input that takes this long is hanging (they take milliseconds)."""

BIG = "1" + "0" * 400  # 10**400
DEEP = "[" * 5000 + "]" * 5000
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))

# (id, command line after "run", files to write {name: text or bytes}, source, field, fragment of the problem)
# A field of None is not checked (the problem is about the file, or the field is the option's own).
CASES = [
    # infinite or extreme numbers
    ("gbps-inf", ["--set", "topology.link_gbps=.inf"], {}, "--set topology.link_gbps", "topology.link_gbps",
     "expected a finite rate"),
    ("gbps-tiny", ["--set", "topology.link_gbps=1e-300"], {}, "--set topology.link_gbps", "topology.link_gbps",
     "must be at least 1 Mbit/s"),
    ("gbps-huge", ["--set", "topology.host_link_gbps=1e9"], {}, "--set topology.host_link_gbps",
     "topology.host_link_gbps", "must be at most 10 Tbit/s"),
    ("delay-1e30", ["s.yaml"], {"s.yaml": "topology: {link_delay_ns: 1e30}\n"}, "s.yaml", "topology.link_delay_ns",
     "must be at most 1 s"),
    ("bytes-inf-file", ["s.yaml"], {"s.yaml": "workload: {jobs: [{bytes: .inf}]}\n"}, "s.yaml",
     "workload.jobs[0].bytes", "finite"),
    ("bytes-inf-set", ["--set", "workload.jobs.0.bytes=.inf"], {}, "--set workload.jobs.0.bytes",
     "workload.jobs[0].bytes", "finite"),
    ("bytes-1e400", ["--set", "workload.jobs.0.bytes=1e400MiB"], {}, "--set workload.jobs.0.bytes",
     "workload.jobs[0].bytes", "out of range"),
    ("time-nan", ["--set", "nic.rto_ns=.nan"], {}, "--set nic.rto_ns", "nic.rto_ns", "finite"),
    ("float-nan", ["--set", "switch.ecn={pmax: .nan}"], {}, "--set switch.ecn", "switch.ecn.pmax", "finite"),
    # sizes that used to hang
    ("spines-1e7", ["--set", "topology.spines=10000000"], {}, "--set topology.spines", "topology.spines",
     "less than or equal to 100000"),
    ("leaves-1e7", ["--set", "topology.leaves=10000000"], {}, "--set topology.leaves", "topology.leaves",
     "less than or equal to 100000"),
    ("fat-tree-k-1e9", ["s.yaml"], {"s.yaml": "topology: {kind: fat_tree, k: 1000000000}\n"}, "s.yaml",
     "topology.k", "less than or equal to 1024"),
    ("spines-10**400", ["s.yaml"], {"s.yaml": f"topology: {{spines: {BIG}}}\n"}, "s.yaml", "topology.spines",
     "less than or equal to 100000"),
    ("bytes-2**70", ["--set", "workload.jobs.0.bytes=1180591620717411303424"], {}, "--set workload.jobs.0.bytes",
     "workload.jobs[0].bytes", "must be at most 1 PiB"),
    ("hosts", ["--set", "topology.leaves=1000", "--set", "topology.hosts_per_leaf=1000"], {},
     "--set topology.leaves", "topology.leaves", "1,000,000 hosts, above the limit of 100,000"),
    ("fat-tree-hosts", ["-t", "fat_tree_k4", "--set", "topology.k=100"], {}, "--set topology.k", "topology.k",
     "250,000 hosts"),
    ("switch-ports", ["--set", "topology.spines=100000", "--set", "topology.leaves=8"], {},
     "--set topology.spines", "topology.spines", "switch ports, above the limit"),
    ("route-work", ["--set", "topology.leaves=2000", "--set", "topology.spines=20"], {}, "--set topology.leaves",
     "topology.leaves", "ToR x fabric-port pairs to route"),
    ("packets", ["--set", "workload.jobs.0.bytes=1TiB"], {}, "--set workload.jobs.0.bytes",
     "workload.jobs[0].bytes", "packets, above the limit of 1e+09"),
    ("messages", ["--set", "workload.jobs.0.iterations=1000000"], {}, "--set workload.jobs.0.iterations",
     "workload.jobs[0].iterations", "messages, above the limit of 1e+07"),
    ("subflows", ["--lb", "split", "--set", "lb.subflows=1024", "--set", "workload.jobs.0.bytes=1GiB",
                  "--set", "workload.jobs.0.iterations=2000"], {}, "--set workload.jobs.0.iterations",
     "workload.jobs[0].iterations", "packets"),
    ("schedule", ["--set", "workload.jobs.0.iterations=3", "--set", "workload.jobs.0.compute_gap_ns=1000s"], {},
     "--set workload.jobs.0.compute_gap_ns", "workload.jobs[0].compute_gap_ns", "of simulated time"),
    ("queue-interval", ["--set", "traces.queue_interval_ns=1"], {}, "--set traces.queue_interval_ns",
     "traces.queue_interval_ns", "at least 100 ns"),
    # files that are not YAML we can read
    ("not-utf8", ["s.yaml"], {"s.yaml": b"\xff\n"}, "s.yaml", None, "not UTF-8 text (byte 0xff on line 1)"),
    ("nested-5000", ["s.yaml"], {"s.yaml": f"name: {DEEP}\n"}, "s.yaml", None, "nested too deeply"),
    ("nested-100", ["s.yaml"], {"s.yaml": f"name: {'[' * 100}{']' * 100}\n"}, "s.yaml", None, "nested too deeply"),
    ("nested-set", ["--set", f"name={DEEP}"], {}, "--set name", None, "nested too deeply"),
    ("laughs", ["s.yaml"], {"s.yaml": LAUGHS}, "s.yaml", None, "too large"),
    ("self-alias", ["s.yaml"], {"s.yaml": "name: &a [*a]\n"}, "s.yaml", None, "refers to itself"),
    ("int-5000-digits", ["s.yaml"], {"s.yaml": f"seed: {'9' * 5000}\n"}, "s.yaml", None, "digits"),
    ("duplicate-key", ["s.yaml"], {"s.yaml": "seed: 1\nseed: 2\n"}, "s.yaml", None,
     "line 2: duplicate key 'seed' (first at line 1)"),
    ("duplicate-nested", ["s.yaml"], {"s.yaml": "nic:\n  mtu_bytes: 4096\n  mtu_bytes: 9000\n"}, "s.yaml", None,
     "line 3: duplicate key 'mtu_bytes'"),
    ("duplicate-set", ["--set", "nic={mtu_bytes: 1, mtu_bytes: 2}"], {}, "--set nic", None, "duplicate key"),
    ("directory", ["d"], {"d/x": ""}, "d", None, "cannot read scenario"),
    # seed
    ("seed-negative-file", ["s.yaml", "-w", "ring_allreduce_random"], {"s.yaml": "seed: -1\n"}, "s.yaml", "seed",
     "greater than or equal to 0"),
    ("seed-negative-set", ["-w", "ring_allreduce_random", "--set", "seed=-1"], {}, "--set seed", "seed",
     "greater than or equal to 0"),
    ("seed-bool", ["--set", "seed=true"], {}, "--set seed", "seed", "valid integer"),
    ("seed-2**64", ["--set", "seed=18446744073709551616"], {}, "--set seed", "seed", "less than or equal to"),
    # loose validation
    ("spines-true", ["--set", "topology.spines=true"], {}, "--set topology.spines", "topology.spines",
     "valid integer"),
    ("ranks-float", ["--set", "workload.jobs.0.ranks=4.0"], {}, "--set workload.jobs.0.ranks",
     "workload.jobs[0].ranks", "valid integer"),
    ("pfc-enabled-1", ["--set", "switch.pfc.enabled=1"], {}, "--set switch.pfc.enabled", "switch.pfc.enabled",
     "valid boolean"),
    ("mtu-1e30", ["s.yaml"], {"s.yaml": "nic: {mtu_bytes: 1e30}\n"}, "s.yaml", "nic.mtu_bytes",
     "must be at most 64 KiB"),
    ("pfc-zero", ["s.yaml"], {"s.yaml": "switch: {pfc: {enabled: true, xoff_bytes: 0, xon_bytes: 0}}\n"}, "s.yaml",
     "switch.pfc.xoff_bytes", "less than one packet"),
    ("buffer-below-mtu", ["--set", "nic.transport=gbn", "--set", "switch.buffer_bytes=1000"], {},
     "--set switch.buffer_bytes", "switch.buffer_bytes", "cannot hold one packet"),
    ("dt-alpha-tiny", ["--set", "nic.transport=gbn", "--set", "switch.buffer_bytes=1MiB",
                       "--set", "switch.dt_alpha=0.000001"], {}, "--set switch.dt_alpha", "switch.dt_alpha",
     "an empty queue could not admit a packet"),
    ("name-slash", ["--set", "name=../../x"], {}, "--set name", "name", "must not contain '/'"),
    ("job-name-empty", ["--set", "workload.jobs.0.name="], {}, "--set workload.jobs.0.name",
     "workload.jobs[0].name", "valid string"),
    # errors blamed on the right place
    ("profile-then-nic", ["s.yaml"], {"s.yaml": "profile: ideal\nnic: {mtu_bytes: 0}\n"}, "s.yaml", "nic.mtu_bytes",
     "must be at least 1 byte"),
    ("profile-flag-then-nic", ["--profile", "roce", "s.yaml"], {"s.yaml": "nic: {header_bytes: 5000}\n"}, "s.yaml",
     "nic", "header_bytes (5000) must be smaller than mtu_bytes (4096)"),
    ("profile-then-buffer", ["s.yaml"], {"s.yaml": "profile: roce\nswitch: {buffer_bytes: 1MiB}\n"}, "s.yaml",
     "switch.pfc.xoff_bytes", "PFC thresholds above the buffer"),
    ("bytes-zero", ["--set", "workload.jobs.0.bytes=0"], {}, "--set workload.jobs.0.bytes", "workload.jobs[0].bytes",
     "must be at least 1 byte"),
    ("set-empty-key", ["--set", "=1"], {}, "--set", "=1", "no field before '='"),
    ("set-empty-part", ["--set", "topology..spines=1"], {}, "--set", "topology..spines=1", "not a field path"),
    ("lb-flag", ["--lb", "planned:greedy"], {}, "--lb", "lb.scheme", "--lb planned --set lb.planner=greedy"),
    ("lb-typo", ["--lb", "sprya"], {}, "--lb", "lb.scheme", "did you mean 'spray'?"),
    ("topology-number", ["--set", "topology=5"], {}, "--set topology", "topology",
     "expected a preset name or a mapping of topology fields"),
    ("topology-nosuch", ["--set", "topology=nosuch"], {}, "--set topology", "topology", "no preset or file named"),
    ("nic-number", ["--set", "nic=5"], {}, "--set nic", "nic", "expected a mapping of fields (got 5)"),
    ("unknown-field", ["--set", "lb.subflow=2"], {}, "--set lb.subflow", "lb.subflow",
     "unknown field (did you mean `lb.subflows`?)"),
    ("unknown-job-field", ["--set", "workload.jobs.0.bytse=1"], {}, "--set workload.jobs.0.bytse",
     "workload.jobs[0].bytse", "did you mean `workload.jobs[0].bytes`?"),
    ("unknown-section", ["s.yaml"], {"s.yaml": "topolgy: {spines: 2}\n"}, "s.yaml", "topolgy",
     "did you mean `topology`?"),
    ("ranks-after-leaves", ["--set", "topology.leaves=2"], {}, "--set topology.leaves", "workload.jobs[0].ranks",
     "16 ranks but the topology has 8 hosts"),
    ("planned-fat-tree", ["-t", "fat_tree_k4", "--lb", "planned"], {}, "--lb", "lb.scheme", "leaf_spine"),
    # a field the scheme does not read is refused, not ignored
    ("subflows-ecmp", ["--set", "lb.subflows=4"], {}, "--set lb.subflows", "lb.subflows",
     "only used with lb.scheme: split or planned (scheme is ecmp)"),
    ("choices-flowlet", ["s.yaml"], {"s.yaml": "lb: {scheme: flowlet, adaptive_choices: 2}\n"}, "s.yaml",
     "lb.adaptive_choices", "only used with lb.scheme: adaptive (scheme is flowlet)"),
    ("gap-spray", ["--lb", "spray", "--set", "lb.flowlet_gap_ns=5us"], {}, "--lb", "lb.flowlet_gap_ns",
     "only used with lb.scheme: flowlet (scheme is spray)"),
    ("preset-file", ["-t", "bad"], {"topologies/bad.yaml": "spines: 4\nleaves: -2\n"}, "topologies/bad.yaml",
     "topology.leaves", "greater than or equal to 1"),
    ("preset-in-file", ["s.yaml"], {"s.yaml": "topology: bad\n", "topologies/bad.yaml": "link_gbps: 5 parsecs\n"},
     "topologies/bad.yaml", "topology.link_gbps", "cannot read '5 parsecs' as a rate"),
    ("profile-file", ["--profile", "p.yaml"], {"p.yaml": "nic: {ack_every: 0}\n"}, "p.yaml", "nic.ack_every",
     "greater than or equal to 1"),
    # rates take units, and say which
    ("rate-unit", ["--set", "topology.link_gbps=2GB/s"], {}, "--set topology.link_gbps", "topology.link_gbps",
     "400Gbps"),
]


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _expected_prefix(source: str, field: str | None) -> str:
    return f"pktsim: error: {source}: " + (f"{field}: " if field else "")


@pytest.mark.parametrize("args,files,source,field,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_source_and_field(tmp_path: Path, monkeypatch, capsys, args, files, source,
                                                       field, fragment) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, files)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = main(["run", *args, "--out", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(_expected_prefix(source, field)), lines[0]
    assert fragment in lines[0], lines[0]
    if field is not None:  # the message names the field once, where the user would look for it
        assert "TopologySpec" not in lines[0] and "LeafSpineSpec" not in lines[0]
    assert not out.exists() and not (tmp_path / "traces").exists()
    assert elapsed < HANG_GUARD_S, f"{elapsed:.1f} s"


SUBPROCESS_CASES = ["spines-1e7", "bytes-2**70", "not-utf8", "nested-5000", "delay-1e30", "seed-negative-file",
                    "profile-then-nic", "route-work"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_from_the_shell_has_no_traceback_and_no_run_dir(tmp_path: Path, case: str) -> None:
    _, args, files, source, field, fragment = next(c for c in CASES if c[0] == case)
    _write(tmp_path, files)
    res = subprocess.run([sys.executable, "-m", "pktsim", "run", *args, "--out", "out"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(_expected_prefix(source, field)) and fragment in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "traces").exists()


# ---------------------------------------------------------------------------------------------
# Blame: every nic and switch field, under either profile, is blamed on the file that wrote it


def _leaf_fields(model: type, prefix: tuple) -> list[tuple]:
    out = []
    for name, info in model.model_fields.items():
        nested = [a for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
                  if isinstance(a, type) and a in (DcqcnSpec, DctcpSpec, PfcSpec, EcnSpec)]
        if nested:
            out += _leaf_fields(nested[0], (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


NIC_SWITCH_FIELDS = _leaf_fields(NicSpec, ("nic",)) + _leaf_fields(SwitchSpec, ("switch",))


def _nested_yaml(loc: tuple, value: str) -> str:
    text = value
    for part in reversed(loc):
        text = f"{{{part}: {text}}}"
    return text[1:-1]  # the outermost braces: a top-level mapping


@pytest.mark.parametrize("profile", ["ideal", "roce"])
def test_nic_and_switch_errors_name_the_file_not_the_profile(tmp_path: Path, profile: str) -> None:
    assert len(NIC_SWITCH_FIELDS) >= 30
    path = tmp_path / "s.yaml"
    for loc in NIC_SWITCH_FIELDS:
        path.write_text(f"profile: {profile}\n{_nested_yaml(loc, '[not, a, value]')}\n")
        with pytest.raises(InputError) as e:
            load_scenario(str(path))
        assert (e.value.source, e.value.field) == (str(path), ".".join(loc)), str(e.value)
        # the same value from the command line is blamed on --set
        key = ".".join(loc)
        with pytest.raises(InputError) as e:
            load_scenario(profile=profile, overrides=[f"{key}=[not, a, value]"])
        assert (e.value.source, e.value.field) == (f"--set {key}", key), str(e.value)


def test_a_profile_value_is_blamed_on_the_profile(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text("switch: {pfc: {enabled: true, xoff_bytes: 1000, xon_bytes: 500}}\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"profile: {prof}\nname: x\n")
    with pytest.raises(InputError) as e:
        load_scenario(str(scenario))
    assert (e.value.source, e.value.field) == (str(prof), "switch.pfc.xoff_bytes")


def test_errors_found_after_loading_are_blamed_where_the_field_was_written(tmp_path: Path) -> None:
    """Placement and planning errors surface in prepare(); blame() names the --set or file."""
    cases = [
        (dict(overrides=["workload.jobs.0.ranks=2", "workload.jobs.0.placement=[h0, h99]"]),
         "--set workload.jobs.0.placement"),
        (dict(path=str(tmp_path / "s.yaml")), str(tmp_path / "s.yaml")),
        (dict(workload=str(tmp_path / "w.yaml")), str(tmp_path / "w.yaml")),
    ]
    (tmp_path / "s.yaml").write_text("workload: {jobs: [{ranks: 2, placement: [h0, h77]}]}\n")
    (tmp_path / "w.yaml").write_text("jobs: [{ranks: 2, placement: [h3, h3]}]\n")
    for kwargs, source in cases:
        sc = load_scenario(**kwargs)
        with pytest.raises(InputError) as e:
            prepare(sc)
        assert e.value.source == "workload"  # the generator does not know where the field was written
        blamed = blame(e.value, sc)
        assert (blamed.source, blamed.field, blamed.problem) == (source, e.value.field, e.value.problem)
        assert str(blamed).startswith(f"{source}: workload.jobs[0].placement: host h")
    # the subclass survives (the study reports TooLarge as "too large"); the field's own path as
    # the source is understood too
    sc = load_scenario(lb="planned", overrides=["lb.planner=ilp"])
    too_large = blame(TooLarge("lb.planner", "ilp", "instance too large for ilp (9 flows x 2 spines)"), sc)
    assert isinstance(too_large, TooLarge)
    assert str(too_large) == "--set lb.planner: lb.planner: instance too large for ilp (9 flows x 2 spines)"
    # errors from options, and scenarios not built by the loader, are left as they are
    flag = InputError("--backend fluid", "lb.scheme", "cannot")
    assert blame(flag, sc) is flag
    assert blame(e.value, Scenario()) is e.value


def test_the_command_line_blames_errors_found_after_loading(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--set", "workload.jobs.0.ranks=2", "--set", "workload.jobs.0.placement=[h0, h99]",
               "--out", "out", "--quiet"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == ("pktsim: error: --set workload.jobs.0.placement: "
                                               "workload.jobs[0].placement: host h99 does not exist")


def test_provenance_records_each_source() -> None:
    sc = load_scenario(topology="bench", profile="roce", lb="spray", seed=3,
                       overrides=["nic.transport=sr", "workload.jobs.0.bytes=1MiB"])
    prov = provenance(sc)
    assert prov.source_of(("lb", "scheme")) == "--lb" and prov.source_of(("seed",)) == "--seed"
    assert prov.source_of(("nic", "transport")) == "--set nic.transport"
    assert prov.source_of(("nic", "cc")).endswith("roce.yaml")
    assert prov.source_of(("topology", "spines")).endswith("bench.yaml")
    assert prov.source_of(("workload", "jobs", 0, "bytes")) == "--set workload.jobs.0.bytes"
    assert prov.source_of(("workload", "jobs", 0, "ranks")).endswith("ring_allreduce.yaml")
    assert prov.source_of(("traces", "part_rows")) == "default scenario"
    # provenance is not part of the scenario's value
    assert sc == Scenario.model_validate(sc.model_dump()) and provenance(Scenario.model_validate(sc.model_dump())) is None


# ---------------------------------------------------------------------------------------------
# What used to be loose is now a rule, and what is now allowed


def test_empty_scenario_file_is_the_default_scenario(tmp_path: Path) -> None:
    default = load_scenario()
    for text in ("", "# nothing here\n", "---\n"):
        path = tmp_path / "s.yaml"
        path.write_text(text)
        assert load_scenario(str(path)).model_dump() == default.model_dump()
    # a file that leaves topology and workload out gets the default presets, as no file does
    path.write_text("seed: 3\n")
    sc = load_scenario(str(path))
    assert sc.seed == 3 and sc.topology == default.topology and sc.workload == default.workload


def test_set_topology_to_a_preset_name() -> None:
    assert load_scenario(overrides=["topology=bench"]).topology == load_scenario(topology="bench").topology
    sc = load_scenario(overrides=["topology=bench", "topology.spines=2"])
    assert (sc.topology.spines, sc.topology.leaves) == (2, 8)


@pytest.mark.parametrize("text,gbps", [("200G", 200.0), ("400Gbps", 400.0), ("1.6T", 1600.0), ("100Mbps", 0.1),
                                       ("25 Gb/s", 25.0), ("800", 800.0), ("2.5e+1G", 25.0)])
def test_rates_take_units(text: str, gbps: float) -> None:
    sc = load_scenario(overrides=[f"topology.link_gbps={text}", f"topology.host_link_gbps={text}"])
    assert sc.topology.link_gbps == sc.topology.host_gbps == gbps
    assert isinstance(sc.topology.link_gbps, float)


def test_rates_dump_as_before() -> None:
    """Numbers stay floats of Gbit/s, so a resolved scenario dumps the same values as before units."""
    dumped = load_scenario(overrides=["topology.link_gbps=400G"]).model_dump(mode="json")["topology"]
    assert dumped["link_gbps"] == 400.0 == load_scenario(overrides=["topology.link_gbps=400"]).topology.link_gbps
    assert load_scenario().model_dump(mode="json")["topology"]["link_gbps"] == 100.0


def test_projected_work_is_exact_in_messages_and_bounds_the_packets() -> None:
    from pktsim.workload.collectives import COLLECTIVES

    assert set(limits.COLLECTIVE_WORK) == set(COLLECTIVES.names())  # a new collective needs its closed form
    for collective in ("ring_allreduce", "reduce_scatter", "allgather", "alltoall", "alltoall_allreduce",
                       "permutation", "incast"):
        for lb in ("ecmp", "split", "split_minimal"):
            for ranks, nbytes, channels, slices in ((2, 1000, 1, 1), (5, 7, 4, 3), (7, 100_003, 8, 3), (4, 3, 4, 1)):
                if nbytes < ranks and collective in ("ring_allreduce", "reduce_scatter", "allgather"):
                    continue
                job = f"{{collective: {collective}, ranks: {ranks}, bytes: {nbytes}, channels: {channels}, " \
                      f"slices: {slices}, iterations: 2}}"
                sc = load_scenario(lb=lb, overrides=[f"workload.jobs=[{job}]"]
                                   + (["lb.subflows=3"] if lb == "split" else []))
                work, experiment = projected_work(sc), prepare(sc)
                assert work.messages == len(experiment.workload.messages), (collective, lb, ranks, nbytes)
                # an upper estimate: one partial packet per subflow, split_minimal cut over every spine
                assert experiment.packets_total <= work.packets <= 6 * experiment.packets_total + 8
    sc = load_scenario(topology="ls32x64x32", workload="ring_allreduce_64jobs")
    work = projected_work(sc)
    assert (work.hosts, work.switch_ports) == (2048, 6144) and work.messages < limits.MAX_MESSAGES


def test_a_fixed_reordering_window_with_the_adaptive_one_is_refused(capsys) -> None:
    """The issue's old workaround (``nic.reorder_window_ns=200us``) would silently do nothing."""
    assert main(["run", "--set", "nic.transport=sr", "--set", "nic.reorder_window_ns=200us"]) == 2
    err = capsys.readouterr().err
    assert "--set nic.reorder_window_ns: nic.reorder_window_ns:" in err and "reorder_adaptive: false" in err
