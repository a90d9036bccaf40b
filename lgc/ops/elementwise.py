"""Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons,
logic, select and cast. Each is declared here by its type rule and NumPy reference; its C
expression is in lgc.backends.kernels.elementwise. complex64 takes the arithmetic (add, sub,
mul, div, neg), exp, eq, where, cast and abs (a float32 result); its own ops (real, imag,
conj, complex) are lgc.ops.complex."""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules
from ._rules import broadcast_shapes, elementwise_type, f16_as_f32, require

def _quiet():
    return np.errstate(all="ignore")


def _ref1(fn, out):
    def ref(xs, attrs):
        with _quiet():
            x = xs[0]
            y = fn(f16_as_f32(x))
            return [np.asarray(y).astype(out(dtypes.from_numpy(x.dtype)).np)]
    return ref


def _same(dt):
    return dt


def _real(dt):
    """The dtype of a complex value's parts (a real dtype is its own)."""
    return dtypes.f32 if dt.is_complex else dt


def _unary(name, ref, kinds="f", doc="", out=_same):
    def infer(types, attrs):
        require(types, kinds, name)
        return [TensorType(out(types[0].dtype), types[0].shape)]
    register(OpDef(name, infer, _ref1(ref, out),
                   fusion="elementwise", num_inputs=1, doc=doc, batch=batch_rules.unary(name)))


_unary("exp", np.exp, kinds="fc")
_unary("log", np.log)
_unary("log1p", np.log1p, doc="log(1 + x), exact near 0")
_unary("expm1", np.expm1, doc="exp(x) - 1, exact near 0")
_unary("sqrt", np.sqrt)
_unary("sin", np.sin)
_unary("cos", np.cos)
_unary("tan", np.tan)
_unary("asin", np.arcsin)
_unary("acos", np.arccos)
_unary("atan", np.arctan)
_unary("sinh", np.sinh)
_unary("cosh", np.cosh)
_unary("tanh", np.tanh)
_unary("asinh", np.arcsinh)
_unary("acosh", np.arccosh)
_unary("atanh", np.arctanh)
_unary("floor", np.floor)
_unary("ceil", np.ceil)
_unary("round", np.round, doc="round half to even")
_unary("reciprocal", lambda x: 1 / x)
_unary("sigmoid", lambda x: 1 / (1 + np.exp(-x)))


def _erf_ref(x):
    import math
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x


_unary("erf", _erf_ref)
_unary("neg", np.negative, kinds="fic")
_unary("abs", np.abs, kinds="fiuc", out=_real, doc="of a complex value: its modulus (float32)")
_unary("sign", np.sign, kinds="fiu")
_unary("relu", lambda x: np.where(x < 0, np.zeros_like(x), x), kinds="fi")
_unary("not", np.logical_not, kinds="b")
_unary("bitwise_not", np.invert, kinds="iu")


def _bool_out(name, ref, kinds="f", attrs=None):
    def infer(types, a):
        require(types, kinds, name)
        return [TensorType(dtypes.bool_, types[0].shape)]

    def reference(xs, a):
        return [np.asarray(ref(xs[0], a), dtype=np.bool_)]
    register(OpDef(name, infer, reference,
                   fusion="elementwise", num_inputs=1, attrs=attrs or {},
                   batch=batch_rules.unary(name)))


_bool_out("isnan", lambda x, a: np.isnan(x))
_bool_out("isinf",
          lambda x, a: (np.isposinf(x) & bool(a["detect_positive"])) | (np.isneginf(x) & bool(a["detect_negative"])),
          attrs={"detect_positive": 1, "detect_negative": 1})


# ---- binary ops ---------------------------------------------------------------------------

def _binary(name, ref, kinds="fiu", out_bool=False):
    def infer(types, attrs):
        require(types, kinds, name)
        return elementwise_type(types, dtypes.bool_ if out_bool else None)

    def reference(xs, attrs):
        a, b = xs
        with _quiet():
            r = ref(f16_as_f32(a), f16_as_f32(b), attrs)
        return [np.asarray(r).astype(np.bool_ if out_bool else a.dtype)]

    register(OpDef(name, infer, reference,
                   fusion="broadcast", num_inputs=2, attrs={"fmod": 0} if name == "mod" else {},
                   batch=batch_rules.broadcasting(name)))


def _int_div(a, b, attrs):
    if a.dtype.kind in "iu":
        q = np.abs(a.astype(np.int64)) // np.maximum(np.abs(b.astype(np.int64)), 1)
        return (q * np.sign(a) * np.sign(b)).astype(a.dtype)
    return a / b


def _ref_mod(a, b, at):
    if at["fmod"]:
        return np.fmod(a, b)
    return np.mod(a, b)


_binary("add", lambda a, b, at: a + b, kinds="fiuc")
_binary("sub", lambda a, b, at: a - b, kinds="fiuc")
_binary("mul", lambda a, b, at: a * b, kinds="fiuc")
_binary("div", _int_div, kinds="fiuc")
_binary("pow", lambda a, b, at: np.power(a, b))
_binary("max", lambda a, b, at: np.maximum(a, b))
_binary("min", lambda a, b, at: np.minimum(a, b))
_binary("mod", _ref_mod)
_binary("eq", lambda a, b, at: a == b, kinds="fiubc", out_bool=True)
_binary("lt", lambda a, b, at: a < b, out_bool=True)
_binary("le", lambda a, b, at: a <= b, out_bool=True)
_binary("gt", lambda a, b, at: a > b, out_bool=True)
_binary("ge", lambda a, b, at: a >= b, out_bool=True)
_binary("and", lambda a, b, at: a & b, kinds="b")
_binary("or", lambda a, b, at: a | b, kinds="b")
_binary("xor", lambda a, b, at: a ^ b, kinds="b")
_binary("bitwise_and", lambda a, b, at: a & b, kinds="iu")
_binary("bitwise_or", lambda a, b, at: a | b, kinds="iu")
_binary("bitwise_xor", lambda a, b, at: a ^ b, kinds="iu")
def _shift_ref(left):
    """NumPy-style shifts: a count outside [0, bits) gives 0 (or -1 for a right shift of a
    negative value) instead of C's undefined behaviour."""
    def ref(a, b, at):
        a, b = np.broadcast_arrays(a, b)
        bits = a.dtype.itemsize * 8
        ok = (b >= 0) & (b < bits)
        bs = np.where(ok, b, 0).astype(a.dtype)
        if left:
            u = np.dtype(f"u{a.dtype.itemsize}")
            r = np.left_shift(a.view(u) if a.dtype.kind == "i" else a, bs.astype(u)).view(a.dtype)
            return np.where(ok, r, 0)
        fill = np.where(a < 0, -1, 0) if a.dtype.kind == "i" else 0
        return np.where(ok, np.right_shift(a, bs), fill)
    return ref


_binary("shift_left", _shift_ref(True), kinds="iu")
_binary("shift_right", _shift_ref(False), kinds="iu")


# ---- select and cast ------------------------------------------------------------------------

def _where_infer(types, attrs):
    c, a, b = types
    if not c.dtype.is_bool:
        raise OpError(f"condition must be bool, got {c.dtype}")
    if a.dtype != b.dtype:
        raise OpError(f"branches have different dtypes {a.dtype} and {b.dtype}")
    return [TensorType(a.dtype, broadcast_shapes(c.shape, a.shape, b.shape))]


register(OpDef(
    "where", _where_infer,
    lambda xs, at: [np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)],
    fusion="broadcast", num_inputs=3, batch=batch_rules.broadcasting("where")))


def _cast_infer(types, attrs):
    return [TensorType(dtypes.by_name(attrs["to"]), types[0].shape)]


def _cast_ref(xs, attrs):
    to = dtypes.by_name(attrs["to"]).np
    x = xs[0]
    with _quiet():
        if x.dtype.kind == "c" and to.kind not in "cb":
            x = x.real     # NumPy's astype keeps the real part (and warns)
        if x.dtype.kind == "f" and to.kind in "iu":
            x = np.trunc(x)
        return [x.astype(to)]


register(OpDef(
    "cast", _cast_infer, _cast_ref,
    fusion="elementwise", num_inputs=1, attrs={"to": REQUIRED}, batch=batch_rules.unary("cast")))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim so the backward ops trace like any others (jit, grad of grad).
# Cotangents may keep the broadcast shape: lgc.trace.autodiff sums them back per input.

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from ._rules import is_host  # noqa: E402
from .prim import add, div, mul, neg, sub  # noqa: E402


def _defvjp1(name, rule):
    """rule(g, x, y) -> cotangent of x, for a one-input one-output op."""
    OPS[name].vjp = lambda cts, ins, outs, attrs: [rule(cts[0], ins[0], outs[0])]


def _defvjp2(name, rule):
    """rule(g, a, b, y) -> (cotangent of a, cotangent of b)."""
    OPS[name].vjp = lambda cts, ins, outs, attrs: list(rule(cts[0], *ins, outs[0]))


def _zero(g, x, y):
    return None   # piecewise constant: the gradient is zero almost everywhere


def _one_minus_square(v):
    return sub(1, mul(v, v))


_defvjp1("exp", lambda g, x, y: mul(g, y))
_defvjp1("log", lambda g, x, y: div(g, x))
_defvjp1("log1p", lambda g, x, y: div(g, add(x, 1)))
_defvjp1("expm1", lambda g, x, y: mul(g, add(y, 1)))
_defvjp1("sqrt", lambda g, x, y: div(g, mul(2, y)))
_defvjp1("sin", lambda g, x, y: mul(g, prim.cos(x)))
_defvjp1("cos", lambda g, x, y: mul(neg(g), prim.sin(x)))
_defvjp1("tan", lambda g, x, y: mul(g, add(1, mul(y, y))))
_defvjp1("asin", lambda g, x, y: div(g, prim.sqrt(_one_minus_square(x))))
_defvjp1("acos", lambda g, x, y: div(neg(g), prim.sqrt(_one_minus_square(x))))
_defvjp1("atan", lambda g, x, y: div(g, add(1, mul(x, x))))
_defvjp1("sinh", lambda g, x, y: mul(g, prim.cosh(x)))
_defvjp1("cosh", lambda g, x, y: mul(g, prim.sinh(x)))
_defvjp1("tanh", lambda g, x, y: mul(g, _one_minus_square(y)))
_defvjp1("asinh", lambda g, x, y: div(g, prim.sqrt(add(mul(x, x), 1))))
_defvjp1("acosh", lambda g, x, y: div(g, prim.sqrt(sub(mul(x, x), 1))))
_defvjp1("atanh", lambda g, x, y: div(g, _one_minus_square(x)))
_defvjp1("reciprocal", lambda g, x, y: mul(mul(neg(g), y), y))
_defvjp1("sigmoid", lambda g, x, y: mul(mul(g, y), sub(1, y)))
_defvjp1("erf", lambda g, x, y: mul(mul(g, float(2 / np.sqrt(np.pi))),
                                    prim.exp(mul(neg(x), x))))
_defvjp1("neg", lambda g, x, y: neg(g))


def _abs_vjp(g, x, y):
    """1 at 0 for a real x, as JAX. Of a complex x: g conj(x) / |x| (0 at x = 0), JAX's
    convention for the cotangent of a complex input (no conjugation of the pairing); g may
    be a complex tangent (forward mode reads this rule too: autodiff keeps the real part)."""
    if x.dtype.kind != "c":
        return prim.where(prim.ge(x, 0), g, neg(g))
    nonzero = prim.astype(prim.where(prim.eq(y, 0), 1, y), x.dtype)
    return mul(prim.astype(g, x.dtype), div(prim.conj(x), nonzero))


_defvjp1("abs", _abs_vjp)
_defvjp1("relu", lambda g, x, y: prim.where(prim.gt(x, 0), g, 0))
for _n in ("floor", "ceil", "round", "sign"):
    _defvjp1(_n, _zero)
_defvjp1("cast", lambda g, x, y: prim.astype(g, x.dtype) if x.dtype.kind in "fc" else None)

_defvjp2("add", lambda g, a, b, y: (g, g))
_defvjp2("sub", lambda g, a, b, y: (g, neg(g)))
_defvjp2("mul", lambda g, a, b, y: (mul(g, b), mul(g, a)))
_defvjp2("div", lambda g, a, b, y: (div(g, b), div(mul(neg(g), y), b)))


def _pow_vjp(g, a, b, y):
    """A constant exponent or base (x ** 2, 2 ** x) is worked on with NumPy."""
    da = mul(mul(g, b), prim.power(a, b - 1 if is_host(b) else sub(b, 1)))
    gy = mul(g, y)
    at_zero = a == 0 if is_host(a) else prim.eq(a, 0)
    return da, mul(gy, prim.log(prim.where(at_zero, 1, a)))   # a**b log a; 0 at a == 0


def _chosen(v, y):
    """Where the operand v is the result y. A constant v goes second, where NumPy's `v == y`
    puts it (it hands the comparison to the traced y): the graph these rules always traced."""
    return prim.eq(y, v) if is_host(v) else prim.eq(v, y)


def _minmax_vjp(g, a, b, y):
    """To the chosen operand; ties split the gradient in half (as JAX)."""
    wa = prim.astype(prim.where(_chosen(a, y), prim.where(_chosen(b, y), 0.5, 1.0), 0.0),
                     g.dtype)
    return mul(g, wa), mul(g, sub(1, wa))


def _mod_vjp(g, a, b, y):
    return g, mul(neg(g), prim.floor_divide(sub(a, y), b))   # a = b * q + y with q constant


_defvjp2("pow", _pow_vjp)
_defvjp2("max", _minmax_vjp)
_defvjp2("min", _minmax_vjp)
_defvjp2("mod", _mod_vjp)
OPS["where"].vjp = lambda cts, ins, outs, attrs: [
    None, prim.where(ins[0], cts[0], 0), prim.where(ins[0], 0, cts[0])]
