"""Executing a workload DAG, whatever moves the bytes.

Both backends (packets, fluid) drive one :class:`DagExecution`: they tell it when a message was
posted and when each of its flows was received, and it says which messages that releases and keeps
the times. It reports each completed message, collective op and phase to a listener (the
recorder), so the two backends' tables agree in meaning by construction, and validating one
against the other is a join on ``msg_id``. Times are picoseconds (int for packets, float for the
fluid model).
"""

from __future__ import annotations

from array import array
from typing import Protocol

import numpy as np

from pktsim.analysis.congestion import CongestionMeter, phase_groups
from pktsim.workload.dag import CollectiveOp, Message, Workload


class ExecutionListener(Protocol):
    """What hears about completions (times in ps): the recorder, in a run that writes traces."""

    def message_done(self, m: Message, ready_ps: float, start_ps: float, end_ps: float, ideal_fct_ps: int,
                     single_path_fct_ps: int | None = None) -> None: ...

    def collective_done(self, op: CollectiveOp, start_ps: float, end_ps: float, ideal_ps: int) -> None: ...

    def phase_done(self, phase: dict) -> None: ...


class DagExecution:
    """Readiness, timing and recording of the messages and collective ops of one run.

    State is per message in flat typed arrays (``array.array``: a plain Python number per scalar
    read or write, which the backends do once per message, and a zero-copy numpy view for bulk
    work): ``pending`` (int32: deps and barrier left), ``ready_ps`` / ``start_ps`` / ``end_ps``
    (float64 ps, -1 until known; exact for the packet backend's integer ps below 2**53) and
    ``rx_bytes`` (int64). Dependents are CSR, from :meth:`Workload.dependents`.
    """

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
        n = len(workload.bytes)
        offsets, ids = workload.dependents()
        self._dep_offsets, self._dependents = memoryview(offsets), memoryview(ids)
        # Messages waiting on each op's barrier, as CSR over ops (stable sort: in msg_id order).
        waiting = np.flatnonzero(workload.after_op >= 0)
        by_op = workload.after_op[waiting]
        order = np.argsort(by_op, kind="stable")
        wait_start = np.zeros(len(workload.collectives) + 1, dtype=np.int64)
        np.cumsum(np.bincount(by_op, minlength=len(workload.collectives)), out=wait_start[1:])
        self._wait_start, self._waiting = memoryview(wait_start), memoryview(waiting[order].astype(np.int64))
        pending = workload.dep_counts() + (workload.after_op >= 0)
        self.pending = array("i", pending.astype(np.int32).tobytes())
        self.ready_ps = array("d", [-1.0]) * n
        self.start_ps = array("d", [-1.0]) * n
        self.end_ps = array("d", [-1.0]) * n
        self.rx_bytes = array("q", bytes(8 * n))
        self._bytes, self._op = memoryview(workload.bytes), memoryview(workload.op)
        self.op_left = [len(op.msg_ids) for op in workload.collectives]
        self.op_end_ps: list[float] = [-1] * len(workload.collectives)
        self.messages_done = 0
        self.phases: list[dict] = []
        """Per phase (op, step): congestion and times, filled by :meth:`finish`."""
        self.listener: ExecutionListener | None = None

    def roots(self) -> list[Message]:
        """Messages with nothing to wait for: each is ready at its ``gap_ns`` (absolute)."""
        msgs = self.workload.messages
        return [msgs[i] for i in np.flatnonzero(np.frombuffer(self.pending, dtype=np.int32) == 0).tolist()]

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
        self.congestion.add_flow(msg_id, nbytes, path, spine_bytes)
        first = self.start_ps[msg_id]
        if first < 0 or start_ps < first:
            self.start_ps[msg_id] = start_ps
        self.rx_bytes[msg_id] += nbytes
        if self.rx_bytes[msg_id] < self._bytes[msg_id]:
            return False
        self.end_ps[msg_id] = end_ps
        return True

    def message_done(self, msg_id: int) -> list[int]:
        """Account for a completed message (at its ``end_ps``, which must be now); returns the
        messages it releases, each to be posted ``gap_ns`` from now."""
        self.messages_done += 1
        i = msg_id
        if self.listener is not None:
            single = self.single_path_fct_ps[i] if self.single_path_fct_ps is not None else None
            self.listener.message_done(self.workload.messages[i], self.ready_ps[i], self.start_ps[i], self.end_ps[i],
                                       self.ideal_fct_ps[i], single)
        pending = self.pending
        released = []
        offsets = self._dep_offsets
        for d in self._dependents[offsets[i]:offsets[i + 1]]:  # inlined on purpose: once per message
            pending[d] -= 1
            if not pending[d]:
                released.append(d)
        op = self._op[i]
        self.op_left[op] -= 1
        if self.op_left[op] == 0:
            self.op_end_ps[op] = self.end_ps[i]
            if self.listener is not None:
                self.listener.collective_done(self.workload.collectives[op], self.op_start_ps(op),
                                              self.op_end_ps[op], self.ideal_op_ps[op])
            for d in self._waiting[self._wait_start[op]:self._wait_start[op + 1]]:
                pending[d] -= 1
                if not pending[d]:
                    released.append(d)
        return released

    def finish(self, backend: str) -> None:
        """After the run: check every message completed, compute the phases' congestion and fair
        shares and report each phase."""
        if self.messages_done != len(self.workload.messages):
            raise RuntimeError(
                f"{backend} simulation stalled: {self.messages_done} of {len(self.workload.messages)} messages completed"
            )
        if not len(self.workload.bytes):
            return
        groups = phase_groups(self.workload)
        self.phases = self.congestion.phases(groups)
        starts = groups.bounds[:-1]
        start = np.minimum.reduceat(np.frombuffer(self.ready_ps, dtype=np.float64)[groups.order], starts)
        end = np.maximum.reduceat(np.frombuffer(self.end_ps, dtype=np.float64)[groups.order], starts)
        fair = self.congestion.fairness(groups, start, end, [p["group"] for p in self.phases])
        for p in self.phases:
            p["start_ps"] = float(start[p["group"]])
            p["end_ps"] = float(end[p["group"]])
            p.update(fair[p["group"]])
            if self.listener is not None:
                self.listener.phase_done(p)

    # -- times ---------------------------------------------------------------------------------

    def op_start_ps(self, op: int) -> float:
        ids = self.workload.collectives[op].msg_ids
        return float(np.frombuffer(self.ready_ps, dtype=np.float64)[ids.start:ids.stop].min())
