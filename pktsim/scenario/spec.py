"""Scenario spec: the pydantic models of what a run simulates, and their validation.

A scenario has four parts (topology, nic/switch/lb, workload, traces). Every model is strict
(unknown fields are errors, values are not coerced: ``true`` is not a count) and frozen, and every
count, size, rate and time has a range (:mod:`pktsim.scenario.limits`, which also refuses
scenarios whose projected work is too large). Reading scenario files, presets, profiles and ``--set``
overrides, and turning pydantic's errors into one-line :class:`~pktsim.errors.InputError` s, is
:mod:`pktsim.scenario.loading`. The lists of allowed names (load-balancing schemes, planners,
collectives, topology kinds) are read from the registries where they are implemented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PrivateAttr, Tag, model_validator,
)

from pktsim.fabric.pfc import pfc_headroom_bytes
from pktsim.fabric.selectors import SCHEMES, fields_read
from pktsim.fabric.topology import TOPOLOGY_KINDS
from pktsim.packet.cc import CONGESTION_CONTROLS
from pktsim.packet.recovery import LOSS_RECOVERIES
from pktsim.planning.planners import PLANNERS
from pktsim.scenario import limits as lim
from pktsim.units import parse_bytes, parse_gbps, parse_ns
from pktsim.workload.collectives import COLLECTIVES

if TYPE_CHECKING:
    import networkx as nx

# ---------------------------------------------------------------------------------------------
# Field types: every count, size, rate and time has a range (pktsim.scenario.limits, README
# "Scenario files"). Models are strict: no bool where an int is expected, no "4" for 4.


def _show_bytes(n: int) -> str:
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} byte{'s' if n != 1 else ''}"


def _show_ns(n: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if n >= size and n % size == 0:
            return f"{n // size:,} {unit}"
    return f"{n:,} ns"


def _show_gbps(g: float) -> str:
    if g >= 1000:
        return f"{g / 1000:g} Tbit/s"
    return f"{g:g} Gbit/s" if g >= 1 else f"{g * 1000:g} Mbit/s"


def _in_range(parse: Callable[[Any], Any], lo: Any, hi: Any, show: Callable[[Any], str],
              optional: bool = False) -> BeforeValidator:
    def check(value: Any) -> Any:
        if optional and value is None:
            return None
        n = parse(value)
        if n < lo:
            raise ValueError(f"must be at least {show(lo)}")
        if n > hi:
            raise ValueError(f"must be at most {show(hi)}")
        return n
    return BeforeValidator(check)


def Size(lo: int = 0, hi: int = lim.MAX_BUFFER_BYTES, optional: bool = False) -> Any:
    """Bytes (an integer, or with a unit: ``64MiB``, ``1MB``) in ``[lo, hi]``."""
    return Annotated[int | None if optional else int, _in_range(parse_bytes, lo, hi, _show_bytes, optional)]


def Time(lo: int = 0, hi: int = lim.MAX_TIME_NS, optional: bool = False) -> Any:
    """Nanoseconds (an integer, or with a unit: ``10us``) in ``[lo, hi]``."""
    return Annotated[int | None if optional else int, _in_range(parse_ns, lo, hi, _show_ns, optional)]


def Rate(lo: float = lim.MIN_GBPS, hi: float = lim.MAX_GBPS, optional: bool = False) -> Any:
    """Gbit/s (a number, or with a unit: ``400G``, ``400Gbps``, ``1.6T``, ``100Mbps``) in ``[lo, hi]``."""
    return Annotated[float | None if optional else float, _in_range(parse_gbps, lo, hi, _show_gbps, optional)]


def Count(lo: int, hi: int) -> Any:
    """A whole number in ``[lo, hi]`` (strict: ``true`` and ``4.0`` are refused)."""
    return Annotated[int, Field(ge=lo, le=hi)]


def _no_path(name: str) -> str:
    if any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        raise ValueError("must not contain '/', '\\' or control characters (it names the run directory)")
    return name


Bytes = Size()
OptionalBytes = Size(optional=True)
Nanoseconds = Time()
Positive = Count(1, lim.MAX_SMALL_COUNT)
Gbps = Rate()
Delay = Time(0, lim.MAX_DELAY_NS)
"""Link delays and switch latency."""
Seed = Count(0, lim.MAX_SEED)
Name = Annotated[str, Field(min_length=1, max_length=lim.MAX_NAME_CHARS)]


class _FieldError(ValueError):
    """A cross-field problem that belongs to a specific field (``loc`` from the scenario's root);
    ``involves``: the other fields it depends on (the error is blamed on whichever of them was
    written last, e.g. ``--set topology.leaves=2`` for "16 ranks but the topology has 8 hosts")."""

    def __init__(self, loc: tuple, msg: str, involves: tuple[tuple, ...] = ()) -> None:
        super().__init__(msg)
        self.loc = loc
        self.involves = involves


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------
# Topology: one spec per kind (a union discriminated by ``kind``, leaf_spine when omitted)


class TopologySpec(_Strict):
    """What every kind of topology knows about itself. One subclass per kind of
    :data:`~pktsim.fabric.topology.TOPOLOGY_KINDS`; the fields of one kind are errors on another
    ("topology.k: only for fat_tree topologies")."""

    kind: str

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_kinds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in data:
            if name not in cls.model_fields and name in _owners():
                raise _FieldError(("topology", name), f"only for {' or '.join(_owners()[name])} topologies")
        return data

    @property
    def host_gbps(self) -> float:
        """Rate of the host-to-ToR links."""
        return self.host_link_gbps if self.host_link_gbps is not None else self.link_gbps

    @property
    def n_hosts(self) -> int:
        raise NotImplementedError

    @property
    def hosts_per_tor(self) -> int:
        """Hosts under each top-of-rack switch (leaf, edge); hosts are numbered ToR by ToR."""
        raise NotImplementedError

    @property
    def max_switch_ports(self) -> int:
        """Ports of the largest switch."""
        raise NotImplementedError

    @property
    def n_tors(self) -> int:
        """Top-of-rack switches (leaves, edges): the destinations of the routing tables."""
        raise NotImplementedError

    @property
    def n_fabric_ports(self) -> int:
        """Switch ports facing other switches (twice the switch-to-switch links)."""
        raise NotImplementedError

    @property
    def n_switch_ports(self) -> int:
        """Ports of all switches: fabric-facing and host-facing."""
        return self.n_fabric_ports + self.n_hosts

    def size_fields(self) -> dict[str, int]:
        """The fields that size the fabric, each with its smallest value (to find the one most
        responsible for a projection above a limit)."""
        raise NotImplementedError

    @property
    def max_link_delay_ns(self) -> int:
        """Propagation delay of the longest link."""
        raise NotImplementedError

    @property
    def max_path_links(self) -> int:
        """Links on the longest shortest path between two hosts."""
        raise NotImplementedError

    def build_graph(self) -> nx.Graph:
        """The fabric as a networkx graph (see :mod:`pktsim.fabric.topology`)."""
        return TOPOLOGY_KINDS[self.kind](self)


class LeafSpineSpec(TopologySpec):
    """Two-tier Clos: every leaf connects to every spine; hosts hang off leaves."""

    kind: Literal["leaf_spine"] = "leaf_spine"
    spines: Count(1, lim.MAX_COUNT) = 4
    leaves: Count(1, lim.MAX_COUNT) = 8
    hosts_per_leaf: Count(1, lim.MAX_COUNT) = 4
    link_gbps: Gbps = 100.0
    host_link_gbps: Rate(optional=True) = None
    link_delay_ns: Delay = 1000
    spine_delay_ns: Annotated[list[Delay], Field(max_length=lim.MAX_COUNT)] | None = None
    """Propagation delay of the links of each spine (one value per spine), for fabrics whose paths
    differ in length; default ``link_delay_ns`` everywhere."""

    @model_validator(mode="after")
    def _spine_delays(self) -> LeafSpineSpec:
        if self.spine_delay_ns is not None and len(self.spine_delay_ns) != self.spines:
            raise _FieldError(("topology", "spine_delay_ns"),
                              f"gives {len(self.spine_delay_ns)} delays for {self.spines} spines",
                              involves=(("topology", "spines"),))
        return self

    @property
    def n_hosts(self) -> int:
        return self.leaves * self.hosts_per_leaf

    @property
    def hosts_per_tor(self) -> int:
        return self.hosts_per_leaf

    @property
    def max_switch_ports(self) -> int:
        return max(self.hosts_per_leaf + self.spines, self.leaves)

    @property
    def n_tors(self) -> int:
        return self.leaves

    @property
    def n_fabric_ports(self) -> int:
        return 2 * self.leaves * self.spines

    def size_fields(self) -> dict[str, int]:
        return {"spines": 1, "leaves": 1, "hosts_per_leaf": 1}

    @property
    def max_link_delay_ns(self) -> int:
        return max([self.link_delay_ns, *(self.spine_delay_ns or [])])

    @property
    def max_path_links(self) -> int:
        return 4  # host, leaf, spine, leaf, host


class FatTreeSpec(TopologySpec):
    """Three-tier k-ary fat-tree (Al-Fares et al.)."""

    kind: Literal["fat_tree"] = "fat_tree"
    k: Annotated[int, Field(ge=2, le=lim.MAX_FAT_TREE_K, multiple_of=2)] = 4
    """Arity: k pods of k/2 edge and k/2 aggregation switches, (k/2)^2 cores, k^3/4 hosts."""
    link_gbps: Gbps = 100.0
    host_link_gbps: Rate(optional=True) = None
    link_delay_ns: Delay = 1000

    @property
    def n_hosts(self) -> int:
        return self.k**3 // 4

    @property
    def hosts_per_tor(self) -> int:
        return self.k // 2

    @property
    def max_switch_ports(self) -> int:
        return self.k

    @property
    def n_tors(self) -> int:
        return self.k**2 // 2

    @property
    def n_fabric_ports(self) -> int:
        return self.k**3  # k^3/4 edge-agg and k^3/4 agg-core links, two ports each

    def size_fields(self) -> dict[str, int]:
        return {"k": 2}

    @property
    def max_link_delay_ns(self) -> int:
        return self.link_delay_ns

    @property
    def max_path_links(self) -> int:
        return 6  # host, edge, agg, core, agg, edge, host


TOPOLOGY_SPECS: dict[str, type[TopologySpec]] = {"leaf_spine": LeafSpineSpec, "fat_tree": FatTreeSpec}
"""``topology.kind`` -> its spec class."""
if tuple(TOPOLOGY_SPECS) != TOPOLOGY_KINDS.names():
    raise ImportError(f"topology kinds with a spec {tuple(TOPOLOGY_SPECS)} differ from those with a graph "
                      f"builder {TOPOLOGY_KINDS.names()} (pktsim.fabric.topology.TOPOLOGY_KINDS)")

TopologyKind = Literal[TOPOLOGY_KINDS.names()]
DEFAULT_TOPOLOGY_KIND = "leaf_spine"


def _owners() -> dict[str, list[str]]:
    """Field name -> the kinds that have it."""
    out: dict[str, list[str]] = {}
    for kind, cls in TOPOLOGY_SPECS.items():
        for name in cls.model_fields:
            out.setdefault(name, []).append(kind)
    return out


def _topology_kind(value: Any) -> Any:
    """The discriminator: ``kind``, leaf_spine when omitted."""
    if isinstance(value, dict):
        return value.get("kind", DEFAULT_TOPOLOGY_KIND)
    return getattr(value, "kind", DEFAULT_TOPOLOGY_KIND)


AnyTopology = Annotated[
    Union[tuple(Annotated[TOPOLOGY_SPECS[kind], Tag(kind)] for kind in TOPOLOGY_KINDS.names())],
    Discriminator(_topology_kind),
]
"""The scenario's ``topology``: the spec of its kind."""


# ---------------------------------------------------------------------------------------------
# NIC, switch, load balancing, workload, traces


class DcqcnSpec(_Strict):
    """DCQCN (Zhu et al., SIGCOMM 2015): the reaction point's rate control on the sender and the
    notification point's CNP generation on the receiver. Defaults are the paper's."""

    g: Annotated[float, Field(gt=0, lt=1)] = 1 / 256
    """Gain of the congestion estimate alpha."""
    cnp_interval_ns: Nanoseconds = 50_000
    """The receiver sends at most one CNP per connection in this interval (N in the paper)."""
    alpha_timer_ns: Time(1) = 55_000
    """Alpha decays by (1 - g) after every such interval without a CNP (K in the paper)."""
    increase_timer_ns: Time(1) = 55_000
    """Rate-increase timer (T in the paper)."""
    byte_counter_bytes: Size(1) = 10 * 10**6
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
    init_window_bytes: Size(1, optional=True) = None
    """Initial congestion window (default: the bandwidth-delay product of the host link over the
    longest base round trip of the fabric, so a lone flow starts at line rate)."""


class NicSpec(_Strict):
    mtu_bytes: Size(1, lim.MAX_PACKET_BYTES) = 4096
    header_bytes: Size(0, lim.MAX_PACKET_BYTES - 1) = 64
    transport: Literal[LOSS_RECOVERIES.names()] = "ideal"
    """``ideal``: every byte sent once at line rate, no ACKs. ``gbn``: RoCE go-back-N (the
    receiver drops out-of-order packets and NACKs the expected one; the sender rewinds).
    ``sr``: selective repeat (IRN-style: out-of-order packets kept, selective ACKs; a packet is
    resent when a packet sent ``reorder_window_ns`` after it has been acknowledged, or on timeout)."""
    cc: Literal[CONGESTION_CONTROLS.names()] = "none"
    """Congestion control: ``none`` sends at line rate; ``dcqcn`` paces each connection at a rate
    cut on CNPs; ``dctcp`` limits each connection's bytes in flight to a window cut by the fraction
    of ECN-marked bytes. Both need ``switch.ecn`` and a reliable transport."""
    ack_every: Count(1, lim.MAX_SMALL_COUNT) = 1
    """Coalescing: the receiver acknowledges every this many in-order packets (and always the
    last packet of a message, and at once on anything out of order)."""
    ack_bytes: Size(1, lim.MAX_PACKET_BYTES) = 64
    """Size of ACK, NACK and CNP packets on the wire."""
    window_bytes: Size(1, optional=True) = None
    """Cap on unacknowledged bytes per connection (rounded down to whole packets, at least one);
    none by default, as in RoCE."""
    rto_ns: Time(1) = 1_000_000
    """Retransmission timeout: with data outstanding and no acknowledgement for this long, the
    sender resends from the first unacknowledged packet. One timer per connection."""
    reorder_window_ns: Nanoseconds = 20_000
    """``sr`` with ``reorder_adaptive: false``: the fixed reordering window, how much later than a
    missing packet another must have been sent, and acknowledged, before the missing one is
    declared lost. Unused by the adaptive window."""
    reorder_adaptive: bool = True
    """``sr``: RACK-TLP (RFC 8985) loss detection: the reordering window is a multiple of
    ``reorder_min_rtt_fraction`` x the connection's measured minimum RTT, grown when a resend
    turns out spurious (DSACK), back to one unit after 16 loss recoveries without one.
    ``false``: the fixed ``reorder_window_ns`` (and no loss probe)."""
    reorder_min_rtt_fraction: Annotated[float, Field(gt=0, le=16)] = 0.25
    """``sr``: the adaptive reordering window's unit, a fraction of the minimum RTT (RFC: 1/4)."""
    reorder_mult_max: Positive = 255
    """``sr``: the most units the adaptive reordering window grows to (Linux's cap)."""
    reorder_headroom: Annotated[float, Field(ge=0, le=100)] = 2.0
    """``sr``: the adaptive window also grows to this many times the lateness of any packet
    delivered out of order (how much later than the most recently sent packet delivered's round
    trip after its own send time it arrived), so growing reordering is followed before it causes
    resends. 0: only DSACKs grow the window, as in RFC 8985."""
    loss_probe: bool = True
    """``sr`` with the adaptive window: a tail loss probe (TLP) after two smoothed RTTs without an
    ACK, so a lost last packet does not wait for ``rto_ns``."""
    dcqcn: DcqcnSpec = DcqcnSpec()
    dctcp: DctcpSpec = DctcpSpec()

    @model_validator(mode="after")
    def _payload(self) -> NicSpec:
        if self.header_bytes >= self.mtu_bytes:
            raise ValueError(f"header_bytes ({self.header_bytes}) must be smaller than mtu_bytes ({self.mtu_bytes})")
        if self.cc != "none" and self.transport == "ideal":
            raise _FieldError(("nic", "cc"), f"{self.cc} needs acknowledgements: set nic.transport to gbn or sr",
                              involves=(("nic", "transport"),))
        if self.reorder_adaptive and self.reorder_window_ns != type(self).model_fields["reorder_window_ns"].default:
            raise _FieldError(("nic", "reorder_window_ns"), "the fixed reordering window is used only with "
                              "nic.reorder_adaptive: false (the adaptive window learns it)",
                              involves=(("nic", "reorder_adaptive"),))
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
                              f"{self.kmin_bytes} is above kmax_bytes ({self.kmax_bytes})",
                              involves=(("switch", "ecn", "kmax_bytes"),))
        return self


class SwitchSpec(_Strict):
    latency_ns: Delay = 0
    """Fixed forwarding latency added at every switch before the egress queue."""
    buffer_bytes: Size(1, optional=True) = None
    """Shared packet buffer of each switch (none: unlimited)."""
    port_buffer_bytes: Size(1, optional=True) = None
    """Static limit on each egress queue (none: only the shared buffer limits it)."""
    dt_alpha: Annotated[float | None, Field(gt=0, le=1024)] = None
    """Dynamic thresholds (Choudhury-Hahne, as in Broadcom switches): an egress queue may grow to
    ``dt_alpha`` x the free shared buffer. Needs ``buffer_bytes``."""
    pfc: PfcSpec = PfcSpec()
    ecn: EcnSpec | None = None
    """ECN marking thresholds (none: no marking)."""

    @model_validator(mode="after")
    def _buffers(self) -> SwitchSpec:
        if self.dt_alpha is not None and self.buffer_bytes is None:
            raise _FieldError(("switch", "dt_alpha"), "dynamic thresholds need a shared buffer: set switch.buffer_bytes",
                              involves=(("switch", "buffer_bytes"),))
        pfc = self.pfc
        if pfc.enabled:
            if pfc.xon_bytes > pfc.xoff_bytes:
                raise _FieldError(("switch", "pfc", "xon_bytes"),
                                  f"{pfc.xon_bytes} is above xoff_bytes ({pfc.xoff_bytes})",
                                  involves=(("switch", "pfc", "xoff_bytes"),))
            if self.port_buffer_bytes is not None or self.dt_alpha is not None:
                raise _FieldError(("switch", "pfc", "enabled"), "PFC is lossless: egress drop limits "
                                  "(port_buffer_bytes, dt_alpha) would drop what PFC holds; remove them",
                                  involves=(("switch", "port_buffer_bytes"), ("switch", "dt_alpha")))
        return self

    @property
    def finite(self) -> bool:
        """True when some buffer limit can drop packets."""
        return self.buffer_bytes is not None or self.port_buffer_bytes is not None


LB_SCHEMES: tuple[str, ...] = SCHEMES.names()
LbScheme = Literal[LB_SCHEMES]
PlannerName = Literal[PLANNERS.names()]


class LbSpec(_Strict):
    scheme: LbScheme = "ecmp"
    subflows: Count(1, lim.MAX_PARALLEL) = 1
    flowlet_gap_ns: Time(1) = 10_000
    """``flowlet``: idle time after which a switch may move a flow to another next hop. The default,
    10 us, is about one base round trip of the preset fabrics (1 us links) and much more than the
    queueing skew between their paths, so a re-pick rarely reorders; it is far below the compute
    gaps between training iterations, so every message starts a new flowlet."""
    adaptive_choices: Count(0, lim.MAX_PARALLEL) = 0
    """``adaptive``: how many equal-cost next hops a switch samples per packet before taking the
    least loaded: 0 = all of them (exact least backlog), 2 = power-of-two choices, d >= the group
    size = all of them."""
    planner: PlannerName = "edge_coloring"
    """``planned``: how each phase's flows are assigned to spines (see :mod:`pktsim.planning.planners`)."""
    planner_seed: Seed | None = None
    """``planned`` with ``annealing``: the annealer's seed (default: the scenario seed)."""
    annealing_steps: Count(1, lim.MAX_ANNEALING_STEPS) = 20_000
    """``planned`` with ``annealing``: moves tried per phase (fewer if it reaches the lower bound)."""
    time_limit_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """``planned`` with ``ilp``: the solver's wall-clock limit per plan (s); the best plan found by
    then is kept and its MIP gap reported in the run's warnings."""
    plan_scope: Literal["job", "cluster", "connection"] = "job"
    """``planned`` and ``split_minimal``: which flows a plan sees together. ``job``: one phase is one
    step of one collective op. ``cluster`` (C4-style whole-cluster planning): one phase is step k of
    iteration i of every job in lockstep with each other (same collective, bytes, ranks, iterations,
    channels, slices, start; a job with no such partner is planned alone). ``connection``
    (``planned`` only): persistent connections, all jobs together, planned at time 0 from each job's
    first phase and re-planned every ``replan_ns`` from the bytes posted on them in the last window
    (:mod:`pktsim.planning.flow_plan`)."""
    replan_ns: Time(1) = 1_000_000
    """``plan_scope: connection``: the period of the re-plans. 1 ms: a window holds several steps of
    the preset collectives (a 16 MiB ring step at 100 Gbit/s takes about 85 us), so a re-plan sees
    steady traffic rather than one step, and it is short against a training iteration (tens of ms),
    so the routes follow a job's change of collective within an iteration."""
    reps_buffer: Count(1, lim.MAX_PARALLEL) | None = None
    """``reps``: how many entropies acknowledged unmarked each connection keeps for reuse (REPS's
    circular buffer, :mod:`pktsim.packet.reps`). Default (null): one bandwidth-delay product in
    packets (host link rate x the fabric's longest base round trip / MTU, as DCTCP's initial
    window; 29 on ``bench``), so a connection keeps a whole window of good entropies from one
    message to its next instead of exploring again."""

    @model_validator(mode="after")
    def _planner_fields(self) -> LbSpec:
        if self.scheme != "planned" and self.planner != "edge_coloring":
            raise _FieldError(("lb", "planner"), f"only used with lb.scheme: planned (scheme is {self.scheme})",
                              involves=(("lb", "scheme"),))
        for name, planner in (("planner_seed", "annealing"), ("annealing_steps", "annealing"),
                              ("time_limit_s", "ilp")):
            if getattr(self, name) != type(self).model_fields[name].default and (
                    self.scheme != "planned" or self.planner != planner):
                raise _FieldError(("lb", name), f"only used with lb.scheme: planned and lb.planner: {planner}",
                                  involves=(("lb", "scheme"), ("lb", "planner")))
        if self.plan_scope == "connection" and self.scheme != "planned":
            raise _FieldError(("lb", "plan_scope"), "connection is only for lb.scheme: planned (split_minimal cuts "
                              "each phase's flows by how many share a leaf pair, which no window of connections "
                              "fixes)", involves=(("lb", "scheme"),))
        if self.plan_scope != "job" and self.scheme not in ("planned", "split_minimal"):
            raise _FieldError(("lb", "plan_scope"), f"only used with lb.scheme: planned or split_minimal "
                              f"(scheme is {self.scheme})", involves=(("lb", "scheme"),))
        if self.replan_ns != type(self).model_fields["replan_ns"].default and self.plan_scope != "connection":
            raise _FieldError(("lb", "replan_ns"), f"only used with lb.plan_scope: connection (plan_scope is "
                              f"{self.plan_scope})", involves=(("lb", "plan_scope"),))
        reads = {scheme: fields_read(scheme, self) for scheme in SCHEMES}
        for name, spec in type(self).model_fields.items():  # in field order: the same error every run
            schemes = [scheme for scheme, names in reads.items() if name in names]
            if schemes and self.scheme not in schemes and getattr(self, name) != spec.default:
                raise _FieldError(("lb", name), f"only used with lb.scheme: {' or '.join(schemes)} "
                                  f"(scheme is {self.scheme})", involves=(("lb", "scheme"),))
        if self.scheme != "reps" and self.reps_buffer is not None:
            raise _FieldError(("lb", "reps_buffer"), f"only used with lb.scheme: reps (scheme is {self.scheme})",
                              involves=(("lb", "scheme"),))
        return self


Collective = Literal[COLLECTIVES.names()]


class JobSpec(_Strict):
    name: Name = "job0"
    collective: Collective = "ring_allreduce"
    bytes: Size(1, lim.MAX_MESSAGE_BYTES) = 16 * 2**20
    """Per-rank buffer size of the collective (permutation/incast: bytes per sender)."""
    ranks: Count(2, lim.MAX_COUNT) = 16
    placement: Literal["packed", "random", "strided"] | Annotated[list[str], Field(max_length=lim.MAX_COUNT)] = "packed"
    stride: Count(1, lim.MAX_COUNT) | None = None
    """Host stride for ``strided`` placement (default: hosts per leaf, so ranks round-robin over leaves)."""
    iterations: Count(1, lim.MAX_SMALL_COUNT) = 1
    start_ns: Nanoseconds = 0
    compute_gap_ns: Nanoseconds = 0
    """Compute time between the end of one iteration and the start of the next."""
    channels: Count(1, lim.MAX_PARALLEL) = 1
    """Parallel rings (NCCL channels), each carrying bytes/channels on its own connections."""
    slices: Count(1, lim.MAX_PARALLEL) = 1
    """Pipelined pieces each ring step is cut into."""
    shift: Count(-lim.MAX_COUNT, lim.MAX_COUNT) | None = None
    """Permutation: rank r sends to (r + shift) mod ranks; default a seeded random derangement."""
    receiver: Count(0, lim.MAX_COUNT) = 0
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
    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=lim.MAX_JOBS)] = [JobSpec()]

    @model_validator(mode="after")
    def _unique_names(self) -> WorkloadSpec:
        names = [j.name for j in self.jobs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"job names must be unique; repeated: {', '.join(dup)}")
        return self


# ---------------------------------------------------------------------------------------------
# Faults and the fabric's reaction to them (see pktsim.fabric.faults)


class _LinkFault(_Strict):
    """A fault on a link: both directions by default; ``direction: up`` (toward the spines) or
    ``down`` (toward the hosts) for one, or ``oneway: true`` for ``link[0] -> link[1]`` only."""

    at_ns: Nanoseconds = 0
    link: Annotated[list[Name], Field(min_length=2, max_length=2)]
    direction: Literal["both", "up", "down"] = "both"
    oneway: bool = False

    @model_validator(mode="after")
    def _one_way_once(self) -> _LinkFault:
        if self.oneway and self.direction != "both":
            raise ValueError("give either direction (up | down) or oneway: true, not both")
        if self.link[0] == self.link[1]:
            raise ValueError(f"a link joins two different nodes (got [{self.link[0]}, {self.link[1]}])")
        return self


class LinkDownSpec(_LinkFault):
    """The link stops carrying packets: what is on it and queued for it is lost."""

    kind: Literal["link_down"] = "link_down"


class LinkUpSpec(_LinkFault):
    """A link that went down carries packets again."""

    kind: Literal["link_up"] = "link_up"


class LinkDegradeSpec(_LinkFault):
    """The link's rate changes (a flapping optic, a lane down): ``gbps`` from ``at_ns`` on."""

    kind: Literal["link_degrade"] = "link_degrade"
    gbps: Gbps


class LinkLossSpec(_LinkFault):
    """Each packet crossing the link is lost with probability ``drop_rate`` (corruption)."""

    kind: Literal["link_loss"] = "link_loss"
    drop_rate: Annotated[float, Field(gt=0, le=1)]


class StragglerSpec(_Strict):
    """A slow GPU: from ``at_ns`` on, the compute gaps before ``host``'s messages (the job's
    ``compute_gap_ns``) last ``compute_factor`` times longer."""

    kind: Literal["straggler"] = "straggler"
    at_ns: Nanoseconds = 0
    host: Name
    compute_factor: Annotated[float, Field(gt=0, le=1000)]


FAULT_SPECS = (LinkDownSpec, LinkUpSpec, LinkDegradeSpec, LinkLossSpec, StragglerSpec)
FAULT_KINDS: tuple[str, ...] = tuple(s.model_fields["kind"].default for s in FAULT_SPECS)
AnyFault = Annotated[Union[tuple(Annotated[s, Tag(s.model_fields["kind"].default)] for s in FAULT_SPECS)],
                     Discriminator(lambda v: v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None))]


def _fault_time(value: Any) -> Any:
    """``random.at``: floats are fractions of the fault-free run's makespan, integers or strings
    with units are ns."""
    if isinstance(value, float):
        if not 0 <= value < 1:
            raise ValueError(f"a fraction of the fault-free run must be in [0, 1) (got {value})")
        return value
    n = parse_ns(value)
    if n > lim.MAX_TIME_NS:
        raise ValueError(f"must be at most {_show_ns(lim.MAX_TIME_NS)}")
    return n


class RandomFaultsSpec(_Strict):
    """Faults picked reproducibly for a study: ``count`` faults of the given kinds on links of
    ``tier`` (``fabric``: switch to switch; ``host``: host to ToR; ``any``) or, for stragglers, on
    hosts of the workload, at times drawn uniformly in ``at`` (fractions of the fault-free run's
    makespan, or ns)."""

    count: Count(1, lim.MAX_FAULTS) = 1
    kinds: Annotated[list[Literal["link_down", "link_degrade", "link_loss", "straggler"]],
                     Field(min_length=1, max_length=8)] = ["link_down"]
    tier: Literal["fabric", "host", "any"] = "fabric"
    at: Annotated[list[Annotated[Any, BeforeValidator(_fault_time)]], Field(min_length=2, max_length=2)] = [0.2, 0.6]
    seed: Seed | None = None
    """The draws' seed (default: the scenario's ``seed``, so every seed of a sweep draws anew)."""
    degrade_to: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """``link_degrade``: the new rate as a fraction of the link's."""
    drop_rate: Annotated[float, Field(gt=0, le=1)] = 0.01
    """``link_loss``: the probability each packet is lost."""
    compute_factor: Annotated[float, Field(gt=0, le=1000)] = 1.5
    """``straggler``: how much longer the slow rank's compute gaps last."""

    @model_validator(mode="after")
    def _window(self) -> RandomFaultsSpec:
        lo, hi = self.at
        if isinstance(lo, float) != isinstance(hi, float):
            raise ValueError("give both ends of at as fractions (0.2) or both as times (200us)")
        if lo > hi:
            raise ValueError(f"at: the window ends before it starts ({lo} > {hi})")
        return self

    @property
    def fractional(self) -> bool:
        """True when the times are fractions of the fault-free run (it must run first)."""
        return isinstance(self.at[0], float)


class RandomFaults(_Strict):
    random: RandomFaultsSpec


class RoutingSpec(_Strict):
    """How long the fabric takes to react to a link going down or up (ns)."""

    detect_ns: Delay = 100_000
    """Until the switches at both ends of the link stop (or resume) using it (BFD / loss of signal)."""
    converge_ns: Delay = 1_000_000
    """Until every switch avoids next hops whose only way to the destination crossed it."""
    replan_ns: Delay = 10_000_000
    """Until a central planner (``planned``, ``split_minimal``) has re-planned around it."""

    @model_validator(mode="after")
    def _order(self) -> RoutingSpec:
        if self.converge_ns < self.detect_ns:
            raise _FieldError(("routing", "converge_ns"), f"{self.converge_ns} is before detection "
                              f"(detect_ns {self.detect_ns}): the switches upstream learn of a dead link "
                              "from those at its ends", involves=(("routing", "detect_ns"),))
        return self


class TracesSpec(_Strict):
    queue_interval_ns: Time(lim.MIN_QUEUE_INTERVAL_NS) = 10_000
    part_rows: Count(lim.MIN_PART_ROWS, lim.MAX_PART_ROWS) = 16_384
    """Rows buffered per table before a Parquet part is written."""


class Scenario(_Strict):
    name: Annotated[Name, AfterValidator(_no_path)] = "default"
    seed: Seed = 1
    profile: str | None = None
    """The network profile (``profiles/<name>.yaml``) the nic and switch sections started from."""
    topology: AnyTopology = LeafSpineSpec()
    nic: NicSpec = NicSpec()
    switch: SwitchSpec = SwitchSpec()
    lb: LbSpec = LbSpec()
    workload: WorkloadSpec = WorkloadSpec()
    traces: TracesSpec = TracesSpec()
    faults: Annotated[
        Union[Annotated[Annotated[list[AnyFault], Field(max_length=lim.MAX_FAULTS)], Tag("list")],
              Annotated[RandomFaults, Tag("random")]],
        Discriminator(lambda v: "list" if isinstance(v, (list, tuple)) else
                      "random" if isinstance(v, (dict, RandomFaults)) else None),
    ] = []
    """Faults injected during the run (:mod:`pktsim.fabric.faults`), or a generator of them."""
    routing: RoutingSpec = RoutingSpec()
    _provenance: Any = PrivateAttr(default=None)
    """Where each field was written (:mod:`pktsim.scenario.provenance`); not part of the value."""

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        hosts = self.topology.n_hosts
        used = 0
        for i, job in enumerate(self.workload.jobs):
            if job.ranks > hosts:
                raise _FieldError(("workload", "jobs", i, "ranks"), f"{job.ranks} ranks but the topology has {hosts} hosts",
                                  involves=(("topology",),))
            used += job.ranks
        if used > hosts:
            raise _FieldError(("workload", "jobs"), f"the jobs need {used} hosts but the topology has {hosts}",
                              involves=(("topology",),))
        try:
            lim.check_work(self)
        except lim.LimitError as e:
            raise _FieldError(e.loc, str(e)) from None
        self._check_transport()
        if self.nic.transport == "ideal" and SCHEMES[self.lb.scheme](self.lb).entropy_source is not None:
            raise _FieldError(("lb", "scheme"), f"{self.lb.scheme} reuses the entropies that ACKs echo, and the "
                              "ideal transport sends none: set nic.transport to gbn or sr",
                              involves=(("nic", "transport"),))
        if self.lb.scheme == "planned" and self.topology.kind != "leaf_spine":
            raise _FieldError(("lb", "scheme"), f"planned routing supports leaf_spine topologies only "
                              f"(got {self.topology.kind})", involves=(("topology", "kind"),))
        return self

    def _check_transport(self) -> None:
        nic, sw, topo = self.nic, self.switch, self.topology
        if nic.cc != "none" and sw.ecn is None:
            raise _FieldError(("nic", "cc"), f"{nic.cc} reacts to ECN marks: set switch.ecn", involves=(("switch", "ecn"),))
        if sw.finite and not sw.pfc.enabled and nic.transport == "ideal":
            raise _FieldError(("switch", "buffer_bytes" if sw.buffer_bytes is not None else "port_buffer_bytes"),
                              "a finite buffer without PFC drops packets and the ideal transport never "
                              "resends: set nic.transport to gbn or sr, or enable switch.pfc",
                              involves=(("switch", "pfc", "enabled"), ("nic", "transport")))
        if sw.pfc.enabled:
            need = pfc_headroom_bytes(self)
            headroom = sw.pfc.headroom_bytes
            if headroom is not None and headroom < need:
                raise _FieldError(("switch", "pfc", "headroom_bytes"),
                                  f"{headroom} cannot absorb what arrives while a pause takes effect "
                                  f"(2 x delay x rate + 2 MTU + pause frame = {need})",
                                  involves=(("switch", "pfc", "enabled"),))
            if sw.buffer_bytes is not None:
                ports = topo.max_switch_ports
                per_port = sw.pfc.xoff_bytes + (headroom if headroom is not None else need)
                if ports * per_port > sw.buffer_bytes:
                    raise _FieldError(("switch", "pfc", "xoff_bytes"),
                                      f"PFC thresholds above the buffer: {ports} ports x (xoff {sw.pfc.xoff_bytes}"
                                      f" + headroom {per_port - sw.pfc.xoff_bytes}) = {ports * per_port} bytes > "
                                      f"switch.buffer_bytes {sw.buffer_bytes}",
                                      involves=(("switch", "buffer_bytes"), ("switch", "pfc", "headroom_bytes"),
                                                ("switch", "pfc", "enabled")))
        # A limit below one packet admits nothing: every packet would be dropped, or pause its link,
        # and be resent forever.
        mtu = nic.mtu_bytes
        for name in ("buffer_bytes", "port_buffer_bytes"):
            limit = getattr(sw, name)
            if limit is not None and limit < mtu:
                raise _FieldError(("switch", name), f"{limit} cannot hold one packet (nic.mtu_bytes {mtu})",
                                  involves=(("nic", "mtu_bytes"),))
        if sw.dt_alpha is not None and sw.buffer_bytes is not None and sw.dt_alpha * sw.buffer_bytes < mtu:
            raise _FieldError(("switch", "dt_alpha"), f"{sw.dt_alpha} x buffer_bytes {sw.buffer_bytes} is less than "
                              f"one packet (nic.mtu_bytes {mtu}): an empty queue could not admit a packet",
                              involves=(("switch", "buffer_bytes"), ("nic", "mtu_bytes")))
        if sw.pfc.enabled and sw.pfc.xoff_bytes < mtu:
            raise _FieldError(("switch", "pfc", "xoff_bytes"), f"{sw.pfc.xoff_bytes} is less than one packet "
                              f"(nic.mtu_bytes {mtu}): every packet would pause its link",
                              involves=(("nic", "mtu_bytes"), ("switch", "pfc", "enabled")))
