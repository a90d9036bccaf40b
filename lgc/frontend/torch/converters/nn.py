"""Products, convolutions, pools, resampling, embeddings and distances."""
from __future__ import annotations

import math

import numpy as np

from ....ir.graph import Value
from ...onnx.converters.layout import reshape
from ...onnx.converters.nn import FEW_ROWS
from . import converter

# ---- matrix products ----------------------------------------------------------------------


def weight_transposed(ctx, b: Value) -> Value | None:
    """W when b is a constant W[N, K] transposed (an nn.Linear's weight as ATen uses it)."""
    return ctx.transposed_of.get(b)


def _mm(ctx, a, b):
    """a @ b. With few rows of A and b = W.T of a constant W, the kernel reads W's rows as
    they are stored (matmul's trans_b form); otherwise b is W.T stored transposed once."""
    w = weight_transposed(ctx, b)
    if w is not None:
        rows = math.prod(a.shape[:-1])
        if rows <= FEW_ROWS:
            return ctx.op("matmul", [a, w], {"trans_b": 1})
        if b not in ctx.known:   # too big to have been folded: transpose the weight here
            b = ctx.const(np.ascontiguousarray(ctx.known[w].T))
    return ctx.op("matmul", [a, b])


@converter("aten.mm.default", "aten.bmm.default")
def mm(ctx, a, b):
    dt = ctx.promote(a, b)
    return _mm(ctx, ctx.cast(a, dt), ctx.cast(b, dt))


@converter("aten.addmm.default")
def addmm(ctx, bias, a, b, beta=1, alpha=1):
    y = mm(ctx, a, b)
    if alpha != 1:
        y = ctx.op("mul", [y, ctx.scalar(alpha, y)])
    if beta == 0:
        return y
    if beta != 1:
        bias = ctx.op("mul", [bias, ctx.scalar(beta, bias)])
    return ctx.op("add", [y, ctx.cast(bias, y.dtype)])


@converter("aten.baddbmm.default")
def baddbmm(ctx, bias, a, b, beta=1, alpha=1):
    return addmm(ctx, bias, a, b, beta, alpha)


# ---- convolution --------------------------------------------------------------------------

def _per_dim(v, r):
    v = [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return tuple(v * r if len(v) == 1 else v)


def conv_op(r, stride, padding, dilation, transposed, output_padding, groups) -> tuple[str, dict]:
    """(lgc op, its attributes) of an ATen convolution over r spatial axes."""
    pads = _per_dim(padding, r)
    attrs = {"strides": _per_dim(stride, r), "pads": pads + pads,
             "dilations": _per_dim(dilation, r), "group": int(groups)}
    if transposed:
        return "conv_transpose", {**attrs, "output_padding": _per_dim(output_padding, r)}
    return "conv", attrs


@converter("aten.convolution.default")
def convolution(ctx, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    op, attrs = conv_op(x.type.rank - 2, stride, padding, dilation, transposed, output_padding, groups)
    return ctx.op(op, [x, w] + ([bias] if bias is not None else []), attrs)


# ---- pools --------------------------------------------------------------------------------

def _pool_rank(ctx) -> int:
    """The spatial rank of a pool operator: max_pool2d_with_indices -> 2."""
    name = str(ctx.fx_node.target)
    return int(name[name.index("pool") + 4])


def _unbatched(pool):
    """PyTorch pools take (C, spatial...) as well as (N, C, spatial...): a batch of one."""
    def conv(ctx, x, *args, **kwargs):
        if x.type.rank == _pool_rank(ctx) + 2:
            return pool(ctx, x, *args, **kwargs)
        out = pool(ctx, reshape(ctx, x, (1,) + x.shape), *args, **kwargs)
        drop = lambda y: None if y is None else reshape(ctx, y, y.shape[1:])  # noqa: E731
        return tuple(drop(y) for y in out) if isinstance(out, tuple) else drop(out)
    conv.__name__, conv.__doc__ = pool.__name__, pool.__doc__
    return conv


def _window(x, kernel_size, stride, padding, dilation=1):
    r = x.type.rank - 2
    kernel = _per_dim(kernel_size, r)
    strides = _per_dim(stride, r) if stride else kernel
    pads = _per_dim(padding, r)
    return {"kernel": kernel, "strides": strides, "pads": pads + pads,
            "dilations": _per_dim(dilation, r)}


def _plane_indices(ctx, x, flat):
    """ONNX-style indices (flat over N, C, spatial) as PyTorch's (flat within each plane)."""
    n, c = x.shape[:2]
    plane = math.prod(x.shape[2:])
    base = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * (x.type.rank - 2))
    return ctx.op("sub", [flat, ctx.const(base)])


@converter("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default")
@_unbatched
def max_pool_with_indices(ctx, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    attrs = {**_window(x, kernel_size, stride, padding, dilation), "ceil_mode": int(ceil_mode)}
    wants_indices = any(u.args[1] == 1 for u in ctx.fx_node.users)
    if not wants_indices:
        return ctx.op("max_pool", [x], attrs), None
    y, idx = ctx.op("max_pool", [x], {**attrs, "return_indices": 1}, num_outputs=2)
    return y, _plane_indices(ctx, x, idx)


@converter("aten.avg_pool2d.default", "aten.avg_pool3d.default", "aten.avg_pool1d.default")
@_unbatched
def avg_pool(ctx, x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    attrs = {**_window(x, kernel_size, stride, padding), "ceil_mode": int(ceil_mode)}
    del attrs["dilations"]
    if divisor_override:   # the window's sum over the given divisor
        y = ctx.op("avg_pool", [x], {**attrs, "count_include_pad": 1})
        return ctx.op("mul", [y, ctx.scalar(math.prod(attrs["kernel"]) / divisor_override, y)])
    return ctx.op("avg_pool", [x], {**attrs, "count_include_pad": int(count_include_pad)})


def _adaptive_avg(ctx, x, output_size):
    """Windows [floor(i n / m), ceil((i + 1) n / m)) per axis. Equal windows are one avg_pool;
    otherwise each axis is averaged window by window (a box mean separates by axis)."""
    spatial = x.shape[2:]
    out = _per_dim(output_size, len(spatial))
    out = tuple(n if m is None else m for n, m in zip(spatial, out))
    if all(n % m == 0 for n, m in zip(spatial, out)):
        k = tuple(n // m for n, m in zip(spatial, out))
        if all(s == 1 for s in k):
            return x
        return ctx.op("avg_pool", [x], {"kernel": k, "strides": k})
    for a, (n, m) in enumerate(zip(spatial, out)):
        d = 2 + a
        parts = []
        for i in range(m):
            lo, hi = (i * n) // m, -((-(i + 1) * n) // m)
            part = ctx.op("slice", [x], {"starts": tuple(lo if k == d else 0 for k in range(x.type.rank)),
                                         "steps": (1,) * x.type.rank,
                                         "shape": x.shape[:d] + (hi - lo,) + x.shape[d + 1:]})
            parts.append(ctx.op("reduce_mean", [part], {"axes": (d,), "keepdims": 1}))
        x = parts[0] if m == 1 else ctx.op("concat", parts, {"axis": d})
    return x


@converter("aten._adaptive_avg_pool2d.default", "aten._adaptive_avg_pool3d.default")
@_unbatched
def adaptive_avg_pool(ctx, x, output_size):
    return _adaptive_avg(ctx, x, output_size)


# ---- resampling ---------------------------------------------------------------------------

def _resize(ctx, x, output_size, scale_factors, mode, coords, nearest="floor"):
    spatial = x.shape[2:]
    if output_size:
        sizes = tuple(int(s) for s in output_size)
        scales = tuple(s / n for s, n in zip(sizes, spatial))
    else:   # PyTorch maps coordinates by 1 / scale_factor, as ONNX does by the scale
        scales = tuple(float(s) for s in scale_factors)
        sizes = tuple(int(math.floor(n * s)) for n, s in zip(spatial, scales))
        if coords == "align_corners":   # corners map to corners: only the sizes matter
            scales = tuple(s / n for s, n in zip(sizes, spatial))
    return ctx.op("resize", [x], {"sizes": x.shape[:2] + sizes, "scales": (1.0, 1.0) + scales,
                                  "mode": mode, "coordinate_transformation_mode": coords,
                                  "nearest_mode": nearest})


@converter("aten.upsample_nearest2d.vec")
def upsample_nearest(ctx, x, output_size=None, scale_factors=None):
    return _resize(ctx, x, output_size, scale_factors, "nearest", "asymmetric")


@converter("aten.upsample_bilinear2d.vec")
def upsample_linear(ctx, x, output_size, align_corners, scale_factors=None):
    coords = "align_corners" if align_corners else "pytorch_half_pixel"
    return _resize(ctx, x, output_size, scale_factors, "linear", coords)


@converter("aten.grid_sampler_2d.default")
def grid_sampler_2d(ctx, x, grid, interpolation_mode, padding_mode, align_corners):
    return ctx.op("grid_sample", [x, grid], {
        "mode": ("linear", "nearest", "cubic")[interpolation_mode],
        "padding_mode": ("zeros", "border", "reflection")[padding_mode],
        "align_corners": int(align_corners)})


@converter("aten.col2im.default")
def col2im(ctx, x, output_size, kernel_size, dilation, padding, stride):
    pads = _per_dim(padding, 2)
    return ctx.op("col2im", [x], {"image_shape": _per_dim(output_size, 2),
                                  "block_shape": _per_dim(kernel_size, 2),
                                  "dilations": _per_dim(dilation, 2), "pads": pads + pads,
                                  "strides": _per_dim(stride, 2)})


# ---- embeddings and distances -------------------------------------------------------------

@converter("aten.embedding.default")
def embedding(ctx, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return ctx.op("gather", [weight, indices], {"axis": 0})


def _p_norm(ctx, d, p, dim):
    """The p-norm of d over axis dim: p = 0 counts non-zeros, p = inf takes the max."""
    a = ctx.op("abs", [d])
    over = {"axes": (dim,), "keepdims": 0}
    if math.isinf(p):
        return ctx.op("reduce_max", [a], over)
    if p == 0:
        return ctx.op("reduce_sum", [ctx.cast(ctx.op("not", [ctx.op("eq", [a, ctx.scalar(0, a)])]), a.dtype)], over)
    if p == 1:
        return ctx.op("reduce_sum", [a], over)
    if p == 2:
        return ctx.op("sqrt", [ctx.op("reduce_sum", [ctx.op("mul", [a, a])], over)])
    s = ctx.op("reduce_sum", [ctx.op("pow", [a, ctx.scalar(p, a)])], over)
    return ctx.op("pow", [s, ctx.scalar(1 / p, s)])


@converter("aten._cdist_forward.default")
def cdist(ctx, x1, x2, p, compute_mode=None):
    """[..., P, M] and [..., R, M] -> [..., P, R] distances, from the broadcast differences."""
    r = x1.type.rank
    a = reshape(ctx, x1, x1.shape[:-1] + (1, x1.shape[-1]))
    b = reshape(ctx, x2, x2.shape[:-2] + (1,) + x2.shape[-2:])
    return _p_norm(ctx, ctx.op("sub", [a, b]), p, r)


@converter("aten._pdist_forward.default")
def pdist(ctx, x, p=2):
    """Distances between rows i < j of x [N, M], in row-major order of the pairs."""
    n = x.shape[0]
    d = cdist(ctx, x, x, p)
    i, j = np.triu_indices(n, 1)
    flat = reshape(ctx, d, (n * n,))
    return ctx.op("gather", [flat, ctx.const((i * n + j).astype(np.int64))], {"axis": 0})

