"""Collective generators checked against closed forms (message counts, bytes, dependency shapes)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from pktsim.workload.collectives import build_workload, critical_path, place_jobs
from pktsim.units import split_evenly as split_bytes
from pktsim.errors import InputError
from pktsim.scenario import JobSpec, load_scenario, preset_names
from pktsim.workload.dag import Workload

HOSTS16 = [f"h{i}" for i in range(16)]  # 4 leaves x 4 hosts
HOSTS32 = [f"h{i}" for i in range(32)]  # 8 leaves x 4 hosts


def build(jobs: list[JobSpec], hosts: list[str] = HOSTS16, hpl: int = 4, seed: int = 1) -> Workload:
    return build_workload(jobs, hosts, hpl, seed)


def rank_of(wl: Workload, op: int = 0) -> dict[str, int]:
    return {h: r for r, h in enumerate(wl.collectives[op].hosts)}


# ---------------------------------------------------------------------------------------------
# Byte splitting


def test_split_bytes_sums_exactly() -> None:
    assert split_bytes(10, 3) == [4, 3, 3]
    assert split_bytes(12, 4) == [3, 3, 3, 3]
    assert split_bytes(2, 4) == [1, 1, 0, 0]
    for total, n in [(0, 1), (1, 7), (1000003, 16), (2**26, 256)]:
        parts = split_bytes(total, n)
        assert len(parts) == n and sum(parts) == total and max(parts) - min(parts) <= 1


# ---------------------------------------------------------------------------------------------
# Ring collectives


@pytest.mark.parametrize("n,c,p", [(2, 1, 1), (4, 1, 1), (8, 1, 1), (5, 2, 1), (4, 1, 3), (6, 3, 2)])
def test_ring_allreduce_counts_bytes_and_deps(n: int, c: int, p: int) -> None:
    s = n * c * p * 1000  # divisible: every rank sends exactly 2(N-1)/N * S
    wl = build([JobSpec(collective="ring_allreduce", ranks=n, bytes=s, channels=c, slices=p)])
    msgs = wl.messages
    assert len(msgs) == 2 * (n - 1) * n * c * p
    assert [m.msg_id for m in msgs] == list(range(len(msgs)))
    rank = rank_of(wl)
    sent = Counter()
    for m in msgs:
        assert rank[m.dst] == (rank[m.src] + 1) % n
        assert m.bytes == s // (n * c * p)
        sent[m.src] += m.bytes
    assert all(v == 2 * (n - 1) * s // n for v in sent.values()) and len(sent) == n
    assert {m.step for m in msgs} == set(range(2 * (n - 1)))
    # Each message's only dep is the same (channel, piece) of the previous step received by its sender.
    piece_index: dict[int, int] = {}
    seen: Counter = Counter()
    for m in msgs:
        key = (m.step, m.channel, m.src)
        piece_index[m.msg_id] = seen[key]
        seen[key] += 1
    for m in msgs:
        if m.step == 0:
            assert m.deps == () and m.gap_ns == 0
            continue
        (d,) = m.deps
        dep = msgs[d]
        assert dep.step == m.step - 1 and dep.dst == m.src and dep.channel == m.channel
        assert piece_index[d] == piece_index[m.msg_id]
    # Each (src, dst, channel) connection exists once per channel.
    assert len({(m.src, m.dst, m.channel) for m in msgs}) == n * c


def test_ring_allreduce_odd_bytes_total_is_exact() -> None:
    n, s = 7, 1_000_003
    wl = build([JobSpec(collective="ring_allreduce", ranks=n, bytes=s, channels=2, slices=3)])
    assert sum(m.bytes for m in wl.messages) == 2 * (n - 1) * s  # every chunk crosses N-1 links, twice
    assert min(m.bytes for m in wl.messages) >= 1
    assert max(m.bytes for m in wl.messages) - min(m.bytes for m in wl.messages) <= 1


@pytest.mark.parametrize("collective", ["reduce_scatter", "allgather"])
def test_ring_halves(collective: str) -> None:
    n, s = 6, 6 * 2 * 1000
    wl = build([JobSpec(collective=collective, ranks=n, bytes=s, channels=2, slices=1)])
    assert len(wl.messages) == (n - 1) * n * 2
    assert {m.step for m in wl.messages} == set(range(n - 1))
    sent = Counter()
    for m in wl.messages:
        sent[m.src] += m.bytes
        assert m.collective == collective
    assert set(sent.values()) == {(n - 1) * s // n}


def test_ring_too_few_bytes() -> None:
    with pytest.raises(InputError) as e:
        build([JobSpec(collective="ring_allreduce", ranks=8, bytes=5)])
    assert e.value.field == "workload.jobs[0].bytes"
    # Enough for one channel but not four x three slices: reduced, no empty messages, exact total.
    wl = build([JobSpec(collective="ring_allreduce", ranks=4, bytes=9, channels=4, slices=3)])
    assert min(m.bytes for m in wl.messages) >= 1
    assert sum(m.bytes for m in wl.messages) == 2 * 3 * 9


# ---------------------------------------------------------------------------------------------
# Direct collectives


def test_alltoall() -> None:
    n, s = 8, 8 * 1000
    wl = build([JobSpec(collective="alltoall", ranks=n, bytes=s)])
    assert len(wl.messages) == n * (n - 1)
    assert {(m.src, m.dst) for m in wl.messages} == {(a, b) for a in HOSTS16[:n] for b in HOSTS16[:n] if a != b}
    assert all(m.bytes == s // n and m.deps == () and m.step == 0 for m in wl.messages)


def test_alltoall_allreduce_phase2_deps() -> None:
    n, s = 6, 6 * 1000
    wl = build([JobSpec(collective="alltoall_allreduce", ranks=n, bytes=s, channels=2)])
    msgs = wl.messages
    phase1 = [m for m in msgs if m.step == 0]
    phase2 = [m for m in msgs if m.step == 1]
    assert len(phase1) == len(phase2) == n * (n - 1) * 2
    for m in phase1:
        assert m.deps == () and m.bytes == s // n // 2
    for m in phase2:
        assert set(m.deps) == {p.msg_id for p in phase1 if p.dst == m.src}
        assert len(m.deps) == (n - 1) * 2
    sent = Counter()
    for m in msgs:
        sent[m.src] += m.bytes
    assert set(sent.values()) == {2 * (n - 1) * s // n}


def test_permutation_shift() -> None:
    wl = build([JobSpec(collective="permutation", ranks=32, bytes=64 * 2**20, shift=4)], HOSTS32)
    assert len(wl.messages) == 32
    for m in wl.messages:
        src, dst = int(m.src[1:]), int(m.dst[1:])
        assert dst == (src + 4) % 32 and m.bytes == 64 * 2**20
        assert src // 4 != dst // 4  # cross-leaf with 4 hosts per leaf


def _targets(seed: int, n: int = 12) -> list[int]:
    wl = build([JobSpec(collective="permutation", ranks=n, bytes=1000)], seed=seed)
    out = [-1] * n
    for m in wl.messages:
        out[int(m.src[1:])] = int(m.dst[1:])
    return out


def test_permutation_default_is_seeded_derangement() -> None:
    perms = {seed: _targets(seed) for seed in range(6)}
    for perm in perms.values():
        assert sorted(perm) == list(range(12))
        assert all(perm[r] != r for r in range(12))
    assert _targets(3) == perms[3]
    assert len({tuple(p) for p in perms.values()}) > 1
    assert _targets(0, n=2) == [1, 0]


def test_incast() -> None:
    wl = build([JobSpec(collective="incast", ranks=8, bytes=4096, receiver=3)])
    assert len(wl.messages) == 7
    assert {m.dst for m in wl.messages} == {"h3"}
    assert {m.src for m in wl.messages} == {f"h{i}" for i in range(8) if i != 3}
    assert all(m.bytes == 4096 for m in wl.messages)


# ---------------------------------------------------------------------------------------------
# Placement


def test_placement_packed_and_explicit() -> None:
    jobs = [
        JobSpec(name="a", ranks=4),
        JobSpec(name="b", ranks=3, placement=["h9", "h4", "h15"]),
        JobSpec(name="c", ranks=3),
    ]
    assert place_jobs(jobs, HOSTS16, 4, 1) == [["h0", "h1", "h2", "h3"], ["h9", "h4", "h15"], ["h5", "h6", "h7"]]


def test_placement_random_is_seeded_and_disjoint() -> None:
    jobs = [JobSpec(name="a", ranks=4), JobSpec(name="b", ranks=8, placement="random")]
    p1 = place_jobs(jobs, HOSTS16, 4, 7)
    assert p1 == place_jobs(jobs, HOSTS16, 4, 7)
    assert len(set(p1[1])) == 8 and not set(p1[1]) & set(p1[0])
    others = {tuple(place_jobs(jobs, HOSTS16, 4, seed)[1]) for seed in range(5)}
    assert len(others) > 1


def test_placement_strided() -> None:
    (hosts,) = place_jobs([JobSpec(ranks=16, placement="strided")], HOSTS16, 4, 1)
    assert hosts == [f"h{i}" for i in (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)]
    for a, b in zip(hosts, hosts[1:] + hosts[:1]):
        assert int(a[1:]) // 4 != int(b[1:]) // 4  # ring neighbours on different leaves
    (hosts,) = place_jobs([JobSpec(ranks=4, placement="strided", stride=2)], HOSTS16, 4, 1)
    assert hosts == ["h0", "h2", "h4", "h6"]
    # After a packed job on h0, h1: rank 0 wants h0 (taken) -> next free host.
    jobs = [JobSpec(name="a", ranks=2), JobSpec(name="b", ranks=4, placement="strided")]
    assert place_jobs(jobs, HOSTS16, 4, 1)[1] == ["h2", "h4", "h8", "h12"]


@pytest.mark.parametrize(
    "jobs,field,problem",
    [
        ([JobSpec(ranks=2, placement=["h0", "h99"])], "workload.jobs[0].placement", "host h99 does not exist"),
        (
            [JobSpec(name="job0", ranks=4), JobSpec(name="job1", ranks=2, placement=["h5", "h3"])],
            "workload.jobs[1].placement",
            "host h3 is already used by job job0",
        ),
        ([JobSpec(ranks=2, placement=["h1", "h1"])], "workload.jobs[0].placement", "host h1 is listed twice"),
        (
            [JobSpec(name="a", ranks=10), JobSpec(name="b", ranks=8, placement="random")],
            "workload.jobs[1].ranks",
            "8 ranks but only 6 of 16 hosts are free",
        ),
    ],
)
def test_placement_errors(jobs: list[JobSpec], field: str, problem: str) -> None:
    with pytest.raises(InputError) as e:
        build(jobs)
    assert (e.value.source, e.value.field, e.value.problem) == ("workload", field, problem)


# ---------------------------------------------------------------------------------------------
# Jobs and iterations


def test_multi_job_disjoint_and_ids() -> None:
    jobs = [
        JobSpec(name="a", collective="ring_allreduce", ranks=4, bytes=4000, start_ns=100),
        JobSpec(name="b", collective="alltoall", ranks=6, bytes=6000, placement="random", start_ns=500),
        JobSpec(name="c", collective="permutation", ranks=4, bytes=1000, placement="strided"),
    ]
    wl = build(jobs)
    assert [op.job for op in wl.collectives] == ["a", "b", "c"]
    hosts = [set(op.hosts) for op in wl.collectives]
    assert sum(len(h) for h in hosts) == len(set().union(*hosts)) == 14
    assert [m.msg_id for m in wl.messages] == list(range(len(wl.messages)))
    for op in wl.collectives:
        for i in op.msg_ids:
            m = wl.messages[i]
            assert m.op == op.op and m.job == op.job and m.src in op.hosts and m.dst in op.hosts
    start = {"a": 100, "b": 500, "c": 0}
    for m in wl.messages:
        if not m.deps:
            assert m.gap_ns == start[m.job]
    assert build(jobs) == wl  # deterministic


def test_iterations_chain_with_compute_gap() -> None:
    n = 4
    job = JobSpec(collective="ring_allreduce", ranks=n, bytes=4000, iterations=3, start_ns=7, compute_gap_ns=250)
    wl = build([job])
    per_op = 2 * (n - 1) * n
    assert len(wl.collectives) == 3 and len(wl.messages) == 3 * per_op
    for it, op in enumerate(wl.collectives):
        assert op.iteration == it and op.msg_ids == tuple(range(it * per_op, (it + 1) * per_op))
        assert op.bytes == 4000 and op.ranks == n
    for m in wl.messages:
        if m.iteration == 0 or m.step > 0:
            continue
        # Roots of later iterations wait for the whole previous op (a barrier), then the gap.
        assert m.gap_ns == 250 and m.deps == () and m.after_op == m.op - 1
    assert all(m.after_op == -1 for m in wl.messages if m.iteration == 0)
    roots0 = [m for m in wl.messages if m.iteration == 0 and m.step == 0]
    assert all(m.deps == () and m.gap_ns == 7 for m in roots0)


# ---------------------------------------------------------------------------------------------
# Critical path


def test_critical_path_ring() -> None:
    n, s, t = 8, 8 * 4 * 1000, 1000.0
    wl = build([JobSpec(collective="ring_allreduce", ranks=n, bytes=s, iterations=2, compute_gap_ns=5000)])
    step = lambda m: t  # noqa: E731
    assert critical_path(wl, step) == [2 * (n - 1) * t] * 2
    # Slices: P independent chains of t/P each. The DAG does not serialise pieces on a connection
    # (the NIC queue pair does), so on an infinitely parallel network the chains run side by side.
    p = 4
    wl = build([JobSpec(collective="ring_allreduce", ranks=n, bytes=s, slices=p)])
    assert critical_path(wl, lambda m: t / p) == [pytest.approx(2 * (n - 1) * t / p)]


def test_critical_path_alltoall_allreduce_and_gap() -> None:
    wl = build([JobSpec(collective="alltoall_allreduce", ranks=4, bytes=4000, start_ns=300)])
    assert critical_path(wl, lambda m: m.bytes) == [2000.0]


# ---------------------------------------------------------------------------------------------
# Presets


def test_workload_presets_parse_and_build() -> None:
    topo = {"permutation": "bench", "ring_allreduce_256": "ls16x16x16"}
    names = preset_names("workload")
    for name in ("ring_allreduce", "ring_allreduce_random", "alltoall_allreduce", "alltoall", "permutation",
                 "incast", "multi_job", "ring_allreduce_256"):
        assert name in names
        sc = load_scenario(topology=topo.get(name, "small"), workload=name)
        if name == "ring_allreduce_256":
            continue  # 261k messages: built in the benchmarks, not here
        hosts = [f"h{i}" for i in range(sc.topology.n_hosts)]
        wl = build_workload(sc.workload.jobs, hosts, sc.topology.hosts_per_tor, sc.seed)
        assert len(wl.collectives) == sum(j.iterations for j in sc.workload.jobs)
        per_job = defaultdict(set)
        for op in wl.collectives:
            per_job[op.job].update(op.hosts)
        assert sum(len(h) for h in per_job.values()) == len(set().union(*per_job.values()))
