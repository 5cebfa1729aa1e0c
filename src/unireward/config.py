"""Stage configuration: frozen dataclasses loaded from `params.yaml` sections.

`params.yaml` has one top-level section per stage (same name as the stage) and a `profiles`
section whose entries override stage sections, e.g.::

    unified_sft: {max_steps: 300, learning_rate: 1.0e-3}
    profiles:
      full:
        unified_sft: {max_steps: 6000}

`load_stage_config(XConfig, "unified_sft", profile="full")` deep-merges the two and builds the
dataclass. Unknown keys are errors (a typo must not silently fall back to a default), and each
config validates itself in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_PROFILE = "quick"


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclass fields.

    Raises ValueError naming the unknown keys and the valid ones.
    """
    data = dict(data or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        label = where or cls.__name__
        raise ValueError(
            f"unknown key(s) {unknown} in {label}; valid keys are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = _field_default(fields[name])
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            # A partial nested section overrides the stage's own default, not the class's.
            value = deep_merge(dataclasses.asdict(default), value)
        kwargs[name] = _coerce(hints[name], value, f"{where or cls.__name__}.{name}")
    return cls(**kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Nested dataclasses from dicts, tuples from lists, and numbers to the field's type.

    Kubeflow carries dict parameters as protobuf Structs whose only number is a double, so an
    int field arrives as `3.0`: a whole float becomes an int where the field is an int.
    """
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value, where)
        if int in typing.get_args(hint):
            return _coerce(int, value, where)
        return value
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) == len(value):
            return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form of a config (for MLflow params and KFP parameters)."""
    return dataclasses.asdict(config)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_params(path: Path = DEFAULT_PARAMS, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The params file as a mapping. A file with a top-level `extends: <path>` (relative to the
    file) is deep-merged over the file it names: an experiment's or a user's own profiles on
    top of the project's params.yaml without copying it (experiments/params.yaml)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file {path} not found (run from the project root?)")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    parent = params.pop("extends", None)
    if parent is None:
        return params
    if not isinstance(parent, str) or not parent:
        raise ValueError(f"{path}: `extends` must be a path to another params file")
    base = (path.parent / parent).resolve()
    if base in _seen or base == path.resolve():
        raise ValueError(f"{path}: `extends` loops back to {base}")
    return deep_merge(load_params(base, (*_seen, path.resolve())), params)


def stage_section(params: dict[str, Any], stage: str, profile: str | None) -> dict[str, Any]:
    """The stage's section with the profile's overrides applied."""
    profiles = params.get("profiles") or {}
    if profile is not None and profile not in profiles and profile != DEFAULT_PROFILE:
        raise ValueError(f"unknown profile {profile!r}; params.yaml defines {sorted(profiles)}")
    section = params.get(stage) or {}
    override = (profiles.get(profile) or {}).get(stage) or {} if profile else {}
    return deep_merge(section, override)


def load_stage_config(
    cls: type[T], stage: str, profile: str | None = DEFAULT_PROFILE, path: Path = DEFAULT_PARAMS
) -> T:
    return from_dict(cls, stage_section(load_params(path), stage, profile), where=stage)
