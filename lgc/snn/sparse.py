"""Spike-sparse inference: a layer's input spikes s [..., K] times W [K, N] computed from
the active inputs only (lgc.ops.spike: active_indices, then spike_matmul), and the
measured rule that decides, per layer, whether that beats the dense matmul.

Which is faster depends on how many inputs spike, the shapes and the device (the dense
kernels are register-tiled and vectorised; the sparse one walks index lists), so `choose`
does not guess: it compiles the layer both ways as a traced graph with W constant (as in
an exported network), runs both on a sample of the layer's real input spikes, times the
kernels with OpenCL profiling events, interleaved (dense, sparse, dense, ...), and keeps
the faster by median.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops.core import bind
from ..runtime import Executable
from ..runtime.timing import run_seconds
from ..trace.eager import runtime
from ..trace.jit import make_ir


def spike_matmul(s, w):
    """s @ w, reading only the rows of w where s is nonzero (same value as s @ w)."""
    return bind("spike_matmul", s, bind("active_indices", s), w)


def matmul(s, w, path: str = "dense"):
    """s @ w by `path`: "dense" (the matmul) or "sparse" (spike_matmul)."""
    if path == "dense":
        return s @ w
    if path == "sparse":
        return spike_matmul(s, w)
    raise ValueError(f"snn.matmul: path must be 'dense' or 'sparse', got {path!r}")


class Choice(NamedTuple):
    path: str               # "dense" or "sparse": the faster
    dense_seconds: float    # median kernel time of each
    sparse_seconds: float


def time_paths(w: np.ndarray, spikes: np.ndarray, runs: int = 15, device=None):
    """Median kernel seconds of spikes @ w each way, measured interleaved: (dense, sparse)."""
    w = np.asarray(w, np.float32)
    spikes = np.asarray(spikes, np.float32)
    dev = device if device is not None else runtime().device
    exes = [Executable.from_graph(make_ir(lambda s, p=p: matmul(s, w, p))(spikes), dev,
                                  profile=True) for p in ("dense", "sparse")]
    secs = run_seconds(dict(enumerate(exes)), [{e.input_names[0]: spikes} for e in exes], runs,
                       warmup=2, kernel_time=True)
    return secs[0], secs[1]


def choose(w: np.ndarray, spikes: np.ndarray, runs: int = 15, device=None) -> Choice:
    """The faster path for the layer W [K, N] on this sample of its input spikes [..., K]."""
    dense, sparse = time_paths(w, spikes, runs, device)
    return Choice("sparse" if sparse < dense else "dense", dense, sparse)
