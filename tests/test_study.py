"""Studies: the study file, paired statistics, TensorBoard events, resume after a kill, Ray clusters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedsec.config import ConfigError
from simulations.study import Study, paired_difference

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
TINY_STUDY = """
base: {base}
set: {{run.num_rounds: 3, data.test_size: 120}}
seeds: 2
axes:
  defense:
    fedavg: {{}}
    median: {{strategy.name: median}}
baseline: {{defense: fedavg}}
metrics: [accuracy, {{key: loss, reduce: min}}]
"""


def _study_file(tmp_path: Path, text: str = TINY_STUDY) -> Path:
    path = tmp_path / "tiny_study.yaml"
    path.write_text(text.format(base=ROOT / "simulations" / "configs" / "tiny.yaml"))
    return path


# ------------------------------------------------------------------ statistics
def test_paired_statistics_recover_a_known_difference() -> None:
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 1.0, 40)  # what runs with the same seed share: large
    a, b = 0.7 + seed_effect + rng.normal(0, 0.02, 40), 0.6 + seed_effect + rng.normal(0, 0.02, 40)
    mean, low, high, p_t, p_w = paired_difference(list(a), list(b))
    assert low < 0.1 < high and abs(mean - 0.1) < 0.02
    assert p_t < 1e-6 and p_w < 1e-6


def test_paired_statistics_cover_zero_without_a_difference() -> None:
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 1.0, 30)
    a, b = seed_effect + rng.normal(0, 0.05, 30), seed_effect + rng.normal(0, 0.05, 30)
    mean, low, high, p_t, p_w = paired_difference(list(a), list(b))
    assert low <= 0 <= high and p_t > 0.05 and p_w > 0.05


def test_pairing_by_seed_is_what_makes_the_difference_visible() -> None:
    """The same data unpaired (a two-sample t-test) drown the difference in the seed spread."""
    from scipy import stats

    rng = np.random.default_rng(2)
    seed_effect = rng.normal(0, 0.1, 5)
    a, b = 0.72 + seed_effect + rng.normal(0, 0.005, 5), 0.70 + seed_effect + rng.normal(0, 0.005, 5)
    _, low, high, p_t, _ = paired_difference(list(a), list(b))
    assert low > 0 and p_t < 0.01
    assert stats.ttest_ind(a, b).pvalue > 0.5


def test_metric_reducers_over_the_rounds() -> None:
    from simulations.study import Metric

    rows = [{"round": 0, "asr": 0.0}, {"round": 1, "asr": 0.2}, {"round": 2, "asr": 0.9},
            {"round": 3, "asr": 0.5}, {"round": 4, "accuracy": 0.7}]
    assert Metric("asr").of(rows) == 0.5 and Metric("asr", "best").of(rows) == 0.9
    assert Metric("asr", "min").of(rows) == 0.2 and Metric("asr", "mean_last", 2).of(rows) == pytest.approx(0.7)
    assert Metric("asr", "at_round", 2).of(rows) == 0.9 and Metric("asr", "at_round", 2).name == "asr_at_round2"
    assert np.isnan(Metric("asr", "at_round", 4).of(rows)) and np.isnan(Metric("loss").of(rows))
    assert Metric("asr", "at_round", 0).of(rows) == 0.0  # the initial model, left out by the other reducers
    assert Metric("asr", "min").of([{"round": 0, "asr": 0.0}, {"round": 1, "asr": 0.3}]) == 0.3


def test_contrasts_compare_two_metrics_of_the_same_runs(tmp_path) -> None:
    """``contrasts: [[a, b]]`` pairs metric a with metric b run by run, within each cell: a known shift
    is recovered in the cell that has it, and a cell without one covers 0."""
    import pandas as pd

    from simulations.study import label, paired_comparison, summary_markdown

    study = Study.load(_study_file(tmp_path, TINY_STUDY.replace(
        "metrics: [", "contrasts: [[loss_min, accuracy]]\nmetrics: [")), validate=False)
    assert study.contrasts == [("loss_min", "accuracy")]
    rng = np.random.default_rng(0)
    rows = []
    for cell, shift in ((study.cells()[0], 0.0), (study.cells()[1], 0.2)):
        for seed in range(6):
            base = rng.normal(0.5, 0.1)
            rows.append({"cell": label(cell), "seed": seed, "defense": cell["defense"], "accuracy": base,
                         "loss_min": base + shift + rng.normal(0, 0.01)})
    paired = [p for p in paired_comparison(study, pd.DataFrame(rows)) if p.baseline == "same runs"]
    by_cell = {p.cell: p for p in paired}
    assert by_cell["defense=median"].low < 0.2 < by_cell["defense=median"].high
    assert by_cell["defense=median"].verdict == "higher" and by_cell["defense=median"].n == 6
    assert by_cell["defense=fedavg"].verdict == "not distinguishable"
    assert "| defense=median | same runs | loss_min − accuracy | 6 |" in summary_markdown(
        study, pd.DataFrame(rows), paired)
    for contrasts, message in (("[[asr, accuracy]]", "contrasts \\[asr, accuracy\\]: 'asr' is not a reported metric"),
                               ("[[accuracy, accuracy]]", "a metric against itself"),
                               ("{{}}", "'contrasts' is a list of \\[metric, metric\\] pairs"),
                               ("[[accuracy]]", "'contrasts' is a list of \\[metric, metric\\] pairs")):
        with pytest.raises(ConfigError, match=message):
            Study.load(_study_file(tmp_path, TINY_STUDY.replace(
                "metrics: [", f"contrasts: {contrasts}\nmetrics: [")), validate=False)


# ------------------------------------------------------------------ the study file
def test_study_file_refuses_unknown_keys_naming_them(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown study key.*seed_list"):
        Study.load(_study_file(tmp_path, TINY_STUDY + "seed_list: [1]\n"))
    with pytest.raises(ConfigError, match="unknown metric key"):
        Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", "reduce: min, window: 3")))
    with pytest.raises(ConfigError, match="at_round needs k"):
        Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", "reduce: at_round")))
    with pytest.raises(ConfigError, match="at_round k=4 is not a round of cell defense=fedavg"):
        Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", "reduce: at_round, k: 4")))
    assert Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", "reduce: at_round, k: 0"))
                      ).metrics[1].name == "loss_at_round0"  # round 0: the initial model
    for bad in ("-1", "'2'", "1.5", "true"):
        with pytest.raises(ConfigError, match="metrics\\[loss\\].k=.*an integer >= 0"):
            Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", f"reduce: at_round, k: {bad}")))
    with pytest.raises(ConfigError, match="mean_last averages the last k >= 1"):
        Study.load(_study_file(tmp_path, TINY_STUDY.replace("reduce: min", "reduce: mean_last, k: 0")))
    with pytest.raises(ConfigError, match="baseline.defense=krum is not a cell"):
        Study.load(_study_file(tmp_path, TINY_STUDY.replace("{{defense: fedavg}}", "{{defense: krum}}")))


def test_the_studies_guide_example_is_a_valid_study(tmp_path) -> None:
    import re

    guide = (ROOT / "docs" / "guide" / "studies.md").read_text()
    example = re.search(r"```yaml\n(base: .*?)```", guide, re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(example.replace("base: ../configs/", f"base: {ROOT / 'simulations' / 'configs'}/"))
    study = Study.load(path)
    assert study.contrasts == [("asr", "asr_at_round0")] and len(study.cells()) == 4


def test_a_bad_cell_override_is_refused_before_any_run(tmp_path) -> None:
    text = TINY_STUDY.replace("{{strategy.name: median}}", "{{strategy.nmae: median}}")
    with pytest.raises(ConfigError, match=r"cell defense=median: unknown key 'strategy.nmae'"):
        Study.load(_study_file(tmp_path, text))


def test_cells_and_baselines(tmp_path) -> None:
    study = Study.load(_study_file(tmp_path))
    assert study.cells() == [{"defense": "fedavg"}, {"defense": "median"}] and study.seeds == [0, 1]
    assert study.baselines_of({"defense": "median"}) == [{"defense": "fedavg"}]
    assert study.baselines_of({"defense": "fedavg"}) == []
    cfg = study.config({"defense": "median"}, 1, tmp_path / "r")
    assert (cfg.strategy.name, cfg.run.seed, cfg.run.num_rounds, cfg.federation.backend) == ("median", 1, 3, "inline")


# ------------------------------------------------------------------ tracking
@pytest.mark.slow
def test_tensorboard_events_hold_every_per_round_metric(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fedsec.app.inline import run_inline
    from fedsec.config import Config

    cfg = Config.load(ROOT / "simulations" / "configs" / "tiny.yaml",
                      ["run.num_rounds=2", "federation.backend=inline", f"run.out_dir={tmp_path}"])
    run_inline(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    numeric = {k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric - {"round"} <= tags and {"accuracy", "loss", "bytes_up"} <= tags
    accuracy = [(e.step, e.value) for e in events.Scalars("accuracy")]
    assert accuracy == [(r["round"], pytest.approx(r["accuracy"])) for r in rows]


# ------------------------------------------------------------------ execution
def _study(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "simulations" / "study.py"), *args], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


@pytest.mark.slow
def test_a_killed_study_resumes_without_repeating_completed_runs(tmp_path) -> None:
    study = _study_file(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _study([str(study), "--out", str(whole), "--max-concurrent", "1"])
    assert proc.wait(timeout=900) == 0, proc.stdout.read()[-3000:]

    victim = _study([str(study), "--out", str(killed), "--max-concurrent", "1"])
    runs = killed / "runs"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once one run is complete and the next one is under way
        done = list(runs.glob("*/*/summary.json")) if runs.is_dir() else []
        started = list(runs.glob("*/*/checkpoint.pkl")) if runs.is_dir() else []
        if done and len(started) > len(done):
            break
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    completed = {p.parent: p.stat().st_mtime_ns for p in runs.glob("*/*/summary.json")}
    assert 1 <= len(completed) < 4
    refused = _study([str(study), "--out", str(killed)])  # without --resume: refused, nothing touched
    assert refused.wait(timeout=300) == 2 and "--resume" in refused.stdout.read()

    resumed = _study([str(study), "--out", str(killed), "--resume", "--max-concurrent", "1"])
    output = resumed.stdout.read()
    assert resumed.wait(timeout=900) == 0, output[-3000:]
    assert f"{len(completed)} already complete" in output
    for directory, mtime in completed.items():  # no completed run was repeated
        assert (directory / "summary.json").stat().st_mtime_ns == mtime
    assert (killed / "results.csv").read_text() == (whole / "results.csv").read_text()
    assert "| defense=median | defense=fedavg | accuracy | 2 |" in (killed / "summary.md").read_text()


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path) -> None:
    text = TINY_STUDY.replace("{{strategy.name: median}}", "{{data.name: csv, data.path: {missing}}}")
    study = tmp_path / "failing.yaml"
    study.write_text(text.format(base=ROOT / "simulations" / "configs" / "tiny.yaml", missing=tmp_path / "no.csv"))
    proc = _study([str(study), "--out", str(tmp_path / "out")])
    output = proc.stdout.read()
    assert proc.wait(timeout=900) == 1, output[-3000:]
    assert "defense=median seed 0 FAILED" in output and "defense=median seed 1 FAILED" in output
    assert len(list((tmp_path / "out" / "runs").glob("defense=fedavg/*/summary.json"))) == 2
    assert "| defense=fedavg | 2 |" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.slow
def test_a_study_runs_on_both_nodes_of_a_ray_cluster(tmp_path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        proc = _study([str(_study_file(tmp_path)), "--out", str(tmp_path / "out"), "--ray-address",
                       cluster.address])
        output = proc.stdout.read()
        assert proc.wait(timeout=900) == 0, output[-3000:]
    finally:
        cluster.shutdown()
    nodes = [p.read_text() for p in (tmp_path / "out" / "runs").glob("*/*/node.txt")]
    assert len(nodes) == 4 and len(set(nodes)) == 2  # 4 runs, on both nodes


@pytest.mark.parametrize("path", sorted((ROOT / "simulations" / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_is_valid(path: Path) -> None:
    """Every cell of every shipped study (GPU variants included) is a valid experiment; the header says why."""
    study = Study.load(path)
    assert study.cells() and study.metrics
    assert path.read_text().startswith("#"), "a study file opens with a header that explains its settings"
