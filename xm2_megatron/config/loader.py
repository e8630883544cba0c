"""Load recipes: YAML with ``extends`` inheritance, dotted overrides, typed conversion.

``load_config("recipes/nano_6m.yaml", ["train.steps=20"], world_size=8)`` reads the file,
resolves its ``extends`` chain (parent first, child deep-merged into it: mappings merge,
lists and scalars replace; ``name`` is never inherited), applies the overrides (values
parsed as YAML), converts to ``ExperimentConfig`` checking every type strictly, and validates.

Recipes ship inside the package (``xm2_megatron/recipes``, also reachable as ``recipes/`` at the
repository root): where no file ``cpu_quickstart`` or ``cpu_quickstart.yaml`` exists, that
name means the packaged recipe (``resolve_recipe``), for ``load_config`` and for ``extends``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xm2_megatron.config.checks import ConfigError, ConfigFileNotFoundError
from xm2_megatron.config.schema import ExperimentConfig

CLI = "from the command line"
T = TypeVar("T")
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"  # the packaged recipes
RECIPE_SUFFIXES = (".yaml", ".yml")


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``cpu_quickstart``, ``nano_6m``, ...)."""
    return sorted(p.stem for p in RECIPES_DIR.iterdir() if p.suffix in RECIPE_SUFFIXES)


def _packaged(name: str) -> Path | None:
    """The packaged recipe a bare name (``nano_6m`` or ``nano_6m.yaml``) means, else None."""
    if not name or os.sep in name or "/" in name or name.startswith("."):
        return None
    for candidate in (name,) if name.endswith(RECIPE_SUFFIXES) else (name + ".yaml", name + ".yml"):
        if (RECIPES_DIR / candidate).is_file():
            return RECIPES_DIR / candidate
    return None


def resolve_recipe(name_or_path: str | os.PathLike) -> Path:
    """The recipe file ``name_or_path`` means: that file if it exists, else the packaged recipe
    of that name (``cpu_quickstart`` or ``cpu_quickstart.yaml``); ``ConfigFileNotFoundError``
    listing the packaged recipes otherwise."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = _packaged(str(name_or_path))
    if packaged is not None:
        return packaged
    raise ConfigFileNotFoundError(f"config file {path} does not exist (packaged recipes: "
                                  f"{', '.join(packaged_recipes())})")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads ``1e-5`` as a float (YAML 1.2), not a string."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """Parse an override value the way a YAML file would (``false`` -> False, ``[1, 2]`` -> list)."""
    return yaml.load(text, Loader=_Loader)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileNotFoundError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a YAML mapping at the top level, not {type(data).__name__}")
    return data


def _record(origins: dict[str, str], data: Mapping, where: str, prefix: str = "") -> None:
    """Remember which file (or the command line) set each dotted key."""
    for key, value in data.items():
        origins[prefix + str(key)] = where
        if isinstance(value, Mapping):
            _record(origins, value, where, f"{prefix}{key}.")


def _merge(base: dict, child: Mapping) -> dict:
    """Deep-merge ``child`` into ``base`` in place: mappings merge, everything else replaces."""
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _load_tree(path: Path, origins: dict[str, str], chain: tuple[Path, ...] = ()) -> dict:
    real = path.resolve()
    if real in [p.resolve() for p in chain]:
        raise ConfigError("extends cycle: " + " -> ".join(str(p) for p in (*chain, path)))
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    base: dict = {}
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise ConfigError(f"extends={parent!r} (in {path}) must be a file name")
        parent_path = Path(os.path.normpath(path.parent / parent))
        if not parent_path.exists():  # a packaged recipe's name: a user's recipe may extend it
            parent_path = _packaged(parent) or parent_path
        if not parent_path.exists():
            raise ConfigFileNotFoundError(
                f"{path} extends '{parent}', but {parent_path} does not exist "
                f"(packaged recipes: {', '.join(packaged_recipes())})")
        base = _load_tree(parent_path, origins, (*chain, path))
        base.pop("name", None)  # a name belongs to its own file
    _record(origins, data, f"in {path}")
    return _merge(base, data)


def apply_overrides(data: dict, overrides: Sequence[str], origins: dict[str, str] | None = None) -> dict:
    """Apply ``dotted.key=value`` overrides to a raw config dict in place (values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} (from the command line) must look like dotted.key=value")
        try:
            value = parse_value(text)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"override {item!r} (from the command line) has an invalid YAML value: "
                              f"{problem}") from None
        *parents, leaf = key.split(".")
        node = data
        for i, part in enumerate(parents):
            if part not in node and origins is not None:
                origins[".".join(parents[:i + 1])] = CLI
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} (from the command line): "
                                  f"{'.'.join(parents[:i + 1])} is not a mapping")
        _merge(node, {leaf: value})
        if origins is not None:
            origins[key] = CLI
            if isinstance(value, Mapping):
                _record(origins, value, CLI, key + ".")
    return data


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, f"{prefix}{f.name}.")
    return keys


_TYPE_NAMES = {bool: "a bool (true/false)", int: "an int", float: "a float", str: "a string"}


def _convert(tp: Any, value: Any, key: str, where: Callable[[str], str]) -> Any:
    """Check ``value`` against the annotation ``tp`` strictly and build dataclasses from mappings."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key}={value!r} ({where(key)}) must be {expected}")

    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        if inner in _TYPE_NAMES and value is not None and not _is(inner, value):
            raise bad(f"{_TYPE_NAMES[inner]} or null")
        return _convert(inner, value, key, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        return _build(tp, value, key + ".", where)
    if typing.get_origin(tp) is dict:
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        key_type, value_type = args
        return {_convert(key_type, k, f"{key}.{k}", where): _convert(value_type, v, f"{key}.{k}", where)
                for k, v in value.items()}
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise bad("a list")
        return [_convert(args[0], v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if not _is(tp, value):
        raise bad(_TYPE_NAMES[tp])
    return float(value) if tp is float else value


def _is(tp: type, value: Any) -> bool:
    """Strict scalar check: bool is not an int, int is accepted for float, nothing is coerced."""
    return type(value) is tp or (tp is float and type(value) is int)


def _build(cls: type[T], data: Mapping, prefix: str, where: Callable[[str], str]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{prefix}{key}"
            known = [prefix + name for name in fields] + _all_keys(ExperimentConfig)
            known = [k for k in known if not full.startswith(k + ".")]  # not the enclosing section
            match = [k for k in known if k.rpartition(".")[2] == key]  # right name, wrong section
            match = match or difflib.get_close_matches(full, known, n=1)
            hint = f"; did you mean '{match[0]}'?" if match else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"unknown key '{full}' {where(full)}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], prefix + name, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name} is missing ({where(prefix.rstrip('.'))})")
    return cls(**kwargs)


def config_from_dict(data: Mapping, world_size: int | None = None,
                     origins: Mapping[str, str] | None = None,
                     source: str = "in the config dict") -> ExperimentConfig:
    """Convert a raw (merged) config mapping to a validated ``ExperimentConfig``."""
    origins = origins or {}

    def where(key: str) -> str:
        key = re.sub(r"\[\d+\]", "", key)
        while key:
            if key in origins:
                return origins[key]
            key = key.rpartition(".")[0]
        return source

    return _build(ExperimentConfig, data, "", where).validate(world_size)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (),
                world_size: int | None = None) -> ExperimentConfig:
    """Load a recipe (a file, or a packaged recipe's name: ``resolve_recipe``), resolve
    ``extends``, apply ``key=value`` overrides, type-check and validate."""
    if isinstance(overrides, str):
        overrides = [overrides]
    path = resolve_recipe(path)
    origins: dict[str, str] = {}
    data = _load_tree(path, origins)
    data.setdefault("name", path.stem)
    apply_overrides(data, overrides, origins)
    return config_from_dict(data, world_size, origins, f"in {path}")


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """The config as plain nested dicts/lists (field order kept)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML; ``load_config`` on it gives an equal config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
