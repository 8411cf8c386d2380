"""The workload DAG: messages with dependencies, independent of any network model.

Collective generators (``pktsim.collectives``) produce a :class:`Workload`; backends execute it.
A message becomes *ready* when every message in ``deps`` has been fully received and, if
``after_op`` is set, every message of that collective op too (an iteration barrier), plus ``gap_ns``;
a message without either is ready at ``gap_ns`` (absolute time).

Layout: the messages are held in columns (one numpy array per field, indexed by ``msg_id``), the
dependencies as CSR (``dep_start[i]:dep_start[i + 1]`` is the slice of ``dep_ids`` holding message
i's deps) and the strings (job, collective, hosts) as small integer codes into name tables, so a
message costs tens of bytes, not a Python object. Bulk code (the DAG execution, ideal times,
congestion, the backends' bookkeeping) reads the columns; code that wants one message asks
``workload.messages[i]`` for a :class:`Message` built on demand.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np


class Message(NamedTuple):
    """One point-to-point transfer of ``bytes`` payload bytes from host ``src`` to host ``dst``
    (a read-only view of one row of a :class:`Workload`, built on demand)."""

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


class IdRange(Sequence[int]):
    """The msg_ids ``start..stop-1`` of a collective op (its messages are contiguous), without a
    tuple of millions of ints. Equal to any sequence of the same ids (a tuple, a range, a list)."""

    __slots__ = ("start", "stop")

    def __init__(self, start: int, stop: int) -> None:
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> range: ...

    def __getitem__(self, i):
        return range(self.start, self.stop)[i]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __contains__(self, x: object) -> bool:
        return x in range(self.start, self.stop)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdRange):
            return (self.start, self.stop) == (other.start, other.stop)
        if isinstance(other, (tuple, list, range)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((IdRange, self.start, self.stop))

    def __repr__(self) -> str:
        return f"IdRange({self.start}, {self.stop})"

    def array(self) -> np.ndarray:
        """The ids as an int64 array."""
        return np.arange(self.start, self.stop, dtype=np.int64)


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
    msg_ids: IdRange


COLUMNS = ("job", "collective", "iteration", "step", "src", "dst", "bytes", "gap_ns", "channel", "op", "after_op")
"""The per-message columns of a :class:`Workload` (strings as codes into its name tables)."""

COLUMN_DTYPES = {"bytes": np.int64, "gap_ns": np.int64}
"""Column dtypes other than int32."""


class MessageView(Sequence[Message]):
    """``workload.messages``: the messages as a sequence of :class:`Message` built on demand.

    Scalar reads go through memoryviews of the columns (a plain Python int per read, as fast as a
    list) rather than numpy scalar indexing."""

    def __init__(self, w: Workload) -> None:
        self._n = len(w.bytes)
        self._cols = tuple(memoryview(getattr(w, c)) for c in COLUMNS)
        self._dep_start = memoryview(w.dep_start)
        self._dep_ids = memoryview(w.dep_ids)
        self._jobs, self._colls, self._hosts = w.job_names, w.collective_names, w.hosts

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("message index out of range")
        job, coll, it, step, src, dst, nbytes, gap, channel, op, after = (c[i] for c in self._cols)
        deps = tuple(self._dep_ids[self._dep_start[i]:self._dep_start[i + 1]])
        hosts = self._hosts
        return Message(i, self._jobs[job], self._colls[coll], it, step, hosts[src], hosts[dst], nbytes, deps,
                       gap, channel, op, after)

    def __iter__(self) -> Iterator[Message]:
        for i in range(self._n):
            yield self[i]


class Workload:
    """The message DAG in columns (see the module docstring) and its collective ops.

    Per message ``i``: ``job[i]`` / ``collective[i]`` index ``job_names`` / ``collective_names``,
    ``src[i]`` / ``dst[i]`` index ``hosts``; ``iteration``, ``step``, ``bytes``, ``gap_ns`` (ns),
    ``channel``, ``op``, ``after_op`` as in :class:`Message`; deps ``dep_ids[dep_start[i]:dep_start[i+1]]``.
    """

    def __init__(self, hosts: Sequence[str] = (), job_names: Sequence[str] = (),
                 collective_names: Sequence[str] = (), columns: dict[str, np.ndarray] | None = None,
                 dep_start: np.ndarray | None = None, dep_ids: np.ndarray | None = None,
                 collectives: list[CollectiveOp] | None = None) -> None:
        self.hosts = list(hosts)
        self.job_names = list(job_names)
        self.collective_names = list(collective_names)
        columns = columns or {}
        for c in COLUMNS:
            dtype = COLUMN_DTYPES.get(c, np.int32)
            setattr(self, c, np.ascontiguousarray(columns.get(c, np.zeros(0)), dtype=dtype))
        n = len(self.bytes)
        self.dep_start = np.zeros(n + 1, dtype=np.int64) if dep_start is None else np.ascontiguousarray(dep_start, np.int64)
        self.dep_ids = np.zeros(0, dtype=np.int64) if dep_ids is None else np.ascontiguousarray(dep_ids, np.int64)
        self.collectives: list[CollectiveOp] = collectives or []
        self.messages = MessageView(self)
        """The messages, one :class:`Message` per index (built on demand)."""

    def __len__(self) -> int:
        return len(self.bytes)

    def __eq__(self, other: object) -> bool:
        """Equal names, columns, deps and collective ops."""
        if not isinstance(other, Workload):
            return NotImplemented
        arrays = (*COLUMNS, "dep_start", "dep_ids")
        return ((self.hosts, self.job_names, self.collective_names, self.collectives)
                == (other.hosts, other.job_names, other.collective_names, other.collectives)
                and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in arrays))

    __hash__ = None  # mutable arrays: not hashable

    def dep_counts(self) -> np.ndarray:
        """Per message, how many messages it waits for (int64)."""
        return np.diff(self.dep_start)

    def dependents(self) -> tuple[np.ndarray, np.ndarray]:
        """For every message, the ids of the messages that wait for it, as CSR (offsets of length
        M + 1, flat ids): message d's dependents are ``ids[offsets[d]:offsets[d + 1]]``, in
        increasing msg_id order."""
        n = len(self.bytes)
        owner = np.repeat(np.arange(n, dtype=np.int64), self.dep_counts())
        order = np.argsort(self.dep_ids, kind="stable")  # stable: dependents stay in msg_id order
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.dep_ids, minlength=n), out=offsets[1:])
        return offsets, owner[order]

    def host_codes(self, names: Sequence[str]) -> np.ndarray:
        """Codes (indices into ``hosts``) of host ``names``; -1 for a host the workload does not know."""
        index = {h: i for i, h in enumerate(self.hosts)}
        return np.array([index.get(h, -1) for h in names], dtype=np.int64)
