"""Reductions, softmax, cumulative sums, sorting and the normalizations (layer, group and
inference-mode batch norm, whose ONNX twins already decompose them)."""
from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ....ir.graph import Value
from ...onnx.converters.layout import reshape
from ..context import lgc_dtype
from . import converter
from .layout import axis


def _dims(x, dim) -> tuple[int, ...]:
    """A reduction's dims, non-negative and sorted; None or [] mean every dim."""
    rank = x.type.rank
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(rank))
    dims = [dim] if isinstance(dim, int) else dim
    return tuple(sorted({axis(d, rank) for d in dims}))


def _accumulating(ctx, x, dtype):
    """x in the type a sum or product runs in: the `dtype` argument, else the node's own
    (PyTorch sums booleans and integers as int64)."""
    return ctx.cast(x, lgc_dtype(dtype) if dtype is not None else ctx.out_dtype() or x.dtype)


def _reduce(ctx, op, x, dim, keepdim, dtype=None):
    """reduce_* over dims, in the accumulating type."""
    x = _accumulating(ctx, x, dtype)
    dims = _dims(x, dim)
    if not dims or x.type.rank == 0:
        return x
    return ctx.op(op, [x], {"axes": dims, "keepdims": int(bool(keepdim))})


@converter("aten.sum.dim_IntList", "aten.sum.default")
def sum_(ctx, x, dim=None, keepdim=False, dtype=None):
    return _reduce(ctx, "reduce_sum", x, dim, keepdim, dtype)


@converter("aten.mean.dim", "aten.mean.default")
def mean(ctx, x, dim=None, keepdim=False, dtype=None):
    return _reduce(ctx, "reduce_mean", x, dim, keepdim, dtype)


@converter("aten.prod.dim_int", "aten.prod.default")
def prod(ctx, x, dim=None, keepdim=False, dtype=None):
    return _reduce(ctx, "reduce_prod", x, dim, keepdim, dtype)


@converter("aten.amax.default", "aten.max.default")
def amax(ctx, x, dim=(), keepdim=False):
    return _reduce(ctx, "reduce_max", x, dim, keepdim)


@converter("aten.amin.default", "aten.min.default")
def amin(ctx, x, dim=(), keepdim=False):
    return _reduce(ctx, "reduce_min", x, dim, keepdim)


def _any(ctx, x, dim, keepdim):
    """Any true element: the max of the values as 0/1, compared with 0."""
    x = ctx.cast(x, dtypes.bool_) if not x.dtype.is_bool else x
    m = _reduce_as(ctx, "reduce_max", ctx.cast(x, dtypes.i32), dim, keepdim)
    return ctx.op("not", [ctx.op("eq", [m, ctx.scalar(0, m)])])


def _reduce_as(ctx, op, x, dim, keepdim):
    dims = _dims(x, dim)
    if not dims or x.type.rank == 0:
        return x
    return ctx.op(op, [x], {"axes": dims, "keepdims": int(bool(keepdim))})


@converter("aten.any.default", "aten.any.dim", "aten.any.dims")
def any_(ctx, x, dim=None, keepdim=False):
    return _any(ctx, x, dim, keepdim)


@converter("aten.all.default", "aten.all.dim", "aten.all.dims")
def all_(ctx, x, dim=None, keepdim=False):
    not_x = ctx.op("not", [x]) if x.dtype.is_bool else ctx.op("eq", [x, ctx.scalar(0, x)])
    return ctx.op("not", [_any(ctx, not_x, dim, keepdim)])


def _arg(op):
    def conv(ctx, x, dim=None, keepdim=False):
        if dim is None:
            flat = reshape(ctx, x, (x.type.size,))
            i = ctx.op(op, [flat], {"axis": 0, "keepdims": 0})
            return reshape(ctx, i, (1,) * x.type.rank) if keepdim else i
        if x.type.rank == 0:
            return ctx.const(np.zeros((), np.int64))
        return ctx.op(op, [x], {"axis": axis(dim, x.type.rank), "keepdims": int(bool(keepdim))})
    return conv


converter("aten.argmax.default")(_arg("argmax"))
converter("aten.argmin.default")(_arg("argmin"))


def _value_and_index(reduce_op, arg_op):
    def conv(ctx, x, dim, keepdim=False):
        return (_reduce(ctx, reduce_op, x, [dim], keepdim), _arg(arg_op)(ctx, x, dim, keepdim))
    return conv


converter("aten.max.dim")(_value_and_index("reduce_max", "argmax"))
converter("aten.min.dim")(_value_and_index("reduce_min", "argmin"))


def _variance(ctx, x, dim, correction, keepdim):
    dims = _dims(x, dim)
    n = int(np.prod([x.shape[d] for d in dims], dtype=np.int64))
    mean = ctx.op("reduce_mean", [x], {"axes": dims, "keepdims": 1})
    d = ctx.op("sub", [x, mean])
    ss = ctx.op("reduce_sum", [ctx.op("mul", [d, d])], {"axes": dims, "keepdims": int(bool(keepdim))})
    return ctx.op("div", [ss, ctx.scalar(max(n - correction, 0), x)])


@converter("aten.var.correction")
def var_correction(ctx, x, dim=None, correction=None, keepdim=False):
    return _variance(ctx, x, dim, 1 if correction is None else correction, keepdim)


@converter("aten.var.dim")
def var_dim(ctx, x, dim=None, unbiased=True, keepdim=False):
    return _variance(ctx, x, dim, int(unbiased), keepdim)


def _scan(op):
    def conv(ctx, x, dim, dtype=None):
        x = _accumulating(ctx, x, dtype)
        return x if x.type.rank == 0 else ctx.op(op, [x], {"axis": axis(dim, x.type.rank)})
    return conv


converter("aten.cumsum.default")(_scan("cumsum"))
converter("aten.cumprod.default")(_scan("cumprod"))


def _softmax(op):
    def conv(ctx, x, dim, half_to_float=False):
        if x.type.rank == 0:
            return ctx.scalar(1 if op == "softmax" else 0, x)
        return ctx.op(op, [x], {"axis": axis(dim, x.type.rank)})
    return conv


converter("aten._softmax.default")(_softmax("softmax"))
converter("aten._log_softmax.default")(_softmax("log_softmax"))


@converter("aten.logsumexp.default")
def logsumexp(ctx, x, dim, keepdim=False):
    dims = _dims(x, dim)
    m = ctx.op("reduce_max", [x], {"axes": dims, "keepdims": 1})
    s = ctx.op("reduce_sum", [ctx.op("exp", [ctx.op("sub", [x, m])])], {"axes": dims, "keepdims": 1})
    y = ctx.op("add", [ctx.op("log", [s]), m])
    return y if keepdim else reshape(ctx, y, [n for i, n in enumerate(x.shape) if i not in dims])


@converter("aten.topk.default")
def topk(ctx, x, k, dim=-1, largest=True, sorted=True):
    return ctx.op("topk", [x], {"axis": axis(dim, x.type.rank), "k": int(k),
                                "largest": int(largest), "sorted": 1}, num_outputs=2)


@converter("aten.sort.default", "aten.sort.stable")
def sort(ctx, x, dim=-1, descending=False, stable=None):
    if stable is not None and not isinstance(stable, bool):   # sort.stable(x, *, stable, dim, ...)
        stable, dim, descending = None, stable, dim
    d = axis(dim, x.type.rank)
    return ctx.op("topk", [x], {"axis": d, "k": x.shape[d], "largest": int(bool(descending)),
                                "sorted": 1}, num_outputs=2)


# ---- normalizations -----------------------------------------------------------------------

@converter("aten.native_layer_norm.default")
def native_layer_norm(ctx, x, normalized_shape, weight, bias, eps):
    """(y, mean, 1/std), the statistics kept with size-1 normalized axes, as ATen returns."""
    y, mean, rstd = ctx.onnx("LayerNormalization", [x, weight, bias], num_outputs=3,
                             axis=-len(normalized_shape), epsilon=eps)
    return y, mean, rstd


@converter("aten._native_batch_norm_legit_no_training.default")
def batch_norm_inference(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
    c = x.shape[1]
    if weight is None:
        weight = ctx.const(np.ones(c, x.dtype.np))
    if bias is None:
        bias = ctx.const(np.zeros(c, x.dtype.np))
    y = ctx.onnx("BatchNormalization", [x, weight, bias, running_mean, running_var], epsilon=eps)
    empty = ctx.const(np.zeros(0, x.dtype.np))
    return y, empty, empty


@converter("aten._native_batch_norm_legit.default", "aten._native_batch_norm_legit.no_stats")
def batch_norm_legit(ctx, x, weight, bias, *rest):
    """Batch statistics (training mode, instance norm): (y, mean, 1/std), the statistics per
    channel; with running statistics given and training False, those are used instead."""
    if len(rest) == 5:
        running_mean, running_var, training, momentum, eps = rest
        if not training:
            return batch_norm_inference(ctx, x, weight, bias, running_mean, running_var, momentum, eps)
    else:
        training, momentum, eps = rest
    axes = tuple(a for a in range(x.type.rank) if a != 1)
    c = x.shape[1]
    mean = ctx.op("reduce_mean", [x], {"axes": axes, "keepdims": 1})
    d = ctx.op("sub", [x, mean])
    var = ctx.op("reduce_mean", [ctx.op("mul", [d, d])], {"axes": axes, "keepdims": 1})
    rstd = ctx.op("reciprocal", [ctx.op("sqrt", [ctx.op("add", [var, ctx.scalar(eps, x)])])])
    y = ctx.op("mul", [d, rstd])
    per_channel = (c,) + (1,) * (x.type.rank - 2)
    if weight is not None:
        y = ctx.op("mul", [y, reshape(ctx, weight, per_channel)])
    if bias is not None:
        y = ctx.op("add", [y, reshape(ctx, bias, per_channel)])
    return y, reshape(ctx, mean, (c,)), reshape(ctx, rstd, (c,))


@converter("aten._native_batch_norm_legit_functional.default")
def batch_norm_functional(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Training mode as AOTAutograd functionalizes it: (y, mean, 1/std, new running mean,
    new running variance); the running variance takes the unbiased batch variance, as torch's."""
    if not training:
        y, a, b = batch_norm_inference(ctx, x, weight, bias, running_mean, running_var, momentum, eps)
        return y, a, b, running_mean, running_var
    y, mean, rstd = batch_norm_legit(ctx, x, weight, bias, training, momentum, eps)
    n = x.type.size // x.shape[1]
    var = ctx.op("sub", [ctx.op("reciprocal", [ctx.op("mul", [rstd, rstd])]), ctx.scalar(eps, rstd)])
    unbiased = ctx.op("mul", [var, ctx.scalar(n / max(n - 1, 1), var)])
    return (y, mean, rstd, _running_update(ctx, running_mean, mean, momentum),
            _running_update(ctx, running_var, unbiased, momentum))


def _running_update(ctx, running: Value, batch: Value, momentum: float) -> Value:
    """(1 - momentum) running + momentum batch, in the running statistic's dtype."""
    kept = ctx.op("mul", [running, ctx.scalar(1 - momentum, running)])
    moved = ctx.op("mul", [ctx.cast(batch, running.dtype), ctx.scalar(momentum, running)])
    return ctx.op("add", [kept, moved])


@converter("aten.native_batch_norm.default")
def native_batch_norm(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """(y, mean, 1/std). In training mode with running statistics the operator writes them in
    place, which a graph of values cannot: refused (AOTAutograd's graphs hold the functional
    form instead)."""
    if training and running_mean is not None:
        raise NotImplementedError("training mode updating running statistics in place")
    if running_mean is None:
        return batch_norm_legit(ctx, x, weight, bias, training, momentum, eps)
    return batch_norm_inference(ctx, x, weight, bias, running_mean, running_var, momentum, eps)


@converter("aten.native_group_norm.default")
def native_group_norm(ctx, x, weight, bias, n, c, hxw, group, eps):
    """(y, mean, 1/std), the statistics per (N, G); nodes nothing reads are dropped later."""
    if weight is None:
        weight = ctx.const(np.ones(c, x.dtype.np))
    if bias is None:
        bias = ctx.const(np.zeros(c, x.dtype.np))
    y = ctx.onnx("GroupNormalization", [x, weight, bias], num_groups=group, epsilon=eps)
    grouped = reshape(ctx, x, (n, group, x.type.size // (n * group)))
    mean = ctx.op("reduce_mean", [grouped], {"axes": (2,), "keepdims": 0})
    d = ctx.op("sub", [grouped, reshape(ctx, mean, (n, group, 1))])
    var = ctx.op("reduce_mean", [ctx.op("mul", [d, d])], {"axes": (2,), "keepdims": 0})
    rstd = ctx.op("reciprocal", [ctx.op("sqrt", [ctx.op("add", [var, ctx.scalar(eps, x)])])])
    return y, mean, rstd
