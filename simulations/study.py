"""Run a study: a grid of experiments (named cells x seeds) as parallel Ray Tune trials, with paired statistics.

    python simulations/study.py simulations/studies/defense_matrix.yaml                       # all cores here
    python simulations/study.py simulations/studies/defense_matrix.yaml --ray-address auto    # a Ray cluster
    python simulations/study.py simulations/studies/defense_matrix.yaml --resume              # after a kill
    python simulations/study.py simulations/studies/defense_matrix.yaml --check               # validate only
    python simulations/study.py simulations/studies/defense_matrix.yaml --report              # tables only
    tensorboard --logdir outputs/studies/defense_matrix

A study file (YAML) names a base experiment config and overrides, axes of named
cells (each cell a set of ``section.key`` overrides), the seeds, the baseline
cells, the reported metrics (each a row key reduced over the rounds, e.g. its value
at round k, round 0 being the initial model), optional contrasts (two metrics of the
same runs compared seed by seed), optional per-round figures (a row key's values
pooled over rounds: how often they reach a threshold, and how their variance splits
between seeds and within them; :class:`PerRound`) and each run's resources
(:class:`Study`; unknown keys are refused, naming the key). Every (cell combination, seed) is one run of the
experiment on the inline backend inside one Ray Tune trial, written to
``OUT/runs/<cell>/seed<k>/`` (config, metrics.jsonl, summary, plot, TensorBoard
events, checkpoint, run.log). Runs with the same seed share partition, client sampling and
initialisation, so each cell is compared with its baseline *per seed*
(:func:`paired_comparison`). Outputs: ``results.csv`` (one row per run),
``summary.md`` (means, the paired table, the per-round figures), ``per_round.csv``
(the per-round observations), ``heatmap_<metric>.png`` for two-axis
studies and ``curves_<metric>.png`` (mean over seeds with a min-max band).

A completed run (its ``summary.json`` exists) is never run again; ``--resume``
continues a study whose process was killed: interrupted runs continue from their
last round's checkpoint; the study file may then differ from the first invocation's
in what it reports and in added seeds or cells, never in the experiment of a run
already there (each run's ``config.yaml`` is compared with the config the file gives
it now: :func:`changed_runs`). ``--report`` runs nothing and rewrites the tables
(results.csv, per_round.csv, summary.md, plots) and the copy ``study.yaml`` from
the completed runs. A failed run is reported with its cell, seed and error; the others
go on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fedsec.config import Config, ConfigError, parse_yaml  # noqa: E402

REDUCERS = ("final", "best", "min", "mean_last", "at_round")
RESERVED_COLUMNS = ("cell", "seed", "round", "key", "value")


@dataclass
class Metric:
    """A reported metric: ``key`` of the per-round rows reduced over rounds by ``reduce``
    (``final`` round, ``best`` = max, ``min``, ``mean_last`` = mean of the last ``k`` rounds,
    ``at_round`` = the value of round ``k``, e.g. the last round of an attack; ``k`` = 0 is the
    evaluation of the initial model, which the other reducers leave out)."""

    key: str
    reduce: str = "final"
    k: int = 3

    @property
    def name(self) -> str:
        if self.reduce == "final":
            return self.key
        return f"{self.key}_{self.reduce}{self.k if self.reduce in ('mean_last', 'at_round') else ''}"

    def of(self, rows: list[dict]) -> float:
        rows = [r for r in rows if isinstance(r.get(self.key), (int, float))]
        if self.reduce == "at_round":
            return next((float(r[self.key]) for r in rows if r["round"] == self.k), math.nan)
        values = [float(r[self.key]) for r in rows if r.get("round", 0) > 0]
        if not values:
            return math.nan
        if self.reduce == "final":
            return values[-1]
        if self.reduce == "best":
            return max(values)
        if self.reduce == "min":
            return min(values)
        return sum(values[-self.k:]) / len(values[-self.k:])


@dataclass
class PerRound:
    """A row key's per-round values pooled over rounds and runs, each round of each run one observation (e.g.
    one screen of an inference-time defense; round 0 is the initial model), restricted to ``rounds`` (default:
    every round that has the key). Two figures a per-run metric cannot give:

    - **Rate** (with ``at_least`` or ``at_most``): per cell and over all cells, the count k of the n
      observations with value >= ``at_least`` (<= ``at_most``), k / n and its Wilson score 95 % interval
      (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``), e.g. how often a screen succeeds.
    - **Variance split** (one-way ANOVA by seed, over every cell's observations): the share of the total sum
      of squares between the seeds' means, sum_s n_s (mean_s - mean)^2 / sum (x - mean)^2, i.e. what the seed
      fixes (partition, sampling, initialisation, a released model); the rest is within seeds (what the
      cells and the rounds change); with the F-test p-value of a seed effect (``scipy.stats.f_oneway``)."""

    key: str
    rounds: tuple[int, ...] | None = None
    at_least: float | None = None
    at_most: float | None = None

    @property
    def name(self) -> str:
        if self.rounds is None:
            return f"{self.key} (all rounds)"
        return f"{self.key} (round{'s' if len(self.rounds) > 1 else ''} {', '.join(map(str, self.rounds))})"

    @property
    def threshold(self) -> str:
        """``≥ 0.5``, ``≤ 0.1``, or empty without a rate."""
        if self.at_least is not None:
            return f"≥ {self.at_least:g}"
        return "" if self.at_most is None else f"≤ {self.at_most:g}"

    def takes(self, round_: int) -> bool:
        return self.rounds is None or round_ in self.rounds

    def hit(self, value: float) -> bool:
        return value >= self.at_least if self.at_least is not None else value <= self.at_most


@dataclass
class Resources:
    """What one run (one Tune trial) reserves; the experiment's clients run inline inside it."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class Study:
    """A study file, validated."""

    name: str
    base: Path
    axes: dict[str, dict[str, dict[str, Any]]]
    seeds: list[int]
    metrics: list[Metric]
    baselines: list[dict[str, str]] = field(default_factory=list)
    contrasts: list[tuple[str, str]] = field(default_factory=list)
    per_round: list[PerRound] = field(default_factory=list)
    set: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path, validate: bool = True) -> Study:
        """Read and check a study file; ``validate`` also builds every cell's experiment config."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study file not found: {path}")
        source = path.read_text()
        data = parse_yaml(source) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a study file is a mapping of keys")
        allowed = {"name", "base", "set", "axes", "seeds", "baseline", "contrasts", "metrics", "per_round",
                   "resources"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{path}: unknown study key(s) {', '.join(unknown)}; "
                              f"keys are {', '.join(sorted(allowed))}")
        for key in ("base", "axes", "metrics"):
            if key not in data:
                raise ConfigError(f"{path}: the study key '{key}' is required")
        axes = data["axes"]
        if not isinstance(axes, dict) or not axes or not all(isinstance(c, dict) and c for c in axes.values()):
            raise ConfigError(f"{path}: 'axes' maps each axis name to its cells (name: {{section.key: value}})")
        for axis, cells in axes.items():
            if axis in RESERVED_COLUMNS:
                raise ConfigError(f"{path}: axes.{axis}: an axis may not be named {', '.join(RESERVED_COLUMNS)} "
                                  "(columns of the result tables)")
            for cell, overrides in cells.items():
                if overrides is not None and not isinstance(overrides, dict):
                    raise ConfigError(f"{path}: axes.{axis}.{cell} must be a mapping of section.key overrides")
                if "__" in str(cell) or "=" in str(cell) or "/" in str(cell):
                    raise ConfigError(f"{path}: axes.{axis}.{cell}: a cell name may not contain '__', '=' or '/'")
        seeds = data.get("seeds", 3)
        seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{path}: 'seeds' is a count or a list of integers")
        baselines = data.get("baseline") or []
        baselines = [baselines] if isinstance(baselines, dict) else baselines
        for baseline in baselines:
            if not isinstance(baseline, dict):
                raise ConfigError(f"{path}: 'baseline' is {{axis: cell}} or a list of them")
            for axis, cell in baseline.items():
                if axis not in axes or cell not in axes[axis]:
                    raise ConfigError(f"{path}: baseline.{axis}={cell} is not a cell of the axes")
        metrics = [_metric(path, m) for m in data["metrics"]]
        contrasts = _contrasts(path, data.get("contrasts", []), [m.name for m in metrics])
        per_round = _per_round(path, data.get("per_round", []))
        resources = data.get("resources") or {}
        unknown = sorted(set(resources) - {f.name for f in dataclasses.fields(Resources)})
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) resources.{', resources.'.join(unknown)}")
        study = cls(name=str(data.get("name") or path.stem), base=(path.parent / str(data["base"])).resolve(),
                    axes={a: {str(c): dict(o or {}) for c, o in cells.items()} for a, cells in axes.items()},
                    seeds=seeds, metrics=metrics,
                    baselines=[{str(a): str(c) for a, c in b.items()} for b in baselines], contrasts=contrasts,
                    per_round=per_round, set=dict(data.get("set") or {}), resources=Resources(**resources),
                    source=source)
        for cell in study.cells() if validate else []:  # every cell must be a valid experiment, before any run
            rounds = study.config(cell, study.seeds[0], Path("not-written")).run.num_rounds
            for metric in study.metrics:
                if metric.reduce == "at_round" and not 0 <= metric.k <= rounds:
                    raise ConfigError(f"{path}: metrics[{metric.key}] at_round k={metric.k} is not a round of cell "
                                      f"{label(cell)} (run.num_rounds={rounds})")
            for entry in study.per_round:
                outside = [r for r in entry.rounds or () if not 0 <= r <= rounds]
                if outside:
                    raise ConfigError(f"{path}: per_round[{entry.key}].rounds {outside} are not rounds of cell "
                                      f"{label(cell)} (run.num_rounds={rounds})")
        return study

    def cells(self) -> list[dict[str, str]]:
        """Every combination of one cell per axis, in file order."""
        return [dict(zip(self.axes, combo, strict=True)) for combo in itertools.product(*self.axes.values())]

    def config(self, cell: dict[str, str], seed: int, out: Path) -> Config:
        """The experiment of ``cell`` and ``seed``, written to ``out``, on the inline backend."""
        overrides = {**self.set}
        for axis, name in cell.items():
            overrides.update(self.axes[axis][name])
        items = [f"{k}={_text(v)}" for k, v in overrides.items()]
        items += [f"run.seed={seed}", f"run.out_dir={out}", "federation.backend=inline",
                  f"federation.num_cpus={self.resources.num_cpus}", f"federation.num_gpus={self.resources.num_gpus}"]
        try:
            return Config.load(self.base, items)
        except ConfigError as err:
            raise ConfigError(f"study '{self.name}', cell {label(cell)}: {err}") from err

    def baselines_of(self, cell: dict[str, str]) -> list[dict[str, str]]:
        """The cells ``cell`` is compared with: each baseline with the other axes as in ``cell``."""
        others = [{**cell, **baseline} for baseline in self.baselines]
        return [o for i, o in enumerate(others) if o != cell and o not in others[:i]]


def _metric(path: Path, spec: Any) -> Metric:
    if isinstance(spec, str):
        spec = {"key": spec}
    if not isinstance(spec, dict) or "key" not in spec:
        raise ConfigError(f"{path}: each metric is a row key or "
                          "{key: ..., reduce: final|best|min|mean_last|at_round, k: 3}")
    unknown = sorted(set(spec) - {"key", "reduce", "k"})
    if unknown:
        raise ConfigError(f"{path}: unknown metric key(s) {', '.join(unknown)} in {spec}")
    if not isinstance(spec.get("k", 0), int) or isinstance(spec.get("k"), bool) or spec.get("k", 0) < 0:
        raise ConfigError(f"{path}: metrics[{spec['key']}].k={spec['k']!r}: a round count or round, an integer >= 0")
    metric = Metric(**spec)
    if metric.reduce not in REDUCERS:
        raise ConfigError(f"{path}: metrics[{metric.key}].reduce={metric.reduce}: choose one of {', '.join(REDUCERS)}")
    if metric.reduce == "at_round" and "k" not in spec:
        raise ConfigError(f"{path}: metrics[{metric.key}].reduce=at_round needs k, the round")
    if metric.reduce == "mean_last" and metric.k < 1:
        raise ConfigError(f"{path}: metrics[{metric.key}].k=0: mean_last averages the last k >= 1 rounds")
    return metric


def _contrasts(path: Path, spec: Any, names: list[str]) -> list[tuple[str, str]]:
    """``contrasts: [[a, b], ...]``: pairs of reported metric names compared within each run (a - b)."""
    if not isinstance(spec, list) or not all(isinstance(c, list) and len(c) == 2 for c in spec):
        raise ConfigError(f"{path}: 'contrasts' is a list of [metric, metric] pairs, e.g. [[psim_asr, asr]]")
    for a, b in spec:
        if a == b:
            raise ConfigError(f"{path}: contrasts [{a}, {b}]: a metric against itself is always 0")
        for name in (a, b):
            if name not in names:
                raise ConfigError(f"{path}: contrasts [{a}, {b}]: '{name}' is not a reported metric "
                                  f"({', '.join(names)})")
    return [(str(a), str(b)) for a, b in spec]


def _per_round(path: Path, spec: Any) -> list[PerRound]:
    """``per_round: [{key: ..., rounds: [0, 1], at_least: 0.5}, ...]`` (:class:`PerRound`)."""
    if not isinstance(spec, list):
        raise ConfigError(f"{path}: 'per_round' is a list of {{key: ..., rounds: [...], at_least | at_most: x}}")
    entries = []
    for item in spec:
        item = {"key": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ConfigError(f"{path}: each per_round entry is a row key or {{key: ..., rounds: [...], "
                              f"at_least | at_most: x}}, not {item!r}")
        where = f"{path}: per_round[{item['key']}]"
        unknown = sorted(set(item) - {"key", "rounds", "at_least", "at_most"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; keys are at_least, at_most, key, rounds")
        rounds = item.get("rounds")
        if rounds is not None and (not isinstance(rounds, list) or not rounds or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rounds)):
            raise ConfigError(f"{where}.rounds={rounds!r}: a non-empty list of rounds (integers >= 0)")
        for bound in ("at_least", "at_most"):
            value = item.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"{where}.{bound}={value!r}: a finite number")
        if item.get("at_least") is not None and item.get("at_most") is not None:
            raise ConfigError(f"{where}: give at_least or at_most, not both")
        entries.append(PerRound(item["key"], None if rounds is None else tuple(sorted(set(rounds))),
                                item.get("at_least"), item.get("at_most")))
    return entries


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def label(cell: dict[str, str]) -> str:
    """``attack=badnet__defense=krum``: the cell's directory name."""
    return "__".join(f"{axis}={name}" for axis, name in cell.items())


def run_dir(out: Path, cell: dict[str, str], seed: int) -> Path:
    return out / "runs" / label(cell) / f"seed{seed}"


# ------------------------------------------------------------------ execution
def run_one(study_file: str, out: str, cell: dict[str, str], seed: int) -> dict[str, Any]:
    """One run, resumed from its checkpoint when an earlier process was killed mid-way; fedsec's log lines
    (rounds, failed clients, what methods log) go to the run's ``run.log``."""
    import ray
    import torch

    from fedsec.app.inline import run_inline

    study = Study.load(study_file, validate=False)  # validated by the command before any trial started
    directory = run_dir(Path(out), cell, seed)
    torch.set_num_threads(max(1, int(study.resources.num_cpus)))
    resume = (directory / "checkpoint.pkl").is_file() and not (directory / "summary.json").is_file()
    cfg = Config.load(directory / "config.yaml") if resume else study.config(cell, seed, directory)
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / "run.log")  # fedsec's lines of this run (appended on resume)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fedsec_log = logging.getLogger("fedsec")
    level = fedsec_log.level
    fedsec_log.setLevel(logging.INFO)
    fedsec_log.addHandler(handler)
    t0 = time.time()
    try:
        run_inline(cfg, resume=resume)
    finally:
        fedsec_log.removeHandler(handler)
        fedsec_log.setLevel(level)
        handler.close()
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    (directory / "node.txt").write_text(node)
    return {"seconds": time.time() - t0, "node": node, "resumed": resume}


def pending(study: Study, out: Path) -> list[tuple[dict[str, str], int]]:
    """The (cell, seed) runs without a summary yet."""
    return [(cell, seed) for cell in study.cells() for seed in study.seeds
            if not (run_dir(out, cell, seed) / "summary.json").is_file()]


def execute(study_file: Path, study: Study, out: Path, todo: list[tuple[dict[str, str], int]],
            max_concurrent: int, ray_address: str | None) -> list[str]:
    """Run ``todo`` as Ray Tune trials (``max_concurrent`` at once, 0: as the resources allow);
    return one line per failed run."""
    # a quiet console: Tune's verbose=0 prints nothing then (Progress reports); JSON and CSV trial logs only
    # (and the experiment state is saved once a minute, not after every result)
    for var, value in (("RAY_AIR_NEW_OUTPUT", "0"), ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"),
                       ("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0"), ("TUNE_GLOBAL_CHECKPOINT_S", "60")):
        os.environ.setdefault(var, value)
    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, logging_level="warning",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    study_path, out_path = str(study_file.resolve()), str(out.resolve())

    def trainable(config: dict[str, Any]) -> dict[str, Any]:
        return run_one(study_path, out_path, config["run"]["cell"], config["run"]["seed"])

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    progress = Progress(todo)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": study.resources.num_cpus, "gpu": study.resources.num_gpus}),
        param_space={"run": tune.grid_search([{"cell": cell, "seed": seed} for cell, seed in todo])},
        # reused trial actors keep torch, Flower and the data loaded between runs
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or None, reuse_actors=True),
        run_config=tune.RunConfig(name="tune", storage_path=str(out.resolve()), verbose=0,
                                  callbacks=[progress, JsonLoggerCallback(), CSVLoggerCallback()]),
    )
    tuner.fit()
    return progress.failures


class Progress:
    """A Tune callback printing one line per finished run: count, ETA, and the cell, seed and error of failures."""

    def __init__(self, todo: list[tuple[dict[str, str], int]]) -> None:
        from ray.tune import Callback

        class _Callback(Callback):
            def on_trial_complete(cb, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: N805
                self.finished(trial, failed=False)

            def on_trial_error(cb, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: N805
                self.finished(trial, failed=True)

        self.callback = _Callback()
        self.total, self.done, self.start = len(todo), 0, time.time()
        self.failures: list[str] = []

    def __getattr__(self, name: str) -> Any:  # Tune calls the callback's hooks on this object
        return getattr(self.callback, name)

    def finished(self, trial: Any, failed: bool) -> None:
        self.done += 1
        run = trial.config["run"]
        what = f"{label(run['cell'])} seed {run['seed']}"
        if failed:
            path = Path(trial.error_file) if trial.error_file else None
            error = (path.read_text().strip().splitlines()[-1] if path and path.is_file()
                     else f"see the trial's error.txt under {trial.local_path}")
            self.failures.append(f"{what}: {error}")
            what += f" FAILED: {error}"
        elapsed = time.time() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[study] {self.done}/{self.total} runs  {elapsed:6.0f} s  ETA {eta:5.0f} s  {what}", flush=True)


# ------------------------------------------------------------------ results
def results_frame(study: Study, out: Path) -> Any:
    """One row per completed run: the axes' cells, the seed, every reported metric (pandas). Nothing that
    depends on the machine's load (wall times are in each run's summary.json), so the same study gives the
    same table however its runs were scheduled or interrupted."""
    import pandas as pd

    records = [{"cell": label(cell), **cell, "seed": seed, **{m.name: m.of(rows) for m in study.metrics}}
               for cell, seed, rows in completed_runs(study, out)]
    columns = ["cell", *study.axes, "seed", *(m.name for m in study.metrics)]
    return pd.DataFrame.from_records(records, columns=columns)


def completed_runs(study: Study, out: Path) -> list[tuple[dict[str, str], int, list[dict]]]:
    """(cell, seed, metrics rows) of every run of ``study`` in ``out`` that completed (its summary.json
    exists), in the study's order."""
    from fedsec.metrics import read_rows

    return [(cell, seed, read_rows(run_dir(out, cell, seed) / "metrics.jsonl"))
            for cell in study.cells() for seed in study.seeds
            if (run_dir(out, cell, seed) / "summary.json").is_file()]


@dataclass
class Paired:
    """The per-seed comparison of a cell with its baseline on one metric."""

    cell: str
    baseline: str
    metric: str
    n: int
    mean: float
    low: float
    high: float
    p_t: float
    p_wilcoxon: float

    @property
    def verdict(self) -> str:
        if math.isnan(self.low):
            return "n/a (fewer than 2 seeds or no spread)"
        if self.low <= 0 <= self.high:
            return "not distinguishable"
        return "higher" if self.low > 0 else "lower"


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float, float, float, float]:
    """Mean of the per-seed differences a - b, its 95% t confidence interval, and the p-values of the
    paired t-test and of the Wilcoxon signed-rank test (scipy.stats)."""
    import numpy as np
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(diff.mean()) if len(diff) else math.nan
    if len(diff) < 2 or float(diff.std(ddof=1)) == 0.0:
        return mean, math.nan, math.nan, math.nan, math.nan
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=mean, scale=stats.sem(diff))
    p_t = float(stats.ttest_rel(a, b).pvalue)
    p_w = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    return mean, float(low), float(high), p_t, p_w


def paired_comparison(study: Study, frame: Any) -> list[Paired]:
    """Each non-baseline cell against its baseline, per metric, over the seeds both completed; then each
    contrast ``[a, b]`` within every cell: metric a - metric b of the same runs (e.g. an inference-time
    defense's ASR after screening against before), baseline ``same runs``."""
    results = []
    for cell in study.cells():
        for base in study.baselines_of(cell):
            here = frame[frame["cell"] == label(cell)].set_index("seed")
            there = frame[frame["cell"] == label(base)].set_index("seed")
            seeds = sorted(set(here.index) & set(there.index))
            for metric in study.metrics:
                a = [float(here.loc[s, metric.name]) for s in seeds]
                b = [float(there.loc[s, metric.name]) for s in seeds]
                results.append(Paired(label(cell), label(base), metric.name, len(seeds), *paired_difference(a, b)))
    for cell in study.cells():
        rows = frame[frame["cell"] == label(cell)]
        for a, b in study.contrasts:
            both = rows[[a, b]].dropna()
            results.append(Paired(label(cell), "same runs", f"{a} − {b}", len(both),
                                  *paired_difference(both[a].tolist(), both[b].tolist())))
    return results


def per_round_frame(study: Study, out: Path) -> Any:
    """The observations of the study's ``per_round`` entries: one row per (completed run, round, key) with a
    finite value: the cells, the seed, the round, the key and the value (pandas)."""
    import pandas as pd

    keys = sorted({entry.key for entry in study.per_round})
    records = [{"cell": label(cell), **cell, "seed": seed, "round": int(row.get("round", 0)), "key": key,
                "value": float(row[key])}
               for cell, seed, rows in completed_runs(study, out) for row in rows for key in keys
               if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]  # a bool counts 0/1
    return pd.DataFrame.from_records(records, columns=["cell", *study.axes, "seed", "round", "key", "value"])


def wilson_interval(hits: int, n: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of the proportion hits / n (scipy.stats.binomtest)."""
    from scipy import stats

    if n == 0:
        return math.nan, math.nan
    interval = stats.binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def variance_split(values: Any, seeds: Any) -> tuple[float, float]:
    """The share of the total sum of squares of ``values`` between the means of their ``seeds`` groups,
    1 - SS_within / SS_total (in [0, 1]), and the one-way ANOVA F-test p-value of a seed effect
    (scipy.stats.f_oneway; it takes the observations as independent); NaN where there is nothing to split
    (fewer than two seeds, or all values equal) or to test (no spread within the seeds)."""
    import numpy as np
    from scipy import stats

    x, groups_of = np.asarray(values, dtype=float), np.asarray(seeds)
    groups = [x[groups_of == g] for g in np.unique(groups_of)]
    if len(groups) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    total = float(((x - x.mean()) ** 2).sum())
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    between = min(1.0, max(0.0, 1.0 - within / total))
    spread_within = any(len(g) > 1 and np.ptp(g) > 0 for g in groups)
    return between, float(stats.f_oneway(*groups).pvalue) if spread_within else math.nan


def per_round_markdown(study: Study, frame: Any) -> list[str]:
    """The rates (per cell with observations, and over all cells where several have them) and the variance
    splits (one per key and rounds) of the ``per_round`` entries."""
    lines, rates = [], []
    for entry in study.per_round:
        if not entry.threshold:
            continue
        values = _observations(entry, frame)
        parts = [(label(cell), values[values["cell"] == label(cell)]) for cell in study.cells()]
        parts = [(name, part) for name, part in parts if len(part)]  # cells without the key: left out
        if not parts:
            rates.append(f"| {entry.name} | {entry.threshold} | – | 0 (the key is in no completed run's rows) "
                         "| – | – | – |")
        for name, part in [*parts, ("all cells", values)] if len(parts) > 1 else parts:
            n, hits = len(part), int(sum(entry.hit(v) for v in part["value"]))
            low, high = wilson_interval(hits, n)
            rates.append(f"| {entry.name} | {entry.threshold} | {name} | {n} | {hits} | {hits / n:.3f} | "
                         f"[{low:.3f}, {high:.3f}] |")
    if rates:
        lines += ["", "Rates over rounds (each round of each completed run one observation, round 0 the initial "
                  "model): observations reaching the threshold, with the Wilson score 95% interval.", "",
                  "| values | threshold | cell | observations | reached | fraction | 95% CI (Wilson) |",
                  "|---|---|---|---|---|---|---|", *rates]
    lines += ["", "Variance split by seed (one-way ANOVA over every cell's observations): share of the total "
              "sum of squares between the seeds' means (what a seed fixes: partition, sampling, initialisation, "
              "a released model) and within seeds (what the cells and the rounds change), F-test p of a seed "
              "effect (it takes the rounds of a run as independent observations, so it is optimistic).", "",
              "| values | observations | seeds | between seeds | within seeds | p (F, seed effect) |",
              "|---|---|---|---|---|---|"]
    for entry in {(e.key, e.rounds): e for e in study.per_round}.values():
        values = _observations(entry, frame)
        between, p = variance_split(values["value"], values["seed"])
        seeds = values["seed"].nunique()
        lines.append(f"| {entry.name} | {len(values)} | {seeds} | " + (
            f"{between:.3f} | {1 - between:.3f} | {'–' if math.isnan(p) else f'{p:.3g}'} |" if not math.isnan(between)
            else "– | – | – (no observations) |" if not len(values)
            else "– | – | – (one seed) |" if seeds < 2 else "– | – | – (all values equal) |"))
    return lines


def _observations(entry: PerRound, frame: Any) -> Any:
    return frame[(frame["key"] == entry.key) & frame["round"].map(entry.takes)]


def summary_markdown(study: Study, frame: Any, paired: list[Paired], per_round: Any = None) -> str:
    """Mean ± std per cell, then the paired table, then the ``per_round`` figures of the observations
    ``per_round`` (:func:`per_round_frame`)."""
    names = [m.name for m in study.metrics]
    lines = [f"# Study {study.name}", "", f"{len(frame)} runs, seeds {study.seeds}.", "",
             "| cell | runs | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for cell in study.cells():
        rows = frame[frame["cell"] == label(cell)]
        stats = [_mean_std(rows[n].dropna()) for n in names]
        lines.append(f"| {label(cell)} | {len(rows)} | " + " | ".join(stats) + " |")
    if len(study.axes) == 2:
        lines += _grids(study, frame, paired)
    if paired:
        lines += ["", "Paired by seed (same partition, sampling and initialisation): mean difference "
                  "cell − baseline, 95% t interval, paired t and Wilcoxon signed-rank p-values"
                  + ("; baseline 'same runs': the contrast a − b of two metrics of the cell's own runs."
                     if study.contrasts else "."), "",
                  "| cell | baseline | metric | n | mean difference | 95% CI | p (t) | p (Wilcoxon) | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in paired:
            if math.isnan(r.mean):  # the metric does not exist in these runs (e.g. ASR without a trigger)
                continue
            lines.append(f"| {r.cell} | {r.baseline} | {r.metric} | {r.n} | {r.mean:+.3f} | "
                         f"[{r.low:+.3f}, {r.high:+.3f}] | {r.p_t:.3g} | {r.p_wilcoxon:.3g} | {r.verdict} |")
    if study.per_round and per_round is not None:
        lines += per_round_markdown(study, per_round)
    return "\n".join(lines) + "\n"


def _grids(study: Study, frame: Any, paired: list[Paired]) -> list[str]:
    """Two-axis studies: per metric, a grid (rows: the second axis, columns: the first) of mean ± std and,
    where a baseline is set, of the paired difference with its 95% CI (* where the CI excludes 0)."""
    columns_axis, rows_axis = list(study.axes)
    by_key = {(r.cell, r.metric): r for r in paired} if len(study.baselines) == 1 else {}
    lines = []
    for metric in study.metrics:
        cols = [c for c in study.axes[columns_axis]
                if frame[frame[columns_axis] == c][metric.name].notna().any()]
        if not cols:
            continue
        head = [f"| {rows_axis} \\ {columns_axis} | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        means, diffs = ["", f"{metric.name}, mean ± std over seeds:", "", *head], []
        for r in study.axes[rows_axis]:
            cells = [{columns_axis: c, rows_axis: r} for c in cols]
            means.append(f"| {r} | " + " | ".join(
                _mean_std(frame[frame["cell"] == label(_ordered(study, cell))][metric.name].dropna())
                for cell in cells) + " |")
            found = [by_key.get((label(_ordered(study, cell)), metric.name)) for cell in cells]
            diffs.append(f"| {r} | " + " | ".join(
                "baseline" if p is None else "–" if math.isnan(p.mean) else
                f"{p.mean:+.3f} (no spread)" if math.isnan(p.low) else
                f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}]{'*' if p.verdict in ('higher', 'lower') else ''}"
                for p in found) + " |")
        lines += means
        if by_key:
            lines += ["", f"{metric.name}, paired difference to the baseline (95% CI; * the CI excludes 0, "
                      "otherwise not distinguishable):", "",
                      *head, *diffs]
    return lines


def _ordered(study: Study, cell: dict[str, str]) -> dict[str, str]:
    return {axis: cell[axis] for axis in study.axes}


def _mean_std(values: Any) -> str:
    if not len(values):
        return "–"
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def plots(study: Study, frame: Any, out: Path) -> None:
    """A heat map per metric for two-axis studies; per-round curves per cell (mean, min-max band over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fedsec.metrics import read_rows

    axes = list(study.axes)
    for metric in study.metrics:
        if len(axes) == 2 and len(frame):
            table = frame.pivot_table(index=axes[0], columns=axes[1], values=metric.name, aggfunc="mean")
            table = table.reindex(index=list(study.axes[axes[0]]), columns=list(study.axes[axes[1]]))
            fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 2, 0.6 * table.shape[0] + 1.5))
            image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
            ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
            ax.set_yticks(range(table.shape[0]), table.index)
            for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
                ax.text(j, i, "" if math.isnan(value) else f"{value:.2f}", ha="center", va="center", color="w")
            ax.set_xlabel(axes[1])
            ax.set_ylabel(axes[0])
            ax.set_title(f"{metric.name} (mean over seeds)")
            fig.colorbar(image)
            fig.tight_layout()
            fig.savefig(out / f"heatmap_{metric.name}.png", dpi=100)
            plt.close(fig)
        fig, ax = plt.subplots(figsize=(7, 4))
        for cell in study.cells():
            curves = [[r.get(metric.key, math.nan) for r in read_rows(run_dir(out, cell, s) / "metrics.jsonl")]
                      for s in study.seeds if (run_dir(out, cell, s) / "summary.json").is_file()]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            values = np.array([c[:length] for c in curves], dtype=float)
            if np.isnan(values).all(axis=0).any():
                continue
            line, = ax.plot(range(length), np.nanmean(values, axis=0), label=label(cell))
            ax.fill_between(range(length), np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                            color=line.get_color(), alpha=0.15)
        ax.set_xlabel("round")
        ax.set_ylabel(metric.key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"curves_{metric.key}.png", dpi=100)
        plt.close(fig)


def report(study: Study, out: Path) -> str:
    """Write results.csv (per_round.csv), summary.md and the plots from the completed runs; return the markdown."""
    frame = results_frame(study, out)
    frame.to_csv(out / "results.csv", index=False)
    observations = per_round_frame(study, out) if study.per_round else None
    if observations is not None:
        observations.to_csv(out / "per_round.csv", index=False)
    else:
        (out / "per_round.csv").unlink(missing_ok=True)  # of an earlier invocation that had per_round entries
    markdown = summary_markdown(study, frame, paired_comparison(study, frame), observations)
    (out / "summary.md").write_text(markdown)
    plots(study, frame, out)
    return markdown


# ------------------------------------------------------------------ command line
def changed_runs(study: Study, out: Path) -> list[str]:
    """The runs in ``out`` (completed or interrupted) whose experiment is not the one ``study`` gives them now:
    each run's own ``config.yaml`` against its cell's config (``run.out_dir`` aside), so a changed base config,
    ``set``, cell override or resource is found, whatever changed it. What the study reports (metrics,
    per_round, contrasts, baseline), its name and added seeds or cells change no run; runs of cells or seeds
    it no longer has are left out of its tables."""
    changed = []
    for cell in study.cells():
        for seed in study.seeds:
            directory = run_dir(out, cell, seed)
            if not (directory / "config.yaml").is_file():
                continue
            try:
                ran = Config.load(directory / "config.yaml").to_flat()
            except (ConfigError, OSError) as err:
                changed.append(f"{label(cell)} seed {seed}: its config.yaml does not load ({err})")
                continue
            now = study.config(cell, seed, directory).to_flat()
            keys = sorted(k for k in set(ran) | set(now) if k != "run.out_dir" and ran.get(k) != now.get(k))
            if keys:
                changed.append(f"{label(cell)} seed {seed}: " + ", ".join(
                    f"{k} {ran.get(k)!r} -> {now.get(k)!r}" for k in keys[:3]) + (", ..." if len(keys) > 3 else ""))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a study file (simulations/studies/*.yaml)")
    parser.add_argument("--out", default=None, help="default: outputs/studies/<name>")
    parser.add_argument("--resume", action="store_true", help="continue a study: completed runs are kept")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: rewrite results.csv, per_round.csv, summary.md, the plots and "
                             "study.yaml of --out from its completed runs (e.g. after adding a metric)")
    parser.add_argument("--ray-address", default=None, help="attach to a running Ray cluster (auto or host:port)")
    parser.add_argument("--max-concurrent", type=int, default=0, help="runs at once (default: as resources allow)")
    parser.add_argument("--check", action="store_true",
                        help="only validate the study file, every cell and the resources; print the runs; run nothing")
    args = parser.parse_args(argv)
    try:
        study = Study.load(args.study)
        from fedsec.resources import available, check_resources

        # a run (Tune trial) reserves resources.num_cpus/num_gpus; one no node can meet would wait forever
        try:
            if not args.report:  # --report runs nothing: a GPU study's tables can be rewritten without a GPU
                check_resources(study.config(study.cells()[0], study.seeds[0], Path("not-written")),
                                available(args.ray_address or ""), scheduled=True,
                                where=f"the Ray cluster at {args.ray_address}" if args.ray_address else "this machine")
        except ConfigError as err:
            raise ConfigError(f"{args.study}: resources (num_cpus, num_gpus per run): {err}") from None
    except ConfigError as err:
        print(f"fedsec: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "outputs" / "studies" / study.name)
    if args.check:
        print(f"[study] {study.name}: {len(study.cells()) * len(study.seeds)} runs ({len(study.cells())} cells x "
              f"{len(study.seeds)} seeds), each {study.resources.num_cpus:g} CPU / {study.resources.num_gpus:g} GPU "
              f"-> {out}: valid")
        return 0
    copy = out / "study.yaml"
    if copy.is_file():
        if not (args.resume or args.report):
            print(f"fedsec: {out} holds an earlier invocation of this study: pass --resume to keep its runs and "
                  "finish it (--report to only rewrite its tables), or --out elsewhere", file=sys.stderr)
            return 2
        changed = changed_runs(study, out)
        if changed:
            print(f"fedsec: {args.study} gives {len(changed)} runs in {out} another experiment than they ran "
                  f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}): resume with the study file and "
                  "base config they were run with, or --out elsewhere (what a study reports, metrics, per_round, "
                  "contrasts and baseline, may change, and seeds or cells may be added)", file=sys.stderr)
            return 2
    elif args.report:
        print(f"fedsec: --report: {out} holds no study (no {copy.name}); run the study first", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    copy.write_text(study.source)
    todo = pending(study, out)
    if args.report:
        print(report(study, out), flush=True)
        if todo:
            print(f"[study] {len(todo)} runs not complete, left out of the tables (--resume runs them)",
                  file=sys.stderr)
        return 0
    total = len(study.cells()) * len(study.seeds)
    print(f"[study] {study.name}: {total} runs ({len(study.cells())} cells x {len(study.seeds)} seeds), "
          f"{total - len(todo)} already complete -> {out}", flush=True)
    failures = execute(Path(args.study), study, out, todo, args.max_concurrent, args.ray_address) if todo else []
    print("\n" + report(study, out), flush=True)
    for line in failures:
        print(f"[study] failed: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
