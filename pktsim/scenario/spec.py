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

from pktsim.errors import InputError
from pktsim.units import parse_bytes, parse_ns

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESET_DIRS = {"topology": "topologies", "workload": "workloads", "profile": "profiles"}

Bytes = Annotated[int, BeforeValidator(parse_bytes)]
OptionalBytes = Annotated[int | None, BeforeValidator(lambda v: v if v is None else parse_bytes(v))]
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
    spine_delay_ns: list[Nanoseconds] | None = None
    """Leaf-spine only: propagation delay of the links of each spine (one value per spine), for
    fabrics whose paths differ in length; default ``link_delay_ns`` everywhere."""

    @model_validator(mode="after")
    def _spine_delays(self) -> TopologySpec:
        if self.spine_delay_ns is not None:
            if self.kind != "leaf_spine":
                raise _FieldError(("topology", "spine_delay_ns"), "only for leaf_spine topologies")
            if len(self.spine_delay_ns) != self.spines:
                raise _FieldError(("topology", "spine_delay_ns"),
                                  f"gives {len(self.spine_delay_ns)} delays for {self.spines} spines")
        return self

    @property
    def max_link_delay_ns(self) -> int:
        return max([self.link_delay_ns, *(self.spine_delay_ns or [])])

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


class DcqcnSpec(_Strict):
    """DCQCN (Zhu et al., SIGCOMM 2015): the reaction point's rate control on the sender and the
    notification point's CNP generation on the receiver. Defaults are the paper's."""

    g: Annotated[float, Field(gt=0, lt=1)] = 1 / 256
    """Gain of the congestion estimate alpha."""
    cnp_interval_ns: Nanoseconds = 50_000
    """The receiver sends at most one CNP per connection in this interval (N in the paper)."""
    alpha_timer_ns: Annotated[int, BeforeValidator(parse_ns), Field(gt=0)] = 55_000
    """Alpha decays by (1 - g) after every such interval without a CNP (K in the paper)."""
    increase_timer_ns: Annotated[int, BeforeValidator(parse_ns), Field(gt=0)] = 55_000
    """Rate-increase timer (T in the paper)."""
    byte_counter_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = 10 * 10**6
    """Rate-increase byte counter (B in the paper)."""
    fast_recovery_steps: Positive = 5
    """Increase events in fast recovery before additive increase starts (F in the paper)."""
    rate_ai_gbps: Gbps = 0.04
    """Additive increase step of the target rate (R_AI, 40 Mb/s)."""
    rate_hai_gbps: Gbps = 0.4
    """Hyper increase step (R_HAI; the paper leaves it to the deployment: 10 x R_AI here)."""
    min_rate_gbps: Gbps = 0.1
    """Floor of the sending rate."""


class DctcpSpec(_Strict):
    """DCTCP-style window control (Alizadeh et al., SIGCOMM 2010) over the RDMA transport."""

    g: Annotated[float, Field(gt=0, lt=1)] = 1 / 16
    """Gain of the estimate alpha of the fraction of marked bytes, updated once per window."""
    init_window_bytes: OptionalBytes = None
    """Initial congestion window (default: the bandwidth-delay product of the host link over the
    longest base round trip of the fabric, so a lone flow starts at line rate)."""


class NicSpec(_Strict):
    mtu_bytes: Bytes = 4096
    header_bytes: Bytes = 64
    transport: Literal["ideal", "gbn", "sr"] = "ideal"
    """``ideal``: every byte sent once at line rate, no ACKs. ``gbn``: RoCE go-back-N (the
    receiver drops out-of-order packets and NACKs the expected one; the sender rewinds).
    ``sr``: selective repeat (IRN-style: out-of-order packets kept, selective ACKs; a packet is
    resent when a packet sent ``reorder_window_ns`` after it has been acknowledged, or on timeout)."""
    cc: Literal["none", "dcqcn", "dctcp"] = "none"
    """Congestion control: ``none`` sends at line rate; ``dcqcn`` paces each connection at a rate
    cut on CNPs; ``dctcp`` limits each connection's bytes in flight to a window cut by the fraction
    of ECN-marked bytes. Both need ``switch.ecn`` and a reliable transport."""
    ack_every: Positive = 1
    """Coalescing: the receiver acknowledges every this many in-order packets (and always the
    last packet of a message, and at once on anything out of order)."""
    ack_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(ge=1)] = 64
    """Size of ACK, NACK and CNP packets on the wire."""
    window_bytes: OptionalBytes = None
    """Cap on unacknowledged bytes per connection (rounded down to whole packets, at least one);
    none by default, as in RoCE."""
    rto_ns: Annotated[int, BeforeValidator(parse_ns), Field(gt=0)] = 1_000_000
    """Retransmission timeout: with data outstanding and no acknowledgement for this long, the
    sender resends from the first unacknowledged packet. One timer per connection."""
    reorder_window_ns: Nanoseconds = 20_000
    """``sr``: how much later than a missing packet another must have been sent, and acknowledged,
    before the missing one is declared lost (RACK-style; keeps reordering from triggering resends)."""
    dcqcn: DcqcnSpec = DcqcnSpec()
    dctcp: DctcpSpec = DctcpSpec()

    @model_validator(mode="after")
    def _payload(self) -> NicSpec:
        if self.header_bytes >= self.mtu_bytes:
            raise ValueError(f"header_bytes ({self.header_bytes}) must be smaller than mtu_bytes ({self.mtu_bytes})")
        if self.cc != "none" and self.transport == "ideal":
            raise _FieldError(("nic", "cc"), f"{self.cc} needs acknowledgements: set nic.transport to gbn or sr")
        return self

    @property
    def payload_bytes(self) -> int:
        return self.mtu_bytes - self.header_bytes


class PfcSpec(_Strict):
    """Priority flow control on the data priority, per ingress link of every switch."""

    enabled: bool = False
    xoff_bytes: Bytes = 256 * 2**10
    """An ingress link is paused when the bytes it brought into the switch exceed this."""
    xon_bytes: Bytes = 224 * 2**10
    """... and resumed when they fall back to this."""
    headroom_bytes: OptionalBytes = None
    """Bytes an ingress may bring above ``xoff_bytes`` while the pause travels and takes effect
    (default: the worst case, 2 x delay x rate of the fastest link + 2 MTU + the pause frame)."""


class EcnSpec(_Strict):
    """RED-style ECN marking at switch egress queues: no mark below ``kmin_bytes``, probability
    rising linearly to ``pmax`` at ``kmax_bytes``, every packet above. ``kmin == kmax`` is a step.
    Defaults are DCQCN's."""

    kmin_bytes: Bytes = 5_000
    kmax_bytes: Bytes = 200_000
    pmax: Annotated[float, Field(gt=0, le=1)] = 0.01

    @model_validator(mode="after")
    def _order(self) -> EcnSpec:
        if self.kmin_bytes > self.kmax_bytes:
            raise _FieldError(("switch", "ecn", "kmin_bytes"),
                              f"{self.kmin_bytes} is above kmax_bytes ({self.kmax_bytes})")
        return self


class SwitchSpec(_Strict):
    latency_ns: Nanoseconds = 0
    """Fixed forwarding latency added at every switch before the egress queue."""
    buffer_bytes: OptionalBytes = None
    """Shared packet buffer of each switch (none: unlimited)."""
    port_buffer_bytes: OptionalBytes = None
    """Static limit on each egress queue (none: only the shared buffer limits it)."""
    dt_alpha: Annotated[float | None, Field(gt=0)] = None
    """Dynamic thresholds (Choudhury-Hahne, as in Broadcom switches): an egress queue may grow to
    ``dt_alpha`` x the free shared buffer. Needs ``buffer_bytes``."""
    pfc: PfcSpec = PfcSpec()
    ecn: EcnSpec | None = None
    """ECN marking thresholds (none: no marking)."""

    @model_validator(mode="after")
    def _buffers(self) -> SwitchSpec:
        if self.dt_alpha is not None and self.buffer_bytes is None:
            raise _FieldError(("switch", "dt_alpha"), "dynamic thresholds need a shared buffer: set switch.buffer_bytes")
        pfc = self.pfc
        if pfc.enabled:
            if pfc.xon_bytes > pfc.xoff_bytes:
                raise _FieldError(("switch", "pfc", "xon_bytes"),
                                  f"{pfc.xon_bytes} is above xoff_bytes ({pfc.xoff_bytes})")
            if self.port_buffer_bytes is not None or self.dt_alpha is not None:
                raise _FieldError(("switch", "pfc", "enabled"), "PFC is lossless: egress drop limits "
                                  "(port_buffer_bytes, dt_alpha) would drop what PFC holds; remove them")
        return self

    @property
    def finite(self) -> bool:
        """True when some buffer limit can drop packets."""
        return self.buffer_bytes is not None or self.port_buffer_bytes is not None


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
    plan_scope: Literal["job", "cluster"] = "job"
    """``planned`` and ``split_minimal``: which flows a plan sees together. ``job``: one phase is one
    step of one collective op. ``cluster`` (C4-style whole-cluster planning): one phase is step k of
    iteration i of *every* job, for jobs that run in lockstep (same collective, same size)."""

    @model_validator(mode="after")
    def _planner_fields(self) -> LbSpec:
        if self.scheme != "planned" and self.planner != "edge_coloring":
            raise _FieldError(("lb", "planner"), f"only used with lb.scheme: planned (scheme is {self.scheme})")
        for name, default in (("planner_seed", None), ("annealing_steps", 20_000)):
            if getattr(self, name) != default and (self.scheme != "planned" or self.planner != "annealing"):
                raise _FieldError(("lb", name), "only used with lb.scheme: planned and lb.planner: annealing")
        if self.plan_scope != "job" and self.scheme not in ("planned", "split_minimal"):
            raise _FieldError(("lb", "plan_scope"), f"only used with lb.scheme: planned or split_minimal "
                              f"(scheme is {self.scheme})")
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
    profile: str | None = None
    """The network profile (``profiles/<name>.yaml``) the nic and switch sections started from."""
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
        self._check_transport()
        if self.lb.scheme == "planned" and self.topology.kind != "leaf_spine":
            raise _FieldError(("lb", "scheme"), f"planned routing supports leaf_spine topologies only "
                              f"(got {self.topology.kind})")
        return self

    def _check_transport(self) -> None:
        nic, sw, topo = self.nic, self.switch, self.topology
        if nic.cc != "none" and sw.ecn is None:
            raise _FieldError(("nic", "cc"), f"{nic.cc} reacts to ECN marks: set switch.ecn")
        if sw.finite and not sw.pfc.enabled and nic.transport == "ideal":
            raise _FieldError(("switch", "buffer_bytes" if sw.buffer_bytes is not None else "port_buffer_bytes"),
                              "a finite buffer without PFC drops packets and the ideal transport never "
                              "resends: set nic.transport to gbn or sr, or enable switch.pfc")
        if sw.pfc.enabled:
            need = pfc_headroom_bytes(self)
            headroom = sw.pfc.headroom_bytes
            if headroom is not None and headroom < need:
                raise _FieldError(("switch", "pfc", "headroom_bytes"),
                                  f"{headroom} cannot absorb what arrives while a pause takes effect "
                                  f"(2 x delay x rate + 2 MTU + pause frame = {need})")
            if sw.buffer_bytes is not None:
                ports = max_switch_ports(topo)
                per_port = sw.pfc.xoff_bytes + (headroom if headroom is not None else need)
                if ports * per_port > sw.buffer_bytes:
                    raise _FieldError(("switch", "pfc", "xoff_bytes"),
                                      f"PFC thresholds above the buffer: {ports} ports x (xoff {sw.pfc.xoff_bytes}"
                                      f" + headroom {per_port - sw.pfc.xoff_bytes}) = {ports * per_port} bytes > "
                                      f"switch.buffer_bytes {sw.buffer_bytes}")


PAUSE_FRAME_BYTES = 64


def pfc_headroom_bytes(scenario: Scenario) -> int:
    """Bytes that can still reach a switch on one link after it decides to pause that link: the
    pause frame's flight and the upstream's reaction (a round trip of the fastest, longest link and
    its switch latency at line rate), the packet being serialised upstream and the one crossing
    xoff, and the pause frame itself."""
    topo = scenario.topology
    gbps = max(topo.link_gbps, topo.host_gbps)
    rtt_ns = 2 * (topo.max_link_delay_ns + scenario.switch.latency_ns)
    return -(-rtt_ns * round(gbps * 1000) // 8000) + 2 * scenario.nic.mtu_bytes + PAUSE_FRAME_BYTES


def max_switch_ports(topo: TopologySpec) -> int:
    """Ports of the largest switch of the topology."""
    if topo.kind == "fat_tree":
        return topo.k
    return max(topo.hosts_per_leaf + topo.spines, topo.leaves)


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


PROFILE_SECTIONS = ("nic", "switch")


def _merged(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``, mappings merged key by key."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _apply_profile(data: dict, ref: str, origin: str, sources: dict[str, str]) -> None:
    """Start the nic and switch sections from the network profile ``ref``; what the scenario
    itself says about them wins."""
    prof, source = _resolve_ref("profile", ref, origin)
    extra = sorted(set(prof) - set(PROFILE_SECTIONS))
    if extra:
        raise InputError(source, extra[0], f"a profile sets only {' and '.join(PROFILE_SECTIONS)}")
    for section in PROFILE_SECTIONS:
        if section in prof:
            data[section] = _merged(prof[section], data.get(section) or {})
            sources.setdefault(section, source)
    data["profile"] = Path(ref).stem


def load_scenario(
    path: str | None = None,
    *,
    topology: str | None = None,
    workload: str | None = None,
    lb: str | None = None,
    seed: int | None = None,
    profile: str | None = None,
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

    if profile is not None:
        data["profile"] = profile
        sources["profile"] = "--profile"
    ref = data.get("profile")
    if isinstance(ref, str):
        _apply_profile(data, ref, sources.get("profile", origin), sources)
    for section in ("topology", "workload"):
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
