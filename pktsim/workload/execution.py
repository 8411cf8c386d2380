"""Executing a workload DAG, whatever moves the bytes.

Both backends (packets, fluid) drive one :class:`DagExecution`: they tell it when a message was
posted and when each of its flows was received, and it says which messages that releases and keeps
the times. It reports each completed message, collective op and phase to a listener (the
recorder), so the two backends' tables agree in meaning by construction, and validating one
against the other is a join on ``msg_id``. Times are picoseconds (int for packets, float for the
fluid model).
"""

from __future__ import annotations

from typing import Protocol

from pktsim.analysis.congestion import CongestionMeter
from pktsim.workload.dag import CollectiveOp, Message, Workload


class ExecutionListener(Protocol):
    """What hears about completions (times in ps): the recorder, in a run that writes traces."""

    def message_done(self, m: Message, ready_ps: float, start_ps: float, end_ps: float, ideal_fct_ps: int,
                     single_path_fct_ps: int | None = None) -> None: ...

    def collective_done(self, op: CollectiveOp, start_ps: float, end_ps: float, ideal_ps: int) -> None: ...

    def phase_done(self, phase: dict) -> None: ...


class DagExecution:
    """Readiness, timing and recording of the messages and collective ops of one run."""

    def __init__(
        self, workload: Workload, ideal_fct_ps: list[int], ideal_op_ps: list[int], congestion: CongestionMeter,
        single_path_fct_ps: list[int] | None = None,
    ) -> None:
        self.workload = workload
        self.congestion = congestion
        self.ideal_fct_ps = ideal_fct_ps
        """Per message: the lower bound on its FCT (ps)."""
        self.ideal_op_ps = ideal_op_ps
        self.single_path_fct_ps = single_path_fct_ps
        """Per message: its FCT alone on one path (ps), or None when not known."""
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
        self.listener: ExecutionListener | None = None

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
        if self.listener is not None:
            i = m.msg_id
            single = self.single_path_fct_ps[i] if self.single_path_fct_ps is not None else None
            self.listener.message_done(m, self.ready_ps[i], self.start_ps[i], self.end_ps[i], self.ideal_fct_ps[i],
                                       single)
        released = [d for d in self.dependents[msg_id] if self._one_less(d)]
        self.op_left[m.op] -= 1
        if self.op_left[m.op] == 0:
            self.op_end_ps[m.op] = self.end_ps[msg_id]
            if self.listener is not None:
                self.listener.collective_done(self.workload.collectives[m.op], self.op_start_ps(m.op),
                                              self.op_end_ps[m.op], self.ideal_op_ps[m.op])
            released += [d for d in self.waiting_on_op[m.op] if self._one_less(d)]
        return released

    def _one_less(self, msg_id: int) -> bool:
        self.pending[msg_id] -= 1
        return self.pending[msg_id] == 0

    def finish(self, backend: str) -> None:
        """After the run: check every message completed, compute the phases' congestion and report
        each phase."""
        if self.messages_done != len(self.workload.messages):
            raise RuntimeError(
                f"{backend} simulation stalled: {self.messages_done} of {len(self.workload.messages)} messages completed"
            )
        self.phases = self.congestion.phases()
        for p in self.phases:
            p["start_ps"] = min(self.ready_ps[i] for i in p["msg_ids"])
            p["end_ps"] = max(self.end_ps[i] for i in p["msg_ids"])
            if self.listener is not None:
                self.listener.phase_done(p)

    # -- times ---------------------------------------------------------------------------------

    def op_start_ps(self, op: int) -> float:
        return min(self.ready_ps[i] for i in self.workload.collectives[op].msg_ids)
