"""Concrete device arrays and eager execution.

An Array is a buffer on the OpenCL device plus its abstract value; it stays there until
`np.asarray` (or device_get) copies it back. Outside `jit`, every core op runs at once as a
one-op executable, compiled once per (op, attributes, input types) and cached, so lnp code
can be stepped through line by line. All work goes through one in-order command queue per
device, so results can feed the next op without waiting for the host.
"""
from __future__ import annotations

import atexit
import threading

import numpy as np

from ..compiler import Options, backend_for, compile as compile_graph
from ..errors import InputError
from ..ir.builder import GraphBuilder
from ..ops.core import ArrayBase, ShapedArray, Trace, get_aval, infer_avals, to_numpy_const
from ..runtime import Executor, memory, select_device
from . import pytree


class _Runtime:
    """The device lgc.numpy works on (LGC_DEVICE or the default), the backend that generates
    its kernels, its shared queue and the lock that keeps each caller's commands on that
    queue together (threads share Arrays, so they share the queue too)."""
    device = None
    backend = None
    queue = None
    lock = None


_runtime_lock = threading.Lock()


def runtime() -> _Runtime:
    if _Runtime.queue is None:
        with _runtime_lock:      # one queue, even when the first ops of two threads race
            if _Runtime.queue is None:
                device = select_device(None)
                _Runtime.backend = backend_for(device.target)
                _Runtime.lock = threading.Lock()
                _Runtime.device = device
                queue = memory.new_queue(device)
                atexit.register(queue.finish)   # no work in flight while Python tears down
                _Runtime.queue = queue
    return _Runtime


def new_buffer(nbytes: int):
    return memory.allocate(runtime().device, nbytes)


class Array(ArrayBase):
    """An array on the device (jax.Array): immutable, copied to the host only on request."""

    def __init__(self, buffer, aval: ShapedArray):
        self._buffer = buffer
        self.aval = aval

    @property
    def _buf(self):
        if self._buffer is None:
            raise InputError(f"this {self.dtype.name}{list(self.shape)} Array was donated to a "
                             f"jit call (donate_argnums): its buffer holds that call's result now")
        return self._buffer

    def delete(self) -> None:
        """Give up the buffer (jax.Array.delete): any later use raises. lgc.jit does this to
        donated arguments, whose buffers its results may now occupy."""
        self._buffer = None

    def is_deleted(self) -> bool:
        return self._buffer is None

    def __array__(self, dtype=None, copy=None):
        rt = runtime()
        host = memory.download(rt.queue, self._buf, np.empty(self.shape, self.dtype), rt.lock)
        return host if dtype is None else host.astype(dtype)

    def __reduce__(self):  # pickles (e.g. to Ray workers) as its host data
        return (device_put, (np.asarray(self),))

    def block_until_ready(self):
        rt = runtime()
        memory.wait_for_queue(rt.queue, rt.lock)
        return self

    @property
    def device(self):
        return runtime().device

    def __repr__(self):
        body = np.array2string(np.asarray(self), separator=", ", prefix="Array(")
        weak = ", weak_type=True" if self.weak_type else ""
        return f"Array({body}, dtype={self.dtype.name}{weak})"

    def __str__(self):
        return str(np.asarray(self))

    def __bool__(self):
        return bool(np.asarray(self))

    def __int__(self):
        return int(np.asarray(self))

    def __float__(self):
        return float(np.asarray(self))

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer arrays can be used as an index, not {self.dtype}")
        return int(np.asarray(self))

    def __format__(self, spec):
        return format(np.asarray(self).item() if self.ndim == 0 else np.asarray(self), spec)


def device_put(x, device=None) -> Array:
    """Copy a host value (NumPy array, Python scalar, nested lists) to the device; pytrees
    are mapped leaf by leaf. Arrays already on the device are returned as they are."""
    if device is not None and device is not runtime().device:
        raise ValueError("lgc.numpy works on one device (set LGC_DEVICE to choose it)")
    leaves, tree = pytree.flatten(x)
    return pytree.unflatten(tree, [_put(v) for v in leaves])


_small: dict = {}   # device copies of small constants (Python scalars in `x * 2.0`, ...)


def put_exact(host: np.ndarray) -> Array:
    """A host array on the device in a buffer of its own, with its dtype as it is (no
    canonicalization: int64 stays int64 without x64), for programs whose input types are
    fixed by a model rather than by tracing (lgc.trace.jit.Compiled.of_graph)."""
    host = np.array(host, order="C")
    return Array(memory.upload(runtime().device, host), ShapedArray(host.shape, host.dtype, False))


def _put(x, shared: bool = True) -> Array:
    """x on the device. shared=False: a buffer of its own even for a small constant (which
    is otherwise one cached device copy: a donated argument must not be that)."""
    if isinstance(x, Array):
        return x
    if isinstance(x, ArrayBase):
        raise TypeError("device_put of a traced value; it is already part of the computation")
    aval = get_aval(x)
    host = np.array(to_numpy_const(x, aval.dtype), order="C")  # ascontiguousarray makes 0-d 1-d
    key = (host.dtype.str, aval.shape, host.tobytes(), aval.weak_type) \
        if shared and host.size <= 4 else None
    if key in _small:
        return _small[key]
    out = Array(memory.upload(runtime().device, host), aval)
    if key is not None and len(_small) < 4096:
        _small[key] = out
    return out


def device_get(x):
    """Copy Arrays in a pytree back to NumPy arrays (other leaves are returned unchanged)."""
    leaves, tree = pytree.flatten(x)
    return pytree.unflatten(tree, [np.asarray(v) if isinstance(v, Array) else v for v in leaves])


# ---- eager execution ----------------------------------------------------------------------------

_cache: dict = {}


def _key(op, attrs, avals):
    items = tuple(attrs.items())
    try:
        hash(items)
    except TypeError:
        items = repr(items)
    return op, items, tuple((a.shape, a.dtype) for a in avals)


def one_op_executor(op: str, attrs: dict, avals):
    """The cached one-node program for op on inputs of these abstract values, and its
    output (shape, dtype) pairs; the type rule runs only when the entry is built."""
    key = _key(op, attrs, avals)
    hit = _cache.get(key)
    if hit is None:
        out_avals, attrs = infer_avals(op, avals, attrs, False)
        b = GraphBuilder(op)
        ins = [b.input(f"x{i}", a.tensor_type()) for i, a in enumerate(avals)]
        outs = b.op(op, ins, attrs, name=op, num_outputs=-1)
        rt = runtime()
        program = compile_graph(b.build(list(outs)), rt.backend, Options(opt_level=0)).program
        exe = Executor(program, rt.device, queue=rt.queue, lock=rt.lock)
        hit = _cache[key] = (exe, [(a.shape, a.dtype) for a in out_avals])
    return hit


class EvalTrace(Trace):
    """Level 0: ops on concrete Arrays run on the device now."""

    def pure(self, x):
        return _put(x)

    lift = pure

    def process_op(self, op, arrays, attrs, weak):
        exe, outs = one_op_executor(op, attrs, [a.aval for a in arrays])
        bufs = exe.run_buffers([a._buf for a in arrays])
        return [Array(b, ShapedArray(s, d, weak)) for b, (s, d) in zip(bufs, outs)]
