"""Indexing ops: gathers, scatters, one_hot, reverse_sequence, tensor_scatter, resize,
grid_sample, affine_grid, roi_align, col2im and max_unpool.

Indices follow ONNX: negative ones wrap once (idx + dim); scatters with a reduction apply
duplicate indices in order. The kernels are in lgc.backends.kernels.indexing; the tables
and coordinate rules that both they and the NumPy references follow (resize_axes,
col2im_blocks) live here.

The gradients of grid_sample and roi_align are the reverse mode of the ops' composition of
gathers and arithmetic (grid_sample_composed, roi_align_composed). Differentiation belongs
to the tracing layer above, so the rules call it through lgc.ops.core.vjp, a hook
lgc.trace.autodiff fills when imported (as the eval trace is registered).
"""
from __future__ import annotations

import itertools
import math
import operator

import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules
from ._rules import norm_axis


def _int_input(t: TensorType, what: str):
    if not t.dtype.is_int:
        raise OpError(f"{what} must be an integer tensor, got {t.dtype}")


def _wrap(idx, dim):
    idx = np.asarray(idx).astype(np.int64)
    return np.where(idx < 0, idx + dim, idx)


# ---- gather ---------------------------------------------------------------------------------

def _gather_infer(types, at):
    data, ind = types
    _int_input(ind, "gather indices")
    a = norm_axis(at["axis"], len(data.shape))
    return [TensorType(data.dtype, data.shape[:a] + ind.shape + data.shape[a + 1:])]


def _gather_ref(xs, at):
    data, ind = xs
    a = norm_axis(at["axis"], data.ndim)
    return [np.take(data, _wrap(ind, data.shape[a]), axis=a)]


def _batch_gather(args, dims, at):
    """Batched data or indices alone: gather on the shifted axis. Both: a gather_nd of
    (example, index) pairs from data [B, n, rest...], the rest moved back behind the index
    axes."""
    (data, ind), (dd, di) = args, dims
    a = norm_axis(at["axis"], len(batch_rules.shape(data)) - (dd is not None))
    if di is None:
        q = len(batch_rules.shape(ind))
        return [batch_rules.bind("gather", data, ind, axis=batch_rules.shift_axis(a, dd))], \
            [dd if dd <= a else dd + q - 1]
    if dd is None:
        return [batch_rules.bind("gather", data, ind, axis=a)], [a + di]
    data = batch_rules.moveaxis(batch_rules.moveaxis(data, dd, 0), a + 1, 1)
    ind = batch_rules.moveaxis(ind, di, 0)
    q = len(batch_rules.shape(ind)) - 1
    ind = batch_rules.with_example_numbers(batch_rules.reshape(ind, batch_rules.shape(ind) + (1,)))
    y = batch_rules.bind("gather_nd", data, ind)
    r = len(batch_rules.shape(y))   # [B, ind..., pre..., post...] -> [B, pre..., ind..., post...]
    perm = (0,) + tuple(range(q + 1, q + 1 + a)) + tuple(range(1, q + 1)) + \
        tuple(range(q + 1 + a, r))
    return [batch_rules.bind("transpose", y, perm=perm) if perm != tuple(range(r)) else y], [0]


register(OpDef("gather", _gather_infer, _gather_ref,
               fusion="injective", attrs={"axis": 0}, num_inputs=2, batch=_batch_gather,
               doc="np.take(data, indices, axis)"))


def _gather_elements_infer(types, at):
    data, ind = types
    _int_input(ind, "gather_elements indices")
    if len(data.shape) != len(ind.shape):
        raise OpError(f"data rank {len(data.shape)} != indices rank {len(ind.shape)}")
    norm_axis(at["axis"], len(data.shape))
    return [TensorType(data.dtype, ind.shape)]


def _gather_elements_ref(xs, at):
    data, ind = xs
    a = norm_axis(at["axis"], data.ndim)
    pos = list(np.indices(ind.shape, sparse=True))  # indices may be smaller than data
    pos[a] = _wrap(ind, data.shape[a])
    return [data[tuple(pos)]]


register(OpDef("gather_elements", _gather_elements_infer, _gather_elements_ref,
               fusion="injective",
               attrs={"axis": 0}, num_inputs=2, batch=batch_rules.batch_first("gather_elements", shift=("axis",)),
               doc="ONNX GatherElements (indices may be smaller than data off the axis)"))


def _gather_nd_infer(types, at):
    data, ind = types
    _int_input(ind, "gather_nd indices")
    b, k = at["batch_dims"], ind.shape[-1] if ind.shape else 0
    if not ind.shape or b + k > len(data.shape) or data.shape[:b] != ind.shape[:b]:
        raise OpError(f"gather_nd: indices {ind.shape} do not fit data {data.shape} "
                      f"with batch_dims={b}")
    return [TensorType(data.dtype, ind.shape[:-1] + data.shape[b + k:])]


def _gather_nd_ref(xs, at):
    data, ind = xs
    b, k = at["batch_dims"], ind.shape[-1]
    out = np.empty(ind.shape[:-1] + data.shape[b + k:], data.dtype)
    for p in np.ndindex(*ind.shape[:-1]):
        tup = tuple(int(i) % data.shape[b + j] if i < 0 else int(i) for j, i in enumerate(ind[p]))
        out[p] = data[p[:b] + tup]
    return [out]


def _batch_gather_nd(args, dims, at):
    """Only indices batched: their batch axis goes after the batch_dims (free there). Else
    both with the batch first: index tuples led by the example number (batch_dims=0), or
    one more batch dim."""
    b = at["batch_dims"]
    if dims[0] is None:
        return [batch_rules.bind("gather_nd", args[0], batch_rules.moveaxis(args[1], dims[1], b),
                                 batch_dims=b)], [b]
    data, ind = batch_rules.all_to_front(args, dims)
    if b == 0:
        return [batch_rules.bind("gather_nd", data, batch_rules.with_example_numbers(ind))], [0]
    return [batch_rules.bind("gather_nd", data, ind, batch_dims=b + 1)], [0]


register(OpDef("gather_nd", _gather_nd_infer, _gather_nd_ref,
               fusion="injective",
               attrs={"batch_dims": 0}, num_inputs=2, doc="ONNX GatherND",
               batch=_batch_gather_nd))


# ---- scatters -------------------------------------------------------------------------------

REDUCTIONS = ("none", "add", "mul", "max", "min")


def _np_combine(red, a, u):
    return {"none": lambda: u, "add": lambda: a + u, "mul": lambda: a * u,
            "max": lambda: max(a, u), "min": lambda: min(a, u)}[red]()


def _scatter_elements_infer(types, at):
    data, ind, upd = types
    _int_input(ind, "scatter_elements indices")
    if ind.shape != upd.shape or len(ind.shape) != len(data.shape):
        raise OpError(f"scatter_elements: indices {ind.shape}, updates {upd.shape} and data "
                      f"{data.shape} do not match")
    if upd.dtype != data.dtype or at["reduction"] not in REDUCTIONS:
        raise OpError("scatter_elements: updates dtype or reduction is wrong")
    norm_axis(at["axis"], len(data.shape))
    return [data]


def _scatter_elements_ref(xs, at):
    data, ind, upd = xs
    a, red = norm_axis(at["axis"], data.ndim), at["reduction"]
    out = data.copy()
    ind = _wrap(ind, data.shape[a])
    for p in np.ndindex(*ind.shape):
        q = p[:a] + (int(ind[p]),) + p[a + 1:]
        out[q] = _np_combine(red, out[q], upd[p])
    return [out]


SCATTER_ELEMENTS = OpDef("scatter_elements", _scatter_elements_infer, _scatter_elements_ref,
               fusion="opaque",
               attrs={"axis": 0, "reduction": "none"}, num_inputs=3,
               batch=batch_rules.batch_first("scatter_elements", shift=("axis",)),
               doc="ONNX ScatterElements; reductions apply duplicates in order")
register(SCATTER_ELEMENTS)


def _scatter_nd_infer(types, at):
    data, ind, upd = types
    _int_input(ind, "scatter_nd indices")
    k = ind.shape[-1] if ind.shape else 0
    if not ind.shape or k > len(data.shape) or upd.shape != ind.shape[:-1] + data.shape[k:]:
        raise OpError(f"scatter_nd: indices {ind.shape}, updates {upd.shape} do not fit "
                      f"data {data.shape}")
    if upd.dtype != data.dtype or at["reduction"] not in REDUCTIONS:
        raise OpError("scatter_nd: updates dtype or reduction is wrong")
    return [data]


def _scatter_nd_ref(xs, at):
    data, ind, upd = xs
    out = data.copy()
    for p in np.ndindex(*ind.shape[:-1]):
        q = tuple(int(i) + data.shape[j] if i < 0 else int(i) for j, i in enumerate(ind[p]))
        out[q] = upd[p] if at["reduction"] == "none" else \
            np.vectorize(lambda a, u: _np_combine(at["reduction"], a, u),
                         otypes=[data.dtype])(out[q], upd[p])
    return [out]


def _batch_scatter_nd(args, dims, at):
    """Everything with the batch first, and each index tuple led by its example number."""
    data, ind, upd = batch_rules.all_to_front(args, dims)
    return [batch_rules.bind("scatter_nd", data, batch_rules.with_example_numbers(ind), upd,
                             reduction=at["reduction"])], [0]


SCATTER_ND = OpDef("scatter_nd", _scatter_nd_infer, _scatter_nd_ref,
               fusion="opaque",
               attrs={"reduction": "none"}, num_inputs=3, doc="ONNX ScatterND",
               batch=_batch_scatter_nd)
register(SCATTER_ND)


# ---- one_hot, reverse_sequence ----------------------------------------------------------------

def _one_hot_infer(types, at):
    ind, vals = types
    _int_input(ind, "one_hot indices")
    if vals.shape != (2,):
        raise OpError(f"one_hot values must have shape (2,), got {vals.shape}")
    a = norm_axis(at["axis"], len(ind.shape) + 1)
    return [TensorType(vals.dtype, ind.shape[:a] + (at["depth"],) + ind.shape[a:])]


def _one_hot_ref(xs, at):
    ind, vals = xs
    depth = at["depth"]
    a = norm_axis(at["axis"], ind.ndim + 1)
    ind = _wrap(ind, depth)
    hot = np.expand_dims(ind, a) == np.arange(depth).reshape((-1,) + (1,) * (ind.ndim - a))
    return [np.where(hot, vals[1], vals[0]).astype(vals.dtype)]


def _batch_one_hot(args, dims, at):
    """Indices with the batch first, the axis shifted; per-example (off, on) values are
    selected per example from a 0/1 one_hot."""
    n = batch_rules.axis_size(args, dims)
    ind = batch_rules.to_front(args[0], dims[0], n)
    a = norm_axis(at["axis"], len(batch_rules.shape(ind)))   # the example's rank + 1
    if dims[1] is None:
        return [batch_rules.bind("one_hot", ind, args[1], axis=a + 1, depth=at["depth"])], [0]
    hot = batch_rules.bind("one_hot", ind, np.array([0, 1], np.int32), axis=a + 1, depth=at["depth"])
    vals = batch_rules.moveaxis(args[1], dims[1], 0)
    r = len(batch_rules.shape(hot)) - 1
    off, on = (batch_rules.reshape(batch_rules.take(vals, 1, k), (n,) + (1,) * r) for k in (0, 1))
    return [batch_rules.bind("where", batch_rules.bind("eq", hot, np.array(1, np.int32)), on, off)], [0]


register(OpDef("one_hot", _one_hot_infer, _one_hot_ref,
               fusion="injective", attrs={"axis": -1, "depth": REQUIRED}, num_inputs=2,
               batch=_batch_one_hot,
               doc="values[1] where indices == position along axis, else values[0]"))


def _reverse_sequence_infer(types, at):
    x, lens = types
    _int_input(lens, "sequence lengths")
    b, t = at["batch_axis"], at["time_axis"]
    if len(x.shape) < 2 or {b, t} != {0, 1} or lens.shape != (x.shape[b],):
        raise OpError(f"reverse_sequence: bad axes {b},{t} or lengths {lens.shape} for {x.shape}")
    return [x]


def _reverse_sequence_ref(xs, at):
    x, lens = xs
    b, t = at["batch_axis"], at["time_axis"]
    out = x.copy()
    for i, n in enumerate(lens):
        sel = [slice(None)] * x.ndim
        sel[b], sel[t] = i, slice(0, int(n))
        out[tuple(sel)] = np.flip(x[tuple(sel)], axis=0)
    return [out]


def _batch_reverse_sequence(args, dims, at):
    """The op only looks at axes 0 and 1: the batch axis goes (or stays) behind them."""
    if dims[1] is not None:
        return batch_rules.loop("reverse_sequence")(args, dims, at)
    d = max(dims[0], 2)
    return [batch_rules.bind("reverse_sequence", batch_rules.moveaxis(args[0], dims[0], d), args[1],
                             **at)], [d]


register(OpDef("reverse_sequence", _reverse_sequence_infer, _reverse_sequence_ref,
               fusion="injective",
               attrs={"batch_axis": 1, "time_axis": 0}, num_inputs=2,
               batch=_batch_reverse_sequence,
               doc="reverse the first lens[b] steps along time_axis of each batch entry"))


# ---- resize ---------------------------------------------------------------------------------
# Resize is separable: along each resized axis an output coordinate o reads a few input
# positions idx[o, t] with weights w[o, t]. The tables depend only on shapes and attributes,
# so they are computed here at compile time (following the ONNX reference formulation) and
# baked into the kernel as __constant arrays; the kernel is one weighted sum per point.

RESIZE_ATTRS = {"sizes": REQUIRED, "scales": REQUIRED, "roi": (), "mode": "nearest",
                "coordinate_transformation_mode": "half_pixel",
                "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75,
                "exclude_outside": 0, "antialias": 0, "extrapolation_value": 0.0}


def _source_coords(mode, y, scale, in_w, out_w, roi):
    out_f = scale * in_w
    if mode == "align_corners":
        return np.zeros(out_w) if out_f == 1 else y * (in_w - 1) / (out_f - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        x = np.full(out_w, (roi[1] - roi[0]) * (in_w - 1) / 2) if out_f == 1 else \
            y * (roi[1] - roi[0]) * (in_w - 1) / (out_f - 1)
        return x + roi[0] * (in_w - 1)
    if mode == "pytorch_half_pixel":
        return np.full(out_w, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        return in_w / 2 * (1 - out_w / out_f) + (y + 0.5) / scale - 0.5
    raise OpError(f"resize: unknown coordinate_transformation_mode {mode!r}")


def _coeffs(ratio, scale, at):
    mode, a = at["mode"], at["cubic_coeff_a"]
    if mode == "nearest":
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        nm = at["nearest_mode"]
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
              "floor": False, "ceil": True}[nm]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])
    s = min(scale, 1.0) if at["antialias"] else 1.0
    if mode == "linear":
        start = int(np.floor(-1 / s) + 1)
        c = np.clip(1 - np.abs((np.arange(start, 2 - start) - ratio) * s), 0, 1)
    elif mode == "cubic":
        start = int(np.floor(-2 / s) + 1)
        x = np.abs((np.arange(start, 2 - start) - ratio) * s)
        c = np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                     np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))
    else:
        raise OpError(f"resize: unknown mode {mode!r}")
    return c / c.sum()


def resize_tables(in_w, out_w, scale, roi, at):
    """(idx[out_w, n], w[out_w, n], extrapolated[out_w] or None) for one axis; idx is
    unclamped (edge padding = clamping into [0, in_w) is left to the user)."""
    y = np.arange(out_w, dtype=np.float64)
    x = _source_coords(at["coordinate_transformation_mode"], y, scale, in_w, out_w, roi)
    fl = np.floor(x)
    ratio = np.where(x == fl, 1.0, x - fl)
    w = np.array([_coeffs(r, scale, at) for r in ratio]).reshape(out_w, -1)
    n = w.shape[1]
    pad = -(-n // 2)
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    if n % 2 == 0:
        off = np.where(xp - p == 0, -(n // 2), -(n // 2) + 1)
    else:
        off = np.where(xp - p <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    idx = (p + off)[:, None] + np.arange(n)[None, :] - pad
    if at["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= in_w), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    if at["mode"] == "nearest":
        pick = np.argmax(w, axis=1)
        idx, w = np.clip(idx[np.arange(out_w), pick], 0, in_w - 1)[:, None], np.ones((out_w, 1))
    extra = None
    if at["coordinate_transformation_mode"] == "tf_crop_and_resize":
        extra = (x < 0) | (x > in_w - 1)
    return idx, w, extra


def resize_axes(shape, at):
    """[(axis, tables)] for the axes that actually change."""
    r, out = len(shape), []
    roi = at["roi"]
    for a in range(r):
        pair = (roi[a], roi[a + r]) if roi else (0.0, 1.0)
        s = at["scales"][a]
        if math.isclose(s, 1.0) and at["sizes"][a] == shape[a] and \
                math.isclose(pair[0], 0.0) and math.isclose(pair[1], 1.0):
            continue
        out.append((a, resize_tables(shape[a], at["sizes"][a], s, pair, at)))
    return out


def _resize_infer(types, at):
    (x,) = types
    r = len(x.shape)
    if len(at["sizes"]) != r or len(at["scales"]) != r or len(at["roi"]) not in (0, 2 * r):
        raise OpError(f"resize: sizes/scales/roi do not match rank {r}")
    if x.dtype.is_bool and at["mode"] != "nearest":
        raise OpError(f"resize: {at['mode']} mode needs a numeric tensor")
    return [TensorType(x.dtype, tuple(at["sizes"]))]


def _resize_ref(xs, at):
    (x,) = xs
    res = x if at["mode"] == "nearest" else x.astype(np.float64)
    for a, (idx, w, extra) in resize_axes(x.shape, at):
        g = np.take(res, np.clip(idx, 0, x.shape[a] - 1), axis=a)  # (..., out, n, ...)
        if at["mode"] == "nearest":
            res = np.squeeze(g, axis=a + 1)
        else:
            res = (g * w.reshape((1,) * a + w.shape + (1,) * (x.ndim - a - 1))).sum(axis=a + 1)
        if extra is not None:
            m = extra.reshape((1,) * a + extra.shape + (1,) * (x.ndim - a - 1))
            res = np.where(m, at["extrapolation_value"], res)
    if x.dtype.kind in "iu" and at["mode"] != "nearest":  # ONNX rounds and saturates
        info = np.iinfo(x.dtype)
        res = np.clip(np.round(res), info.min, info.max)
    return [res.astype(x.dtype)]


def _batch_resize(args, dims, at):
    """The batch axis first, resized to itself (size B, scale 1, the whole roi)."""
    x = batch_rules.moveaxis(args[0], dims[0], 0)
    n, r = batch_rules.shape(x)[0], len(at["roi"]) // 2
    roi = (0.0,) + at["roi"][:r] + (1.0,) + at["roi"][r:] if r else ()
    return [batch_rules.bind("resize", x, **{**at, "sizes": (n,) + at["sizes"], "roi": roi,
                                             "scales": (1.0,) + at["scales"]})], [0]


# opaque: the body declares __constant tables, which cannot be inlined into another kernel
register(OpDef("resize", _resize_infer, _resize_ref,
               fusion="opaque", attrs=RESIZE_ATTRS, num_inputs=1,
               batch=_batch_resize,
               doc="ONNX Resize with every size, scale and roi resolved to full rank"))


# ---- tensor_scatter (KV-cache write) ------------------------------------------------------------

def _tensor_scatter_infer(types, at):
    cache, upd, wi = types
    a = norm_axis(at["axis"], len(cache.shape))
    _int_input(wi, "tensor_scatter write indices")
    if a == 0 or upd.dtype != cache.dtype or wi.shape != cache.shape[:1] or \
            upd.shape[:a] + upd.shape[a + 1:] != cache.shape[:a] + cache.shape[a + 1:] or \
            upd.shape[a] > cache.shape[a] or at["mode"] not in ("linear", "circular"):
        raise OpError(f"tensor_scatter: update {upd.shape} does not fit cache {cache.shape}")
    return [cache]


def _tensor_scatter_ref(xs, at):
    cache, upd, wi = xs
    a = norm_axis(at["axis"], cache.ndim)
    out = cache.copy()
    for p in np.ndindex(*cache.shape[:a]):
        for s in range(upd.shape[a]):
            t = int(wi[p[0]]) + s
            out[p + (t % cache.shape[a] if at["mode"] == "circular" else t,)] = upd[p + (s,)]
    return [out]


TENSOR_SCATTER = OpDef("tensor_scatter", _tensor_scatter_infer, _tensor_scatter_ref,
               fusion="injective",
               attrs={"axis": -2, "mode": "linear"}, num_inputs=3,
               batch=batch_rules.fold_all_into_n("tensor_scatter"),
               doc="cache[b, ..., w[b] + s, ...] = update[b, ..., s, ...] (ONNX TensorScatter)")
register(TENSOR_SCATTER)


# ---- col2im ---------------------------------------------------------------------------------

def col2im_blocks(at):
    """How many block positions fit along each image axis (the columns' last dimension)."""
    img, blk, dil, pads, st = (at[k] for k in ("image_shape", "block_shape", "dilations",
                                               "pads", "strides"))
    d = len(img)
    return [(img[i] + pads[i] + pads[i + d] - dil[i] * (blk[i] - 1) - 1) // st[i] + 1
            for i in range(d)]


def _col2im_places(at):
    """(kernel offset, block position, image position) of each column element that lands
    on the image (the others fall in the padding)."""
    blk, dil, pads, st, img = (at[k] for k in ("block_shape", "dilations", "pads", "strides",
                                               "image_shape"))
    for k in np.ndindex(*blk):
        for b in np.ndindex(*col2im_blocks(at)):
            p = tuple(b[i] * st[i] - pads[i] + k[i] * dil[i] for i in range(len(blk)))
            if all(0 <= p[i] < img[i] for i in range(len(blk))):
                yield k, b, p


def _col2im_infer(types, at):
    (x,) = types
    img, blk = at["image_shape"], at["block_shape"]
    nb, kb = math.prod(col2im_blocks(at)), math.prod(blk)
    if len(x.shape) != 3 or x.shape[1] % kb or x.shape[2] != nb:
        raise OpError(f"col2im: input {x.shape} does not match blocks {blk} over {img}")
    return [TensorType(x.dtype, (x.shape[0], x.shape[1] // kb) + tuple(img))]


def _col2im_ref(xs, at):
    (x,) = xs
    blk, (n, ck, _) = at["block_shape"], x.shape
    out = np.zeros((n, ck // math.prod(blk)) + tuple(at["image_shape"]), x.dtype)
    cols = x.reshape((n, ck // math.prod(blk)) + tuple(blk) + tuple(col2im_blocks(at)))
    for k, b, p in _col2im_places(at):
        out[(Ellipsis,) + p] += cols[(slice(None), slice(None)) + k + b]
    return [out]


register(OpDef("col2im", _col2im_infer, _col2im_ref, fusion="opaque",
               attrs={"image_shape": REQUIRED, "block_shape": REQUIRED, "dilations": REQUIRED,
                      "pads": REQUIRED, "strides": REQUIRED}, num_inputs=1,
               batch=batch_rules.fold_into_n("col2im"),
               doc="ONNX Col2Im: sum sliding-block columns back into an image"))


# ---- affine_grid ----------------------------------------------------------------------------

def _affine_grid_infer(types, at):
    (theta,) = types
    size = at["size"]
    d = len(size) - 2
    if d not in (2, 3) or theta.shape != (size[0], d, d + 1) or not theta.dtype.is_float:
        raise OpError(f"affine_grid: theta {theta.shape} does not match size {size}")
    return [TensorType(theta.dtype, tuple(size[:1]) + tuple(size[2:]) + (d,))]


def _affine_grid_ref(xs, at):
    (theta,) = xs
    size, align = at["size"], at["align_corners"]
    axes = []
    for n in size[2:]:
        i = np.arange(n, dtype=np.float64)
        axes.append(-1 + i * 2 / max(n - 1, 1) if align else -1 + (2 * i + 1) / n)
    mesh = np.meshgrid(*axes, indexing="ij")
    base = np.stack(list(mesh[::-1]) + [np.ones_like(mesh[0])], axis=-1)  # (*spatial, d+1)
    out = np.einsum("...j,nij->n...i", base, theta.astype(np.float64))
    return [out.astype(theta.dtype)]


def _batch_affine_grid(args, dims, at):
    theta = batch_rules.moveaxis(args[0], dims[0], 0)
    s = batch_rules.shape(theta)
    y = batch_rules.bind("affine_grid", batch_rules.reshape(theta, (s[0] * s[1],) + s[2:]),
                         size=(s[0] * s[1],) + at["size"][1:], align_corners=at["align_corners"])
    return [batch_rules.reshape(y, s[:2] + batch_rules.shape(y)[1:])], [0]


register(OpDef("affine_grid", _affine_grid_infer, _affine_grid_ref,
               fusion="injective", attrs={"size": REQUIRED, "align_corners": 0}, num_inputs=1,
               batch=_batch_affine_grid,
               doc="ONNX AffineGrid: sampling grid of theta applied to the base mesh"))


# ---- grid_sample ----------------------------------------------------------------------------
# Follows ONNX GridSample (PyTorch's grid_sampler): grid holds normalised coordinates in
# reversed axis order (x first); out-of-range samples are zero, clamped or reflected.

def _grid_sample_infer(types, at):
    x, grid = types
    d = len(x.shape) - 2
    if d < 1 or grid.shape[:1] != x.shape[:1] or len(grid.shape) != d + 2 or \
            grid.shape[-1] != d or not x.dtype.is_float or not grid.dtype.is_float:
        raise OpError(f"grid_sample: grid {grid.shape} does not match input {x.shape}")
    if at["mode"] not in ("nearest", "linear", "cubic") or \
            at["padding_mode"] not in ("zeros", "border", "reflection"):
        raise OpError(f"grid_sample: unknown mode {at['mode']!r}/{at['padding_mode']!r}")
    return [TensorType(x.dtype, x.shape[:2] + grid.shape[1:-1])]


def cubic_weights(r, A, add=operator.add, sub=operator.sub, mul=operator.mul):
    """Keys cubic convolution weights of the 4 taps around a point at fraction r past the
    second tap (coefficient A). The NumPy tap tables (r a float or an ndarray, Python's
    arithmetic) and the differentiable composition (r traced, prim's add, sub and mul)
    share it."""
    def outer(t):   # ((A t - 5A) t + 8A) t - 4A
        return sub(mul(add(mul(sub(mul(A, t), 5 * A), t), 8 * A), t), 4 * A)

    def inner(t):   # ((A + 2) t - (A + 3)) t t + 1
        return add(mul(mul(sub(mul(A + 2, t), A + 3), t), t), 1)

    s = [add(r, 1), r, sub(1, r), sub(2, r)]
    return [outer(s[0]), inner(s[1]), inner(s[2]), outer(s[3])]


def _np_reflect(x, lo, hi):
    rng = hi - lo
    if x < lo or x > hi:
        dx = lo - x if x < lo else x - hi
        k = int(dx / rng)
        r = dx - k * rng
        x = (lo + r if k % 2 == 0 else hi - r) if x < lo else (hi - r if k % 2 == 0 else lo + r)
    return x


def _grid_sample_ref(xs, at):
    x, grid = xs
    mode, pad, align, A = at["mode"], at["padding_mode"], at["align_corners"], -0.75
    dims = x.shape[2:]
    out = np.zeros(x.shape[:2] + grid.shape[1:-1], np.float64)
    for p in np.ndindex(*grid.shape[:-1]):
        axes = []  # per data axis: [(index or None, weight)]
        for i, n in enumerate(dims):
            g = float(grid[p][len(dims) - 1 - i])
            lo, hi = (0.0, n - 1.0) if align else (-0.5, n - 0.5)
            v = (g + 1) / 2 * (n - 1) if align else ((g + 1) * n - 1) / 2
            v = float(np.rint(v)) if mode == "nearest" else v
            v = min(max(v, 0), n - 1) if pad == "border" else \
                _np_reflect(v, lo, hi) if pad == "reflection" else v
            f = math.floor(v)
            r = v - f
            if mode == "nearest":
                taps = [(int(v), 1.0)]
            elif mode == "linear":
                taps = [(f, 1 - r), (f + 1, r)]
            else:
                cw = cubic_weights(r, A)
                taps = [(f - 1 + k, cw[k]) for k in range(4)]
            fixed = []
            for j, w in taps:
                if pad == "zeros":
                    j = j if 0 <= j < n else None
                elif pad == "border":
                    j = min(max(j, 0), n - 1)
                else:
                    j = min(max(int(_np_reflect(float(j), lo, hi)), 0), n - 1)
                fixed.append((j, w))
            axes.append(fixed)
        for combo in np.ndindex(*(len(a) for a in axes)):
            picks = [axes[i][k] for i, k in enumerate(combo)]
            if all(j is not None for j, _ in picks):
                w = math.prod(wt for _, wt in picks)
                src = (p[0], slice(None)) + tuple(j for j, _ in picks)
                out[(p[0], slice(None)) + p[1:]] += w * x[src]
    return [out.astype(x.dtype)]


register(OpDef("grid_sample", _grid_sample_infer, _grid_sample_ref,
               fusion="opaque", attrs={"mode": "linear", "padding_mode": "zeros",
                                       "align_corners": 0}, num_inputs=2,
               batch=batch_rules.fold_all_into_n("grid_sample"),
               doc="ONNX GridSample (nearest/linear/cubic, zeros/border/reflection)"))


# ---- roi_align ------------------------------------------------------------------------------
# Follows ONNX RoiAlign (the onnxruntime/Caffe2 formulation): each output bin averages (or
# takes the max of) bilinear samples on a regular grid inside the bin; the grid size comes
# from the roi itself when sampling_ratio is 0, so the loops have run-time bounds.

def _roi_align_infer(types, at):
    x, rois, bidx = types
    _int_input(bidx, "roi_align batch indices")
    if len(x.shape) != 4 or rois.shape[1:] != (4,) or bidx.shape != rois.shape[:1] or \
            not x.dtype.is_float or at["mode"] not in ("avg", "max"):
        raise OpError(f"roi_align: bad input {x.shape}, rois {rois.shape} or mode {at['mode']!r}")
    return [TensorType(x.dtype, (rois.shape[0], x.shape[1], at["output_height"],
                                 at["output_width"]))]


def _roi_box(roi, at):
    """One box under ORT's rules: (start y, start x, height, width, sample rows and columns
    per bin, whether the height and the width were raised to 1 (without half_pixel))."""
    off = 0.5 if at["half_pixel"] else 0.0
    sw, sh, ew, eh = (float(v) * at["spatial_scale"] - off for v in roi)
    rw, rh = ew - sw, eh - sh
    clamp = (False, False) if at["half_pixel"] else (rh < 1.0, rw < 1.0)
    if not at["half_pixel"]:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    sr = at["sampling_ratio"]
    gh = sr if sr > 0 else int(math.ceil(rh / at["output_height"]))
    gw = sr if sr > 0 else int(math.ceil(rw / at["output_width"]))
    return sh, sw, rh, rw, gh, gw, clamp


def _roi_samples(box, ph, pw, at):
    """The sample points of bin (ph, pw) of a _roi_box, [(cy, cx, y, x)]: y and x as ORT
    computes them, cy and cx their fractions of the box's height and width."""
    sh, sw, rh, rw, gh, gw, _ = box
    oh, ow = at["output_height"], at["output_width"]
    bh, bw = rh / oh, rw / ow
    return [((ph + (iy + 0.5) / gh) / oh, (pw + (ix + 0.5) / gw) / ow,
             sh + ph * bh + (iy + 0.5) * bh / gh, sw + pw * bw + (ix + 0.5) * bw / gw)
            for iy, ix in np.ndindex(gh, gw)]


def _roi_axis(v, n):
    """One coordinate (within [-1, n]) of a bilinear sample under ORT's edge rules: its low
    and high pixel, the fraction past the low one, and whether v is free (not clamped to
    an edge, so that its derivative flows)."""
    free = v >= 0.0
    v = max(v, 0.0)
    lo = int(v)
    if lo >= n - 1:
        return n - 1, n - 1, 0.0, False
    return lo, lo + 1, v - lo, free


def _roi_sample(y, x, h, w):
    """[(weight, y, x)] taps of one bilinear sample under ORT's edge rules; [] outside."""
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return []
    (yl, yh, ly, _), (xl, xh, lx, _) = _roi_axis(y, h), _roi_axis(x, w)
    return [((1 - ly) * (1 - lx), yl, xl), ((1 - ly) * lx, yl, xh),
            (ly * (1 - lx), yh, xl), (ly * lx, yh, xh)]


def _roi_align_ref(xs, at):
    x, rois, bidx = xs
    oh, ow = at["output_height"], at["output_width"]
    h, w = x.shape[2:]
    out = np.zeros((rois.shape[0], x.shape[1], oh, ow), np.float64)
    for r in range(rois.shape[0]):
        box = _roi_box(rois[r], at)
        img = x[int(bidx[r])].astype(np.float64)
        for ph, pw in np.ndindex(oh, ow):
            vals = []
            for _, _, sy, sx in _roi_samples(box, ph, pw, at):
                taps = _roi_sample(sy, sx, h, w)
                parts = [wt * img[:, yy, xx] for wt, yy, xx in taps] or [np.zeros(x.shape[1])]
                vals.append(sum(parts) if at["mode"] == "avg" else np.max(parts, axis=0))
            if vals:
                out[r, :, ph, pw] = sum(vals) / len(vals) if at["mode"] == "avg" \
                    else np.max(vals, axis=0)
    return [out.astype(x.dtype)]


def _batch_roi_align(args, dims, at):
    """Images folded into N, every example's boxes in one list, their image numbers moved
    to the example's block of images."""
    x, rois, bidx = batch_rules.all_to_front(args, dims)
    xs, n = batch_rules.shape(x), batch_rules.shape(rois)[:2]
    start = batch_rules.const((np.arange(n[0]) * xs[1]).reshape(-1, 1), batch_rules.dtype(bidx))
    y = batch_rules.bind("roi_align", batch_rules.reshape(x, (xs[0] * xs[1],) + xs[2:]),
                         batch_rules.reshape(rois, (n[0] * n[1], 4)),
                         batch_rules.reshape(batch_rules.bind("add", bidx, start), (n[0] * n[1],)), **at)
    return [batch_rules.reshape(y, n + batch_rules.shape(y)[1:])], [0]


register(OpDef("roi_align", _roi_align_infer, _roi_align_ref,
               fusion="opaque", num_inputs=3,
               attrs={"mode": "avg", "output_height": 1, "output_width": 1, "sampling_ratio": 0,
                      "spatial_scale": 1.0, "half_pixel": 1},
               batch=_batch_roi_align,
               doc="ONNX RoiAlign over NCHW input"))


# ---- max_unpool -----------------------------------------------------------------------------

def _max_unpool_infer(types, at):
    x, ind = types
    _int_input(ind, "max_unpool indices")
    if ind.shape != x.shape or len(at["shape"]) != len(x.shape):
        raise OpError(f"max_unpool: indices {ind.shape} / shape {at['shape']} vs input {x.shape}")
    return [TensorType(x.dtype, tuple(at["shape"]))]


def _max_unpool_ref(xs, at):
    x, ind = xs
    out = np.zeros(math.prod(at["shape"]), x.dtype)
    out[ind.reshape(-1)] = x.reshape(-1)
    return [out.reshape(at["shape"])]


def _batch_max_unpool(args, dims, at):
    """Folded into N, each example's flat positions moved into its own block of the output
    (positions out of range stay out of range, so they are still dropped)."""
    x, ind = batch_rules.all_to_front(args, dims)
    s, dt, per = batch_rules.shape(ind), batch_rules.dtype(ind), math.prod(at["shape"])
    start = batch_rules.const((np.arange(s[0]) * per).reshape((-1,) + (1,) * (len(s) - 1)), dt)
    ok = batch_rules.bind("and", batch_rules.bind("ge", ind, batch_rules.const(0, dt)),
                          batch_rules.bind("lt", ind, batch_rules.const(per, dt)))
    ind = batch_rules.bind("where", ok, batch_rules.bind("add", ind, start), batch_rules.const(-1, dt))
    fold = (s[0] * s[1],) + s[2:]
    y = batch_rules.bind("max_unpool", batch_rules.reshape(x, fold), batch_rules.reshape(ind, fold),
                         shape=(s[0] * at["shape"][0],) + at["shape"][1:])
    return [batch_rules.reshape(y, (s[0],) + at["shape"])], [0]


register(OpDef("max_unpool", _max_unpool_infer, _max_unpool_ref,
               fusion="opaque", attrs={"shape": REQUIRED}, num_inputs=2,
               batch=_batch_max_unpool,
               doc="zeros of `shape` with out.flat[indices] = x (ONNX MaxUnpool)"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# A gather's adjoint is a scatter-add and back; written with lgc.ops.prim and bind so they
# trace and nest.

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from ._rules import is_host, linear_jvp  # noqa: E402
from .core import Tracer, bind, vjp  # noqa: E402
from .layout import _index_map_vjp  # noqa: E402
from .prim import add, div, mul, sub, where  # noqa: E402


def _gather_vjp(cts, ins, outs, attrs):
    """Move the gathered axis first and scatter-add the cotangent into it (scatter_nd)."""
    (x, idx), g = ins, cts[0]
    axis, k = attrs["axis"] % x.ndim, idx.ndim
    n = x.shape[axis]
    idx = np.where(idx < 0, idx + n, idx) if is_host(idx) else \
        where(prim.lt(idx, 0), add(idx, n), idx)
    g = prim.moveaxis(g, tuple(range(axis, axis + k)), tuple(range(k)))
    z = prim.zeros((n,) + x.shape[:axis] + x.shape[axis + 1:], g.dtype)
    out = bind("scatter_nd", z, prim.expand_dims(idx, -1), g, reduction="add")
    return [prim.moveaxis(out, 0, axis), None]


def _gather_elements_vjp(cts, ins, outs, attrs):
    x, idx = ins
    return [bind("scatter_elements", prim.zeros_like(x), idx, cts[0], axis=attrs["axis"],
                 reduction="add"), None]


def _gather_nd_vjp(cts, ins, outs, attrs):
    """A scatter-add of g to the gathered positions. With batch_dims b, the b batch axes are
    flattened into one and each index tuple is led by its batch number (batch_dims 0)."""
    (x, idx), g, b = ins, cts[0], attrs["batch_dims"]
    if not b:
        return [bind("scatter_nd", prim.zeros_like(x), idx, g, reduction="add"), None]
    nb = math.prod(x.shape[:b])
    idx = prim.reshape(idx, (nb,) + idx.shape[b:])
    lead = np.arange(nb).reshape((nb,) + (1,) * (idx.ndim - 1))
    idx = prim.concatenate([prim.broadcast_to(lead.astype(idx.dtype), idx.shape[:-1] + (1,)),
                            idx], axis=-1)
    g = prim.reshape(g, (nb,) + g.shape[b:])
    zeros = prim.zeros((nb,) + x.shape[b:], g.dtype)
    dx = bind("scatter_nd", zeros, idx, g, reduction="add")
    return [prim.reshape(dx, x.shape), None]


def _scatter_vjp(scatter_op, gather_op, **gattrs):
    """data's cotangent is g where no update landed (all of g for 'add'); the updates' is g
    gathered at their positions."""
    def vjp(cts, ins, outs, attrs):
        (_, idx, upd), g, red = ins, cts[0], attrs["reduction"]
        if red == "add":
            d_data = g
        elif red == "none":
            d_data = bind(scatter_op, g, idx, prim.zeros_like(upd), **attrs)
        else:
            return _scatter_reduce_vjp(scatter_op, gather_op, gattrs, cts, ins, outs, attrs)
        return [d_data, None, bind(gather_op, g, idx, **{k: attrs[k] for k in gattrs})]
    return vjp


def _scatter_reduce_vjp(scatter_op, gather_op, gattrs, cts, ins, outs, attrs):
    """mul: product rule, d_data = g * (product of the updates landing there), an update's
    cotangent g * data * (product of the others there): that product with the zero updates
    replaced by 1, divided by this one, kept where no other zero landed (no division by
    zero). min/max (as JAX): to the selected values, ties split evenly among the data and
    the updates equal to the result."""
    (data, idx, upd), g, out = ins, cts[0], outs[0]
    ga = {k: attrs[k] for k in gattrs}

    def scat(d, u, red):
        return bind(scatter_op, d, idx, u, **dict(attrs, reduction=red))

    def gath(v):
        return bind(gather_op, v, idx, **ga)

    one, zero = prim.ones_like(upd), prim.zeros_like(upd)
    if attrs["reduction"] == "mul":
        zu = where(prim.eq(upd, 0), one, zero)
        u1 = where(prim.eq(upd, 0), one, upd)
        nz = gath(scat(prim.zeros_like(data), zu, "add"))    # zero updates at each position
        rest = where(prim.eq(upd, 0), prim.eq(nz, 1), prim.eq(nz, 0))
        d_upd = where(rest, div(gath(mul(g, scat(data, u1, "mul"))), u1), zero)
        return [mul(g, scat(prim.ones_like(data), upd, "mul")), None, d_upd]
    hit = where(prim.eq(upd, gath(out)), one, zero)
    keep = where(prim.eq(data, out), prim.ones_like(data), prim.zeros_like(data))
    share = div(g, add(scat(prim.zeros_like(data), hit, "add"), keep))
    return [mul(share, keep), None, mul(gath(share), hit)]


OPS["gather"].vjp = _gather_vjp
OPS["gather_elements"].vjp = _gather_elements_vjp
OPS["gather_nd"].vjp = _gather_nd_vjp
OPS["scatter_elements"].vjp = _scatter_vjp("scatter_elements", "gather_elements", axis=0)
OPS["scatter_nd"].vjp = _scatter_vjp("scatter_nd", "gather_nd")


def _reverse_sequence_vjp(cts, ins, outs, attrs):
    """Reversing prefixes is its own inverse permutation, hence its own adjoint."""
    return [bind("reverse_sequence", cts[0], ins[1], **attrs), None]


def _max_unpool_vjp(cts, ins, outs, attrs):
    """out.flat[indices] = x, so x's cotangent is g.flat[indices]."""
    x, idx = ins
    flat = bind("gather", prim.reshape(cts[0], (-1,)), prim.reshape(idx, (-1,)), axis=0)
    return [prim.reshape(flat, x.shape), None]


def _resize_vjp(cts, ins, outs, attrs):
    """Nearest-neighbour resizing only moves elements: the index-map adjoint. Linear and
    cubic are separable, one fixed (out, in) matrix per resized axis built from the same
    tables as the kernel: its transpose, applied axis by axis in reverse order (a matmul
    with the axis moved last); extrapolated points (tf_crop_and_resize) get nothing."""
    if attrs["mode"] == "nearest":
        return _index_map_vjp("resize")(cts, ins[:1], outs, attrs) + [None] * (len(ins) - 1)
    x, g = ins[0], cts[0]
    for a, (idx, w, extra) in reversed(resize_axes(x.shape, attrs)):
        n_in = x.shape[a]
        m = np.zeros((idx.shape[0], n_in))
        np.add.at(m, (np.arange(idx.shape[0])[:, None], np.clip(idx, 0, n_in - 1)), w)
        if extra is not None:
            m[extra] = 0.0
        g = prim.moveaxis(prim.matmul(prim.moveaxis(g, a, -1), m.astype(g.dtype)), -1, a)
    return [g] + [None] * (len(ins) - 1)


def _col2im_vjp(cts, ins, outs, attrs):
    """Each column element lands on one image position (or off the image): its cotangent
    is g there, one gather with positions worked out as _col2im_ref walks them."""
    x, g = ins[0], cts[0]
    blk, img, nbl = attrs["block_shape"], attrs["image_shape"], col2im_blocks(attrs)
    n, ck, n_blocks = x.shape
    C, P = ck // math.prod(blk), math.prod(img)
    idx = np.full((C,) + tuple(blk) + tuple(nbl), C * P, np.int64)   # C * P: a zero slot
    for k, b, p in _col2im_places(attrs):
        idx[(slice(None),) + k + b] = np.arange(C) * P + np.ravel_multi_index(p, img)
    flat = prim.concatenate([prim.reshape(g, (n, C * P)), prim.zeros((n, 1), g.dtype)], axis=1)
    return [bind("gather", flat, idx.reshape(ck, n_blocks), axis=1)]


def _affine_grid_vjp(cts, ins, outs, attrs):
    """grid[n, ..., i] = sum_j theta[n, i, j] base[..., j]: dtheta = g^T base, with base
    (the homogeneous grid coordinates) read off the reference at an identity theta."""
    theta, g = ins[0], cts[0]
    r = theta.shape[1]
    eye = np.eye(r, r + 1)[None]
    base = _affine_grid_ref([eye], attrs)[0][0].reshape(-1, r)          # (S, r): coordinates
    base = np.concatenate([base, np.ones((base.shape[0], 1))], 1).astype(g.dtype)
    gs = prim.reshape(g, (g.shape[0], -1, r))                             # (N, S, r)
    return [prim.matmul(prim.swapaxes(gs, 1, 2), base)]


def _reflect(v, lo, hi):
    """_np_reflect on traced arrays: fold v back into [lo, hi] by reflection."""
    span = hi - lo
    below, above = prim.lt(v, lo), prim.gt(v, hi)
    dx = where(below, sub(lo, v), where(above, sub(v, hi), 0.0))
    k = prim.floor(div(dx, span))
    r = sub(dx, mul(k, span))
    even = prim.eq(prim.remainder(k, 2.0), 0)
    return where(below, where(even, add(lo, r), sub(hi, r)),
                 where(above, where(even, sub(hi, r), add(lo, r)), v))


def grid_sample_composed(x, grid, attrs):
    """grid_sample composed of other ops (gathers of the taps, weights from the grid),
    following _grid_sample_ref: its reverse mode gives the op's gradient in x and in the grid."""
    A = -0.75
    mode, pad, align = attrs["mode"], attrs["padding_mode"], attrs["align_corners"]
    dims, N, C = x.shape[2:], x.shape[0], x.shape[1]
    d, out_sp = len(dims), grid.shape[1:-1]
    axes = []   # per data axis: [(index array, weight array)]
    for i, n in enumerate(dims):
        g = prim.index_in_dim(grid, d - 1 - i, axis=-1)
        lo, hi = (0.0, n - 1.0) if align else (-0.5, n - 0.5)
        v = mul(add(g, 1), (n - 1) / 2) if align else div(sub(mul(add(g, 1), n), 1), 2)
        v = prim.round(v) if mode == "nearest" else v
        v = prim.clip(v, 0.0, n - 1.0) if pad == "border" else \
            _reflect(v, lo, hi) if pad == "reflection" else v
        f = prim.floor(v)
        r = sub(v, f)
        if mode == "nearest":
            taps = [(v, prim.ones_like(v))]
        elif mode == "linear":
            taps = [(f, sub(1, r)), (add(f, 1), r)]
        else:
            cw = cubic_weights(r, A, add, sub, mul)
            taps = [(add(f, k - 1), cw[k]) for k in range(4)]
        fixed = []
        for j, w in taps:
            if pad == "zeros":
                w = where(prim.logical_and(prim.ge(j, 0), prim.lt(j, n)), w, 0.0)
            elif pad == "reflection":
                j = prim.floor(_reflect(j, lo, hi))
            fixed.append((prim.astype(prim.clip(j, 0, n - 1), np.int64), w))
        axes.append(fixed)
    xf = prim.reshape(x, (N, C, -1))
    Q = math.prod(out_sp)
    out = None
    for combo in itertools.product(*axes):
        flat, w = combo[0][0], combo[0][1]
        for (j, wj), n in zip(combo[1:], dims[1:]):
            flat, w = add(mul(flat, n), j), mul(w, wj)
        idx = prim.broadcast_to(prim.reshape(flat, (N, 1, Q)), (N, C, Q))
        term = mul(prim.take_along_axis(xf, idx, axis=2), prim.reshape(w, (N, 1, Q)))
        out = term if out is None else add(out, term)
    return prim.reshape(out, (N, C) + tuple(out_sp))


def _grid_sample_vjp(cts, ins, outs, attrs):
    """Reverse mode over grid_sample_composed: x's cotangent is g scatter-added to the taps
    with their weights, the grid's comes from the weights' derivatives (zero for nearest)."""
    _, pull = vjp(lambda x, grid: grid_sample_composed(x, grid, attrs), ins[0], ins[1])
    return list(pull(cts[0]))


def _roi_align_taps(x_shape, rois, bidx, at):
    """The sampling taps of _roi_align_ref for concrete rois, as tables that let the
    weights be recomputed from the rois by ops (so they are differentiable in the boxes):
    idx, the flat position of each tap in the (N*H*W) image plane, shape (R, oh, ow, S, 4)
    (S: most samples of a bin; padded samples and taps weigh 0); and `geo`, the sample
    positions y = y0 + cy * roi_height (x alike), their floors, whether the position is
    free (not clamped at an edge: its derivative flows) with the fraction used where it is
    not, each tap's corner, which taps and samples exist, the 1 / (gh * gw) of the mean,
    and which rois had their size clamped to 1. Sample counts are fixed by the concrete
    boxes: the gradient is that of the piecewise-smooth function between count changes."""
    N, _, h, w = x_shape
    oh, ow = at["output_height"], at["output_width"]
    boxes = [_roi_box(roi, at) for roi in rois]
    counts = [gh * gw for *_, gh, gw, _ in boxes]
    R, S = len(boxes), max(counts + [1])
    shape = (R, oh, ow, S)
    idx = np.zeros(shape + (4,), np.int64)
    geo = {k: np.zeros(shape) for k in ("cy", "cx", "yl", "xl", "ly0", "lx0")}
    geo.update({k: np.zeros(shape, bool) for k in ("yfree", "xfree", "valid")})
    geo["tap"] = np.zeros(shape + (4,), bool)
    geo["corner_y"] = np.broadcast_to(np.array([0, 0, 1, 1], bool), shape + (4,))
    geo["corner_x"] = np.broadcast_to(np.array([0, 1, 0, 1], bool), shape + (4,))
    geo["scale"] = np.array([1.0 / max(n, 1) if at["mode"] == "avg" else 1.0 for n in counts])
    geo["clamp"] = np.array([box[-1] for box in boxes], bool).reshape(R, 2)
    for r, box in enumerate(boxes):
        base = int(bidx[r]) * h * w
        for ph, pw in np.ndindex(oh, ow):
            for k, (cy, cx, y, x) in enumerate(_roi_samples(box, ph, pw, at)):
                at_ = (r, ph, pw, k)
                geo["valid"][at_] = True
                geo["cy"][at_], geo["cx"][at_] = cy, cx
                if y < -1.0 or y > h or x < -1.0 or x > w:
                    continue                        # outside: no taps (ORT)
                (yl, yh, ly, yfree), (xl, xh, lx, xfree) = _roi_axis(y, h), _roi_axis(x, w)
                geo["yl"][at_], geo["ly0"][at_], geo["yfree"][at_] = yl, ly, yfree
                geo["xl"][at_], geo["lx0"][at_], geo["xfree"][at_] = xl, lx, xfree
                geo["tap"][at_] = True
                idx[at_] = [base + yy * w + xx for yy in (yl, yh) for xx in (xl, xh)]
    return idx, geo


def _roi_weights(rois, geo, at, dtype):
    """The taps' weights (R, oh, ow, S, 4) computed from the rois by ops, so that they are
    differentiable in the boxes (see _roi_align_taps)."""
    sc, off = at["spatial_scale"], 0.5 if at["half_pixel"] else 0.0
    g = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in geo.items()}
    b = sub(mul(prim.astype(rois, dtype), sc), off)               # (R, 4): x1 y1 x2 y2
    col = lambda v: prim.reshape(v, (-1, 1, 1, 1))               # noqa: E731
    coord = lambda k: prim.index_in_dim(b, k, axis=1)            # noqa: E731
    rh = where(g["clamp"][:, 0], 1.0, sub(coord(3), coord(1)))
    rw = where(g["clamp"][:, 1], 1.0, sub(coord(2), coord(0)))
    ly = where(g["yfree"], sub(add(col(coord(1)), mul(g["cy"], col(rh))), g["yl"]), g["ly0"])
    lx = where(g["xfree"], sub(add(col(coord(0)), mul(g["cx"], col(rw))), g["xl"]), g["lx0"])
    ly, lx = prim.expand_dims(ly, -1), prim.expand_dims(lx, -1)
    wy = where(g["corner_y"], ly, sub(1.0, ly))
    wx = where(g["corner_x"], lx, sub(1.0, lx))
    return where(g["tap"], mul(mul(wy, wx), prim.reshape(g["scale"], (-1, 1, 1, 1, 1))), 0.0)


def roi_align_composed(x, rois, idx, geo, at):
    """roi_align composed of other ops over the taps of _roi_align_taps (one gather of the
    image), differentiable in the image and in the boxes."""
    N, C, h, w = x.shape
    xf = prim.reshape(prim.transpose(x, (1, 0, 2, 3)), (C, N * h * w))
    vals = prim.reshape(prim.take(xf, idx.reshape(-1), axis=1), (C,) + idx.shape)
    vals = mul(vals, _roi_weights(rois, geo, at, x.dtype))
    valid = geo["valid"]
    if at["mode"] == "avg":
        out = prim.sum(vals, axis=(-2, -1))
    else:   # ORT: the max of the weighted taps, then of the samples; no sample: 0
        sv = where(valid, prim.max(vals, axis=-1), -np.inf)
        out = where(valid.any(axis=-1), prim.max(sv, axis=-1), 0.0)
    return prim.transpose(out, (1, 0, 2, 3))


def _roi_align_vjp(cts, ins, outs, attrs):
    """Reverse mode over roi_align_composed with the taps worked out from the concrete
    rois: the image's cotangent, and the boxes' through the bilinear weights (the sample
    positions move with the boxes; the sample counts are held where they are, as for any
    piecewise-smooth function). Traced rois (jit arguments) raise."""
    x, rois, bidx = ins
    if isinstance(rois, Tracer) or isinstance(bidx, Tracer):
        raise NotImplementedError("lgc.grad: roi_align needs concrete rois and batch "
                                  "indices (pass them as constants, not jit arguments)")
    idx, geo = _roi_align_taps(x.shape, np.asarray(rois), np.asarray(bidx), attrs)
    if np.dtype(rois.dtype).kind != "f":
        _, pull = vjp(lambda x: roi_align_composed(x, rois, idx, geo, attrs), x)
        return [pull(cts[0])[0], None, None]
    _, pull = vjp(lambda x, r: roi_align_composed(x, r, idx, geo, attrs), x, rois)
    dx, drois = pull(cts[0])
    return [dx, drois, None]


def _tensor_scatter_vjp(cts, ins, outs, attrs):
    """The cache's cotangent is g with the written rows zeroed (the op itself, writing
    zeros); the update's is g read back at the rows w[b] + s (one gather_elements)."""
    (cache, upd, wi), g = ins, cts[0]
    a = norm_axis(attrs["axis"], cache.ndim)
    d_cache = bind("tensor_scatter", g, prim.zeros_like(upd), wi, **attrs)
    rows = add(prim.reshape(prim.astype(wi, np.int64), (-1,) + (1,) * (cache.ndim - 1)),
               np.arange(upd.shape[a]).reshape((-1,) + (1,) * (cache.ndim - a - 1)))
    if attrs["mode"] == "circular":
        rows = prim.remainder(rows, cache.shape[a])
    rows = prim.broadcast_to(rows, upd.shape)
    return [d_cache, bind("gather_elements", g, rows, axis=a), None]


OPS["reverse_sequence"].vjp = _reverse_sequence_vjp
OPS["grid_sample"].vjp = _grid_sample_vjp
OPS["roi_align"].vjp = _roi_align_vjp
OPS["tensor_scatter"].vjp = _tensor_scatter_vjp
OPS["affine_grid"].vjp = _affine_grid_vjp
OPS["col2im"].vjp = _col2im_vjp
OPS["resize"].vjp = _resize_vjp
OPS["max_unpool"].vjp = _max_unpool_vjp
for _n in ("gather", "gather_elements", "gather_nd", "reverse_sequence", "max_unpool",
           "col2im", "affine_grid", "tensor_scatter"):
    OPS[_n].jvp = linear_jvp(_n)
