"""lgc.nn: jax.nn's activations and a few layers (conv, pools, layer_norm, segment_sum),
lowered to core ops. Arrays are NCHW (channels first) and kernels OIHW, as ONNX has them."""
from __future__ import annotations

import math

import numpy as np

from . import numpy as lnp
from .trace.core import bind


def _float(x):
    (x,), dt, weak = lnp._promote(x, to_float=True)
    return lnp.asarray(x), weak


def relu(x):
    (x,), dt, weak = lnp._promote(x)
    return bind("relu", x, weak=weak) if dt.kind in "fi" else x


def relu6(x):
    return lnp.minimum(relu(x), 6.0)


def sigmoid(x):
    x, weak = _float(x)
    return bind("sigmoid", x, weak=weak)


def log_sigmoid(x):
    return lnp.negative(softplus(lnp.negative(x)))


def softplus(x):
    return lnp.logaddexp(x, 0.0)


def silu(x):
    x, weak = _float(x)
    return lnp.multiply(x, sigmoid(x))


swish = silu


def tanh(x):
    return lnp.tanh(x)


def gelu(x, approximate: bool = True):
    """jax.nn.gelu: the tanh approximation by default, erf with approximate=False."""
    x, weak = _float(x)
    if approximate:
        c = math.sqrt(2 / math.pi)
        inner = lnp.multiply(c, lnp.add(x, lnp.multiply(0.044715, lnp.multiply(x, lnp.multiply(x, x)))))
        return lnp.multiply(lnp.multiply(0.5, x), lnp.add(1.0, lnp.tanh(inner)))
    erf = bind("erf", lnp.multiply(x, 1 / math.sqrt(2)))
    return lnp.multiply(lnp.multiply(0.5, x), lnp.add(1.0, erf))


def elu(x, alpha=1.0):
    x, weak = _float(x)
    return lnp.where(lnp.greater(x, 0), x, lnp.multiply(alpha, lnp.expm1(x)))


def leaky_relu(x, negative_slope=1e-2):
    x, weak = _float(x)
    return lnp.where(lnp.greater_equal(x, 0), x, lnp.multiply(negative_slope, x))


def _one_axis(x, axis):
    return lnp._norm_axis(axis, x.ndim) if isinstance(axis, (int, np.integer)) else None


def softmax(x, axis=-1):
    x, weak = _float(x)
    a = _one_axis(x, axis)
    if a is not None:
        return bind("softmax", x, axis=a)
    e = lnp.exp(lnp.subtract(x, lnp.max(x, axis, keepdims=True)))
    return lnp.divide(e, lnp.sum(e, axis, keepdims=True))


def log_softmax(x, axis=-1):
    x, weak = _float(x)
    a = _one_axis(x, axis)
    if a is not None:
        return bind("log_softmax", x, axis=a)
    return lnp.subtract(x, logsumexp(x, axis, keepdims=True))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) with the max subtracted first (stable); -inf rows stay -inf."""
    if b is not None or return_sign:
        raise NotImplementedError("logsumexp with b= or return_sign=")
    a, weak = _float(a)
    m = lnp.max(a, axis, keepdims=True)
    m = lnp.where(lnp.isfinite(m), m, 0.0)
    s = lnp.log(lnp.sum(lnp.exp(lnp.subtract(a, m)), axis, keepdims=True))
    out = lnp.add(s, m)
    return out if keepdims else lnp.squeeze(out, lnp._norm_axes(axis, a.ndim))


def one_hot(x, num_classes: int, dtype=None, axis=-1):
    """1 where x equals the class index along `axis`; out-of-range entries give all zeros."""
    x = lnp.asarray(x)
    a = lnp._norm_axis(axis, x.ndim + 1)
    classes = lnp.reshape(lnp.arange(num_classes), (num_classes,) + (1,) * (x.ndim - a))
    hit = lnp.equal(lnp.expand_dims(x, a), classes)
    return lnp.astype(hit, dtype or lnp.float32)


def standardize(x, axis=-1, mean=None, variance=None, epsilon=1e-5):
    x, weak = _float(x)
    mean = lnp.mean(x, axis, keepdims=True) if mean is None else mean
    variance = lnp.var(x, axis, keepdims=True) if variance is None else variance
    return lnp.multiply(lnp.subtract(x, mean), lnp.rsqrt(lnp.add(variance, epsilon)))


def layer_norm(x, scale=None, offset=None, axis=-1, epsilon=1e-5):
    """(x - mean) / sqrt(var + eps) over `axis`, then * scale + offset (broadcast)."""
    y = standardize(x, axis, epsilon=epsilon)
    if scale is not None:
        y = lnp.multiply(y, scale)
    if offset is not None:
        y = lnp.add(y, offset)
    return y


def _pairs(padding, kernel, strides, dilation, in_shape):
    """Explicit (lo, hi) pads per spatial axis from 'SAME'/'VALID'/pairs (as lax.conv)."""
    r = len(kernel)
    if isinstance(padding, str):
        p = padding.upper()
        if p == "VALID":
            return [(0, 0)] * r
        if p in ("SAME", "SAME_LOWER"):
            out = []
            for n, k, s, d in zip(in_shape, kernel, strides, dilation):
                o = -(-n // s)
                total = max((o - 1) * s + (k - 1) * d + 1 - n, 0)
                lo = total // 2 if p == "SAME" else total - total // 2
                out.append((lo, total - lo))
            return out
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, int):
        return [(padding, padding)] * r
    return [(int(lo), int(hi)) for lo, hi in padding]


def _tuple(v, r, default):
    if v is None:
        return (default,) * r
    return (int(v),) * r if isinstance(v, (int, np.integer)) else tuple(int(t) for t in v)


def conv(x, w, strides=None, padding="VALID", dilation=None, groups: int = 1, bias=None):
    """N-d convolution, x [N, C, *S], w [O, C/groups, *K] (lax.conv_general_dilated with NCHW)."""
    (x, w), dt, weak = lnp._promote(x, w, to_float=True)
    x, w = lnp.asarray(x), lnp.asarray(w)
    r = x.ndim - 2
    s, d = _tuple(strides, r, 1), _tuple(dilation, r, 1)
    pads = _pairs(padding, w.shape[2:], s, d, x.shape[2:])
    args = [x, w] + ([lnp.astype(bias, dt)] if bias is not None else [])
    return bind("conv", *args, strides=s, dilations=d, group=int(groups),
                pads=tuple(p[0] for p in pads) + tuple(p[1] for p in pads))


def _pool(op, x, window, strides, padding, **extra):
    x = lnp.asarray(x)
    r = x.ndim - 2
    k = _tuple(window, r, 1)
    s = _tuple(strides, r, 1) if strides is not None else k
    pads = _pairs(padding, k, s, (1,) * r, x.shape[2:])
    return bind(op, x, kernel=k, strides=s,
                pads=tuple(p[0] for p in pads) + tuple(p[1] for p in pads), **extra)


def max_pool(x, window_shape, strides=None, padding="VALID"):
    """Max over windows of the spatial axes of x [N, C, *S]; strides default to the window."""
    return _pool("max_pool", x, window_shape, strides, padding)


def avg_pool(x, window_shape, strides=None, padding="VALID", count_include_pad=True):
    """Mean over windows (flax's avg_pool counts padding by default)."""
    x, weak = _float(x)
    return _pool("avg_pool", x, window_shape, strides, padding,
                 count_include_pad=int(count_include_pad))


def segment_sum(data, segment_ids, num_segments: int | None = None):
    """out[s] = sum of data[i] with segment_ids[i] == s (jax.ops.segment_sum); ids out of
    range are dropped. One scatter_nd with add over a zero array."""
    data, ids = lnp.asarray(data), lnp.asarray(segment_ids)
    if num_segments is None:
        raise ValueError("segment_sum needs a static num_segments under lgc")
    out = lnp.zeros((num_segments,) + data.shape[1:], data.dtype)
    ids = lnp.astype(ids, lnp.int32)
    ids = lnp.where(lnp.less(ids, 0), num_segments, ids)  # scatter_nd would wrap negatives
    return bind("scatter_nd", out, lnp.reshape(ids, (-1, 1)), data, reduction="add")
