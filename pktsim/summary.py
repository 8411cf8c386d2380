"""The summary of a run (``summary.json``): what every backend returns, typed.

Its keys are documented in ``traces/README.md``. A :class:`RunSummary` reads like the JSON object
it is written as (``summary["jobs"][0]["slowdown"]``), so notebooks and tests use one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from pktsim import __version__
from pktsim.scenario import Scenario
from pktsim.units import PS_PER_NS, format_ns, ps_to_ns
from pktsim.workload.execution import DagExecution


@dataclass
class RunSummary(Mapping):
    """The outcome of one run on one backend. Times in ns, sizes in bytes, ``wall_s`` in seconds."""

    name: str
    seed: int
    backend: str
    lb: str
    wall_s: float
    events: int
    """Engine events processed (the fluid backend: rate recomputations)."""
    packet_hops: int
    """Packets times links crossed (the fluid backend: what the packet backend would process)."""
    sim_time_ns: int
    messages: int
    flows: int
    packets: int
    largest_queue: dict | None
    plan_s: float
    transport: dict | None
    jobs: list[dict]
    scenario: dict
    warnings: list[str] = field(default_factory=list)
    """What the user should know about the run (one line each; the key is left out when none)."""
    faults: list[dict] = field(default_factory=list)
    """The faults injected and when the fabric reacted (rows of the ``faults`` table; the key is
    left out when none)."""
    version: str = __version__
    out: str | None = None
    """The run directory, once written there."""

    def __post_init__(self) -> None:
        self.warnings = [*self.warnings, *late_faults(self.jobs, self.faults)]

    @property
    def events_per_packet_hop(self) -> float | None:
        return self.events / self.packet_hops if self.packet_hops else None

    @property
    def packet_hops_per_s(self) -> float | None:
        return self.packet_hops / self.wall_s if self.wall_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        """The content of ``summary.json``."""
        d = {
            "name": self.name, "version": self.version, "seed": self.seed, "backend": self.backend, "lb": self.lb,
            "wall_s": self.wall_s, "events": self.events, "packet_hops": self.packet_hops,
            "events_per_packet_hop": self.events_per_packet_hop, "packet_hops_per_s": self.packet_hops_per_s,
            "sim_time_ns": self.sim_time_ns, "messages": self.messages, "flows": self.flows, "packets": self.packets,
            "largest_queue": self.largest_queue, "plan_s": self.plan_s, "transport": self.transport,
            "jobs": self.jobs, "scenario": self.scenario,
        }
        if self.warnings:
            d["warnings"] = self.warnings
        if self.faults:
            d["faults"] = self.faults
        if self.out is not None:
            d["out"] = self.out
        return d

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def late_faults(jobs: list[dict], faults: list[dict]) -> list[str]:
    """A warning for each fault set at or after the end of the last job (a fault's absolute time
    is checked against no run length beforehand, which only the run knows): it changed nothing
    the jobs did, though the ``faults`` table still lists the fabric's reaction."""
    if not jobs or not faults:
        return []
    end_ns = max(j["end_ns"] for j in jobs)
    return [f"fault {f['fault_id']} ({f['kind']} {f['target']} at {format_ns(f['at_ns'])}) comes after the "
            f"last job ended ({format_ns(end_ns)}): it changed nothing" for f in faults if f["at_ns"] >= end_ns]


def job_results(scenario: Scenario, execution: DagExecution,
                fault_free: dict[str, list[int]] | None = None) -> list[dict]:
    """Per job: the completion time of every iteration, the ideal, the slowdown, the congestion,
    the fair shares and FCT percentiles; with ``fault_free`` (per job, the CCTs of the same run
    without its faults) also those."""
    jobs = []
    workload = execution.workload
    fct_ns = message_fct_ns(execution)
    for job in scenario.workload.jobs:
        ops = [op.op for op in workload.collectives if op.job == job.name]
        cct = [ps_to_ns(execution.op_end_ps[op] - execution.op_start_ps(op)) for op in ops]
        ideal = [ps_to_ns(execution.ideal_op_ps[op]) for op in ops]
        mean, ideal_mean = sum(cct) / len(cct), sum(ideal) / len(ideal)
        phases = [p for p in execution.phases if p["job"] == job.name]
        congestion = [p["congestion"] for p in phases]
        fct = np.concatenate([fct_ns[r.start:r.stop] for r in (workload.collectives[op].msg_ids for op in ops)])
        jobs.append({
            "name": job.name, "collective": job.collective, "ranks": job.ranks, "bytes": job.bytes,
            "iterations": job.iterations, "cct_ns": cct, "ideal_cct_ns": ideal, "mean_cct_ns": mean,
            "mean_ideal_cct_ns": ideal_mean, "slowdown": mean / ideal_mean if ideal_mean else None,
            "start_ns": ps_to_ns(execution.op_start_ps(ops[0])), "end_ns": ps_to_ns(execution.op_end_ps[ops[-1]]),
            "max_congestion": max(congestion, default=None),
            "mean_congestion": sum(congestion) / len(congestion) if congestion else None,
            **fair_shares(phases),
            "fct_p50_ns": float(np.percentile(fct, 50)), "fct_p99_ns": float(np.percentile(fct, 99)),
        })
        if fault_free is not None and job.name in fault_free:
            healthy = fault_free[job.name]
            jobs[-1]["fault_free_cct_ns"] = healthy
            jobs[-1]["fault_slowdown"] = mean / (sum(healthy) / len(healthy)) if sum(healthy) else None
    return jobs


def message_fct_ns(execution: DagExecution) -> np.ndarray:
    """Per message: its FCT (end - ready) in ns as the ``messages`` table rounds it (int64)."""
    ready = np.frombuffer(execution.ready_ps, dtype=np.float64)
    end = np.frombuffer(execution.end_ps, dtype=np.float64)
    return (np.rint(end - ready).astype(np.int64) + PS_PER_NS // 2) // PS_PER_NS


def fair_shares(phases: list[dict]) -> dict[str, float | None]:
    """A job's fair-share keys from its phases (``congestion`` rows): the mean of their
    ``fair_min_gbps`` and ``fair_jain``, and bytes * 8 over the sum of their durations (null when
    the job has no phase with cross-ToR traffic)."""
    rates = [p["fair_min_gbps"] for p in phases if p["fair_min_gbps"] is not None]
    jains = [p["fair_jain"] for p in phases if p["fair_jain"] is not None]
    duration_ps = sum(p["end_ps"] - p["start_ps"] for p in phases)
    return {
        "fair_rate_gbps": sum(rates) / len(rates) if rates else None,
        "fair_jain": sum(jains) / len(jains) if jains else None,
        "throughput_gbps": sum(p["bytes"] for p in phases) * 8 * 1000 / duration_ps if duration_ps > 0 else None,
    }
