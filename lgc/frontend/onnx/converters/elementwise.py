"""Elementwise ONNX operators, and the activations that decompose into elementwise ops."""
from __future__ import annotations

import numpy as np

from . import attr_dtype, converter

_UNARY = {
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Sin": "sin", "Cos": "cos", "Tan": "tan",
    "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh",
    "Tanh": "tanh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Erf": "erf",
    "Floor": "floor", "Ceil": "ceil", "Round": "round", "Reciprocal": "reciprocal",
    "Sigmoid": "sigmoid", "Neg": "neg", "Abs": "abs", "Sign": "sign", "Relu": "relu",
    "Not": "not", "BitwiseNot": "bitwise_not", "IsNaN": "isnan",
}
_BINARY = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Equal": "eq", "Less": "lt",
    "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge", "And": "and", "Or": "or",
    "Xor": "xor", "BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or",
    "BitwiseXor": "bitwise_xor",
}


def _unary(op):
    return lambda ctx, node, x: ctx.op(op, [x])


def _binary(op):
    return lambda ctx, node, a, b: ctx.op(op, [a, b])


for _onnx, _core in _UNARY.items():
    converter(_onnx)(_unary(_core))
for _onnx, _core in _BINARY.items():
    converter(_onnx)(_binary(_core))


def scalar(ctx, value, like):
    """A 0-d constant of `like`'s dtype."""
    return ctx.const(np.asarray(value, dtype=like.dtype.np))


@converter("Identity")
def identity(ctx, node, x):
    return x


@converter("Constant")
def constant(ctx, node):
    a = node.attrs
    if "value" in a:
        return ctx.const(a["value"])
    for key, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if key in a:
            return ctx.const(np.asarray(a[key], dt))
    for key, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in a:
            return ctx.const(np.asarray(a[key], dt))
    raise NotImplementedError(f"Constant with attribute(s) {sorted(a)}")


@converter("Cast")
def cast(ctx, node, x):
    dt = attr_dtype(node, "to")
    if dt == x.dtype:
        return x
    return ctx.op("cast", [x], {"to": dt.name})


@converter("CastLike")
def cast_like(ctx, node, x, like):
    return x if x.dtype == like.dtype else ctx.op("cast", [x], {"to": like.dtype.name})


@converter("Pow")
def pow_(ctx, node, a, b):
    if b.dtype != a.dtype:
        b = ctx.op("cast", [b], {"to": a.dtype.name})
    return ctx.op("pow", [a, b])


@converter("Mod")
def mod(ctx, node, a, b):
    return ctx.op("mod", [a, b], {"fmod": int(node.attr("fmod", 0))})


@converter("BitShift")
def bit_shift(ctx, node, a, b):
    return ctx.op("shift_left" if node.attr("direction") == "LEFT" else "shift_right", [a, b])


@converter("IsInf")
def isinf(ctx, node, x):
    return ctx.op("isinf", [x], {"detect_positive": node.attr("detect_positive", 1),
                                 "detect_negative": node.attr("detect_negative", 1)})


@converter("Where")
def where(ctx, node, c, a, b):
    return ctx.op("where", [c, a, b])


def _variadic(op):
    def conv(ctx, node, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = ctx.op(op, [out, x])
        return out
    return conv


converter("Max")(_variadic("max"))
converter("Min")(_variadic("min"))
converter("Sum")(_variadic("add"))


@converter("Mean")
def mean(ctx, node, *xs):
    total = _variadic("add")(ctx, node, *xs)
    return ctx.op("div", [total, scalar(ctx, len(xs), total)])


@converter("Clip")
def clip(ctx, node, x, lo=None, hi=None):
    if ctx.opset < 11:
        lo = scalar(ctx, node.attr("min", -3.4028234663852886e38), x)
        hi = scalar(ctx, node.attr("max", 3.4028234663852886e38), x)
    if lo is not None:
        x = ctx.op("max", [x, lo])
    if hi is not None:
        x = ctx.op("min", [x, hi])
    return x


@converter("LeakyRelu")
def leaky_relu(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 0.01), x)
    zero = scalar(ctx, 0, x)
    return ctx.op("where", [ctx.op("lt", [x, zero]), ctx.op("mul", [x, alpha]), x])


@converter("PRelu")
def prelu(ctx, node, x, slope):
    zero = scalar(ctx, 0, x)
    if ctx.opset < 7 and len(slope.shape) == 1 and len(x.shape) > 2 and slope.shape[0] == x.shape[1] > 1:
        # before opset 7 a 1-D slope applies per channel (axis 1), not to the last axis
        slope = ctx.op("reshape", [slope], {"shape": (slope.shape[0],) + (1,) * (len(x.shape) - 2)})
    return ctx.op("where", [ctx.op("lt", [x, zero]), ctx.op("mul", [x, slope]), x])


@converter("Elu")
def elu(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 1.0), x)
    one, zero = scalar(ctx, 1, x), scalar(ctx, 0, x)
    neg = ctx.op("mul", [alpha, ctx.op("sub", [ctx.op("exp", [x]), one])])
    return ctx.op("where", [ctx.op("lt", [x, zero]), neg, x])


@converter("Celu")
def celu(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 1.0), x)
    one, zero = scalar(ctx, 1, x), scalar(ctx, 0, x)
    neg = ctx.op("mul", [alpha, ctx.op("sub", [ctx.op("exp", [ctx.op("div", [x, alpha])]), one])])
    return ctx.op("add", [ctx.op("max", [x, zero]), ctx.op("min", [zero, neg])])


@converter("Selu")
def selu(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 1.67326319217681884765625), x)
    gamma = scalar(ctx, node.attr("gamma", 1.05070102214813232421875), x)
    one, zero = scalar(ctx, 1, x), scalar(ctx, 0, x)
    neg = ctx.op("mul", [alpha, ctx.op("sub", [ctx.op("exp", [x]), one])])
    return ctx.op("mul", [gamma, ctx.op("where", [ctx.op("le", [x, zero]), neg, x])])


@converter("ThresholdedRelu")
def thresholded_relu(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 1.0), x)
    return ctx.op("where", [ctx.op("gt", [x, alpha]), x, scalar(ctx, 0, x)])


@converter("HardSigmoid")
def hard_sigmoid(ctx, node, x):
    alpha = scalar(ctx, node.attr("alpha", 0.2), x)
    beta = scalar(ctx, node.attr("beta", 0.5), x)
    y = ctx.op("add", [ctx.op("mul", [x, alpha]), beta])
    return ctx.op("min", [ctx.op("max", [y, scalar(ctx, 0, x)]), scalar(ctx, 1, x)])


@converter("HardSwish")
def hard_swish(ctx, node, x):
    y = ctx.op("add", [ctx.op("mul", [x, scalar(ctx, 1 / 6, x)]), scalar(ctx, 0.5, x)])
    y = ctx.op("min", [ctx.op("max", [y, scalar(ctx, 0, x)]), scalar(ctx, 1, x)])
    return ctx.op("mul", [x, y])


@converter("Softplus")
def softplus(ctx, node, x):
    return ctx.op("log", [ctx.op("add", [ctx.op("exp", [x]), scalar(ctx, 1, x)])])


@converter("Softsign")
def softsign(ctx, node, x):
    return ctx.op("div", [x, ctx.op("add", [ctx.op("abs", [x]), scalar(ctx, 1, x)])])


@converter("Mish")
def mish(ctx, node, x):
    sp = softplus(ctx, node, x)
    return ctx.op("mul", [x, ctx.op("tanh", [sp])])


@converter("Gelu")
def gelu(ctx, node, x):
    half, one = scalar(ctx, 0.5, x), scalar(ctx, 1, x)
    if node.attr("approximate", "none") == "tanh":
        c = scalar(ctx, np.sqrt(2 / np.pi), x)
        k = scalar(ctx, 0.044715, x)
        x3 = ctx.op("mul", [ctx.op("mul", [x, x]), x])
        inner = ctx.op("mul", [c, ctx.op("add", [x, ctx.op("mul", [k, x3])])])
        return ctx.op("mul", [ctx.op("mul", [half, x]), ctx.op("add", [one, ctx.op("tanh", [inner])])])
    erf = ctx.op("erf", [ctx.op("mul", [x, scalar(ctx, 1 / np.sqrt(2), x)])])
    return ctx.op("mul", [ctx.op("mul", [half, x]), ctx.op("add", [one, erf])])
