"""Neural-network ops: conv, conv_transpose, max_pool, avg_pool, lp_pool, lrn.

Layouts are ONNX's: X [N, C, *spatial], conv W [M, C/group, *kernel], conv_transpose
W [C, M/group, *kernel]. `pads` is (begin..., end...) per spatial axis; empty strides, pads
or dilations mean 1, 0 and 1.

Their kernels are in lgc.backends (kernels/nn.py: the CPU register-tile conv and the
one-work-item-per-output pools; gpu_conv: the GPU implicit GEMM; cpu_gemm, cpu_winograd,
cpu_depthwise, cpu_pool: what the CPU backend rewrites convs and pools to).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules
from ._rules import bilinear_jvp, check_bias, require, same_dtype
from .linalg import prod


# ---- shared shape rules -----------------------------------------------------------------------

def spatial_attrs(attrs, r: int):
    """(strides, pads_begin, pads_end, dilations), each of length r, defaults filled."""
    s = tuple(attrs.get("strides") or (1,) * r)
    p = tuple(attrs.get("pads") or (0,) * (2 * r))
    d = tuple(attrs.get("dilations") or (1,) * r)
    if len(s) != r or len(p) != 2 * r or len(d) != r:
        raise OpError(f"strides/pads/dilations {s}/{p}/{d} do not fit {r} spatial axes")
    if min(s + d, default=1) < 1 or min(p, default=0) < 0:
        raise OpError(f"bad strides/pads/dilations {s}/{p}/{d}")
    return s, p[:r], p[r:], d


def window_out(size, k, s, pb, pe, d, ceil_mode=0) -> int:
    """Output extent of a sliding window (PyTorch/ONNX rule: in ceil mode the last window
    must start inside the input or its begin padding)."""
    span = size + pb + pe - d * (k - 1) - 1
    if span < 0:
        raise OpError(f"window {k} (dilation {d}) larger than padded input {size + pb + pe}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1
    return out


def pool_out(x, attrs):
    r = len(x) - 2
    k = tuple(attrs["kernel"])
    if r < 1 or len(k) != r:
        raise OpError(f"pool: kernel {k} does not fit input {x}")
    s, pb, pe, d = spatial_attrs(attrs, r)
    return x[:2] + tuple(window_out(x[2 + i], k[i], s[i], pb[i], pe[i], d[i], attrs["ceil_mode"])
                         for i in range(r))


def window_patches(x, attrs, fill):
    """Yield (kernel offset, the input values it meets in every output window), for the
    references of pools, convs and im2col (attrs: a pool's): the input padded with `fill`
    far enough for every window (ceil mode may run past the end pad)."""
    r = x.ndim - 2
    k = attrs["kernel"]
    s, pb, pe, d = spatial_attrs(attrs, r)
    out = pool_out(x.shape, attrs)[2:]
    extra = [max(0, (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - x.shape[2 + i] - pb[i])
             for i in range(r)]
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(pb, extra)), constant_values=fill)
    for kk in np.ndindex(*k):
        sl = tuple(slice(kk[i] * d[i], kk[i] * d[i] + s[i] * (out[i] - 1) + 1, s[i]) for i in range(r))
        yield kk, xp[(slice(None), slice(None)) + sl]


def _float_ref(fn):
    """Run a NumPy reference in float64 (float32 for f16 is not enough headroom) and cast back."""
    def ref(xs, attrs):
        dt = xs[0].dtype
        wide = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs]
        return [np.asarray(o).astype(t) for o, t in zip(fn(wide, attrs), [dt, np.int64])]
    return ref


# ---- conv -----------------------------------------------------------------------------------

def conv_infer(types, attrs):
    require(types, "fi", "conv")
    dt = same_dtype(types)
    x, w = types[0].shape, types[1].shape
    r, g = len(x) - 2, attrs["group"]
    if r < 1 or len(w) != len(x):
        raise OpError(f"conv: X {x} and W {w} need the same rank >= 3")
    if g < 1 or x[1] != w[1] * g or w[0] % g:
        raise OpError(f"conv: {x[1]} input channels, W {w}, group {g} do not fit")
    check_bias(types, 2, w[0], "conv")
    out = pool_out(x, {**attrs, "kernel": w[2:], "ceil_mode": 0})   # its windows are a pool's
    return [TensorType(dt, (x[0], w[0]) + out[2:])]


def conv_ref(xs, attrs):
    """Explicit loop over the kernel window: each offset adds a strided slice of the padded
    input contracted with that offset's weights."""
    x, w = xs[0], xs[1]
    r, g = x.ndim - 2, attrs["group"]
    at = {**attrs, "kernel": w.shape[2:], "ceil_mode": 0}   # its windows are a pool's
    out_sp = pool_out(x.shape, at)[2:]
    N, M, Cg = x.shape[0], w.shape[0], w.shape[1]
    wg = w.reshape((g, M // g, Cg) + w.shape[2:])
    y = np.zeros((N, g, M // g) + out_sp)
    for kk, patch in window_patches(x, at, 0):
        patch = patch.reshape((N, g, Cg) + out_sp)
        y += np.einsum("ngc...,gmc->ngm...", patch, wg[(Ellipsis,) + kk])
    y = y.reshape((N, M) + out_sp)
    if len(xs) == 3:
        y += xs[2].reshape((1, M) + (1,) * r)
    return [y]


CONV_ATTRS = {"strides": (), "pads": (), "dilations": (), "group": 1}
def _weight_flops(ins, outs, attrs, per="out"):
    """2 FLOPs per multiply-add: every output (conv) or input (transposed conv) element
    meets one filter slice of prod(W.shape[1:]) weights."""
    n = outs[0].size if per == "out" else ins[0].size
    return 2 * n * prod(ins[1].shape[1:])


@batch_rules.family
def _batch_conv(op, args, dims, at):
    """Only x batched: the batch folds into N. Batched weights (or bias): one grouped conv
    with a group per example (x [N, B*C, ...], W [B*M, ...] or [B*C, ...] for conv_transpose,
    bias [B*M]); an unbatched x is repeated per example for that."""
    if all(d is None for d in dims[1:]):
        return batch_rules.fold_into_n(op)(args, dims, at)
    n = batch_rules.axis_size(args, dims)
    x, w, *bias = batch_rules.all_to_front(args, dims)
    xs, ws = batch_rules.shape(x), batch_rules.shape(w)
    x = batch_rules.reshape(batch_rules.moveaxis(x, 0, 1), (xs[1], n * xs[2]) + xs[3:])
    w = batch_rules.reshape(w, (n * ws[1],) + ws[2:])
    bias = [batch_rules.reshape(b, (n * batch_rules.shape(b)[1],)) for b in bias]
    y = batch_rules.bind(op, x, w, *bias, **{**at, "group": at["group"] * n})
    ys = batch_rules.shape(y)
    return [batch_rules.reshape(y, (ys[0], n, ys[1] // n) + ys[2:])], [1]


register(OpDef("conv", conv_infer, _float_ref(conv_ref), fusion="out_fusable",
               attrs=dict(CONV_ATTRS), num_inputs=(2, 3), flops=_weight_flops,
               batch=_batch_conv("conv"),
               doc="ONNX Conv: X [N,C,*S], W [M,C/group,*K], optional bias [M]"))


# ---- conv_transpose -----------------------------------------------------------------------

def _convt_shape(x, w, attrs):
    r, g = len(x) - 2, attrs["group"]
    s, pb, pe, d = spatial_attrs(attrs, r)
    op = tuple(attrs["output_padding"] or (0,) * r)
    out = tuple(s[i] * (x[2 + i] - 1) + op[i] + d[i] * (w[2 + i] - 1) + 1 - pb[i] - pe[i]
                for i in range(r))
    return (x[0], w[1] * g) + out


def _convt_infer(types, attrs):
    require(types, "f", "conv_transpose")
    dt = same_dtype(types)
    x, w = types[0].shape, types[1].shape
    g = attrs["group"]
    if len(x) < 3 or len(w) != len(x) or x[1] != w[0] or w[0] % g:
        raise OpError(f"conv_transpose: X {x}, W {w}, group {g} do not fit")
    out = _convt_shape(x, w, attrs)
    if min(out) < 1:
        raise OpError(f"conv_transpose: output shape {out} is empty")
    check_bias(types, 2, out[1], "conv_transpose")
    return [TensorType(dt, out)]


def _convt_ref(xs, attrs):
    """Scatter form: every input position adds its kernel-sized patch to the output."""
    x, w = xs[0], xs[1]
    r, g = x.ndim - 2, attrs["group"]
    s, pb, pe, d = spatial_attrs(attrs, r)
    out = _convt_shape(x.shape, w.shape, attrs)
    N, C, Mg = x.shape[0], x.shape[1], w.shape[1]
    full = [max(s[i] * (x.shape[2 + i] - 1) + d[i] * (w.shape[2 + i] - 1) + 1, pb[i] + out[2 + i])
            for i in range(r)]
    y = np.zeros((N, g, Mg) + tuple(full))
    xg = x.reshape((N, g, C // g) + x.shape[2:])
    wg = w.reshape((g, C // g, Mg) + w.shape[2:])
    for kk in np.ndindex(*w.shape[2:]):
        sl = tuple(slice(kk[i] * d[i], kk[i] * d[i] + s[i] * (x.shape[2 + i] - 1) + 1, s[i])
                   for i in range(r))
        y[(slice(None),) * 3 + sl] += np.einsum("ngc...,gcm->ngm...", xg, wg[(Ellipsis,) + kk])
    y = y.reshape((N, g * Mg) + tuple(full))
    y = y[(slice(None), slice(None)) + tuple(slice(pb[i], pb[i] + out[2 + i]) for i in range(r))]
    if len(xs) == 3:
        y = y + xs[2].reshape((1, -1) + (1,) * r)
    return [y]


register(OpDef("conv_transpose", _convt_infer, _float_ref(_convt_ref),
               fusion="out_fusable", attrs={**CONV_ATTRS, "output_padding": ()},
               flops=lambda i, o, a: _weight_flops(i, o, a, per="in"),
               num_inputs=(2, 3), doc="ONNX ConvTranspose with explicit pads",
               batch=_batch_conv("conv_transpose")))


# ---- pooling --------------------------------------------------------------------------------

POOL_ATTRS = {"kernel": REQUIRED, "strides": (), "pads": (), "dilations": (), "ceil_mode": 0}


def _max_pool_infer(types, attrs):
    require(types, "fiu", "max_pool")
    out = [TensorType(types[0].dtype, pool_out(types[0].shape, attrs))]
    return out + [TensorType(dtypes.i64, out[0].shape)] * bool(attrs["return_indices"])


def max_pool_ref(xs, attrs):
    x = xs[0]
    r = x.ndim - 2
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xw = x.astype(np.float64) if x.dtype.kind == "f" else x
    best = idx = None
    S = x.shape[2:]
    s, pb, pe, d = spatial_attrs(attrs, r)
    for kk, win in window_patches(xw, attrs, low):
        win = np.where(np.isnan(win), low, win) if x.dtype.kind == "f" else win
        if best is None:
            best, idx = np.full(win.shape, low, win.dtype), np.zeros(win.shape, np.int64)
        # flat index of this offset's input position; outside the input it never wins
        pos = [np.arange(win.shape[2 + a]) * s[a] - pb[a] + kk[a] * d[a] for a in range(r)]
        grids = np.meshgrid(*pos, indexing="ij")
        inside = np.all([(gq >= 0) & (gq < S[a]) for a, gq in enumerate(grids)], axis=0)
        order = range(r) if not attrs["storage_order"] else range(r - 1, -1, -1)
        flat = np.zeros(grids[0].shape, np.int64)
        for a in order:
            flat = flat * S[a] + grids[a]
        nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * r) * prod(S)
        better = (win > best) & inside
        best, idx = np.where(better, win, best), np.where(better, flat + nc, idx)
    outs = [best.astype(x.dtype)]
    return outs + [idx] * bool(attrs["return_indices"])


def _batch_max_pool(args, dims, at):
    """Folded into N; the argmax indices count from the start of each example again."""
    outs, out_dims = batch_rules.fold_into_n("max_pool")(args, dims, at)
    if at["return_indices"]:
        s = batch_rules.shape(args[0])
        per = prod(s) // s[dims[0]]   # elements of one example
        start = (np.arange(s[dims[0]], dtype=np.int64) * per).reshape((-1,) + (1,) * (len(s) - 1))
        outs = [outs[0], batch_rules.bind("sub", outs[1], batch_rules.const(start, np.int64))]
    return outs, out_dims


register(OpDef("max_pool", _max_pool_infer, max_pool_ref,
               fusion="opaque", attrs={**POOL_ATTRS, "storage_order": 0, "return_indices": 0},
               num_inputs=1, doc="max over the window; NaN ignored; optional int64 argmax",
               batch=_batch_max_pool))


def _pool_infer(types, attrs):
    require(types, "f", "pool")
    return [TensorType(types[0].dtype, pool_out(types[0].shape, attrs))]


def avg_pool_ref(xs, attrs):
    x = xs[0]
    r = x.ndim - 2
    S = x.shape[2:]
    s, pb, pe, d = spatial_attrs(attrs, r)
    total = count = 0
    ones = np.ones((1, 1) + S)
    if attrs["count_include_pad"]:   # padded extent counts; positions past the end pad don't
        ones = np.pad(ones, [(0, 0), (0, 0)] + list(zip(pb, pe)), constant_values=1)
        x = np.pad(x, [(0, 0), (0, 0)] + list(zip(pb, pe)))
        attrs = {**attrs, "pads": (0,) * (2 * r)}
    for (_, w), (_, o) in zip(window_patches(x, attrs, 0), window_patches(ones, attrs, 0)):
        total, count = total + w, count + o
    return [total / count]


register(OpDef("avg_pool", _pool_infer, _float_ref(avg_pool_ref),
               fusion="opaque", attrs={**POOL_ATTRS, "count_include_pad": 0}, num_inputs=1,
               batch=batch_rules.fold_into_n("avg_pool"),
               doc="mean over the window (pads counted when count_include_pad)"))


def _lp_pool_ref(xs, attrs):
    p = attrs["p"]
    total = 0
    for _, w in window_patches(xs[0], attrs, 0):
        total = total + np.abs(w) ** p
    return [total ** (1.0 / p)]


register(OpDef("lp_pool", _pool_infer, _float_ref(_lp_pool_ref),
               fusion="opaque", attrs={**POOL_ATTRS, "p": 2}, num_inputs=1,
               batch=batch_rules.fold_into_n("lp_pool"),
               doc="(sum |x|^p)^(1/p) over the window"))


# ---- lrn ------------------------------------------------------------------------------------

def _lrn_infer(types, attrs):
    require(types, "f", "lrn")
    if len(types[0].shape) < 2:
        raise OpError("lrn needs [N, C, ...]")
    return [types[0]]


def _lrn_ref(xs, attrs):
    x = xs[0]
    n = attrs["size"]
    lo, hi = (n - 1) // 2, -(-(n - 1) // 2)
    sq = np.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    total = sum(sq[:, j:j + x.shape[1]] for j in range(n))
    return [x / (attrs["bias"] + attrs["alpha"] / n * total) ** attrs["beta"]]


register(OpDef("lrn", _lrn_infer, _float_ref(_lrn_ref), fusion="opaque",
               attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, num_inputs=1,
               batch=batch_rules.fold_into_n("lrn"),
               doc="local response normalisation across channels"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim and bind so the backward ops trace like any others (jit, grad of
# grad).

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from .core import bind  # noqa: E402
from .prim import add, mul, sub  # noqa: E402


def _conv_params(attrs, r):
    s, pb, pe, d = spatial_attrs(attrs, r)
    return dict(strides=s, pads=pb + pe, dilations=d, group=attrs["group"])


def _crop(x, shape):
    """x's leading block of `shape` (dropping the trailing rows some padding adds)."""
    if tuple(x.shape) == tuple(shape):
        return x
    return bind("slice", x, starts=(0,) * x.ndim, steps=(1,) * x.ndim, shape=tuple(shape))


def _conv_input_grad(g, w, x_shape, attrs):
    """The adjoint of conv in its input: conv_transpose with the same kernel, its output
    padding chosen to give back x's size (rows the strides skipped get zeros)."""
    unpadded = _convt_shape(g.shape, w.shape, {**attrs, "output_padding": ()})
    op = tuple(n - m for n, m in zip(x_shape[2:], unpadded[2:]))
    return bind("conv_transpose", g, w, output_padding=op, **_conv_params(attrs, len(op)))


def _conv_weight_grad(x, g, w_shape, attrs):
    """dW[o, c, k] = sum over n, t of g[n, o, t] x[n, c, t*s + k*d - p]: itself a grouped
    conv of x (batch as channels) with g as the kernel, strides and dilations swapped."""
    r, G = x.ndim - 2, attrs["group"]
    s, pb, pe, d = spatial_attrs(attrs, r)
    N, C, O = x.shape[0], x.shape[1], g.shape[1]
    sp = tuple(range(3, 3 + r))
    xt = prim.transpose(prim.reshape(x, (N, G, C // G) + x.shape[2:]), (2, 1, 0) + sp)
    xt = prim.reshape(xt, (C // G, G * N) + x.shape[2:])
    gt = prim.transpose(prim.reshape(g, (N, G, O // G) + g.shape[2:]), (1, 2, 0) + sp)
    gt = prim.reshape(gt, (O, N) + g.shape[2:])
    dw = bind("conv", xt, gt, strides=d, dilations=s, pads=pb + pe, group=G)
    return _crop(prim.swapaxes(dw, 0, 1), w_shape)   # the end padding can add rows past the kernel


def _bias_grad(g):
    return prim.sum(g, axis=(0,) + tuple(range(2, g.ndim)))


def _conv_vjp(cts, ins, outs, attrs):
    x, w, g = ins[0], ins[1], cts[0]
    out = [_conv_input_grad(g, w, x.shape, attrs), _conv_weight_grad(x, g, w.shape, attrs)]
    return out + [_bias_grad(g)] * (len(ins) == 3)


def _conv_transpose_vjp(cts, ins, outs, attrs):
    """conv_transpose(x, w) is the adjoint of conv(., w): its input gradient is that conv,
    its weight gradient conv's weight gradient with the roles of input and output swapped."""
    x, w, g = ins[0], ins[1], cts[0]
    gx = bind("conv", g, w, **_conv_params(attrs, x.ndim - 2))
    gx = _crop(gx, x.shape)   # output_padding >= stride: trailing rows unused
    out = [gx, _conv_weight_grad(g, x, w.shape, attrs)]
    return out + [_bias_grad(g)] * (len(ins) == 3)


def _max_pool_vjp(cts, ins, outs, attrs):
    """To the input element each window took (the max pool's own flat indices). The scatter
    runs per (n, c) plane: an accumulating scatter scans every update of its row for each
    output point, so one flat row of the whole tensor cost N*C times more (190 ms against
    ~1 ms for a batch of 64 16-channel 8x8 images)."""
    x, g = ins[0], cts[0]
    idx = outs[1] if attrs["return_indices"] and not attrs["storage_order"] else bind(
        "max_pool", x, **dict(attrs, return_indices=1, storage_order=0))[1]
    planes, plane = x.shape[0] * x.shape[1], prod(x.shape[2:])
    start = (np.arange(planes, dtype=np.int64) * plane).reshape(planes, 1)
    # idx (int64) and start as the default int: int32 unless x64
    local = sub(prim.astype(prim.reshape(idx, (planes, -1)), np.int64), start)
    grad = bind("scatter_elements", prim.zeros((planes, plane), g.dtype), local,
                prim.reshape(g, (planes, -1)), axis=1, reduction="add")
    return [prim.reshape(grad, x.shape)]


def _avg_pool_vjp(cts, ins, outs, attrs):
    """Each window spreads g / count over its elements; count is the window size, or its
    non-padding part (a conv of ones with ones)."""
    x, g, k = ins[0], cts[0], tuple(attrs["kernel"])
    r = x.ndim - 2
    s, pb, pe, d = spatial_attrs(attrs, r)
    fa = _floor_attrs(x.shape, g.shape, attrs)
    if attrs["count_include_pad"] and not attrs["ceil_mode"]:
        g = prim.div(g, int(np.prod(k)))
    else:   # padding counts when count_include_pad, positions past the end pad never
        inc = attrs["count_include_pad"]
        size = tuple(x.shape[2 + i] + (pb[i] + pe[i] if inc else 0) for i in range(r))
        pads = fa["pads"]
        pads = (0,) * r + tuple(pads[r + i] - pe[i] for i in range(r)) if inc else pads
        cnt = bind("conv", prim.ones((1, 1) + size, g.dtype), prim.ones((1, 1) + k, g.dtype),
                   strides=s, pads=pads, dilations=d)
        g = prim.div(g, _crop(cnt, (1, 1) + tuple(g.shape[2:])))
    return [_window_sum_adjoint(g, x, attrs)]


def _floor_attrs(x_shape, out_shape, attrs):
    """strides/pads/dilations whose windows are the pool's: in ceil mode the last windows
    run past the end pad (zeros there), so the end pad grows to cover them."""
    r = len(x_shape) - 2
    s, pb, pe, d = spatial_attrs(attrs, r)
    k = tuple(attrs["kernel"])
    if attrs["ceil_mode"]:
        pe = tuple(max(pe[i], (out_shape[2 + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1
                       - x_shape[2 + i] - pb[i]) for i in range(r))
    return dict(strides=s, pads=tuple(pb) + tuple(pe), dilations=d)


def _window_sum_adjoint(g, x, attrs):
    """Adjoint of summing each pooling window: every window spreads its g over its
    elements, a depthwise conv_transpose with a kernel of ones."""
    k = tuple(attrs["kernel"])
    fa = _floor_attrs(x.shape, g.shape, attrs)
    conv_attrs = dict(strides=fa["strides"], pads=fa["pads"],
                      dilations=fa["dilations"], group=x.shape[1])
    return _conv_input_grad(g, prim.ones((x.shape[1], 1) + k, g.dtype), x.shape, conv_attrs)


def _lp_pool_vjp(cts, ins, outs, attrs):
    """y = (sum |x|^p)^(1/p): dy/dx = y^(1-p) |x|^(p-1) sign(x), summed over the windows."""
    x, y, p = ins[0], outs[0], attrs["p"]
    spread = _window_sum_adjoint(mul(cts[0], prim.power(y, 1 - p)), x, attrs)
    return [mul(mul(spread, prim.power(prim.abs(x), p - 1)), prim.sign(x))]


def _channel_window_sum(z, before, after, n):
    """sum over j < n of z shifted along the channels: pad by (before, after), add slices."""
    C = z.shape[1]
    zp = prim.pad(z, [(0, 0), (before, after)] + [(0, 0)] * (z.ndim - 2))
    total = prim.slice_in_dim(zp, 0, C, axis=1)
    for j in range(1, n):
        total = add(total, prim.slice_in_dim(zp, j, j + C, axis=1))
    return total


def _lrn_vjp(cts, ins, outs, attrs):
    """y = x d^-beta, d = bias + alpha/n * (window sum of x^2 over channels): the window sum's
    adjoint is the window sum the other way round."""
    x, g, n = ins[0], cts[0], attrs["size"]
    lo, hi = (n - 1) // 2, -(-(n - 1) // 2)
    k, beta = attrs["alpha"] / n, attrs["beta"]
    d = add(attrs["bias"], mul(k, _channel_window_sum(mul(x, x), lo, hi, n)))
    back = _channel_window_sum(mul(mul(g, x), prim.power(d, -beta - 1)), hi, lo, n)
    return [sub(mul(g, prim.power(d, -beta)), mul(mul(2 * beta * k, x), back))]


OPS["lp_pool"].vjp = _lp_pool_vjp
OPS["lrn"].vjp = _lrn_vjp
OPS["conv"].jvp = bilinear_jvp("conv")
OPS["conv_transpose"].jvp = bilinear_jvp("conv_transpose")
OPS["conv"].vjp = _conv_vjp
OPS["conv_transpose"].vjp = _conv_transpose_vjp
OPS["max_pool"].vjp = _max_pool_vjp
OPS["avg_pool"].vjp = _avg_pool_vjp
