"""lgc.random: JAX's counter-based PRNG (threefry-2x32) on uint32 core ops.

Keys are uint32[2] arrays (JAX's raw keys), so they can be jit arguments and results.
The scheme is JAX's original one (before `jax_threefry_partitionable`): split hashes an
iota, random bits hash the element counter, uniform takes the top 23 bits as the mantissa
of a float in [1, 2), and normal is sqrt(2) * erfinv(uniform in (-1, 1)) with XLA's erfinv
polynomial. Everything is lnp code, so it runs eagerly or staged, like any other op.
"""
from __future__ import annotations

import math

import numpy as np

from . import numpy as lnp
from .ops import prim
from .ops.core import bind
from .scipy._erf import erfinv_giles

_U32 = np.uint32
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _u32(x):
    return lnp.astype(x, _U32)


def _rotl(v, r: int):
    return lnp.bitwise_or(lnp.left_shift(v, np.uint32(r)), lnp.right_shift(v, np.uint32(32 - r)))


def _threefry2x32(k1, k2, x0, x1):
    """The Threefry-2x32 block cipher with 20 rounds (Salmon et al. 2011), as in JAX."""
    ks = [k1, k2, lnp.bitwise_xor(lnp.bitwise_xor(k1, k2), np.uint32(0x1BD11BDA))]
    x0, x1 = lnp.add(x0, ks[0]), lnp.add(x1, ks[1])
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = lnp.add(x0, x1)
            x1 = lnp.bitwise_xor(x0, _rotl(x1, r))
        x0 = lnp.add(x0, ks[(i + 1) % 3])
        x1 = lnp.add(lnp.add(x1, ks[(i + 2) % 3]), np.uint32(i + 1))
    return x0, x1


def _hash(key, count):
    """threefry_2x32(key, count) over a flat uint32 count, as jax.random does it: the two
    halves of the counter are the cipher's two words."""
    key = _u32(key)
    n = lnp.size(count)
    count = lnp.ravel(count)
    if n % 2:
        count = lnp.concatenate([count, lnp.zeros(1, _U32)])
    half = (n + 1) // 2
    x0, x1 = _threefry2x32(key[0], key[1], count[:half], count[half:])
    out = lnp.concatenate([x0, x1])
    return out[:n] if n % 2 else out


def PRNGKey(seed) -> "lnp.ndarray":  # noqa: N802 (JAX's name)
    """A raw key [seed >> 32, seed & 0xFFFFFFFF] (uint32[2])."""
    if isinstance(seed, (int, np.integer)):
        s = int(seed)
        return lnp.asarray(np.array([(s >> 32) & 0xFFFFFFFF, s & 0xFFFFFFFF], _U32))
    s = lnp.asarray(seed)
    return lnp.stack([lnp.zeros((), _U32), _u32(s)])


key = PRNGKey


def split(key, num: int = 2):
    return lnp.reshape(_hash(key, lnp.arange(num * 2, dtype=_U32)), (num, 2))


def fold_in(key, data):
    return _hash(key, PRNGKey(data))


def bits(key, shape=(), dtype=_U32):
    shape = prim.shape_tuple(shape)
    n = math.prod(shape)
    if n == 0:
        return lnp.zeros(shape, _U32)
    return lnp.reshape(_hash(key, lnp.arange(n, dtype=_U32)), shape)


def uniform(key, shape=(), dtype=np.float32, minval=0.0, maxval=1.0):
    """Floats in [minval, maxval): 23 random mantissa bits under the exponent of 1.0."""
    if np.dtype(dtype) != np.float32:
        raise NotImplementedError("lgc.random.uniform: float32 only for now")
    b = bits(key, shape)
    mant = lnp.bitwise_or(lnp.right_shift(b, np.uint32(9)), np.uint32(0x3F800000))
    f = lnp.subtract(bind("bitcast", mant, to="f32"), np.float32(1.0))
    lo, hi = lnp.asarray(minval, dtype), lnp.asarray(maxval, dtype)
    return lnp.maximum(lo, lnp.add(lnp.multiply(f, lnp.subtract(hi, lo)), lo))


def _erfinv(x):
    """XLA's float32 erfinv: Giles' polynomials in w = -log1p(-x^2)."""
    w = lnp.negative(lnp.log1p(lnp.negative(lnp.multiply(x, x))))
    inf = lnp.where(lnp.greater(x, 0), np.float32(np.inf), np.float32(-np.inf))
    return lnp.where(lnp.equal(lnp.abs(x), 1.0), inf, erfinv_giles(x, w))


def normal(key, shape=(), dtype=np.float32):
    """Standard normal: sqrt(2) * erfinv(u), u uniform in (-1, 1)."""
    lo = np.nextafter(np.float32(-1), np.float32(0))
    u = uniform(key, shape, dtype, lo, 1.0)
    return lnp.multiply(np.float32(math.sqrt(2)), _erfinv(u))


def bernoulli(key, p=0.5, shape=None):
    p = lnp.asarray(p)
    shape = lnp.shape(p) if shape is None else prim.shape_tuple(shape)
    return lnp.less(uniform(key, shape), p)


def randint(key, shape, minval, maxval, dtype=np.int32):
    """Integers in [minval, maxval): random bits modulo the span (static bounds)."""
    span = int(maxval) - int(minval)
    if span <= 0:
        raise ValueError("randint needs maxval > minval")
    r = lnp.remainder(bits(key, shape), np.uint32(span))
    return lnp.add(lnp.astype(r, dtype), int(minval))


def permutation(key, x):
    """A random permutation of x (or of arange(x)): argsort of random bits."""
    n = int(x) if isinstance(x, (int, np.integer)) else lnp.shape(x)[0]
    order = lnp.argsort(bits(key, (n,)))
    return order if isinstance(x, (int, np.integer)) else lnp.take(x, order, axis=0)


def choice(key, a, shape=(), replace=True):
    n = int(a) if isinstance(a, (int, np.integer)) else lnp.shape(a)[0]
    shape = prim.shape_tuple(shape)
    if replace:
        idx = randint(key, shape, 0, n)
    else:
        idx = lnp.reshape(permutation(key, n)[:math.prod(shape)], shape)
    return idx if isinstance(a, (int, np.integer)) else lnp.take(a, idx, axis=0)


def truncated_normal(key, lower, upper, shape=(), dtype=np.float32):
    """Normal restricted to [lower, upper]: the inverse CDF of a uniform between erf(lower)
    and erf(upper) (as jax.random.truncated_normal)."""
    s2 = np.float32(math.sqrt(2))
    a = bind("erf", lnp.asarray(np.float32(lower) / s2))
    b = bind("erf", lnp.asarray(np.float32(upper) / s2))
    u = uniform(key, shape, dtype, a, b)
    out = lnp.multiply(s2, _erfinv(u))
    lo = np.nextafter(np.float32(lower), np.float32(np.inf))
    hi = np.nextafter(np.float32(upper), np.float32(-np.inf))
    return lnp.clip(out, lo, hi)


def gumbel(key, shape=(), dtype=np.float32):
    """Standard Gumbel samples, -log(-log(u)) with u uniform in [tiny, 1) (as jax.random)."""
    u = uniform(key, shape, dtype, np.finfo(dtype).tiny, 1.0)
    return lnp.negative(lnp.log(lnp.negative(lnp.log(u))))


def categorical(key, logits, axis: int = -1, shape=None, replace: bool = True):
    """Class indices drawn with probabilities softmax(logits) along `axis` (jax.random's
    Gumbel-max trick: argmax of logits plus Gumbel noise). `shape` (default: logits' shape
    without `axis`) must end with that batch shape; its leading part draws independent
    samples. replace=False draws distinct classes (top-k of one perturbation)."""
    logits = lnp.asarray(logits)
    if logits.dtype.kind != "f":
        logits = lnp.astype(logits, np.float32)
    axis = prim.normalize_axis(axis, logits.ndim)
    batch_shape = logits.shape[:axis] + logits.shape[axis + 1:]
    shape = batch_shape if shape is None else prim.shape_tuple(shape)
    if shape[len(shape) - len(batch_shape):] != batch_shape:
        raise ValueError(f"categorical: shape {shape} must end with the batch shape "
                         f"{batch_shape} of logits {logits.shape} without axis {axis}")
    prefix = shape[:len(shape) - len(batch_shape)]
    if replace:
        noisy = lnp.add(gumbel(key, prefix + logits.shape, logits.dtype), logits)
        # argmax over the last axis: lgc.jit fails to build an argmax over another axis
        # fused with the elementwise ops before it (undeclared 'j' in the kernel)
        noisy = lnp.moveaxis(noisy, len(prefix) + axis, -1)
        return lnp.astype(lnp.argmax(noisy, axis=-1), np.int32)
    k = math.prod(prefix)
    n = logits.shape[axis]
    if k > n:
        raise ValueError(f"categorical: {k} samples without replacement from {n} classes")
    noisy = lnp.moveaxis(lnp.add(logits, gumbel(key, logits.shape, logits.dtype)), axis, -1)
    _, idx = bind("topk", noisy, axis=noisy.ndim - 1, k=int(k), largest=1)
    return lnp.reshape(lnp.moveaxis(lnp.astype(idx, np.int32), -1, 0), shape)
