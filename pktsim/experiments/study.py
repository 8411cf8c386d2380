"""``python -m pktsim study``: the reproduction study, a sweep (:mod:`pktsim.experiments.sweep`).

Every load-balancing scheme on every workload on every fabric, over several seeds, side by side.
This module only writes the sweep: :func:`sweep_data` turns the study's options into a sweep file's
mapping, one part per fabric, with the named axes ``workload``, ``faults`` (when asked for),
``scheme`` and the field axis ``seed`` after the one-valued ``topology`` axis. The sweep presets
``reproduction`` and ``reproduction-quick`` (``sweeps/``) are what ``pktsim study`` and ``pktsim
study --quick`` write; running, the table, resuming and the plot are the sweep's.

Workloads are built for the fabric (every job over all of its hosts unless ``--ranks`` says
otherwise); ``bytes`` is the per-rank buffer of the collectives and the bytes per sender of the
permutation:

- ``ring_packed``: one ring AllReduce, packed placement (ring neighbours mostly share a leaf; the
  leaf-crossing ones use disjoint paths).
- ``ring_random``: one ring AllReduce, random placement (ECMP collisions between neighbours).
- ``alltoall``: one all-to-all (each rank sends bytes / ranks to every other rank).
- ``permutation``: rank r sends ``bytes`` to rank r + hosts_per_leaf (every flow crosses leaves,
  every leaf sends hosts_per_leaf flows to one other leaf: the worst case for ECMP).
- ``multi_job``: 4 concurrent ring AllReduce jobs of hosts / 4 ranks each, random placement.

The faults axis (``--faults``, :data:`FAULT_CASES`) runs each point healthy (``none``) or with one
fault on a fabric link drawn from the run's seed (every scheme of a seed faces the same link):
``link_down`` at 30% of the point's own fault-free run (which runs first: ``fault_free_ns`` is its
CCT), ``link_degrade`` to half rate from the start, ``link_loss`` of 1% from the start.

A fabric with more than :data:`~pktsim.experiments.sweep_spec.AUTO_FLUID_HOSTS` hosts runs on the
fluid backend (``--backend auto``); the schemes and fault cases it cannot model are left out of
that fabric's part, with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pktsim.backends import backend
from pktsim.errors import InputError
from pktsim.experiments.sweep_spec import AUTO_FLUID_HOSTS, BACKEND_CHOICES, set_text
from pktsim.planning.planners import PLANNERS
from pktsim.scenario import LB_SCHEMES, Scenario, load_scenario, preset_names
from pktsim.units import parse_bytes

FABRICS = ("ls16x16x16", "ls32x64x32")
WORKLOADS = ("ring_packed", "ring_random", "alltoall", "permutation", "multi_job")
SCHEMES = (
    "ecmp", "spray", "split2", "split4", "split8", "split16", "split_minimal",
    *(f"planned:{p}" for p in PLANNERS), "planned:edge_coloring/cluster", "planned:mmf/connection", "adaptive",
    "flowlet",
)
DEFAULT_SCHEMES = tuple(s for s in SCHEMES if s != "planned:ilp")
"""The default comparison: the ILP solves one program per phase (510 per 256-rank ring) and is
asked for by name (``--scheme planned:ilp``) on instances small enough to matter."""
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

PRESETS = {"reproduction": {}, "reproduction-quick": {"quick": True}}
"""The sweep presets the study ships (``sweeps/<name>.yaml``) -> the :func:`study_options` that write them."""


def fault_fields(case: str) -> dict[str, Any]:
    """A ``--faults`` case -> the fields it sets."""
    if case not in FAULT_CASES:
        raise InputError("--faults", "", f"unknown fault case {case!r} (known: {', '.join(FAULT_CASES)})")
    spec = FAULT_CASES[case]
    return {"faults": [] if spec is None else {"random": {"count": 1, "tier": "fabric", **spec}}}


def scheme_fields(name: str) -> dict[str, Any]:
    """A study scheme name (``ecmp``, ``split4``, ``planned:ilp``, ...) -> the fields it sets.
    ``/cluster`` after ``planned:PLANNER`` or ``split_minimal`` plans the jobs in lockstep together
    (``lb.plan_scope=cluster``); ``/connection`` after ``planned:PLANNER`` plans persistent
    connections, re-planned periodically (``lb.plan_scope=connection``)."""
    base, sep, scope = name.partition("/")
    if sep:
        planned = base.startswith("planned:")
        if not ((scope == "cluster" and (planned or base == "split_minimal")) or (scope == "connection" and planned)):
            raise InputError("--scheme", "", f"unknown scheme {name!r} (/cluster follows planned:PLANNER "
                             f"or split_minimal, /connection follows planned:PLANNER)")
        return {**scheme_fields(base), "lb.plan_scope": scope}
    if name.startswith("planned:"):
        planner = name.split(":", 1)[1]
        if planner not in PLANNERS:
            raise InputError("--scheme", "", f"unknown planner in {name!r} (planners: {', '.join(PLANNERS)})")
        return {"lb.scheme": "planned", "lb.planner": planner}
    if name.startswith("split") and name[5:].isdigit():
        k = int(name[5:])
        if k < 1:
            raise InputError("--scheme", "", f"{name!r}: subflows must be at least 1")
        return {"lb.scheme": "split", "lb.subflows": k}
    if name in LB_SCHEMES and name not in ("split", "planned"):
        return {"lb.scheme": name}
    known = ", ".join(SCHEMES)
    raise InputError("--scheme", "", f"unknown scheme {name!r} (known: {known}; splitK for any K; "
                     f"planned:PLANNER; spray_switch)")


def _fabric(fabric: str, profile: str | None, overrides: Sequence[str] = ()) -> Scenario:
    """A fabric (a topology preset or YAML path) validated with the profile and the ``--set`` values."""
    if not (fabric in preset_names("topology") or Path(fabric).is_file()):
        raise InputError("--fabric", "", f"no topology preset or file named {fabric!r} "
                         f"(presets: {', '.join(preset_names('topology'))})")
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


def _fluid_models(fabric: Scenario, fields: dict[str, Any]) -> bool:
    """Whether the fluid backend models the fabric's scenario with ``fields`` set."""
    sets = [set_text(k, v) for k, v in fields.items()]
    try:
        scenario = load_scenario(topology=fabric.topology.model_dump(), profile=fabric.profile,
                                 overrides=["workload.jobs.0.ranks=2", *sets])
        scenario = scenario.model_copy(update={"nic": fabric.nic, "switch": fabric.switch})
    except InputError:  # the point's own validation says what is wrong
        return True
    return backend("fluid").unsupported(scenario) is None


def sweep_data(fabrics: Sequence[str] = FABRICS, workloads: Sequence[str] = WORKLOADS,
               schemes: Sequence[str] = DEFAULT_SCHEMES, seeds: int = DEFAULT_SEEDS, nbytes: int = DEFAULT_BYTES,
               backend_name: str = "auto", profile: str | None = None, ranks: int | None = None,
               faults: Sequence[str] = ("none",), overrides: Sequence[str] = ()) -> tuple[dict, list[str]]:
    """The study as a sweep file's mapping (one part per fabric), and notes on what a fluid part
    leaves out. Bad names raise InputError before anything runs. ``profile``: the network profile
    of every point (``roce``: the transport model, packet backend); ``ranks``: ranks per workload
    (default: every host); ``faults``: the cases of :data:`FAULT_CASES`; ``overrides``: the ``--set``
    values every point starts from (they size the fabric the workloads are built for)."""
    if seeds < 1:
        raise InputError("--seeds", "", f"must be at least 1 (got {seeds})")
    if backend_name not in BACKEND_CHOICES:
        raise InputError("--backend", "", f"unknown backend {backend_name!r} (choices: {', '.join(BACKEND_CHOICES)})")
    for w in workloads:
        if w not in WORKLOADS:
            raise InputError("--workload", "", f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    scheme_sets = {s: scheme_fields(s) for s in schemes}
    fault_sets = {f: fault_fields(f) for f in faults}
    parts, notes = [], []
    for fabric in fabrics:
        topo = _fabric(fabric, profile, overrides)
        hosts = topo.topology.n_hosts
        engine = backend_name if backend_name != "auto" else "fluid" if hosts > AUTO_FLUID_HOSTS else "packet"
        kept_faults, kept_schemes = dict(fault_sets), dict(scheme_sets)
        if engine == "fluid":
            kept_faults = {f: v for f, v in fault_sets.items() if _fluid_models(topo, v)}
            kept_schemes = {s: v for s, v in scheme_sets.items()
                            if all(_fluid_models(topo, {**v, **f}) for f in kept_faults.values())}
            left = [*(set(fault_sets) - set(kept_faults)), *(s for s in scheme_sets if s not in kept_schemes)]
            if left:
                notes.append(f"{fabric} (fluid backend): left out what it cannot model: {', '.join(left)}")
            if not kept_faults or not kept_schemes:
                continue
        grid: dict[str, Any] = {"topology": [fabric]}
        grid["workload"] = {w: {"workload.jobs": workload_jobs(w, topo, nbytes, ranks), "name": f"study-{w}"}
                            for w in workloads}
        if list(faults) != ["none"]:
            grid["faults"] = kept_faults
        grid["scheme"] = kept_schemes
        grid["seed"] = list(range(1, seeds + 1))
        base = {"profile": profile} if profile is not None else {}
        parts.append({"base": base, "backend": engine, "grid": grid})
    if not parts:
        raise InputError("study", "", "nothing to run: " + "; ".join(notes))
    return ({"parts": parts} if len(parts) > 1 else parts[0]), notes


def study_options(quick: bool = False) -> dict[str, Any]:
    """The keyword arguments of :func:`sweep_data` for ``pktsim study [--quick]`` with no other option."""
    if not quick:
        return {}
    return {"fabrics": QUICK_FABRICS, "schemes": QUICK_SCHEMES, "seeds": QUICK_SEEDS, "nbytes": QUICK_BYTES}


def parse_size(text: str) -> int:
    try:
        n = parse_bytes(text)
    except ValueError as e:
        raise InputError("--bytes", "", str(e)) from None
    if n < 1:
        raise InputError("--bytes", "", "must be at least 1 byte")
    return n


def preset_text(name: str) -> str:
    """The sweep preset ``name`` of :data:`PRESETS` as shipped in ``sweeps/<name>.yaml``."""
    import yaml

    options = PRESETS[name]
    data, _ = sweep_data(**study_options(**options))
    command = "pktsim study" + (" --quick" if options.get("quick") else "")
    return (f"# The reproduction study{' (quick)' if options.get('quick') else ''}: what `{command}` runs.\n"
            f"# Written by pktsim.experiments.study.write_presets(); tests/test_study.py checks it is current.\n"
            + yaml.safe_dump(data, sort_keys=False, width=110))


def write_presets(directory: Path = Path(__file__).resolve().parents[2] / "sweeps") -> None:
    """(Re)write the study's sweep presets in a checkout's ``sweeps/``."""
    directory.mkdir(exist_ok=True)
    for name in PRESETS:
        (directory / f"{name}.yaml").write_text(preset_text(name))
