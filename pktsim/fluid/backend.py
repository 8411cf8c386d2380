"""The flow-level (fluid) backend: the packet backend's message DAG, topology and routing, with
max-min fair rates instead of packets.

What the model includes
-----------------------
- **Flows** are the packet backend's flows: each message is cut into subflows by
  :class:`pktsim.planning.flow_plan.FlowPlanner`, each on its own connection (queue pair: job, src, dst,
  channel, subflow, entropy). A connection sends its flows one after the other, as the packet NIC does: a
  flow is *active* from the moment it reaches the head of its connection until its last byte has
  left the sender; then the connection's next flow starts.
- **Links.** Every direction of every link is a resource whose capacity is the link rate; host NIC
  links (host -> leaf and leaf -> host) are links like any other. A flow's volume is its *wire*
  bytes (payload plus one ``nic.header_bytes`` per packet), so a bulk transfer takes exactly as long
  as the packets' serialisation. (This equals a payload capacity of rate x payload / mtu when all
  packets are full, and stays exact for a short last packet.)
- **Rates** are max-min fair over the active flows (progressive filling, :func:`max_min_rates`),
  recomputed once per distinct event time (flow activations and drains occurring together are
  batched); between events every flow drains at a constant rate.
- **Paths.** ECMP and split flows take exactly the packet backend's hash path
  (:meth:`pktsim.fabric.fabric.Fabric.ecmp_path`: same entropies, salts and hash). Sprayed flows (``spray``,
  ``spray_switch``) spread over every equal-cost path, each switch splitting evenly among its next
  hops: the flow puts a fraction ``w_l`` of its traffic on link ``l`` and its rate ``r`` uses
  ``w_l * r`` of that link's capacity.
- **Planning per connection** (``lb.plan_scope: connection``): the periodic re-plans are made,
  as in the packet backend, at the first post at or after each due time, from the same post
  times; a message on a re-planned connection goes on a new connection (queue pair) with the new
  entropy.
- **Latency.** A flow's last byte is received a constant ``L`` after it leaves the sender, where
  ``L`` = (closed-form FCT of the flow alone on an idle fabric, :func:`pktsim.analysis.ideal.message_fct_ps`)
  - (its wire bytes at the path's slowest rate). When every link of the path has the same rate this
  is the propagation and switch latency of every hop plus one store-and-forward of the flow's first
  (largest) packet at each hop after the first. A flow alone on the fabric therefore has exactly the
  packet backend's FCT.
- **Faults** (:mod:`pktsim.fabric.faults`: the same link events and routing timeline as the packet
  backend's, at the same times; at one instant link events act first, then routing changes, then
  the messages posted then):

  - ``link_degrade``: the link's capacity is the new rate from the fault on (rates recomputed
    then). A flow whose path crosses a degraded link gets its ``L`` from the closed form at the
    links' rates when it drains (a sprayed flow: the largest over its live paths), so a flow alone
    on a link degraded before it started has the packet backend's FCT.
  - ``link_down`` / ``link_up``: capacity 0 / the link's rate again. A flow whose current path
    crosses a dead link is **stalled**: it sends nothing, loads nothing and keeps its bytes left until
    a link coming back or a routing change gives it a live path. At every routing change the
    switches' groups change (:meth:`~pktsim.fabric.fabric.Fabric.with_next_hops`) and every flow
    is routed again: an ECMP or split flow keeps its entropy and is rehashed by the new groups, as
    the packet switches hash it; a planned or ``split_minimal`` flow keeps its pinned entropy, which
    crossed the dead link until the re-plan (``replan_ns``) gives the switches the surviving groups,
    and the messages not yet posted are re-planned then (this run's own copy of the plan). So a lone
    ECMP flow hit mid-way is late by exactly the time from the fault to the routing change that
    moves it (detection when the dead link starts at its first switch, convergence otherwise).
  - A **sprayed** flow (``spray``, ``spray_switch``) splits evenly at every switch over its current
    group; the share sent into a dead link is lost there (it loads the links before the dead one,
    not those after), and the flow delivers only the rest: its max-min (sending) rate ``r`` drains
    its bytes at ``(1 - lost) r``, which is a transport resending every lost packet at once on a new
    spray (the resent packets are lost in the same share). A flow of which nothing would arrive (a
    dead host link, every path dead) is stalled as above. This is how the traffic black-holed before
    detection and convergence is accounted: as a stall (one path) or a slower delivery (sprayed),
    never as bytes to send again.
  - ``spine_bytes`` of a flow that changed paths are its bytes split by the bits it delivered on
    each way (path or live spread) it took, and its ``path`` is None when it took more than one.
  - Stragglers: the compute gap before a message released at t is ``gap_ns`` times the sender's
    ``compute_factor`` at t (a root's ``gap_ns`` is its job's start time: never stretched).
  - ``link_loss`` has no honest fluid model (what it costs is the transport's recovery):
    :meth:`FluidBackend.unsupported` refuses it.

What it ignores
---------------
- **Queueing delay.** A flow gets its fair share the instant it starts, however much backlog the
  FIFO ports on its path hold; in the packet backend it waits behind that backlog.
- **FIFO sharing.** A congested packet port shares its rate in proportion to the arrival rates of
  its flows, not max-min fairly; and the packet NIC serves its active connections round-robin at
  equal shares without giving a connection's unused share (it is slowed downstream) to the others,
  while max-min does. Bottleneck completion times agree; individual flows can finish earlier or
  later than with packets.
- **Packetisation beyond L**: pipelining effects of packets meeting at a port (a flow that reaches a
  busy bottleneck later than others is still charged the full path latency after the drain).
- Spraying is modelled by its mean: the ``spine_bytes`` of a sprayed flow are the even split, not a
  sample of random choices.
- **Loss recovery after a fault.** The fluid model is an ideal transport that loses nothing it has
  sent and resends for free: a link going down loses nothing that is on it or queued for it (the
  packet backend loses it, up to a bandwidth-delay product, and a flow's last bytes still in flight
  when it dies arrive here as scheduled); a stalled flow resumes at full speed the instant its path
  is live. On top of the fluid's stall, the packet backend pays its transport's recovery: the
  retransmission timeout (RTO, with its back-off) that notices the black-holed packets of a single
  path, or RACK's reordering window and tail-loss probes for a sprayed flow's lost share, after the
  route change; and a sender without a path keeps sending (a window per timeout) into the dead
  link, which the fluid's stalled flow does not load. A ``link_degrade`` mid-flow does not re-time
  the packets already past the link (``L`` is taken at the rates when the flow drains).

Time is float picoseconds inside the engine; tables are written in integer ns (nearest) like the
packet backend's. Drains due within :data:`DRAIN_TOLERANCE_PS` of each other are one event.

Runs whose flows each keep one path (no spraying, faults, stragglers or connection-scope re-plans)
execute this loop compiled (:mod:`pktsim.fluid.compiled`, the same tables byte for byte); the loop
here is the reference it is tested against, and runs everything else.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from fractions import Fraction
from typing import Callable

import numpy as np

from pktsim.analysis.ideal import message_fct_ps, wire_bytes
from pktsim.experiment import Backend, Experiment, Progress, ProgressCallback, Unsupported, needs_transport_model
from pktsim.fabric.fabric import Fabric, Hop
from pktsim.fabric.faults import Fault, RouteChange
from pktsim.fabric.selectors import LoadBalancing
from pktsim.fluid.maxmin import max_min_rates, max_min_rates_small
from pktsim.scenario import Scenario
from pktsim.summary import RunSummary, job_results
from pktsim.traces import FlowRow, Recorder
from pktsim.units import PS_PER_NS, ns_to_ps, ps_per_byte, ps_to_ns

DRAIN_TOLERANCE_PS = 1.0
"""Flows whose drain is due within this much of the earliest are drained together (float noise of
equal flows; at 800 Gb/s it is 0.1 byte)."""

SMALL_COMPONENT = 48
"""Components of at most this many flows get their rates from :func:`max_min_rates_small`."""

PROGRESS_EVERY = 2000
"""Rate recomputations between progress reports."""

FLUID_METADATA = {
    b"pktsim.backend": b"fluid",
    b"pktsim.fluid": (
        b"flow-level model: max-min fair rates, no packets; the queues and links tables are empty "
        b"because queues are not modelled (see pktsim/fluid.py)"
    ),
}

# Kinds of timed events in the heap.
_READY, _RECEIVED, _LINK, _ROUTE = 0, 1, 2, 3


# ---------------------------------------------------------------------------------------------
# Flow geometry: which links a flow loads, how much, and its latency


class FlowGeometry:
    """The links each flow loads (as the packet backend routes it, from the fabric service) and its
    constant latency ``L``. Link ids are the fabric's; capacities in Gbit/s (= bits per ns)."""

    def __init__(self, fabric: Fabric, scenario: Scenario) -> None:
        self.fabric = fabric
        self.nic = scenario.nic
        self.gbps = np.array([fabric.link_gbps(u, v) for u, v in fabric.links], dtype=np.float64)
        self._latency: dict[tuple[str, str, int], int] = {}

    def usage(self, path: list[str] | None, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
        """(link ids, fractions of the flow's traffic on them) of a flow on ``path``, or sprayed."""
        index = self.fabric.link_index
        if path is not None:
            ids = [index[uv] for uv in zip(path, path[1:])]
            return np.array(ids, dtype=np.int64), np.ones(len(ids))
        on_link, _ = self.fabric.spread(src, dst)
        items = sorted((index[uv], float(w)) for uv, w in on_link.items())
        return np.array([i for i, _ in items], dtype=np.int64), np.array([w for _, w in items])

    def latency_ps(self, src: str, dst: str, nbytes: int) -> int:
        """``L``: closed-form FCT of ``nbytes`` alone on a shortest src -> dst path minus its wire
        bytes at the path's slowest rate (ps). All equal-cost paths of these fabrics look alike."""
        tor_of = self.fabric.tor_of
        key = (tor_of[src], tor_of[dst], nbytes)
        if key not in self._latency:
            nic = self.nic
            hops = self.fabric.path_hops(src, dst)
            wire = wire_bytes(nbytes, nic.mtu_bytes, nic.header_bytes)
            drain = wire * max(ps_per_byte(h.gbps) for h in hops)
            self._latency[key] = message_fct_ps(nbytes, nic.mtu_bytes, nic.header_bytes, hops) - int(drain)
        return self._latency[key]


# ---------------------------------------------------------------------------------------------
# The backend


class _Flow:
    """One flow of the fluid run (a row of ``flows``). Times in float ps."""

    __slots__ = ("flow_id", "msg", "subflow", "src", "dst", "bytes", "packets", "entropy", "path",
                 "links", "link_list", "weights", "bits", "latency_ps", "start_ps", "end_ps", "qp",
                 "gain", "gen", "route_key", "turning", "seg_bits", "used", "turn")

    def __init__(self, flow_id: int, msg: int, subflow: int, src: str, dst: str, nbytes: int, packets: int,
                 entropy: int, path: list[str] | None, qp: tuple) -> None:
        self.flow_id = flow_id
        self.msg = msg
        self.subflow = subflow
        self.src = src
        self.dst = dst
        self.bytes = nbytes
        self.packets = packets
        self.entropy = entropy
        self.path = path
        self.qp = qp
        self.links: np.ndarray | None = None
        self.link_list: list[int] = []
        self.weights: np.ndarray | None = None
        self.bits = 0
        self.latency_ps = 0
        self.start_ps = -1.0
        self.end_ps = -1.0
        self.turn: str | None = None
        """The turning point of its path (healthy fabric; None: sprayed or not known)."""
        # Only on a fabric with link faults (see FluidSimulation._route):
        self.gain = 1.0
        """The share of what the flow sends that is delivered (0: stalled, every byte would be lost)."""
        self.gen = -1
        """The routing generation its path and usage were computed in."""
        self.route_key: tuple = ()
        """Its current way through the fabric (the path, or the sprayed flow's live spread)."""
        self.turning: dict[str, Fraction] | None = None
        """Per turning point, the share of its delivered bytes that turn there (current way)."""
        self.seg_bits = 0.0
        """Bits left to send when it started on its current way."""
        self.used: dict[tuple, list] | None = None
        """Per way it used: [bits delivered that way, its turning shares]."""


class _Active:
    """The active flows, in slots of fixed-width arrays so that a rate computation is array work.

    Per slot: ``links`` / ``weights`` (the flow's links and traffic fractions, padded with the dummy
    link of infinite capacity and weight 0), ``rate`` (Gbit/s), ``bits`` (left to send at time
    ``t_ref``, ps) and ``due`` (absolute drain time at the current rate, ps; inf for a free slot);
    ``gain``: the share of the flow's sending rate that is delivered (1 but for a sprayed flow part
    of whose spread ends in a dead link), so ``rate`` is its delivered rate (what drains ``bits``).
    ``on_link[l]`` is the set of slots using link l (kept only when ``track_links``)."""

    def __init__(self, n_links: int, track_links: bool) -> None:
        self.dummy = n_links
        self.links = np.full((0, 1), n_links, dtype=np.int64)
        self.weights = np.zeros((0, 1))
        self.rate = np.zeros(0)
        self.bits = np.zeros(0)
        self.t_ref = np.zeros(0)
        self.due = np.zeros(0)
        self.gain = np.ones(0)
        self.used = np.zeros(0, dtype=bool)
        self.flow: list[_Flow | None] = []
        self.free: list[int] = []
        self.count = 0
        self.on_link: list[set[int]] | None = [set() for _ in range(n_links)] if track_links else None

    def _grow(self) -> None:
        old = len(self.flow)
        grow = max(old, 64)
        width = self.links.shape[1]
        self.links = np.vstack([self.links, np.full((grow, width), self.dummy, dtype=np.int64)])
        self.weights = np.vstack([self.weights, np.zeros((grow, width))])
        self.rate = np.concatenate([self.rate, np.zeros(grow)])
        self.bits = np.concatenate([self.bits, np.zeros(grow)])
        self.t_ref = np.concatenate([self.t_ref, np.zeros(grow)])
        self.due = np.concatenate([self.due, np.full(grow, np.inf)])
        self.gain = np.concatenate([self.gain, np.ones(grow)])
        self.used = np.concatenate([self.used, np.zeros(grow, dtype=bool)])
        self.flow += [None] * grow
        self.free = list(range(old + grow - 1, old - 1, -1))  # lowest slot first

    def add(self, flow: _Flow, now: float) -> int:
        """Put ``flow`` in a free slot (rate 0 until the next rate computation); returns the slot."""
        n = len(flow.links)
        if n > self.links.shape[1]:
            pad = n - self.links.shape[1]
            self.links = np.pad(self.links, ((0, 0), (0, pad)), constant_values=self.dummy)
            self.weights = np.pad(self.weights, ((0, 0), (0, pad)))
        if not self.free:
            self._grow()
        s = self.free.pop()
        self.links[s, :n] = flow.links
        self.weights[s, :n] = flow.weights
        self.rate[s] = 0.0
        self.bits[s] = flow.bits
        self.t_ref[s] = now
        self.gain[s] = flow.gain
        self.used[s] = True
        self.flow[s] = flow
        self.count += 1
        if self.on_link is not None:
            for link in flow.link_list:
                self.on_link[link].add(s)
        return s

    def remove(self, slot: int) -> _Flow:
        flow = self.flow[slot]
        self.flow[slot] = None
        self.links[slot] = self.dummy
        self.weights[slot] = 0.0
        self.rate[slot] = 0.0
        self.due[slot] = np.inf
        self.used[slot] = False
        self.free.append(slot)
        self.count -= 1
        if self.on_link is not None:
            for link in flow.link_list:
                self.on_link[link].discard(slot)
        return flow

    def component(self, links: set[int], limit: int) -> tuple[list[int], set[int]] | None:
        """The slots connected to ``links`` through shared links (their max-min rates depend on
        nothing else), sorted, and the links walked (``links`` and every link of those slots);
        None when there are more than ``limit`` slots (recompute everything)."""
        on_link, flow = self.on_link, self.flow
        seen = set(links)
        stack = list(links)
        slots: set[int] = set()
        while stack:
            for s in on_link[stack.pop()]:
                if s not in slots:
                    slots.add(s)
                    if len(slots) > limit:
                        return None
                    for link in flow[s].link_list:
                        if link not in seen:
                            seen.add(link)
                            stack.append(link)
        return sorted(slots), seen

    def bits_left(self, slot: int, now: float) -> float:
        """Bits ``slot`` has left to send at ``now``."""
        return max(self.bits[slot] - self.rate[slot] * ((now - self.t_ref[slot]) / PS_PER_NS), 0.0)

    def set_rates(self, slots: np.ndarray, rate: np.ndarray, now: float) -> None:
        """New rates (Gbit/s) for ``slots`` from ``now``: bring their bits up to date, reschedule."""
        self.bits[slots] = np.maximum(self.bits[slots] - self.rate[slots] * ((now - self.t_ref[slots]) / PS_PER_NS), 0.0)
        self.t_ref[slots] = now
        self.rate[slots] = rate
        self.due[slots] = now + self.bits[slots] / rate * PS_PER_NS


class FluidBackend(Backend):
    """The flow-level backend: max-min fair rates, no packets (see the module docstring)."""

    name = "fluid"

    def unsupported(self, scenario: Scenario) -> Unsupported | None:
        if LoadBalancing.from_spec(scenario.lb).queue_aware:
            return Unsupported("--backend fluid", "lb.scheme", f"{scenario.lb.scheme!r} chooses paths from queue "
                               "state, which the fluid model does not have (use the packet backend)")
        if needs_transport_model(scenario):
            field = "nic.transport" if scenario.nic.transport != "ideal" else "switch"
            return Unsupported("--backend fluid", field, "the fluid model is max-min fair sharing with ideal "
                               "transport and unlimited buffers (use the ideal profile, or the packet backend)")
        faults = scenario.faults
        if isinstance(faults, list):
            for i, f in enumerate(faults):
                if f.kind == "link_loss":
                    return Unsupported("scenario", f"faults[{i}].kind",
                                       "link_loss has no fluid model: use --backend packet")
        elif "link_loss" in faults.random.kinds:
            return Unsupported("scenario", "faults.random.kinds", "link_loss has no fluid model: use --backend packet")
        return None

    def run(self, experiment: Experiment, recorder: Recorder | None = None,
            progress: ProgressCallback | None = None) -> RunSummary:
        self.check(experiment.scenario)
        return FluidSimulation(experiment).run(recorder, progress)


class FluidSimulation:
    """One run of a prepared experiment on the fluid backend."""

    def __init__(self, experiment: Experiment, incremental: bool = True, compiled: bool = True) -> None:
        """``incremental``: recompute only the rates of flows connected to a change (the same
        allocation as recomputing every rate, which ``False`` does, for tests and comparison).
        ``compiled``: use the compiled loop where it applies (``False``: the Python loop, the
        reference it is tested against)."""
        FluidBackend().check(experiment.scenario)
        self.experiment = experiment
        self.scenario = scenario = experiment.scenario
        self.incremental = incremental
        self.allow_compiled = compiled
        self.fabric = experiment.fabric
        self.workload = experiment.workload
        self.planner = experiment.flow_plan.for_run(experiment.fabric, experiment.faults)
        self.sprayed = experiment.lb.spreads
        self.packets_received = 0
        self.geometry = FlowGeometry(self.fabric, scenario)
        self.capacity = np.append(self.geometry.gbps, np.inf)  # the last link pads rows of _Active
        self.dag = experiment.execution()
        self.flows_posted = 0
        self.packets_posted = 0
        self.packet_hops = 0
        """Packets x links of their path: what the packet backend would count for these flows."""
        self.qps: dict[tuple, deque[_Flow]] = {}
        self._paths: dict[tuple, list[str] | tuple[list[str], list[int]]] = {}
        """Per connection: its path (with link faults: its path and link ids on the current view)."""
        # Sprayed flows load every uplink of their leaf: the fabric is one connected component and
        # finding components would cost more than recomputing every rate.
        self.active = _Active(len(self.fabric.links), track_links=not self.sprayed)
        self.touched: set[int] = set()
        """Links whose set of active flows changed since the last rate computation."""
        self._local = np.zeros(len(self.fabric.links) + 1, dtype=np.int64)
        """Scratch: fabric link id -> index among a component's links (see :meth:`_recompute`)."""
        self.heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.now = 0.0
        self.recorder: Recorder | None = None
        # Faults (none in a healthy run, which never takes the paths below).
        self.faults = experiment.faults
        self.link_faults = bool(self.faults and self.faults.link_events)
        """Links change: flows are routed by :meth:`_route` on the current view of the fabric."""
        self.stragglers = bool(self.faults and self.faults.stragglers)
        self.view: Fabric = self.fabric
        """The fabric as the switches see it now (their equal-cost groups after the last route change)."""
        self.gen = 0
        """Bumped whenever paths or their liveness change (a route change, a link down or up)."""
        self.nominal = self.geometry.gbps.copy()
        """Every link's rate (Gbit/s) after the degrades so far, dead or alive."""
        self.dead: set[int] = set()
        self.degraded: set[int] = set()
        """Links whose rate differs from the topology's."""
        self.stalled: dict[int, _Flow] = {}
        """Flows at the head of their connection whose every byte would be lost (by flow id)."""
        self._spray: dict[tuple[str, str], tuple] = {}
        self._latency: dict[tuple, int] = {}
        # Per-message hot path (see _post): the workload's columns as memoryviews (a plain int per
        # read) and caches of what messages on one connection share.
        w = self.workload
        self._src_col, self._dst_col = memoryview(w.src), memoryview(w.dst)
        self._job_col, self._channel_col, self._bytes_col = memoryview(w.job), memoryview(w.channel), memoryview(w.bytes)
        self._unplanned = self.planner.lb.flow_plan is None
        self._subflows: dict[tuple, list[tuple[int, int]]] = {}
        """Unplanned schemes: subflows per (job, src, dst, channel, bytes)."""
        self._geo: dict[tuple[int, int, int], tuple] = {}
        """Healthy fabric: per (src code, dst code, entropy), :meth:`_connection_geometry`."""
        self._bits: dict[int, int] = {}
        """Wire bits per payload size."""
        self._spray_split: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        self._cap_list: list[float] = self.capacity.tolist()
        """``capacity`` as Python floats (for :func:`max_min_rates_small`); kept equal to it."""

    # -- the DAG -------------------------------------------------------------------------------

    def _schedule(self, t_ps: float, kind: int, item: object) -> None:
        heapq.heappush(self.heap, (t_ps, self._seq, kind, item))
        self._seq += 1

    def _post(self, msg_id: int) -> None:
        """Cut a ready message into subflows and queue them on their connections.

        Reads the workload's columns (not a :class:`Message` view) and caches per connection what
        every message on it shares (subflow sizes and entropies, path, link ids): on purpose, this
        runs once per message."""
        if self.now >= self.planner.next_replan_ps:  # periodic re-plans (plan_scope: connection)
            self.planner.replan_due(self.now, self.dag.ready_ps)
        self.dag.posted(msg_id, self.now)
        src_code, dst_code = self._src_col[msg_id], self._dst_col[msg_id]
        job, channel, nbytes = self._job_col[msg_id], self._channel_col[msg_id], self._bytes_col[msg_id]
        hosts = self.workload.hosts
        src, dst = hosts[src_code], hosts[dst_code]
        if self._unplanned:  # subflows depend on (job, src, dst, channel, bytes) only
            key = (job, src_code, dst_code, channel, nbytes)
            subflows = self._subflows.get(key)
            if subflows is None:
                subflows = self._subflows[key] = self.planner.subflows(self.workload.messages[msg_id])
        else:
            subflows = self.planner.subflows(self.workload.messages[msg_id])
        payload = self.scenario.nic.payload_bytes
        for sub, (size, entropy) in enumerate(subflows):
            qp = (src_code, job, channel, sub, entropy, dst_code)
            packets = -(-size // payload)
            flow = _Flow(self.flows_posted, msg_id, sub, src, dst, size, packets, entropy, None, qp)
            if self.link_faults:  # routed on the current view of the fabric
                self._route(flow)
                path = flow.path
                hops = len(path) - 1 if path is not None else self.fabric.hop_count(src, dst)
            else:
                geo = self._geo.get((src_code, dst_code, entropy))
                if geo is None:
                    geo = self._geo[src_code, dst_code, entropy] = self._connection_geometry(src, dst, entropy)
                flow.path, flow.links, flow.weights, flow.link_list, hops, flow.turn = geo
            bits = self._bits.get(size)
            if bits is None:
                nic = self.scenario.nic
                bits = self._bits[size] = 8 * wire_bytes(size, nic.mtu_bytes, nic.header_bytes)
            flow.bits = bits
            flow.latency_ps = self.geometry.latency_ps(src, dst, size)
            self.flows_posted += 1
            self.packets_posted += packets
            self.packet_hops += packets * hops
            queue = self.qps.get(qp)
            if queue is None:
                queue = self.qps[qp] = deque()
            queue.append(flow)
            if len(queue) == 1:
                self._activate(flow)

    def _connection_geometry(self, src: str, dst: str, entropy: int) -> tuple:
        """On the healthy fabric, what every flow of a connection shares: (path or None when
        sprayed, link ids, traffic fractions, link ids as a list, hop count, turning point or None)."""
        path = None if self.sprayed else self.fabric.path(src, dst, entropy)
        links, weights = self.geometry.usage(path, src, dst)
        if path is None:
            return None, links, weights, links.tolist(), self.fabric.hop_count(src, dst), None
        return path, links, weights, links.tolist(), len(path) - 1, self.fabric.turning_point(path)

    def _activate(self, flow: _Flow) -> None:
        flow.start_ps = self.now
        if self.link_faults:
            if flow.gen != self.gen:
                self._route(flow)
            flow.seg_bits = float(flow.bits)
            if not flow.gain:
                self.stalled[flow.flow_id] = flow
                return
        self.active.add(flow, self.now)
        self.touched.update(flow.link_list)

    def _drained(self, slot: int) -> None:
        """The flow in ``slot`` has sent its last byte now: its connection moves to its next flow."""
        flow = self.active.remove(slot)
        self.touched.update(flow.link_list)
        if self.link_faults:
            self._close_segment(flow, 0.0)
            if self.degraded:
                flow.latency_ps = self._fault_latency_ps(flow)
        flow.links = flow.weights = None  # only the active flows hold arrays: memory stays bounded
        self._schedule(self.now + flow.latency_ps, _RECEIVED, flow)
        queue = self.qps[flow.qp]
        queue.popleft()
        if queue:
            self._activate(queue[0])

    def _received(self, flow: _Flow) -> None:
        """The last byte of ``flow`` arrives now."""
        flow.end_ps = self.now
        self.packets_received += flow.packets
        if self.link_faults:
            flow.path, spine_bytes = self._used_ways(flow)
        else:
            spine_bytes = self._spine_bytes(flow)
        if self.recorder is not None:
            self._record_flow(flow, spine_bytes)
        if not self.dag.flow_received(flow.msg, flow.bytes, flow.start_ps, self.now, flow.path, spine_bytes):
            return
        for d in self.dag.message_done(flow.msg):
            gap_ps = self._gap_ps(d)
            if gap_ps:
                self._schedule(self.now + gap_ps, _READY, d)
            else:
                self._post(d)

    def _gap_ps(self, msg_id: int) -> int:
        """The compute gap (``gap_ns``, ps) before a message released now: longer when its sender is
        a straggler from then on. (A root's ``gap_ns`` is its job's start time, not compute: it is
        never stretched.)"""
        w = self.workload
        gap_ps = ns_to_ps(int(w.gap_ns[msg_id]))
        if self.stragglers and gap_ps:
            gap_ps = round(gap_ps * self.faults.compute_factor(w.hosts[w.src[msg_id]], self.now))
        return gap_ps

    # -- faults ----------------------------------------------------------------------------------

    def _link_event(self, f: Fault) -> None:
        """A link degrades, dies or comes back at ``f.at_ps`` (now)."""
        index = self.fabric.link_index
        ids = [index[uv] for uv in f.links]
        if f.kind == "link_degrade":
            for link in ids:
                self.nominal[link] = f.value
                if link not in self.dead:
                    self._set_capacity(link, float(f.value))
                    self.touched.add(link)
                if f.value == self.geometry.gbps[link]:
                    self.degraded.discard(link)
                else:
                    self.degraded.add(link)
            self._latency = {}
            return
        for link in ids:
            if f.kind == "link_down":
                self.dead.add(link)
                self._set_capacity(link, 0.0)
            else:
                self.dead.discard(link)
                self._set_capacity(link, float(self.nominal[link]))
        self._reroute()

    def _set_capacity(self, link: int, gbps: float) -> None:
        """Link ``link`` carries ``gbps`` from now on (both copies of the capacities)."""
        self.capacity[link] = gbps
        self._cap_list[link] = gbps

    def _route_change(self, rc: RouteChange) -> None:
        """From now on the switches choose among ``rc.next_hops`` (and the planner re-plans)."""
        self.view = self.fabric.with_next_hops(rc.next_hops)
        self._paths = {}
        if rc.replan:
            self.planner.on_route_change(self.view, self.dag.ready_ps, self.now, self.scenario, self.workload)
        self._reroute()

    def _reroute(self) -> None:
        """Paths or their liveness changed: every flow at the head of its connection takes the way
        it has now (ECMP flows keep their entropy and are hashed by the switches' current groups);
        a flow of which nothing would be delivered is stalled, a stalled flow with a live way resumes.
        Flows queued behind them are routed when they start."""
        self.gen += 1
        self._spray = {}
        act = self.active
        now = self.now
        for s in np.flatnonzero(act.used).tolist():
            flow = act.flow[s]
            before = (flow.route_key, flow.gain)
            old_links, old_turning = flow.link_list, flow.turning
            self._route(flow)
            if (flow.route_key, flow.gain) == before:
                continue
            bits = act.bits_left(s, now)
            new_links, flow.link_list = flow.link_list, old_links  # remove() forgets the old links
            act.remove(s)
            flow.link_list = new_links
            self.touched.update(old_links)
            self._close_segment(flow, bits, before[0], old_turning)
            flow.bits = bits
            if flow.gain:
                act.add(flow, now)
                self.touched.update(flow.link_list)
            else:
                self.stalled[flow.flow_id] = flow
        for flow in list(self.stalled.values()):
            self._route(flow)
            if flow.gain:
                del self.stalled[flow.flow_id]
                act.add(flow, now)
                self.touched.update(flow.link_list)

    def _close_segment(self, flow: _Flow, bits_left: float, key: tuple | None = None,
                       turning: dict[str, Fraction] | None = None) -> None:
        """Account the bits ``flow`` delivered on way ``key`` (default: its current one, with its
        ``turning`` shares) since it started on it; it goes on from ``bits_left``."""
        delivered = flow.seg_bits - bits_left
        if delivered > 0:
            if flow.used is None:
                flow.used = {}
            if key is None:
                key, turning = flow.route_key, flow.turning
            entry = flow.used.get(key)
            if entry is None:
                flow.used[key] = [delivered, self._turning_of(key, turning)]
            else:
                entry[0] += delivered
        flow.seg_bits = bits_left

    def _route(self, flow: _Flow) -> None:
        """Set the way ``flow`` takes on the current view of the fabric: its path (None: sprayed),
        the links it loads and how much of its sending rate each carries, the share delivered
        (``gain``; 0: stalled) and a key naming the way (``route_key``)."""
        flow.gen = self.gen
        dead = self.dead
        if not self.sprayed:
            known = self._paths.get(flow.qp)  # (with link faults: the path and its link ids)
            if known is None:
                path = self.view.path(flow.src, flow.dst, flow.entropy)
                index = self.fabric.link_index
                known = self._paths[flow.qp] = (path, [index[uv] for uv in zip(path, path[1:])])
            path, ids = known
            flow.path = path
            flow.route_key = ("path", *path)
            if dead and not dead.isdisjoint(ids):
                ids = []  # stalled: its sender's packets are all lost, it loads nothing
                flow.gain = 0.0
            else:
                flow.gain = 1.0
            flow.links = np.array(ids, dtype=np.int64)
            flow.weights = np.ones(len(ids))
            flow.link_list = ids
            flow.turning = None
            return
        ids, weights, gain, turning = self._spray_way(flow.src, flow.dst)
        flow.path = None
        flow.route_key = ("spray", *ids, *weights)
        flow.gain = gain
        flow.turning = turning
        flow.links = np.array(ids, dtype=np.int64)
        flow.weights = np.array(weights)
        flow.link_list = list(ids)

    def _spray_way(self, src: str, dst: str) -> tuple[list[int], list[float], float, dict[str, Fraction]]:
        """A sprayed flow's way on the current view: (link ids, share of its sending rate on each,
        delivered share, turning shares of the delivered bytes). Every switch splits its traffic
        evenly over its current group; what is sent into a dead link is lost there (it loads the
        links before it, not those after)."""
        if (src, dst) not in self._spray:
            index = self.fabric.link_index
            a, b = self.fabric.tor_of[src], self.fabric.tor_of[dst]
            first, last = index[src, a], index[b, dst]
            on_link, delivered, turning, _ = self._fabric_spread(a, b)
            if first in self.dead or last in self.dead or not delivered:
                way = ([], [], 0.0, turning)
            else:
                load = {first: Fraction(1), last: delivered}
                for uv, w in on_link.items():
                    load[index[uv]] = w
                ids = sorted(load)
                way = (ids, [float(load[i]) for i in ids], float(delivered), turning)
            self._spray[src, dst] = way
        return self._spray[src, dst]

    def _fabric_spread(self, a: str, b: str) -> tuple[dict, Fraction, dict[str, Fraction], list[list[str]]]:
        """From ToR ``a`` to ToR ``b`` on the current view, every equal-cost path walked with its
        probability: (share of the traffic on each link it reaches, share delivered, per turning
        point the share of the delivered traffic that turns there, the live paths). Cached per
        routing generation."""
        key = ("spread", a, b)
        if key not in self._spray:
            groups, tier, index, dead = self.view.next_hops, self.fabric.tier, self.fabric.link_index, self.dead
            on_link: dict[tuple[str, str], Fraction] = {}
            turning: dict[str, Fraction] = {}
            delivered = Fraction(0)
            live: list[list[str]] = []
            stack = [([a], Fraction(1))]
            while stack:
                nodes, share = stack.pop()
                node = nodes[-1]
                if node != b:
                    group = groups[node][b]
                    for hop in reversed(group):
                        stack.append((nodes + [hop], share / len(group)))
                    continue
                for uv in zip(nodes, nodes[1:]):
                    if index[uv] in dead:
                        break  # lost here: the links after it do not see this share
                    on_link[uv] = on_link.get(uv, Fraction(0)) + share
                else:
                    delivered += share
                    top = max(nodes, key=tier.__getitem__)
                    turning[top] = turning.get(top, Fraction(0)) + share
                    live.append(nodes)
            if delivered:
                turning = {n: f / delivered for n, f in turning.items()}
            self._spray[key] = (on_link, delivered, turning, live)
        return self._spray[key]

    def _turning_of(self, key: tuple, turning: dict[str, Fraction] | None) -> dict[str, Fraction]:
        """Per turning point, the share of the bytes delivered on way ``key`` that turn there (a
        sprayed way's are given)."""
        if key[0] == "path":
            return {self.fabric.turning_point(list(key[1:])): Fraction(1)}
        return turning

    def _used_ways(self, flow: _Flow) -> tuple[list[str] | None, list[tuple[str, int]]]:
        """A received flow's path (None when sprayed or when it used more than one) and its payload
        bytes per turning point, split by the bits it delivered on each way it took."""
        used = flow.used
        if used is None or len(used) == 1:  # one way: no need to weigh
            key, (_, turning) = next(iter(used.items())) if used else (flow.route_key, (0, flow.turning))
            if key[0] == "path":
                path = list(key[1:])
                return path, [(self.fabric.turning_point(path), flow.bytes)]
            return None, _split_by(flow.bytes, turning, self.fabric.node_order.__getitem__)
        total = sum(Fraction(bits) for bits, _ in used.values())
        share: dict[str, Fraction] = {}
        for bits, turning in used.values():
            for n, f in turning.items():
                share[n] = share.get(n, Fraction(0)) + Fraction(bits) / total * f
        return None, _split_by(flow.bytes, share, self.fabric.node_order.__getitem__)

    def _fault_latency_ps(self, flow: _Flow) -> int:
        """``L`` of a flow draining now, some links degraded: the closed form at the links' current
        rates on its path (a sprayed flow: the largest over its live paths)."""
        if flow.path is not None:
            return self._path_latency_ps(flow.path, flow.bytes)
        a, b = self.fabric.tor_of[flow.src], self.fabric.tor_of[flow.dst]
        live = self._fabric_spread(a, b)[3]
        if not live:
            return flow.latency_ps
        return max(self._path_latency_ps([flow.src, *nodes, flow.dst], flow.bytes) for nodes in live)

    def _path_latency_ps(self, path: list[str], nbytes: int) -> int:
        index = self.fabric.link_index
        ids = [index[uv] for uv in zip(path, path[1:])]
        if self.degraded.isdisjoint(ids):
            return self.geometry.latency_ps(path[0], path[-1], nbytes)
        key = (*ids, nbytes)
        if key not in self._latency:
            nic, fabric = self.scenario.nic, self.fabric
            hops = [Hop(float(self.nominal[link]), fabric.link_delay_ns(*fabric.links[link]),
                        fabric.switch_latency_ns if i else 0) for i, link in enumerate(ids)]
            wire = wire_bytes(nbytes, nic.mtu_bytes, nic.header_bytes)
            drain = wire * max(ps_per_byte(h.gbps) for h in hops)
            self._latency[key] = message_fct_ps(nbytes, nic.mtu_bytes, nic.header_bytes, hops) - int(drain)
        return self._latency[key]

    # -- running -------------------------------------------------------------------------------

    def run(self, recorder: Recorder | None = None, progress: ProgressCallback | None = None) -> RunSummary:
        """Run to completion; returns the summary (``backend: fluid``)."""
        self.recorder = self.dag.listener = recorder
        if recorder is not None:
            recorder.add_metadata(FLUID_METADATA)  # say what the tables are (queues: not modelled)
            if self.faults:
                recorder.faults(self.faults.rows())
        if self.link_faults:  # before the messages: at a tie, a message is posted on the changed fabric
            for f in self.faults.link_events:
                self._schedule(f.at_ps, _LINK, f)
            for rc in self.faults.route_changes:
                self._schedule(rc.at_ps, _ROUTE, rc)
        for m in self.dag.roots():
            self._schedule(ns_to_ps(m.gap_ns), _READY, m.msg_id)
        wall0 = time.perf_counter()
        if self.compiled:
            from pktsim.fluid.compiled import CompiledLoop  # here: numba loads only for runs that use it
            events = CompiledLoop(self).run(progress)
        else:
            events = self._loop(progress)
        wall = time.perf_counter() - wall0
        self.dag.finish("fluid")
        if recorder is not None:
            recorder.close()
        if progress is not None:
            progress(self._progress(events))
        return self._summary(wall, events)

    @property
    def compiled(self) -> bool:
        """Whether the run goes through the compiled loop (:mod:`pktsim.fluid.compiled`): every
        flow on one path, and nothing that changes paths, rates or the plan during the run."""
        faults = self.faults
        changing = bool(faults and (faults.link_events or faults.route_changes or faults.stragglers))
        return (self.allow_compiled and self.incremental and not self.sprayed and not changing
                and self.planner.connections is None and len(self.workload.bytes) > 0)

    def _loop(self, progress: ProgressCallback | None) -> int:
        """Advance from event time to event time; returns the number of rate recomputations."""
        act = self.active
        heap = self.heap
        events = 0
        while True:
            t_drain = act.due.min() if act.count else np.inf
            t_event = heap[0][0] if heap else np.inf
            t = min(t_drain, t_event)
            if t == np.inf:
                return events
            self.now = t
            if t_drain <= t + DRAIN_TOLERANCE_PS:
                for s in np.flatnonzero(act.due <= t + DRAIN_TOLERANCE_PS).tolist():
                    self._drained(s)
            while heap and heap[0][0] <= t:
                _, _, kind, item = heapq.heappop(heap)
                if kind == _READY:
                    self._post(item)
                elif kind == _RECEIVED:
                    self._received(item)
                elif kind == _LINK:
                    self._link_event(item)
                else:
                    self._route_change(item)
            if self.touched and self._recompute():
                events += 1
                if progress is not None and events % PROGRESS_EVERY == 0:
                    progress(self._progress(events))

    def _progress(self, events: int, stage: str = "simulating") -> Progress:
        return Progress(
            packets_delivered=self.packets_received, packets_total=self.experiment.packets_total,
            messages_done=self.dag.messages_done, messages_total=len(self.workload.messages),
            sim_time_ns=ps_to_ns(self.now), events=events, stage=stage,
        )

    def _recompute(self) -> bool:
        """Max-min rates for the flows whose allocation may have changed: those connected to a
        touched link through shared links (all active flows when that is most of them, or when
        ``incremental`` is off). Returns whether any rate was computed."""
        act = self.active
        found = None
        if act.on_link is not None and self.incremental:
            found = act.component(self.touched, limit=max(64, act.count // 2))
        self.touched = set()
        if found is None:
            idx = np.flatnonzero(act.used)
            rate = max_min_rates(act.links[idx], act.weights[idx], self.capacity)
        elif not found[0]:
            return False
        elif len(found[0]) <= SMALL_COMPONENT:
            # A few flows (the usual case: one flow started or drained): plain Python on purpose,
            # numpy's per-call cost would dominate. Tracked (non-sprayed) flows use weight-1 links.
            slots = found[0]
            flows = act.flow
            idx = np.array(slots, dtype=np.int64)
            rate = np.array(max_min_rates_small([flows[s].link_list for s in slots], self._cap_list))
        else:
            slots, seen = found
            idx = np.array(slots, dtype=np.int64)
            # The component's links renumbered 0..k-1 through a lookup table instead of np.unique
            # over its rows (on purpose: a sort per event). ``seen`` holds every link of these slots
            # (and maybe touched links none of them uses: unloaded, they change no rate), plus the
            # padding link.
            ids = np.array(sorted(seen) + [act.dummy], dtype=np.int64)
            self._local[ids] = np.arange(len(ids))
            rate = max_min_rates(self._local[act.links[idx]], act.weights[idx], self.capacity[ids])
        if self.link_faults:  # max-min shares the sending rates; bits drain at the delivered rate
            rate = rate * act.gain[idx]
        act.set_rates(idx, rate, self.now)
        return True

    # -- recording -----------------------------------------------------------------------------

    def _spine_bytes(self, f: _Flow) -> list[tuple[str, int]]:
        """Payload bytes per turning-point switch: all at the path's top, or the spray's even split
        (cached per (src, dst, bytes))."""
        if f.path is not None:
            return [(f.turn if f.turn is not None else self.fabric.turning_point(f.path), f.bytes)]
        key = (f.src, f.dst, f.bytes)
        split = self._spray_split.get(key)
        if split is None:
            _, turning = self.fabric.spread(f.src, f.dst)
            split = self._spray_split[key] = _split_by(f.bytes, turning, self.fabric.node_order.__getitem__)
        return split

    def _record_flow(self, f: _Flow, spine_bytes: list[tuple[str, int]]) -> None:
        self.recorder.flow_done(FlowRow(
            flow_id=f.flow_id, msg_id=f.msg, subflow=f.subflow, src=f.src, dst=f.dst, bytes=f.bytes,
            start_ns=ps_to_ns(f.start_ps), end_ns=ps_to_ns(f.end_ps), packets=f.packets, retransmits=0,
            spurious_retransmits=0, discarded=0, drops=0, fault_drops=0, entropy=f.entropy, path=f.path,
            spine_bytes=[{"node": n, "bytes": b} for n, b in spine_bytes],
        ))

    def _summary(self, wall_s: float, events: int) -> RunSummary:
        """The packet backend's summary keys. ``events``: rate recomputations; ``packet_hops``: the
        packet-hops the packet backend would process for these flows (packets x links of the path),
        so ``packet_hops_per_s`` is the equivalent speed; ``largest_queue``: null (not modelled)."""
        sc = self.scenario
        return RunSummary(
            name=sc.name, seed=sc.seed, backend="fluid", lb=sc.lb.scheme, wall_s=wall_s, events=events,
            packet_hops=self.packet_hops, sim_time_ns=ps_to_ns(self.now), messages=len(self.workload.messages),
            flows=self.flows_posted, packets=self.packets_posted, largest_queue=None,
            plan_s=self.planner.plan_seconds, transport=None,
            jobs=job_results(sc, self.dag, self.experiment.fault_free),
            scenario=sc.model_dump(mode="json"), warnings=list(self.planner.warnings),
            faults=[r._asdict() for r in self.faults.rows()] if self.faults else [],
        )


def _split_by(total: int, fractions: dict[str, Fraction], order: Callable[[str], int]) -> list[tuple[str, int]]:
    """``total`` bytes split over the keys of ``fractions`` (summing to 1) in whole bytes summing
    exactly to ``total`` (largest remainders get the spare bytes, ties in ``order``), in ``order``."""
    names = sorted(fractions, key=order)
    exact = [total * fractions[n] for n in names]
    out = [int(x) for x in exact]
    spare = sorted(range(len(names)), key=lambda i: (out[i] - exact[i], i))[: total - sum(out)]
    for i in spare:
        out[i] += 1
    return list(zip(names, out))
