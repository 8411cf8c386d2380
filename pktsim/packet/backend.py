"""The packet backend: executes a workload DAG on the packet-level network.

Data flows one way: the workload's messages are posted to NICs when their dependencies are done;
the network moves packets; completions are handed to the recorder and release dependent messages.

Faults (``experiment.faults``, :mod:`pktsim.fabric.faults`) are engine timeouts scheduled when the
run starts: each link fault acts on the ports of its links (:meth:`Network.apply`), each routing
change rebuilds the switches' forwarding tables (and, for the planned schemes, re-plans the
messages not yet posted), and a straggler's compute gaps last longer. A healthy run schedules none
of them and its per-packet path is the same code.

With ``lb.plan_scope: connection`` the plan changes during the run too: the periodic re-plans due
by the time a message is posted are made first (:meth:`FlowPlanner.replan_due`), so a message
takes its connection's latest entropy (a new one opens a new queue pair).
"""

from __future__ import annotations

import gc
import time

import simpy

from pktsim.experiment import Backend, Experiment, Progress, ProgressCallback, Unsupported, needs_transport_model
from pktsim.fabric.faults import DROPPING_KINDS, FaultSchedule
from pktsim.packet.engine import step_events
from pktsim.packet.network import Network
from pktsim.packet.nic import Flow
from pktsim.packet.transport import RdmaFlow
from pktsim.scenario import Scenario
from pktsim.summary import RunSummary, job_results
from pktsim.traces import FlowRow, Recorder
from pktsim.units import PS_PER_NS, ns_to_ps, ps_to_ns

STEPS_PER_CHUNK = 20_000
TRANSPORT_COUNTS = ("tx_packets", "retransmits", "spurious", "discarded", "dropped")
"""Per-flow counts of the transport model summed into summary.json (packets)."""


class PacketBackend(Backend):
    """The packet-level backend: every packet through every port (see :mod:`pktsim.packet`)."""

    name = "packet"

    def unsupported(self, scenario: Scenario) -> Unsupported | None:
        return _unsupported(scenario)

    def run(self, experiment: Experiment, recorder: Recorder | None = None,
            progress: ProgressCallback | None = None) -> RunSummary:
        return Simulation(experiment).run(recorder, progress)


def _unsupported(scenario: Scenario) -> Unsupported | None:
    """Faults that lose packets need a transport that resends them."""
    if needs_transport_model(scenario):
        return None
    why = ("loses packets and nic.transport: ideal never resends them: use nic.transport: sr or gbn "
           "(or --profile roce)")
    faults = scenario.faults
    if isinstance(faults, list):
        for i, spec in enumerate(faults):
            if spec.kind in DROPPING_KINDS:
                return Unsupported("scenario", f"faults[{i}].kind", f"{spec.kind} {why}")
        return None
    kinds = [k for k in faults.random.kinds if k in DROPPING_KINDS]
    if kinds:
        return Unsupported("scenario", "faults.random.kinds", f"{kinds[0]} {why}")
    return None


class Simulation:
    """One run of a prepared experiment on the packet backend."""

    def __init__(self, experiment: Experiment, keep_flows: bool = False) -> None:
        """``keep_flows``: keep every finished flow of the transport model in ``closed_flows``
        (for tests and notebooks; a large run would hold them all in memory)."""
        self.experiment = experiment
        self.scenario = scenario = experiment.scenario
        problem = _unsupported(scenario)
        if problem is not None:
            raise problem
        self.faults: FaultSchedule = experiment.faults if experiment.faults is not None else FaultSchedule([], "")
        self.stragglers = bool(self.faults.stragglers)
        self.closed_flows: list[RdmaFlow] | None = [] if keep_flows else None
        self.env = simpy.Environment()
        self.net = Network(self.env, experiment.fabric, scenario, self._flow_done, self._flow_closed)
        self.workload = experiment.workload
        self.planner = experiment.flow_plan.for_run(experiment.fabric, self.faults)
        self.flows_started = 0
        self.transport_counts = dict.fromkeys(TRANSPORT_COUNTS, 0)
        self.dag = experiment.execution()
        self.recorder: Recorder | None = None

    # -- the DAG -------------------------------------------------------------------------------

    def _post(self, msg_id: int) -> None:
        """Hand a ready message to its source NIC, split into the scheme's subflows."""
        m = self.workload.messages[msg_id]
        if self.env.now >= self.planner.next_replan_ps:  # periodic re-plans (plan_scope: connection)
            self.planner.replan_due(self.env.now, self.dag.ready_ps)
        self.dag.posted(msg_id, self.env.now)
        src = self.net.host_index[m.src]
        dst = self.net.host_index[m.dst]
        nic = self.net.nics[src]
        payload = nic.payload_max
        for sub, (size, entropy) in enumerate(self.planner.subflows(m)):
            key = (m.job, m.channel, sub, entropy, dst)
            qp = nic.qps.get(key)
            if qp is None:  # connections persist: opened on first use, reused by later messages
                qp = nic.open_queue_pair(key, dst, entropy)
            flow = nic.flow_class(self.flows_started, msg_id, sub, src, dst, size, -(-size // payload), entropy)
            self.flows_started += 1
            nic.post(qp, flow)

    def _ready_after(self, msg_id: int, delay_ps: int) -> None:
        """Post ``msg_id`` after its gap (a compute gap: longer on a straggler from the fault's
        time on, counted when the gap starts)."""
        if delay_ps and self.stragglers:
            delay_ps = round(delay_ps * self.faults.compute_factor(self.workload.messages[msg_id].src, self.env.now))
        if delay_ps:
            self.env.timeout(delay_ps, msg_id).callbacks.append(self._on_ready)
        else:
            self._post(msg_id)

    def _on_ready(self, event: simpy.Event) -> None:
        self._post(event.value)

    def _flow_done(self, flow: Flow, t_ps: int) -> None:
        """The last byte of ``flow`` arrives at ``t_ps`` (now or up to one link ahead)."""
        path, spine_bytes = self._paths(flow)
        if self.recorder is not None and not self.net.transport_model:
            self._record_flow(flow, path, spine_bytes)
        if self.dag.flow_received(flow.msg, flow.bytes, flow.start_ps, t_ps, path, spine_bytes):
            self.env.timeout(t_ps - self.env.now, flow.msg).callbacks.append(self._on_message_done)

    def _paths(self, flow: Flow) -> tuple[list[str] | None, list[tuple[str, int]]]:
        """The flow's path (when all its packets took one) and its payload bytes per turning point."""
        spine_bytes = [(self.net.switch_names[v], b) for v, b in sorted(flow.via_bytes.items())]
        return flow.path if len(spine_bytes) == 1 else None, spine_bytes

    def _flow_closed(self, flow: RdmaFlow) -> None:
        """Transport model: ``flow`` is acknowledged and none of its copies is left in the network."""
        for name in TRANSPORT_COUNTS:
            self.transport_counts[name] += getattr(flow, name)
        if self.closed_flows is not None:
            self.closed_flows.append(flow)
        if self.recorder is not None:
            self._record_flow(flow, *self._paths(flow))

    def _on_message_done(self, event: simpy.Event) -> None:
        for d in self.dag.message_done(event.value):
            self._ready_after(d, ns_to_ps(self.workload.messages[d].gap_ns))

    # -- faults --------------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        """Every link fault and routing change as an engine timeout at its time, before anything
        else is scheduled: at one time, link faults (in scenario order) act before the routing
        changes, and both before the packets of that instant."""
        timeline = [(f.at_ps, 0, f.index, f) for f in self.faults.link_events]
        timeline += [(rc.at_ps, 1, i, rc) for i, rc in enumerate(self.faults.route_changes)]
        timeline.sort(key=lambda e: e[:3])
        for at_ps, kind, _, what in timeline:
            callback = self._on_link_fault if kind == 0 else self._on_route_change
            self.env.timeout(at_ps, what).callbacks.append(callback)

    def _on_link_fault(self, event: simpy.Event) -> None:
        self.net.apply(event.value)

    def _on_route_change(self, event: simpy.Event) -> None:
        """The switches choose among other next hops from now on; the planned schemes re-plan the
        messages not yet posted on the same view of the fabric (later messages get new entropies,
        hence new queue pairs)."""
        rc = event.value
        self.net.set_next_hops(rc.next_hops)
        if rc.replan:
            self.planner.on_route_change(self.experiment.fabric.with_next_hops(rc.next_hops), self.dag.ready_ps,
                                         self.env.now, self.scenario, self.workload)

    def _record_flow(self, f: Flow, path: list[str] | None, spine_bytes: list[tuple[str, int]]) -> None:
        hosts = self.experiment.fabric.hosts
        self.recorder.flow_done(FlowRow(
            flow_id=f.flow_id, msg_id=f.msg, subflow=f.subflow, src=hosts[f.src], dst=hosts[f.dst], bytes=f.bytes,
            start_ns=ps_to_ns(f.start_ps), end_ns=ps_to_ns(f.end_ps), packets=f.packets,
            retransmits=f.retransmits, spurious_retransmits=f.spurious,
            discarded=f.discarded, drops=f.dropped, fault_drops=f.fault_dropped,
            entropy=f.entropy, path=path, spine_bytes=[{"node": n, "bytes": b} for n, b in spine_bytes],
        ))

    # -- running -------------------------------------------------------------------------------

    def run(self, recorder: Recorder | None = None, progress: ProgressCallback | None = None) -> RunSummary:
        """Run to completion; returns the summary (see ``summary.json`` in traces/README.md)."""
        self.recorder = self.dag.listener = recorder
        if recorder is not None:
            ports = self.net.ports
            recorder.describe_ports(
                [p.owner for p in ports], [p.peer for p in ports], [p.ppb_num / p.ppb_den for p in ports],
                ns_to_ps(self.scenario.traces.queue_interval_ns),
            )
            recorder.faults(self.faults.rows())
        self._schedule_faults()
        for m in self.dag.roots():
            self.env.timeout(ns_to_ps(m.gap_ns), m.msg_id).callbacks.append(self._on_ready)
        # The run allocates packets at a high rate but creates no reference cycles, so the cyclic
        # collector would only re-scan live packets: pause it for the run (8% fewer instructions).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        wall0 = time.perf_counter()
        try:
            events = self._loop(recorder, progress)
        except BaseException:  # stopped (a signal, an error): keep the queue samples logged so far
            self._flush_ports(recorder)
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        wall = time.perf_counter() - wall0
        self.net.close()
        self._flush_ports(recorder)
        self.dag.finish("packet")
        if recorder is not None:
            recorder.close()
        if progress is not None:
            progress(self._progress(events))
        return self._summary(wall, events)

    def _loop(self, recorder: Recorder | None, progress: ProgressCallback | None) -> int:
        """Step the engine until no event is left; returns the number of events processed."""
        part_rows = self.scenario.traces.part_rows
        log = self.net.port_log
        env = self.env
        events = 0
        while True:
            n = step_events(env, STEPS_PER_CHUNK)
            events += n
            if n < STEPS_PER_CHUNK:
                break
            if len(log) >= part_rows:
                self._flush_ports(recorder)
            if progress is not None:
                progress(self._progress(events))
        return events

    def _progress(self, events: int) -> Progress:
        return Progress(
            sum(nic.delivered for nic in self.net.nics), self.experiment.packets_total,
            self.dag.messages_done, len(self.workload.messages), ps_to_ns(self.env.now), events,
        )

    def _flush_ports(self, recorder: Recorder | None) -> None:
        if recorder is not None:
            recorder.port_samples(self.net.port_log)
        self.net.port_log.clear()

    def _summary(self, wall_s: float, events: int) -> RunSummary:
        peak = max(self.net.ports, key=lambda p: p.peak_bytes())
        sc = self.scenario
        return RunSummary(
            name=sc.name, seed=sc.seed, backend="packet", lb=sc.lb.scheme, wall_s=wall_s, events=events,
            packet_hops=sum(p.packets for p in self.net.ports), sim_time_ns=ps_to_ns(self.env.now),
            messages=len(self.workload.messages), flows=self.flows_started,
            packets=sum(nic.port.packets for nic in self.net.nics),
            largest_queue={"node": peak.owner, "port": peak.peer, "max_bytes": round(peak.peak_bytes()),
                           "time_ns": peak.peak_t // PS_PER_NS},
            plan_s=self.planner.plan_seconds,
            transport=self._transport_summary() if self.net.transport_model else None,
            jobs=job_results(sc, self.dag, self.experiment.fault_free), scenario=sc.model_dump(mode="json"),
            warnings=list(self.planner.warnings), faults=[r._asdict() for r in self.faults.rows()],
        )

    def _transport_summary(self) -> dict:
        """Fabric-wide counts of the transport model (see traces/README.md)."""
        ports = self.net.ports
        return {
            "transport": self.scenario.nic.transport, "cc": self.scenario.nic.cc,
            "data_packets_sent": self.transport_counts["tx_packets"],
            "retransmits": self.transport_counts["retransmits"],
            "spurious_retransmits": self.transport_counts["spurious"],
            "discarded_out_of_order": self.transport_counts["discarded"],
            "drops": sum(p.drops for p in ports), "fault_drops": sum(p.fault_drops for p in ports),
            "ecn_marks": sum(p.marks for p in ports),
            "pause_frames": sum(b.pauses for b in self.net.buffers.values()),
            "paused_ns": sum(p.paused_ps for p in ports) // PS_PER_NS,
            "timeouts": sum(qp.timeouts for nic in self.net.nics for qp in nic.qps.values()),
        }
