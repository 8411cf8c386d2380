"""Scenario loading: files, presets, network profiles, ``--set`` overrides, and errors for people.

``topology`` and ``workload`` may be given inline, as a preset name (see :mod:`pktsim.scenario.presets`)
or as a path; ``profile`` names the preset the nic and switch sections start from. A scenario file
starts from the built-in default scenario: a section it leaves out is the default preset (topology
``small``, workload ``ring_allreduce``), so an empty file is the default scenario.

Every problem becomes an :class:`~pktsim.errors.InputError` naming where the value was written
(the scenario file, a preset or profile file, ``--set KEY``, a flag), the field and the problem,
before anything runs. Where each field came from is kept with the scenario
(:mod:`pktsim.scenario.provenance`), for errors found later.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from pktsim.errors import InputError
from pktsim.scenario import limits as lim
from pktsim.scenario.presets import preset_candidates, preset_names
from pktsim.scenario.provenance import BASE, DEFAULT, FILE, FLAG, SET, Provenance, dotted, parse_field
from pktsim.scenario.spec import DEFAULT_TOPOLOGY_KIND, FAULT_KINDS, TOPOLOGY_SPECS, Scenario, TopologyKind, _FieldError

DEFAULT_SECTIONS = {"topology": "small", "workload": "ring_allreduce"}
"""The presets of the built-in default scenario, also what a scenario file that leaves the section
out gets."""

# ---------------------------------------------------------------------------------------------
# YAML


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (on libyaml's parser when installed: fast, and it refuses deep nesting
    itself), refusing duplicate keys (YAML says keys are unique; PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: PyYAML's own error follows
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _shape_problem(data: Any) -> str | None:
    """Why ``data`` (as loaded: an alias is one shared object) is too deep or too large to read.
    Sizes are counted as if aliases were expanded, but each shared object is walked once and
    without recursion, so a "billion laughs" costs nothing; an alias inside itself is refused."""
    size: dict[int, tuple[int, int]] = {}  # id -> (values, depth) of a finished subtree
    busy: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        children = [c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (dict, list))]
        if done:
            values = len(node) + 1 + sum(size[id(c)][0] for c in children)
            depth = 1 + max((size[id(c)][1] for c in children), default=0)
            busy.discard(key)
            size[key] = (values, depth)
            if depth > lim.MAX_YAML_DEPTH:
                return f"nested too deeply (more than {lim.MAX_YAML_DEPTH} levels)"
            if values > lim.MAX_YAML_VALUES:
                return f"too large: more than {lim.MAX_YAML_VALUES:,} values (aliases expanded)"
            continue
        if key in size:
            continue
        if key in busy:
            return "an alias refers to itself (a recursive structure)"
        busy.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return None


class _NotYaml(InputError):
    """Text that does not parse as YAML (a ``--set`` value then stands for itself)."""


def _load_yaml(text: str, where: str) -> Any:
    """YAML ``text`` -> data, every problem one line about ``where``."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "nesting depth" in problem:  # libyaml's limit
            raise InputError(where, "", f"malformed YAML: {line}nested too deeply") from None
        error = InputError if "duplicate key" in problem else _NotYaml
        raise error(where, "", f"malformed YAML: {line}{problem}") from None
    except RecursionError:
        raise InputError(where, "", "malformed YAML: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise InputError(where, "", f"malformed YAML: {str(e).split(';')[0]}") from None
    problem = _shape_problem(data)
    if problem:
        raise InputError(where, "", problem)
    return data


def read_yaml(path: Any, what: str) -> Any:
    """``path``: a :class:`~pathlib.Path` or a preset (:class:`importlib.resources.abc.Traversable`)."""
    try:
        with path.open("rb") as f:
            raw = f.read(lim.MAX_FILE_BYTES + 1)
    except OSError as e:
        raise InputError(str(path), "", f"cannot read {what}: {e.strerror or e}") from None
    if len(raw) > lim.MAX_FILE_BYTES:
        raise InputError(str(path), "", f"larger than {lim.MAX_FILE_BYTES // 2**20} MiB: not a {what} file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(str(path), "", f"not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line})") from None
    return _load_yaml(text, str(path))


def shown_path(path: Any) -> str:
    """A path as short as it can be said: relative to the working directory when under it."""
    if not isinstance(path, Path):  # a preset inside an archive
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resolve_ref(section: str, ref: str, origin: str) -> tuple[dict, str]:
    """A preset name or a path -> (mapping, the file it came from)."""
    candidates = [Path(ref)] if ref.endswith((".yaml", ".yml")) or "/" in ref else []
    candidates += preset_candidates(section, ref)
    for path in candidates:
        try:
            found = path.is_file()
        except (OSError, ValueError):
            found = False
        if found:
            data = read_yaml(path, section)
            if not isinstance(data, dict):
                raise InputError(str(path), "", f"a {section} file must be a mapping of fields")
            # A full scenario file may be given as a topology/workload: take its section.
            if section in data and isinstance(data[section], dict):
                data = data[section]
            return data, str(path) if str(path) == ref else shown_path(path)
    known = ", ".join(preset_names(section)) or "none"
    raise InputError(origin, section, f"no preset or file named {ref!r} (presets: {known})")


# ---------------------------------------------------------------------------------------------
# --set


def _parse_value(text: str, where: str) -> Any:
    """A ``--set`` value, read as YAML (``8``, ``true``, ``[h0, h1]``, ``64MiB``)."""
    try:
        return _load_yaml(text, where)
    except _NotYaml:
        return text  # the text itself (the field's validation says what is wrong)


def _key_loc(key: str) -> tuple:
    return tuple(int(k) if k.isdigit() else k for k in key.split("."))


def _set_path(data: dict, dotted_key: str, value: Any, origin: str) -> None:
    keys = dotted_key.split(".")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(origin, dotted_key, f"{'.'.join(keys[:i])} has no item {key}")
            node = node[int(key)]
            if not isinstance(node, (dict, list)):
                raise InputError(origin, dotted_key, f"{'.'.join(keys[: i + 1])} is not a section")
            continue
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, (dict, list)):
            raise InputError(origin, dotted_key, f"{'.'.join(keys[: i + 1])} is not a section")
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise InputError(origin, dotted_key, f"no item {last}")
        node[int(last)] = value
    else:
        node[last] = value


def _parse_overrides(overrides: list[str]) -> list[tuple[str, Any, str]]:
    """``key=value`` strings -> (key, value, source) in order."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise InputError("--set", item, "expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise InputError("--set", item, "no field before '=' (expected key=value, e.g. topology.spines=8)")
        if any(not part.strip() for part in key.split(".")) or any(c.isspace() for c in key):
            raise InputError("--set", item, f"{key!r} is not a field path (expected names joined by dots, "
                                            f"e.g. workload.jobs.0.bytes)")
        out.append((key, _parse_value(text, f"--set {key}"), f"--set {key}"))
    return out


# ---------------------------------------------------------------------------------------------
# Profiles and topology kinds

PROFILE_SECTIONS = ("nic", "switch")


def _merged(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``, mappings merged key by key."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _for_kind(section: dict, kind: Any) -> dict:
    """A topology section whose kind ``--set topology.kind`` changes, without the fields of its old
    kind that the new kind does not have (they described the old fabric: ``-t small --set
    topology.kind=fat_tree`` drops the preset's spines, leaves and hosts_per_leaf). Fields the
    command line sets are applied afterwards, so they are still checked against the new kind."""
    old = section.get("kind", DEFAULT_TOPOLOGY_KIND)
    if not isinstance(kind, str) or not isinstance(old, str) or kind == old:
        return section
    if kind not in TOPOLOGY_SPECS or old not in TOPOLOGY_SPECS:
        return section
    drop = set(TOPOLOGY_SPECS[old].model_fields) - set(TOPOLOGY_SPECS[kind].model_fields)
    return {k: v for k, v in section.items() if k not in drop}


# ---------------------------------------------------------------------------------------------
# Errors


def _without_union_tags(err: dict) -> dict:
    """A pydantic error inside one of the scenario's tagged unions (topology kinds, fault kinds),
    said as if each were one model: no tags in the location, and an unknown kind a literal error
    at its ``kind`` field."""
    return _as_one_fault_model(_as_one_topology_model(err))


def _as_one_fault_model(err: dict) -> dict:
    """``faults`` is a list of faults (tagged by ``kind``) or ``{random: ...}``."""
    loc = tuple(err["loc"])
    if loc[:1] != ("faults",):
        return err
    if len(loc) == 1 and err["type"] == "union_tag_not_found":
        return {**err, "type": "fault_list", "msg": "expected a list of faults or {random: {...}}"}
    loc = (loc[0], *loc[2:]) if len(loc) > 1 and loc[1] in ("list", "random") else loc
    if len(loc) == 2 and err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kind = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
        if kind is None:
            return {**err, "loc": (*loc, "kind"), "type": "missing", "msg": f"missing (one of {', '.join(FAULT_KINDS)})"}
        try:
            TypeAdapter(Literal[FAULT_KINDS]).validate_python(kind)
        except ValidationError as e:
            return {**e.errors()[0], "loc": (*loc, "kind")}
    if len(loc) > 2 and isinstance(loc[1], int) and loc[2] in FAULT_KINDS:
        loc = (*loc[:2], *loc[3:])
    return {**err, "loc": loc}


def _as_one_topology_model(err: dict) -> dict:
    """A pydantic error inside the topology union, said as if the topology were one model: no kind
    tag in the location, and a kind that is not one of them a literal error at ``topology.kind``."""
    loc = tuple(err["loc"])
    if loc[:1] != ("topology",):
        return err
    if len(loc) == 1 and err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kind = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
        try:
            TypeAdapter(TopologyKind).validate_python(kind)
        except ValidationError as e:
            return {**e.errors()[0], "loc": ("topology", "kind")}
    if len(loc) > 1 and loc[1] in TOPOLOGY_SPECS:
        err = {**err, "loc": (loc[0], *loc[2:])}
    return err


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Annotated, unions, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out += _models_in(arg)
    return out


def _model_at(loc: tuple, data: Any) -> type[BaseModel] | None:
    """The model whose fields are at ``loc`` (a section, or a list item), or None."""
    model: type[BaseModel] = Scenario
    node = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        models = _models_in(info.annotation)
        if not models:
            return None
        kind = node.get("kind", DEFAULT_TOPOLOGY_KIND) if isinstance(node, dict) else DEFAULT_TOPOLOGY_KIND
        model = next((m for m in models if TOPOLOGY_SPECS.get(kind) is m), models[0])
    return model


def closest_name(word: str, choices: list[str]) -> str | None:
    """The choice closest to a misspelt ``word`` (for "did you mean"), or None."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) <= 60:
        return text
    if isinstance(value, int):
        return f"{text[:12]}...{text[-4:]} ({len(text)} digits)"
    return text[:50] + "..."


def _said(err: dict, loc: tuple, data: dict) -> tuple[tuple, str]:
    """pydantic's error at ``loc`` -> (location, the problem in words)."""
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    kind = err["type"]
    if kind == "invalid_key":  # a mapping key that is not a string (``1: 2``)
        return (*loc[:-1], str(err["input"])), "unknown field (field names are strings)"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1], data)
        near = closest_name(str(loc[-1]), list(model.model_fields)) if model is not None else None
        return loc, f"unknown field (did you mean `{dotted((*loc[:-1], near))}`?)" if near else "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = "a preset name or a mapping of topology fields" if loc == ("topology",) else \
            "a preset name or a mapping of workload fields" if loc == ("workload",) else "a mapping of fields"
        return loc, f"expected {what} (got {_short(err['input'])})"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", (err.get("ctx") or {}).get("expected", ""))
        msg = f"{msg} (got {_short(err['input'])})"
        value = err["input"]
        if isinstance(value, str):
            if loc == ("lb", "scheme") and ":" in value:
                scheme, _, planner = value.partition(":")
                return loc, f"{msg}; {value!r} is the study's notation: use lb.scheme: {scheme} and " \
                            f"lb.planner: {planner} (--lb {scheme} --set lb.planner={planner})"
            near = closest_name(value, choices)
            if near:
                msg = f"{msg}; did you mean {near!r}?"
        return loc, msg
    if "input" in err and kind != "missing" and not isinstance(err["input"], (dict, list)):
        shown = _short(err["input"])
        if repr(err["input"]) not in msg and shown not in msg:
            msg = f"{msg} (got {shown})"
    return loc, msg


def _clean_loc(loc: tuple) -> tuple:
    """pydantic's location without union/tag noise such as ``literal['packed', ...]``."""
    return tuple(p for p in loc if isinstance(p, int) or (p.isidentifier() and p not in ("str", "int", "float", "bool")))


# ---------------------------------------------------------------------------------------------
# Loading


def load_scenario(
    path: str | dict | None = None,
    *,
    origin: str | None = None,
    topology: str | dict | None = None,
    workload: str | dict | None = None,
    lb: str | None = None,
    seed: int | None = None,
    profile: str | None = None,
    overrides: list[str] = (),
) -> Scenario:
    """Build and validate a scenario from a file (or the built-in default) and command-line options.

    ``overrides`` are ``key=value`` strings; the value is read as YAML (``8``, ``true``, ``[h0, h1]``).
    ``lb`` and ``seed`` are the ``--lb`` and ``--seed`` flags (applied after the overrides).
    Where each field was written is kept with the scenario (:func:`pktsim.scenario.provenance`).
    ``path`` may also be the scenario's mapping itself (a sweep's inline base), ``origin`` then
    saying where it was written.
    """
    origin = origin or (str(path) if isinstance(path, (str, Path)) else "default scenario" if path is None
                        else "scenario")
    prov = Provenance(origin)
    data: dict[str, Any] = {}
    if path is not None:
        loaded = path if isinstance(path, dict) else read_yaml(Path(path), "scenario")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(origin, "", "a scenario file must be a mapping of fields")
        data = copy.deepcopy(loaded)
        prov.merge((), data, origin, FILE)
    ref_sources: dict[str, str] = {}
    for section, preset in DEFAULT_SECTIONS.items():
        if section not in data:
            data[section] = preset
            ref_sources[section] = "default scenario"
    if topology is not None:
        data["topology"] = topology
        ref_sources["topology"] = "--topology"
    if workload is not None:
        data["workload"] = workload
        ref_sources["workload"] = "--workload"

    sets = _parse_overrides(list(overrides))
    if lb is not None:
        sets.append(("lb.scheme", lb, "--lb"))
    if seed is not None:
        sets.append(("seed", seed, "--seed"))
    # --set profile=NAME is the profile the nic and switch sections start from, as --profile is.
    for key, value, source in sets:
        if key == "profile":
            profile, ref_sources["profile"] = value, source
    sets = [s for s in sets if s[0] != "profile"]
    if profile is not None:
        data["profile"] = profile
        ref_sources.setdefault("profile", "--profile")

    def rank_of(where: str | None) -> int:
        """The rank of what a reference (a preset or profile name) written at ``where`` brings."""
        return {None: BASE, "default scenario": DEFAULT}.get(where, SET if str(where).startswith("--set") else FLAG)

    ref = data.get("profile")
    if isinstance(ref, str):
        prof_origin = ref_sources.get("profile", origin)
        own = {s: data.get(s) for s in PROFILE_SECTIONS}
        prof, source = _resolve_ref("profile", ref, prof_origin)
        extra = sorted(set(prof) - set(PROFILE_SECTIONS), key=str)
        if extra:
            raise InputError(source, str(extra[0]), f"a profile sets only {' and '.join(PROFILE_SECTIONS)}")
        for section in PROFILE_SECTIONS:
            if section in prof:
                mine = own[section] if isinstance(own[section], dict) else {}
                data[section] = _merged(prof[section], mine)
                # a profile is a base under the sections, wherever it was named: their own values win
                prov.record((section,), prof[section], source, BASE)
                prov.merge((section,), mine, origin, FILE)
        data["profile"] = Path(ref).stem
        prov.record(("profile",), ref, prof_origin, max(FILE, rank_of(ref_sources.get("profile"))))
    presets: dict[str, str] = {}
    """Section -> the name of the preset (or file) it was read from, to name the run after."""
    for section in ("topology", "workload"):
        ref = data.get(section)
        where = ref_sources.get(section, origin)
        if isinstance(ref, str):
            presets[section] = Path(ref).stem
            data[section], source = _resolve_ref(section, ref, where)
            prov.record((section,), data[section], source, rank_of(ref_sources.get(section)))
        elif section in ref_sources:  # a mapping given to load_scenario(topology=...)
            prov.record((section,), ref, where, FLAG)
    kinds = [value for key, value, _ in sets if key == "topology.kind"]
    if kinds and isinstance(data.get("topology"), dict):
        data["topology"] = _for_kind(data["topology"], kinds[-1])
    for key, value, source in sets:
        if key in ("topology", "workload") and isinstance(value, str):  # --set topology=bench: a preset
            presets[key] = Path(value).stem
            value, content = _resolve_ref(key, value, source)
            data[key] = value
            prov.record((key,), value, content, SET)
            continue
        _set_path(data, key, value, "--set" if source.startswith("--set") else source)
        prov.record(_key_loc(key), value, source, SET)

    if "name" not in data and presets:  # a run without a name is named after its presets
        data["name"] = "-".join(presets[s] for s in ("topology", "workload") if s in presets)
    try:
        scenario = Scenario.model_validate(data)
    except RecursionError:
        raise InputError(origin, "", "nested too deeply") from None
    except ValidationError as e:
        err = _without_union_tags(e.errors()[0])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldError):
            loc, msg, involves = ctx_err.loc, str(ctx_err), ctx_err.involves
        else:
            (loc, msg), involves = _said(err, _clean_loc(tuple(err["loc"])), data), ()
        raise InputError(prov.source_of(loc, *involves), dotted(loc), msg) from None
    scenario._provenance = prov
    return scenario


__all__ = ["DEFAULT_SECTIONS", "PROFILE_SECTIONS", "load_scenario", "parse_field"]
