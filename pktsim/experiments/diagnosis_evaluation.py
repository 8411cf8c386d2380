"""``pktsim diagnose --evaluate``: how often the diagnosis (:mod:`pktsim.analysis.diagnose`) finds
the fault. Each run injects one fault (a link degraded to 50% and 25%, 1% loss, a link down
mid-run, a 1.5x straggler) on a cable the workload uses, into ring AllReduce (packed, random),
all-to-all and multi-job workloads on small leaf-spines, on both backends; the diagnosis ranks its
suspects from the traces alone and is scored against the truth (top-1, top-3 per fault and
workload); fault-free runs of every scheme give the false-alarm rate. Also ``bench/bench_diagnose.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pktsim.analysis.diagnose import Run, cable_of, diagnose_run, flow_links, load_run, read_table
from pktsim.errors import InputError


EVAL_FABRICS = ((4, 4, 4), (4, 8, 2), (8, 4, 4), (8, 8, 2))
"""(spines, leaves, hosts per leaf): 16 hosts each, 100 Gb/s, 1 us links."""
EVAL_WORKLOADS = ("ring_packed", "ring_random", "alltoall", "multi_job")
EVAL_KINDS = ("degrade50", "degrade25", "loss1%", "link_down", "straggler")
EVAL_HEALTHY = (("ecmp", None), ("spray", None), ("split4", None), ("split_minimal", None), ("adaptive", None),
                ("flowlet", None), ("planned", None), ("ecmp", "sr"), ("spray", "sr"), ("ecmp", "roce"),
                ("spray", "roce"))
"""Fault-free runs of the false-alarm sweep: (scheme, transport: None = ideal | sr | roce profile)."""
EVAL_GAP_NS = 20_000
EVAL_ITERATIONS = 2


def eval_jobs(workload: str, hosts: int) -> list[dict]:
    """The jobs of an evaluation workload over ``hosts`` hosts (every job: 3 iterations, 20 us
    compute gaps, so a straggler shows)."""
    base = {"iterations": EVAL_ITERATIONS, "compute_gap_ns": EVAL_GAP_NS}
    if workload == "ring_packed":
        return [{"name": "job0", "collective": "ring_allreduce", "bytes": 4 << 20, "ranks": hosts,
                 "placement": "packed", **base}]
    if workload == "ring_random":
        return [{"name": "job0", "collective": "ring_allreduce", "bytes": 4 << 20, "ranks": hosts,
                 "placement": "random", **base}]
    if workload == "alltoall":
        return [{"name": "job0", "collective": "alltoall", "bytes": 4 << 20, "ranks": hosts, "placement": "packed",
                 **base}]
    if workload == "multi_job":
        q = hosts // 4
        return [{"name": "ring", "collective": "ring_allreduce", "bytes": 2 << 20, "ranks": 2 * q,
                 "placement": "random", **base},
                {"name": "moe", "collective": "alltoall", "bytes": 2 << 20, "ranks": q, "placement": "random", **base},
                {"name": "ring2", "collective": "ring_allreduce", "bytes": 1 << 20, "ranks": q, "placement": "random",
                 **base}]
    raise InputError("--evaluate", "", f"unknown workload {workload!r}")


def eval_scenario(workload: str, fabric: tuple[int, int, int], seed: int, scheme: str = "ecmp",
                  transport: str | None = None, faults: list[dict] | None = None) -> dict:
    """The scenario (a mapping, as a YAML file would say) of one evaluation run."""
    spines, leaves, per_leaf = fabric
    sc: dict = {
        "name": f"diag-{workload}",
        "seed": seed,
        "topology": {"kind": "leaf_spine", "spines": spines, "leaves": leaves, "hosts_per_leaf": per_leaf,
                     "link_gbps": 100, "link_delay_ns": 1000},
        "workload": {"jobs": eval_jobs(workload, leaves * per_leaf)},
        "lb": {"scheme": "split", "subflows": 4} if scheme == "split4" else {"scheme": scheme},
        "faults": faults or [],
    }
    if transport == "roce":
        sc["profile"] = "roce"
    elif transport is not None:
        sc["nic"] = {"transport": transport}
    return sc


@dataclass(frozen=True)
class EvalTask:
    workload: str
    fabric: tuple[int, int, int]
    seed: int
    scheme: str = "ecmp"
    transport: str | None = None
    kind: str | None = None
    """None: fault-free."""
    fault: dict | None = None
    backend: str = "packet"
    baseline_fct: tuple | None = None
    """The fault-free twin's FCT per message (ns, by msg_id): how much the fault slowed messages."""


def _run_scenario(sc: dict, out: Path, backend: str = "packet") -> None:
    import yaml

    from pktsim.cli import main

    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    code = main(["run", str(path), "-q", "--backend", backend, "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"pktsim run {path} --backend {backend} exited {code}")


def _eval_one(task: EvalTask, work: str, counters: bool, keep: bool) -> dict:
    """Run one evaluation task (in a worker) and diagnose it: its row."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="diag-", dir=work))
    out = base / "run"
    row = {"backend": task.backend, "workload": task.workload, "fabric": "x".join(map(str, task.fabric)),
           "seed": task.seed, "scheme": task.scheme + (f"+{task.transport}" if task.transport else ""),
           "kind": task.kind or "none", "fault": task.fault, "status": "ok", "rank": None, "fault_found": None,
           "top": None}
    try:
        sc = eval_scenario(task.workload, task.fabric, task.seed, task.scheme, task.transport,
                           [task.fault] if task.fault else [])
        _run_scenario(sc, out, task.backend)
        run = load_run(out)
        report = diagnose_run(run, counters)
        row["fault_found"] = report["fault_found"]
        row["top"] = [s.get("host") or s.get("link") for s in report["suspects"][:3]]
        row["strongest"] = report["strongest"]
        everyone = report["suspects"] + report["below_threshold"]
        row["best_score"] = max((s["score"] for s in everyone), default=0.0)
        if task.fault is not None:
            row["rank"] = _rank_of_truth(report["suspects"], task.fault)
            row["effect"], row["effective"] = _effect(task, run)
        else:
            m = run.messages
            row["makespan_ns"] = int(m["end_ns"].max()) if len(m["end_ns"]) else 0
            row["cables"] = _used_cables(run)
            row["hosts"] = sorted(set(m["src"].tolist()), key=run.fabric.host_index.__getitem__)
            order = np.argsort(m["msg_id"])
            row["fct"] = m["fct_ns"][order].tolist()
    except Exception as e:  # one run's failure must not lose the others: its row says what happened
        row["status"] = f"error: {type(e).__name__}: {e}"
    finally:
        if keep:
            row["dir"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return row


EFFECTIVE = 0.01
"""A link fault had an effect on the run when some message took at least this much longer than in
the fault-free twin (degrade and link down without losses), or when packets were lost to it. A
fault with no effect left no trace in the traffic (a degraded link that was no bottleneck): only
its port speed or its busy time would show it, which the diagnosis does not read."""


def _effect(task: EvalTask, run: Run) -> tuple[float | None, bool]:
    """(the largest relative FCT increase over the fault-free twin, whether the fault had an effect).
    The evaluation knows the truth: it may read the flows' fault_drops (the diagnosis does not)."""
    effect = None
    if task.baseline_fct is not None and task.transport is None:
        m = run.messages
        fct = m["fct_ns"][np.argsort(m["msg_id"])].astype(np.float64)
        base = np.asarray(task.baseline_fct, dtype=np.float64)
        if len(fct) == len(base):
            effect = round(float(np.max(fct / np.maximum(base, 1.0)) - 1.0), 4)
    if task.kind == "straggler":
        return effect, True
    lost = 0
    if task.backend == "packet":
        f = read_table(run.path, "flows", ["fault_drops"])
        lost = int(np.sum(f["fault_drops"].to_numpy())) if f is not None else 0
    return effect, lost > 0 or (effect is not None and effect >= EFFECTIVE)


def _rank_of_truth(suspects: list[dict], fault: dict) -> int | None:
    """The rank of the faulty component among the suspects, counting every suspect tied with it as
    ahead of it (a tie is not a win), or None when it is not a suspect."""
    for s in suspects:
        if fault["kind"] == "straggler":
            hit = s["kind"] == "host" and s["host"] == fault["host"]
        else:
            hit = s["kind"] == "link" and set(s["link"]) == set(fault["link"])
        if hit:
            key = (round(s["score"], 6), s.get("tiebreak", 0.0))
            return sum((round(o["score"], 6), o.get("tiebreak", 0.0)) >= key for o in suspects)
    return None


def _used_cables(run: Run) -> list[list]:
    """Switch-to-switch cables the run's flows crossed, with the last time each was used (ns)."""
    fls = flow_links(run)
    end = run.flows["end_ns"]
    last: dict[tuple[str, str], int] = {}
    for i, pl in enumerate(fls.per_flow):
        for lid, _ in pl:
            u, v = run.fabric.links[lid]
            if run.fabric.is_switch(u) and run.fabric.is_switch(v):
                c = cable_of(run.fabric, lid)
                last[c] = max(last.get(c, 0), end[i])
    return [[a, b, t] for (a, b), t in sorted(last.items())]


def _draw_fault(kind: str, base: dict, rng) -> dict | None:
    """One fault of ``kind`` on the fabric of a fault-free run ``base`` (its row): a cable the
    workload uses at the fault time, or a host of the workload."""
    makespan = base["makespan_ns"]
    if kind == "straggler":
        return {"kind": "straggler", "at_ns": 0, "host": rng.choice(base["hosts"]), "compute_factor": 1.5}
    lo, hi = (0.2, 0.6) if kind == "link_down" else (0.0, 0.5)
    at = int(makespan * (lo + (hi - lo) * rng.random()))
    cables = [(a, b) for a, b, last in base["cables"] if last > at + makespan // 10]
    if not cables:
        return None
    a, b = rng.choice(cables)
    if kind.startswith("degrade"):
        return {"kind": "link_degrade", "at_ns": at, "link": [a, b], "gbps": 100 * int(kind[7:]) / 100}
    if kind.startswith("loss"):
        return {"kind": "link_loss", "at_ns": at, "link": [a, b], "drop_rate": 0.01}
    return {"kind": "link_down", "at_ns": at, "link": [a, b]}


EVAL_FLUID_KINDS = ("degrade50", "degrade25", "link_down", "straggler")
"""The fluid backend has no model of loss (its recovery is the transport's)."""
EVAL_FLUID_HEALTHY = ("ecmp", "spray", "split4", "split_minimal", "planned")


def evaluate(runs: int = 100, seed: int = 1, jobs: int = 2, counters: bool = True, keep: bool = False,
             progress: bool = True, work: str | None = None, fluid: bool = True) -> dict:
    """The evaluation. ``runs`` packet fault runs in groups of one per fault kind, the groups cycling
    through the workloads and fabrics (seed ``seed * 1000 + group``); every group starts with a
    fault-free ECMP run, which fixes the cables the workload uses and the makespan the fault times
    are drawn from, and counts in the false alarms. A sweep of as many fault-free runs over schemes
    and transports adds to the false alarms. With ``fluid``, every group has its fluid twin (its own
    fault-free run, one fault of each kind but loss) and the sweep fluid runs over the schemes the
    fluid backend models. Returns the rows and the accuracy tables."""
    import random
    import tempfile

    rng = random.Random(seed)
    groups = max(1, math.ceil(runs / len(EVAL_KINDS)))
    backends = ("packet", "fluid") if fluid else ("packet",)
    base_tasks = []
    for g in range(groups):
        w = EVAL_WORKLOADS[g % len(EVAL_WORKLOADS)]
        fab = EVAL_FABRICS[(g // len(EVAL_WORKLOADS)) % len(EVAL_FABRICS)]
        for b in backends:
            base_tasks.append(EvalTask(w, fab, seed * 1000 + g, backend=b))
    sweep = []
    for i in range(groups):
        scheme, transport = EVAL_HEALTHY[i % len(EVAL_HEALTHY)]
        w = EVAL_WORKLOADS[(i // len(EVAL_HEALTHY) + i) % len(EVAL_WORKLOADS)]
        sweep.append(EvalTask(w, EVAL_FABRICS[i % len(EVAL_FABRICS)], seed * 1000 + 500 + i, scheme, transport))
        if fluid:
            scheme = EVAL_FLUID_HEALTHY[i % len(EVAL_FLUID_HEALTHY)]
            sweep.append(EvalTask(w, EVAL_FABRICS[(i + 1) % len(EVAL_FABRICS)], seed * 1000 + 700 + i, scheme,
                                  backend="fluid"))
    work = work or tempfile.mkdtemp(prefix="pktsim-diagnose-eval-")
    bases = _run_all(base_tasks + sweep, "fault-free runs", work, counters, keep, jobs, progress)
    fault_tasks = []
    packet_faults = 0
    for task, base in zip(base_tasks, bases):
        if base["status"] != "ok":
            continue
        for k in EVAL_KINDS if task.backend == "packet" else EVAL_FLUID_KINDS:
            if task.backend == "packet":
                if packet_faults >= runs:
                    break
                packet_faults += 1
            fault = _draw_fault(k, base, rng)
            if fault is None:
                continue
            transport = "sr" if k in ("loss1%", "link_down") and task.backend == "packet" else None
            fault_tasks.append(EvalTask(task.workload, task.fabric, task.seed, "ecmp", transport, k, fault,
                                        task.backend, tuple(base["fct"])))
    # The slow runs (the transport model) first, so two workers finish together.
    order = sorted(range(len(fault_tasks)), key=lambda i: fault_tasks[i].transport is None)
    done = _run_all([fault_tasks[i] for i in order], "fault runs", work, counters, keep, jobs, progress)
    faults = [None] * len(fault_tasks)
    for i, row in zip(order, done):
        faults[i] = row
    rows = bases + faults
    for r in rows:
        r.pop("fct", None)
    return {"rows": rows, "tables": accuracy_tables(rows), "seed": seed, "runs": runs, "counters": counters}


def _run_all(tasks: list[EvalTask], label: str, work: str, counters: bool, keep: bool, jobs: int,
             progress: bool) -> list[dict]:
    """Every task's row, in the order of ``tasks`` (``jobs`` worker processes)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out: list[dict | None] = [None] * len(tasks)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       transient=True)
        bar.start()
        tid = bar.add_task(label, total=len(tasks))
    try:
        if jobs <= 1:
            for i, t in enumerate(tasks):
                out[i] = _eval_one(t, work, counters, keep)
                if bar is not None:
                    bar.update(tid, advance=1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futs = {pool.submit(_eval_one, t, work, counters, keep): i for i, t in enumerate(tasks)}
                try:
                    for fut in as_completed(futs):
                        out[futs[fut]] = fut.result()
                        if bar is not None:
                            bar.update(tid, advance=1)
                except BaseException:  # stopped: do not wait for the queued runs
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.stop()
    return out  # type: ignore[return-value]


def accuracy_tables(rows: list[dict]) -> dict:
    """Top-1 / top-3 accuracy per backend, fault kind and workload, and the false-alarm rates."""
    acc: dict = {}
    for r in rows:
        if r["kind"] == "none" or r["status"] != "ok":
            continue
        for key in ((r["backend"], r["kind"], r["workload"]), (r["backend"], r["kind"], "all")):
            a = acc.setdefault(key, {"runs": 0, "top1": 0, "top3": 0, "effective": 0, "effective_top1": 0,
                                     "effective_top3": 0})
            top1, top3 = r["rank"] == 1, r["rank"] is not None and r["rank"] <= 3
            a["runs"] += 1
            a["top1"] += top1
            a["top3"] += top3
            if r.get("effective", True):
                a["effective"] += 1
                a["effective_top1"] += top1
                a["effective_top3"] += top3
    alarms: dict = {}
    for r in rows:
        if r["kind"] != "none" or r["status"] != "ok":
            continue
        for key in (f"workload {r['workload']}", f"scheme {r['scheme']}", f"backend {r['backend']}", "all"):
            a = alarms.setdefault(key, {"runs": 0, "false_alarms": 0})
            a["runs"] += 1
            a["false_alarms"] += bool(r["fault_found"])
    errors = [r for r in rows if r["status"] != "ok"]
    return {"accuracy": [{"backend": b, "kind": k, "workload": w, **v} for (b, k, w), v in sorted(acc.items())],
            "false_alarms": [{"group": k, **v} for k, v in sorted(alarms.items())],
            "errors": len(errors)}


def print_evaluation(result: dict, command: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pktsim.report import WIDTH

    console = Console()
    console.width = min(console.width, WIDTH) if console.is_terminal else WIDTH
    tables = result["tables"]
    workloads = [*EVAL_WORKLOADS, "all"]
    cell = {(a["backend"], a["kind"], a["workload"]): a for a in tables["accuracy"]}
    for backend, kinds in (("packet", EVAL_KINDS), ("fluid", EVAL_FLUID_KINDS)):
        if not any(b == backend for b, _, _ in cell):
            continue
        for prefix, what in (("", "every fault"), ("effective_", "faults with an effect")):
            t = Table(title=f"{backend} backend, {what}: top-1/top-3 %:runs", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
            t.add_column("fault", no_wrap=True)
            for w in workloads:
                t.add_column(w.replace("_", " "), justify="right", no_wrap=True)
            for k in kinds:
                vals = []
                for w in workloads:
                    a = cell.get((backend, k, w))
                    n = a and a[f"{prefix}runs" if prefix == "" else "effective"]
                    vals.append("-" if not n else f"{100 * a[prefix + 'top1'] / n:.0f}/"
                                f"{100 * a[prefix + 'top3'] / n:.0f}:{n}")
                t.add_row(k, *vals)
            console.print(t)
    console.print(f"a fault has an effect when some message took {100 * EFFECTIVE:.0f}% longer than in its "
                  "fault-free twin or packets were lost to it; a tie with the truth counts as a miss")
    fa = {a["group"]: a for a in tables["false_alarms"]}
    if "all" in fa:
        a = fa["all"]
        console.print(f"false alarms: {a['false_alarms']} of {a['runs']} fault-free runs "
                      f"({100 * a['false_alarms'] / max(a['runs'], 1):.1f}%)")
        for kind in ("backend", "scheme", "workload"):
            parts = [f"{g.split(' ', 1)[1]} {v['false_alarms']}/{v['runs']}" for g, v in fa.items()
                     if g.startswith(kind + " ")]
            console.print(f"  by {kind}: " + ", ".join(parts))
    if tables["errors"]:
        console.print(f"[yellow]{tables['errors']} runs failed[/yellow] (see the rows' status in the JSON)")
    console.print(f"command: {command}")
