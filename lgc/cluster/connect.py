"""Joining a Ray cluster, with one-line errors for the three ways it usually goes wrong:
Ray not installed, no cluster at the address, no worker advertising an `lgc_device`."""
from __future__ import annotations

import socket

from ..errors import LgcError

NAMESPACE = "lgc"          # every actor lgc creates lives in this Ray namespace
RESOURCE = "lgc_device"    # the custom resource a worker advertises per OpenCL device


class ClusterError(LgcError):
    """Ray is missing, no cluster is reachable, or the cluster cannot host the deployment."""


def require_ray():
    """The ray module, or a ClusterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed: pip install 'lgc[cluster]' (or pip install ray)") from None
    return ray


def _reachable(address: str, timeout: float = 3.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def join(address: str | None = "auto"):
    """Join the Ray cluster at `address` ("auto", HOST:PORT or ray://HOST:PORT) unless this
    process already has; returns the ray module.

    HOST:PORT is probed with a plain TCP connect first: `ray.init` waits about a minute
    before giving up on an address nobody listens on.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = address or "auto"
    plain = address.split("://", 1)[-1]
    if address != "auto" and not _reachable(plain):
        raise ClusterError(f"no Ray cluster reachable at {address} (start one with `ray start --head "
                           f"--resources='{{\"{RESOURCE}\": 1}}'`)")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level="WARNING", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token here too"
                if address != "auto" else "")
        raise ClusterError(f"no Ray cluster reachable at {address} ({first}){hint}") from None
    return ray


def device_capacity(ray) -> tuple[int, int]:
    """(total, free) `lgc_device` units over the live nodes; ClusterError when there are none."""
    total = int(ray.cluster_resources().get(RESOURCE, 0))
    if total <= 0:
        raise ClusterError(f"no Ray worker advertises {RESOURCE}: start workers with "
                           f"`ray start --address HEAD:6379 --resources='{{\"{RESOURCE}\": N}}'` "
                           f"(N = OpenCL devices on that machine)")
    return total, int(ray.available_resources().get(RESOURCE, 0))
