"""lgc.nn: jax.nn's activations and a few layers (conv, pools, layer_norm, segment_sum),
lowered to core ops. Arrays are NCHW (channels first) and kernels OIHW, as ONNX has them."""
from __future__ import annotations

import math

import numpy as np

from . import numpy as lnp
from . import random
from .ops import prim
from .ops.core import bind


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
    return prim.normalize_axis(axis, x.ndim) if isinstance(axis, (int, np.integer)) else None


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
    return out if keepdims else lnp.squeeze(out, prim.normalize_axes(axis, a.ndim))


def one_hot(x, num_classes: int, dtype=None, axis=-1):
    """1 where x equals the class index along `axis`; out-of-range entries give all zeros."""
    x = lnp.asarray(x)
    a = prim.normalize_axis(axis, x.ndim + 1)
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
    if num_segments is None:
        raise ValueError("segment_sum needs a static num_segments under lgc")
    return prim.segment_sum(lnp.asarray(data), lnp.asarray(segment_ids), num_segments)


def dot_product_attention(query, key, value, bias=None, mask=None, *, scale=None,
                          is_causal=False):
    """softmax(q k^T * scale + bias, masked) v for [B, T, N, H] arrays (jax.nn's layout).

    `mask` is boolean, True where attention is allowed; is_causal adds the lower triangle."""
    q, k, v = lnp.asarray(query), lnp.asarray(key), lnp.asarray(value)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = lnp.multiply(lnp.einsum("btnh,bsnh->bnts", q, k), scale)
    if bias is not None:
        logits = lnp.add(logits, bias)
    big_neg = np.float32(np.finfo(np.float32).min)
    if mask is not None:
        logits = lnp.where(mask, logits, big_neg)
    if is_causal:
        t, s_ = logits.shape[-2:]
        logits = lnp.where(lnp.tri(t, s_, dtype=bool), logits, big_neg)
    return lnp.einsum("bnts,bsnh->btnh", softmax(logits, axis=-1), v)


def _scaled(scale, mode, distribution):
    """A named variance_scaling initializer (glorot_uniform, he_normal, ...), as jax's."""
    def make(in_axis=-2, out_axis=-1, dtype=np.float32):
        return initializers.variance_scaling(scale, mode, distribution, in_axis, out_axis, dtype)
    return staticmethod(make)


class initializers:  # noqa: N801 (jax.nn.initializers is a module)
    """jax.nn.initializers: functions init(key, shape, dtype=float32) -> array."""

    @staticmethod
    def zeros(key, shape, dtype=np.float32):
        return lnp.zeros(shape, dtype)

    @staticmethod
    def ones(key, shape, dtype=np.float32):
        return lnp.ones(shape, dtype)

    @staticmethod
    def constant(value, dtype=np.float32):
        return lambda key, shape, dtype=dtype: lnp.full(shape, value, dtype)

    @staticmethod
    def normal(stddev=1e-2, dtype=np.float32):
        return lambda key, shape, dtype=dtype: lnp.multiply(random.normal(key, shape, dtype), stddev)

    @staticmethod
    def uniform(scale=1e-2, dtype=np.float32):
        return lambda key, shape, dtype=dtype: random.uniform(key, shape, dtype, 0.0, scale)

    @staticmethod
    def variance_scaling(scale, mode, distribution, in_axis=-2, out_axis=-1, dtype=np.float32):
        """As jax: variance scale / fan (fan_in, fan_out or their mean), drawn from a
        truncated normal (stddev corrected), a normal or a uniform distribution."""

        def init(key, shape, dtype=dtype):
            shape = tuple(shape)
            receptive = math.prod(d for i, d in enumerate(shape)
                                  if i not in (in_axis % len(shape), out_axis % len(shape)))
            fan_in, fan_out = shape[in_axis] * receptive, shape[out_axis] * receptive
            fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
            var = scale / max(1.0, fan)
            if distribution == "truncated_normal":
                std = math.sqrt(var) / 0.87962566103423978   # stddev of N(0,1) cut at +-2
                return lnp.multiply(random.truncated_normal(key, -2.0, 2.0, shape, dtype), std)
            if distribution == "normal":
                return lnp.multiply(random.normal(key, shape, dtype), math.sqrt(var))
            if distribution == "uniform":
                lim = math.sqrt(3 * var)
                return random.uniform(key, shape, dtype, -lim, lim)
            raise ValueError(f"unknown distribution {distribution!r}")
        return init

    glorot_uniform = _scaled(1.0, "fan_avg", "uniform")
    glorot_normal = _scaled(1.0, "fan_avg", "truncated_normal")
    lecun_normal = _scaled(1.0, "fan_in", "truncated_normal")
    he_normal = _scaled(2.0, "fan_in", "truncated_normal")
    he_uniform = _scaled(2.0, "fan_in", "uniform")
    xavier_uniform, xavier_normal = glorot_uniform, glorot_normal
    kaiming_normal, kaiming_uniform = he_normal, he_uniform
