"""``pktsim`` (or ``python -m pktsim``): the command line.

Exit codes: 0 success, 2 bad input (one line on stderr naming file, field and problem), 130 / 143
stopped by SIGINT (Ctrl-C) / SIGTERM (``timeout``, Slurm, ``docker stop``), i.e. 128 + the signal
number, 1 anything else. Input is validated completely before the run directory is created.

Crash safety: a run (validation, sweep) directory holds ``INCOMPLETE`` from the moment it appears
until its last output (``summary.json``, ``validation.json``, the sweep's last row) has been written,
so a directory killed any way at all is marked. SIGTERM and SIGINT raise :class:`Stopped` (see
:class:`StopOnSignals`): the tables' buffered rows are flushed, the reason is written into
``INCOMPLETE`` and the process exits 128 + signum. A second signal abandons that clean-up.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pktsim import __version__
from pktsim.backends import BACKENDS, backend
from pktsim.errors import InputError
from pktsim.rundir import (MARKER, Stopped, StopOnSignals, create_marked, fresh_path, mark_incomplete, record_run,
                           write_atomic)
from pktsim.scenario import LB_SCHEMES, Scenario, blame, load_scenario, preset_names

if TYPE_CHECKING:
    from pktsim.experiment import Backend, Experiment
    from pktsim.summary import RunSummary
from pktsim.units import format_ns

class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are bad input: one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError("command line", "", message)


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer (argparse lets the InputError through: one line, exit 2)."""
    try:
        seed = int(text)
    except ValueError:
        raise InputError("--seed", "", f"must be a non-negative integer (got {text!r})") from None
    if seed < 0:
        raise InputError("--seed", "", f"must be a non-negative integer (got {seed})")
    return seed


def _scenario_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario YAML file (default: the built-in scenario)")
    p.add_argument("--topology", "-t", help="topology preset name or YAML path")
    p.add_argument("--workload", "-w", help="workload preset name or YAML path")
    p.add_argument("--lb", help=f"load-balancing scheme ({' | '.join(LB_SCHEMES)})")
    p.add_argument("--profile", help="network profile for the nic and switch sections (roce | ideal | a YAML path)")
    p.add_argument("--seed", type=_seed, help="seed of every random choice, a non-negative integer "
                   "(default: the scenario's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field by dotted path, e.g. --set topology.spines=8")


def _sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", help="the sweep's directory (default: traces/sweep-<name>-<time>); a directory "
                   "holding this sweep already resumes it")
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="local processes (default: the number of CPUs)")
    p.add_argument("--dask", metavar="local|tcp://HOST:PORT", help="run on Dask: a LocalCluster (local) or a "
                   "running scheduler whose workers have pktsim installed (pip install 'pktsim[cluster]')")
    p.add_argument("--workers", type=int, metavar="N", help="--dask local: worker processes (default 2)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip points with an ok row")
    p.add_argument("--keep-traces", action="store_true", help="keep every point's run directory under DIR/runs/<hash>/")
    p.add_argument("--skip-invalid", action="store_true", help="write invalid points as rows (status invalid) "
                   "instead of refusing the sweep")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pktsim", description="Packet-level simulation of ML training traffic.")
    parser.add_argument("--version", action="version", version=f"pktsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="simulate a scenario and write its traces")
    _scenario_options(run)
    run.add_argument("--backend", choices=BACKENDS.names(), default="packet",
                     help="packet: packet-level (default); fluid: flow-level max-min model (pktsim/fluid/)")
    run.add_argument("--out", "-o", help="run directory (default: traces/<name>-<lb>[-fluid]-seed<N>-<time>)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary table")
    run.add_argument("--fault-free", action="store_true",
                     help="with faults: first run the scenario without them (no traces), to report what they cost")

    val = sub.add_parser("validate", help="compare a flow-level model with the packet backend, message by message")
    _scenario_options(val)
    val.add_argument("--against", metavar="FILE",
                     help="a model's results (Parquet or CSV: msg_id, fct_ns or end_ns) instead of the fluid backend")
    val.add_argument("--out", "-o", help="output directory (default: traces/<name>-<lb>-seed<N>-validate-<time>)")
    val.add_argument("--worst", type=int, default=5, metavar="N",
                     help="explain the N most optimistic and N most pessimistic messages (5)")
    val.add_argument("--quiet", "-q", action="store_true", help="no progress bars and no report")

    exp = sub.add_parser("export-workload", help="write the message DAG and its paths as Parquet")
    _scenario_options(exp)
    exp.add_argument("--out", "-o", required=True, metavar="FILE.parquet", help="the Parquet file to write")

    sw = sub.add_parser("sweep", help="run a scenario over a grid of any of its fields (local processes or Dask)")
    sw.add_argument("sweep", nargs="?", metavar="SWEEP.yaml", help="the sweep file: base, backend, grid, zip "
                    "(pktsim/experiments/sweep_spec.py)")
    sw.add_argument("--preset", metavar="NAME", help="a sweep shipped with pktsim instead of a file "
                    f"({', '.join(preset_names('sweep'))})")
    _sweep_options(sw)
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of every point's base scenario (before the sweep's own axes)")

    st = sub.add_parser("study", help="the reproduction study, a preset sweep: every scheme x workload x "
                        "fabric x seed (pktsim/experiments/study.py)")
    st.add_argument("--fabric", action="append", metavar="T",
                    help="topology preset or YAML path, repeatable (default: ls16x16x16 and ls32x64x32)")
    st.add_argument("--workload", action="append", metavar="NAME",
                    help="ring_packed | ring_random | alltoall | permutation | multi_job, repeatable (default: all)")
    st.add_argument("--scheme", action="append", metavar="NAME",
                    help="ecmp | spray | splitK | split_minimal | planned:PLANNER | adaptive | flowlet, repeatable; "
                         "/cluster after planned:PLANNER or split_minimal plans all jobs together "
                         "(default: all, with split2/4/8/16 and every planner but ilp)")
    st.add_argument("--profile", help="network profile of every run (roce: PFC + DCQCN + go-back-N; "
                    "packet backend only)")
    st.add_argument("--ranks", type=int, metavar="N", help="ranks per workload (default: every host of the "
                    "fabric; multi_job shares them among its 4 jobs)")
    st.add_argument("--faults", action="append", metavar="CASE",
                    help="none | link_down | link_degrade | link_loss, repeatable: each point healthy or with one "
                         "fault on a fabric link drawn from the seed (default: none)")
    st.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N (default 3)")
    st.add_argument("--bytes", metavar="SIZE", help="per-rank buffer (permutation: per sender; default 1MiB)")
    st.add_argument("--backend", choices=("packet", "fluid", "auto"), default="auto",
                    help="auto (default): packet on fabrics up to 512 hosts, fluid above (what it cannot "
                         "model is left out there)")
    st.add_argument("--quick", action="store_true",
                    help="tiny configuration for smoke tests: fabric bench, 256KiB, 1 seed, a few schemes")
    _sweep_options(st)
    st.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a scenario field of every run, e.g. --set nic.transport=sr")

    pl = sub.add_parser("plot", help="draw a sweep's main metric against its axes (DIR/sweep.png)")
    pl.add_argument("sweep_dir", metavar="DIR", help="a sweep directory (holding sweep.parquet)")
    pl.add_argument("--metric", default="slowdown", help="the column drawn (default: slowdown)")
    pl.add_argument("--x", metavar="AXIS", help="the axis along the x axis (default: the first varied one "
                    "that is not a seed)")
    pl.add_argument("--out", "-o", metavar="FILE.png", help="the image to write (default: DIR/sweep.png)")

    dg = sub.add_parser("diagnose", help="name the components most likely at fault from a run's traces "
                        "(pktsim/analysis/diagnose.py)")
    dg.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a complete run directory (writes diagnosis.json "
                    "into it)")
    dg.add_argument("--json", action="store_true", help="print the diagnosis as JSON instead of the table")
    dg.add_argument("--no-counters", action="store_true",
                    help="leave out the ports' lost-packet counters (queues.fault_drops): behaviour only")
    dg.add_argument("--evaluate", action="store_true",
                    help="instead of RUN_DIR: inject one fault per run into small fabrics, diagnose each and report "
                         "top-1/top-3 accuracy per fault and workload and the false alarms of fault-free runs")
    dg.add_argument("--runs", type=int, default=100, metavar="N", help="--evaluate: packet fault runs (100); each "
                    "group of 5 adds a fault-free twin, a fluid twin group and fault-free runs of other schemes")
    dg.add_argument("--seed", type=_seed, default=1, help="--evaluate: seed of the draws (1)")
    dg.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="--evaluate: parallel runs (2)")
    dg.add_argument("--out", "-o", help="--evaluate: output directory (default: traces/diagnose-eval-<time>)")
    dg.add_argument("--keep-runs", action="store_true", help="--evaluate: keep every run directory under OUT/runs/")
    dg.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")
    return parser


def _resolve(args: argparse.Namespace) -> Scenario:
    return load_scenario(
        args.scenario, topology=args.topology, workload=args.workload, lb=args.lb, seed=args.seed,
        profile=args.profile, overrides=args.overrides,
    )


DEFAULT_OUT = "traces/ (the default of --out)"
"""Where a problem with the default output directory is said to come from."""


def _creatable(out: Path, flag: str = "--out") -> None:
    """``out`` can be created: its nearest existing ancestor is a directory we may write in."""
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(flag, "", f"cannot create {out}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(flag, "", f"cannot create {out}: {parent} is not writable")
            return


def _out_dir(text: str, flag: str = "--out") -> Path:
    """An output directory given by the user: new (and creatable) or an empty directory."""
    if not text.strip():
        raise InputError(flag, "", "must not be empty (give a directory, or leave the option out for the default)")
    out = Path(text)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or any(out.iterdir()):
            raise InputError(flag, "", f"{out} already exists and is not an empty directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(flag, "", f"{out} is not writable")
        return out
    _creatable(out, flag)
    return out


def _run_dir(args: argparse.Namespace, scenario: Scenario, tag: str = "") -> Path:
    """``--out`` (which must be new or an empty directory) or a fresh directory under traces/;
    ``tag`` (e.g. ``fluid``) is added to the default name."""
    if args.out is not None:
        return _out_dir(args.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = f"-{tag}" if tag else ""
    out = fresh_path(Path("traces") / f"{scenario.name}-{scenario.lb.scheme}{tag}-seed{scenario.seed}-{stamp}")
    _creatable(out, DEFAULT_OUT)
    return out


class _NoPandas(importlib.abc.MetaPathFinder):
    """pyarrow imports pandas (about 50 MiB) on its first array conversion whenever pandas is
    installed, though pktsim never hands it pandas objects. A run's own process hides pandas from
    it; pyarrow then treats pandas as absent. Only :func:`main` run as a program installs it, so
    library users, notebooks and tests calling ``main(argv)`` are unaffected."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not used by a pktsim run")
        return None


def _prepared(name: str, scenario: Scenario, fault_free: bool = False) -> tuple[Backend, Experiment]:
    """Backend ``name`` and the prepared experiment of ``scenario`` (the workload exists and the
    flows are planned, so placement and planning errors have surfaced before anything is written)."""
    from pktsim.experiment import prepare_on

    engine = backend(name)
    try:
        return engine, prepare_on(engine, scenario, fault_free)
    except InputError as e:  # name where the user wrote the value (file, preset, --set, flag)
        raise blame(e, scenario) from None


def _execute(engine: Backend, experiment: Experiment, out: Path, quiet: bool) -> RunSummary:
    """Run ``experiment`` on ``engine`` into the run directory ``out`` (see
    :func:`pktsim.rundir.record_run`), with a progress bar unless ``quiet``."""
    with _ProgressBar(quiet) as bar:
        return record_run(engine, experiment, out, bar)


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _resolve(args)
    engine, experiment = _prepared(args.backend, scenario, args.fault_free)
    out = _run_dir(args, scenario, "" if args.backend == "packet" else args.backend)
    with StopOnSignals():
        summary = _execute(engine, experiment, out, args.quiet)
    if not args.quiet:
        from pktsim.report import print_summary

        print_summary(summary)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pktsim.analysis import validate

    if args.worst < 0:
        raise InputError("--worst", "", f"must not be negative (got {args.worst})")
    scenario = _resolve(args)
    packet, experiment = _prepared("packet", scenario)
    # Every input is checked before anything is written: the scenario, then the model's file.
    model = validate.read_model_file(args.against, experiment.workload) if args.against else None
    fluid = None
    if not args.against:
        fluid = backend("fluid")
        fluid.check(scenario)
    out = _run_dir(args, scenario, "validate")
    with StopOnSignals():
        try:
            create_marked(out, "validation")
            _execute(packet, experiment, out / "packet", args.quiet)
            if fluid is not None:
                _execute(fluid, experiment, out / "fluid", args.quiet)
                model = validate.read_run(out / "fluid", "fluid backend", experiment.workload)
            table, report = validate.compare(experiment, out / "packet", model, args.worst)
            report["out"] = str(out)
            note = validate.write_outputs(out, table, report, scenario.model_dump(mode="json"))
            (out / MARKER).unlink()
        except BaseException as error:
            mark_incomplete(out, "validation", error, "the runs under it say how far they got")
            raise
    if not args.quiet:
        validate.print_report(report)
        if note:
            print(note)
        runs = "packet/ and fluid/" if fluid is not None else "packet/"
        print(f"validation: {out}/ (validation.parquet, validation.json; the runs in {runs})")
    return 0


def cmd_export_workload(args: argparse.Namespace) -> int:
    from pktsim.analysis.export import write_workload
    from pktsim.experiment import prepare

    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        raise InputError("--out", "", f"{out}: expected a file name ending in .parquet")
    if out.exists() or out.is_symlink():
        raise InputError("--out", "", f"{out} already exists")
    _creatable(out)
    scenario = _resolve(args)
    try:
        experiment = prepare(scenario)
    except InputError as e:
        raise blame(e, scenario) from None
    table = write_workload(experiment, out)  # builds the whole table (errors surface) before writing
    subflows = sum(len(x) for x in table["subflow_bytes"].to_pylist())
    print(f"{table.num_rows:,} messages ({subflows:,} subflows) of '{scenario.name}' "
          f"(lb={scenario.lb.scheme}) -> {out}")
    return 0


def _sweep_dir(args: argparse.Namespace, name: str) -> tuple[Path, bool]:
    """The sweep's directory and whether it holds this sweep's earlier rows (to resume): ``--out``
    (new, empty, or a sweep directory) or a fresh directory under traces/."""
    from pktsim.experiments.sweep import TABLE

    if args.out is None:
        if args.resume:
            raise InputError("--resume", "", "give the sweep's directory with --out")
        out = fresh_path(Path("traces") / f"sweep-{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        _creatable(out, DEFAULT_OUT)
        return out, False
    out = Path(args.out)
    if (out / TABLE).is_dir():
        return out, True
    if args.resume:
        raise InputError("--resume", "", f"{out} holds no sweep ({TABLE} is missing)")
    return _out_dir(args.out), False


def _run_sweep(args: argparse.Namespace, data: object, text: str, source: str, root: Path, name: str,
               skip_invalid: bool, notes: Sequence[str] = ()) -> int:
    """Validate every point, then run those without an ok row into the sweep's directory."""
    from pktsim.experiments import executors
    from pktsim.experiments import sweep as sweeps
    from pktsim.experiments.sweep_spec import read_sweep

    out, resuming = _sweep_dir(args, name)
    sweep = read_sweep(data, text, source, root, out, args.overrides, skip_invalid)
    existing = sweeps.SweepTable(out, sweep).existing()  # (refuses a directory holding another sweep)
    hashes = {p.hash for p in sweep.points}
    done = sum(status == "ok" and h in hashes for h, status in existing.items())
    jobs = args.jobs if args.jobs is not None else os.cpu_count() or 1
    executor = executors.open_executor(jobs, args.dask, args.workers)
    if not args.quiet:
        for note in notes:
            print(f"note: {note}")
        invalid = len(sweep.points) - len(sweep.valid)
        print(f"sweep: {len(sweep.points)} points ({', '.join(sweep.axes)})"
              f"{f', {invalid} invalid' if invalid else ''}{f', {done} done before' if resuming else ''}"
              f" on {executor.where} -> {out}/")
    t0 = time.perf_counter()
    with StopOnSignals():
        try:
            create_marked(out, "sweep")  # (again when resuming)
            write_atomic(out / "sweep.yaml", text)
            for path, base in sweep.inline_bases.items():
                write_atomic(path, _yaml_text(base))
            outcome = sweeps.run_sweep(sweep, out, executor, args.keep_traces, not args.quiet, existing)
            note = _plot_note(out)
            (out / MARKER).unlink()
        except BaseException as error:
            executor.close()
            mark_incomplete(out, "sweep", error, "its finished points are rows of sweep.parquet; run the sweep "
                            "again into this directory to resume")
            raise
    if not args.quiet:
        sweeps.print_summary(outcome.rows, list(sweep.axes))
        print(f"sweep: {outcome.ran} points run in {time.perf_counter() - t0:.1f} s"
              f"{f', {outcome.skipped} already done' if outcome.skipped else ''} -> {out}/sweep.parquet"
              f"{'' if note else ', sweep.png'}")
        if note:
            print(note)
    return 0


def _yaml_text(data: object) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _plot_note(out: Path) -> str | None:
    """Draw ``out/sweep.png``; a note instead when matplotlib is missing or nothing can be drawn."""
    from pktsim.analysis.sweep_plot import plot_sweep

    try:
        plot_sweep(out)
    except ImportError:
        return "sweep.png skipped: matplotlib is not installed (pip install 'pktsim[plots]')"
    except InputError as e:
        return f"sweep.png skipped: {e.problem}"
    return None


def cmd_sweep(args: argparse.Namespace) -> int:
    from pktsim.experiments.sweep_spec import sweep_source

    data, text, source, root = sweep_source(args.sweep, args.preset)
    name = args.preset or Path(args.sweep).stem
    return _run_sweep(args, data, text, source, root, name, args.skip_invalid)


def cmd_study(args: argparse.Namespace) -> int:
    """The study's options -> a sweep (the presets reproduction[-quick] when none is given)."""
    from pktsim.experiments import study

    options = study.study_options(args.quick)
    given = {
        "fabrics": args.fabric, "workloads": args.workload, "schemes": args.scheme, "seeds": args.seeds,
        "nbytes": study.parse_size(args.bytes) if args.bytes else None, "profile": args.profile,
        "ranks": args.ranks, "faults": args.faults,
    }
    options.update({k: v for k, v in given.items() if v is not None})
    data, notes = study.sweep_data(**options, backend_name=args.backend, overrides=args.overrides)
    return _run_sweep(args, data, _yaml_text(data), "pktsim study", Path.cwd(), "study", True, notes)


def cmd_plot(args: argparse.Namespace) -> int:
    from pktsim.analysis.sweep_plot import plot_sweep

    try:
        path = plot_sweep(Path(args.sweep_dir), args.metric, args.x, Path(args.out) if args.out else None)
    except ImportError:
        raise InputError("plot", "", "needs matplotlib: pip install 'pktsim[plots]'") from None
    print(f"plot: {path}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from pktsim.analysis import diagnose
    from pktsim.experiments import diagnosis_evaluation

    counters = not args.no_counters
    if not args.evaluate:
        if args.run_dir is None:
            raise InputError("diagnose", "", "give a run directory (RUN_DIR) or --evaluate")
        report = diagnose.diagnose(Path(args.run_dir), counters)
        path = diagnose.write_diagnosis(Path(args.run_dir), report)
        if args.json:
            print(json.dumps(report, indent=2, sort_keys=True))
        elif not args.quiet:
            diagnose.print_diagnosis(report)
            print(f"diagnosis: {path}")
        return 0
    if args.run_dir is not None:
        raise InputError("diagnose", "", "give either RUN_DIR or --evaluate, not both")
    if args.runs < 1:
        raise InputError("--runs", "", f"must be at least 1 (got {args.runs})")
    if args.jobs < 1:
        raise InputError("--jobs", "", f"must be at least 1 (got {args.jobs})")
    if args.out is not None:
        out = _out_dir(args.out)
    else:
        out = fresh_path(Path("traces") / f"diagnose-eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        _creatable(out, DEFAULT_OUT)
    command = " ".join(["pktsim diagnose --evaluate", f"--runs {args.runs}", f"--seed {args.seed}",
                        f"--jobs {args.jobs}", *(["--no-counters"] if not counters else [])])
    with StopOnSignals():
        try:
            create_marked(out, "evaluation")
            (out / "runs").mkdir()
            result = diagnosis_evaluation.evaluate(args.runs, args.seed, args.jobs, counters, keep=args.keep_runs,
                                                   progress=not args.quiet, work=str(out / "runs"))
            result["command"] = command
            write_atomic(out / "evaluation.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
            if not args.keep_runs:
                (out / "runs").rmdir()
            (out / MARKER).unlink()
        except BaseException as error:
            mark_incomplete(out, "evaluation", error, "the runs finished before it stopped were not kept")
            raise
    if args.json:
        print(json.dumps(result["tables"], indent=2, sort_keys=True))
    elif not args.quiet:
        diagnosis_evaluation.print_evaluation(result, command)
        print(f"evaluation: {out}/evaluation.json")
    return 0


class _ProgressBar:
    """A rich progress bar over the packets delivered, shown only when the run lasts over ~2 s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        return self.update

    def update(self, p) -> None:
        if self.quiet:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 2.0:
                return
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]{task.fields[stage]}"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[msgs]} messages done, {task.fields[sim]} simulated"),
                TimeElapsedColumn(), transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("run", total=p.packets_total, msgs="", sim="", stage="")
        self.bar.update(
            self.task, completed=p.packets_delivered, msgs=f"{p.messages_done:,}/{p.messages_total:,}",
            sim=format_ns(p.sim_time_ns), stage=p.stage,
        )

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "export-workload": cmd_export_workload, "sweep": cmd_sweep,
            "study": cmd_study, "plot": cmd_plot, "diagnose": cmd_diagnose}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as e:
        print(f"pktsim: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        where = f"; {e.out} is incomplete (see {e.out / MARKER})" if e.out is not None else ""
        print(f"pktsim: stopped by {e.signame}{where}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("pktsim: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
