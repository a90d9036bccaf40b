"""Device buffers for arrays that live on the device between programs (lgc.numpy's eager
Arrays and jit's results): allocate, upload, download, and the shared in-order queue.

Threads share that queue; `lock` (lgc.trace.eager's) is held while commands are put on
it, never while waiting for the device."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pyopencl as cl

from .device import Device


def new_queue(device: Device) -> cl.CommandQueue:
    return cl.CommandQueue(device.context)


def allocate(device: Device, nbytes: int) -> cl.Buffer:
    """An uninitialised buffer (at least one byte: OpenCL refuses empty ones)."""
    return cl.Buffer(device.context, cl.mem_flags.READ_WRITE, max(int(nbytes), 1))


def upload(device: Device, host: np.ndarray) -> cl.Buffer:
    """A buffer holding a copy of `host`, copied at creation (no queue round trip)."""
    if not host.size:
        return allocate(device, 0)
    return cl.Buffer(device.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                     hostbuf=np.ascontiguousarray(host))


def download(queue: cl.CommandQueue, buffer: cl.Buffer, host: np.ndarray,
             lock=None) -> np.ndarray:
    """Copy `buffer` into `host` (waiting for it) and return it."""
    if host.size:
        with lock or nullcontext():
            done = cl.enqueue_copy(queue, host, buffer, is_blocking=False)
        done.wait()
    return host


def download_all(queue: cl.CommandQueue, pairs, lock=None) -> None:
    """Copy each (buffer, host array) pair, waiting once for all of them."""
    with lock or nullcontext():
        done = [cl.enqueue_copy(queue, host, buf, is_blocking=False) for buf, host in pairs if host.size]
    if done:
        cl.wait_for_events(done)


def wait_for_queue(queue: cl.CommandQueue, lock=None) -> None:
    """Wait until everything put on `queue` so far has run."""
    with lock or nullcontext():
        done = cl.enqueue_marker(queue)
    done.wait()
