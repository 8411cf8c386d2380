"""The registry of backends: ``--backend NAME`` -> the engine that runs a prepared experiment.

The command line, ``validate``, ``export-workload`` and the study all choose backends here. A new
backend implements :class:`pktsim.experiment.Backend` and adds one line below. Entries are
factories that import their backend when first asked for, so the command line starts (and rejects
bad input) without loading every engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pktsim.registry import Registry

if TYPE_CHECKING:
    from pktsim.experiment import Backend


def _packet() -> Backend:
    from pktsim.packet.backend import PacketBackend

    return PacketBackend()


def _fluid() -> Backend:
    from pktsim.fluid.backend import FluidBackend

    return FluidBackend()


BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")
BACKENDS.add("packet", _packet)
BACKENDS.add("fluid", _fluid)


def backend(name: str) -> Backend:
    """The backend registered as ``name``."""
    return BACKENDS[name]()
