"""Spike-sparse matmul: x @ W reading only the rows of W where x is nonzero (lgc.snn).

A spiking layer's input is mostly zeros (binary spikes, a few percent active), so its
matmul can skip the inactive rows of W. Two ops, so that each kernel is simple:

- active_indices(x [..., K]) -> int32 [..., K]: per row of x, the positions of its nonzero
  entries in increasing order, then -1 for the rest.
- spike_matmul(x [..., K], idx [..., K] int32, W [K, N]) -> [..., N]: sum over the listed
  positions k of x[k] * W[k, :]. With idx = active_indices(x) that is x @ W, which is what
  the gradient rules assume (the gradient of a spike flows to silent inputs too, as
  surrogate-gradient training needs). The kernel (lgc.backends.kernels.spike) does
  2 * N FLOPs per active entry instead of 2 * N * K per row.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import OpDef, OpError, register


def _infer_active(types, attrs):
    x, = types
    if x.rank < 1 or not x.dtype.is_float:
        raise OpError(f"active_indices: x must be float with at least one axis, got "
                      f"{x.dtype}{list(x.shape)}")
    return [TensorType(dtypes.by_name("i32"), x.shape)]


def active_positions(x: np.ndarray) -> np.ndarray:
    """NumPy active_indices: each row's nonzero positions first (ascending), then -1."""
    x = np.asarray(x)
    out = np.full(x.shape, -1, np.int32)
    for r in np.ndindex(x.shape[:-1]):
        nz = np.flatnonzero(x[r])
        out[r][:len(nz)] = nz
    return out


def _ref_active(xs, attrs):
    return [active_positions(xs[0])]


def _infer_spike(types, attrs):
    x, idx, w = types
    if not x.dtype.is_float or w.dtype != x.dtype:
        raise OpError(f"spike_matmul: x and W must share a float dtype, got {x.dtype} and {w.dtype}")
    if idx.dtype.name != "i32" or idx.shape != x.shape:
        raise OpError(f"spike_matmul: idx must be int32 of x's shape {x.shape}, got "
                      f"{idx.dtype}{list(idx.shape)}")
    if x.rank < 1 or w.rank != 2 or w.shape[0] != x.shape[-1]:
        raise OpError(f"spike_matmul: x {list(x.shape)} and W {list(w.shape)} do not fit "
                      "x [..., K] @ W [K, N]")
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + (w.shape[1],))]


def _ref_spike(xs, attrs):
    x, idx, w = xs
    K = x.shape[-1]
    x2, i2 = x.reshape(-1, K).astype(np.float64), idx.reshape(-1, K)
    out = np.zeros((x2.shape[0], w.shape[1]))
    for r in range(x2.shape[0]):
        listed = i2[r][: np.argmax(i2[r] < 0)] if (i2[r] < 0).any() else i2[r]
        listed = np.clip(listed, 0, K - 1)            # as the kernel: a bad index is clamped
        out[r] = x2[r, listed] @ w[listed].astype(np.float64)
    return [out.reshape(x.shape[:-1] + (w.shape[1],)).astype(x.dtype)]


def _spike_flops(ins, outs, attrs):
    """Dense count (what the op replaces); the kernel's own count is per active entry."""
    return 2 * outs[0].size * ins[0].shape[-1]


register(OpDef("active_indices", _infer_active, _ref_active, fusion="opaque", num_inputs=1,
               doc="per row of x [..., K], the positions of its nonzeros (ascending), then -1"))
register(OpDef("spike_matmul", _infer_spike, _ref_spike, fusion="out_fusable", num_inputs=3,
               flops=_spike_flops,
               doc="x [..., K] @ W [K, N] over the rows idx lists (active_indices(x))"))


# ---- batching and gradient rules (lgc.vmap, lgc.grad) ---------------------------------------

from . import batch_rules, prim  # noqa: E402
from .core import bind  # noqa: E402
from ..ir.registry import OPS  # noqa: E402


def _vjp_spike(cts, ins, outs, attrs):
    """The rules of x @ W (idx lists x's nonzeros): x gets g @ W^T, W gets x^T g."""
    x, _, w = ins
    g = cts[0]
    K, N = w.shape
    gx = prim.matmul(g, prim.transpose(w))
    gw = prim.matmul(prim.transpose(prim.reshape(x, (-1, K))), prim.reshape(g, (-1, N)))
    return [gx, None, gw]


def _batch_spike(args, dims, attrs):
    """x and idx batched alike, W shared: the batch axis joins x's leading axes."""
    x, idx, w = args
    dx, di, dw = dims
    if dw is not None or dx is None or di is None:
        return batch_rules.loop("spike_matmul")(args, dims, attrs)
    return [bind("spike_matmul", batch_rules.moveaxis(x, dx, 0),
                      batch_rules.moveaxis(idx, di, 0), w)], [0]


OPS["active_indices"].batch = batch_rules.leading_axes("active_indices")
OPS["active_indices"].vjp = lambda cts, ins, outs, attrs: [None]   # integer positions
OPS["spike_matmul"].batch = _batch_spike
OPS["spike_matmul"].vjp = _vjp_spike
