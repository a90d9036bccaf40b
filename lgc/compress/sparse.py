"""Sparse storage for pruned matmul weights, and the measured rule that decides it.

A magnitude-pruned weight W [K, N] can run as sparse_matmul (lgc.ops.sparse: CSR by output
column) instead of the dense matmul. Which is faster depends on the sparsity, the shapes
and the device (the dense kernels are register-tiled and vectorised; the sparse one
gathers), so `choose` does not guess: it compiles the layer both ways as one-node graphs
on the device, times the kernels with OpenCL profiling events, interleaved (dense, sparse,
dense, ...), and returns the two medians. Results are cached per (device, shapes, nnz).
"""
from __future__ import annotations

import numpy as np

import lgc

from ..ir.builder import GraphBuilder
from ..ir.graph import TensorType, Value
from ..ops.sparse import dense_to_csr
from ..runtime.device import select_device
from ..runtime.timing import run_seconds

_cache: dict = {}


def to_sparse(rb: GraphBuilder, x: Value, w: np.ndarray, name: str | None = None) -> Value:
    """Add sparse_matmul(x, CSR(w)) to `rb` (a GraphBuilder or a Rebuild); returns its output."""
    v, i, p = dense_to_csr(w)
    return rb.op("sparse_matmul", [x, rb.const(v), rb.const(i), rb.const(p)],
                 {"k": int(w.shape[0])}, name)


def layer_graphs(x_type: TensorType, w: np.ndarray):
    """The layer as two one-node graphs: dense matmul and sparse_matmul."""
    out = []
    for sparse in (False, True):
        b = GraphBuilder("sparse_layer" if sparse else "dense_layer")
        x = b.input("x", x_type)
        y = to_sparse(b, x, w) if sparse else b.op("matmul", [x, b.const(w)])
        out.append(b.build([y]))
    return out


def choose(x_type: TensorType, w: np.ndarray, device=None, runs: int = 15) -> tuple[float, float]:
    """(dense seconds, sparse seconds): median kernel time of the layer each way, measured."""
    dev = select_device(device)
    key = (getattr(dev, "name", str(dev)), x_type, w.shape, int(np.count_nonzero(w)))
    if key in _cache:
        return _cache[key]
    exes = [lgc.compile(g, device=dev, opt_level=0, profile=True) for g in layer_graphs(x_type, w)]
    x = np.random.default_rng(0).standard_normal(x_type.shape).astype(x_type.dtype.np)
    secs = run_seconds(dict(enumerate(exes)), [{e.input_names[0]: x} for e in exes], runs,
                       warmup=2, kernel_time=True)
    _cache[key] = (secs[0], secs[1])
    return _cache[key]
