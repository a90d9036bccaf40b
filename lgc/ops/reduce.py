"""Reductions and scans: reduce_{sum,max,min,prod,mean}, argmax/argmin, softmax/log_softmax,
cumsum/cumprod and topk.

Floats accumulate in float (float16 too) or double; integers accumulate in their own type, so
sums wrap like NumPy's with `dtype=` the input's. Kernels: lgc.backends.kernels.reduce.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules
from ._rules import f16_as_f32, require


def acc_dtype(dt):
    """Accumulator: float16 sums in float32 (its compute type), everything else in itself."""
    return dtypes.f32 if dt == dtypes.f16 else dt


def _check_axes(axes, rank, what):
    if len(set(axes)) != len(axes) or any(not 0 <= a < rank for a in axes):
        raise OpError(f"{what}: axes {axes} invalid for rank {rank} (need distinct 0..{rank - 1})")


def _reduced_shape(shape, axes, keepdims):
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes)


def extreme(dt, largest):
    """The identity of max (largest=False gives min's): -inf/+inf, or the type's limits."""
    if dt.is_bool:
        return 0 if largest else 1
    if dt.is_float:
        return float("-inf") if largest else float("inf")
    info = np.iinfo(dt.np)
    return int(info.min) if largest else int(info.max)


# ---- reduce_* --------------------------------------------------------------------------------

def _reduce_op(name, kinds, ref, doc=""):
    def infer(types, attrs):
        require(types, kinds, name)
        x = types[0]
        _check_axes(attrs["axes"], x.rank, name)
        return [TensorType(x.dtype, _reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))]

    def reference(xs, attrs):
        x = xs[0]
        with np.errstate(all="ignore"):
            y = ref(f16_as_f32(x), tuple(attrs["axes"]), bool(attrs["keepdims"]))
        return [np.asarray(y).astype(x.dtype)]

    register(OpDef(name, infer, reference,
                   fusion="reduction", num_inputs=1, attrs={"axes": REQUIRED, "keepdims": 1},
                   batch=batch_rules.reduce_axes(name),
                   doc=doc))


def _ref_mean(x, axes, keep):
    if x.dtype.kind in "iu":  # truncating integer mean, as C division does
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        s = np.sum(x, axis=axes, keepdims=keep, dtype=x.dtype)
        return s if n == 0 else np.sign(s) * (np.abs(s) // n)
    return np.mean(x, axis=axes, keepdims=keep)


_reduce_op("reduce_sum", "fiuc", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k, dtype=x.dtype))
_reduce_op("reduce_prod", "fiu", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k, dtype=x.dtype))
_reduce_op("reduce_mean", "fiuc", _ref_mean, doc="integer means truncate toward zero")
_reduce_op("reduce_max", "fiub",
           lambda x, ax, k: np.maximum.reduce(x, axis=ax, keepdims=k,
                                              initial=extreme(dtypes.from_numpy(x.dtype), True)),
           doc="max of nothing is -inf (or the type's minimum); NaN propagates")
_reduce_op("reduce_min", "fiub",
           lambda x, ax, k: np.minimum.reduce(x, axis=ax, keepdims=k,
                                              initial=extreme(dtypes.from_numpy(x.dtype), False)),
           doc="min of nothing is +inf (or the type's maximum); NaN propagates")


# ---- argmax / argmin -------------------------------------------------------------------------

def _arg_op(name, largest):
    def infer(types, attrs):
        require(types, "fiub", name)
        x = types[0]
        axis = attrs["axis"]
        if not 0 <= axis < x.rank or x.shape[axis] == 0:
            raise OpError(f"{name}: axis {axis} invalid or empty for shape {x.shape}")
        return [TensorType(dtypes.i64, _reduced_shape(x.shape, (axis,), attrs["keepdims"]))]

    def reference(xs, attrs):
        x, axis, keep = xs[0], attrs["axis"], bool(attrs["keepdims"])
        f = np.argmax if largest else np.argmin
        if attrs["select_last_index"]:
            i = x.shape[axis] - 1 - f(np.flip(x, axis), axis=axis, keepdims=keep)
        else:
            i = f(x, axis=axis, keepdims=keep)
        return [np.asarray(i, dtype=np.int64)]

    register(OpDef(name, infer, reference,
                   fusion="reduction", num_inputs=1, batch=batch_rules.along_axis(name),
                   attrs={"axis": REQUIRED, "keepdims": 1, "select_last_index": 0},
                   doc="NaN counts as the extreme; ties go to the first (or last) index"))


_arg_op("argmax", True)
_arg_op("argmin", False)


# ---- per-row ops: softmax, scans, topk --------------------------------------------------------

def _axis_infer(name, kinds):
    def infer(types, attrs):
        require(types, kinds, name)
        if not 0 <= attrs["axis"] < types[0].rank:
            raise OpError(f"{name}: axis {attrs['axis']} out of range for rank {types[0].rank}")
        return [types[0]]
    return infer


def _softmax_ref(log):
    def ref(xs, attrs):
        x = f16_as_f32(xs[0])
        with np.errstate(all="ignore"):
            z = x - np.max(x, axis=attrs["axis"], keepdims=True)
            s = np.sum(np.exp(z), axis=attrs["axis"], keepdims=True)
            y = z - np.log(s) if log else np.exp(z) / s
        return [y.astype(xs[0].dtype)]
    return ref


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register(OpDef(_name, _axis_infer(_name, "f"), _softmax_ref(_log),
                   fusion="opaque",
                   num_inputs=1, attrs={"axis": REQUIRED}, batch=batch_rules.along_axis(_name),
                   doc="stable: subtracts the row max; one work-item per row"))


def _scan_ref(fn, init):
    def ref(xs, attrs):
        x, axis = xs[0], attrs["axis"]
        y = f16_as_f32(x)
        if attrs["reverse"]:
            y = np.flip(y, axis)
        with np.errstate(all="ignore"):
            y = fn(y, axis=axis, dtype=y.dtype)
            if attrs["exclusive"]:
                pad = np.full_like(np.take(y, [0], axis=axis), init)
                y = np.concatenate([pad, np.take(y, range(y.shape[axis] - 1), axis=axis)], axis)
        if attrs["reverse"]:
            y = np.flip(y, axis)
        return [np.ascontiguousarray(y).astype(x.dtype)]
    return ref


for _name, _init, _fn in (("cumsum", 0, np.cumsum), ("cumprod", 1, np.cumprod)):
    register(OpDef(_name, _axis_infer(_name, "fiu"), _scan_ref(_fn, _init),
                   fusion="opaque",
                   num_inputs=1, attrs={"axis": REQUIRED, "exclusive": 0, "reverse": 0},
                   batch=batch_rules.along_axis(_name),
                   doc="inclusive or exclusive scan along axis, optionally from the end"))


# ---- topk ------------------------------------------------------------------------------------

def _topk_infer(types, attrs):
    require(types, "fiu", "topk")
    x = types[0]
    axis, k = attrs["axis"], attrs["k"]
    if not 0 <= axis < x.rank or not 0 <= k <= x.shape[axis]:
        raise OpError(f"topk: axis {axis} / k {k} invalid for shape {x.shape}")
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1:]
    return [TensorType(x.dtype, shape), TensorType(dtypes.i64, shape)]


def _topk_ref(xs, attrs):
    x, axis, k = xs[0], attrs["axis"], attrs["k"]
    idx = np.indices(x.shape)[axis]
    order = np.lexsort((-idx if attrs["largest"] else idx, x), axis=axis)
    if attrs["largest"]:
        order = np.flip(order, axis)
    order = np.take(order, range(k), axis=axis)
    return [np.take_along_axis(x, order, axis), order.astype(np.int64)]


register(OpDef("topk", _topk_infer, _topk_ref,
               fusion="opaque", num_inputs=1, batch=batch_rules.along_axis("topk"),
               attrs={"axis": REQUIRED, "k": REQUIRED, "largest": 1, "sorted": 1},
               doc="values and int64 indices of the k largest (smallest), always sorted; "
                   "ties go to the lower index"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim so the backward ops trace like any others (jit, grad of grad).

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from ._rules import linear_jvp  # noqa: E402
from .core import bind  # noqa: E402
from .prim import add, div, mul, sub  # noqa: E402


def _red_axes(x, attrs):
    return tuple(a % x.ndim for a in attrs["axes"]) or tuple(range(x.ndim))  # () = all (ONNX)


def _keep(g, x, attrs):
    """A reduction's cotangent with the reduced axes back as size 1 (broadcastable to x)."""
    if attrs["keepdims"]:
        return g
    axes = _red_axes(x, attrs)
    return prim.reshape(g, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


def _sum_vjp(cts, ins, outs, attrs):
    return [prim.broadcast_to(_keep(cts[0], ins[0], attrs), ins[0].shape)]


def _mean_vjp(cts, ins, outs, attrs):
    x = ins[0]
    n = int(np.prod([x.shape[a] for a in _red_axes(x, attrs)]))
    return [prim.broadcast_to(div(_keep(cts[0], x, attrs), n), x.shape)]


def _extremum_vjp(cts, ins, outs, attrs):
    """To the elements equal to the result, shared equally among ties (as JAX)."""
    x = ins[0]
    hit = prim.astype(prim.eq(x, _keep(outs[0], x, attrs)), x.dtype)
    count = prim.sum(hit, axis=_red_axes(x, attrs), keepdims=True)
    return [mul(hit, div(_keep(cts[0], x, attrs), count))]


def _prod_vjp(cts, ins, outs, attrs):
    """Each element's cotangent is g times the product of the others: exclusive running
    products from both ends (no division, so zeros are fine)."""
    x = ins[0]
    axes = _red_axes(x, attrs)
    perm = tuple(i for i in range(x.ndim) if i not in axes) + axes
    xt = prim.transpose(x, perm)
    flat = (-1,) if len(axes) == x.ndim else xt.shape[:x.ndim - len(axes)] + (-1,)
    xr = prim.reshape(xt, flat)
    last = xr.ndim - 1
    others = mul(bind("cumprod", xr, axis=last, exclusive=1, reverse=0),
                 bind("cumprod", xr, axis=last, exclusive=1, reverse=1))
    g = prim.reshape(prim.transpose(_keep(cts[0], x, attrs), perm), flat[:-1] + (1,))
    return [prim.transpose(prim.reshape(mul(g, others), xt.shape), tuple(np.argsort(perm)))]


OPS["reduce_sum"].vjp = _sum_vjp
OPS["reduce_mean"].vjp = _mean_vjp
OPS["reduce_max"].vjp = _extremum_vjp
OPS["reduce_min"].vjp = _extremum_vjp
OPS["reduce_prod"].vjp = _prod_vjp


def _softmax_vjp(cts, ins, outs, attrs):
    """J = diag(y) - y y^T: symmetric, so this is the jvp rule as well."""
    g, y = cts[0], outs[0]
    return [mul(y, sub(g, prim.sum(mul(g, y), axis=attrs["axis"], keepdims=True)))]


def _log_softmax_vjp(cts, ins, outs, attrs):
    g = cts[0]
    return [sub(g, mul(prim.exp(outs[0]), prim.sum(g, axis=attrs["axis"], keepdims=True)))]


def _log_softmax_jvp(tans, ins, outs, attrs):
    """J = I - 1 softmax^T."""
    t = tans[0]
    return [sub(t, prim.sum(mul(prim.exp(outs[0]), t), axis=attrs["axis"], keepdims=True))]


def _cumsum_vjp(cts, ins, outs, attrs):
    """The adjoint of a running sum is the running sum the other way."""
    return [bind("cumsum", cts[0], axis=attrs["axis"], exclusive=attrs["exclusive"],
                 reverse=1 - attrs["reverse"])]


def _topk_vjp(cts, ins, outs, attrs):
    """The values' cotangent goes back to where they were taken from."""
    return [bind("scatter_elements", prim.zeros_like(ins[0]), outs[1], cts[0],
                 axis=attrs["axis"], reduction="add")]


OPS["softmax"].vjp = _softmax_vjp
OPS["softmax"].jvp = lambda tans, ins, outs, attrs: _softmax_vjp(tans, ins, outs, attrs)
OPS["log_softmax"].vjp = _log_softmax_vjp
OPS["log_softmax"].jvp = _log_softmax_jvp
OPS["cumsum"].vjp = _cumsum_vjp
OPS["topk"].vjp = _topk_vjp


def _cumprod_vjp(cts, ins, outs, attrs):
    """Exact where elements are zero (no division by x). For the inclusive forward scan
    y_i = x_0 ... x_i, dL/dx_j = E_j R_j with E_j = x_0 ... x_{j-1} (an exclusive cumprod)
    and R_j = g_j + x_{j+1} R_{j+1}, a linear recurrence solved by log2(n) doubling steps
    over (a, b) pairs (b_j += a_j b_{j+s}; a_j *= a_{j+s}), all of it mul, add and shifts,
    so higher orders work too. Reverse scans are flipped; an exclusive scan is the
    inclusive scan of x shifted by one (a leading 1)."""
    axis, x, g = attrs["axis"], ins[0], cts[0]
    n = x.shape[axis]
    if n == 0:
        return [prim.zeros_like(x)]
    x, g = prim.moveaxis(x, axis, -1), prim.moveaxis(prim.astype(g, x.dtype), axis, -1)
    if attrs["reverse"]:
        x, g = prim.flip(x, -1), prim.flip(g, -1)

    def shift(v, s, fill):   # v_{j+s}, `fill` past the end
        pad = prim.full_like(prim.slice_in_dim(v, 0, min(s, n), axis=-1), fill)
        return prim.concatenate([prim.slice_in_dim(v, s, None, axis=-1), pad], axis=-1) \
            if s < n else pad

    xs = prim.slice_in_dim(shift(prim.flip(x, -1), 1, 1.0), None, None, -1, axis=-1) \
        if attrs["exclusive"] else x
    e = bind("cumprod", xs, axis=xs.ndim - 1, exclusive=1, reverse=0)
    a, b, s = shift(xs, 1, 0.0), g, 1
    while s < n:
        b = add(b, mul(a, shift(b, s, 0.0)))
        if 2 * s < n:
            a = mul(a, shift(a, s, 0.0))
        s *= 2
    dx = mul(e, b)
    if attrs["exclusive"]:   # x_k is xs_{k+1}; the last x takes no part
        dx = shift(dx, 1, 0.0)
    if attrs["reverse"]:
        dx = prim.flip(dx, -1)
    return [prim.moveaxis(dx, -1, axis)]


OPS["cumprod"].vjp = _cumprod_vjp
for _n in ("reduce_sum", "reduce_mean", "cumsum"):
    OPS[_n].jvp = linear_jvp(_n)
