"""The columnar workload DAG against a brute-force object reference (the builder before columns)."""

from __future__ import annotations

import numpy as np
import pytest

from pktsim.scenario import JobSpec
from pktsim.units import split_evenly
from pktsim.workload import collectives as C
from pktsim.workload.collectives import build_workload, critical_path, critical_path_array
from pktsim.workload.dag import Message

HOSTS = [f"h{i}" for i in range(32)]


def _ref_ring(job: JobSpec) -> list[C._Send]:
    """The ring generator as it was, one _Send per message (dict of the previous step's pieces)."""
    n, total = job.ranks, job.bytes
    n_channels = max(1, min(job.channels, total // n))
    n_slices = max(1, min(job.slices, (total // n_channels) // n))
    pieces = [[split_evenly(chunk, n_slices) for chunk in split_evenly(cb, n)] for cb in split_evenly(total, n_channels)]
    sends: list[C._Send] = []
    received: dict[tuple[int, int, int], int] = {}
    for k, offset in enumerate(C._ring_offsets(job.collective, n)):
        now = {}
        for c in range(n_channels):
            for r in range(n):
                for p, size in enumerate(pieces[c][(r - offset) % n]):
                    deps = (received[c, p, r],) if k > 0 else ()
                    now[c, p, (r + 1) % n] = len(sends)
                    sends.append(C._Send(k, r, (r + 1) % n, size, c, deps))
        received = now
    return sends


def _ref_build(jobs: list[JobSpec], hosts: list[str], seed: int) -> tuple[list[Message], list[tuple]]:
    """The object builder as it was: (messages, per op (op, job, iteration, hosts, msg_ids))."""
    placements = C.place_jobs(jobs, hosts, 4, seed)
    msgs: list[Message] = []
    ops = []
    for j, (job, placed) in enumerate(zip(jobs, placements)):
        if job.collective in C.RING_COLLECTIVES:
            sends = _ref_ring(job)
        else:
            sends = C.COLLECTIVES[job.collective](job, j, seed)
        for it in range(job.iterations):
            base, op = len(msgs), len(ops)
            for s in sends:
                after_op = -1
                if s.deps:
                    deps, gap = tuple(base + d for d in s.deps), 0
                elif it == 0:
                    deps, gap = (), job.start_ns
                else:
                    deps, gap, after_op = (), job.compute_gap_ns, op - 1
                msgs.append(Message(len(msgs), job.name, job.collective, it, s.step, placed[s.src], placed[s.dst],
                                    s.bytes, deps, gap, s.channel, op, after_op))
            ops.append((op, job.name, it, tuple(placed), tuple(range(base, len(msgs)))))
    return msgs, ops


def _random_jobs(rng: np.random.Generator) -> list[JobSpec]:
    jobs, free = [], len(HOSTS)
    for j in range(int(rng.integers(1, 4))):
        collective = str(rng.choice(["ring_allreduce", "reduce_scatter", "allgather", "alltoall",
                                     "alltoall_allreduce", "permutation", "incast"]))
        ranks = int(rng.integers(2, min(9, free // (3 - j) + 1) + 1)) if free >= 2 else 0
        if ranks < 2 or ranks > free:
            break
        free -= ranks
        jobs.append(JobSpec(
            name=f"j{j}", collective=collective, ranks=ranks, bytes=int(rng.integers(ranks, 5000)),
            channels=int(rng.integers(1, 4)), slices=int(rng.integers(1, 4)), iterations=int(rng.integers(1, 4)),
            start_ns=int(rng.integers(0, 100)), compute_gap_ns=int(rng.integers(0, 50)),
            placement=str(rng.choice(["packed", "random", "strided"])),
        ))
    return jobs


@pytest.mark.parametrize("seed", range(40))
def test_columnar_dag_equals_object_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    jobs = _random_jobs(rng)
    wl = build_workload(jobs, HOSTS, 4, seed)
    ref, ref_ops = _ref_build(jobs, HOSTS, seed)
    assert list(wl.messages) == ref
    assert [(o.op, o.job, o.iteration, o.hosts, o.msg_ids) for o in wl.collectives] == ref_ops
    # dependents as CSR equal the per-message lists built the obvious way
    offsets, ids = wl.dependents()
    expect: list[list[int]] = [[] for _ in ref]
    for m in ref:
        for d in m.deps:
            expect[d].append(m.msg_id)
    assert [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(ref))] == expect
    # the vectorised critical path equals the scalar forward pass
    t = rng.integers(1, 1000, len(ref)).astype(float)
    finish = [0.0] * len(ref)
    want = []
    for _, _, _, _, msg_ids in ref_ops:
        end = 0.0
        for i in msg_ids:
            m = ref[i]
            start = max(finish[d] for d in m.deps) + m.gap_ns if m.deps else 0.0
            finish[i] = start + t[i]
            end = max(end, finish[i])
        want.append(end)
    assert critical_path_array(wl, t) == want
    assert critical_path(wl, lambda m: t[m.msg_id]) == want


def test_message_view_indexing() -> None:
    wl = build_workload([JobSpec(collective="ring_allreduce", ranks=4, bytes=4000, iterations=2)], HOSTS, 4, 0)
    msgs = wl.messages
    assert msgs[-1] == msgs[len(msgs) - 1] and msgs[1:3] == [msgs[1], msgs[2]]
    with pytest.raises(IndexError):
        msgs[len(msgs)]
    assert wl.collectives[1].msg_ids == tuple(range(len(msgs) // 2, len(msgs)))
    assert list(wl.collectives[1].msg_ids) == list(range(len(msgs) // 2, len(msgs)))
