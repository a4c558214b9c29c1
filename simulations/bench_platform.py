"""Platform benchmark: simulation overhead, scale, communication. Prints figures, writes JSON.

    python simulations/bench_platform.py                     # all three parts
    python simulations/bench_platform.py --parts overhead --config simulations/configs/default.yaml

- overhead: wall time of a federated run (``run.py``: Ray start-up, actors,
  messages, server evaluation) vs. the same work in a plain loop in one
  process (same clients, samples, epochs, model, seeds, server evaluation).
- scale: 10 / 100 / 1,000 clients with 10 sampled per round (tiny BERT + LoRA
  on the tweets, IID, 16 tweets per client, so each round does the same work):
  wall time per round and peak memory (RSS) of the driver and of all
  processes of the run together.
- communication: bytes per round up and down with LoRA vs. full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_federated(config: Path, out: Path, overrides: list[str]) -> dict:
    """Run ``run.py`` and sample the memory of its whole process tree."""
    args = [sys.executable, str(ROOT / "simulations" / "run.py"), "--config", str(config), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    t0 = time.time()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"driver": 0, "total": 0}
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                rss = [p.memory_info().rss for p in procs if p.is_running()]
                peak["driver"] = max(peak["driver"], rss[0])
                peak["total"] = max(peak["total"], sum(rss))
            except psutil.Error:
                pass
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"run.py failed:\n{stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    return {
        "process_seconds": time.time() - t0,
        "mean_round_seconds": sum(r["round_seconds"] for r in rows) / len(rows),
        "final_accuracy": rows[-1]["accuracy"],
        "bytes_up_per_round": rows[-1]["bytes_up"],
        "bytes_down_per_round": rows[-1]["bytes_down"],
        "peak_driver_rss_mb": peak["driver"] / 2**20,
        "peak_total_rss_mb": peak["total"] / 2**20,
    }


def run_plain(config: Path, overrides: list[str]) -> dict:
    """The same federated computation as a plain loop in this process."""
    import random

    import numpy as np
    import torch
    from flwr.app import Array, ArrayRecord, ConfigRecord

    from clients import HonestClient
    from fedsec.app.server import central_evaluation
    from fedsec.config import Config
    from fedsec.experiment import Experiment
    from fedsec.params import get_arrays

    t0 = time.time()
    cfg = Config.load(config, overrides)
    exp = Experiment(cfg)
    arrays = get_arrays(exp.model)
    central_evaluation(exp, arrays)
    fed = cfg.federation
    for rnd in range(1, cfg.run.num_rounds + 1):
        random.seed(cfg.run.seed * 100_003 + rnd)
        sampled = sorted(random.sample(range(fed.num_clients), fed.clients_per_round))
        updates = [HonestClient(exp, pid).fit(arrays, ConfigRecord({"server-round": rnd})) for pid in sampled]
        weights = np.array([m["num-examples"] for _, m in updates], dtype=np.float64)
        weights /= weights.sum()
        arrays = ArrayRecord({k: Array(np.asarray(sum(w * u[k].numpy() for w, (u, _) in zip(weights, updates))))
                              for k in arrays})
        accuracy = central_evaluation(exp, arrays)["accuracy"]
    return {"process_seconds": time.time() - t0, "final_accuracy": accuracy, "torch_threads": torch.get_num_threads()}


def overhead(config: Path, out: Path) -> dict:
    federated = run_federated(config, out / "overhead_federated", [])
    plain = run_plain(config, [])
    result = {"federated": federated, "plain_loop": plain,
              "ratio": federated["process_seconds"] / plain["process_seconds"]}
    print(f"overhead: federated {federated['process_seconds']:.1f} s, plain loop {plain['process_seconds']:.1f} s, "
          f"ratio {result['ratio']:.2f}", flush=True)
    return result


def scale(out: Path, sizes: list[int]) -> dict:
    config = ROOT / "simulations" / "configs" / "tiny.yaml"
    results = {}
    for n in sizes:
        overrides = [f"federation.num_clients={n}", "federation.clients_per_round=10", "run.num_rounds=3",
                     "data.name=tweets_polarity", f"data.train_size={16 * n}", "data.test_size=500",
                     "data.max_length=32", "data.partitioner=iid", "model.name=tiny-bert", "model.peft=lora",
                     "client.epochs=1", "client.optimizer=adamw", "client.lr=0.005", "client.batch_size=16"]
        results[n] = run_federated(config, out / f"scale_{n}", overrides)
        r = results[n]
        print(f"scale: {n:5d} clients  {r['process_seconds']:6.1f} s total  {r['mean_round_seconds']:5.2f} s/round  "
              f"driver {r['peak_driver_rss_mb']:6.0f} MB  all processes {r['peak_total_rss_mb']:6.0f} MB", flush=True)
    return results


def communication(config: Path, out: Path) -> dict:
    results = {}
    for label, overrides in {"lora": ["run.num_rounds=1"], "full": ["run.num_rounds=1", "model.peft=none"]}.items():
        r = run_federated(config, out / f"comm_{label}", overrides)
        results[label] = {"bytes_up_per_round": r["bytes_up_per_round"],
                          "bytes_down_per_round": r["bytes_down_per_round"]}
        print(f"communication: {label:4s}  up {r['bytes_up_per_round'] / 1e6:8.2f} MB/round  "
              f"down {r['bytes_down_per_round'] / 1e6:8.2f} MB/round", flush=True)
    results["reduction"] = 1 - results["lora"]["bytes_up_per_round"] / results["full"]["bytes_up_per_round"]
    print(f"communication: LoRA sends {100 * results['reduction']:.2f} % fewer bytes", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "simulations" / "configs" / "default.yaml"))
    parser.add_argument("--parts", default="overhead,scale,communication")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_platform"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = Path(args.config)
    report: dict = {}
    parts = args.parts.split(",")
    if "overhead" in parts:
        report["overhead"] = overhead(config, out)
    if "scale" in parts:
        report["scale"] = scale(out, [int(n) for n in args.sizes.split(",")])
    if "communication" in parts:
        report["communication"] = communication(config, out)
    (out / "platform.json").write_text(json.dumps(report, indent=2))
    print(f"-> {out / 'platform.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
