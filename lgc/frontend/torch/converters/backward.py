"""ATen's backward operators, as AOTAutograd's backward graphs (and exported training graphs)
hold them. Convolution and pooling run lgc's own gradient rules (lgc/ops/nn.py, the ones
lgc.grad uses) through `run_vjp`; the normalizations and the embedding are written out.
Each returns None for the gradients `output_mask` does not ask for."""
from __future__ import annotations

import math

import numpy as np

from ...onnx.converters.layout import reshape
from ..rules import run_vjp
from . import converter
from .indexing import index_put
from .layout import transpose
from .nn import _window, conv_op


def _masked(grads, output_mask):
    return tuple(g if want else None for g, want in zip(grads, output_mask))


def _reduce_sum(ctx, x, axes, keepdims=0):
    return ctx.op("reduce_sum", [x], {"axes": tuple(axes), "keepdims": keepdims})


def _reduce_mean(ctx, x, axes):
    return ctx.op("reduce_mean", [x], {"axes": tuple(axes), "keepdims": 1})


# ---- convolution and pools ----------------------------------------------------------------

@converter("aten.convolution_backward.default")
def convolution_backward(ctx, g, x, w, bias_sizes, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask):
    """(dx, dW, dbias): conv's (or conv_transpose's) vjp rule; dbias sums g over all but C."""
    op, attrs = conv_op(x.type.rank - 2, stride, padding, dilation, transposed, output_padding, groups)
    dx, dw = run_vjp(ctx, op, [g], [x, w], [None], attrs) if any(output_mask[:2]) else (None, None)
    db = _reduce_sum(ctx, g, (0,) + tuple(range(2, g.type.rank))) if output_mask[2] else None
    return _masked((dx, dw, db), output_mask)


def _batched(x, what: str):
    if x.type.rank < 3:
        raise NotImplementedError(f"{what} of an unbatched input")


@converter("aten.max_pool2d_with_indices_backward.default",
           "aten.max_pool3d_with_indices_backward.default")
def max_pool_backward(ctx, g, x, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """g to the element each window took: max_pool's vjp rule, given the forward's indices
    (torch's count within each (n, c) plane; the rule's are flat over the tensor)."""
    _batched(x, "max pool backward")
    n, c = x.shape[:2]
    plane = math.prod(x.shape[2:])
    base = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * (x.type.rank - 2))
    flat = ctx.op("add", [indices, ctx.const(base.astype(indices.dtype.np))])
    attrs = {**_window(x, kernel_size, stride, padding, dilation), "ceil_mode": int(ceil_mode),
             "return_indices": 1}
    (dx,) = run_vjp(ctx, "max_pool", [g], [x], [None, flat], attrs)
    return dx


@converter("aten.avg_pool2d_backward.default", "aten.avg_pool3d_backward.default")
def avg_pool_backward(ctx, g, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override):
    """Each window spreads its g over its elements: avg_pool's vjp rule (a divisor_override
    scales g as the forward converter scales the window mean)."""
    _batched(x, "average pool backward")
    attrs = {**_window(x, kernel_size, stride, padding), "ceil_mode": int(ceil_mode),
             "count_include_pad": int(count_include_pad)}
    del attrs["dilations"]
    if divisor_override:
        g = ctx.op("mul", [g, ctx.scalar(math.prod(attrs["kernel"]) / divisor_override, g)])
        attrs["count_include_pad"] = 1
    (dx,) = run_vjp(ctx, "avg_pool", [g], [x], [None], attrs)
    return dx


@converter("aten._adaptive_avg_pool2d_backward.default",
           "aten._adaptive_avg_pool3d_backward.default")
def adaptive_avg_pool_backward(ctx, g, x):
    """Equal windows: avg_pool's vjp rule. Otherwise per axis the forward is a matrix A
    [m, n] of window weights (1/len over [floor(i n/m), ceil((i+1) n/m))), so dx = g A."""
    _batched(x, "adaptive average pool backward")
    spatial, out = x.shape[2:], g.shape[2:]
    if all(n % m == 0 for n, m in zip(spatial, out)):
        k = tuple(n // m for n, m in zip(spatial, out))
        (dx,) = run_vjp(ctx, "avg_pool", [g], [x], [None], {"kernel": k, "strides": k})
        return dx
    r = x.type.rank
    for a, (n, m) in enumerate(zip(spatial, out)):
        d = 2 + a
        weights = np.zeros((m, n), x.dtype.np)
        for i in range(m):
            lo, hi = (i * n) // m, -((-(i + 1) * n) // m)
            weights[i, lo:hi] = 1.0 / (hi - lo)
        last = [k for k in range(r) if k != d] + [d]
        moved = ctx.op("matmul", [transpose(ctx, g, last), ctx.const(weights)])
        g = transpose(ctx, moved, list(np.argsort(last)))
    return g


# ---- normalizations -----------------------------------------------------------------------

def _normalized_input_grad(ctx, gw, xhat, rstd, axes):
    """dx of y = xhat * w + b, xhat = (x - mean) rstd, the statistics over `axes`, given
    gw = g * w: rstd (gw - mean(gw) - xhat mean(gw xhat))."""
    centred = ctx.op("sub", [gw, _reduce_mean(ctx, gw, axes)])
    along = ctx.op("mul", [xhat, _reduce_mean(ctx, ctx.op("mul", [gw, xhat]), axes)])
    return ctx.op("mul", [rstd, ctx.op("sub", [centred, along])])


@converter("aten.native_layer_norm_backward.default")
def native_layer_norm_backward(ctx, g, x, normalized_shape, mean, rstd, weight, bias, output_mask):
    """(dx, dweight, dbias); mean and rstd as the forward returned them (size-1 normalized
    axes)."""
    k = len(normalized_shape)
    axes, batch = tuple(range(x.type.rank - k, x.type.rank)), tuple(range(x.type.rank - k))
    xhat = ctx.op("mul", [ctx.op("sub", [x, mean]), rstd])
    gw = g if weight is None else ctx.op("mul", [g, weight])
    dx = _normalized_input_grad(ctx, gw, xhat, rstd, axes) if output_mask[0] else None
    dw = _reduce_sum(ctx, ctx.op("mul", [g, xhat]), batch) \
        if output_mask[1] and weight is not None else None
    db = _reduce_sum(ctx, g, batch) if output_mask[2] and bias is not None else None
    return dx, dw, db


@converter("aten.native_group_norm_backward.default")
def native_group_norm_backward(ctx, g, x, mean, rstd, weight, n, c, hxw, group, output_mask):
    """(dx, dweight, dbias) with x seen as [N, G, C/G, HxW] and the statistics [N, G]."""
    grouped = (n, group, c // group, hxw)
    xg, gg = reshape(ctx, x, grouped), reshape(ctx, g, grouped)
    stat = lambda s: reshape(ctx, s, (n, group, 1, 1))  # noqa: E731
    xhat = ctx.op("mul", [ctx.op("sub", [xg, stat(mean)]), stat(rstd)])
    gw = gg if weight is None else ctx.op("mul", [gg, reshape(ctx, weight, (1, group, c // group, 1))])
    dx = reshape(ctx, _normalized_input_grad(ctx, gw, xhat, stat(rstd), (2, 3)), x.shape) \
        if output_mask[0] else None
    per_channel = lambda v: reshape(ctx, _reduce_sum(ctx, v, (0, 3)), (c,))  # noqa: E731
    dw = per_channel(ctx.op("mul", [gg, xhat])) if output_mask[1] and weight is not None else None
    db = per_channel(gg) if output_mask[2] else None
    return dx, dw, db


# ---- embedding ----------------------------------------------------------------------------

@converter("aten.embedding_dense_backward.default")
def embedding_dense_backward(ctx, g, indices, num_weights, padding_idx, scale_grad_by_freq):
    """The rows of g added into a [num_weights, D] zero matrix at `indices` (index_put with
    accumulate); the padding row gets none, and scale_grad_by_freq divides each row's
    contributions by how often its index occurs."""
    d = g.shape[-1]
    flat_i = reshape(ctx, indices, (indices.type.size,))
    flat_g = reshape(ctx, g, (indices.type.size, d))
    if scale_grad_by_freq:
        ones = ctx.const(np.ones(indices.type.size, g.dtype.np))
        counts = index_put(ctx, ctx.const(np.zeros(num_weights, g.dtype.np)), [flat_i], ones, True)
        per_row = ctx.op("gather", [counts, flat_i], {"axis": 0})
        flat_g = ctx.op("div", [flat_g, reshape(ctx, per_row, (indices.type.size, 1))])
    if padding_idx is not None and padding_idx >= 0:
        keep = ctx.op("not", [ctx.op("eq", [flat_i, ctx.scalar(padding_idx, flat_i)])])
        flat_g = ctx.op("mul", [flat_g, reshape(ctx, ctx.cast(keep, g.dtype), (indices.type.size, 1))])
    zeros = ctx.const(np.zeros((num_weights, d), g.dtype.np))
    return index_put(ctx, zeros, [flat_i], flat_g, True)


# ---- attention ----------------------------------------------------------------------------

def _swap_last(ctx, x):
    r = x.type.rank
    return transpose(ctx, x, list(range(r - 2)) + [r - 1, r - 2])


@converter("aten._scaled_dot_product_flash_attention_for_cpu_backward.default")
def sdpa_flash_cpu_backward(ctx, g, q, k, v, out, lse, dropout_p, is_causal, attn_mask=None,
                            scale=None):
    """(dq, dk, dv) from the forward's output and the attention weights P: dv = P^T g,
    dS = P (g v^T - rowsum(g out)), dq = scale dS k, dk = scale dS^T q. P comes as the
    forward saved it: torch's decomposition of the forward (which AOTAutograd applies) saves
    P itself in the log-sum-exp's place, the kernel the log-sum-exp [..., L]."""
    if dropout_p:
        raise NotImplementedError("attention backward with dropout (random numbers)")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    p = lse if lse.type.rank == q.type.rank else _attention_weights(ctx, q, k, lse, is_causal,
                                                                  attn_mask, scale)
    dv = ctx.op("matmul", [_swap_last(ctx, p), g])
    dp = ctx.op("matmul", [g, _swap_last(ctx, v)])
    row = _reduce_sum(ctx, ctx.op("mul", [g, out]), (g.type.rank - 1,), keepdims=1)
    ds = ctx.op("mul", [ctx.op("mul", [p, ctx.op("sub", [dp, row])]), ctx.scalar(scale, p)])
    dq = ctx.op("matmul", [ds, k])
    dk = ctx.op("matmul", [_swap_last(ctx, ds), q])
    return dq, dk, dv


def _attention_weights(ctx, q, k, lse, is_causal, attn_mask, scale):
    """P = exp(S - lse), S = scale q k^T plus the mask."""
    s = ctx.op("mul", [ctx.op("matmul", [q, _swap_last(ctx, k)]), ctx.scalar(scale, q)])
    if is_causal:
        keep = ctx.const(np.tril(np.ones((q.shape[-2], k.shape[-2]), bool)))
        s = ctx.op("where", [keep, s, ctx.scalar(-np.inf, s)])
    if attn_mask is not None:   # additive, of q's dtype (the kernel takes no other)
        s = ctx.op("add", [s, attn_mask])
    return ctx.op("exp", [ctx.op("sub", [s, reshape(ctx, lse, lse.shape + (1,))])])
