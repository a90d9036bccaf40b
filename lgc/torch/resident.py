"""Device copies of torch tensors, kept while a tensor lives and is unchanged.

Training calls the compiled forward and backward with the same parameter tensors every step,
and the backward with tensors the forward returned. Uploading each of them per call would
move the whole model to the device twice a step; instead the buffer a tensor was uploaded
to (or that a program wrote it from) is kept, keyed by the tensor object, and used again as
long as the tensor's storage lives and its version counter has not moved. An in-place
change through torch (an optimizer step, a running statistic copied back) moves the version
counter, so the next call uploads that tensor once. A change torch does not see (writing
through a NumPy view of the tensor) is not detected.

`Transfers` counts the bytes moved each way, for the figures the training benchmark prints.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef

from ..runtime import memory


@dataclass
class Transfers:
    """Bytes copied host to device (`uploaded`) and back (`downloaded`), and the bytes of
    inputs served from a kept device copy (`reused`)."""
    uploaded: int = 0
    downloaded: int = 0
    reused: int = 0


class DeviceCopies:
    """The kept buffers of one device: buffer(t) for a program input, keep(t, buffer) for
    a tensor a program's output was downloaded into.

    Keyed by the tensor's storage (with offset, shape, strides, dtype), not the Python
    object: autograd hands the backward a new tensor object for each saved forward output.
    A weak reference to the storage tells whether it still lives; entries of dead storages
    are swept as new ones come."""

    def __init__(self, device):
        self.device = device
        self.transfers = Transfers()
        self._kept: dict[tuple, tuple] = {}   # key -> (storage weak ref, version, buffer)
        self._lock = threading.Lock()
        self._sweep_at = 64

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        return (t.untyped_storage()._cdata, t.storage_offset(), t.dtype, tuple(t.shape), t.stride())

    def buffer(self, t: torch.Tensor, host: np.ndarray):
        """The device buffer holding `t` (whose values `host` has): the kept one if `t` is
        unchanged since, else a new upload, kept from then on."""
        with self._lock:
            hit = self._kept.get(self._key(t))
            if hit is not None and not hit[0].expired() and hit[1] == t._version:
                self.transfers.reused += host.nbytes
                return hit[2]
        return self.upload(t, host)

    def upload(self, t: torch.Tensor, host: np.ndarray):
        """A new device buffer of `host` (t's values), kept as t's device copy."""
        buf = memory.upload(self.device, host)
        self.keep(t, buf, uploaded=host.nbytes)
        return buf

    def keep(self, t: torch.Tensor, buf, uploaded: int = 0, downloaded: int = 0) -> None:
        """Remember `buf` as `t`'s device copy until `t`'s storage dies or `t` changes;
        the bytes copied to make the two agree are counted."""
        ref = StorageWeakRef(t.untyped_storage())
        with self._lock:
            self.transfers.uploaded += uploaded
            self.transfers.downloaded += downloaded
            self._kept[self._key(t)] = (ref, t._version, buf)
            if len(self._kept) >= self._sweep_at:
                self._kept = {k: e for k, e in self._kept.items() if not e[0].expired()}
                self._sweep_at = max(64, 2 * len(self._kept))

    def __len__(self) -> int:
        return len(self._kept)


_by_device: dict = {}
_by_device_lock = threading.Lock()


def device_copies(device) -> DeviceCopies:
    """The one DeviceCopies of `device` (all compiled graphs on it share their tensors)."""
    with _by_device_lock:   # buffers belong to an OpenCL context: one DeviceCopies per context
        copies = _by_device.get(id(device.context))
        if copies is None:
            copies = _by_device[id(device.context)] = DeviceCopies(device)
        return copies


def transfers() -> Transfers:
    """The bytes moved so far, summed over devices (reset with reset_transfers)."""
    total = Transfers()
    with _by_device_lock:
        for copies in _by_device.values():
            for f in ("uploaded", "downloaded", "reused"):
                setattr(total, f, getattr(total, f) + getattr(copies.transfers, f))
    return total


def reset_transfers() -> None:
    with _by_device_lock:
        for copies in _by_device.values():
            copies.transfers = Transfers()
