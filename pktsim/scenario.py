"""Scenario files: loading, presets, ``--set`` overrides and validation.

A scenario has four parts (topology, nic/switch/lb, workload, traces). ``topology`` and ``workload``
may be given inline, as a preset name (a file in ``topologies/`` or ``workloads/``) or as a path.
Every problem becomes an :class:`~pktsim.errors.InputError` naming the file, the field and the
problem, before anything runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError
from .units import parse_bytes, parse_ns

REPO_ROOT = Path(__file__).resolve().parent.parent
PRESET_DIRS = {"topology": "topologies", "workload": "workloads"}

Bytes = Annotated[int, BeforeValidator(parse_bytes)]
Nanoseconds = Annotated[int, BeforeValidator(parse_ns)]
Positive = Annotated[int, Field(ge=1)]
Gbps = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopologySpec(_Strict):
    kind: Literal["leaf_spine", "fat_tree"] = "leaf_spine"
    spines: Positive = 4
    leaves: Positive = 8
    hosts_per_leaf: Positive = 4
    k: Annotated[int, Field(ge=2, multiple_of=2)] = 4
    """Fat-tree arity: k pods of k/2 edge and k/2 aggregation switches, (k/2)^2 cores, k^3/4 hosts."""
    link_gbps: Gbps = 100.0
    host_link_gbps: Gbps | None = None
    link_delay_ns: Nanoseconds = 1000

    @property
    def host_gbps(self) -> float:
        return self.host_link_gbps if self.host_link_gbps is not None else self.link_gbps

    @property
    def n_hosts(self) -> int:
        if self.kind == "fat_tree":
            return self.k**3 // 4
        return self.leaves * self.hosts_per_leaf

    @property
    def hosts_per_tor(self) -> int:
        return self.k // 2 if self.kind == "fat_tree" else self.hosts_per_leaf


class NicSpec(_Strict):
    mtu_bytes: Bytes = 4096
    header_bytes: Bytes = 64

    @model_validator(mode="after")
    def _payload(self) -> NicSpec:
        if self.header_bytes >= self.mtu_bytes:
            raise ValueError(f"header_bytes ({self.header_bytes}) must be smaller than mtu_bytes ({self.mtu_bytes})")
        return self

    @property
    def payload_bytes(self) -> int:
        return self.mtu_bytes - self.header_bytes


class SwitchSpec(_Strict):
    latency_ns: Nanoseconds = 0
    """Fixed forwarding latency added at every switch before the egress queue."""


LbScheme = Literal["ecmp", "spray", "spray_switch", "split", "split_minimal", "planned", "adaptive", "flowlet"]
LB_SCHEMES: tuple[str, ...] = get_args(LbScheme)


class LbSpec(_Strict):
    scheme: LbScheme = "ecmp"
    subflows: Positive = 1
    flowlet_gap_ns: Annotated[int, BeforeValidator(parse_ns), Field(gt=0)] = 10_000
    """``flowlet``: idle time after which a switch may move a flow to another next hop. The default,
    10 us, is about one base round trip of the preset fabrics (1 us links) and much more than the
    queueing skew between their paths, so a re-pick rarely reorders; it is far below the compute
    gaps between training iterations, so every message starts a new flowlet."""
    adaptive_choices: Annotated[int, Field(ge=0)] = 0
    """``adaptive``: how many equal-cost next hops a switch samples per packet before taking the
    least loaded: 0 = all of them (exact least backlog), 2 = power-of-two choices, d >= the group
    size = all of them."""
    planner: Literal["edge_coloring", "greedy", "annealing", "ilp"] = "edge_coloring"
    """``planned``: how each phase's flows are assigned to spines (see ``pktsim.planners``)."""
    planner_seed: int | None = None
    """``planned`` with ``annealing``: the annealer's seed (default: the scenario seed)."""
    annealing_steps: Positive = 20_000
    """``planned`` with ``annealing``: moves tried per phase (fewer if it reaches the lower bound)."""

    @model_validator(mode="after")
    def _planner_fields(self) -> LbSpec:
        if self.scheme != "planned" and self.planner != "edge_coloring":
            raise _FieldError(("lb", "planner"), f"only used with lb.scheme: planned (scheme is {self.scheme})")
        for name, default in (("planner_seed", None), ("annealing_steps", 20_000)):
            if getattr(self, name) != default and (self.scheme != "planned" or self.planner != "annealing"):
                raise _FieldError(("lb", name), "only used with lb.scheme: planned and lb.planner: annealing")
        return self


Collective = Literal[
    "ring_allreduce", "alltoall_allreduce", "alltoall", "allgather", "reduce_scatter", "permutation", "incast"
]


class JobSpec(_Strict):
    name: str = "job0"
    collective: Collective = "ring_allreduce"
    bytes: Bytes = 16 * 2**20
    """Per-rank buffer size of the collective (permutation/incast: bytes per sender)."""
    ranks: Annotated[int, Field(ge=2)] = 16
    placement: Literal["packed", "random", "strided"] | list[str] = "packed"
    stride: Positive | None = None
    """Host stride for ``strided`` placement (default: hosts per leaf, so ranks round-robin over leaves)."""
    iterations: Positive = 1
    start_ns: Nanoseconds = 0
    compute_gap_ns: Nanoseconds = 0
    """Compute time between the end of one iteration and the start of the next."""
    channels: Positive = 1
    """Parallel rings (NCCL channels), each carrying bytes/channels on its own connections."""
    slices: Positive = 1
    """Pipelined pieces each ring step is cut into."""
    shift: int | None = None
    """Permutation: rank r sends to (r + shift) mod ranks; default a seeded random derangement."""
    receiver: Annotated[int, Field(ge=0)] = 0
    """Incast: the rank every other rank sends to."""

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if isinstance(self.placement, list) and len(self.placement) != self.ranks:
            raise ValueError(f"placement lists {len(self.placement)} hosts for {self.ranks} ranks")
        if self.receiver >= self.ranks:
            raise ValueError(f"receiver {self.receiver} is not a rank (ranks: {self.ranks})")
        if self.shift is not None and self.shift % self.ranks == 0:
            raise ValueError(f"shift {self.shift} sends every rank to itself")
        return self


class WorkloadSpec(_Strict):
    jobs: Annotated[list[JobSpec], Field(min_length=1)] = [JobSpec()]

    @model_validator(mode="after")
    def _unique_names(self) -> WorkloadSpec:
        names = [j.name for j in self.jobs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"job names must be unique; repeated: {', '.join(dup)}")
        return self


class TracesSpec(_Strict):
    queue_interval_ns: Annotated[int, BeforeValidator(parse_ns), Field(ge=1)] = 10_000
    part_rows: Annotated[int, Field(ge=1)] = 16_384
    """Rows buffered per table before a Parquet part is written."""


class Scenario(_Strict):
    name: str = "default"
    seed: int = 1
    topology: TopologySpec = TopologySpec()
    nic: NicSpec = NicSpec()
    switch: SwitchSpec = SwitchSpec()
    lb: LbSpec = LbSpec()
    workload: WorkloadSpec = WorkloadSpec()
    traces: TracesSpec = TracesSpec()

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        hosts = self.topology.n_hosts
        used = 0
        for i, job in enumerate(self.workload.jobs):
            if job.ranks > hosts:
                raise _FieldError(("workload", "jobs", i, "ranks"), f"{job.ranks} ranks but the topology has {hosts} hosts")
            used += job.ranks
        if used > hosts:
            raise _FieldError(("workload", "jobs"), f"the jobs need {used} hosts but the topology has {hosts}")
        if self.lb.scheme == "planned" and self.topology.kind != "leaf_spine":
            raise _FieldError(("lb", "scheme"), f"planned routing supports leaf_spine topologies only "
                              f"(got {self.topology.kind})")
        return self


class _FieldError(ValueError):
    """A cross-field problem that belongs to a specific field."""

    def __init__(self, loc: tuple, msg: str) -> None:
        super().__init__(msg)
        self.loc = loc


# ---------------------------------------------------------------------------------------------
# Loading


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(str(path), "", f"cannot read {what}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(str(path), "", f"malformed YAML: {where}{problem}") from None


def preset_names(section: str) -> list[str]:
    names: set[str] = set()
    for base in (Path.cwd(), REPO_ROOT):
        d = base / PRESET_DIRS[section]
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resolve_ref(section: str, ref: str, origin: str) -> tuple[dict, str]:
    """A preset name or a path -> (mapping, the file it came from)."""
    candidates = [Path(ref)] if ref.endswith((".yaml", ".yml")) or "/" in ref else []
    candidates += [base / PRESET_DIRS[section] / f"{ref}.yaml" for base in (Path.cwd(), REPO_ROOT)]
    for path in candidates:
        if path.is_file():
            data = _read_yaml(path, section)
            if not isinstance(data, dict):
                raise InputError(str(path), "", f"a {section} file must be a mapping of fields")
            # A full scenario file may be given as a topology/workload: take its section.
            if section in data and isinstance(data[section], dict):
                data = data[section]
            return data, str(path) if str(path) == ref else _shown(path)
    known = ", ".join(preset_names(section)) or "none"
    raise InputError(origin, section, f"no preset or file named {ref!r} (presets: {known})")


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_path(data: dict, dotted: str, value: Any, origin: str) -> None:
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(origin, dotted, f"{'.'.join(keys[:i])} has no item {key}")
            node = node[int(key)]
            continue
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, (dict, list)):
            raise InputError(origin, dotted, f"{'.'.join(keys[: i + 1])} is not a section")
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise InputError(origin, dotted, f"no item {last}")
        node[int(last)] = value
    else:
        node[last] = value


def load_scenario(
    path: str | None = None,
    *,
    topology: str | None = None,
    workload: str | None = None,
    lb: str | None = None,
    seed: int | None = None,
    overrides: list[str] = (),
) -> Scenario:
    """Build and validate a scenario from a file (or the built-in default) and command-line options.

    ``overrides`` are ``key=value`` strings; the value is read as YAML (``8``, ``true``, ``[h0, h1]``).
    """
    origin = path or "default scenario"
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(Path(path), "scenario")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(path, "", "a scenario file must be a mapping of fields")
        data = loaded
    else:
        data = {"name": "default", "topology": "small", "workload": "ring_allreduce"}
    data = copy.deepcopy(data)

    # Which file each top-level section came from, to name it in errors.
    sources: dict[str, str] = {}
    sets: list[tuple[str, Any]] = []
    if topology is not None:
        data["topology"] = topology
        sources["topology"] = "--topology"
    if workload is not None:
        data["workload"] = workload
        sources["workload"] = "--workload"
    for item in overrides:
        if "=" not in item:
            raise InputError("--set", item, "expected key=value")
        key, text = item.split("=", 1)
        sets.append((key.strip(), _parse_value(text)))
    if lb is not None:
        sets.append(("lb.scheme", lb))
    if seed is not None:
        sets.append(("seed", seed))

    for section in PRESET_DIRS:
        ref = data.get(section)
        if isinstance(ref, str):
            data[section], sources[section] = _resolve_ref(section, ref, sources.get(section, origin))
    set_keys = {}
    for key, value in sets:
        _set_path(data, key, value, "--set")
        set_keys[key] = value

    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"]
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldError):
            loc, msg = ctx_err.loc, str(ctx_err)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        # Drop pydantic's union/tag noise such as 'literal['packed', ...]' from the location.
        loc = tuple(p for p in loc if isinstance(p, int) or not ("[" in p or p in ("list[str]", "str", "int")))
        field = _dotted(loc)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err['input']!r})"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            if repr(err["input"]) not in msg:
                msg = f"{msg} (got {err['input']!r})"
        source = origin
        for key in set_keys:
            norm = _dotted(tuple(int(k) if k.isdigit() else k for k in key.split(".")))
            if field and (field == norm or field.startswith(norm + ".") or norm.startswith(field + ".")):
                source = f"--set {key}"
        if source == origin and loc and loc[0] in sources:
            source = sources[loc[0]]
        raise InputError(source, field, msg) from None
