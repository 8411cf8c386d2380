"""Scenarios: what a run simulates (:mod:`~pktsim.scenario.spec`, the pydantic models) and how it is
read from files, presets and options (:mod:`~pktsim.scenario.loading`, :mod:`~pktsim.scenario.presets`), their
bounds and projected work (:mod:`~pktsim.scenario.limits`), and where each field was written
(:mod:`~pktsim.scenario.provenance`: :func:`blame` re-attributes errors found after loading)."""

from pktsim.fabric.pfc import PAUSE_FRAME_BYTES, pfc_headroom_bytes
from pktsim.scenario.limits import Work, check_work, projected_work
from pktsim.scenario.loading import load_scenario
from pktsim.scenario.presets import PRESET_DIRS, preset_names
from pktsim.scenario.provenance import Provenance, blame, provenance
from pktsim.scenario.spec import (
    LB_SCHEMES,
    AnyTopology,
    Bytes,
    Collective,
    DcqcnSpec,
    DctcpSpec,
    EcnSpec,
    FatTreeSpec,
    Gbps,
    JobSpec,
    LbScheme,
    LbSpec,
    LeafSpineSpec,
    Nanoseconds,
    NicSpec,
    OptionalBytes,
    PfcSpec,
    PlannerName,
    Positive,
    Scenario,
    SwitchSpec,
    TOPOLOGY_SPECS,
    TopologyKind,
    TopologySpec,
    TracesSpec,
    WorkloadSpec,
)

__all__ = [
    "AnyTopology", "Bytes", "Collective", "DcqcnSpec", "DctcpSpec", "EcnSpec", "FatTreeSpec", "Gbps", "JobSpec",
    "LB_SCHEMES", "LbScheme", "LbSpec", "LeafSpineSpec", "Nanoseconds", "NicSpec", "OptionalBytes", "PAUSE_FRAME_BYTES",
    "PRESET_DIRS", "PfcSpec", "PlannerName", "Positive", "Scenario", "SwitchSpec", "TOPOLOGY_SPECS", "TopologyKind",
    "TopologySpec", "TracesSpec", "WorkloadSpec", "load_scenario", "pfc_headroom_bytes",
    "preset_names", "Provenance", "Work", "blame", "check_work", "projected_work", "provenance",
]
