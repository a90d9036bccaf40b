"""Views, copies, concatenation, padding and tensor creation. Shapes are concrete at import,
so sizes (after SymInt arithmetic) are plain ints and the creation ops fold to constants."""
from __future__ import annotations

import math

import numpy as np

from ....ir import dtypes
from ....ir.graph import Value
from ...onnx.converters.layout import broadcast_to, filled, reshape, slice_, transpose
from ..context import lgc_dtype
from . import converter


def axis(d: int, rank: int) -> int:
    """A dim argument made non-negative (a 0-d tensor takes dim 0 and -1)."""
    return d % rank if rank else 0


def full_of(ctx, shape, value, dtype: dtypes.DType) -> Value:
    return filled(ctx, shape, value, dtype.np)


def _view_shape(x, size) -> tuple[int, ...]:
    size = [int(d) for d in size]
    if -1 in size:
        known = math.prod(d for d in size if d != -1)
        size[size.index(-1)] = x.type.size // known if known else 0
    return tuple(size)


@converter("aten.view.default", "aten._unsafe_view.default")
def view(ctx, x, size):
    return reshape(ctx, x, _view_shape(x, size))


@converter("aten.permute.default")
def permute(ctx, x, dims):
    perm = [axis(d, x.type.rank) for d in dims]
    y = transpose(ctx, x, perm)
    if perm == [1, 0] and x in ctx.known:   # a Linear's weight: matmuls may read W itself
        ctx.transposed_of[y] = x
    return y


@converter("aten.t.default")
def t(ctx, x):
    return x if x.type.rank < 2 else permute(ctx, x, (1, 0))


@converter("aten.transpose.int")
def transpose_int(ctx, x, dim0, dim1):
    perm = list(range(x.type.rank))
    a, b = axis(dim0, x.type.rank), axis(dim1, x.type.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(ctx, x, perm)


@converter("aten.expand.default")
def expand(ctx, x, size, implicit=False):
    lead = len(size) - x.type.rank
    shape = [x.shape[i - lead] if d == -1 else int(d) for i, d in enumerate(size)]
    return broadcast_to(ctx, x, shape)


@converter("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def squeeze(ctx, x, dim=None):
    rank = x.type.rank
    dims = range(rank) if dim is None else [dim] if isinstance(dim, int) else dim
    drop = {axis(d, rank) for d in dims if rank and x.shape[axis(d, rank)] == 1}
    return reshape(ctx, x, [n for i, n in enumerate(x.shape) if i not in drop])


@converter("aten.unsqueeze.default")
def unsqueeze(ctx, x, dim):
    d = axis(dim, x.type.rank + 1)
    return reshape(ctx, x, x.shape[:d] + (1,) + x.shape[d:])


@converter("aten.cat.default")
def cat(ctx, tensors, dim=0):
    dt = ctx.promote(*tensors)
    # legacy: 1-D empty tensors are skipped whatever the others' rank
    xs = [ctx.cast(x, dt) for x in tensors if not (x.type.rank == 1 and x.shape[0] == 0)]
    if not xs:
        return ctx.cast(tensors[0], dt)
    return ctx.onnx("Concat", xs, axis=axis(dim, xs[0].type.rank))


def _pieces(ctx, x, sizes, dim):
    d = axis(dim, x.type.rank)
    outs, at = [], 0
    for s in sizes:
        outs.append(slice_(ctx, x, [at], [at + s], [d]))
        at += s
    return tuple(outs)


@converter("aten.split_with_sizes.default")
def split_with_sizes(ctx, x, split_sizes, dim=0):
    return _pieces(ctx, x, split_sizes, dim)


@converter("aten.split.Tensor")
def split(ctx, x, split_size, dim=0):
    n = x.shape[axis(dim, x.type.rank)]
    return _pieces(ctx, x, [min(split_size, n - k) for k in range(0, n, split_size)] or [0], dim)


@converter("aten.unbind.int")
def unbind(ctx, x, dim=0):
    d = axis(dim, x.type.rank)
    return tuple(select(ctx, x, d, i) for i in range(x.shape[d]))


@converter("aten.slice.Tensor")
def slice_tensor(ctx, x, dim=0, start=None, end=None, step=1):
    return slice_(ctx, x, [start], [end], [axis(dim, x.type.rank)], [step])


@converter("aten.select.int")
def select(ctx, x, dim, index):
    d = axis(dim, x.type.rank)
    i = index % x.shape[d]
    y = slice_(ctx, x, [i], [i + 1], [d])
    return reshape(ctx, y, x.shape[:d] + x.shape[d + 1:])


@converter("aten.flip.default")
def flip(ctx, x, dims):
    rank = x.type.rank
    ds = [axis(d, rank) for d in dims]
    return slice_(ctx, x, [x.shape[d] - 1 for d in ds], [-x.shape[d] - 1 for d in ds], ds,
                  [-1] * len(ds))


@converter("aten.roll.default")
def roll(ctx, x, shifts, dims=()):
    if not dims:
        flat = reshape(ctx, x, (x.type.size,))
        return reshape(ctx, roll(ctx, flat, shifts, [0]), x.shape)
    for s, d in zip(shifts, dims):
        d = axis(d, x.type.rank)
        n = x.shape[d]
        s %= n
        if s:
            a, b = _pieces(ctx, x, [n - s, s], d)
            x = ctx.op("concat", [b, a], {"axis": d})
    return x


@converter("aten.repeat.default")
def repeat(ctx, x, repeats):
    lead = len(repeats) - x.type.rank
    x = reshape(ctx, x, (1,) * lead + x.shape)
    if all(r == 1 for r in repeats):
        return x
    return ctx.op("tile", [x], {"repeats": tuple(int(r) for r in repeats)})


@converter("aten.diagonal.default")
def diagonal(ctx, x, offset=0, dim1=0, dim2=1):
    rank = x.type.rank
    a, b = axis(dim1, rank), axis(dim2, rank)
    rest = [k for k in range(rank) if k not in (a, b)]
    x = transpose(ctx, x, rest + [a, b])
    h, w = x.shape[-2:]
    start, n = (offset, min(h, w - offset)) if offset >= 0 else (-offset * w, min(h + offset, w))
    n = max(n, 0)
    flat = reshape(ctx, x, x.shape[:-2] + (h * w,))
    keep = (0,) * (len(rest))
    if n == 0:
        return full_of(ctx, x.shape[:-2] + (0,), 0, x.dtype)
    return ctx.op("slice", [flat], {"starts": keep + (start,), "steps": (1,) * len(rest) + (w + 1,),
                                    "shape": x.shape[:-2] + (n,)})


@converter("aten.as_strided.default")
def as_strided(ctx, x, size, stride, storage_offset=None):
    """Elements of x's (contiguous) storage at offset + sum(i_k * stride_k): a constant index
    map gathered from the flattened input."""
    index = np.full(tuple(size), storage_offset or 0, dtype=np.int64)
    for k, (n, s) in enumerate(zip(size, stride)):
        index = index + (np.arange(n, dtype=np.int64) * s).reshape((-1,) + (1,) * (len(size) - k - 1))
    flat = reshape(ctx, x, (x.type.size,))
    return ctx.op("gather", [flat, ctx.const(index)], {"axis": 0})


@converter("aten.clone.default", "aten.alias.default", "aten.lift_fresh_copy.default",
           "aten.detach.default")
def identity(ctx, x, memory_format=None):
    return x


@converter("aten._to_copy.default")
def to_copy(ctx, x, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
            memory_format=None):
    return x if dtype is None else ctx.cast(x, lgc_dtype(dtype))


@converter("prims.convert_element_type.default")
def convert_element_type(ctx, x, dtype):
    return ctx.cast(x, lgc_dtype(dtype))


@converter("aten.copy.default")
def copy(ctx, x, src, non_blocking=False):
    return broadcast_to(ctx, ctx.cast(src, x.dtype), x.shape)


# ---- creation -----------------------------------------------------------------------------

def _dtype(ctx, dtype, value=None) -> dtypes.DType:
    """An explicit dtype argument, else the one torch inferred for the node."""
    if dtype is not None:
        return lgc_dtype(dtype)
    return ctx.out_dtype() or ctx.promote(value if value is not None else 0.0)


@converter("aten.full.default")
def full(ctx, size, fill_value, dtype=None, layout=None, device=None, pin_memory=None):
    return full_of(ctx, size, fill_value, _dtype(ctx, dtype, fill_value))


@converter("aten.full_like.default")
def full_like(ctx, x, fill_value, dtype=None, layout=None, device=None, pin_memory=None,
              memory_format=None):
    return full_of(ctx, x.shape, fill_value, lgc_dtype(dtype) if dtype is not None else x.dtype)


def _filled_like(value):
    def conv(ctx, x, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
        return full_like(ctx, x, value, dtype)
    return conv


def _filled(value):
    """zeros, ones; and empty: uninitialised memory may hold anything, zeros are one such thing."""
    def conv(ctx, size, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
        return full_of(ctx, size, value, _dtype(ctx, dtype))
    return conv


converter("aten.zeros_like.default", "aten.empty_like.default")(_filled_like(0))
converter("aten.ones_like.default")(_filled_like(1))
converter("aten.empty.memory_format", "aten.zeros.default")(_filled(0))
converter("aten.ones.default")(_filled(1))


@converter("aten.empty_strided.default")
def empty_strided(ctx, size, stride, dtype=None, layout=None, device=None, pin_memory=None):
    return full_of(ctx, size, 0, _dtype(ctx, dtype))


@converter("aten.scalar_tensor.default")
def scalar_tensor(ctx, s, dtype=None, layout=None, device=None, pin_memory=None):
    return ctx.tensor(s, _dtype(ctx, dtype, s))


@converter("aten.arange.start_step", "aten.arange.start", "aten.arange.default")
def arange(ctx, start, end=None, step=1, dtype=None, layout=None, device=None, pin_memory=None):
    if end is None:
        start, end = 0, start
    dt = _dtype(ctx, dtype, start + end + step)
    if dt.is_float:   # PyTorch computes float ranges in double, as start + i * step
        n = max(0, math.ceil((end - start) / step))
        return ctx.const((start + np.arange(n, dtype=np.float64) * step).astype(dt.np))
    return ctx.const(np.arange(start, end, step).astype(dt.np))


@converter("aten.fill.Scalar", "aten.fill.Tensor")
def fill(ctx, x, value):
    if isinstance(value, Value):
        return broadcast_to(ctx, ctx.cast(value, x.dtype), x.shape)
    return full_of(ctx, x.shape, value, x.dtype)


# ---- padding ------------------------------------------------------------------------------

def _pads(x, pad) -> tuple[int, ...]:
    """ATen's (last_begin, last_end, prev_begin, prev_end, ...) as (begin..., end...)."""
    rank = x.type.rank
    begin, end = [0] * rank, [0] * rank
    for k in range(len(pad) // 2):
        begin[rank - 1 - k], end[rank - 1 - k] = int(pad[2 * k]), int(pad[2 * k + 1])
    return tuple(begin + end)


@converter("aten.constant_pad_nd.default")
def constant_pad_nd(ctx, x, pad, value=0):
    pads = _pads(x, pad)
    if not any(pads):
        return x
    value = float(value) if x.dtype.is_float else int(value)
    return ctx.op("pad", [x], {"pads": pads, "mode": "constant", "value": value})


def _mode_pad(mode):
    def conv(ctx, x, padding):
        return ctx.op("pad", [x], {"pads": _pads(x, padding), "mode": mode})
    return conv


for _n in (1, 2, 3):
    converter(f"aten.reflection_pad{_n}d.default")(_mode_pad("reflect"))
    converter(f"aten.replication_pad{_n}d.default")(_mode_pad("edge"))
