"""The bounds of a scenario: every count, size, rate and time has a documented range (the field
types of :mod:`pktsim.scenario.spec` use these constants), and the work a scenario projects
(hosts, switch ports, routing-table work, messages, packets, simulated time) is estimated from
the spec alone, in microseconds, and refused above a limit before anything is built.

The limits keep bad input from hanging or crashing a run; they are far above the shipped presets
(the largest, ls32x64x32, has 2,048 hosts and 6,144 switch ports). README "Scenario files" lists
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pktsim.scenario.spec import JobSpec, Scenario

# -- field bounds ---------------------------------------------------------------------------------

MAX_COUNT = 100_000
"""spines, leaves, hosts_per_leaf, ranks, stride, |shift|."""
MAX_FAT_TREE_K = 1024
MAX_PARALLEL = 1024
"""channels, slices, lb.subflows, lb.adaptive_choices."""
MAX_SMALL_COUNT = 1_000_000
"""Other counts: iterations, ack_every, DCQCN's fast-recovery steps."""
MAX_ANNEALING_STEPS = 10_000_000
MAX_JOBS = MAX_COUNT // 2
MAX_FAULTS = 10_000
MAX_SEED = 2**63 - 1

MAX_MESSAGE_BYTES = 2**50
"""A job's bytes (1 PiB)."""
MAX_BUFFER_BYTES = 2**40
"""Buffers, thresholds, windows, byte counters (1 TiB)."""
MAX_PACKET_BYTES = 65_536
"""nic.mtu_bytes, header_bytes, ack_bytes (64 KiB, the largest IP packet)."""

MIN_GBPS = 0.001
"""1 Mbit/s: rates are held to whole Mbit/s (:func:`pktsim.units.ps_per_byte`)."""
MAX_GBPS = 10_000.0
"""10 Tbit/s."""

MAX_DELAY_NS = 10**9
"""Link delays and switch latency: 1 s."""
MAX_TIME_NS = 10**12
"""Every other time (timers, gaps, start times, sampling interval) and a job's schedule: 1000 s."""
MIN_QUEUE_INTERVAL_NS = 100
"""The queues/links tables have a row per port and busy interval: at 1 ns a run would log one
row per nanosecond a port transmits."""
MIN_PART_ROWS, MAX_PART_ROWS = 10, 10_000_000

MAX_NAME_CHARS = 100

# -- projected work ---------------------------------------------------------------------------------

MAX_HOSTS = 100_000
MAX_SWITCH_PORTS = 1_000_000
"""Ports of all switches (host-facing and fabric links)."""
MAX_ROUTE_WORK = 50_000_000
"""ToRs x fabric-facing switch ports: the equal-cost next-hop tables are computed over every
pair (about a minute at this size; a 1,000-leaf x 16-spine fabric is 32 million)."""
MAX_MESSAGES = 10_000_000
"""Messages of the whole workload, every iteration (about 350 bytes each in memory)."""
MAX_PACKETS = 1_000_000_000
"""Data packets the workload puts on the wire (about 4 TB at the default MTU)."""

# -- scenario files ------------------------------------------------------------------------------------

MAX_FILE_BYTES = 16 * 2**20
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 500_000
"""Values of a YAML document once aliases are expanded (a "billion laughs" stops here)."""


class LimitError(ValueError):
    """A projected quantity above its limit, blamed on the field most responsible (``loc``)."""

    def __init__(self, loc: tuple, msg: str) -> None:
        super().__init__(msg)
        self.loc = loc


@dataclass(frozen=True)
class JobWork:
    messages: int
    """Messages of one collective op (one iteration)."""
    wire_bytes: int
    """Payload bytes of one op, over all ranks."""


def _ring_parallelism(job: JobSpec) -> tuple[int, int]:
    """Channels and slices a ring really uses (as :func:`pktsim.workload.collectives._ring`)."""
    n, total = job.ranks, job.bytes
    channels = max(1, min(job.channels, total // n))
    slices = max(1, min(job.slices, (total // channels) // n))
    return channels, slices


def _ring(steps: Callable[[int], int]) -> Callable[[JobSpec], JobWork]:
    def work(job: JobSpec) -> JobWork:
        n = job.ranks
        channels, slices = _ring_parallelism(job)
        return JobWork(steps(n) * n * channels * slices, steps(n) * job.bytes)
    return work


def _alltoall(job: JobSpec) -> JobWork:
    n, c = job.ranks, job.channels
    base, extra = divmod(job.bytes, n)  # chunks of split_evenly(bytes, n); each cut over min(c, chunk) channels
    parts = extra * min(c, base + 1) + (n - extra) * min(c, base)
    return JobWork((n - 1) * parts, (n - 1) * job.bytes)


def _one_to_one(senders: Callable[[int], int]) -> Callable[[JobSpec], JobWork]:
    def work(job: JobSpec) -> JobWork:
        k = senders(job.ranks)
        return JobWork(k * min(job.channels, job.bytes), k * job.bytes)
    return work


COLLECTIVE_WORK: dict[str, Callable[[JobSpec], JobWork]] = {
    "ring_allreduce": _ring(lambda n: 2 * (n - 1)),
    "reduce_scatter": _ring(lambda n: n - 1),
    "allgather": _ring(lambda n: n - 1),
    "alltoall": _alltoall,
    "alltoall_allreduce": lambda job: JobWork(2 * _alltoall(job).messages, 2 * _alltoall(job).wire_bytes),
    "permutation": _one_to_one(lambda n: n),
    "incast": _one_to_one(lambda n: n - 1),
}
"""Per collective: messages and payload bytes of one op, in closed form (the generators of
:mod:`pktsim.workload.collectives`). A collective without an entry is estimated as an all-to-all
in both directions."""


def job_work(job: JobSpec) -> JobWork:
    return COLLECTIVE_WORK.get(job.collective, COLLECTIVE_WORK["alltoall_allreduce"])(job)


@dataclass(frozen=True)
class Work:
    """What a scenario projects, before anything is built."""

    hosts: int
    switch_ports: int
    route_work: int
    messages: int
    packets: int
    """An upper estimate: every subflow's payload in full packets, plus one partial packet per subflow."""


def _pieces(scenario: Scenario) -> int:
    """Subflows per message (an upper estimate)."""
    lb = scenario.lb
    if lb.scheme in ("split", "planned"):
        return lb.subflows
    if lb.scheme == "split_minimal":
        topo = scenario.topology  # pieces over the turning points: spines, or a fat-tree's cores
        return max(1, getattr(topo, "spines", None) or (getattr(topo, "k", 2) // 2) ** 2)
    return 1


def _job_totals(job: JobSpec, pieces: int, payload: int) -> tuple[int, int]:
    """(messages, packets) of every iteration of ``job``."""
    w = job_work(job)
    messages = w.messages * job.iterations
    subflows = messages * max(1, min(pieces, job.bytes))
    return messages, -(-w.wire_bytes * job.iterations // payload) + subflows


def projected_work(scenario: Scenario) -> Work:
    """The work ``scenario`` asks for, from closed forms (no graph, no messages are built)."""
    topo = scenario.topology
    pieces, payload = _pieces(scenario), scenario.nic.payload_bytes
    messages = packets = 0
    for job in scenario.workload.jobs:
        m, p = _job_totals(job, pieces, payload)
        messages, packets = messages + m, packets + p
    return Work(topo.n_hosts, topo.n_switch_ports, topo.n_tors * topo.n_fabric_ports, messages, packets)


def _blame(candidates: dict[tuple, tuple[int, int]], work: Callable[[dict[tuple, int]], int]) -> tuple:
    """The location (among ``candidates``: location -> (value, floor)) whose reduction to its
    floor would cut ``work`` the most: the field most responsible."""
    values = {loc: value for loc, (value, _) in candidates.items()}
    total = work(values)
    best, cut = next(iter(candidates)), 1.0
    for loc, (value, floor) in candidates.items():
        if value <= floor:
            continue
        ratio = total / max(work({**values, loc: floor}), 1)
        if ratio > cut:
            best, cut = loc, ratio
    return best


def _fmt(n: int) -> str:
    return f"{n:,}" if n < 10**7 else f"{float(n):.3g}"


def check_work(scenario: Scenario) -> Work:
    """:func:`projected_work`, refused above the limits with a :class:`LimitError` naming the
    field most responsible."""
    work = projected_work(scenario)
    topo = scenario.topology
    sizes = {("topology", name): (getattr(topo, name), floor) for name, floor in topo.size_fields().items()}

    def resized(values: dict[tuple, int]):
        return topo.model_construct(**{**dict(topo), **{loc[-1]: v for loc, v in values.items()}})

    for value, limit, what, measure in (
        (work.hosts, MAX_HOSTS, "hosts", lambda t: t.n_hosts),
        (work.switch_ports, MAX_SWITCH_PORTS, "switch ports", lambda t: t.n_switch_ports),
        (work.route_work, MAX_ROUTE_WORK, "ToR x fabric-port pairs to route", lambda t: t.n_tors * t.n_fabric_ports),
    ):
        if value > limit:
            loc = _blame(sizes, lambda values, measure=measure: measure(resized(values)))
            raise LimitError(loc, f"the topology has {_fmt(value)} {what}, above the limit of {_fmt(limit)}")

    pieces, payload = _pieces(scenario), scenario.nic.payload_bytes
    jobs = scenario.workload.jobs
    per_job = [_job_totals(job, pieces, payload) for job in jobs]
    for index, (limit, what) in enumerate(((MAX_MESSAGES, "messages"), (MAX_PACKETS, "packets"))):
        total = sum(t[index] for t in per_job)
        if total <= limit:
            continue
        j = max(range(len(jobs)), key=lambda i: per_job[i][index])
        job = jobs[j]
        at = ("workload", "jobs", j)
        candidates = {(*at, "ranks"): (job.ranks, 2), (*at, "iterations"): (job.iterations, 1),
                      (*at, "channels"): (job.channels, 1), (*at, "slices"): (job.slices, 1)}
        if index == 1:
            candidates = {(*at, "bytes"): (job.bytes, job.ranks), **candidates}
            if scenario.lb.scheme == "split":
                candidates[("lb", "subflows")] = (pieces, 1)

        def of(values: dict[tuple, int], job=job, at=at, index=index) -> int:
            fields = {loc[-1]: v for loc, v in values.items() if loc[:-1] == at}
            return _job_totals(job.model_construct(**{**dict(job), **fields}),
                               values.get(("lb", "subflows"), pieces), payload)[index]

        loc = _blame(candidates, of)
        raise LimitError(loc, f"the workload would send about {_fmt(total)} {what}, above the limit of "
                              f"{_fmt(limit)}")

    for j, job in enumerate(jobs):
        end = job.start_ns + (job.iterations - 1) * job.compute_gap_ns
        if end > MAX_TIME_NS:
            field = "compute_gap_ns" if (job.iterations - 1) * job.compute_gap_ns > job.start_ns else "start_ns"
            raise LimitError(("workload", "jobs", j, field), f"the last iteration would start at {end:,} ns, "
                             f"above the limit of {MAX_TIME_NS:,} ns of simulated time")
    return work
