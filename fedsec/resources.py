"""Checks of what an experiment asks for against what the machine or cluster has, made before Ray starts.

A client that asks for a GPU on a machine without one, or for more CPUs than a
node has, is never scheduled: Flower's Simulation Engine waits for it until
``run.round_timeout``. :func:`check_resources` turns that into a config error at
once (locally from torch and ``os.cpu_count``, on a cluster from
``ray.cluster_resources`` after a short connection).
"""

from __future__ import annotations

import os
from pathlib import Path

from fedsec.config import Config, ConfigError


def available(ray_address: str = "") -> dict[str, float]:
    """CPUs and GPUs of the largest node: this machine's, or of the Ray cluster at ``ray_address``."""
    if ray_address:
        import ray

        try:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(f"federation.ray_address={ray_address}: no Ray cluster answers ({err})") from err
        try:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        finally:
            ray.shutdown()
        return {"CPU": max((n.get("CPU", 0.0) for n in nodes), default=0.0),
                "GPU": max((n.get("GPU", 0.0) for n in nodes), default=0.0)}
    import torch

    return {"CPU": float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
            "GPU": float(torch.cuda.device_count())}


def check_resources(cfg: Config, have: dict[str, float] | None = None, scheduled: bool | None = None,
                    where: str = "") -> None:
    """Refuse a per-client CPU or GPU request that no node (of ``have``, default :func:`available`) can meet.

    ``scheduled``: whether Ray schedules by ``federation.num_cpus`` (default: on the ``ray`` backend; a study's
    trials are scheduled by it too), so that a request above a node's CPUs would never start; ``where`` names
    the machine or cluster ``have`` describes in the error (default: from ``federation.ray_address``)."""
    fed = cfg.federation
    address = fed.ray_address if fed.backend == "ray" else ""
    have = available(address) if have is None else have
    where = where or (f"the Ray cluster at {address}" if address else "this machine")
    if fed.num_gpus > 0 and have["GPU"] == 0:
        raise ConfigError(f"federation.num_gpus={fed.num_gpus} asks for a GPU per client, but {where} has no GPU "
                          "(set federation.num_gpus=0)")
    if fed.num_gpus > have["GPU"] > 0:
        raise ConfigError(f"federation.num_gpus={fed.num_gpus} exceeds the {have['GPU']:g} GPU(s) of a node of "
                          f"{where}")
    if (fed.backend == "ray" if scheduled is None else scheduled) and fed.num_cpus > have["CPU"]:
        raise ConfigError(f"federation.num_cpus={fed.num_cpus} exceeds the {have['CPU']:g} CPUs of a node of {where}: "
                          "no client could be scheduled")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``) or does not answer an HTTP request
    within 3 s (through the proxies of the environment, as the downloads would be)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not constants.ENDPOINT.startswith(("https://", "http://")):
        return True
    try:
        request = urllib.request.Request(constants.ENDPOINT, method="HEAD")  # noqa: S310 (http(s) only, above)
        urllib.request.urlopen(request, timeout=3).close()  # noqa: S310
    except urllib.error.HTTPError:
        return False  # it answered
    except (urllib.error.URLError, OSError, ValueError):
        return True
    return False


def check_pretrained(name: str, registered: list[str]) -> None:
    """A ``model.name`` that is neither registered nor a local directory must be a hub id that can be fetched:
    cached locally, or with the hub reachable; otherwise one clear error now (not a minute of retries)."""
    if Path(name).exists():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except ValueError:  # not a valid hub id either (HFValidationError): a missing local path
        raise ConfigError(f"model.name='{name}' cannot be loaded: it is not a registered model "
                          f"({', '.join(sorted(registered))}), not a local directory, and not a hub id") from None
    if hub_offline():
        names = ", ".join(sorted(registered))
        raise ConfigError(f"model.name='{name}' cannot be loaded: it is not a registered model ({names}), "
                          "not a local directory, not in the Hugging Face cache, and the hub is offline or "
                          "unreachable: use a registered name, a local path, or a machine with hub access")
