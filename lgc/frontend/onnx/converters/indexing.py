"""Indexing ONNX operators: gathers, scatters, OneHot, Resize/Upsample, ReverseSequence, and
the data-dependent-shape ops (Compress, NonZero, Unique) that lgc folds when their inputs
are constants. Window generators fold at compile time when their size is known."""
from __future__ import annotations

import numpy as np

from . import attr_dtype, converter
from .nn import check_window


@converter("Gather")
def gather(ctx, node, data, indices):
    return ctx.op("gather", [data, indices], {"axis": node.attr("axis", 0)})


@converter("GatherElements")
def gather_elements(ctx, node, data, indices):
    return ctx.op("gather_elements", [data, indices], {"axis": node.attr("axis", 0)})


@converter("GatherND")
def gather_nd(ctx, node, data, indices):
    return ctx.op("gather_nd", [data, indices], {"batch_dims": node.attr("batch_dims", 0)})


@converter("ScatterElements", "Scatter")
def scatter_elements(ctx, node, data, indices, updates):
    return ctx.op("scatter_elements", [data, indices, updates],
                  {"axis": node.attr("axis", 0), "reduction": node.attr("reduction", "none")})


@converter("ScatterND")
def scatter_nd(ctx, node, data, indices, updates):
    return ctx.op("scatter_nd", [data, indices, updates],
                  {"reduction": node.attr("reduction", "none")})


@converter("OneHot")
def one_hot(ctx, node, indices, depth, values):
    (d,) = [int(v) for v in np.asarray(ctx.need(depth, "OneHot depth")).reshape(-1)]
    if not indices.dtype.is_int:
        indices = ctx.op("cast", [indices], {"to": "i64"})
    return ctx.op("one_hot", [indices, values], {"axis": node.attr("axis", -1), "depth": d})


@converter("ReverseSequence")
def reverse_sequence(ctx, node, x, lens):
    return ctx.op("reverse_sequence", [x, lens], {"batch_axis": node.attr("batch_axis", 1),
                                                  "time_axis": node.attr("time_axis", 0)})


# ---- Resize / Upsample --------------------------------------------------------------------

def _floats(ctx, v, what):
    """A compile-time float list, or None for an omitted or empty optional input."""
    a = None if v is None else np.asarray(ctx.need(v, what))
    return None if a is None or a.size == 0 else [float(x) for x in a.reshape(-1)]


@converter("Resize")
def resize(ctx, node, x, roi=None, scales=None, sizes=None):
    if ctx.opset < 11:              # Resize-10 is Upsample with a new name
        return _upsample(ctx, node, x, roi)
    shape, r = x.shape, len(x.shape)
    axes = [a % r for a in node.attr("axes", list(range(r)))]
    sc = _floats(ctx, scales, "Resize scales")
    sz = _floats(ctx, sizes, "Resize sizes")
    full_scales, full_sizes = [1.0] * r, list(shape)
    if sz is not None:
        for a, s in zip(axes, sz):
            full_sizes[a], full_scales[a] = int(s), s / shape[a]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(full_scales[a] for a in axes)
            for a in axes:
                full_scales[a], full_sizes[a] = s, int(s * shape[a] + 0.5)
    elif sc is not None:
        for a, s in zip(axes, sc):
            full_scales[a], full_sizes[a] = s, int(s * shape[a])
    else:
        raise NotImplementedError("Resize needs scales or sizes")
    mode_ct = node.attr("coordinate_transformation_mode", "half_pixel")
    full_roi = ()
    rv = _floats(ctx, roi, "Resize roi") if mode_ct == "tf_crop_and_resize" else None
    if rv is not None:
        lo, hi = [0.0] * r, [1.0] * r
        for i, a in enumerate(axes):
            lo[a], hi[a] = rv[i], rv[len(axes) + i]
        full_roi = tuple(lo + hi)
    return ctx.op("resize", [x], {
        "sizes": tuple(full_sizes), "scales": tuple(full_scales), "roi": full_roi,
        "mode": node.attr("mode", "nearest"), "coordinate_transformation_mode": mode_ct,
        "nearest_mode": node.attr("nearest_mode", "round_prefer_floor"),
        "cubic_coeff_a": node.attr("cubic_coeff_a", -0.75),
        "exclude_outside": node.attr("exclude_outside", 0),
        "antialias": node.attr("antialias", 0),
        "extrapolation_value": node.attr("extrapolation_value", 0.0)})


@converter("Upsample")
def upsample(ctx, node, x, scales=None):
    return _upsample(ctx, node, x, scales)


def _upsample(ctx, node, x, scales):
    """Upsample (and Resize-10): asymmetric coordinates, nearest rounds down."""
    sc = node.attr("scales") if scales is None else _floats(ctx, scales, "Upsample scales")
    sc = [float(s) for s in sc]
    mode = node.attr("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    return ctx.op("resize", [x], {
        "sizes": tuple(int(s * d) for s, d in zip(sc, x.shape)), "scales": tuple(sc),
        "mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})


# ---- ops whose output shape depends on data: folded when the data is constant -----------------

@converter("Compress")
def compress(ctx, node, x, condition):
    cond = np.asarray(ctx.need(condition, "Compress condition")).astype(bool).reshape(-1)
    axis = node.attr("axis")
    if axis is None:
        x = ctx.op("reshape", [x], {"shape": (x.type.size,)})
        axis = 0
    axis %= len(x.shape)
    picked = np.nonzero(cond[:x.shape[axis]])[0].astype(np.int64)
    return ctx.op("gather", [x, ctx.const(picked)], {"axis": axis})


@converter("NonZero")
def nonzero(ctx, node, x):
    a = np.asarray(ctx.need(x, "NonZero input (its output shape depends on it)"))
    return ctx.const(np.array(np.nonzero(a), dtype=np.int64).reshape(a.ndim, -1))


@converter("Unique")
def unique(ctx, node, x):
    a = np.asarray(ctx.need(x, "Unique input (its output shape depends on it)"))
    axis, srt = node.attr("axis"), node.attr("sorted", 1)
    y, idx, inv, cnt = np.unique(a if axis is not None else a.reshape(-1), axis=axis,
                                 return_index=True, return_inverse=True, return_counts=True)
    if not srt:  # order of first occurrence
        order = np.argsort(idx, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        y = np.take(y, order, axis=axis or 0) if axis is not None else y[order]
        idx, inv, cnt = idx[order], rank[inv.reshape(-1)], cnt[order]
    outs = [y, idx, inv.reshape(-1), cnt]
    return [ctx.const(o if i == 0 else np.asarray(o, np.int64)) for i, o in enumerate(outs)]


# ---- window generators --------------------------------------------------------------------

def _window(coeffs):
    """Generalised cosine window sum_j c_j cos(2 pi j k / N), folded (size is known)."""
    def conv(ctx, node, size):
        (n,) = ctx.ints(size, f"{node.op_type} size")
        ctx.check_size([n], np.float64, f"{node.op_type} size")
        m = n if node.attr("periodic", 1) else n - 1
        k = np.arange(n, dtype=np.float64)
        w = sum(c * np.cos(2 * np.pi * j * k / m) for j, c in enumerate(coeffs)) if m > 0 \
            else np.ones(n)
        return ctx.const(w.astype(attr_dtype(node, "output_datatype", 1).np))
    return conv


converter("HannWindow")(_window([0.5, -0.5]))
converter("HammingWindow")(_window([25 / 46, -21 / 46]))
converter("BlackmanWindow")(_window([0.42, -0.5, 0.08]))


@converter("TensorScatter")
def tensor_scatter(ctx, node, cache, update, write_indices=None):
    if write_indices is None:
        write_indices = ctx.const(np.zeros(cache.shape[:1], np.int64))
    return ctx.op("tensor_scatter", [cache, update, write_indices],
                  {"axis": node.attr("axis", -2), "mode": node.attr("mode", "linear")})


@converter("Col2Im")
def col2im(ctx, node, x, image_shape, block_shape):
    img = ctx.ints(image_shape, "Col2Im image_shape")
    blk = ctx.ints(block_shape, "Col2Im block_shape")
    d = len(img)
    return ctx.op("col2im", [x], {
        "image_shape": tuple(img), "block_shape": tuple(blk),
        "dilations": tuple(node.attr("dilations", [1] * d)),
        "pads": tuple(node.attr("pads", [0] * 2 * d)),
        "strides": tuple(node.attr("strides", [1] * d))})


@converter("AffineGrid")
def affine_grid(ctx, node, theta, size):
    return ctx.op("affine_grid", [theta], {"size": tuple(ctx.ints(size, "AffineGrid size")),
                                           "align_corners": node.attr("align_corners", 0)})


@converter("GridSample")
def grid_sample(ctx, node, x, grid):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(node.attr("mode", "linear"),
                                                          node.attr("mode", "linear"))
    return ctx.op("grid_sample", [x, grid], {
        "mode": mode, "padding_mode": node.attr("padding_mode", "zeros"),
        "align_corners": node.attr("align_corners", 0)})


@converter("RoiAlign")
def roi_align(ctx, node, x, rois, batch_indices):
    ct = node.attr("coordinate_transformation_mode", "output_half_pixel" if ctx.opset < 16
                   else "half_pixel")
    return ctx.op("roi_align", [x, rois, batch_indices], {
        "mode": node.attr("mode", "avg"), "output_height": node.attr("output_height", 1),
        "output_width": node.attr("output_width", 1),
        "sampling_ratio": node.attr("sampling_ratio", 0),
        "spatial_scale": float(node.attr("spatial_scale", 1.0)),
        "half_pixel": int(ct == "half_pixel")})


@converter("MaxUnpool")
def max_unpool(ctx, node, x, indices, output_shape=None):
    """Place x at the flat indices MaxPool returned; zero-pad at the end to output_shape."""
    k = node.attr("kernel_shape")
    d = len(k)
    strides, pads = node.attr("strides", [1] * d), node.attr("pads", [0] * 2 * d)
    check_window(x, k, strides, pads)
    shape = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[d + i] + k[i]
                                 for i in range(d)]
    y = ctx.op("max_unpool", [x, indices], {"shape": tuple(shape)})
    if output_shape is not None:
        want = ctx.ints(output_shape, "MaxUnpool output_shape")
        if want != shape:
            extra = [w - s for w, s in zip(want, shape)]
            y = ctx.op("pad", [y], {"pads": tuple([0] * len(shape) + extra)})
    return y
