"""The Ray actors of a deployment: one `StageWorker` per (stage, replica), one `Registry`.

The registry is a small detached actor that holds the deployment's description and the
stage artifacts' bytes, so that a stage actor Ray restarts after a crash (or after the
`lgc deploy` process has exited) can fetch its artifact again through the object store.
It decides nothing: routing, restarts and placement are Ray's and the caller's.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time

import ray

import lgc

from ..runtime.device import list_devices, select_device
from .connect import RESOURCE


@ray.remote(num_cpus=0)
class Registry:
    """Description of one deployment plus the bytes of each stage's artifact."""

    def __init__(self, description: dict):
        self._description = description
        self._artifacts: dict[int, bytes] = {}

    def put_artifact(self, stage: int, data: bytes) -> int:
        self._artifacts[stage] = bytes(data)
        return len(data)

    def artifact(self, stage: int) -> bytes:
        return self._artifacts[stage]

    def describe(self) -> dict:
        return self._description


def _claim_slot(node_id: str, slots: int):
    """An exclusive per-node device slot (0..slots-1) held by an flock for this process's life.

    Ray counts `lgc_device` units but does not say which unit an actor got, so the actors on
    one node take the lowest free slot; the kernel drops the lock when the process dies.
    """
    folder = os.path.join(tempfile.gettempdir(), "lgc-ray-slots")
    os.makedirs(folder, exist_ok=True)
    for slot in range(max(slots, 1)):
        f = open(os.path.join(folder, f"{node_id}-{slot}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, f
        except OSError:
            f.close()
    return 0, None          # more actors than advertised units (resource set by hand): share slot 0


def _device_for_slot(slot: int):
    """$LGC_DEVICE if the worker was started with it, else the slot-th usable GPU, else the default."""
    if os.environ.get("LGC_DEVICE"):
        return select_device(None)
    gpus = [d for d in list_devices() if d.usable and d.kind == "gpu"]
    return gpus[slot] if slot < len(gpus) else select_device(None)


@ray.remote(num_cpus=0, concurrency_groups={"infer": 1, "health": 1})
class StageWorker:
    """One replica of one pipeline stage: the stage's artifact loaded on this node's device.

    `infer` runs in its own one-thread concurrency group (the OpenCL executor reuses its
    buffers), `ping` in another so that health checks answer while a request runs.
    """

    def __init__(self, deployment: str, stage: int, replica: int, registry_name: str, namespace: str):
        t = time.perf_counter()
        self.deployment, self.stage, self.replica = deployment, stage, replica
        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()
        node = next((n for n in ray.nodes() if n["NodeID"] == self.node_id), {})
        self.node_ip = node.get("NodeManagerAddress", "?")
        self.slot, self._slot_lock = _claim_slot(self.node_id, int(node.get("Resources", {}).get(RESOURCE, 1)))
        registry = ray.get_actor(registry_name, namespace=namespace)
        data = ray.get(registry.artifact.remote(stage))
        trusted = ray.get(registry.describe.remote()).get("trusted_keys")   # PEM texts or None
        with tempfile.TemporaryDirectory(prefix="lgc-stage-") as d:
            path = os.path.join(d, f"stage{stage}.lgc")
            with open(path, "wb") as f:
                f.write(data)
            # verifies the digests, and the signature when the deployment names trusted keys
            self.exe = lgc.load(path, _device_for_slot(self.slot),
                                trusted_keys=None if trusted is None else [k.encode() for k in trusted])
        self.restarted = ctx.was_current_actor_reconstructed
        self.load_s = time.perf_counter() - t
        self.served = 0

    @ray.method(concurrency_group="infer")
    def infer(self, *arrays):
        """Run the stage on its inputs (positional, in the artifact's input order); returns
        one array per output, as separate Ray objects when there are several."""
        outs = self.exe.run(dict(zip(self.exe.input_names, arrays)))
        self.served += 1
        values = [outs[n] for n in self.exe.output_names]
        return values[0] if len(values) == 1 else tuple(values)

    @ray.method(concurrency_group="health")
    def ping(self) -> dict:
        return {"stage": self.stage, "replica": self.replica, "pid": os.getpid(),
                "node": self.node_ip, "node_id": self.node_id, "slot": self.slot,
                "device": self.exe.device.name, "served": self.served,
                "restarted": self.restarted, "load_s": round(self.load_s, 2)}
