"""Presets: the YAML files that ``--topology``, ``--workload`` and ``--profile`` (and a scenario's
``topology:``, ``workload:`` and ``profile:``) name.

A name is looked up in the working directory first (``./topologies/NAME.yaml``), then among the
presets shipped with pktsim: the top-level ``topologies/``, ``workloads/`` and ``profiles/``
directories of the source tree, installed as the package data ``pktsim.presets.<directory>``
(read with :mod:`importlib.resources`). A checkout run without installing it reads the
directories themselves.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path

PRESET_DIRS = {"topology": "topologies", "workload": "workloads", "profile": "profiles", "sweep": "sweeps"}
"""Section (or ``sweep``: the sweep presets of ``pktsim sweep --preset``) -> the directory of its presets."""

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""Where a checkout keeps the preset directories (unused once installed from a wheel)."""


def shipped_dir(section: str) -> Traversable | None:
    """The directory of the presets shipped with pktsim for ``section``, or None."""
    name = PRESET_DIRS[section]
    try:
        found = importlib.resources.files(f"pktsim.presets.{name}")
    except ModuleNotFoundError:  # a checkout that is not installed, or an older editable install
        found = None
    if found is not None and found.is_dir():
        return found
    checkout = SOURCE_ROOT / name
    return checkout if checkout.is_dir() else None


def preset_dirs(section: str) -> list[Traversable]:
    """Where presets of ``section`` are looked up, in order: the working directory's, then pktsim's."""
    out: list[Traversable] = []
    local = Path.cwd() / PRESET_DIRS[section]
    if local.is_dir():
        out.append(local)
    shipped = shipped_dir(section)
    if shipped is not None:
        out.append(shipped)
    return out


def preset_candidates(section: str, name: str) -> list[Traversable]:
    """The files a preset ``name`` may be, in lookup order (they need not exist)."""
    return [d / f"{name}.yaml" for d in preset_dirs(section)]


def preset_names(section: str) -> list[str]:
    """Names of every preset of ``section`` (``"topology"``, ``"workload"`` or ``"profile"``)."""
    names: set[str] = set()
    for d in preset_dirs(section):
        names.update(p.name[: -len(".yaml")] for p in d.iterdir() if p.name.endswith(".yaml") and p.is_file())
    return sorted(names)
