"""jax.lax's convolutions, windowed reductions and general padding, on lgc's core ops.

- `pad_general` is lax.pad: interior padding of an axis is a size-1 axis padded after each
  element and merged back (reshape, pad, reshape, slice), negative edge padding crops (the
  core pad op's negative pads); a traced padding value is selected in by a constant mask.
- `conv_general_dilated` permutes the operands into the core conv's layout ([N, C, *S] and
  [O, I, *S]) by the dimension numbers, dilates the input (lhs dilation) and crops negative
  padding with `pad_general`, and gives the rest to the core conv (strides, non-negative
  pads, rhs dilation, feature groups). Batch groups become feature groups: the groups move
  from the input's batch axis into its channels. The output is permuted to out_spec.
- `reduce_window` pads (base dilation too) with the initial value and combines one strided
  slice per window offset; max/min keep the first extremum on ties (JAX's gradient goes to
  one element of the window, not shared), add/mul sum or multiply.
Everything is lnp/prim code, so grad, vmap and jit see ordinary ops (conv has its rules).
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from ..ops import prim
from ..ops.core import ArrayBase, Tracer, bind
from . import numpy as lnp

ConvDimensionNumbers = namedtuple("ConvDimensionNumbers", ["lhs_spec", "rhs_spec", "out_spec"])
ConvDimensionNumbers.__doc__ = """jax.lax.ConvDimensionNumbers: for lhs and out, the axes
of (batch, feature, *spatial); for rhs, of (out feature, in feature, *spatial)."""


# ---- padding --------------------------------------------------------------------------------

def _interior(x, axis: int, k: int, value):
    """k copies of value between neighbours along axis (lax.pad's interior padding)."""
    n = x.shape[axis]
    if k == 0 or n < 2:
        return x
    y = prim.expand_dims(x, axis + 1)
    width = [(0, 0)] * y.ndim
    width[axis + 1] = (0, k)
    y = prim.pad(y, width, constant_values=value)
    y = prim.reshape(y, x.shape[:axis] + (n * (k + 1),) + x.shape[axis + 1:])
    return prim.slice_in_dim(y, 0, (n - 1) * (k + 1) + 1, 1, axis)


def _check_config(config, ndim):
    config = [tuple(int(v) for v in c) for c in config]
    if len(config) != ndim or any(len(c) != 3 for c in config):
        raise ValueError(f"lax.pad: padding_config needs one (low, high, interior) per axis of "
                         f"the {ndim}-d operand, got {config}")
    if any(c[2] < 0 for c in config):
        raise ValueError(f"lax.pad: interior padding must be >= 0, got {config}")
    return config


def _padded_shape(shape, config):
    out = []
    for n, (lo, hi, it) in zip(shape, config):
        d = lo + hi + (n + builtins.max(n - 1, 0) * it)
        if d < 0:
            raise ValueError(f"lax.pad: padding {(lo, hi, it)} leaves a negative size for an "
                             f"axis of size {n}")
        out.append(d)
    return tuple(out)


def _pad_constant(x, value: float, config):
    for axis, (_, _, it) in enumerate(config):
        x = _interior(x, axis, it, value)
    pads = tuple(c[0] for c in config) + tuple(c[1] for c in config)
    if not any(pads):
        return x
    return bind("pad", x, pads=pads, mode="constant", value=float(value), weak=x.weak_type)


def _mask(shape, config) -> np.ndarray:
    """Where pad_general(ones(shape), config) holds an element of the operand (a constant)."""
    m = np.ones(shape, bool)
    for axis, (lo, hi, it) in enumerate(config):
        n = m.shape[axis]
        keep = np.zeros(n + builtins.max(n - 1, 0) * it, bool)
        keep[::it + 1] = True
        m = np.moveaxis(m, axis, 0)
        grown = np.zeros((keep.size,) + m.shape[1:], bool)
        grown[keep] = m
        grown = np.pad(grown, [(builtins.max(lo, 0), builtins.max(hi, 0))] + [(0, 0)] * (m.ndim - 1))
        grown = grown[builtins.max(-lo, 0):grown.shape[0] - builtins.max(-hi, 0)]
        m = np.moveaxis(grown, 0, axis)
    return m


def pad_general(operand, padding_value, padding_config):
    """jax.lax.pad: per axis (low, high, interior); negative low/high crop (after the interior
    padding); the padding value is a scalar of the operand's dtype, possibly traced."""
    x = lnp.asarray(operand)
    config = _check_config(padding_config, x.ndim)
    _padded_shape(x.shape, config)
    v = padding_value
    if isinstance(v, ArrayBase) or np.ndim(v) != 0:
        v = lnp.asarray(v)
        if v.shape != ():
            raise TypeError(f"lax.pad: padding_value must be a scalar, got shape {v.shape}")
        if v.dtype != x.dtype and not v.weak_type:
            raise TypeError(f"lax.pad: padding_value ({v.dtype}) must have the operand's dtype "
                            f"({x.dtype})")
    if isinstance(v, Tracer):   # known only when run: pad with 0, then select the value in
        y = _pad_constant(x, 0.0, config)
        return lnp.where(_mask(x.shape, config), y, lnp.astype(v, x.dtype))
    return _pad_constant(x, np.asarray(v).astype(x.dtype).item(), config)


def padtype_to_pads(in_shape, window_shape, window_strides, padding: str):
    """'VALID', 'SAME' or 'SAME_LOWER' as (low, high) pairs (jax.lax.padtype_to_pads)."""
    kind = padding.upper()
    if kind == "VALID":
        return [(0, 0)] * len(in_shape)
    if kind not in ("SAME", "SAME_LOWER"):
        raise ValueError(f"unknown padding {padding!r} (VALID, SAME, SAME_LOWER or pairs)")
    pads = []
    for n, k, s in zip(in_shape, window_shape, window_strides):
        total = builtins.max((-(-n // s) - 1) * s + k - n, 0)
        small, big = total // 2, total - total // 2
        pads.append((small, big) if kind == "SAME" else (big, small))
    return pads


def _pairs(padding, what):
    pairs = [tuple(int(v) for v in p) for p in padding]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"{what}: padding must be a string or (low, high) pairs, got {padding}")
    return pairs


# ---- convolution ------------------------------------------------------------------------------

def _spec_permutation(specs):
    """jax.lax.conv_general_permutations: string specs ('NCHW', 'OIHW', 'NCHW') as axis
    tuples; the spatial axes are ordered as in the rhs spec."""
    lhs, rhs, out = specs
    for spec, pair in zip(specs, (("N", "C"), ("O", "I"), ("N", "C"))):
        if spec.count(pair[0]) != 1 or spec.count(pair[1]) != 1 or len(set(spec)) != len(spec):
            raise TypeError(f"conv dimension numbers {specs}: {spec!r} needs one {pair[0]!r}, "
                            f"one {pair[1]!r} and distinct letters")
    if not set(lhs) - {"N", "C"} == set(rhs) - {"O", "I"} == set(out) - {"N", "C"}:
        raise TypeError(f"conv dimension numbers {specs}: the spatial letters differ")

    def perm(spec, pair):
        spatial = sorted((i for i, c in enumerate(spec) if c not in pair),
                         key=lambda i: rhs.index(spec[i]))
        return (spec.index(pair[0]), spec.index(pair[1])) + tuple(spatial)
    return ConvDimensionNumbers(perm(lhs, ("N", "C")), perm(rhs, ("O", "I")), perm(out, ("N", "C")))


def conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) -> ConvDimensionNumbers:
    """jax.lax.conv_dimension_numbers: None (NCHW/OIHW/NCHW), three strings, or three axis
    tuples (a ConvDimensionNumbers) as a ConvDimensionNumbers."""
    nd = len(lhs_shape)
    if len(rhs_shape) != nd:
        raise TypeError(f"conv: lhs {tuple(lhs_shape)} and rhs {tuple(rhs_shape)} need the same rank")
    if dimension_numbers is None:
        iota = tuple(range(nd))
        return ConvDimensionNumbers(iota, iota, iota)
    if isinstance(dimension_numbers, (tuple, list)) and len(dimension_numbers) == 3:
        if all(isinstance(s, str) for s in dimension_numbers):
            if any(len(s) != nd for s in dimension_numbers):
                raise TypeError(f"conv dimension numbers {tuple(dimension_numbers)} do not fit "
                                f"operands of rank {nd}")
            return _spec_permutation(tuple(dimension_numbers))
        dn = ConvDimensionNumbers(*(tuple(int(a) for a in s) for s in dimension_numbers))
        if any(sorted(s) != list(range(nd)) for s in dn):
            raise TypeError(f"conv dimension numbers {dn} are not permutations of {nd} axes")
        return dn
    raise TypeError(f"conv dimension_numbers must be None, three strings or three axis tuples, "
                    f"got {dimension_numbers!r}")


def _ints(v, n, default, what):
    v = tuple(int(a) for a in (v if v is not None else (default,) * n))
    if len(v) != n or builtins.min(v, default=1) < 1:
        raise ValueError(f"conv: {what} {v} must be {n} positive integers")
    return v


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """jax.lax.conv_general_dilated (a cross-correlation, as JAX's)."""
    lhs, rhs = lnp.asarray(lhs), lnp.asarray(rhs)
    if lhs.dtype != rhs.dtype:
        raise TypeError(f"conv_general_dilated requires arguments of one dtype, got "
                        f"{lhs.dtype} and {rhs.dtype}")
    dn = conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    n_sp = lhs.ndim - 2
    if n_sp < 1:
        raise ValueError(f"conv: operands need at least one spatial axis, got rank {lhs.ndim}")
    strides = _ints(window_strides, n_sp, 1, "window_strides")
    lhs_dil = _ints(lhs_dilation, n_sp, 1, "lhs_dilation")
    rhs_dil = _ints(rhs_dilation, n_sp, 1, "rhs_dilation")
    x, w = prim.transpose(lhs, dn.lhs_spec), prim.transpose(rhs, dn.rhs_spec)
    G, B = int(feature_group_count), int(batch_group_count)
    if G < 1 or B < 1 or (G > 1 and B > 1):
        raise ValueError(f"conv: feature_group_count {G} and batch_group_count {B} must be "
                         f">= 1, and at most one of them > 1")
    if x.shape[1] != w.shape[1] * G or w.shape[0] % G:
        raise ValueError(f"conv: lhs has {x.shape[1]} features, rhs {w.shape[1]} input and "
                         f"{w.shape[0]} output features: they do not fit feature_group_count {G}")
    if x.shape[0] % B or w.shape[0] % B:
        raise ValueError(f"conv: batch {x.shape[0]} and {w.shape[0]} output features must be "
                         f"multiples of batch_group_count {B}")
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], rhs_dil)]
        pads = padtype_to_pads(x.shape[2:], window, strides, padding)
    else:
        pads = _pairs(padding, "conv_general_dilated")
        if len(pads) != n_sp:
            raise ValueError(f"conv: padding {pads} needs one pair per spatial axis ({n_sp})")
    crop = [(0, 0, 0)] * 2 + [(builtins.min(lo, 0), builtins.min(hi, 0), d - 1)
                              for (lo, hi), d in zip(pads, lhs_dil)]
    if any(v for c in crop for v in c):
        x = pad_general(x, 0, crop)
    if B > 1:   # batch groups -> feature groups: [B * N', C, *S] -> [N', B * C, *S]
        n, c = x.shape[0] // B, x.shape[1]
        x = prim.reshape(prim.swapaxes(prim.reshape(x, (B, n) + x.shape[1:]), 0, 1),
                         (n, B * c) + x.shape[2:])
    pos = tuple(builtins.max(lo, 0) for lo, _ in pads) + tuple(builtins.max(hi, 0) for _, hi in pads)
    y = bind("conv", x, w, strides=strides, pads=pos, dilations=rhs_dil, group=builtins.max(G, B))
    y = prim.transpose(y, tuple(int(i) for i in np.argsort(dn.out_spec)))
    return y if preferred_element_type is None else lnp.astype(y, preferred_element_type)


def _conv_transpose_padding(k: int, s: int, padding: str):
    if padding == "SAME":
        total = k + s - 2
        lo = k - 1 if s > k - 1 else int(math.ceil(total / 2))
    elif padding == "VALID":
        total = k + s - 2 + builtins.max(k - s, 0)
        lo = k - 1
    else:
        raise ValueError(f"conv_transpose padding must be 'SAME', 'VALID' or pairs, got {padding!r}")
    return lo, total - lo


def conv_transpose(lhs, rhs, strides, padding, rhs_dilation=None, dimension_numbers=None,
                   transpose_kernel=False, precision=None, preferred_element_type=None):
    """jax.lax.conv_transpose: a conv of the input dilated by the strides (defaults
    NHC/HIO, NHWC/HWIO, NHWDC/HWDIO by rank); transpose_kernel flips the kernel's spatial
    axes and swaps its feature axes (the gradient of a conv, as JAX)."""
    lhs, rhs = lnp.asarray(lhs), lnp.asarray(rhs)
    nd = lhs.ndim
    if dimension_numbers is None:
        defaults = {3: ("NHC", "HIO", "NHC"), 4: ("NHWC", "HWIO", "NHWC"),
                    5: ("NHWDC", "HWDIO", "NHWDC")}
        if nd not in defaults:
            raise ValueError(f"conv_transpose: no default dimension_numbers for rank {nd}")
        dimension_numbers = defaults[nd]
    dn = conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    k_sp = [rhs.shape[a] for a in dn.rhs_spec[2:]]
    dil = _ints(rhs_dilation, nd - 2, 1, "rhs_dilation")
    if isinstance(padding, str):
        pads = [_conv_transpose_padding((k - 1) * d + 1, s, padding.upper())
                for k, d, s in zip(k_sp, dil, strides)]
    else:
        pads = padding
    if transpose_kernel:
        rhs = prim.flip(rhs, dn.rhs_spec[2:])
        rhs = prim.swapaxes(rhs, dn.rhs_spec[0], dn.rhs_spec[1])
    return conv_general_dilated(lhs, rhs, (1,) * (nd - 2), pads, strides, dil, dn,
                                preferred_element_type=preferred_element_type)


# ---- reduce_window ----------------------------------------------------------------------------

def _first_extremum(better):
    """Combine keeping the earlier value unless the later one is better (or it is NaN):
    forward equal to max/min with NaN propagation, the gradient to one element."""
    def combine(acc, x):
        keep = lnp.logical_or(better(acc, x), lnp.isnan(acc)) if acc.dtype.kind == "f" \
            else better(acc, x)
        return lnp.where(keep, acc, x)
    return combine


COMBINE = {"add": prim.add, "mul": prim.mul,
           "max": _first_extremum(lnp.greater_equal), "min": _first_extremum(lnp.less_equal)}
IDENTITY = {"add": 0, "mul": 1, "max": -np.inf, "min": np.inf}


def is_identity(monoid: str, value, dtype) -> bool:
    """Whether value (a concrete scalar) changes nothing when combined by the monoid."""
    if isinstance(value, Tracer):
        return False
    v = np.asarray(value)
    if monoid in ("max", "min") and np.dtype(dtype).kind in "iub":
        info = np.iinfo(dtype) if np.dtype(dtype).kind != "b" else None
        ident = (info.min if monoid == "max" else info.max) if info else monoid == "min"
        return bool(v == ident)
    return bool(v == IDENTITY[monoid])


def reduce_window(operand, init_value, monoid: str, window_dimensions, window_strides,
                  padding, base_dilation=None, window_dilation=None):
    """jax.lax.reduce_window for a monoid ('add', 'mul', 'max', 'min'): the operand padded
    with init_value (low/high padding and base dilation's holes), then each output is the
    monoid over its window, combined with init_value once (as XLA starts from it)."""
    x = lnp.asarray(operand)
    nd = x.ndim
    window = tuple(int(k) for k in window_dimensions)
    strides = tuple(int(s) for s in window_strides)
    base = tuple(int(b) for b in (base_dilation or (1,) * nd))
    wdil = tuple(int(d) for d in (window_dilation or (1,) * nd))
    if not len(window) == len(strides) == len(base) == len(wdil) == nd or \
            builtins.min(window + strides + base + wdil, default=1) < 1:
        raise ValueError(f"reduce_window: window {window}, strides {strides}, base dilation "
                         f"{base}, window dilation {wdil} need {nd} positive entries each")
    if isinstance(padding, str):
        pads = padtype_to_pads(x.shape, window, strides, padding)
    else:
        pads = _pairs(padding, "reduce_window")
        if len(pads) != nd:
            raise ValueError(f"reduce_window: padding {pads} needs one pair per axis ({nd})")
    if isinstance(init_value, ArrayBase) and not isinstance(init_value, Tracer):
        init_value = np.asarray(init_value)
    xp = pad_general(x, init_value, [(lo, hi, b - 1) for (lo, hi), b in zip(pads, base)])
    span = [(k - 1) * d + 1 for k, d in zip(window, wdil)]
    out = tuple(builtins.max((n - s) // st + 1, 0) if n >= s else 0
                for n, s, st in zip(xp.shape, span, strides))
    if math.prod(out) == 0:
        return lnp.full(out, init_value, x.dtype)
    combine = COMBINE[monoid]
    acc = None
    for offset in np.ndindex(*window):
        part = prim.strided_slice(xp, [o * d for o, d in zip(offset, wdil)], strides, out)
        acc = part if acc is None else combine(acc, part)
    if not is_identity(monoid, init_value, x.dtype):
        acc = combine(lnp.full(out, init_value, x.dtype), acc)
    return acc
