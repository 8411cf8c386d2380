"""``python -m pktsim study``: the reproduction study of issue 5, part 5.

Every load-balancing scheme on every workload on every fabric, over several seeds, side by side:
one Parquet table (one row per run), a plot and a summary table of mean slowdowns.

Workloads are built on the fly for the fabric (not read from presets), every job over all of the
fabric's hosts unless said otherwise; ``bytes`` is the per-rank buffer of the collectives and the
bytes per sender of the permutation:

- ``ring_packed``: one ring AllReduce, packed placement (ring neighbours mostly share a leaf; the
  leaf-crossing ones use disjoint paths).
- ``ring_random``: one ring AllReduce, random placement (ECMP collisions between neighbours).
- ``alltoall``: one all-to-all (each rank sends bytes / ranks to every other rank).
- ``permutation``: rank r sends ``bytes`` to rank r + hosts_per_leaf (every flow crosses leaves,
  every leaf sends hosts_per_leaf flows to one other leaf: the worst case for ECMP).
- ``multi_job``: 4 concurrent ring AllReduce jobs of hosts / 4 ranks each, random placement.

Per run: ``cct_ns`` and ``ideal_ns`` are the job's mean collective completion time and its ideal;
for several jobs (``multi_job``) they are those of the job with the largest slowdown (the worst
job, which gates a synchronous training step), and ``slowdown = cct_ns / ideal_ns``.
``max_congestion`` is the largest over jobs and ``mean_congestion`` the mean of the jobs' means
(see the ``congestion`` table in traces/README.md). With ``--profile roce`` (or any profile
that needs the transport model: packet backend only) ``retransmits``, ``spurious_retransmits``,
``drops`` (packets) and ``paused_ns`` (PFC pause time summed over ports) say why a scheme lost;
they are null on the ideal fabric.

The faults axis (``--faults``, :data:`FAULT_CASES`) runs each point healthy (``none``) or with one
fault on a fabric link drawn from the run's seed (every scheme of a seed faces the same link):
``link_down`` at 30% of the scheme's own fault-free run (which runs first: ``fault_free_ns`` is
its CCT), ``link_degrade`` to half rate from the start, ``link_loss`` of 1% from the start. The
row says which link (``fault_target``), when (``fault_at_ns``) and how many packets the fault
destroyed (``fault_drops``).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pktsim.backends import BACKENDS, backend
from pktsim.errors import InputError, TooLarge
from pktsim.experiment import prepare_on
from pktsim.planning.planners import PLANNERS
from pktsim.scenario import LB_SCHEMES, Scenario, load_scenario, preset_names
from pktsim.traces import FILE_SCHEMAS
from pktsim.units import format_bytes, parse_bytes

FABRICS = ("ls16x16x16", "ls32x64x32")
WORKLOADS = ("ring_packed", "ring_random", "alltoall", "permutation", "multi_job")
SCHEMES = (
    "ecmp", "spray", "split2", "split4", "split8", "split16", "split_minimal",
    *(f"planned:{p}" for p in PLANNERS), "planned:edge_coloring/cluster", "adaptive", "flowlet",
)
DEFAULT_SCHEMES = tuple(s for s in SCHEMES if s != "planned:ilp")
"""The default comparison: the ILP solves one program per phase (510 per 256-rank ring) and is
asked for by name (``--scheme planned:ilp``) on instances small enough to matter."""
BACKEND_CHOICES = (*BACKENDS.names(), "auto")
AUTO_FLUID_HOSTS = 512
"""``--backend auto``: fabrics with more hosts than this run on the fluid backend."""
DEFAULT_BYTES = 2**20
DEFAULT_SEEDS = 3
MULTI_JOBS = 4

QUICK_FABRICS = ("bench",)
QUICK_BYTES = 256 * 2**10
QUICK_SEEDS = 1
QUICK_SCHEMES = ("ecmp", "spray", "split4", "split_minimal", "planned:edge_coloring", "adaptive")

FAULT_CASES: dict[str, dict | None] = {
    "none": None,
    "link_down": {"kinds": ["link_down"], "at": [0.3, 0.3]},
    "link_degrade": {"kinds": ["link_degrade"], "at": [0, 0], "degrade_to": 0.5},
    "link_loss": {"kinds": ["link_loss"], "at": [0, 0], "drop_rate": 0.01},
}
"""``--faults`` names -> the random generator's fields (one fabric link, drawn from the run's seed)."""

SCHEMA = FILE_SCHEMAS["study"]
"""``study.parquet``: one row per run."""
COLUMNS = tuple(SCHEMA.names)


@dataclass(frozen=True)
class RunSpec:
    """One run of the study: enough to rebuild its scenario in a worker process."""

    fabric: str
    workload: str
    scheme: str
    seed: int
    backend: str  # packet | fluid | skip
    overrides: tuple[str, ...] = field(default=())
    profile: str | None = None
    ranks: int | None = None
    faults: str = "none"


def fault_overrides(case: str, seed: int) -> list[str]:
    """A ``--faults`` case -> ``--set`` overrides (none for ``none``)."""
    if case not in FAULT_CASES:
        raise InputError("--faults", "", f"unknown fault case {case!r} (known: {', '.join(FAULT_CASES)})")
    spec = FAULT_CASES[case]
    if spec is None:
        return []
    return [f"faults={json.dumps({'random': {'count': 1, 'tier': 'fabric', 'seed': seed, **spec}})}"]


def scheme_overrides(name: str) -> list[str]:
    """A study scheme name (``ecmp``, ``split4``, ``planned:ilp``, ...) -> ``--set`` overrides.
    ``/cluster`` after ``planned:PLANNER`` or ``split_minimal`` plans all jobs together
    (``lb.plan_scope=cluster``)."""
    base, sep, scope = name.partition("/")
    if sep:
        if scope != "cluster" or not (base == "split_minimal" or base.startswith("planned:")):
            raise InputError("--scheme", "", f"unknown scheme {name!r} (/cluster follows planned:PLANNER "
                             f"or split_minimal)")
        return [*scheme_overrides(base), "lb.plan_scope=cluster"]
    if name.startswith("planned:"):
        planner = name.split(":", 1)[1]
        if planner not in PLANNERS:
            raise InputError("--scheme", "", f"unknown planner in {name!r} (planners: {', '.join(PLANNERS)})")
        return ["lb.scheme=planned", f"lb.planner={planner}"]
    if name.startswith("split") and name[5:].isdigit():
        k = int(name[5:])
        if k < 1:
            raise InputError("--scheme", "", f"{name!r}: subflows must be at least 1")
        return ["lb.scheme=split", f"lb.subflows={k}"]
    if name in LB_SCHEMES and name not in ("split", "planned"):
        return [f"lb.scheme={name}"]
    known = ", ".join(SCHEMES)
    raise InputError("--scheme", "", f"unknown scheme {name!r} (known: {known}; splitK for any K; "
                     f"planned:PLANNER; spray_switch)")


def _fabric_topology(fabric: str, profile: str | None, overrides: Sequence[str] = ()) -> Scenario:
    """Validate a fabric (a topology preset or YAML path) with the network profile and the
    study's ``--set`` values; the scenario carries them."""
    return load_scenario(topology=fabric, profile=profile, overrides=[*overrides, "workload.jobs.0.ranks=2"])


def workload_jobs(name: str, scenario: Scenario, nbytes: int, ranks: int | None = None) -> list[dict]:
    """The jobs of study workload ``name`` on the fabric of ``scenario``, over ``ranks`` ranks in
    all (default: every host; ``multi_job`` splits them among its jobs)."""
    topo = scenario.topology
    per_tor = topo.hosts_per_tor
    hosts = topo.n_hosts if ranks is None else ranks
    if not 2 <= hosts <= topo.n_hosts:
        raise InputError("--ranks", "", f"must be between 2 and the fabric's {topo.n_hosts} hosts (got {hosts})")
    base = {"name": "job0", "bytes": nbytes, "ranks": hosts, "iterations": 1}
    if name == "ring_packed":
        return [{**base, "collective": "ring_allreduce", "placement": "packed"}]
    if name == "ring_random":
        return [{**base, "collective": "ring_allreduce", "placement": "random"}]
    if name == "alltoall":
        return [{**base, "collective": "alltoall", "placement": "packed"}]
    if name == "permutation":
        if per_tor >= hosts:
            raise InputError("--workload", "", f"permutation needs more ranks than one leaf holds ({hosts} ranks, "
                             f"{per_tor} hosts per leaf)")
        return [{**base, "collective": "permutation", "placement": "packed", "shift": per_tor}]
    if name == "multi_job":
        ranks = hosts // MULTI_JOBS
        if ranks < 2:
            raise InputError("--workload", "", f"multi_job needs at least {2 * MULTI_JOBS} ranks (got {hosts})")
        return [{**base, "name": f"job{j}", "collective": "ring_allreduce", "placement": "random", "ranks": ranks}
                for j in range(MULTI_JOBS)]
    raise InputError("--workload", "", f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")


def _backend_for(requested: str, topo: Scenario, scheme: list[str]) -> str:
    """``packet`` | ``fluid`` | ``skip`` (what the fluid backend says it cannot model) for a run of
    the scheme (its ``--set`` overrides, the faults' included) on the fabric and profile of ``topo``."""
    if requested == "packet" or (requested == "auto" and topo.topology.n_hosts <= AUTO_FLUID_HOSTS):
        return "packet"
    try:
        scenario = load_scenario(topology=topo.topology.model_dump(), profile=topo.profile,
                                 overrides=["workload.jobs.0.ranks=2", *scheme])
        scenario = scenario.model_copy(update={"nic": topo.nic, "switch": topo.switch, "routing": topo.routing})
    except InputError:  # the run itself reports the problem as its status
        return "fluid"
    return "skip" if backend("fluid").unsupported(scenario) is not None else "fluid"


def plan_runs(fabrics: Sequence[str], workloads: Sequence[str], schemes: Sequence[str], seeds: int,
              nbytes: int, backend_name: str, profile: str | None = None, ranks: int | None = None,
              faults: Sequence[str] = ("none",), overrides: Sequence[str] = ()) -> list[RunSpec]:
    """Every run of the study, validated (bad names raise InputError before anything runs).
    ``profile``: the network profile of every run (``roce``: the transport model, packet backend);
    ``ranks``: ranks per workload (default: every host of the fabric); ``faults``: the cases of
    :data:`FAULT_CASES` each point runs under; ``overrides``: ``--set`` values for every run (applied
    first: the study's own fields win)."""
    if seeds < 1:
        raise InputError("--seeds", "", f"must be at least 1 (got {seeds})")
    if backend_name not in BACKEND_CHOICES:
        raise InputError("--backend", "", f"unknown backend {backend_name!r} (choices: {', '.join(BACKEND_CHOICES)})")
    for w in workloads:
        if w not in WORKLOADS:
            raise InputError("--workload", "", f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    scheme_sets = {s: scheme_overrides(s) for s in schemes}
    for case in faults:
        fault_overrides(case, 1)  # unknown names fail here
    extra = list(overrides)
    runs = []
    for fabric in fabrics:
        if not (fabric in preset_names("topology") or Path(fabric).is_file()):
            raise InputError("--fabric", "", f"no topology preset or file named {fabric!r} "
                             f"(presets: {', '.join(preset_names('topology'))})")
        topo = _fabric_topology(fabric, profile, overrides)
        modes = {(s, f): _backend_for(backend_name, topo, scheme_sets[s] + fault_overrides(f, 1))
                 for s in schemes for f in faults}
        for w in workloads:
            jobs = workload_jobs(w, topo, nbytes, ranks)
            job_set = [f"workload.jobs={json.dumps(jobs)}"]
            for f in faults:
                for s in schemes:
                    for seed in range(1, seeds + 1):
                        overrides = tuple([*extra, *job_set, *scheme_sets[s], *fault_overrides(f, seed),
                                           f"name=study-{w}"])
                        runs.append(RunSpec(fabric, w, s, seed, modes[s, f], overrides, profile,
                                            sum(j["ranks"] for j in jobs), f))
    # Scenario-level validation (e.g. planned on a fat-tree) happens per run: such a run becomes a row
    # with its error as status, as a planner refusing a large instance does.
    return runs


def _empty_row(run: RunSpec, status: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(fabric=run.fabric, workload=run.workload, ranks=run.ranks, scheme=run.scheme, seed=run.seed,
               profile=run.profile, faults=run.faults, backend=run.backend if run.backend != "skip" else None,
               status=status)
    return row


def execute(run: RunSpec) -> dict:
    """Run one study run (in a worker process) and return its row."""
    if run.backend == "skip":
        return _empty_row(run, "skipped: fluid cannot model")
    t0 = time.perf_counter()
    try:
        scenario = load_scenario(topology=run.fabric, seed=run.seed, profile=run.profile, overrides=list(run.overrides))
        engine = backend(run.backend)
        summary = engine.run(prepare_on(engine, scenario))
    except TooLarge:
        return _empty_row(run, "too large")
    except InputError as e:
        return _empty_row(run, f"error: {e}")
    except Exception as e:  # a crash of one run must not lose the others; its row says what happened
        return _empty_row(run, f"error: {type(e).__name__}: {e}")
    row = _empty_row(run, "ok")
    jobs = summary["jobs"]
    worst = max(jobs, key=lambda j: j["slowdown"] or 0.0)
    maxes = [j["max_congestion"] for j in jobs if j["max_congestion"] is not None]
    means = [j["mean_congestion"] for j in jobs if j["mean_congestion"] is not None]
    faults = summary.faults
    row.update(
        fault_target=", ".join(f["target"] for f in faults) or None,
        fault_at_ns=min((f["at_ns"] for f in faults), default=None),
        fault_free_ns=float(sum(worst["fault_free_cct_ns"]) / len(worst["fault_free_cct_ns"]))
        if "fault_free_cct_ns" in worst else None,
        cct_ns=float(worst["mean_cct_ns"]), ideal_ns=float(worst["mean_ideal_cct_ns"]),
        slowdown=worst["slowdown"], max_congestion=max(maxes) if maxes else None,
        mean_congestion=sum(means) / len(means) if means else None,
        plan_s=float(summary.get("plan_s") or 0.0), wall_s=time.perf_counter() - t0,
    )
    transport = summary.get("transport")
    if transport is not None:
        row.update(retransmits=transport["retransmits"], spurious_retransmits=transport["spurious_retransmits"],
                   drops=transport["drops"], fault_drops=transport.get("fault_drops"),
                   paused_ns=transport["paused_ns"])
    return row


def run_study(runs: Sequence[RunSpec], jobs: int = 1, progress: bool = False) -> list[dict]:
    """Every run's row, in the order of ``runs`` (runs in parallel when ``jobs`` > 1)."""
    rows: list[dict | None] = [None] * len(runs)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]study"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[last]}"), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("runs", total=len(runs), last="")

    def done(i: int, row: dict) -> None:
        rows[i] = row
        if bar is not None:
            r = runs[i]
            bar.update(task, advance=1, last=f"{r.fabric} {r.workload} {r.scheme} seed {r.seed}: {row['status']}")

    try:
        if jobs <= 1:
            for i, r in enumerate(runs):
                done(i, execute(r))
        else:
            pool = ProcessPoolExecutor(max_workers=jobs)
            try:
                futures = {pool.submit(execute, r): i for i, r in enumerate(runs)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            except BaseException:  # stopped: do not wait for the queued runs
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        if bar is not None:
            bar.stop()
    return rows  # type: ignore[return-value]


def to_table(rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def _groups(rows: Sequence[dict]) -> dict[tuple[str, ...], dict[str, list[dict]]]:
    """(fabric, workload[, faults]) -> scheme -> its ok rows, in the study's order (the fault case is
    part of the key when the study has a faults axis)."""
    cases = {r.get("faults") or "none" for r in rows}
    out: dict[tuple[str, ...], dict[str, list[dict]]] = {}
    for r in rows:
        key = (r["fabric"], r["workload"]) + ((r.get("faults") or "none",) if cases != {"none"} else ())
        schemes = out.setdefault(key, {})
        schemes.setdefault(r["scheme"], [])
        if r["status"] == "ok":
            schemes[r["scheme"]].append(r)
    return out


def plot(rows: Sequence[dict], path: Path) -> str | None:
    """``study.png``: per fabric x workload, slowdown per scheme (mean over seeds, min/max whiskers)
    and max congestion next to it. Returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "study.png skipped: matplotlib is not installed (pip install -e '.[plots]')"
    groups = _groups(rows)
    n = len(groups)
    fig, axes = plt.subplots(n, 2, figsize=(13, 2.8 * n + 0.6), squeeze=False)
    for (ax_s, ax_c), (key, schemes) in zip(axes, groups.items()):
        names = list(schemes)
        xs = range(len(names))
        for ax, key, label in ((ax_s, "slowdown", "slowdown (CCT / ideal)"),
                               (ax_c, "max_congestion", "max congestion (flows)")):
            means, lo, hi = [], [], []
            for s in names:
                vals = [r[key] for r in schemes[s] if r[key] is not None]
                m = sum(vals) / len(vals) if vals else math.nan
                means.append(m)
                lo.append(m - min(vals) if vals else 0.0)
                hi.append(max(vals) - m if vals else 0.0)
            ax.bar(xs, means, yerr=[lo, hi], capsize=3, color="tab:blue" if key == "slowdown" else "tab:orange")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xticks(list(xs), names, rotation=40, ha="right", fontsize=7)
            ax.set_ylabel(label, fontsize=8)
            ax.set_title(" / ".join(key), fontsize=9)
            for x, m in zip(xs, means):  # runs that did not run (too large, skipped) are marked
                if math.isnan(m):
                    ax.text(x, 1.0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def print_summary(rows: Sequence[dict]) -> None:
    """Mean slowdown per scheme (rows) x fabric/workload (columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = 200
    groups = _groups(rows)
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    faulty = {r.get("faults") or "none" for r in rows} != {"none"}
    status = {(r["fabric"], r["workload"], *((r.get("faults") or "none",) if faulty else ()), r["scheme"]): r["status"]
              for r in rows if r["status"] != "ok"}
    table = Table(title="mean slowdown (CCT / ideal) over seeds", box=box.SIMPLE_HEAD)
    table.add_column("scheme", no_wrap=True)
    for key in groups:
        table.add_column("\n".join(key), justify="right", no_wrap=True)
    for s in schemes:
        cells = []
        for key, by_scheme in groups.items():
            vals = [r["slowdown"] for r in by_scheme.get(s, []) if r["slowdown"] is not None]
            if vals:
                cells.append(f"{sum(vals) / len(vals):.3f}")
            else:
                st = status.get((*key, s), "-")
                cells.append("too large" if st == "too large" else "skipped" if st.startswith("skipped")
                             else "error" if st.startswith("error") else "-")
        table.add_row(s, *cells)
    console.print(table)
    errors = [r for r in rows if r["status"].startswith("error")]
    for r in errors[:5]:
        console.print(f"[red]{r['fabric']} {r['workload']} {r['scheme']} {r.get('faults') or 'none'} seed {r['seed']}: "
                      f"{r['status']}")


def write_outputs(rows: Sequence[dict], out: Path) -> str | None:
    """``study.png``, then ``study.parquet`` last (the study is done once it exists), each written
    under a temporary name and renamed into place, so a reader never sees half a file. Returns a
    note when the plot was skipped."""
    out.mkdir(parents=True, exist_ok=True)
    table = to_table(rows)  # a bad row fails here, before anything is written
    tmp_png = out / ".study.tmp.png"  # (savefig picks the format from the suffix)
    note = plot(rows, tmp_png)
    if note is None:
        os.replace(tmp_png, out / "study.png")
    tmp = out / ".study.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out / "study.parquet")
    return note


def parse_size(text: str) -> int:
    try:
        n = parse_bytes(text)
    except ValueError as e:
        raise InputError("--bytes", "", str(e)) from None
    if n < 1:
        raise InputError("--bytes", "", "must be at least 1 byte")
    return n


def default_jobs() -> int:
    return os.cpu_count() or 1


def describe(runs: Sequence[RunSpec], nbytes: int) -> str:
    backends = sorted({r.backend for r in runs})
    return f"{len(runs)} runs, {format_bytes(nbytes)} per rank, backends: {', '.join(backends)}"
