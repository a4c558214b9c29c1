"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021, "FLTrust: Byzantine-robust Federated Learning via
Trust Bootstrapping").

The server holds a small clean root dataset (``fltrust.root_size``
rows drawn with the run seed from the training pool) and computes its own
update g_0 each round by local training from the current model. Each client
update gets the trust score TS_i = ReLU(cos(Delta_i, g_0)) and is rescaled to
g_0's norm; the aggregate is

    Delta = sum_i TS_i (||g_0|| / ||Delta_i||) Delta_i / sum_i TS_i,

i.e. the inner strategy's weighted mean with weights TS_i. Clients with
TS_i = 0 are reported as rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.serverapp.strategy import Strategy

from fedsec.config import Config, MethodParams, param
from fedsec.experiment import Batch, get_experiment
from fedsec.params import flatten, get_arrays, set_arrays
from fedsec.registry import Traits
from fedsec.training import device_for, train
from strategies.update_filter import DEFENSES, Screened, UpdateFilter


class FLTrust(UpdateFilter):
    """Trust-score reweighting against the server's own update on its root dataset."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner)
        self.cfg = cfg

    def root_data(self) -> Batch:
        exp = get_experiment(self.cfg)
        size = min(self.cfg.fltrust.root_size, len(exp.splits.train))
        return exp.cached(("fltrust-root", size), lambda: exp.featurize(
            exp.splits.train.shuffle(seed=self.cfg.run.seed).select(range(size))))

    def server_update(self, server_round: int) -> np.ndarray:
        """g_0: the change that local training on the root dataset makes to the current model."""
        assert self.current is not None
        exp, keys = get_experiment(self.cfg), list(self.current.keys())
        set_arrays(exp.model, self.current)
        train(exp.model, self.root_data(), self.cfg.client, device_for(self.cfg.federation.num_gpus),
              seed=self.cfg.run.seed * 7919 + server_round)
        return flatten(get_arrays(exp.model), keys) - flatten(self.current, keys)

    def screen(self, server_round: int, updates: np.ndarray, weights: np.ndarray, ids: list[int]) -> Screened:
        g0 = self.server_update(server_round)
        g0_norm = np.linalg.norm(g0)
        norms = np.maximum(np.linalg.norm(updates, axis=1), 1e-12)
        trust = np.maximum(0.0, updates @ g0 / (norms * max(g0_norm, 1e-12)))
        return Screened(updates=updates * (g0_norm / norms)[:, None], weights=trust, keep=trust > 0)


@dataclass
class FLTrustParams(MethodParams):
    section = "fltrust"
    renamed = {"strategy.fltrust_root_size": "fltrust.root_size"}  # keys before fedsec 0.2
    root_size: int = param(100, "rows of the server's clean root dataset (drawn from the training split)")

    def check(self, cfg: Config) -> None:
        self.positive("root_size")


@DEFENSES.register("fltrust", params=FLTrustParams, traits=Traits(global_model=True))
def fltrust(inner: Strategy, cfg: Config) -> Strategy:
    return FLTrust(inner, cfg)
