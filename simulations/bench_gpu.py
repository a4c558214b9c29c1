"""GPU benchmark: how many clients share one GPU at fractional ``federation.num_gpus``, and what they get.

    python simulations/bench_gpu.py                                    # tiny LLaMA-style SFT, 1, 0.5, 0.25
    python simulations/bench_gpu.py --config simulations/configs/instruct_hub.yaml --fractions 1,0.5

For each fraction the same federated run (Ray backend, IID partitions so that every round trains the
same number of samples) is made with ``federation.num_gpus=f``; while it runs, ``nvidia-smi`` is
polled every 0.2 s. Reported per fraction:

- ``clients_on_gpu``: the most client processes holding GPU memory at once (Ray packs 1/f actors per GPU);
- ``samples_per_second``: training samples of all sampled clients per round / mean round seconds;
- ``gpu_memory_per_client_mib``: the largest GPU memory one client process held;
- ``gpu_busy_percent``: mean GPU utilisation over the rounds (``utilization.gpu``);
- the mean round seconds and the final accuracy (the same work: they should not change with f).

Figures go to stdout and ``OUT/bench_gpu.json``. Without a CUDA GPU the script stops with exit 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CONFIG = ROOT / "simulations" / "configs" / "instruct_tiny.yaml"
QUERY_GPU = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
QUERY_APPS = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and shutil.which("nvidia-smi") is not None


def poll(stop: threading.Event, samples: dict[str, list]) -> None:
    """Every 0.2 s: GPU utilisation, and the memory of every process holding the GPU."""
    while not stop.is_set():
        busy = subprocess.run(QUERY_GPU, capture_output=True, text=True).stdout.split()
        apps = [line.split(",") for line in subprocess.run(QUERY_APPS, capture_output=True, text=True)
                .stdout.strip().splitlines() if line.strip()]
        samples["time"].append(time.time())
        samples["busy"].append(float(busy[0]) if busy else 0.0)
        samples["apps"].append({int(pid): float(mib) for pid, mib in apps})
        stop.wait(0.2)


def bench(config: Path, fraction: float, rounds: int, out: Path, extra: list[str]) -> dict:
    from fedsec.config import Config

    overrides = [f"federation.num_gpus={fraction}", "federation.backend=ray", f"run.num_rounds={rounds}",
                 "data.partitioner=iid", *extra]
    cfg = Config.load(config, overrides)
    args = [sys.executable, str(ROOT / "simulations" / "run.py"), "--config", str(config), "--out", str(out),
            "--overwrite"]
    for item in overrides:
        args += ["--set", item]
    samples: dict[str, list] = {"time": [], "busy": [], "apps": []}
    stop = threading.Event()
    started = time.time()
    poller = threading.Thread(target=poll, args=(stop, samples), daemon=True)
    poller.start()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    stop.set()
    poller.join()
    if proc.returncode != 0:
        raise RuntimeError(f"run.py failed at num_gpus={fraction}:\n{stderr[-3000:]}")
    # the server's evaluation runs in run.py's own process: the clients are the other GPU processes
    clients = [{pid: mib for pid, mib in apps.items() if pid != proc.pid} for apps in samples["apps"]]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    # the rounds are the last sum(round_seconds) of the process: poll samples before them are start-up
    rounds_start = started + (time.time() - started) - sum(r["round_seconds"] for r in rows)
    during = [i for i, t in enumerate(samples["time"]) if t >= rounds_start] or list(range(len(samples["time"])))
    from fedsec.data import load_splits

    fed = cfg.federation
    train_rows = len(load_splits(cfg.data, cfg.run.seed).train)
    samples_per_round = train_rows * fed.clients_per_round / fed.num_clients * cfg.client.epochs
    round_seconds = sum(r["round_seconds"] for r in rows) / len(rows)
    return {
        "num_gpus": fraction,
        "clients_on_gpu": max((len(clients[i]) for i in during), default=0),
        "samples_per_second": samples_per_round / round_seconds,
        "gpu_memory_per_client_mib": max((max(a.values()) for a in clients if a), default=0.0),
        "gpu_busy_percent": sum(samples["busy"][i] for i in during) / max(len(during), 1),
        "mean_round_seconds": round_seconds,
        "final_accuracy": rows[-1]["accuracy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--fractions", default="1,0.5,0.25", help="federation.num_gpus values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_gpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    args = parser.parse_args()
    if not has_gpu():
        print("bench_gpu: this machine has no CUDA GPU (or no nvidia-smi): the GPU benchmark was not run",
              file=sys.stderr)
        return 2
    results = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        r = bench(args.config, fraction, args.rounds, args.out / f"gpus_{fraction}", args.set)
        results.append(r)
        print(f"num_gpus {fraction:4.2f}: {r['clients_on_gpu']:2d} clients on the GPU  "
              f"{r['samples_per_second']:8.1f} samples/s  {r['gpu_memory_per_client_mib']:7.0f} MiB per client  "
              f"GPU busy {r['gpu_busy_percent']:5.1f} %  {r['mean_round_seconds']:6.2f} s/round  "
              f"accuracy {r['final_accuracy']:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu.json").write_text(json.dumps({"config": str(args.config), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
