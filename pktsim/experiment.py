"""The backend contract: one prepared experiment, any backend.

:func:`prepare` builds, once per scenario, what every backend executes: the fabric (paths), the
load-balancing scheme, the workload's message DAG, the ideal times and the flow plan (subflows and
their entropies). A :class:`Backend` says whether it can model a scenario and runs a prepared
experiment with a recorder and a progress callback, returning a :class:`~pktsim.summary.RunSummary`.
Backends are registered by name in :data:`pktsim.backends.BACKENDS`; none imports another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pktsim.analysis.congestion import CongestionMeter
from pktsim.analysis.ideal import ideal_times
from pktsim.errors import InputError
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.faults import FaultSchedule, draw_faults, fault_schedule
from pktsim.fabric.topology import build_graph
from pktsim.fabric.selectors import LoadBalancing
from pktsim.planning.flow_plan import FlowPlanner
from pktsim.scenario import Scenario
from pktsim.workload.collectives import build_workload
from pktsim.workload.dag import Workload
from pktsim.workload.execution import DagExecution

if TYPE_CHECKING:
    from pktsim.summary import RunSummary
    from pktsim.traces import Recorder


@dataclass(frozen=True)
class Experiment:
    """A scenario made ready to run: the same for every backend, built once (see :func:`prepare`)."""

    scenario: Scenario
    fabric: Fabric
    lb: LoadBalancing
    workload: Workload
    ideal_fct_ps: list[int]
    """Per message: a lower bound on its FCT under any scheme and either backend (ps): the message
    alone with every equal-cost path and the best cut into packets (:mod:`pktsim.analysis.ideal`)."""
    ideal_op_ps: list[int]
    """Per collective op: a lower bound on its duration (ps)."""
    flow_plan: FlowPlanner
    packets_total: int
    """Packets the workload puts on the wire, its messages cut into the planned subflows."""
    single_path_fct_ps: list[int] | None = None
    """Per message: its FCT alone on one shortest path as the NIC packetises it (ps; not a bound)."""
    faults: FaultSchedule | None = None
    """The scenario's faults and the fabric's reactions (empty when the fabric stays healthy)."""
    fault_free: dict[str, list[int]] | None = None
    """Per job: its CCT per iteration (ns) in the same scenario without faults, when that run was
    made (the random fault generator's fractional times need it)."""

    def execution(self) -> DagExecution:
        """A fresh execution of the DAG (one per run: it holds the run's times)."""
        return DagExecution(
            self.workload, self.ideal_fct_ps, self.ideal_op_ps, CongestionMeter(self.fabric, self.workload, self.lb.varying_paths),
            self.single_path_fct_ps,
        )


def prepare(scenario: Scenario, fault_free: dict[str, list[int]] | None = None) -> Experiment:
    """Build the fabric, the workload, the ideal times, the flow plan and the fault schedule of
    ``scenario`` (its faults an explicit list: see :func:`prepare_on`). Placement, planning
    and fault problems surface here, before anything is written."""
    graph = build_graph(scenario.topology)
    fabric = Fabric(graph, scenario.seed, scenario.switch.latency_ns)
    workload = build_workload(scenario.workload.jobs, fabric.hosts, scenario.topology.hosts_per_tor, scenario.seed)
    lb = LoadBalancing.from_spec(scenario.lb)
    faults = fault_schedule(scenario, fabric, workload, lb.reroute)
    ideal = ideal_times(fabric, scenario, workload)
    plan = FlowPlanner(scenario, fabric, workload)
    return Experiment(
        scenario=scenario, fabric=fabric, lb=lb, workload=workload,
        ideal_fct_ps=ideal.fct_ps, ideal_op_ps=ideal.op_ps, flow_plan=plan,
        packets_total=plan.packets(workload, scenario.nic.payload_bytes),
        single_path_fct_ps=ideal.single_path_fct_ps, faults=faults, fault_free=fault_free,
    )


def prepare_on(engine: Backend, scenario: Scenario, fault_free: bool = False) -> Experiment:
    """``scenario`` prepared for ``engine``: checked against what the backend can model, with
    ``faults: {random: ...}`` replaced by the explicit faults it draws (so the run's resolved
    scenario says exactly what was injected), and the fault-free run's per-job CCTs known when
    the drawn times are fractions of that run or ``fault_free`` asks for them (that run is made
    first, on ``engine``, without traces)."""
    engine.check(scenario)
    spec = getattr(scenario.faults, "random", None)
    needed = spec is not None or (fault_free and bool(scenario.faults))
    healthy = prepare(_replace_faults(scenario, [])) if needed else None
    ccts = makespan_ns = None
    if healthy is not None and (fault_free or spec.fractional):
        summary = engine.run(healthy)
        ccts = {job["name"]: job["cct_ns"] for job in summary.jobs}
        makespan_ns = max(job["end_ns"] for job in summary.jobs)
    if spec is not None:
        scenario = _replace_faults(scenario, draw_faults(spec, healthy.fabric, healthy.workload, makespan_ns,
                                                                 scenario.seed))
        engine.check(scenario)
    return prepare(scenario, ccts)


def _replace_faults(scenario: Scenario, faults: list[dict]) -> Scenario:
    """``scenario`` with another fault list, validated, keeping where each field was written."""
    data = scenario.model_dump(mode="json")
    data["faults"] = faults
    new = Scenario.model_validate(data)
    new._provenance = scenario._provenance
    return new


@dataclass
class Progress:
    """What a progress display needs, reported by a backend as it runs."""

    packets_delivered: int
    """Data packets delivered (the packet backend: first copies handed to the receiving NICs; the
    fluid backend: the packets of the flows received)."""
    packets_total: int
    """Packets the workload will send."""
    messages_done: int
    messages_total: int
    sim_time_ns: int
    events: int
    stage: str = "simulating"
    """What the run is doing, for the display (``compiling``: numba is compiling the fluid loop,
    about 20 s the first time after an install, or loading it from its cache)."""


ProgressCallback = Callable[[Progress], None]


class Unsupported(InputError):
    """A backend cannot model a scenario (one line: which field, and why)."""


class Backend(ABC):
    """An engine that executes a prepared experiment and writes its tables through a recorder."""

    name: str
    """The name users give with ``--backend``."""

    def unsupported(self, scenario: Scenario) -> Unsupported | None:
        """Why this backend cannot model ``scenario`` (None: it can)."""
        return None

    def check(self, scenario: Scenario) -> None:
        """Raise :class:`Unsupported` when this backend cannot model ``scenario``."""
        problem = self.unsupported(scenario)
        if problem is not None:
            raise problem

    @abstractmethod
    def run(self, experiment: Experiment, recorder: Recorder | None = None,
            progress: ProgressCallback | None = None) -> RunSummary:
        """Execute ``experiment`` to completion; rows go to ``recorder`` (None: no traces)."""


def needs_transport_model(scenario: Scenario) -> bool:
    """True when the scenario needs more than the ideal fabric (ACKs, finite buffers, PFC or ECN):
    the packet backend's event-driven ports and reliable transport, which no flow model has."""
    sw = scenario.switch
    return scenario.nic.transport != "ideal" or sw.finite or sw.pfc.enabled or sw.ecn is not None
