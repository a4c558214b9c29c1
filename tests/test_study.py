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


def test_per_round_rates_and_variance_split_are_the_textbook_formulas() -> None:
    """The Wilson score interval and the one-way ANOVA split, against the formulas computed here by hand."""
    from scipy import stats

    from simulations.study import variance_split, wilson_interval

    hits, n, z = 35, 40, stats.norm.ppf(0.975)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(hits, n) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert wilson_interval(35, 40) == pytest.approx((0.739, 0.945), abs=5e-4)  # evidence_psim_probe_seed's screens
    assert wilson_interval(0, 5)[0] == 0.0 and all(np.isnan(wilson_interval(0, 0)))
    # seed 0: 1, 2, 3 (mean 2); seed 1: 5, 6, 7 (mean 6); grand mean 4: SS between 3*4 + 3*4 = 24 of 28 in all,
    # F = (24 / 1) / (4 / 4) = 24 on (1, 4) degrees of freedom
    between, p_value = variance_split([1, 2, 3, 5, 6, 7], [0, 0, 0, 1, 1, 1])
    assert between == pytest.approx(24 / 28) and p_value == pytest.approx(stats.f.sf(24, 1, 4))
    assert variance_split([1, 1, 3, 3], [0, 1, 0, 1])[0] == 0.0  # the seeds' means equal: all within seeds
    assert all(np.isnan(variance_split([2, 2, 2], [0, 1, 2])))  # no spread to split
    assert variance_split([1, 1, 3, 3], [0, 0, 1, 1])[0] == 1.0 and np.isnan(variance_split([1, 1, 3, 3],
                                                                                           [0, 0, 1, 1])[1])


def _fake_run(study: Study, out: Path, cell: dict[str, str], seed: int, rows: list[dict]) -> Path:
    """A completed run as the runner leaves it: its config.yaml, metrics.jsonl and summary.json."""
    from simulations.study import run_dir

    directory = run_dir(out, cell, seed)
    directory.mkdir(parents=True)
    study.config(cell, seed, directory).dump(directory / "config.yaml")
    (directory / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (directory / "summary.json").write_text("{}")
    return directory


def test_per_round_figures_pool_the_rounds_of_every_run(tmp_path) -> None:
    """``per_round`` entries count each (run, round) once, only the rounds asked for, per cell and over all;
    a NaN is no observation, a cell without the key is left out, an unfinished run too."""
    from simulations.study import per_round_frame, results_frame, summary_markdown, variance_split

    text = TINY_STUDY.replace("median: {{strategy.name: median}}", "median: {{strategy.name: median}}\n"
                              "    krum: {{strategy.name: trimmed_mean}}")
    study = Study.load(_study_file(tmp_path, text + "per_round:\n  - {{key: asr, at_least: 0.5}}\n"
                                   "  - {{key: asr, rounds: [0], at_most: 0.1}}\n  - {{key: asr, at_most: 0.2}}\n"),
                       validate=False)
    asr = {("fedavg", 0): [0.9, 0.2, 0.6, 0.7], ("fedavg", 1): [0.05, 0.4, 0.45, 0.5],
           ("median", 0): [0.9, 0.1, float("nan"), 0.2], ("median", 1): [0.05, 0.0, 0.3, 0.95]}
    out = tmp_path / "out"
    for (cell, seed), values in asr.items():
        _fake_run(study, out, {"defense": cell}, seed, [{"round": r, "asr": v, "accuracy": 0.5}
                                                        for r, v in enumerate(values)])
    _fake_run(study, out, {"defense": "krum"}, 0, [{"round": r, "accuracy": 0.5} for r in range(4)])  # no asr
    (out / "runs" / "defense=median" / "seed1" / "summary.json").unlink()  # an unfinished run
    frame = per_round_frame(study, out)
    assert len(frame) == 11 and set(frame["key"]) == {"asr"} and frame["value"].notna().all()
    markdown = summary_markdown(study, results_frame(study, out), [], frame)
    assert "| asr (all rounds) | ≥ 0.5 | defense=fedavg | 8 | 4 | 0.500 |" in markdown
    assert "| asr (all rounds) | ≥ 0.5 | defense=median | 3 | 1 | 0.333 |" in markdown
    assert "| asr (all rounds) | ≥ 0.5 | all cells | 11 | 5 | 0.455 |" in markdown
    assert "| asr (round 0) | ≤ 0.1 | defense=fedavg | 2 | 1 | 0.500 |" in markdown
    assert "defense=krum" not in markdown.split("Rates over rounds")[1]  # its rows have no asr
    # the variance split of all rounds: seed 0 = fedavg's 4 values and median's 3, seed 1 = fedavg's 4
    values = [0.9, 0.2, 0.6, 0.7, 0.9, 0.1, 0.2, 0.05, 0.4, 0.45, 0.5]
    x, s0, s1 = np.array(values), np.array(values[:7]), np.array(values[7:])
    between = (7 * (s0.mean() - x.mean()) ** 2 + 4 * (s1.mean() - x.mean()) ** 2) / ((x - x.mean()) ** 2).sum()
    assert variance_split(values, [0] * 7 + [1] * 4)[0] == pytest.approx(between)
    assert f"| asr (all rounds) | 11 | 2 | {between:.3f} | {1 - between:.3f} |" in markdown
    assert markdown.count("| asr (all rounds) | 11 | 2 |") == 1  # one variance row per key and rounds
    assert "| asr (round 0) | 3 | 2 | – | – | – (all values equal) |" not in markdown
    assert "| asr (round 0) | 3 | 2 | 1.000 | 0.000 | – |" in markdown  # 0.9, 0.9 | 0.05: no spread within


def test_per_round_entries_are_checked_naming_the_key(tmp_path) -> None:
    def load(entry: str) -> Study:
        return Study.load(_study_file(tmp_path, TINY_STUDY + f"per_round:\n  - {entry}\n"))

    assert load("{{key: asr, rounds: [1, 0, 1], at_least: 0.5}}").per_round[0].rounds == (0, 1)
    assert load("asr").per_round[0].name == "asr (all rounds)" and not load("asr").per_round[0].threshold
    for entry, message in (("{{key: asr, at_least: 0.5, at_most: 0.1}}", "per_round\\[asr\\]: give at_least or"),
                           ("{{key: asr, rounds: [4]}}", "per_round\\[asr\\].rounds \\[4\\] are not rounds of cell"),
                           ("{{key: asr, rounds: []}}", "per_round\\[asr\\].rounds=\\[\\]: a non-empty list"),
                           ("{{key: asr, rounds: [-1]}}", "per_round\\[asr\\].rounds=\\[-1\\]"),
                           ("{{key: asr, at_least: high}}", "per_round\\[asr\\].at_least='high': a finite number"),
                           ("{{key: asr, threshold: 0.5}}", "per_round\\[asr\\]: unknown key\\(s\\) threshold"),
                           ("{{rounds: [0]}}", "each per_round entry is a row key or")):
        with pytest.raises(ConfigError, match=message):
            load(entry)


def test_report_rewrites_the_tables_and_refuses_a_study_that_changes_the_runs(tmp_path, capsys) -> None:
    """``--report`` runs nothing; a reporting change (a metric, a per_round entry, more seeds) keeps the runs,
    anything that gives a run already there another experiment (set, resources, a cell removed and re-added
    with other overrides, an edited base config) is refused, naming the run and the key."""
    import shutil

    from simulations.study import changed_runs, main

    base = tmp_path / "base.yaml"
    shutil.copy(ROOT / "simulations" / "configs" / "tiny.yaml", base)
    path, out = tmp_path / "study.yaml", tmp_path / "out"
    path.write_text(TINY_STUDY.format(base=base))
    assert main([str(path), "--out", str(out), "--report"]) == 2 and "holds no study" in capsys.readouterr().err
    study = Study.load(path)
    out.mkdir()
    (out / "study.yaml").write_text(path.read_text())
    for cell in study.cells():
        _fake_run(study, out, cell, 0, [{"round": r, "accuracy": 0.1 * r, "loss": 1.0} for r in range(4)])
    path.write_text(path.read_text() + "per_round:\n  - {key: accuracy, at_least: 0.2}\n")
    assert main([str(path), "--out", str(out), "--report"]) == 0
    captured = capsys.readouterr()
    assert "2 runs not complete" in captured.err and not (out / "tune").exists()  # nothing ran
    assert "| accuracy (all rounds) | ≥ 0.2 | all cells | 8 | 4 | 0.500 |" in (out / "summary.md").read_text()
    assert (out / "study.yaml").read_text() == path.read_text() and (out / "per_round.csv").is_file()
    assert main([str(path), "--out", str(out)]) == 2 and "--resume" in capsys.readouterr().err
    reporting = path.read_text()

    def changed(text: str) -> list[str]:
        path.write_text(text)
        return changed_runs(Study.load(path), out)

    assert changed(reporting.replace("seeds: 2", "seeds: 5").replace("metrics: [accuracy, ", "metrics: [")) == []
    assert changed(reporting.replace("num_rounds: 3", "num_rounds: 2")) == [
        "defense=fedavg seed 0: run.num_rounds 3 -> 2", "defense=median seed 0: run.num_rounds 3 -> 2"]
    assert changed(reporting + "resources: {num_cpus: 2}\n") == [
        f"defense={c} seed 0: federation.num_cpus 1.0 -> 2.0" for c in ("fedavg", "median")]
    removed = reporting.replace("    median: {strategy.name: median}\n", "")
    assert changed(removed) == []  # the median runs are left out of the tables, not compared
    path.write_text(removed)
    assert main([str(path), "--out", str(out), "--report"]) == 0 and "defense=median" not in (
        out / "summary.md").read_text()
    capsys.readouterr()
    assert changed(reporting.replace("{strategy.name: median}", "{strategy.name: trimmed_mean}")) == [
        "defense=median seed 0: strategy.name 'median' -> 'trimmed_mean'"]  # re-added with other overrides
    assert main([str(path), "--out", str(out), "--report"]) == 2
    err = capsys.readouterr().err
    assert "gives 1 runs in" in err and "defense=median seed 0: strategy.name 'median' -> 'trimmed_mean'" in err
    path.write_text(reporting)
    base.write_text(base.read_text().replace("lr: 0.05", "lr: 0.01"))  # the base config edited after the runs
    assert changed(reporting) == [f"defense={c} seed 0: client.lr 0.05 -> 0.01" for c in ("fedavg", "median")]


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
    assert [(e.key, e.rounds, e.threshold) for e in study.per_round] == [("asr", None, "≥ 0.5"), ("asr", (0,), "≤ 0.1")]


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
    assert "round 3/3" in (tmp_path / "out" / "runs" / "defense=fedavg" / "seed0" / "run.log").read_text()
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
