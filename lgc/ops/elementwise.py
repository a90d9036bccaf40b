"""Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons,
logic, select and cast. Each is one C expression; lgc.backends.templates.Elementwise does
the loads, broadcasting and conversions."""
from __future__ import annotations

import numpy as np

from ..backends.templates import Elementwise, Pointwise, literal
from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import _batch
from ._rules import broadcast_shapes, compare_type, elementwise_type, require

def _quiet():
    return np.errstate(all="ignore")


def _ref1(fn):
    def ref(xs, attrs):
        with _quiet():
            x = xs[0]
            y = fn(x.astype(np.float32) if x.dtype == np.float16 else x)
            return [np.asarray(y).astype(x.dtype)]
    return ref


def _unary(name, c_expr, ref, kinds="f", doc=""):
    def infer(types, attrs):
        require(types, kinds, name)
        return [types[0]]
    register(OpDef(name, infer, _ref1(ref), Elementwise(lambda a, em: c_expr(a[0], em.in_type(0))),
                   fusion="elementwise", num_inputs=1, doc=doc, batch=_batch.unary(name)))


def _fl(x, t):  # literal helper bound to the operand type
    return lambda v: literal(v, t)


_unary("exp", lambda x, t: f"exp({x})", np.exp)
_unary("log", lambda x, t: f"log({x})", np.log)
_unary("sqrt", lambda x, t: f"sqrt({x})", np.sqrt)
_unary("sin", lambda x, t: f"sin({x})", np.sin)
_unary("cos", lambda x, t: f"cos({x})", np.cos)
_unary("tan", lambda x, t: f"tan({x})", np.tan)
_unary("asin", lambda x, t: f"asin({x})", np.arcsin)
_unary("acos", lambda x, t: f"acos({x})", np.arccos)
_unary("atan", lambda x, t: f"atan({x})", np.arctan)
_unary("sinh", lambda x, t: f"sinh({x})", np.sinh)
_unary("cosh", lambda x, t: f"cosh({x})", np.cosh)
_unary("tanh", lambda x, t: f"tanh({x})", np.tanh)
_unary("asinh", lambda x, t: f"asinh({x})", np.arcsinh)
_unary("acosh", lambda x, t: f"acosh({x})", np.arccosh)
_unary("atanh", lambda x, t: f"atanh({x})", np.arctanh)
_unary("floor", lambda x, t: f"floor({x})", np.floor)
_unary("ceil", lambda x, t: f"ceil({x})", np.ceil)
_unary("round", lambda x, t: f"rint({x})", np.round, doc="round half to even")
_unary("reciprocal", lambda x, t: f"({literal(1, t)} / {x})", lambda x: 1 / x)
_unary("sigmoid", lambda x, t: f"({literal(1, t)} / ({literal(1, t)} + exp(-{x})))",
       lambda x: 1 / (1 + np.exp(-x)))


def _erf_ref(x):
    import math
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x


_unary("erf", lambda x, t: f"lgc_erf({x})" if t.cl_compute == "float" else f"erf({x})", _erf_ref)
_unary("neg", lambda x, t: f"(-{x})", np.negative, kinds="fi")
_unary("abs", lambda x, t: f"({x} < {literal(0, t)} ? -{x} : {x})", np.abs, kinds="fiu")
_unary("sign", lambda x, t: f"(({x} > {literal(0, t)}) - ({x} < {literal(0, t)}))", np.sign, kinds="fiu")
_unary("relu", lambda x, t: f"({x} < {literal(0, t)} ? {literal(0, t)} : {x})",
       lambda x: np.where(x < 0, np.zeros_like(x), x), kinds="fi")
_unary("not", lambda x, t: f"(!{x})", np.logical_not, kinds="b")
_unary("bitwise_not", lambda x, t: f"(~{x})", np.invert, kinds="iu")


def _bool_out(name, c_expr, ref, kinds="f", attrs=None):
    def infer(types, a):
        require(types, kinds, name)
        return [TensorType(dtypes.bool_, types[0].shape)]

    def reference(xs, a):
        return [np.asarray(ref(xs[0], a), dtype=np.bool_)]
    register(OpDef(name, infer, reference,
                   Elementwise(lambda a, em: c_expr(a[0], em.node.attrs)),
                   fusion="elementwise", num_inputs=1, attrs=attrs or {},
                   batch=_batch.unary(name)))


_bool_out("isnan", lambda x, at: f"isnan({x})", lambda x, a: np.isnan(x))
_bool_out("isinf", lambda x, at: "(" + " || ".join(
    (["(isinf(" + x + ") && " + x + " > 0)"] if at["detect_positive"] else []) +
    (["(isinf(" + x + ") && " + x + " < 0)"] if at["detect_negative"] else []) or ["0"]) + ")",
    lambda x, a: (np.isposinf(x) & bool(a["detect_positive"])) | (np.isneginf(x) & bool(a["detect_negative"])),
    attrs={"detect_positive": 1, "detect_negative": 1})


# ---- binary ops ---------------------------------------------------------------------------

def _binary(name, c_expr, ref, kinds="fiu", out_bool=False):
    def infer(types, attrs):
        require(types, kinds, name)
        return compare_type(types) if out_bool else elementwise_type(types)

    def reference(xs, attrs):
        a, b = xs
        with _quiet():
            if a.dtype == np.float16:
                r = ref(a.astype(np.float32), b.astype(np.float32), attrs)
            else:
                r = ref(a, b, attrs)
        return [np.asarray(r).astype(np.bool_ if out_bool else a.dtype)]

    register(OpDef(name, infer, reference,
                   Elementwise(lambda a, em: c_expr(a[0], a[1], em.in_type(0), em.node.attrs)),
                   fusion="broadcast", num_inputs=2, attrs={"fmod": 0} if name == "mod" else {},
                   batch=_batch.broadcasting(name)))


def _int_div(a, b, attrs):
    if a.dtype.kind in "iu":
        q = np.abs(a.astype(np.int64)) // np.maximum(np.abs(b.astype(np.int64)), 1)
        return (q * np.sign(a) * np.sign(b)).astype(a.dtype)
    return a / b


def _c_max(a, b, t, at):
    return f"(({a} >= {b} || {a} != {a}) ? {a} : {b})" if t.is_float else f"({a} >= {b} ? {a} : {b})"


def _c_min(a, b, t, at):
    return f"(({a} <= {b} || {a} != {a}) ? {a} : {b})" if t.is_float else f"({a} <= {b} ? {a} : {b})"


def _c_mod(a, b, t, at):
    if t.is_float:
        if at["fmod"]:
            return f"fmod({a}, {b})"
        # NumPy's floored modulo via fmod (exact, and right for infinities): the result
        # takes the divisor's sign, and a zero result is a zero of the divisor's sign
        m = f"fmod({a}, {b})"
        return (f"(({m} != 0) ? ((({b} < 0) != ({m} < 0)) ? {m} + {b} : {m}) "
                f": copysign(({t.cl_compute})0, {b}))")
    T = t.cl_compute
    if t.is_unsigned_int:
        return f"(({b} == 0) ? ({T})0 : ({a} % {b}))"
    # x % 0 and MIN % -1 trap on CPUs (SIGFPE kills the host process under PoCL); NumPy gives 0
    if at["fmod"]:
        return f"(({b} == 0 || {b} == -1) ? ({T})0 : ({a} % {b}))"
    r = f"({a} % {b})"
    return (f"(({b} == 0 || {b} == -1) ? ({T})0 : "
            f"(({r} != 0 && (({r} < 0) != ({b} < 0))) ? {r} + {b} : {r}))")


def _c_div(a, b, t, at):
    """Float division as is; integer division that cannot trap: x / 0 gives 0 (NumPy's value)
    and MIN / -1 wraps to MIN, where a CPU's divide instruction raises SIGFPE."""
    if t.is_float:
        return f"({a} / {b})"
    T = t.cl_compute
    if t.is_unsigned_int:
        return f"(({b} == 0) ? ({T})0 : ({a} / {b}))"
    return f"(({b} == 0) ? ({T})0 : ({b} == -1) ? ({T})(0 - (u{T}){a}) : ({a} / {b}))"


def _ref_mod(a, b, at):
    if at["fmod"]:
        return np.fmod(a, b)
    return np.mod(a, b)


def _c_pow(a, b, t, at):
    if t.is_float:
        return f"pow({a}, {b})"
    return f"({t.cl_compute})pow((double){a}, (double){b})"


_binary("add", lambda a, b, t, at: f"({a} + {b})", lambda a, b, at: a + b)
_binary("sub", lambda a, b, t, at: f"({a} - {b})", lambda a, b, at: a - b)
_binary("mul", lambda a, b, t, at: f"({a} * {b})", lambda a, b, at: a * b)
_binary("div", _c_div, _int_div)
_binary("pow", _c_pow, lambda a, b, at: np.power(a, b))
_binary("max", _c_max, lambda a, b, at: np.maximum(a, b))
_binary("min", _c_min, lambda a, b, at: np.minimum(a, b))
_binary("mod", _c_mod, _ref_mod)
_binary("eq", lambda a, b, t, at: f"({a} == {b})", lambda a, b, at: a == b, kinds="fiub", out_bool=True)
_binary("lt", lambda a, b, t, at: f"({a} < {b})", lambda a, b, at: a < b, out_bool=True)
_binary("le", lambda a, b, t, at: f"({a} <= {b})", lambda a, b, at: a <= b, out_bool=True)
_binary("gt", lambda a, b, t, at: f"({a} > {b})", lambda a, b, at: a > b, out_bool=True)
_binary("ge", lambda a, b, t, at: f"({a} >= {b})", lambda a, b, at: a >= b, out_bool=True)
_binary("and", lambda a, b, t, at: f"({a} && {b})", lambda a, b, at: a & b, kinds="b")
_binary("or", lambda a, b, t, at: f"({a} || {b})", lambda a, b, at: a | b, kinds="b")
_binary("xor", lambda a, b, t, at: f"({a} != {b})", lambda a, b, at: a ^ b, kinds="b")
_binary("bitwise_and", lambda a, b, t, at: f"({a} & {b})", lambda a, b, at: a & b, kinds="iu")
_binary("bitwise_or", lambda a, b, t, at: f"({a} | {b})", lambda a, b, at: a | b, kinds="iu")
_binary("bitwise_xor", lambda a, b, t, at: f"({a} ^ {b})", lambda a, b, at: a ^ b, kinds="iu")
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


def _c_shift(left):
    def expr(a, b, t, at):
        bits = t.itemsize * 8
        ok = f"({b} >= 0 && {b} < {bits})" if t.is_signed_int else f"({b} < {bits})"
        if left:
            unsigned = "u" + t.cl_storage if not t.cl_storage.startswith("u") else t.cl_storage
            return f"({ok} ? ({t.cl_compute})(({unsigned}){a} << {b}) : 0)"
        fill = f"({a} < 0 ? -1 : 0)" if t.is_signed_int else "0"
        return f"({ok} ? ({a} >> {b}) : {fill})"
    return expr


_binary("shift_left", _c_shift(True), _shift_ref(True), kinds="iu")
_binary("shift_right", _c_shift(False), _shift_ref(False), kinds="iu")


# ---- select and cast ------------------------------------------------------------------------

def _where_infer(types, attrs):
    c, a, b = types
    if not c.dtype.is_bool:
        raise OpError(f"condition must be bool, got {c.dtype}")
    if a.dtype != b.dtype:
        raise OpError(f"branches have different dtypes {a.dtype} and {b.dtype}")
    return [TensorType(a.dtype, broadcast_shapes(c.shape, a.shape, b.shape))]


def _where_body(em):
    c = em.load(0, em.broadcast_coords(0))
    a = em.load(1, em.broadcast_coords(1))
    b = em.load(2, em.broadcast_coords(2))
    em.store(f"({c} ? {a} : {b})")


register(OpDef(
    "where", _where_infer,
    lambda xs, at: [np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)],
    Pointwise(_where_body),
    fusion="broadcast", num_inputs=3, batch=_batch.broadcasting("where")))


def _cast_infer(types, attrs):
    return [TensorType(dtypes.by_name(attrs["to"]), types[0].shape)]


def _cast_ref(xs, attrs):
    to = dtypes.by_name(attrs["to"]).np
    x = xs[0]
    with _quiet():
        if x.dtype.kind == "f" and to.kind in "iu":
            x = np.trunc(x)
        return [x.astype(to)]


register(OpDef(
    "cast", _cast_infer, _cast_ref,
    Elementwise(lambda a, em: a[0], on_output=False),
    fusion="elementwise", num_inputs=1, attrs={"to": REQUIRED}, batch=_batch.unary("cast")))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.numpy so the backward ops trace like any others (jit, grad of grad).
# Cotangents may keep the broadcast shape: lgc.trace.autodiff sums them back per input.

from ..ir.registry import OPS  # noqa: E402


def _lnp():
    import lgc.numpy as lnp
    return lnp


def _defvjp1(name, rule):
    """rule(g, x, y) -> cotangent of x, for a one-input one-output op."""
    OPS[name].vjp = lambda cts, ins, outs, attrs: [rule(cts[0], ins[0], outs[0])]


def _defvjp2(name, rule):
    """rule(g, a, b, y) -> (cotangent of a, cotangent of b)."""
    OPS[name].vjp = lambda cts, ins, outs, attrs: list(rule(cts[0], *ins, outs[0]))


def _zero(g, x, y):
    return None   # piecewise constant: the gradient is zero almost everywhere


_defvjp1("exp", lambda g, x, y: g * y)
_defvjp1("log", lambda g, x, y: g / x)
_defvjp1("sqrt", lambda g, x, y: g / (2 * y))
_defvjp1("sin", lambda g, x, y: g * _lnp().cos(x))
_defvjp1("cos", lambda g, x, y: -g * _lnp().sin(x))
_defvjp1("tan", lambda g, x, y: g * (1 + y * y))
_defvjp1("asin", lambda g, x, y: g / _lnp().sqrt(1 - x * x))
_defvjp1("acos", lambda g, x, y: -g / _lnp().sqrt(1 - x * x))
_defvjp1("atan", lambda g, x, y: g / (1 + x * x))
_defvjp1("sinh", lambda g, x, y: g * _lnp().cosh(x))
_defvjp1("cosh", lambda g, x, y: g * _lnp().sinh(x))
_defvjp1("tanh", lambda g, x, y: g * (1 - y * y))
_defvjp1("asinh", lambda g, x, y: g / _lnp().sqrt(x * x + 1))
_defvjp1("acosh", lambda g, x, y: g / _lnp().sqrt(x * x - 1))
_defvjp1("atanh", lambda g, x, y: g / (1 - x * x))
_defvjp1("reciprocal", lambda g, x, y: -g * y * y)
_defvjp1("sigmoid", lambda g, x, y: g * y * (1 - y))
_defvjp1("erf", lambda g, x, y: g * (2 / np.sqrt(np.pi)) * _lnp().exp(-x * x))
_defvjp1("neg", lambda g, x, y: -g)
_defvjp1("abs", lambda g, x, y: g * _lnp().sign(x))
_defvjp1("relu", lambda g, x, y: _lnp().where(x > 0, g, 0))
for _n in ("floor", "ceil", "round", "sign"):
    _defvjp1(_n, _zero)
_defvjp1("cast", lambda g, x, y: _lnp().astype(g, x.dtype) if x.dtype.kind == "f" else None)

_defvjp2("add", lambda g, a, b, y: (g, g))
_defvjp2("sub", lambda g, a, b, y: (g, -g))
_defvjp2("mul", lambda g, a, b, y: (g * b, g * a))
_defvjp2("div", lambda g, a, b, y: (g / b, -g * y / b))


def _pow_vjp(g, a, b, y):
    lnp = _lnp()
    da = g * b * lnp.power(a, b - 1)
    db = g * y * lnp.log(lnp.where(a == 0, 1, a))   # d/db a**b = a**b log a (0 where a == 0)
    return da, db


def _minmax_vjp(g, a, b, y):
    """To the chosen operand; ties split the gradient in half (as JAX)."""
    lnp = _lnp()
    wa = lnp.where(a == y, lnp.where(b == y, 0.5, 1.0), 0.0).astype(g.dtype)
    return g * wa, g * (1 - wa)


def _mod_vjp(g, a, b, y):
    return g, -g * _lnp().floor_divide(a - y, b)   # a = b * q + y with q constant


_defvjp2("pow", _pow_vjp)
_defvjp2("max", _minmax_vjp)
_defvjp2("min", _minmax_vjp)
_defvjp2("mod", _mod_vjp)
OPS["where"].vjp = lambda cts, ins, outs, attrs: [
    None, _lnp().where(ins[0], cts[0], 0), _lnp().where(ins[0], 0, cts[0])]
