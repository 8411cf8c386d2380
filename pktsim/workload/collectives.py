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
from pktsim.workload.dag import COLUMN_DTYPES, COLUMNS, CollectiveOp, IdRange, Message, Workload

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


class _Sends(NamedTuple):
    """The messages of one collective op in columns (numpy arrays, one entry per message, over
    ranks 0..N-1) with op-local deps as CSR: message i waits for ``dep_ids[dep_start[i]:dep_start[i+1]]``."""

    step: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    bytes: np.ndarray
    channel: np.ndarray
    dep_start: np.ndarray
    dep_ids: np.ndarray


def _columns(sends: list[_Send]) -> _Sends:
    """A list of :class:`_Send` as columns."""
    import numpy as np  # imported when used: the scenario imports this module for its registry

    counts = np.array([len(s.deps) for s in sends], dtype=np.int64)
    dep_start = np.zeros(len(sends) + 1, dtype=np.int64)
    np.cumsum(counts, out=dep_start[1:])
    dep_ids = np.fromiter((d for s in sends for d in s.deps), dtype=np.int64, count=int(dep_start[-1]))
    col = [np.array([s[f] for s in sends], dtype=np.int64) for f in range(5)]  # step, src, dst, bytes, channel
    return _Sends(*col, dep_start, dep_ids)


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


def _ring(job: JobSpec, index: int) -> _Sends:
    """Ring collective on ranks in order (r sends to r+1), ``channels`` rings, ``slices`` pieces per step.

    Piece p of step k on channel c from rank r depends on piece p of step k-1 on channel c received
    by r (sent by r-1). Messages are numbered in (step, channel, rank, piece) order, so message
    (k, c, r, p) has id ((k * C + c) * N + r) * P + p. Built in columns with numpy (vectorised on
    purpose: a 2048-rank ring is millions of messages).
    """
    import numpy as np  # imported when used: the scenario imports this module for its registry

    n, total = job.ranks, job.bytes
    if total < n:
        raise InputError(
            "workload", _field(index, "bytes"),
            f"{job.collective} needs at least one byte per rank ({total} bytes for {n} ranks)",
        )
    n_channels = max(1, min(job.channels, total // n))
    n_slices = max(1, min(job.slices, (total // n_channels) // n))
    # sizes[c, chunk, p]: bytes of piece p of chunk ``chunk`` on channel c (every piece >= 1 byte)
    sizes = np.array([[split_evenly(chunk, n_slices) for chunk in split_evenly(c_bytes, n)]
                      for c_bytes in split_evenly(total, n_channels)], dtype=np.int64)
    assert sizes.min() > 0
    offsets = np.array(_ring_offsets(job.collective, n), dtype=np.int64)
    n_steps, per_step = len(offsets), n_channels * n * n_slices
    shape = (n_steps, n_channels, n, n_slices)
    k = np.arange(n_steps, dtype=np.int64)[:, None, None, None]
    c = np.arange(n_channels, dtype=np.int64)[None, :, None, None]
    r = np.arange(n, dtype=np.int64)[None, None, :, None]
    p = np.arange(n_slices, dtype=np.int64)[None, None, None, :]
    step = np.broadcast_to(k.astype(np.int32), shape).ravel()
    src = np.broadcast_to(r.astype(np.int32), shape).ravel()
    channel = np.broadcast_to(c.astype(np.int32), shape).ravel()
    nbytes = sizes[c, (r - offsets[k]) % n, p].ravel()
    # deps: (k-1, c, r-1, p) for every step but the first
    dep_ids = ((((k[1:] - 1) * n_channels + c) * n + (r - 1) % n) * n_slices + p)
    dep_ids = np.broadcast_to(dep_ids, (n_steps - 1, *shape[1:])).ravel()
    dep_start = np.zeros(n_steps * per_step + 1, dtype=np.int64)
    dep_start[per_step + 1:] = np.arange(1, (n_steps - 1) * per_step + 1)
    return _Sends(step, src, (src + 1) % n, nbytes, channel, dep_start, dep_ids)


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


Generator = Callable[["JobSpec", int, int], "list[_Send] | _Sends"]
"""``generator(job, index, seed)``: one op of ``job`` (the ``index``-th job) as :class:`_Send` s (or
already in columns)."""

COLLECTIVES: Registry[Generator] = Registry("collective")
"""``workload.jobs[i].collective`` -> its generator, in the order the scenario lists them."""
COLLECTIVES.add("ring_allreduce", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("alltoall_allreduce", lambda job, index, seed: _alltoall_allreduce(job))
COLLECTIVES.add("alltoall", lambda job, index, seed: _alltoall(job))
COLLECTIVES.add("allgather", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("reduce_scatter", lambda job, index, seed: _ring(job, index))
COLLECTIVES.add("permutation", _permutation)
COLLECTIVES.add("incast", lambda job, index, seed: _incast(job))


def _collective_sends(job: JobSpec, index: int, seed: int) -> _Sends:
    """One op of ``job`` (the ``index``-th job) as messages between ranks with op-local deps."""
    if job.bytes < 1:
        raise InputError("workload", _field(index, "bytes"), "must be at least 1 byte")
    if job.collective not in COLLECTIVES:
        raise InputError("workload", _field(index, "collective"), f"unknown collective {job.collective!r}")
    sends = COLLECTIVES[job.collective](job, index, seed)
    return sends if isinstance(sends, _Sends) else _columns(sends)


# ---------------------------------------------------------------------------------------------
# Public entry points


def build_workload(jobs: Sequence[JobSpec], hosts: Sequence[str], hosts_per_leaf: int, seed: int) -> Workload:
    """Place the jobs on ``hosts`` and expand each into ``job.iterations`` collective ops of messages.

    ``hosts`` are host names in leaf order (``hosts_per_leaf`` per leaf, the default stride of
    ``strided`` placement); the workload's host codes index them. ``seed`` fixes random placement
    and random permutations. Times (``gap_ns``) are in ns: the first iteration's root messages are
    ready at ``job.start_ns``; later iterations wait for the previous one plus ``job.compute_gap_ns``.
    Every column is built with numpy, op by op into arrays of the final size (vectorised on purpose).
    """
    import numpy as np  # imported when used: the scenario imports this module for its registry

    placements = place_jobs(jobs, hosts, hosts_per_leaf, seed)
    index_of = {h: i for i, h in enumerate(hosts)}
    collective_names = list(dict.fromkeys(job.collective for job in jobs))
    sends = [_collective_sends(job, j, seed) for j, job in enumerate(jobs)]
    # The columns are allocated once at their final size and filled op by op (no concatenation).
    n = sum(len(s.bytes) * job.iterations for s, job in zip(sends, jobs))
    n_deps = sum(len(s.dep_ids) * job.iterations for s, job in zip(sends, jobs))
    cols = {name: np.empty(n, dtype=COLUMN_DTYPES.get(name, np.int32)) for name in COLUMNS}
    dep_start = np.zeros(n + 1, dtype=np.int64)
    dep_ids = np.empty(n_deps, dtype=np.int64)
    ops: list[CollectiveOp] = []
    base = n_base = 0
    for j, (job, placed, s) in enumerate(zip(jobs, placements, sends)):
        codes = np.array([index_of[h] for h in placed], dtype=np.int64)
        src, dst = codes[s.src], codes[s.dst]
        root = s.dep_start[1:] == s.dep_start[:-1]
        m, d = len(s.bytes), len(s.dep_ids)
        for it in range(job.iterations):
            op = len(ops)
            a, b = base, base + m
            cols["job"][a:b] = j
            cols["collective"][a:b] = collective_names.index(job.collective)
            cols["iteration"][a:b] = it
            cols["step"][a:b] = s.step
            cols["src"][a:b] = src
            cols["dst"][a:b] = dst
            cols["bytes"][a:b] = s.bytes
            cols["gap_ns"][a:b] = np.where(root, job.start_ns if it == 0 else job.compute_gap_ns, 0)
            cols["channel"][a:b] = s.channel
            cols["op"][a:b] = op
            cols["after_op"][a:b] = np.where(root, op - 1, -1) if it > 0 else -1
            dep_start[a + 1:b + 1] = s.dep_start[1:] + n_base
            dep_ids[n_base:n_base + d] = s.dep_ids + a
            ops.append(CollectiveOp(
                op=op, job=job.name, collective=job.collective, iteration=it, ranks=job.ranks,
                bytes=job.bytes, hosts=tuple(placed), msg_ids=IdRange(a, b),
            ))
            base, n_base = b, n_base + d
        sends[j] = None  # type: ignore[call-overload]  # free each job's op once expanded
    return Workload(
        hosts=hosts, job_names=[job.name for job in jobs], collective_names=collective_names,
        columns=cols, dep_start=dep_start, dep_ids=dep_ids, collectives=ops,
    )


def critical_path(workload: Workload, msg_time: Callable[[Message], float]) -> list[float]:
    """Per collective op, its duration (same unit as ``msg_time``) on an infinitely parallel network:
    the longest dependency chain through it, when every message takes ``msg_time(m)`` and starts as
    soon as its deps are done (plus ``gap_ns``). The op's first messages start at 0, whatever
    barrier or start time delays them. See :func:`critical_path_array` (times as an array)."""
    import numpy as np  # imported when used: the scenario imports this module for its registry

    times = np.array([msg_time(m) for m in workload.messages], dtype=np.float64)
    return critical_path_array(workload, times)


def critical_path_array(workload: Workload, msg_time) -> list[float]:
    """:func:`critical_path` with per-message times ``msg_time`` (an array indexed by msg_id).

    Vectorised by phase: a maximal run of messages of the same (op, step) that all depend on
    earlier messages only is one array step (max over each message's deps with ``reduceat``);
    a run with a dep inside it falls back to a forward pass (msg_ids are a topological order:
    asserted). The arithmetic is the scalar version's (float64 max and +), so results are equal.
    """
    import numpy as np  # imported when used: the scenario imports this module for its registry

    t = np.asarray(msg_time, dtype=np.float64)
    n = len(t)
    finish = np.zeros(n)
    ds, di = workload.dep_start, workload.dep_ids
    gap = workload.gap_ns.astype(np.float64)
    if n:
        key_change = (np.diff(workload.op) != 0) | (np.diff(workload.step) != 0)
        bounds = np.concatenate([[0], np.flatnonzero(key_change) + 1, [n]]).tolist()
    else:
        bounds = [0]
    for a, b in zip(bounds, bounds[1:]):
        lo, hi = int(ds[a]), int(ds[b])
        ids = di[lo:hi]
        if len(ids) and int(ids.max()) >= a:  # a dep inside the run: one message at a time
            for i in range(a, b):
                deps = di[ds[i]:ds[i + 1]]
                assert not len(deps) or int(deps.max()) < i, f"message {i} depends on a later message"
                start = finish[deps].max() + gap[i] if len(deps) else 0.0
                finish[i] = start + t[i]
            continue
        start = np.zeros(b - a)
        has = ds[a + 1:b + 1] > ds[a:b]
        if has.any():
            start[has] = np.maximum.reduceat(finish[ids], (ds[a:b] - lo)[has]) + gap[a:b][has]
        finish[a:b] = start + t[a:b]
    return [max(0.0, float(finish[op.msg_ids.start:op.msg_ids.stop].max(initial=0.0))) for op in workload.collectives]
