"""Collective generators: where a ring AllReduce becomes messages.

:func:`build_workload` places every job's ranks on hosts and turns each job into a DAG of
point-to-point :class:`~pktsim.workload.Message` s (source, destination, bytes, dependencies). Nothing
here knows about packets, links or time other than the ``gap_ns`` delays the job asks for.

Conventions
-----------
- msg_ids are ``0..M-1`` in creation order: job by job, iteration by iteration, step by step. Every
  dependency has a smaller id than its dependent, so a single forward pass over msg_ids is a
  topological order (:func:`critical_path` relies on it and asserts it).
- Byte counts are split with :func:`split_evenly` (parts sum exactly to the total; the first
  ``total % n`` parts carry one extra byte). Zero-byte messages are never emitted:

  * ring collectives (``ring_allreduce``, ``reduce_scatter``, ``allgather``) need ``bytes >= ranks``;
    when the buffer is too small for ``channels`` x ``ranks`` x ``slices`` non-empty pieces, the
    number of channels and then of slices is reduced until every piece holds at least one byte;
  * direct collectives (``alltoall``, ``alltoall_allreduce``, ``permutation``, ``incast``) simply
    skip empty parts (e.g. ``alltoall`` with ``bytes < ranks`` sends nothing to some ranks).
- ``channels`` applies to every collective: each (src, dst) transfer is cut into ``channels`` parallel
  messages on connections ``0..channels-1``. ``slices`` applies to ring collectives only.
- Iteration barrier: the root messages (no intra-collective deps) of iteration i+1 wait for the whole
  collective op of iteration i (``after_op``), plus ``gap_ns = compute_gap_ns``: one barrier instead
  of fan-in x fan-out message edges (an alltoall would need (N(N-1))^2 per iteration boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pktsim.errors import InputError
from pktsim.registry import Registry
from pktsim.units import split_evenly
from pktsim.workload.dag import CollectiveOp, Message, Workload

if TYPE_CHECKING:  # the scenario's JobSpec takes its list of collectives from COLLECTIVES below
    import numpy as np

    from pktsim.scenario import JobSpec

RING_COLLECTIVES = ("ring_allreduce", "reduce_scatter", "allgather")


class _Send(NamedTuple):
    """A message of one collective op, before it gets global ids: ranks and op-local deps."""

    step: int
    src: int
    dst: int
    bytes: int
    channel: int
    deps: tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# Helpers


def _field(index: int, name: str) -> str:
    return f"workload.jobs[{index}].{name}"


def random_derangement(n: int, rng: np.random.Generator) -> list[int]:
    """A uniformly random permutation of ``range(n)`` without fixed points (rejection sampling)."""
    import numpy as np  # imported when used: the scenario imports this module for its registry

    if n < 2:
        raise ValueError("a derangement needs at least 2 elements")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return [int(x) for x in perm]


# ---------------------------------------------------------------------------------------------
# Placement


def place_jobs(jobs: Sequence[JobSpec], hosts: Sequence[str], hosts_per_leaf: int, seed: int) -> list[list[str]]:
    """The hosts of every job's ranks (``result[j][r]`` = host of rank r of job j).

    Jobs are placed in order on disjoint hosts. ``hosts`` are in leaf order (host i under leaf
    ``i // hosts_per_leaf``). Raises :class:`InputError` for a placement that cannot be honoured.
    """
    import numpy as np  # imported when used: the scenario imports this module for its registry

    n_hosts = len(hosts)
    index_of = {h: i for i, h in enumerate(hosts)}
    owner: dict[int, str] = {}  # host index -> name of the job that uses it
    out: list[list[str]] = []
    for j, job in enumerate(jobs):
        field = _field(j, "placement")
        free = [i for i in range(n_hosts) if i not in owner]
        if not isinstance(job.placement, list) and job.ranks > len(free):
            raise InputError(
                "workload", _field(j, "ranks"),
                f"{job.ranks} ranks but only {len(free)} of {n_hosts} hosts are free",
            )
        if job.placement == "packed":
            chosen = free[: job.ranks]
        elif job.placement == "random":
            rng = np.random.default_rng([seed, j])
            chosen = [free[int(k)] for k in rng.choice(len(free), size=job.ranks, replace=False)]
        elif job.placement == "strided":
            stride = job.stride if job.stride is not None else hosts_per_leaf
            taken = set(owner)
            chosen = []
            for r in range(job.ranks):
                h = (r * stride) % n_hosts
                while h in taken:  # terminates: enough free hosts was checked above
                    h = (h + 1) % n_hosts
                taken.add(h)
                chosen.append(h)
        else:
            if len(job.placement) != job.ranks:
                raise InputError("workload", field, f"lists {len(job.placement)} hosts for {job.ranks} ranks")
            chosen = []
            for name in job.placement:
                if name not in index_of:
                    raise InputError("workload", field, f"host {name} does not exist")
                h = index_of[name]
                if h in owner:
                    raise InputError("workload", field, f"host {name} is already used by job {owner[h]}")
                if h in chosen:
                    raise InputError("workload", field, f"host {name} is listed twice")
                chosen.append(h)
        for h in chosen:
            owner[h] = job.name
        out.append([hosts[h] for h in chosen])
    return out


# ---------------------------------------------------------------------------------------------
# Generators: one collective op as _Sends over ranks 0..N-1 with op-local deps


def _ring_offsets(collective: str, n: int) -> list[int]:
    """Per ring step k, the offset o such that rank r sends chunk (r - o) mod n.

    Reduce-scatter: step k sends chunk r-k-1, so rank r ends owning reduced chunk r.
    All-gather: step k sends chunk r-k, starting with rank r's own chunk.
    """
    rs = [k + 1 for k in range(n - 1)]
    ag = [k for k in range(n - 1)]
    return {"ring_allreduce": rs + ag, "reduce_scatter": rs, "allgather": ag}[collective]


def _ring(job: JobSpec, index: int) -> list[_Send]:
    """Ring collective on ranks in order (r sends to r+1), ``channels`` rings, ``slices`` pieces per step.

    Piece p of step k on channel c from rank r depends on piece p of step k-1 on channel c received
    by r (sent by r-1).
    """
    n, total = job.ranks, job.bytes
    if total < n:
        raise InputError(
            "workload", _field(index, "bytes"),
            f"{job.collective} needs at least one byte per rank ({total} bytes for {n} ranks)",
        )
    n_channels = max(1, min(job.channels, total // n))
    n_slices = max(1, min(job.slices, (total // n_channels) // n))
    chunks = [split_evenly(c_bytes, n) for c_bytes in split_evenly(total, n_channels)]
    pieces = [[split_evenly(chunk, n_slices) for chunk in ch] for ch in chunks]
    sends: list[_Send] = []
    received: dict[tuple[int, int, int], int] = {}  # (channel, piece, receiving rank) -> local id, previous step
    for k, offset in enumerate(_ring_offsets(job.collective, n)):
        now: dict[tuple[int, int, int], int] = {}
        for c in range(n_channels):
            for r in range(n):
                for p, size in enumerate(pieces[c][(r - offset) % n]):
                    assert size > 0
                    deps = (received[c, p, r],) if k > 0 else ()
                    now[c, p, (r + 1) % n] = len(sends)
                    sends.append(_Send(k, r, (r + 1) % n, size, c, deps))
        received = now
    return sends


def _direct(src: int, dst: int, size: int, step: int, n_channels: int, deps: tuple[int, ...], out: list[_Send]) -> None:
    """Append ``size`` bytes from src to dst, cut over ``n_channels`` connections (empty parts skipped)."""
    for c, part in enumerate(split_evenly(size, n_channels)):
        if part > 0:
            out.append(_Send(step, src, dst, part, c, deps))


def _alltoall(job: JobSpec) -> list[_Send]:
    """Every rank sends chunk d (of S/N bytes) to every other rank d, in one step."""
    n = job.ranks
    chunks = split_evenly(job.bytes, n)
    sends: list[_Send] = []
    for r in range(n):
        for d in range(n):
            if d != r:
                _direct(r, d, chunks[d], 0, job.channels, (), sends)
    return sends


def _alltoall_allreduce(job: JobSpec) -> list[_Send]:
    """Direct reduce-scatter (step 0) then direct all-gather (step 1).

    Step 1: rank r sends its reduced chunk r to every other rank once it has received every step-0
    message addressed to it.
    """
    n = job.ranks
    chunks = split_evenly(job.bytes, n)
    sends = _alltoall(job)
    into: list[list[int]] = [[] for _ in range(n)]
    for i, s in enumerate(sends):
        into[s.dst].append(i)
    for r in range(n):
        deps = tuple(into[r])
        for d in range(n):
            if d != r:
                _direct(r, d, chunks[r], 1, job.channels, deps, sends)
    return sends


def _permutation(job: JobSpec, index: int, seed: int) -> list[_Send]:
    """Rank r sends S bytes to (r + shift) mod N, or to a seeded random derangement of the ranks."""
    import numpy as np  # imported when used: the scenario imports this module for its registry

    n = job.ranks
    if job.shift is not None:
        target = [(r + job.shift) % n for r in range(n)]
    else:
        target = random_derangement(n, np.random.default_rng([seed, index, 1]))
    sends: list[_Send] = []
    for r in range(n):
        _direct(r, target[r], job.bytes, 0, job.channels, (), sends)
    return sends


def _incast(job: JobSpec) -> list[_Send]:
    """Every rank except ``receiver`` sends S bytes to ``receiver``."""
    sends: list[_Send] = []
    for r in range(job.ranks):
        if r != job.receiver:
            _direct(r, job.receiver, job.bytes, 0, job.channels, (), sends)
    return sends


Generator = Callable[["JobSpec", int, int], list[_Send]]
"""``generator(job, index, seed)``: one op of ``job`` (the ``index``-th job) as :class:`_Send` s."""

COLLECTIVES: Registry[Generator] = Registry("collective")
"""``workload.jobs[i].collective`` -> its generator, in the order the scenario lists them."""
COLLECTIVES.add("ring_allreduce", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("alltoall_allreduce", lambda job, index, seed: _alltoall_allreduce(job))
COLLECTIVES.add("alltoall", lambda job, index, seed: _alltoall(job))
COLLECTIVES.add("allgather", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("reduce_scatter", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("permutation", _permutation)
COLLECTIVES.add("incast", lambda job, index, seed: _incast(job))


def _collective_sends(job: JobSpec, index: int, seed: int) -> list[_Send]:
    """One op of ``job`` (the ``index``-th job) as messages between ranks with op-local deps."""
    if job.bytes < 1:
        raise InputError("workload", _field(index, "bytes"), "must be at least 1 byte")
    if job.collective not in COLLECTIVES:
        raise InputError("workload", _field(index, "collective"), f"unknown collective {job.collective!r}")
    return COLLECTIVES[job.collective](job, index, seed)


# ---------------------------------------------------------------------------------------------
# Public entry points


def build_workload(jobs: Sequence[JobSpec], hosts: Sequence[str], hosts_per_leaf: int, seed: int) -> Workload:
    """Place the jobs on ``hosts`` and expand each into ``job.iterations`` collective ops of messages.

    ``hosts`` are host names in leaf order (``hosts_per_leaf`` per leaf, the default stride of
    ``strided`` placement). ``seed`` fixes random placement and random permutations. Times
    (``gap_ns``) are in ns: the first iteration's root messages are ready at ``job.start_ns``; later
    iterations wait for the previous one plus ``job.compute_gap_ns``.
    """
    placements = place_jobs(jobs, hosts, hosts_per_leaf, seed)
    wl = Workload()
    for j, (job, placed) in enumerate(zip(jobs, placements)):
        sends = _collective_sends(job, j, seed)
        for it in range(job.iterations):
            base = len(wl.messages)
            op = len(wl.collectives)
            for s in sends:
                after_op = -1
                if s.deps:
                    deps, gap = tuple(base + d for d in s.deps), 0
                elif it == 0:
                    deps, gap = (), job.start_ns
                else:
                    deps, gap, after_op = (), job.compute_gap_ns, op - 1
                wl.messages.append(Message(
                    msg_id=len(wl.messages), job=job.name, collective=job.collective, iteration=it,
                    step=s.step, src=placed[s.src], dst=placed[s.dst], bytes=s.bytes, deps=deps,
                    gap_ns=gap, channel=s.channel, op=op, after_op=after_op,
                ))
            wl.collectives.append(CollectiveOp(
                op=op, job=job.name, collective=job.collective, iteration=it, ranks=job.ranks,
                bytes=job.bytes, hosts=tuple(placed), msg_ids=tuple(range(base, len(wl.messages))),
            ))
    return wl


def critical_path(workload: Workload, msg_time: Callable[[Message], float]) -> list[float]:
    """Per collective op, its duration (same unit as ``msg_time``) on an infinitely parallel network:
    the longest dependency chain through it, when every message takes ``msg_time(m)`` and starts as
    soon as its deps are done (plus ``gap_ns``). The op's first messages start at 0, whatever
    barrier or start time delays them. Messages are in topological order (asserted).
    """
    finish = [0.0] * len(workload.messages)
    out: list[float] = []
    for op in workload.collectives:
        end = 0.0
        for i in op.msg_ids:
            m = workload.messages[i]
            assert not m.deps or max(m.deps) < i, f"message {i} depends on a later message"
            start = max(finish[d] for d in m.deps) + m.gap_ns if m.deps else 0.0
            finish[i] = start + msg_time(m)
            end = max(end, finish[i])
        out.append(end)
    return out
