"""Scenario loading: files, presets, network profiles, ``--set`` overrides, and errors for people.

``topology`` and ``workload`` may be given inline, as a preset name (see :mod:`pktsim.scenario.presets`)
or as a path; ``profile`` names the preset the nic and switch sections start from. Every problem
becomes an :class:`~pktsim.errors.InputError` naming the file, the field and the problem, before
anything runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from pktsim.errors import InputError
from pktsim.scenario.presets import preset_candidates, preset_names
from pktsim.scenario.spec import DEFAULT_TOPOLOGY_KIND, TOPOLOGY_SPECS, Scenario, TopologyKind, _FieldError


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read_yaml(path: Any, what: str) -> Any:
    """``path``: a :class:`~pathlib.Path` or a preset (:class:`importlib.resources.abc.Traversable`)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(str(path), "", f"cannot read {what}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(str(path), "", f"malformed YAML: {where}{problem}") from None


def _shown(path: Any) -> str:
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
        if path.is_file():
            data = _read_yaml(path, section)
            if not isinstance(data, dict):
                raise InputError(str(path), "", f"a {section} file must be a mapping of fields")
            # A full scenario file may be given as a topology/workload: take its section.
            if section in data and isinstance(data[section], dict):
                data = data[section]
            return data, str(path) if str(path) == ref else _shown(path)
    known = ", ".join(preset_names(section)) or "none"
    raise InputError(origin, section, f"no preset or file named {ref!r} (presets: {known})")


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_path(data: dict, dotted: str, value: Any, origin: str) -> None:
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(origin, dotted, f"{'.'.join(keys[:i])} has no item {key}")
            node = node[int(key)]
            continue
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, (dict, list)):
            raise InputError(origin, dotted, f"{'.'.join(keys[: i + 1])} is not a section")
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise InputError(origin, dotted, f"no item {last}")
        node[int(last)] = value
    else:
        node[last] = value


PROFILE_SECTIONS = ("nic", "switch")


def _merged(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``, mappings merged key by key."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _apply_profile(data: dict, ref: str, origin: str, sources: dict[str, str]) -> None:
    """Start the nic and switch sections from the network profile ``ref``; what the scenario
    itself says about them wins."""
    prof, source = _resolve_ref("profile", ref, origin)
    extra = sorted(set(prof) - set(PROFILE_SECTIONS))
    if extra:
        raise InputError(source, extra[0], f"a profile sets only {' and '.join(PROFILE_SECTIONS)}")
    for section in PROFILE_SECTIONS:
        if section in prof:
            data[section] = _merged(prof[section], data.get(section) or {})
            sources.setdefault(section, source)
    data["profile"] = Path(ref).stem


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
        if err["type"] == "model_type" and len(loc) == 2:  # not a mapping: name the kind-neutral spec
            err["msg"] = err["msg"].replace(TOPOLOGY_SPECS[loc[1]].__name__, "TopologySpec")
    return err


def load_scenario(
    path: str | None = None,
    *,
    topology: str | None = None,
    workload: str | None = None,
    lb: str | None = None,
    seed: int | None = None,
    profile: str | None = None,
    overrides: list[str] = (),
) -> Scenario:
    """Build and validate a scenario from a file (or the built-in default) and command-line options.

    ``overrides`` are ``key=value`` strings; the value is read as YAML (``8``, ``true``, ``[h0, h1]``).
    """
    origin = path or "default scenario"
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(Path(path), "scenario")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(path, "", "a scenario file must be a mapping of fields")
        data = loaded
    else:
        data = {"name": "default", "topology": "small", "workload": "ring_allreduce"}
    data = copy.deepcopy(data)

    # Which file each top-level section came from, to name it in errors.
    sources: dict[str, str] = {}
    sets: list[tuple[str, Any]] = []
    if topology is not None:
        data["topology"] = topology
        sources["topology"] = "--topology"
    if workload is not None:
        data["workload"] = workload
        sources["workload"] = "--workload"
    for item in overrides:
        if "=" not in item:
            raise InputError("--set", item, "expected key=value")
        key, text = item.split("=", 1)
        sets.append((key.strip(), _parse_value(text)))
    if lb is not None:
        sets.append(("lb.scheme", lb))
    if seed is not None:
        sets.append(("seed", seed))

    if profile is not None:
        data["profile"] = profile
        sources["profile"] = "--profile"
    ref = data.get("profile")
    if isinstance(ref, str):
        _apply_profile(data, ref, sources.get("profile", origin), sources)
    for section in ("topology", "workload"):
        ref = data.get(section)
        if isinstance(ref, str):
            data[section], sources[section] = _resolve_ref(section, ref, sources.get(section, origin))
    kinds = [value for key, value in sets if key == "topology.kind"]
    if kinds and isinstance(data.get("topology"), dict):
        data["topology"] = _for_kind(data["topology"], kinds[-1])
    set_keys = {}
    for key, value in sets:
        _set_path(data, key, value, "--set")
        set_keys[key] = value

    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        err = _as_one_topology_model(e.errors()[0])
        loc = tuple(err["loc"])
        msg = err["msg"]
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldError):
            loc, msg = ctx_err.loc, str(ctx_err)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        # Drop pydantic's union/tag noise such as 'literal['packed', ...]' from the location.
        loc = tuple(p for p in loc if isinstance(p, int) or not ("[" in p or p in ("list[str]", "str", "int")))
        field = _dotted(loc)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err['input']!r})"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            if repr(err["input"]) not in msg:
                msg = f"{msg} (got {err['input']!r})"
        source = origin
        for key in set_keys:
            norm = _dotted(tuple(int(k) if k.isdigit() else k for k in key.split(".")))
            if field and (field == norm or field.startswith(norm + ".") or norm.startswith(field + ".")):
                source = f"--set {key}"
        if source == origin and loc and loc[0] in sources:
            source = sources[loc[0]]
        raise InputError(source, field, msg) from None
