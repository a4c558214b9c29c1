"""Centralised reference: the same model trained on the union of the clients' data.

    python simulations/centralized.py [--config PATH] [--set key=value ...]

Trains for ``run.num_rounds * client.epochs`` epochs (the data passes a
federated run makes), evaluates on the same held-out test split after every
epoch and prints a JSON line with the final and best accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "simulations" / "configs" / "default.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from fedsec.config import Config
    from fedsec.experiment import Experiment
    from fedsec.training import device_for, evaluate, train

    cfg = Config.load(args.config, args.overrides)
    exp = Experiment(cfg)
    data = exp.featurize(exp.train_split.select(np.sort(np.concatenate(exp.parts))))
    device = device_for(cfg.federation.num_gpus or 1.0)
    history = []
    t0 = time.time()
    for epoch in range(cfg.run.num_rounds * cfg.client.epochs):
        loss = train(exp.model, data, dataclasses.replace(cfg.client, epochs=1), device, seed=epoch)
        test_loss, accuracy = evaluate(exp.model, exp.test_data, cfg.client.eval_batch_size, device)
        history.append({"epoch": epoch + 1, "train_loss": loss, "loss": test_loss, "accuracy": accuracy})
        print(json.dumps(history[-1]), flush=True)
    result = {
        "samples": len(data["labels"]),
        "final_accuracy": history[-1]["accuracy"],
        "best_accuracy": max(h["accuracy"] for h in history),
        "wall_seconds": time.time() - t0,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
