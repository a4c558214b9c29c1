"""A config's first check, before plug-ins, torch or Ray are imported: config errors in well under 2 s.

:class:`fedsec.config.Config` builds its schema from the registries, which means
importing every method (torch, transformers, peft: ~10 s). ``fedsec/schema.json``
is a snapshot of that schema (every section's keys with their types and allowed
values, the renamed keys, the names each selector key may take), written by
``python simulations/sync_config.py`` and checked against the live registries by
the tests. :func:`precheck` reads a config file and ``key=value`` overrides
against the snapshot: unknown or renamed keys, values of the wrong type, names
no registry holds, and the core sections' cross-key constraints
(:func:`fedsec.config.check_core`) fail here with the messages the full load
would give. Each method's own checks and the checks of how methods compose run
in the full :meth:`Config.load` afterwards. With a third-party plug-in installed
(a ``fedsec.plugins`` entry point outside fedsec) the snapshot cannot know its
sections and names, so the precheck is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from fedsec.config import (
    CORE_SECTIONS,
    ConfigError,
    check_core,
    coerce,
    name_list,
    parse_yaml,
    read_config_file,
    unknown_key,
)

SNAPSHOT = Path(__file__).with_name("schema.json")
OWN_PLUGINS = {"strategies", "clients"}
TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def type_name(hint: Any) -> str | list[str]:
    """A field's type hint as the snapshot writes it: a type name, or the list of a Literal's values."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return hint.__name__


def _hint(spec: str | list[str]) -> Any:
    return Literal[tuple(spec)] if isinstance(spec, list) else TYPES[spec]


class _Core:
    """The core sections as :func:`check_core` reads them (attributes and ``get``)."""

    def __init__(self) -> None:
        for name, kind in CORE_SECTIONS.items():
            setattr(self, name, kind())

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)


def third_party_plugins() -> list[str]:
    """The installed ``fedsec.plugins`` entry points that are not fedsec's own."""
    return [p.name for p in entry_points(group="fedsec.plugins") if p.value.split(".")[0] not in OWN_PLUGINS]


def precheck(path: str | Path, overrides: list[str] | None = None, snapshot: dict[str, Any] | None = None) -> None:
    """Raise ``ConfigError`` for what the snapshot of the schema can tell is wrong in ``path`` + ``overrides``."""
    if snapshot is None:
        if third_party_plugins() or not SNAPSHOT.is_file():
            return
        snapshot = json.loads(SNAPSHOT.read_text())
    sections: dict[str, dict[str, Any]] = snapshot["sections"]
    flat: dict[str, Any] = {}
    for section, values in read_config_file(Path(path)).items():
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}': expected a table of keys, got {values!r}; "
                              f"sections are {', '.join(sections)}")
        flat.update({f"{section}.{key}": value for key, value in values.items()})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
        flat[key.strip()] = parse_yaml(raw) if raw.strip() else ""
    core = _Core()
    keys = {name: list(fields) for name, fields in sections.items()}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if name not in sections.get(section, {}):
            raise unknown_key(key, keys, snapshot["renamed"])
        value = coerce(key, value, _hint(sections[section][name]))
        if section in CORE_SECTIONS:
            setattr(getattr(core, section), name, value)
    check_core(core)  # in the order of Config.validate: the core, then the selected names
    for key, selector in snapshot["selectors"].items():  # every selector key is a core key
        value = str(core.get(key))
        for name in (name_list(value) if selector["chain"] else [value]):
            if name not in selector["names"]:
                raise ConfigError(f"{key}='{name}' is not known: choose one of {', '.join(selector['names'])}")


def current_snapshot() -> dict[str, Any]:
    """The snapshot of the live schema (imports every plug-in): what ``fedsec/schema.json`` must hold."""
    from fedsec.config import schema
    from fedsec.registry import REGISTRIES

    sections: dict[str, dict[str, Any]] = {}
    renamed: dict[str, str] = {}
    for name, kind in schema().items():
        hints = typing.get_type_hints(kind)
        sections[name] = {f.name: type_name(hints[f.name]) for f in dataclasses.fields(kind)}
        renamed.update(getattr(kind, "renamed", {}))
    selectors = {key: {"names": registry.choices(key), "chain": registry.chain}
                 for registry in REGISTRIES.values() for key in registry.selectors}
    if any(key.partition(".")[0] not in CORE_SECTIONS for key in selectors):
        raise TypeError("a selector key outside the core sections: the precheck reads selectors from the core")
    return {"sections": sections, "renamed": dict(sorted(renamed.items())), "selectors": selectors}
