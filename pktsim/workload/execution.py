"""Executing a workload DAG, whatever moves the bytes.

Both backends (packets, fluid) drive one :class:`DagExecution`: they tell it when a message was
posted and when each of its flows was received, and it says which messages that releases, keeps
the times, writes the ``messages``, ``collectives`` and ``congestion`` rows and the per-job
summary. So the two backends' tables agree in meaning by construction, and validating one against
the other is a join on ``msg_id``. Times are picoseconds (int for packets, float for the fluid model), written in ns.
"""

from __future__ import annotations

from pktsim import __version__
from pktsim.analysis.congestion import CongestionMeter
from pktsim.scenario import Scenario
from pktsim.traces import Recorder
from pktsim.units import ps_to_ns
from pktsim.workload.dag import Message, Workload


class DagExecution:
    """Readiness, timing and recording of the messages and collective ops of one run."""

    def __init__(
        self, workload: Workload, ideal_fct_ps: list[int], ideal_op_ps: list[int], congestion: CongestionMeter,
    ) -> None:
        self.workload = workload
        self.congestion = congestion
        self.ideal_fct_ps = ideal_fct_ps
        self.ideal_op_ps = ideal_op_ps
        msgs = workload.messages
        n = len(msgs)
        self.dependents = workload.dependents()
        self.waiting_on_op: list[list[int]] = [[] for _ in workload.collectives]
        for m in msgs:
            if m.after_op >= 0:
                self.waiting_on_op[m.after_op].append(m.msg_id)
        self.pending = [len(m.deps) + (m.after_op >= 0) for m in msgs]
        self.ready_ps: list[float] = [-1] * n
        self.start_ps: list[float] = [-1] * n
        self.end_ps: list[float] = [-1] * n
        self.rx_bytes = [0] * n
        self.op_left = [len(op.msg_ids) for op in workload.collectives]
        self.op_end_ps: list[float] = [-1] * len(workload.collectives)
        self.messages_done = 0
        self.phases: list[dict] = []
        """Per phase (op, step): congestion and times, filled by :meth:`finish`."""
        self.recorder: Recorder | None = None

    def roots(self) -> list[Message]:
        """Messages with nothing to wait for: each is ready at its ``gap_ns`` (absolute)."""
        return [m for m in self.workload.messages if self.pending[m.msg_id] == 0]

    def posted(self, msg_id: int, t_ps: float) -> None:
        """``msg_id`` became ready and was handed to its sender at ``t_ps``."""
        self.ready_ps[msg_id] = t_ps

    def flow_received(
        self, msg_id: int, nbytes: int, start_ps: float, end_ps: float, path: list[str] | None,
        spine_bytes: list[tuple[str, int]],
    ) -> bool:
        """A flow of ``msg_id`` (``nbytes``, first byte sent at ``start_ps``) was received at
        ``end_ps`` after taking ``path`` (None when its packets spread over ``spine_bytes``, the
        bytes per turning-point switch); returns True when that completes the message."""
        self.congestion.add_flow(msg_id, path, spine_bytes)
        if self.start_ps[msg_id] < 0 or start_ps < self.start_ps[msg_id]:
            self.start_ps[msg_id] = start_ps
        self.rx_bytes[msg_id] += nbytes
        if self.rx_bytes[msg_id] < self.workload.messages[msg_id].bytes:
            return False
        self.end_ps[msg_id] = end_ps
        return True

    def message_done(self, msg_id: int) -> list[int]:
        """Account for a completed message (at its ``end_ps``, which must be now); returns the
        messages it releases, each to be posted ``gap_ns`` from now."""
        m = self.workload.messages[msg_id]
        self.messages_done += 1
        if self.recorder is not None:
            self._record_message(m)
        released = [d for d in self.dependents[msg_id] if self._one_less(d)]
        self.op_left[m.op] -= 1
        if self.op_left[m.op] == 0:
            self.op_end_ps[m.op] = self.end_ps[msg_id]
            if self.recorder is not None:
                self._record_op(m.op)
            released += [d for d in self.waiting_on_op[m.op] if self._one_less(d)]
        return released

    def _one_less(self, msg_id: int) -> bool:
        self.pending[msg_id] -= 1
        return self.pending[msg_id] == 0

    def finish(self, backend: str) -> None:
        """After the run: check every message completed, compute the phases' congestion and write
        the ``congestion`` table."""
        if self.messages_done != len(self.workload.messages):
            raise RuntimeError(
                f"{backend} simulation stalled: {self.messages_done} of {len(self.workload.messages)} messages completed"
            )
        self.phases = self.congestion.phases()
        for p in self.phases:
            p["start_ps"] = min(self.ready_ps[i] for i in p["msg_ids"])
            p["end_ps"] = max(self.end_ps[i] for i in p["msg_ids"])
            if self.recorder is not None:
                self.recorder.tables["congestion"].append((
                    p["job"], p["collective"], p["iteration"], p["step"], p["messages"], p["bytes"],
                    p["max_link_bytes"], p["busiest_link"], p["congestion"], ps_to_ns(p["start_ps"]), ps_to_ns(p["end_ps"]),
                    ps_to_ns(p["end_ps"] - p["start_ps"]),
                ))

    # -- times and rows ------------------------------------------------------------------------

    def op_start_ps(self, op: int) -> float:
        return min(self.ready_ps[i] for i in self.workload.collectives[op].msg_ids)

    def _record_message(self, m: Message) -> None:
        i = m.msg_id
        self.recorder.tables["messages"].append((
            i, m.job, m.collective, m.iteration, m.step, m.channel, m.src, m.dst, m.bytes,
            ps_to_ns(self.ready_ps[i]), ps_to_ns(self.start_ps[i]), ps_to_ns(self.end_ps[i]),
            ps_to_ns(self.end_ps[i] - self.ready_ps[i]), ps_to_ns(self.ideal_fct_ps[i]),
        ))

    def _record_op(self, op: int) -> None:
        c = self.workload.collectives[op]
        start, end = self.op_start_ps(op), self.op_end_ps[op]
        self.recorder.tables["collectives"].append((
            c.job, c.collective, c.iteration, c.ranks, c.bytes, ps_to_ns(start), ps_to_ns(end), ps_to_ns(end - start),
            ps_to_ns(self.ideal_op_ps[op]),
        ))

    def jobs_summary(self, scenario: Scenario) -> list[dict]:
        """Per job: the completion time of every iteration, the ideal, the slowdown."""
        jobs = []
        for job in scenario.workload.jobs:
            ops = [op.op for op in self.workload.collectives if op.job == job.name]
            cct = [ps_to_ns(self.op_end_ps[op] - self.op_start_ps(op)) for op in ops]
            ideal = [ps_to_ns(self.ideal_op_ps[op]) for op in ops]
            mean, ideal_mean = sum(cct) / len(cct), sum(ideal) / len(ideal)
            congestion = [p["congestion"] for p in self.phases if p["job"] == job.name]
            jobs.append({
                "name": job.name, "collective": job.collective, "ranks": job.ranks, "bytes": job.bytes,
                "iterations": job.iterations, "cct_ns": cct, "ideal_cct_ns": ideal, "mean_cct_ns": mean,
                "mean_ideal_cct_ns": ideal_mean, "slowdown": mean / ideal_mean if ideal_mean else None,
                "start_ns": ps_to_ns(self.op_start_ps(ops[0])), "end_ns": ps_to_ns(self.op_end_ps[ops[-1]]),
                "max_congestion": max(congestion, default=None),
                "mean_congestion": sum(congestion) / len(congestion) if congestion else None,
            })
        return jobs

    def summary(
        self, scenario: Scenario, backend: str, *, wall_s: float, events: int, packet_hops: int,
        sim_time_ps: float, flows: int, packets: int, largest_queue: dict | None, plan_s: float,
        transport: dict | None = None,
    ) -> dict:
        """``summary.json`` (its keys are documented in traces/README.md)."""
        return {
            "name": scenario.name,
            "version": __version__,
            "seed": scenario.seed,
            "backend": backend,
            "lb": scenario.lb.scheme,
            "wall_s": wall_s,
            "events": events,
            "packet_hops": packet_hops,
            "events_per_packet_hop": events / packet_hops if packet_hops else None,
            "packet_hops_per_s": packet_hops / wall_s if wall_s > 0 else None,
            "sim_time_ns": ps_to_ns(sim_time_ps),
            "messages": len(self.workload.messages),
            "flows": flows,
            "packets": packets,
            "largest_queue": largest_queue,
            "plan_s": plan_s,
            "transport": transport,
            "jobs": self.jobs_summary(scenario),
            "scenario": scenario.model_dump(mode="json"),
        }
