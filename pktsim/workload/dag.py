"""The workload DAG: messages with dependencies, independent of any network model.

Collective generators (``pktsim.collectives``) produce a :class:`Workload`; backends execute it.
A message becomes *ready* when every message in ``deps`` has been fully received and, if
``after_op`` is set, every message of that collective op too (an iteration barrier), plus ``gap_ns``;
a message without either is ready at ``gap_ns`` (absolute time).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Message:
    """One point-to-point transfer of ``bytes`` payload bytes from host ``src`` to host ``dst``."""

    msg_id: int
    job: str
    collective: str
    iteration: int
    step: int
    src: str
    dst: str
    bytes: int
    deps: tuple[int, ...] = ()
    gap_ns: int = 0
    """Delay after the last dependency completes, or the absolute ready time without dependencies."""
    channel: int = 0
    """Connection index between this (src, dst) pair within the job (NCCL channel)."""
    op: int = 0
    """Index of the :class:`CollectiveOp` this message belongs to."""
    after_op: int = -1
    """A collective op that must complete before this message is ready (-1: none)."""


@dataclass(frozen=True, slots=True)
class CollectiveOp:
    """One collective operation (one iteration of one job) and the messages that make it up."""

    op: int
    job: str
    collective: str
    iteration: int
    ranks: int
    bytes: int
    hosts: tuple[str, ...]
    msg_ids: tuple[int, ...]


@dataclass(slots=True)
class Workload:
    messages: list[Message] = field(default_factory=list)
    collectives: list[CollectiveOp] = field(default_factory=list)

    def dependents(self) -> list[list[int]]:
        """For every message, the ids of the messages that wait for it."""
        out: list[list[int]] = [[] for _ in self.messages]
        for m in self.messages:
            for d in m.deps:
                out[d].append(m.msg_id)
        return out
