"""What a newcomer meets first: where a run writes, what the console and plot show, errors raised before Ray."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pytest

from fedsec.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "simulations"))
import run  # noqa: E402  (simulations/run.py)


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"resume": None, "out": None, "overwrite": False, **kw})


def test_each_run_gets_its_own_directory(tmp_path) -> None:
    base = tmp_path / "outputs" / "digits"
    first, created = run.output_dir(_args(), str(base))
    second, _ = run.output_dir(_args(), str(base))  # the same second: claimed atomically, a new name
    assert created and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == base and first != second
    run.point_latest(first)
    run.point_latest(second)
    assert (base / "latest").resolve() == second.resolve()
    assert run.output_dir(_args(resume=str(base / "latest")), "ignored") == (second.resolve(), False)


def test_out_never_overwrites_an_earlier_run_unless_asked(tmp_path) -> None:
    assert run.output_dir(_args(out=str(tmp_path)), "ignored") == (tmp_path, False)  # empty: fine
    (tmp_path / "events.out.tfevents.1").write_text("")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run.output_dir(_args(out=str(tmp_path)), "ignored")
    assert run.output_dir(_args(out=str(tmp_path), overwrite=True), "ignored") == (tmp_path, False)
    with pytest.raises(FileExistsError, match="--out"):
        run.output_dir(_args(overwrite=True), "ignored")
    with pytest.raises(FileExistsError, match="--resume"):
        run.output_dir(_args(resume=str(tmp_path), out=str(tmp_path)), "ignored")


def test_a_refused_run_leaves_no_directory_and_logging_is_undone(tmp_path, capsys) -> None:
    out_dir = tmp_path / "outputs"
    code = run.main(["--config", str(ROOT / "simulations/configs/tiny.yaml"), "--set", f"run.out_dir={out_dir}",
                     "--set", "model.name=nobody/no-such-model"])
    assert code == 2 and "model.name='nobody/no-such-model'" in capsys.readouterr().err
    assert not any(out_dir.iterdir())  # the claimed timestamp directory was given back
    assert not [h for h in logging.getLogger("fedsec").handlers if isinstance(h, logging.FileHandler)]


def test_run_refuses_an_occupied_out_with_exit_code_2(tmp_path, capsys) -> None:
    (tmp_path / "summary.json").write_text("{}")
    assert run.main(["--config", str(ROOT / "simulations/configs/tiny.yaml"), "--out", str(tmp_path)]) == 2
    assert "holds an earlier run" in capsys.readouterr().err


def test_gpu_request_without_gpu_is_refused(tiny_cfg) -> None:
    from fedsec.resources import check_resources

    cfg = Config.load(ROOT / "simulations/configs/tiny.yaml", ["federation.num_gpus=0.25"])
    with pytest.raises(ConfigError, match=r"federation.num_gpus=0.25 .* no GPU"):
        check_resources(cfg, {"CPU": 2.0, "GPU": 0.0})
    check_resources(cfg, {"CPU": 2.0, "GPU": 1.0})  # a GPU node: accepted
    with pytest.raises(ConfigError, match="federation.num_gpus=2"):
        check_resources(Config.load(ROOT / "simulations/configs/tiny.yaml", ["federation.num_gpus=2"]),
                        {"CPU": 2.0, "GPU": 1.0})
    with pytest.raises(ConfigError, match="federation.num_cpus=4"):
        check_resources(Config.load(ROOT / "simulations/configs/tiny.yaml", ["federation.num_cpus=4"]),
                        {"CPU": 2.0, "GPU": 0.0})
    check_resources(tiny_cfg, {"CPU": 2.0, "GPU": 0.0})


def test_gpu_request_fails_fast_in_run_py(tmp_path, capsys, monkeypatch) -> None:
    from fedsec import resources

    monkeypatch.setattr(resources, "available", lambda address="": {"CPU": 2.0, "GPU": 0.0})  # a CPU machine
    code = run.main(["--config", str(ROOT / "simulations/configs/tiny.yaml"), "--out", str(tmp_path),
                     "--set", "federation.num_gpus=0.25"])
    assert code == 2 and "federation.num_gpus=0.25" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_unknown_model_name_without_hub_is_one_error(monkeypatch) -> None:
    from huggingface_hub import constants

    from fedsec.resources import check_pretrained

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"model.name='nobody/no-such-model' cannot be loaded.*\(cnn, minilm\)"):
        check_pretrained("nobody/no-such-model", ["minilm", "cnn"])
    check_pretrained(str(ROOT), ["cnn"])  # a local directory is left to from_pretrained


def test_a_size_the_split_cannot_give_is_logged(caplog) -> None:
    from fedsec.data import load_splits

    cfg = Config.load(ROOT / "simulations/configs/tiny.yaml", ["data.test_size=5000"])
    with caplog.at_level(logging.WARNING, logger="fedsec"):
        splits = load_splits(cfg.data, cfg.run.seed)
    assert f"data.test_size=5000 but the split has {len(splits.test)} rows" in caplog.text


def test_headline_metrics_reach_the_table_plot_and_final_line(tmp_path) -> None:
    import clients.attacks.data_poison  # noqa: F401  (declares asr)
    from fedsec.metrics import final_line, format_table, plot, shown

    rows = [{"round": 0, "accuracy": 0.1, "loss": 2.0, "bytes_up": 0},
            {"round": 1, "accuracy": 0.8, "loss": 0.5, "asr": 0.9, "bytes_up": 2_000_000}]
    assert [h.key for h in shown(rows)] == ["asr"]
    assert format_table(rows).splitlines()[0].split() == ["round", "accuracy", "loss", "asr", "bytes_up"]
    summary = {"final": rows[-1], "best_accuracy": 0.8, "best_round": 1}
    assert final_line(summary, rows) == "final accuracy 0.8000  best 0.8000 (round 1)  attack success rate 0.9000"
    assert final_line(summary, rows, "translation").startswith("final token accuracy")
    plot(rows, tmp_path / "metrics.png")
    assert (tmp_path / "metrics.png").stat().st_size > 1000


def test_plot_axes_are_labelled(tmp_path, monkeypatch) -> None:
    import matplotlib.figure

    from fedsec.metrics import plot

    labels: list[str] = []
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        labels.extend(ax.get_ylabel() for ax in fig.axes if ax.get_visible())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot([{"round": 0, "accuracy": 0.1, "loss": 2.0, "bytes_up": 0, "round_seconds": 0.0},
          {"round": 1, "accuracy": 0.5, "loss": 1.0, "bytes_up": 10**6, "round_seconds": 1.0}], tmp_path / "m.png")
    assert labels == ["accuracy", "loss", "MB up per round", "seconds per round"]


BAD = [
    ["foo.bar=1"], ["attack.neurotoxin_ratio=0.1"], ["strategy.name=fedavgx"], ["strategy.defenses=krum,foo"],
    ["federation.clients_per_round=50"], ["data.partitioner=random"], ["client.lr=abc"], ["client.lr=-1"],
    ["neurotoxin.ratoi=0.1"], ["attack.malicious_clients=0.1", "attack.model_poison=min_sum", "attack.rounds=a"],
]


@pytest.mark.parametrize("overrides", BAD, ids=lambda o: " ".join(o))
def test_precheck_gives_the_full_load_error(overrides) -> None:
    from fedsec.precheck import precheck

    path = ROOT / "simulations/configs/default.yaml"
    with pytest.raises(ConfigError) as full:
        Config.load(path, overrides)
    with pytest.raises(ConfigError) as early:
        precheck(path, overrides)
    assert str(early.value) == str(full.value)


def test_precheck_accepts_every_shipped_config() -> None:
    from fedsec.precheck import precheck

    for path in sorted((ROOT / "simulations" / "configs").rglob("*.yaml")):
        precheck(path)


def test_precheck_imports_neither_torch_nor_plugins(tmp_path) -> None:
    import subprocess

    code = ("import sys; from fedsec.precheck import precheck; from fedsec.config import ConfigError\n"
            "try: precheck(sys.argv[1], ['strategy.name=fedavgx'])\n"
            "except ConfigError as err: print(err)\n"
            "heavy = sorted(m for m in ('torch', 'flwr', 'ray', 'strategies', 'clients') if m in sys.modules)\n"
            "print('loaded:', heavy)")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "simulations/configs/default.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "strategy.name='fedavgx' is not known" in proc.stdout
    assert "loaded: []" in proc.stdout, proc.stdout + proc.stderr


def test_precheck_steps_aside_for_third_party_plugins(monkeypatch) -> None:
    from fedsec import precheck as module

    monkeypatch.setattr(module, "third_party_plugins", lambda: ["example"])
    module.precheck(ROOT / "simulations/configs/default.yaml", ["strategy.defenses=norm_outlier"])  # its name


def test_overwrite_replaces_every_file_of_the_earlier_run(tmp_path, capsys) -> None:
    argv = ["--config", str(ROOT / "simulations/configs/tiny.yaml"), "--out", str(tmp_path),
            "--set", "run.num_rounds=1", "--set", "federation.backend=inline"]
    assert run.main(argv) == 0
    assert (tmp_path / "run.log").is_file() and len(list(tmp_path.glob("events.out.tfevents*"))) == 1
    stale = tmp_path / "events.out.tfevents.earlier"  # an earlier run's events under another name
    stale.write_text("")
    (tmp_path / "run.log").write_text("EARLIER RUN\n")
    assert run.main(argv) == 2 and "holds an earlier run" in capsys.readouterr().err
    assert run.main([*argv, "--overwrite"]) == 0
    assert not stale.exists() and "EARLIER RUN" not in (tmp_path / "run.log").read_text()
    assert [r for r in (tmp_path / "metrics.jsonl").read_text().splitlines()][0].startswith('{"round": 0')
    assert not [h for h in logging.getLogger("fedsec").handlers if isinstance(h, logging.FileHandler)]
