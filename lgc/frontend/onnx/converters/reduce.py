"""Reductions, softmax family, normalizations, scans, TopK and the losses built on them.

Most ONNX operators here decompose into the core reduce_* ops plus elementwise ops: a
normalization is a couple of reductions with keepdims=1 and broadcasting arithmetic. Only
per-channel parameters (shape (C,) against N,C,...) and the losses need `reshape` to line up.
"""
from __future__ import annotations

import numpy as np

from ....ir import dtypes, registry
from ....ir.registry import OpError
from . import converter


def scalar(ctx, value, like):
    return ctx.const(np.asarray(value, dtype=like.dtype.np))


def _norm(axis, rank):
    if not -rank <= axis < max(rank, 1):
        raise OpError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _reshape(ctx, v, shape):
    """Reshape; constants are reshaped at once, so this works before `reshape` exists."""
    shape = tuple(int(d) for d in shape)
    if v.shape == shape:
        return v
    known = ctx.value(v)
    if known is not None:
        return ctx.const(np.reshape(known, shape))
    if "reshape" not in registry.all_ops():
        raise NotImplementedError("needs the reshape op")
    return ctx.op("reshape", [v], {"shape": shape})


def _per_channel(ctx, v, rank):
    """A (C,) parameter as (C, 1, ..., 1), to broadcast against an N,C,... tensor."""
    return _reshape(ctx, v, (v.shape[0],) + (1,) * (rank - 2))


def _cast(ctx, v, dt):
    return v if v.dtype == dt else ctx.op("cast", [v], {"to": dt.name})


# ---- Reduce* ---------------------------------------------------------------------------------

def _axes(ctx, node, x, axes_input=None):
    """The node's reduction axes, non-negative and sorted; () with noop_with_empty_axes."""
    if axes_input is not None:
        axes = ctx.ints(axes_input, "axes")
    else:
        axes = node.attr("axes")
    if not axes:
        return () if node.attr("noop_with_empty_axes", 0) else tuple(range(len(x.shape)))
    return tuple(sorted({_norm(a, len(x.shape)) for a in axes}))


def _reduce(ctx, node, op, x, axes_input=None, keepdims=None):
    keep = node.attr("keepdims", 1) if keepdims is None else keepdims
    return ctx.op(op, [x], {"axes": _axes(ctx, node, x, axes_input), "keepdims": int(keep)})


def _simple(op):
    return lambda ctx, node, x, axes=None: _reduce(ctx, node, op, x, axes)


for _onnx, _core in (("ReduceSum", "reduce_sum"), ("ReduceMean", "reduce_mean"),
                     ("ReduceMax", "reduce_max"), ("ReduceMin", "reduce_min"),
                     ("ReduceProd", "reduce_prod")):
    converter(_onnx)(_simple(_core))


def _float_math(fn):
    """Run fn in float32 for integer inputs (sqrt, log...), then cast back like ONNX's ref."""
    def conv(ctx, node, x, axes=None):
        if x.dtype.is_float:
            return fn(ctx, node, x, axes)
        return _cast(ctx, fn(ctx, node, _cast(ctx, x, dtypes.f32), axes), x.dtype)
    return conv


@converter("ReduceL1")
def reduce_l1(ctx, node, x, axes=None):
    return _reduce(ctx, node, "reduce_sum", ctx.op("abs", [x]), axes)


@converter("ReduceSumSquare")
def reduce_sum_square(ctx, node, x, axes=None):
    return _reduce(ctx, node, "reduce_sum", ctx.op("mul", [x, x]), axes)


@converter("ReduceL2")
@_float_math
def reduce_l2(ctx, node, x, axes=None):
    return ctx.op("sqrt", [reduce_sum_square(ctx, node, x, axes)])


@converter("ReduceLogSum")
@_float_math
def reduce_log_sum(ctx, node, x, axes=None):
    return ctx.op("log", [_reduce(ctx, node, "reduce_sum", x, axes)])


@converter("ReduceLogSumExp")
@_float_math
def reduce_log_sum_exp(ctx, node, x, axes=None):
    """log(sum(exp(x - m))) + m with m the max of the finite entries (kept as ONNX does)."""
    finite = ctx.op("where", [ctx.op("isinf", [x]), scalar(ctx, -np.inf, x), x])
    m = _reduce(ctx, node, "reduce_max", finite, axes, keepdims=1)
    s = _reduce(ctx, node, "reduce_sum", ctx.op("exp", [ctx.op("sub", [x, m])]), axes, 1)
    y = ctx.op("add", [ctx.op("log", [s]), m])
    if node.attr("keepdims", 1):
        return y
    # reducing the kept size-1 axes again drops them
    return ctx.op("reduce_max", [y], {"axes": _axes(ctx, node, x, axes), "keepdims": 0})


# ---- ArgMax, softmax family ------------------------------------------------------------------

def _arg(op):
    def conv(ctx, node, x):
        return ctx.op(op, [x], {"axis": _norm(node.attr("axis", 0), len(x.shape)),
                                "keepdims": int(node.attr("keepdims", 1)),
                                "select_last_index": int(node.attr("select_last_index", 0))})
    return conv


converter("ArgMax")(_arg("argmax"))
converter("ArgMin")(_arg("argmin"))


def _softmax_family(core):
    """Opset 13 works along one axis (default -1); older opsets on x coerced to 2-D at axis
    (default 1), which a free reshape gives."""
    def conv(ctx, node, x):
        rank = len(x.shape)
        if ctx.opset >= 13:
            return core(ctx, x, _norm(node.attr("axis", -1), rank))
        start = _norm(node.attr("axis", 1), rank) if rank else 0
        flat = _reshape(ctx, x, (int(np.prod(x.shape[:start], dtype=np.int64)),
                                 int(np.prod(x.shape[start:], dtype=np.int64))))
        return _reshape(ctx, core(ctx, flat, 1), x.shape)
    return conv


def _hardmax(ctx, x, axis):
    """1 where argmax(x) along axis lands (the first maximum), else 0."""
    am = ctx.op("argmax", [x], {"axis": axis, "keepdims": 1})
    n = x.shape[axis]
    iota = ctx.const(np.arange(n, dtype=np.int64).reshape((n,) + (1,) * (len(x.shape) - 1 - axis)))
    return _cast(ctx, ctx.op("eq", [am, iota]), x.dtype)


converter("Softmax")(_softmax_family(lambda ctx, x, a: ctx.op("softmax", [x], {"axis": a})))
converter("LogSoftmax")(_softmax_family(lambda ctx, x, a: ctx.op("log_softmax", [x], {"axis": a})))
converter("Hardmax")(_softmax_family(_hardmax))


# ---- normalizations --------------------------------------------------------------------------

def _standardize(ctx, x, axes, eps):
    """(x - mean) * 1/sqrt(var + eps) over axes; returns (normalized, mean, inv_std)."""
    mean = ctx.op("reduce_mean", [x], {"axes": axes, "keepdims": 1})
    d = ctx.op("sub", [x, mean])
    var = ctx.op("reduce_mean", [ctx.op("mul", [d, d])], {"axes": axes, "keepdims": 1})
    inv = ctx.op("reciprocal", [ctx.op("sqrt", [ctx.op("add", [var, scalar(ctx, eps, x)])])])
    return ctx.op("mul", [d, inv]), mean, inv


def _stash(ctx, node, x):
    """LayerNorm-style ops compute in stash_type (default float32)."""
    st = node.attr("stash_type", 1)
    return _cast(ctx, x, dtypes.f32 if st == 1 else dtypes.f64 if st == 11 else x.dtype)


def _affine(ctx, y, scale, bias):
    y = ctx.op("mul", [y, scale]) if scale is not None else y
    return ctx.op("add", [y, bias]) if bias is not None else y


@converter("LayerNormalization")
def layer_norm(ctx, node, x, scale, bias=None):
    rank = len(x.shape)
    axes = tuple(range(_norm(node.attr("axis", -1), rank), rank))
    y, mean, inv = _standardize(ctx, _stash(ctx, node, x), axes, node.attr("epsilon", 1e-5))
    return [_affine(ctx, _cast(ctx, y, x.dtype), scale, bias), mean, inv]


@converter("RMSNormalization")
def rms_norm(ctx, node, x, scale):
    rank = len(x.shape)
    axes = tuple(range(_norm(node.attr("axis", -1), rank), rank))
    xs = _stash(ctx, node, x)
    ms = ctx.op("reduce_mean", [ctx.op("mul", [xs, xs])], {"axes": axes, "keepdims": 1})
    eps = scalar(ctx, node.attr("epsilon", 1e-5), xs)
    y = ctx.op("div", [xs, ctx.op("sqrt", [ctx.op("add", [ms, eps])])])
    return ctx.op("mul", [_cast(ctx, y, x.dtype), scale])


@converter("BatchNormalization")
def batch_norm(ctx, node, x, scale, bias, mean, var):
    rank = len(x.shape)
    eps = scalar(ctx, node.attr("epsilon", 1e-5), x)
    ch = lambda v: _per_channel(ctx, v, rank)  # noqa: E731
    training = node.attr("training_mode", 0) if ctx.opset >= 14 else 0
    if not training:
        inv = ctx.op("reciprocal", [ctx.op("sqrt", [ctx.op("add", [ch(var), eps])])])
        y = ctx.op("mul", [ctx.op("sub", [x, ch(mean)]), ctx.op("mul", [inv, ch(scale)])])
        return ctx.op("add", [y, ch(bias)])
    axes = tuple(a for a in range(rank) if a != 1)
    y, bmean, inv = _standardize(ctx, x, axes, node.attr("epsilon", 1e-5))
    y = _affine(ctx, y, ch(scale), ch(bias))
    squeeze = {"axes": axes, "keepdims": 0}  # reducing kept size-1 axes drops them
    bmean = ctx.op("reduce_sum", [bmean], squeeze)
    d = ctx.op("sub", [x, ctx.op("reduce_mean", [x], {"axes": axes, "keepdims": 1})])
    bvar = ctx.op("reduce_mean", [ctx.op("mul", [d, d])], squeeze)
    mom = node.attr("momentum", 0.9)
    run = lambda old, new: ctx.op("add", [ctx.op("mul", [old, scalar(ctx, mom, x)]),  # noqa: E731
                                          ctx.op("mul", [new, scalar(ctx, 1 - mom, x)])])
    return [y, run(mean, bmean), run(var, bvar)][:max(node.num_outputs, 1)]


@converter("InstanceNormalization")
def instance_norm(ctx, node, x, scale, bias):
    rank = len(x.shape)
    y, _, _ = _standardize(ctx, x, tuple(range(2, rank)), node.attr("epsilon", 1e-5))
    return _affine(ctx, y, _per_channel(ctx, scale, rank), _per_channel(ctx, bias, rank))


@converter("GroupNormalization")
def group_norm(ctx, node, x, scale, bias):
    """Normalize x viewed as (N, G, C/G, ...) over all but its first two axes."""
    n, c, *rest = x.shape
    g = node.attr("num_groups")
    xs = _stash(ctx, node, x) if ctx.opset >= 21 else x
    grouped = _reshape(ctx, xs, (n, g, c // g, *rest))
    y, _, _ = _standardize(ctx, grouped, tuple(range(2, len(x.shape) + 1)),
                           node.attr("epsilon", 1e-5))
    y = _cast(ctx, _reshape(ctx, y, x.shape), x.dtype)
    if scale.shape[0] != c:  # opset 18: one scale and bias per group
        scale = _reshape(ctx, _expand_groups(ctx, scale, c // g), (c,))
        bias = _reshape(ctx, _expand_groups(ctx, bias, c // g), (c,))
    rank = len(x.shape)
    return _affine(ctx, y, _per_channel(ctx, scale, rank), _per_channel(ctx, bias, rank))


def _expand_groups(ctx, v, per_group):
    """(G,) -> (G, per_group): each group's value repeated for its channels."""
    g = v.shape[0]
    return ctx.op("add", [_reshape(ctx, v, (g, 1)),
                          ctx.const(np.zeros((1, per_group), v.dtype.np))])


@converter("LpNormalization")
def lp_norm(ctx, node, x):
    axes = (_norm(node.attr("axis", -1), len(x.shape)),)
    p = node.attr("p", 2)
    if p == 1:
        norm = ctx.op("reduce_sum", [ctx.op("abs", [x])], {"axes": axes, "keepdims": 1})
    elif p == 2:
        norm = ctx.op("sqrt", [ctx.op("reduce_sum", [ctx.op("mul", [x, x])],
                                      {"axes": axes, "keepdims": 1})])
    else:
        raise NotImplementedError(f"p={p} (ONNX allows 1 or 2)")
    zero = scalar(ctx, 0, x)
    is_zero = ctx.op("eq", [norm, zero])  # ONNX: a zero norm gives 0, not nan
    return ctx.op("where", [is_zero, zero, ctx.op("div", [x, norm])])


@converter("MeanVarianceNormalization")
def mvn(ctx, node, x):
    """ONNX's function body: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)."""
    axes = tuple(sorted(_norm(a, len(x.shape)) for a in node.attr("axes", [0, 2, 3])))
    keep = {"axes": axes, "keepdims": 1}
    mean = ctx.op("reduce_mean", [x], keep)
    var = ctx.op("sub", [ctx.op("reduce_mean", [ctx.op("mul", [x, x])], keep),
                         ctx.op("mul", [mean, mean])])
    std = ctx.op("add", [ctx.op("sqrt", [var]), scalar(ctx, 1e-9, x)])
    return ctx.op("div", [ctx.op("sub", [x, mean]), std])


# ---- scans and TopK --------------------------------------------------------------------------

def _scan(op):
    def conv(ctx, node, x, axis):
        a = ctx.ints(axis, "axis")[0]
        return ctx.op(op, [x], {"axis": _norm(a, len(x.shape)),
                                "exclusive": int(node.attr("exclusive", 0)),
                                "reverse": int(node.attr("reverse", 0))})
    return conv


converter("CumSum")(_scan("cumsum"))
converter("CumProd")(_scan("cumprod"))


@converter("TopK")
def topk(ctx, node, x, k=None):
    kk = ctx.ints(k, "k")[0] if k is not None else node.attr("k")
    return ctx.op("topk", [x], {"axis": _norm(node.attr("axis", -1), len(x.shape)), "k": kk,
                                "largest": int(node.attr("largest", 1)),
                                "sorted": int(node.attr("sorted", 1))}, num_outputs=2)


# ---- losses ----------------------------------------------------------------------------------

def _nll(ctx, logp, target, weight, reduction, ignore_index):
    """Negative log-likelihood of logp (N, C, d...) at target (N, d...) via a one-hot mask."""
    n, c, *rest = logp.shape
    rank = len(logp.shape)
    t = _reshape(ctx, target, (n, 1, *rest))
    hot = ctx.op("eq", [t, ctx.const(np.arange(c, dtype=target.dtype.np).reshape(
        (c,) + (1,) * (rank - 2)))])
    zero = scalar(ctx, 0, logp)
    picked = ctx.op("reduce_sum", [ctx.op("where", [hot, logp, zero])],
                    {"axes": (1,), "keepdims": 0})
    if weight is not None:
        w = ctx.op("reduce_sum", [ctx.op("where", [hot, _per_channel(ctx, weight, rank), zero])],
                   {"axes": (1,), "keepdims": 0})
    else:
        w = None
    if ignore_index is not None:
        keep = ctx.op("not", [ctx.op("eq", [target, scalar(ctx, ignore_index, target)])])
        w = ctx.op("where", [keep, w if w is not None else scalar(ctx, 1, logp), zero])
    loss = ctx.op("neg", [picked if w is None else ctx.op("mul", [picked, w])])
    everything = {"axes": tuple(range(len(loss.shape))), "keepdims": 0}
    if reduction == "none":
        return loss
    total = ctx.op("reduce_sum", [loss], everything)
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise NotImplementedError(f"reduction={reduction!r}")
    if w is None:
        return ctx.op("reduce_mean", [loss], everything)
    if w.shape != loss.shape:
        w = ctx.op("add", [w, ctx.const(np.zeros(loss.shape, logp.dtype.np))])
    return ctx.op("div", [total, ctx.op("reduce_sum", [w], everything)])


@converter("NegativeLogLikelihoodLoss")
def nll_loss(ctx, node, x, target, weight=None):
    return _nll(ctx, x, target, weight, node.attr("reduction", "mean"),
                node.attr("ignore_index"))


@converter("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy(ctx, node, scores, labels, weights=None):
    logp = ctx.op("log_softmax", [scores], {"axis": 1})
    loss = _nll(ctx, logp, labels, weights, node.attr("reduction", "mean"),
                node.attr("ignore_index"))
    return [loss, logp][:max(node.num_outputs, 1)]


# ---- small activations owned here ------------------------------------------------------------

@converter("Shrink")
def shrink(ctx, node, x):
    """x + bias below -lambd, x - bias above lambd, 0 between."""
    lambd, bias = node.attr("lambd", 0.5), scalar(ctx, node.attr("bias", 0.0), x)
    zero = scalar(ctx, 0, x)
    y = ctx.op("where", [ctx.op("gt", [x, scalar(ctx, lambd, x)]), ctx.op("sub", [x, bias]), zero])
    if x.dtype.is_unsigned_int:  # nothing lies below -lambd
        return y
    return ctx.op("where", [ctx.op("lt", [x, scalar(ctx, -lambd, x)]), ctx.op("add", [x, bias]), y])


@converter("Swish")
def swish(ctx, node, x):
    ax = ctx.op("mul", [x, scalar(ctx, node.attr("alpha", 1.0), x)])
    return ctx.op("mul", [x, ctx.op("sigmoid", [ax])])
