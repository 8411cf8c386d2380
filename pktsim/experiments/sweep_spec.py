"""The sweep file: a base scenario and the axes it is varied along, expanded into points.

```yaml
base: my_scenario.yaml          # a scenario file (relative to the sweep file), or an inline mapping
backend: packet                 # packet | fluid | auto (fluid above AUTO_FLUID_HOSTS hosts)
grid:                           # the cartesian product of these axes
  lb.scheme: [ecmp, spray]      # a field axis: any scenario field by dotted path, as --set takes it
  seed: [1, 2, 3]
  scheme:                       # a named axis: label -> the fields it sets (and/or backend)
    split4: {lb.scheme: split, lb.subflows: 4}
    planned: {lb.scheme: planned, lb.planner: edge_coloring}
zip:                            # axes that vary together (lists of one length, or named axes)
  topology: [bench, ls16x16x16]
  workload.jobs.0.ranks: [32, 256]
```

A sweep file may also be ``{parts: [sweep, sweep, ...]}``: the parts' points one after the other
(e.g. one part per fabric when a workload's size depends on the fabric); the table's columns are
the union of the parts' axes. ``backend`` may also be an axis.

Points are numbered in order: zip rows outermost, then the grid axes in file order (the last
varies fastest). Each point is resolved here, before anything runs: its ``--set`` strings are
applied to the base (after the sweep command's own ``--set`` values) and validated as ``pktsim
run`` would, so a bad combination is one line naming the point and the field. The resolved
scenario is what a worker runs (it needs no files), its hash identifies the point for resuming,
and the row's ``command`` reproduces it with ``pktsim run``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pktsim.backends import backend as backend_named
from pktsim.backends import BACKENDS
from pktsim.errors import InputError
from pktsim.scenario import Scenario, load_scenario
from pktsim.scenario.loading import read_yaml, shown_path
from pktsim.scenario.presets import preset_candidates, preset_names
from pktsim.traces import FILE_SCHEMAS

AUTO_FLUID_HOSTS = 512
"""``backend: auto``: fabrics with more hosts than this run on the fluid backend."""
BACKEND_AXIS = "backend"
"""The one axis that is not a scenario field: the backend a point runs on."""
BACKEND_CHOICES = (*BACKENDS.names(), "auto")

AxisValues = list[Any] | dict[str, dict[str, Any]]
"""A field axis lists values; a named axis maps labels to the fields each sets."""


class SweepPart(BaseModel):
    """One sweep: a base scenario, the backend, and its grid and zip axes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str | dict[str, Any] | None = None
    backend: Literal["packet", "fluid", "auto"] = "packet"
    grid: dict[str, AxisValues] = {}
    zip: dict[str, AxisValues] = {}


class SweepFile(BaseModel):
    """``{parts: [...]}``: several sweeps run as one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    parts: list[SweepPart]


@dataclass(frozen=True)
class Point:
    """One point of a sweep, resolved: enough for a worker to run it and for a row to describe it."""

    index: int
    values: dict[str, Any]
    """Axis name -> the point's value on it, in column form (a label for named axes)."""
    sets: tuple[str, ...]
    """The ``--set key=value`` strings that make the point from the base, in order."""
    backend: str
    scenario: dict | None
    """The resolved scenario (JSON form); None for an invalid point."""
    hash: str
    command: str
    error: str | None = None
    """Why the point is invalid (with ``--skip-invalid``); None for a valid point."""


@dataclass
class Sweep:
    """A sweep file read and expanded: its points and what the table's metadata records."""

    source: str
    """Where the sweep came from (a path, or ``preset NAME``)."""
    text: str
    """The sweep file as written (kept in the table's metadata)."""
    axes: dict[str, str] = field(default_factory=dict)
    """Axis name -> its column type (``int64``, ``float64``, ``bool``, ``string``), in column order."""
    points: list[Point] = field(default_factory=list)
    bases: list[dict | None] = field(default_factory=list)
    """Each part's base scenario as written (JSON form), for the metadata."""
    inline_bases: dict[Path, dict] = field(default_factory=dict)
    """Where each inline base is to be written (the points' commands name these files)."""

    @property
    def valid(self) -> list[Point]:
        return [p for p in self.points if p.error is None]


# ---------------------------------------------------------------------------------------------
# Reading


def sweep_source(path: str | None, preset: str | None) -> tuple[Any, str, str, Path]:
    """A sweep file path or a preset name -> (its data, its text, how to name it, the directory its
    relative base paths start from)."""
    if (path is None) == (preset is None):
        raise InputError("sweep", "", "give a sweep file (SWEEP.yaml) or --preset NAME, one of them")
    if preset is not None:
        for candidate in preset_candidates("sweep", preset):
            if candidate.is_file():
                text = candidate.read_text()
                return read_yaml(candidate, "sweep"), text, f"preset {preset}", Path.cwd()
        raise InputError("--preset", "", f"no sweep preset named {preset!r} (presets: "
                         f"{', '.join(preset_names('sweep')) or 'none'})")
    file = Path(path)
    data = read_yaml(file, "sweep")
    return data, file.read_text(), str(path), file.parent


def read_sweep(data: Any, text: str, source: str, root: Path, out: Path, sets: list[str] = (),
               skip_invalid: bool = False) -> Sweep:
    """Parse, expand and resolve a sweep (see the module docstring). ``sets``: the sweep command's
    ``--set`` values, applied to every point's base before its own; ``root``: where a relative
    ``base`` path starts; ``out``: the sweep's directory, where an inline base is written
    (``DIR/base.yaml``) for the reproducing commands. Raises InputError naming the first bad
    point unless ``skip_invalid``, in which case invalid points are kept with their error (they
    become rows with status invalid)."""
    parts = _parts(data, source)
    sweep = Sweep(source, text)
    columns: dict[str, list[Any]] = {}
    for part in parts:
        for name, values in (*part.zip.items(), *part.grid.items()):
            columns.setdefault(name, []).extend(values if isinstance(values, list) else list(values))
    sweep.axes = {name: _column_type(values) for name, values in columns.items()}
    fixed = FILE_SCHEMAS["sweep"].names
    clash = [name for name in sweep.axes if name in fixed and name != BACKEND_AXIS]  # backend: its column
    if clash:
        raise InputError(source, clash[0], f"an axis cannot be named like a column of the table ({', '.join(fixed)})")
    for part_no, part in enumerate(parts):
        where = source if len(parts) == 1 else f"{source} parts.{part_no}"
        inline = _inline_base_path(out, part_no, len(parts))
        base, shown, base_json = _base(part.base, root, inline, where)
        sweep.bases.append(base_json)
        if isinstance(part.base, dict):
            sweep.inline_bases[inline] = part.base
        for combo in _combinations(part, where):
            point = _resolve(len(sweep.points), combo, part.backend, base, shown, list(sets), where, skip_invalid)
            sweep.points.append(point)
    return sweep


def _parts(data: Any, source: str) -> list[SweepPart]:
    if not isinstance(data, dict):
        raise InputError(source, "", "a sweep file must be a mapping (base, backend, grid, zip) or {parts: [...]}")
    try:
        if "parts" in data:
            parts = SweepFile.model_validate(data).parts
        else:
            parts = [SweepPart.model_validate(data)]
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p not in ("list[any]", "dict[str,dict[str,any]]", "str",
                                                               "dict[str,any]"))
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown field (a sweep has base, backend, grid, zip; or parts)"
        raise InputError(source, loc, problem) from None
    for i, part in enumerate(parts):
        where = source if len(parts) == 1 else f"{source} parts.{i}"
        for section in ("grid", "zip"):
            for name, values in getattr(part, section).items():
                if not values:
                    raise InputError(where, f"{section}.{name}", "an axis needs at least one value")
                if name in part.grid and name in part.zip:
                    raise InputError(where, f"zip.{name}", "is also a grid axis")
        lengths = {name: len(values) for name, values in part.zip.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise InputError(where, "zip", f"the zipped axes must have one length ({shown})")
    return parts


def _inline_base_path(out: Path, part: int, parts: int) -> Path:
    """Where a part's inline base is written: ``DIR/base.yaml`` (``DIR/base-<part>.yaml`` with parts)."""
    return out / ("base.yaml" if parts == 1 else f"base-{part}.yaml")


def _base(base: str | dict | None, root: Path, inline: Path,
          where: str) -> tuple[str | dict | None, str | None, dict | None]:
    """A part's base -> (what load_scenario reads, the scenario path ``pktsim run`` is given, the
    base as written). An inline base is read from the sweep; its command names ``inline``."""
    if base is None:
        return None, None, None
    if isinstance(base, dict):
        return base, shown_path(inline), base
    path = Path(base) if Path(base).is_absolute() else root / base
    if not path.is_file():
        raise InputError(where, "base", f"no scenario file {path}")
    data = read_yaml(path, "scenario")
    return str(path), shown_path(path), data if isinstance(data, dict) else None


def _combinations(part: SweepPart, where: str) -> list[list[tuple[str, Any, Any]]]:
    """Every point of a part: a list of (axis, column value, what it sets) per point, in order."""
    def options(name: str, values: AxisValues) -> list[tuple[str, Any, Any]]:
        if isinstance(values, list):
            return [(name, v, {name: v}) for v in values]
        out = []
        for label, fields in values.items():
            if not isinstance(fields, dict):
                raise InputError(where, f"{name}.{label}", "a named value maps fields to values, "
                                 "e.g. {lb.scheme: split, lb.subflows: 4}")
            out.append((name, label, fields))
        return out

    zipped = [list(row) for row in zip(*(options(n, v) for n, v in part.zip.items()))] or [[]]
    grid = [options(n, v) for n, v in part.grid.items()]
    return [[*row, *combo] for row in zipped for combo in itertools.product(*grid)]


def _column_type(values: list[Any]) -> str:
    """The Parquet type of an axis column: named and mixed axes are strings (mappings as JSON)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int64"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def column_value(value: Any, kind: str) -> Any:
    """A point's value on an axis in its column's type."""
    if value is None or kind != "string":
        return float(value) if kind == "float64" and value is not None else value
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def set_text(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it back to ``value`` (YAML flow style; strings that YAML would
    read as something else are quoted)."""
    if isinstance(value, str):
        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        text = value if same and value.strip() == value and value else json.dumps(value)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"{key}={text}"


def scenario_hash(scenario_json: dict, backend: str) -> str:
    """The point's identity: the resolved scenario and the backend (16 hex digits of SHA-256)."""
    text = json.dumps({"scenario": scenario_json, "backend": backend}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _describe(combo: list[tuple[str, Any, Any]]) -> str:
    shown = ", ".join(f"{name}={value if isinstance(value, str) else json.dumps(value)}" for name, value, _ in combo)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _resolve(index: int, combo: list[tuple[str, Any, Any]], backend: str, base: str | dict | None,
             base_path: str | None, sets: list[str], where: str, skip_invalid: bool) -> Point:
    """One point: its --set strings, the resolved scenario, its backend, hash and command."""
    own: list[str] = []
    for _, _, fields in combo:
        for key, value in fields.items():
            if key == BACKEND_AXIS:
                backend = value
            else:
                own.append(set_text(key, value))
    values = {name: value for name, value, _ in combo}
    described = f"{where} point {index} ({_describe(combo)})"
    try:
        if backend not in BACKEND_CHOICES:
            raise InputError(BACKEND_AXIS, "", f"unknown backend {backend!r} (choices: {', '.join(BACKEND_CHOICES)})")
        scenario = load_scenario(base, origin=f"{where} base" if isinstance(base, dict) else None,
                                 overrides=[*sets, *own])
        if backend == "auto":
            backend = "fluid" if scenario.topology.n_hosts > AUTO_FLUID_HOSTS else "packet"
        backend_named(backend).check(scenario)
    except InputError as e:
        error = InputError(described, e.field, f"{e.problem} [{_said(e.source, combo)}]")
        if not skip_invalid:
            raise error from None
        return Point(index, values, tuple(own), backend, None, scenario_hash({"sets": [*sets, *own]}, backend),
                     _command(base_path, backend, [*sets, *own]), error=str(e))
    scenario_json = scenario.model_dump(mode="json")
    return Point(index, values, tuple(own), backend, scenario_json, scenario_hash(scenario_json, backend),
                 _command(base_path, backend, [*sets, *own]))


def _said(source: str, combo: list[tuple[str, Any, Any]]) -> str:
    """Where the field of an error was written: an axis of the sweep, the command's --set, the base."""
    if source.startswith("--set "):
        key = source[len("--set "):]
        for name, value, fields in reversed(combo):  # the last axis setting it wins
            if key in fields:
                return f"axis {name}" if name == key else f"axis {name}, value {value}"
        return source
    return source if source == BACKEND_AXIS else f"from {source}"


def _command(base_path: str | None, backend: str, sets: list[str]) -> str:
    """The ``pktsim run`` command line that runs the point's scenario."""
    words = ["pktsim", "run", *([base_path] if base_path is not None else [])]
    if backend != "packet":
        words += ["--backend", backend]
    for item in sets:
        words += ["--set", item]
    return shlex.join(words)


def reload(scenario_json: dict) -> Scenario:
    """The point's scenario, rebuilt from its resolved form (in a worker)."""
    return Scenario.model_validate(scenario_json)
