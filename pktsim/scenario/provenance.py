"""Where each part of a scenario was written, so that an error names the place to fix it.

:func:`~pktsim.scenario.loading.load_scenario` records, as it assembles a scenario, the source of
every field it sets: the scenario file, a preset or profile file, ``--set KEY``, a flag
(``--topology``, ``--workload``, ``--profile``, ``--lb``, ``--seed``). The record travels with the
scenario (:func:`provenance`), and :func:`blame` re-attributes an error raised after loading
(while building the workload, planning flows) to where its field was written::

    try:
        experiment = prepare(scenario)
    except InputError as e:
        raise blame(e, scenario) from None
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pktsim.errors import InputError

if TYPE_CHECKING:
    from pktsim.scenario.spec import Scenario

PLACEHOLDER_SOURCES = frozenset({"scenario", "default scenario", "topology", "nic", "switch", "lb", "workload",
                                 "traces"})
"""Sources that code outside the loader gives its errors (``InputError("workload", field, ...)``)
when it does not know where the field was written: :func:`blame` replaces them."""

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_field(field: str) -> tuple | None:
    """``workload.jobs[0].bytes`` (or ``workload.jobs.0.bytes``) -> ``("workload", "jobs", 0, "bytes")``;
    None if it is not a dotted path."""
    if not field or any(c.isspace() for c in field):
        return None
    loc: list[Any] = []
    pos = 0
    while pos < len(field):
        if field[pos] == "." and loc:
            pos += 1
        m = _PART.match(field, pos)
        if m is None:
            return None
        name, index = m.groups()
        loc.append(int(index) if index is not None else int(name) if name.isdigit() else name)
        pos = m.end()
    return tuple(loc)


def dotted(loc: tuple) -> str:
    """``("workload", "jobs", 0, "bytes")`` -> ``workload.jobs[0].bytes``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


DEFAULT, BASE, FILE, FLAG, SET = range(5)
"""How a source ranks when an error could be blamed on several (a later rank overrides): the
built-in default; a profile (always a base under the nic and switch sections) or a preset the
scenario file names; the scenario file; a preset a flag names (``--topology``); ``--set`` and the
``--lb`` / ``--seed`` flags."""


class Provenance:
    """Field location -> where it was written, ranked (:data:`SET` over :data:`FLAG` over
    :data:`FILE` over :data:`BASE`), then in the order the loader applied the sources. Not part of
    a scenario's value: scenarios with equal fields are equal wherever they were written."""

    def __init__(self, default: str) -> None:
        self.default = default
        """Where what nobody set comes from: the scenario file, or ``default scenario``."""
        self._entries: dict[tuple, tuple[int, int, str]] = {(): (DEFAULT, 0, default)}
        self._clock = 0

    def record(self, loc: tuple, value: Any, source: str, rank: int) -> None:
        """``value`` at ``loc`` (a whole section or field) came from ``source``; it replaces what
        was recorded at and under ``loc``."""
        self._drop_under(loc)
        self._set(loc, source, rank)
        self.merge(loc, value, source, rank)

    def merge(self, loc: tuple, value: Any, source: str, rank: int) -> None:
        """The fields of the mapping ``value`` at ``loc`` came from ``source``; fields it does not
        name keep their source (a scenario's nic section over a profile's)."""
        if not isinstance(value, dict):
            return
        stack = [(loc, value)]
        while stack:
            at, node = stack.pop()
            for key, sub in node.items():
                if not isinstance(key, (str, int)):
                    continue
                child = (*at, key)
                self._drop_under(child)
                self._set(child, source, rank)
                if isinstance(sub, dict):
                    stack.append((child, sub))

    def _set(self, loc: tuple, source: str, rank: int) -> None:
        self._clock += 1
        self._entries[loc] = (rank, self._clock, source)

    def _drop_under(self, loc: tuple) -> None:
        n = len(loc)
        for key in [k for k in self._entries if len(k) > n and k[:n] == loc]:
            del self._entries[key]

    def _written(self, loc: tuple) -> tuple[int, int, str]:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self._entries:
                found = self._entries[loc[:n]]
                break
        n = len(loc)
        for key, entry in self._entries.items():
            if len(key) > n and key[:n] == loc and entry[:2] > found[:2]:
                found = entry
        return found

    def source_of(self, loc: tuple, *involves: tuple) -> str:
        """Where the value at ``loc`` was written: the source recorded at its longest recorded
        prefix, unless something under ``loc`` was written by a later source (an error about a
        section, e.g. ``nic``, is about what was last written in it). With ``involves`` (the other
        fields a cross-field problem depends on): whichever of them all was written last."""
        return max((self._written(at) for at in (loc, *involves)), key=lambda w: w[:2])[2]

    def sources(self) -> dict[str, str]:
        """Every recorded location (dotted) -> its source, in the order they were written."""
        return {dotted(k) or "(scenario)": e[2] for k, e in sorted(self._entries.items(), key=lambda i: i[1][1])}

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Provenance)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Provenance({self.default!r}, {len(self._entries)} fields)"


def provenance(scenario: Scenario) -> Provenance | None:
    """Where the fields of ``scenario`` were written (None for a scenario not built by
    :func:`~pktsim.scenario.loading.load_scenario`)."""
    return getattr(scenario, "_provenance", None)


def blame(error: InputError, scenario: Scenario) -> InputError:
    """``error`` said of where its field was written, when it was raised after loading by code that
    did not know (its source is one of :data:`PLACEHOLDER_SOURCES`, or the field's own path as in
    ``InputError("lb.planner", "ilp", ...)``); any other error unchanged.

    ``--set workload.jobs.0.placement=[h0,h99]`` -> ``--set workload.jobs.0.placement:
    workload.jobs[0].placement: host h99 does not exist``."""
    from pktsim.scenario.spec import Scenario

    prov = provenance(scenario)
    if prov is None:
        return error
    field, problem = error.field, error.problem
    if error.source not in PLACEHOLDER_SOURCES:
        loc = parse_field(error.source)
        if loc is None or not isinstance(loc[0], str) or loc[0] not in Scenario.model_fields or len(loc) < 2:
            return error
        # InputError("lb.planner", "ilp", ...): the source is the field, the field its value
        field, problem = dotted(loc), problem if field in problem else f"{field}: {problem}" if field else problem
    loc = parse_field(field)
    if loc is None or not isinstance(loc[0], str) or loc[0] not in Scenario.model_fields:
        return error
    return error.with_source(prov.source_of(loc), field, problem)
