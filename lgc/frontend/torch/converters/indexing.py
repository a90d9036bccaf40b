"""Gathers and scatters: advanced indexing (`x[i, j]`, `x[i] = v`), gather/scatter along a
dim, and the functional forms of slice and select assignment."""
from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ...onnx.converters.layout import broadcast_to, reshape, slice_, transpose
from ....ops._rules import broadcast_shapes
from . import converter
from .layout import axis


def _positions(ctx, x, indices):
    """Advanced indexing's pieces: x with its indexed dims moved to the front, their index
    tensors stacked as [B..., k] (negative indices wrapped), B, and where B lands in the
    result (PyTorch puts it in place of adjacent indexed dims, else first)."""
    rank = x.type.rank
    dims = [d for d, i in enumerate(indices) if i is not None]
    if any(indices[d].dtype.is_bool for d in dims):
        raise NotImplementedError("boolean mask indexing (its result's shape depends on the data)")
    rest = [d for d in range(rank) if d not in dims]
    b = broadcast_shapes(*[indices[d].shape for d in dims])
    cols = []
    for d in dims:
        i = ctx.cast(indices[d], dtypes.i64)
        wrapped = ctx.op("add", [i, ctx.const(np.asarray(x.shape[d], np.int64))])
        i = ctx.op("where", [ctx.op("lt", [i, ctx.const(np.asarray(0, np.int64))]), wrapped, i])
        cols.append(reshape(ctx, broadcast_to(ctx, i, b), b + (1,)))
    stacked = cols[0] if len(cols) == 1 else ctx.op("concat", cols, {"axis": len(b)})
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    at = dims[0] if adjacent else 0
    return transpose(ctx, x, dims + rest), stacked, b, at


@converter("aten.index.Tensor")
def index(ctx, x, indices):
    indices = list(indices) + [None] * (x.type.rank - len(indices))
    xt, stacked, b, at = _positions(ctx, x, indices)
    y = ctx.op("gather_nd", [xt, stacked])            # [B..., rest...]
    nb = len(b)
    if at == 0:
        return y
    perm = list(range(nb, nb + at)) + list(range(nb)) + list(range(nb + at, y.type.rank))
    return transpose(ctx, y, perm)


@converter("aten.index_put.default")
def index_put(ctx, x, indices, values, accumulate=False):
    indices = list(indices) + [None] * (x.type.rank - len(indices))
    values = ctx.tensor(values, x.dtype)
    masks = [i for i in indices if i is not None and i.dtype.is_bool]
    if masks:   # x[mask] = v: where(mask, v, x) when v is one value or has the mask's shape
        (mask,) = masks
        if indices.index(mask) != 0 or (values.type.size != 1 and values.shape != mask.shape):
            raise NotImplementedError("index_put with a boolean mask other than x[mask] = v")
        m = reshape(ctx, mask, mask.shape + (1,) * (x.type.rank - mask.type.rank))
        v = reshape(ctx, values, values.shape + (1,) * (x.type.rank - values.type.rank)) \
            if values.type.size != 1 else reshape(ctx, values, ())
        v = ctx.op("add", [x, v]) if accumulate else v
        return ctx.op("where", [m, v, x])
    xt, stacked, b, at = _positions(ctx, x, indices)
    dims = [d for d, i in enumerate(indices) if i is not None]
    rest = [x.shape[d] for d in range(x.type.rank) if d not in dims]
    nb = len(b)
    # values broadcast to x[indices]'s shape, then moved to [B..., rest...]
    vshape = tuple(rest[:at]) + b + tuple(rest[at:])
    v = broadcast_to(ctx, reshape(ctx, values, (1,) * (len(vshape) - values.type.rank) + values.shape),
                     vshape)
    if at:
        v = transpose(ctx, v, list(range(at, at + nb)) + list(range(at)) + list(range(at + nb, len(vshape))))
    y = ctx.op("scatter_nd", [xt, stacked, v], {"reduction": "add" if accumulate else "none"})
    order = dims + [d for d in range(x.type.rank) if d not in dims]
    return transpose(ctx, y, list(np.argsort(order)))


@converter("aten.index_select.default")
def index_select(ctx, x, dim, index):
    if x.type.rank == 0:
        return x
    return ctx.op("gather", [x, index], {"axis": axis(dim, x.type.rank)})


@converter("aten.gather.default")
def gather(ctx, x, dim, index, sparse_grad=False):
    return ctx.op("gather_elements", [x, index], {"axis": axis(dim, x.type.rank)})


def _scatter(ctx, x, dim, index, src, reduction="none"):
    src = ctx.tensor(src, x.dtype)
    if src.shape != index.shape:   # a value, or a larger src of which the index's part is used
        src = broadcast_to(ctx, src, index.shape) if src.type.rank == 0 else \
            slice_(ctx, src, [0] * index.type.rank, list(index.shape))
    return ctx.op("scatter_elements", [x, index, src],
                  {"axis": axis(dim, x.type.rank), "reduction": reduction})


@converter("aten.scatter.src", "aten.scatter.value")
def scatter(ctx, x, dim, index, src):
    return _scatter(ctx, x, dim, index, src)


@converter("aten.scatter_add.default")
def scatter_add(ctx, x, dim, index, src):
    return _scatter(ctx, x, dim, index, src, "add")


_REDUCTIONS = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


@converter("aten.scatter_reduce.two")
def scatter_reduce(ctx, x, dim, index, src, reduce, include_self=True):
    if reduce not in _REDUCTIONS or not include_self:
        raise NotImplementedError(f"scatter_reduce with reduce={reduce!r}, include_self={include_self}")
    return _scatter(ctx, x, dim, index, src, _REDUCTIONS[reduce])


@converter("aten.slice_scatter.default")
def slice_scatter(ctx, x, src, dim=0, start=None, end=None, step=1):
    """x with x[start:end:step] along dim replaced by src: a concat for unit steps, else a
    scatter at constant positions."""
    d = axis(dim, x.type.rank)
    r = range(*slice(start, end, step).indices(x.shape[d]))
    src = ctx.cast(src, x.dtype)
    if len(r) == x.shape[d] and step == 1:
        return src
    if step == 1:
        parts = [slice_(ctx, x, [0], [r.start], [d]), src, slice_(ctx, x, [r.stop], [x.shape[d]], [d])]
        return ctx.op("concat", [p for p in parts if p.shape[d]], {"axis": d})
    pos = np.asarray(r, dtype=np.int64).reshape((-1,) + (1,) * (x.type.rank - 1 - d))
    idx = ctx.const(np.broadcast_to(pos, src.shape).copy())
    return ctx.op("scatter_elements", [x, idx, src], {"axis": d})


@converter("aten.select_scatter.default")
def select_scatter(ctx, x, src, dim, index):
    d = axis(dim, x.type.rank)
    i = index % x.shape[d]
    src = reshape(ctx, src, src.shape[:d] + (1,) + src.shape[d:])
    return slice_scatter(ctx, x, src, d, i, i + 1)


@converter("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(ctx, x, mask, value):
    return ctx.op("where", [mask, ctx.tensor(value, x.dtype), x])


@converter("aten.masked_scatter.default")
def masked_scatter(ctx, x, mask, source):
    """x with its masked positions filled, in order, from source's elements: the k-th true
    position (a running count of the mask) reads source's k-th element."""
    mask = broadcast_to(ctx, ctx.cast(mask, dtypes.bool_), x.shape)
    n = x.type.size
    count = ctx.op("cumsum", [ctx.cast(reshape(ctx, mask, (n,)), dtypes.i64)], {"axis": 0})
    last = ctx.const(np.asarray(max(source.type.size - 1, 0), np.int64))
    pos = ctx.op("min", [ctx.op("max", [ctx.op("sub", [count, ctx.const(np.asarray(1, np.int64))]),
                                        ctx.const(np.asarray(0, np.int64))]), last])
    values = ctx.op("gather", [reshape(ctx, ctx.cast(source, x.dtype), (source.type.size,)), pos],
                    {"axis": 0})
    return ctx.op("where", [mask, reshape(ctx, values, x.shape), x])


@converter("aten._embedding_bag.default", "aten._embedding_bag_forward_only.default")
def embedding_bag(ctx, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=-1):
    """Sum, mean or max of each bag's rows (bag b: indices[offsets[b]:offsets[b + 1]]), as a
    [bags, n] membership matrix times the gathered rows; the auxiliary outputs (for the
    backward pass) are not produced."""
    n = indices.type.size
    bags = offsets.type.size - (1 if include_last_offset else 0)
    k = ctx.const(np.arange(n, dtype=np.int64).reshape(1, n))
    # index k's bag: how many later bags start at or before it (with include_last_offset,
    # k past the last offset lands in bag `bags`, which is no bag)
    m = offsets.type.size - 1
    starts = ctx.cast(reshape(ctx, slice_(ctx, offsets, [1], [m + 1]), (m, 1)), dtypes.i64)
    bag = ctx.op("reduce_sum", [ctx.cast(ctx.op("ge", [k, starts]), dtypes.i64)],
                 {"axes": (0,), "keepdims": 1}) if m else ctx.const(np.zeros((1, n), np.int64))
    member = ctx.op("eq", [bag, ctx.const(np.arange(bags, dtype=np.int64).reshape(bags, 1))])
    if padding_idx is not None and padding_idx >= 0:
        keep = ctx.op("not", [ctx.op("eq", [reshape(ctx, indices, (1, n)),
                                            ctx.tensor(padding_idx, indices.dtype)])])
        member = ctx.op("and", [member, keep])
    rows = ctx.op("gather", [weight, indices], {"axis": 0})                # [n, D]
    if per_sample_weights is not None:
        rows = ctx.op("mul", [rows, reshape(ctx, per_sample_weights, (n, 1))])
    m = ctx.cast(member, weight.dtype)
    count = ctx.op("reduce_sum", [m], {"axes": (1,), "keepdims": 1})          # [bags, 1]
    if mode == 2:
        masked = ctx.op("where", [reshape(ctx, member, (bags, n, 1)), reshape(ctx, rows, (1,) + rows.shape),
                                  ctx.scalar(-np.inf, weight)])
        out = ctx.op("reduce_max", [masked], {"axes": (1,), "keepdims": 0})
        out = ctx.op("where", [ctx.op("gt", [count, ctx.scalar(0, count)]), out, ctx.scalar(0, out)])
    else:
        out = ctx.op("matmul", [m, rows])
        if mode == 1:
            out = ctx.op("div", [out, ctx.op("max", [count, ctx.scalar(1, count)])])
    return out, None, None, None
