"""Elementwise ATen operators: arithmetic with PyTorch's type promotion, comparisons, logic,
the math functions and the activations (composites decompose into core elementwise ops)."""
from __future__ import annotations

import math

from ....ir import dtypes
from . import converter
from .layout import full_of

_UNARY = {
    "abs": "abs", "acos": "acos", "acosh": "acosh", "asin": "asin", "asinh": "asinh",
    "atan": "atan", "atanh": "atanh", "ceil": "ceil", "cos": "cos", "cosh": "cosh", "erf": "erf",
    "exp": "exp", "floor": "floor", "log": "log", "neg": "neg", "reciprocal": "reciprocal",
    "relu": "relu", "round": "round", "sigmoid": "sigmoid", "sign": "sign", "sin": "sin",
    "sinh": "sinh", "sqrt": "sqrt", "tan": "tan", "tanh": "tanh",
}
_FLOAT_ONLY = {"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "erf", "exp",
               "log", "reciprocal", "sigmoid", "sin", "sinh", "sqrt", "tan", "tanh"}


def _floating(ctx, x):
    """Integer inputs of float functions compute in the default float type, as in PyTorch."""
    return x if x.dtype.is_float else ctx.cast(x, dtypes.f32)


def _unary(op):
    if op in _FLOAT_ONLY:
        return lambda ctx, x: ctx.op(op, [_floating(ctx, x)])
    if op in ("ceil", "floor", "round"):   # integers are their own rounding
        return lambda ctx, x: x if not x.dtype.is_float else ctx.op(op, [x])
    return lambda ctx, x: ctx.op(op, [x])


for _aten, _core in _UNARY.items():
    converter(f"aten.{_aten}.default")(_unary(_core))


@converter("aten.rsqrt.default")
def rsqrt(ctx, x):
    return ctx.op("reciprocal", [ctx.op("sqrt", [_floating(ctx, x)])])


@converter("aten.expm1.default")
def expm1(ctx, x):
    """exp(x) - 1 without cancellation near 0 (Kahan): u = exp(x); (u - 1) x / log(u), and x
    itself where u rounds to 1."""
    x = _floating(ctx, x)
    u = ctx.op("exp", [x])
    um1 = ctx.op("sub", [u, ctx.scalar(1, x)])
    fixed = ctx.op("div", [ctx.op("mul", [um1, x]), ctx.op("log", [u])])
    big = ctx.op("gt", [ctx.op("abs", [x]), ctx.scalar(0.5, x)])   # and inf - inf stays out
    return ctx.op("where", [ctx.op("eq", [u, ctx.scalar(1, x)]), x,
                            ctx.op("where", [big, um1, fixed])])


@converter("aten.log1p.default")
def log1p(ctx, x):
    """log(1 + x) without cancellation near 0 (Goldberg): u = 1 + x; log(u) x / (u - 1), and
    x itself where u rounds to 1."""
    x = _floating(ctx, x)
    u = ctx.op("add", [x, ctx.scalar(1, x)])
    logu = ctx.op("log", [u])
    fixed = ctx.op("div", [ctx.op("mul", [logu, x]), ctx.op("sub", [u, ctx.scalar(1, x)])])
    big = ctx.op("gt", [ctx.op("abs", [x]), ctx.scalar(0.5, x)])
    return ctx.op("where", [ctx.op("eq", [u, ctx.scalar(1, x)]), x,
                            ctx.op("where", [big, logu, fixed])])


def _log_base(base):
    def conv(ctx, x):
        x = _floating(ctx, x)
        return ctx.op("mul", [ctx.op("log", [x]), ctx.scalar(1 / math.log(base), x)])
    return conv


converter("aten.log2.default")(_log_base(2))
converter("aten.log10.default")(_log_base(10))


@converter("aten.trunc.default")
def trunc(ctx, x):
    if not x.dtype.is_float:
        return x
    return ctx.op("mul", [ctx.op("sign", [x]), ctx.op("floor", [ctx.op("abs", [x])])])


@converter("aten.isnan.default")
def isnan(ctx, x):
    if not x.dtype.is_float:
        return _all(ctx, x, False)
    return ctx.op("isnan", [x])


@converter("aten.isinf.default")
def isinf(ctx, x):
    if not x.dtype.is_float:
        return _all(ctx, x, False)
    return ctx.op("isinf", [x])


def _all(ctx, like, value: bool):
    return full_of(ctx, like.shape, value, dtypes.bool_)


# ---- arithmetic ---------------------------------------------------------------------------

def _operands(ctx, a, b, dtype=None):
    dt = dtype or ctx.promote(a, b)
    return ctx.tensor(a, dt), ctx.tensor(b, dt)


def _scaled(ctx, b, alpha):
    """b * alpha, as add/sub's `alpha` argument (no node when alpha is 1)."""
    if alpha == 1:
        return b
    dt = ctx.promote(b, alpha)
    return ctx.op("mul", [ctx.tensor(b, dt), ctx.tensor(alpha, dt)])


@converter("aten.add.Tensor", "aten.add.Scalar")
def add(ctx, a, b, alpha=1):
    return ctx.op("add", list(_operands(ctx, a, _scaled(ctx, b, alpha), ctx.promote(a, b))))


@converter("aten.sub.Tensor", "aten.sub.Scalar")
def sub(ctx, a, b, alpha=1):
    return ctx.op("sub", list(_operands(ctx, a, _scaled(ctx, b, alpha), ctx.promote(a, b))))


@converter("aten.rsub.Scalar", "aten.rsub.Tensor")
def rsub(ctx, a, b, alpha=1):
    return sub(ctx, b, a, alpha)


@converter("aten.mul.Tensor", "aten.mul.Scalar")
def mul(ctx, a, b):
    return ctx.op("mul", list(_operands(ctx, a, b)))


@converter("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def div(ctx, a, b, rounding_mode=None):
    """True division promotes integers to float; "trunc" and "floor" keep integer types."""
    dt = ctx.promote(a, b)
    if rounding_mode is None and not dt.is_float:
        dt = dtypes.f32
    a, b = _operands(ctx, a, b, dt)
    if rounding_mode == "trunc":
        return trunc(ctx, ctx.op("div", [a, b])) if dt.is_float else ctx.op("div", [a, b])
    if rounding_mode == "floor":
        if dt.is_float:
            return ctx.op("floor", [ctx.op("div", [a, b])])
        # integer floor division: the truncated quotient, one less where a remainder has
        # the opposite sign of b
        q = ctx.op("div", [a, b])
        r = ctx.op("sub", [a, ctx.op("mul", [q, b])])
        zero = ctx.scalar(0, a)
        has_rest = ctx.op("not", [ctx.op("eq", [r, zero])])
        signs_differ = ctx.op("xor", [ctx.op("lt", [r, zero]), ctx.op("lt", [b, zero])])
        fix = ctx.op("and", [has_rest, signs_differ])
        return ctx.op("sub", [q, ctx.cast(fix, dt)])
    return ctx.op("div", [a, b])


@converter("aten.remainder.Tensor", "aten.remainder.Scalar")
def remainder(ctx, a, b):
    return ctx.op("mod", list(_operands(ctx, a, b)), {"fmod": 0})


@converter("aten.fmod.Tensor", "aten.fmod.Scalar")
def fmod(ctx, a, b):
    return ctx.op("mod", list(_operands(ctx, a, b)), {"fmod": 1})


@converter("aten.maximum.default")
def maximum(ctx, a, b):
    return ctx.op("max", list(_operands(ctx, a, b)))


@converter("aten.minimum.default")
def minimum(ctx, a, b):
    return ctx.op("min", list(_operands(ctx, a, b)))


@converter("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def pow_(ctx, a, b):
    dt = ctx.promote(a, b)
    if not isinstance(b, (int, float)):
        return ctx.op("pow", list(_operands(ctx, a, b, dt)))
    a = ctx.tensor(a, dt)
    if b == 1:
        return a
    if b == 2:
        return ctx.op("mul", [a, a])
    if b == 3:
        return ctx.op("mul", [ctx.op("mul", [a, a]), a])
    if b == 0.5 and dt.is_float:
        return ctx.op("sqrt", [a])
    if b == -1 and dt.is_float:
        return ctx.op("reciprocal", [a])
    return ctx.op("pow", [a, ctx.tensor(b, dt)])


@converter("aten.atan2.default")
def atan2(ctx, y, x):
    """atan(y / x), moved into the right quadrant: +-pi where x < 0, +-pi/2 where x == 0."""
    dt = ctx.promote(y, x)
    dt = dt if dt.is_float else dtypes.f32
    y, x = ctx.tensor(y, dt), ctx.tensor(x, dt)
    zero = ctx.scalar(0, x)
    base = ctx.op("atan", [ctx.op("div", [y, x])])
    y_neg = ctx.op("lt", [y, zero])
    pi = ctx.op("where", [y_neg, ctx.scalar(-math.pi, x), ctx.scalar(math.pi, x)])
    left = ctx.op("add", [base, pi])
    half = ctx.op("where", [y_neg, ctx.scalar(-math.pi / 2, x), ctx.scalar(math.pi / 2, x)])
    out = ctx.op("where", [ctx.op("lt", [x, zero]), left, base])
    both_zero = ctx.op("eq", [y, zero])
    on_axis = ctx.op("where", [both_zero, zero, half])
    return ctx.op("where", [ctx.op("eq", [x, zero]), on_axis, out])


# ---- comparisons and logic ----------------------------------------------------------------

def _compare(op, negate=False):
    def conv(ctx, a, b):
        out = ctx.op(op, list(_operands(ctx, a, b)))
        return ctx.op("not", [out]) if negate else out
    return conv


for _name, _op in (("eq", "eq"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")):
    converter(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_compare(_op))
converter("aten.ne.Tensor", "aten.ne.Scalar")(_compare("eq", negate=True))


def _bool(ctx, x):
    if not hasattr(x, "dtype"):
        return ctx.tensor(bool(x), dtypes.bool_)
    return x if x.dtype.is_bool else ctx.op("not", [ctx.op("eq", [x, ctx.scalar(0, x)])])


def _logical(op):
    return lambda ctx, a, b: ctx.op(op, [_bool(ctx, a), _bool(ctx, b)])


converter("aten.logical_and.default")(_logical("and"))
converter("aten.logical_or.default")(_logical("or"))
converter("aten.logical_xor.default")(_logical("xor"))


@converter("aten.logical_not.default")
def logical_not(ctx, x):
    return ctx.op("not", [_bool(ctx, x)])


def _bitwise(bool_op, int_op):
    def conv(ctx, a, b):
        a, b = _operands(ctx, a, b)
        return ctx.op(bool_op if a.dtype.is_bool else int_op, [a, b])
    return conv


converter("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_bitwise("and", "bitwise_and"))
converter("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_bitwise("or", "bitwise_or"))
converter("aten.bitwise_xor.Tensor", "aten.bitwise_xor.Scalar")(_bitwise("xor", "bitwise_xor"))


@converter("aten.bitwise_not.default")
def bitwise_not(ctx, x):
    return ctx.op("not" if x.dtype.is_bool else "bitwise_not", [x])


@converter("aten.where.self")
def where(ctx, cond, a, b):
    a, b = _operands(ctx, a, b)
    return ctx.op("where", [_bool(ctx, cond), a, b])


# ---- clamps and activations ---------------------------------------------------------------

@converter("aten.clamp.default", "aten.clamp.Tensor")
def clamp(ctx, x, min=None, max=None):
    dt = ctx.promote(x, *(v for v in (min, max) if v is not None))
    x = ctx.tensor(x, dt)
    if min is not None:
        x = ctx.op("max", [x, ctx.tensor(min, dt)])
    if max is not None:
        x = ctx.op("min", [x, ctx.tensor(max, dt)])
    return x


@converter("aten.hardtanh.default")
def hardtanh(ctx, x, min_val=-1.0, max_val=1.0):
    return clamp(ctx, x, min_val, max_val)


@converter("aten.leaky_relu.default")
def leaky_relu(ctx, x, negative_slope=0.01):
    return ctx.onnx("LeakyRelu", [x], alpha=negative_slope)


@converter("aten.elu.default")
def elu(ctx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    """scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))."""
    zero, one = ctx.scalar(0, x), ctx.scalar(1, x)
    e = ctx.op("exp", [ctx.op("mul", [x, ctx.scalar(input_scale, x)])])
    neg = ctx.op("mul", [ctx.op("sub", [e, one]), ctx.scalar(alpha, x)])
    y = ctx.op("where", [ctx.op("gt", [x, zero]), x, neg])
    return y if scale == 1 else ctx.op("mul", [y, ctx.scalar(scale, x)])


@converter("aten.gelu.default")
def gelu(ctx, x, approximate="none"):
    return ctx.onnx("Gelu", [x], approximate=approximate)


@converter("aten.hardsigmoid.default")
def hardsigmoid(ctx, x):
    return ctx.onnx("HardSigmoid", [x], alpha=1 / 6, beta=0.5)


@converter("aten.hardswish.default")
def hardswish(ctx, x):
    return ctx.onnx("HardSwish", [x])


@converter("aten.silu.default")
def silu(ctx, x):
    return ctx.op("mul", [x, ctx.op("sigmoid", [x])])


@converter("aten.softplus.default")
def softplus(ctx, x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    bx = ctx.op("mul", [x, ctx.scalar(beta, x)])
    soft = ctx.op("div", [ctx.onnx("Softplus", [bx]), ctx.scalar(beta, x)])
    return ctx.op("where", [ctx.op("gt", [bx, ctx.scalar(threshold, x)]), x, soft])


@converter("aten.mish.default")
def mish(ctx, x):
    return ctx.op("mul", [x, ctx.op("tanh", [softplus(ctx, x)])])


@converter("aten.native_dropout.default")
def native_dropout(ctx, x, p, train):
    """Identity (with an all-true mask) in inference; training dropout is random."""
    if train and p > 0:
        raise NotImplementedError("dropout in training mode (random numbers)")
    return x, _all(ctx, x, True)

