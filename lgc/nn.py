"""lgc.nn: jax.nn's activations and a few layers (conv, pools, layer_norm, segment_sum),
lowered to core ops. Arrays are NCHW (channels first) and kernels OIHW, as ONNX has them."""
from __future__ import annotations

import math

import numpy as np

from . import numpy as lnp
from . import random
from .ops import prim
from .ops.core import bind
from .scipy.special import logsumexp  # jax.nn.logsumexp is the same function
from .trace.autodiff import stop_gradient


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


def softmax(x, axis=-1, where=None):
    """exp(x) / sum(exp(x)) over `axis`; `where` (broadcast to x) masks entries out: they
    get 0, and the max and sum skip them (jax.nn.softmax)."""
    x, weak = _float(x)
    a = _one_axis(x, axis)
    if where is not None:
        return _masked_softmax(x, axis, where, log=False)
    if a is not None:
        return bind("softmax", x, axis=a)
    e = lnp.exp(lnp.subtract(x, lnp.max(x, axis, keepdims=True)))
    return lnp.divide(e, lnp.sum(e, axis, keepdims=True))


def log_softmax(x, axis=-1, where=None):
    """x - logsumexp(x) over `axis`; entries masked out by `where` get -inf."""
    x, weak = _float(x)
    a = _one_axis(x, axis)
    if where is not None:
        return _masked_softmax(x, axis, where, log=True)
    if a is not None:
        return bind("log_softmax", x, axis=a)
    return lnp.subtract(x, logsumexp(x, axis, keepdims=True))


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


# ---- jax.nn's other activations, and softmax with `where` -------------------------------------

def _masked_softmax(x, axis, where, log: bool):
    """softmax / log_softmax over `axis` of the entries `where` keeps (JAX's semantics: the
    others give 0 / -inf, a row with none kept too); the max is held out of the gradient."""
    keep = lnp.broadcast_to(lnp.asarray(where, dtype=bool), x.shape)
    kept = lnp.where(keep, x, -np.inf)
    m = lnp.max(kept, axis, keepdims=True)
    shifted = lnp.subtract(kept, stop_gradient(lnp.where(lnp.isfinite(m), m, 0.0)))
    e = lnp.where(keep, lnp.exp(shifted), 0.0)
    total = lnp.sum(e, axis, keepdims=True)
    total = lnp.where(lnp.equal(total, 0.0), 1.0, total)     # rows with nothing kept
    if log:
        return lnp.where(keep, lnp.subtract(shifted, lnp.log(total)), -np.inf)
    return lnp.divide(e, total)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    """scale * elu(x, alpha) with Klambauer et al.'s self-normalising constants."""
    x, weak = _float(x)
    return lnp._weak(lnp.multiply(_SELU_SCALE, elu(x, _SELU_ALPHA)), weak)


def celu(x, alpha=1.0):
    """max(x, 0) + alpha * expm1(min(x, 0) / alpha) (jax.nn.celu)."""
    x, weak = _float(x)
    neg = lnp.expm1(lnp.divide(lnp.minimum(x, 0.0), alpha))
    return lnp._weak(lnp.add(lnp.maximum(x, 0.0), lnp.multiply(alpha, neg)), weak)


def hard_tanh(x):
    """x clipped to [-1, 1]."""
    x, weak = _float(x)
    return lnp._weak(lnp.clip(x, -1.0, 1.0), weak)


def hard_sigmoid(x):
    """relu6(x + 3) / 6."""
    x, weak = _float(x)
    return lnp._weak(lnp.divide(relu6(lnp.add(x, 3.0)), 6.0), weak)


def hard_silu(x):
    """x * hard_sigmoid(x)."""
    x, weak = _float(x)
    return lnp._weak(lnp.multiply(x, hard_sigmoid(x)), weak)


hard_swish = hard_silu


def glu(x, axis=-1):
    """Gated linear unit: the first half of x along `axis` times sigmoid of the second."""
    x = lnp.asarray(x)
    if x.shape[axis] % 2:
        raise ValueError(f"glu: axis {axis} has odd size {x.shape[axis]}; it must split in two")
    a, b = lnp.split(x, 2, axis)
    return lnp.multiply(a, sigmoid(b))


def mish(x):
    """x * tanh(softplus(x)) (Misra 2019)."""
    x, weak = _float(x)
    return lnp._weak(lnp.multiply(x, lnp.tanh(softplus(x))), weak)
