"""The seams: the core knows no method, methods come from registries and plug-ins, and every
method owns its parameters."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from fedsec.config import Config, ConfigError, MethodParams, schema
from fedsec.registry import REGISTRIES

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _package_files(package: str, exclude: str | None = None) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if exclude is None or exclude not in f.relative_to(ROOT).parts]


@pytest.mark.parametrize(("layer", "exclude", "forbidden"), [
    ("fedsec", "app", ("strategies", "clients", "fedsec.app")),  # the core
    ("strategies", None, ("clients", "fedsec.app")),
    ("clients", None, ("strategies", "fedsec.app")),
])
def test_import_layering(layer: str, exclude: str | None, forbidden: tuple[str, ...]) -> None:
    """The core imports no method package and not the app; strategies and clients do not import each other."""
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for path in _package_files(layer, exclude) for name in sorted(_imports(path))
                 if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not offenders, "\n".join(offenders)


def test_the_layering_walk_sees_imports(tmp_path) -> None:
    """The walk finds imports at module level and inside functions (so the test above can fail)."""
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from strategies.krum import krum\n")
    assert _imports(path) == {"os", "strategies.krum"}


def test_every_method_parameter_lives_in_its_own_section() -> None:
    """Method sections are declared by the registered methods, next to their code, with help text."""
    sections = schema()
    declared = {entry.params for registry in REGISTRIES.values() for entry in registry.entries() if entry.params}
    assert declared, "no method declares parameters"
    for params in declared:
        assert issubclass(params, MethodParams) and sections[params.section] is params
        assert not params.__module__.startswith("fedsec."), f"{params.__name__} is declared in the core"
        for f in dataclasses.fields(params):
            assert f.metadata.get("help"), f"{params.section}.{f.name} has no help text"


def test_a_method_section_works_from_yaml_flat_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("neurotoxin:\n  ratio: 0.2\nkrum:\n  byzantine: 2\n")
    cfg = Config.load(path, ["neurotoxin.mode=round", "neurotoxin.mask=global_change"])
    assert (cfg.neurotoxin.ratio, cfg.neurotoxin.mode, cfg.krum.byzantine) == (0.2, "round", 2)
    assert Config.from_flat(cfg.to_flat()) == cfg
    assert Config.from_json(cfg.to_json()).get("neurotoxin.ratio") == 0.2


def test_an_old_or_mistyped_key_names_the_closest_ones() -> None:
    with pytest.raises(ConfigError, match="did you mean neurotoxin.ratio"):
        Config.from_flat({"neurotoxin.ration": 0.1})
    with pytest.raises(ConfigError, match="'attack.neurotoxin_ratio': it was renamed, use neurotoxin.ratio"):
        Config.from_flat({"attack.neurotoxin_ratio": 0.1})


def test_a_method_check_runs_only_when_the_method_is_selected() -> None:
    Config.from_flat({"trimmed_mean.beta": 0.7})  # not selected: its value is not used
    with pytest.raises(ConfigError, match=r"trimmed_mean.beta=0.7: must lie in \[0, 0.5\)"):
        Config.from_flat({"strategy.name": "trimmed_mean", "trimmed_mean.beta": 0.7})


def test_selector_keys_accept_only_their_own_methods() -> None:
    """A local training registered for the attack side is not a defense, and vice versa."""
    with pytest.raises(ConfigError, match="defense.local_training='w2s_attack' is not known"):
        Config.from_flat({"defense.local_training": "w2s_attack"})
    with pytest.raises(ConfigError, match="attack.local_training='redgrape' is not known"):
        Config.from_flat({"attack.local_training": "redgrape", "attack.malicious_clients": "0"})


def test_every_data_modality_has_its_evaluator() -> None:
    from fedsec.data.registry import MODALITIES
    from fedsec.registry import EVALUATORS

    assert set(EVALUATORS) == set(MODALITIES)
    assert EVALUATORS["text"] is EVALUATORS["image"]  # classification, whatever the input


def test_modality_is_checked_at_config_time() -> None:
    with pytest.raises(ConfigError, match="attack.data_poison=insertsent works on text data, but data.name=digits"):
        Config.from_flat({"data.name": "digits", "model.name": "cnn", "model.peft": "none",
                          "attack.data_poison": "insertsent", "attack.malicious_clients": "0"})
