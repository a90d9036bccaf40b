"""NumPy indexing `x[...]` and functional updates `x.at[...].set/add/...` on core ops.

Reading: basic indices (ints, slices, None, ...) become one `slice` op and a `reshape`;
integer-array indices (NumPy's advanced indexing, with its rule for where the broadcast
index dimensions go) become one `gather` along the indexed axes, flattened into one when
there are several. Out-of-range indices are clamped, as in JAX.

Updating: the flat positions the index selects are found by indexing an iota of x's size
(with NumPy at trace time when the index is static), then one `scatter_elements` on the
flattened array writes or combines the updates.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..ops import prim
from ..ops.core import ArrayBase, ConcretizationError, bind
from . import numpy as lnp
from .eager import Array
from .pytree import tree_leaves


def _is_int_array(i) -> bool:
    if isinstance(i, ArrayBase):
        return i.dtype.kind in "iub"
    return isinstance(i, np.ndarray)


def _normalize(x, idx):
    """Index tuple with one entry per axis of x after None axes are inserted, and x
    reshaped to have those axes. Boolean masks must be concrete (their size is the shape)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    entries = []
    for i in idx:
        if isinstance(i, list):
            i = lnp.asarray(i) if any(isinstance(v, ArrayBase) for v in tree_leaves(i)) \
                else np.asarray(i)
        if isinstance(i, ArrayBase) and i.dtype == np.bool_:
            if not isinstance(i, Array):
                raise ConcretizationError(
                    "boolean mask indexing on a traced mask gives a data-dependent shape, which "
                    "lgc.jit cannot compile; use lnp.where(mask, x, other) instead")
            i = np.asarray(i)
        if isinstance(i, (bool, np.bool_)) or isinstance(i, np.ndarray) and i.dtype == np.bool_ \
                and i.ndim == 0:
            raise NotImplementedError("a scalar boolean index")
        if isinstance(i, np.ndarray) and i.dtype == np.bool_:   # a concrete mask: its nonzeros
            entries += [n.astype(np.int32) for n in np.nonzero(i)]
            continue
        if isinstance(i, np.ndarray) and i.dtype.kind not in "iu":
            raise IndexError(f"arrays used as indices must be of integer type, got {i.dtype}")
        entries.append(i)
    n_ell = sum(e is Ellipsis for e in entries)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for e in entries if e is not None and e is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, but "
                         f"{used} were indexed")
    if n_ell:   # (not entries.index: arrays in the list would compare elementwise)
        k = next(j for j, e in enumerate(entries) if e is Ellipsis)
        entries[k:k + 1] = [slice(None)] * (x.ndim - used)
    else:
        entries += [slice(None)] * (x.ndim - used)
    if any(e is None for e in entries):
        shape, it = [], iter(x.shape)
        for e in entries:
            shape.append(1 if e is None else next(it))
        x = lnp.reshape(x, tuple(shape))
        entries = [slice(None) if e is None else e for e in entries]
    return x, entries


def _is_advanced(e) -> bool:
    return isinstance(e, (np.ndarray, ArrayBase))


def getitem(x, idx):
    x = lnp.asarray(x)
    x, entries = _normalize(x, idx)
    advanced = [k for k, e in enumerate(entries) if _is_advanced(e)]
    if advanced:  # ints join the advanced indices as 0-d arrays (NumPy's rule)
        entries = [np.asarray(e, np.int32) if isinstance(e, (int, np.integer)) else e
                   for e in entries]
        advanced = [k for k, e in enumerate(entries) if _is_advanced(e)]
    starts, steps, shape, drop = [], [], [], []
    for k, (e, n) in enumerate(zip(entries, x.shape)):
        if isinstance(e, slice):
            a, b, s = e.indices(n)
            m = len(range(a, b, s))
            starts.append(a if m else 0), steps.append(s), shape.append(m)
        elif _is_advanced(e):
            starts.append(0), steps.append(1), shape.append(n)
        else:
            try:
                i = operator.index(e)
            except ConcretizationError:
                raise
            except TypeError:
                raise IndexError(f"only integers, slices (':'), ellipsis ('...'), None and "
                                 f"integer or boolean arrays are valid indices, got "
                                 f"{type(e).__name__}") from None
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {k} with size {n}")
            starts.append(i % n), steps.append(1), shape.append(1)
            drop.append(k)
    x = prim.strided_slice(x, starts, steps, shape)
    if drop:
        x = lnp.reshape(x, tuple(d for k, d in enumerate(x.shape) if k not in drop))
        keep = [k for k in range(len(entries)) if k not in drop]
        entries = [entries[k] for k in keep]
        advanced = [keep.index(k) for k in advanced]
    if not advanced:
        return x
    return _gather_advanced(x, [entries[k] for k in advanced], advanced)


def _wrap_clamp(i, n):
    """Negative indices wrap once, the rest are clamped into [0, n)."""
    if isinstance(i, np.ndarray):
        i = np.where(i < 0, i + n, i)
        return np.clip(i, 0, max(n - 1, 0)).astype(np.int32)
    i = lnp.asarray(i)
    if i.dtype.kind not in "iu":
        raise IndexError(f"arrays used as indices must be of integer type, got {i.dtype}")
    i = lnp.astype(i, np.int32)
    i = lnp.where(lnp.less(i, 0), lnp.add(i, n), i)
    return lnp.clip(i, 0, max(n - 1, 0))


def _gather_advanced(x, idxs, axes):
    if len(axes) == 1:
        i = idxs[0]
        if isinstance(i, np.ndarray):
            i = i.astype(np.int32)
        return bind("gather", x, i, axis=axes[0], weak=x.weak_type)
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    others = [k for k in range(x.ndim) if k not in axes]
    pos = axes[0] if adjacent else 0
    perm = others[:pos] + axes + others[pos:]
    xt = lnp.transpose(x, perm)
    dims = [x.shape[k] for k in axes]
    xt = lnp.reshape(xt, xt.shape[:pos] + (math.prod(dims),) + xt.shape[pos + len(axes):])
    strides = [math.prod(dims[j + 1:]) for j in range(len(dims))]
    parts = [_wrap_clamp(i, n) for i, n in zip(idxs, dims)]
    if all(isinstance(p, np.ndarray) for p in parts):
        flat = sum(p * s for p, s in zip(np.broadcast_arrays(*parts), strides)).astype(np.int32)
    else:
        flat = parts[0] * strides[0]
        for p, s in zip(parts[1:], strides[1:]):
            flat = lnp.add(flat, lnp.multiply(p, s))
        flat = lnp.broadcast_to(flat, lnp.broadcast_shapes(*[lnp.shape(p) for p in parts]))
    return bind("gather", xt, flat, axis=pos, weak=x.weak_type)


# ---- x.at[idx] --------------------------------------------------------------------------------

class IndexUpdateHelper:
    """x.at[idx] -> an IndexUpdateRef (jax.numpy's functional update syntax)."""

    def __init__(self, x):
        self.x = x

    def __getitem__(self, idx):
        return IndexUpdateRef(self.x, idx)


def _static(idx) -> bool:
    leaves = idx if isinstance(idx, tuple) else (idx,)
    return not any(isinstance(i, ArrayBase) and not isinstance(i, Array) for i in leaves)


def _to_host(idx):
    if isinstance(idx, tuple):
        return tuple(_to_host(i) for i in idx)
    return np.asarray(idx) if isinstance(idx, Array) else idx


class IndexUpdateRef:
    def __init__(self, x, idx):
        self.x, self.idx = x, idx

    def get(self):
        return getitem(self.x, self.idx)

    def set(self, values):
        return _scatter(self.x, self.idx, values, "none")

    def add(self, values):
        return _scatter(self.x, self.idx, values, "add")

    def multiply(self, values):
        return _scatter(self.x, self.idx, values, "mul")

    mul = multiply

    def min(self, values):
        return _scatter(self.x, self.idx, values, "min")

    def max(self, values):
        return _scatter(self.x, self.idx, values, "max")


def _leading(x, idx):
    """The index entries when idx is integers/integer arrays on the leading axes followed
    only by full slices or '...' (x.at[i], x.at[i, j]: the common case); else None."""
    entries = list(idx) if isinstance(idx, tuple) else [idx]
    while entries and (entries[-1] is Ellipsis or
                       isinstance(entries[-1], slice) and entries[-1] == slice(None)):
        entries.pop()
    if not entries or len(entries) > x.ndim:
        return None
    for e in entries:
        ok = isinstance(e, (int, np.integer)) or \
            (isinstance(e, (ArrayBase, np.ndarray)) and e.dtype.kind in "iu")
        if not ok:
            return None
    return entries


def _scatter(x, idx, values, reduction):
    """Traced indices on the leading axes: one scatter_nd (negative indices wrap, out-of-range
    updates are dropped, as in JAX). Otherwise the flat positions of the indexed elements
    and one scatter_elements on x's flat view; static indices follow NumPy exactly (an
    out-of-range one raises IndexError), other traced ones are clamped."""
    x = lnp.asarray(x)
    lead = None if _static(idx) else _leading(x, idx)
    if lead is not None:
        parts = lnp.broadcast_arrays(*[lnp.astype(lnp.asarray(e), np.int32) for e in lead])
        ind = lnp.stack(parts, axis=-1)
        v = lnp.broadcast_to(lnp.astype(values, x.dtype), ind.shape[:-1] + x.shape[len(lead):])
        if v.size == 0:
            return x
        return bind("scatter_nd", x, ind, v, reduction=reduction)
    iota = np.arange(x.size, dtype=np.int32).reshape(x.shape)
    if _static(idx):
        pos = iota[_to_host(idx)]
    else:
        pos = getitem(lnp.asarray(iota), idx)
    v = lnp.broadcast_to(lnp.astype(values, x.dtype), lnp.shape(pos))
    if lnp.size(pos) == 0:
        return x
    pos = pos.reshape(-1) if isinstance(pos, np.ndarray) else lnp.ravel(pos)
    flat = bind("scatter_elements", lnp.reshape(x, (x.size,)), pos, lnp.ravel(v), axis=0,
                reduction=reduction)
    return lnp.reshape(flat, x.shape)
