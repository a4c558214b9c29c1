"""Config schema: loading, overrides, validation messages, Flower run-config mapping."""

from __future__ import annotations

import tomllib

import pytest

from fedsec.config import Config, ConfigError


def test_defaults_are_valid() -> None:
    Config().validate()


def test_yaml_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  seed: 3\ndata:\n  alpha: 0.2\n")
    cfg = Config.load(path, ["data.alpha=0.05", "strategy.name=fedadam", "data.balanced=true"])
    assert cfg.run.seed == 3
    assert cfg.data.alpha == 0.05
    assert cfg.strategy.name == "fedadam"
    assert cfg.data.balanced is True


def test_yaml_words_like_off_stay_strings(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("client:\n  mixed_precision: off\n")
    assert Config.load(path).client.mixed_precision == "off"
    assert Config.load(path, ["client.mixed_precision=bf16"]).client.mixed_precision == "bf16"
    assert Config.load(path, ["client.mixed_precision=off"]).client.mixed_precision == "off"


def test_toml_file(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[federation]\nnum_clients = 20\nclients_per_round = 5\n")
    cfg = Config.load(path)
    assert (cfg.federation.num_clients, cfg.federation.clients_per_round) == (20, 5)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.alpah=0.1", "unknown key 'data.alpah'"),
        ("dat.alpha=0.1", "unknown key 'dat.alpha'"),
        ("data.partitioner=random", "choose one of iid, dirichlet, pathological, longtail, natural"),
        ("strategy.name=fedfoo", "strategy.name='fedfoo' is not known"),
        ("data.name=mnist_nope", "data.name='mnist_nope' is not known"),
        ("federation.num_clients=ten", "federation.num_clients='ten': expected an integer"),
        ("client.lr=-1", "client.lr must be > 0"),
        ("federation.clients_per_round=50", "exceeds federation.num_clients=10"),
        ("data.balanced=maybe", "expected true or false"),
        ("client.epochs=1.5", "expected an integer"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  seed: 0\n")
    with pytest.raises(ConfigError) as err:
        Config.load(path, [override])
    assert fragment in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        Config.load(bad)
    notable = tmp_path / "notable.yaml"
    notable.write_text("run: 3\n")
    with pytest.raises(ConfigError, match="expected a table"):
        Config.load(notable)


def test_flat_round_trip() -> None:
    cfg = Config()
    cfg.set("data.alpha", 0.3)
    flat = cfg.to_flat()
    assert flat["data.alpha"] == 0.3
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert Config.from_flat(flat) == cfg
    assert Config.from_json(cfg.to_json()) == cfg


def test_pyproject_run_config_is_the_default_experiment(root) -> None:
    """`flwr run .` must run what `python simulations/run.py` runs."""
    from flwr.common.config import flatten_dict

    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    flwr_config = flatten_dict(pyproject["tool"]["flwr"]["app"]["config"])
    expected = Config.load(root / "simulations" / "configs" / "default.yaml").to_flat()
    assert flwr_config == expected, "run: python simulations/sync_config.py"
    assert Config.from_flat(flwr_config) == Config.load(root / "simulations" / "configs" / "default.yaml")


def test_config_table_and_pyproject_are_generated_from_the_schema(root) -> None:
    """The drift test: both derived files equal what simulations/sync_config.py writes from the registries."""
    import sys

    sys.path.insert(0, str(root))
    from simulations import sync_config

    page_path = root / "docs" / "reference" / "configuration.md"
    assert page_path == sync_config.CONFIG_PAGE
    page = page_path.read_text()
    assert sync_config.config_page_text(page) == page, "run: python simulations/sync_config.py"
    pyproject = (root / "pyproject.toml").read_text()
    assert sync_config.pyproject_text(pyproject) == pyproject, "run: python simulations/sync_config.py"
    for section in ("neurotoxin", "krum", "psim", "fedglad"):  # method sections reach the table
        assert f"| `{section}." in page
    assert sync_config.TABLE_START not in (root / "README.md").read_text()  # the table lives in the docs only


def test_every_shipped_config_loads(root) -> None:
    for path in sorted((root / "simulations" / "configs").glob("*.yaml")):
        Config.load(path)


def test_config_from_a_message_is_parsed_once() -> None:
    from fedsec.protocol import EXPERIMENT as CONFIG_KEY

    cfg = Config()
    cfg.set("data.alpha", 0.7)
    record = {CONFIG_KEY: cfg.to_json()}
    first = Config.from_message(record)
    assert first == cfg and Config.from_message(record) is first


def test_attack_configs_load_on_the_text_default(root) -> None:
    """Every ready-made attack config overlays the default experiment and validates."""
    default = Config.load(root / "simulations" / "configs" / "default.yaml")
    paths = sorted((root / "simulations" / "configs" / "attacks").glob("*.yaml"))
    assert len(paths) >= 14
    for path in paths:
        cfg = Config.load(path)
        assert cfg.model == default.model and cfg.data == default.data
        assert cfg.attack.malicious_clients == "0,1" and cfg.attack != default.attack


def test_base_chain_loops_are_refused(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        Config.load(tmp_path / "a.yaml")
