"""OpenCL kernels of the elementwise op family (lgc.ops.elementwise holds their semantics).

Each op is one C expression of its operands, given as a table per kind of op;
lgc.backends.templates.Elementwise does the loads, broadcasting and conversions around it.
  UNARY     - expr(x, t): x loaded and converted to the input's type t
  BOOL_OUT  - expr(x, attrs): a test of x whose result is stored as bool
  BINARY    - expr(a, b, t, attrs): both operands converted to the first input's type t
complex64 operands take lgc.backends.kernels.complex's expression where it has one (mul,
div, eq, exp, abs); the others (add, sub, neg) are the same C on float2.
"""
from __future__ import annotations

from ..settings import current_settings
from ..target import current_target
from ..templates import Elementwise, Pointwise, literal
from . import complex as cplx


def _cpu_tanh() -> bool:
    """float32 tanh as the program's lgc_tanh (lgc.backends.program.HELPERS) on CPU targets,
    where PoCL's tanh() is a scalar call that keeps a row loop (a GEMM's epilogue) from
    vectorising; GPUs keep their native tanh. LGC_CPU_TANH=0 turns it off."""
    return not current_target().is_gpu and current_settings().cpu_tanh


UNARY = {
    "exp": lambda x, t: f"exp({x})",
    "log": lambda x, t: f"log({x})",
    "log1p": lambda x, t: f"log1p({x})",
    "expm1": lambda x, t: f"expm1({x})",
    "sqrt": lambda x, t: f"sqrt({x})",
    "sin": lambda x, t: f"sin({x})",
    "cos": lambda x, t: f"cos({x})",
    "tan": lambda x, t: f"tan({x})",
    "asin": lambda x, t: f"asin({x})",
    "acos": lambda x, t: f"acos({x})",
    "atan": lambda x, t: f"atan({x})",
    "sinh": lambda x, t: f"sinh({x})",
    "cosh": lambda x, t: f"cosh({x})",
    "tanh": lambda x, t: f"lgc_tanh({x})" if t.cl_compute == "float" and _cpu_tanh() else f"tanh({x})",
    "asinh": lambda x, t: f"asinh({x})",
    "acosh": lambda x, t: f"acosh({x})",
    "atanh": lambda x, t: f"atanh({x})",
    "floor": lambda x, t: f"floor({x})",
    "ceil": lambda x, t: f"ceil({x})",
    "round": lambda x, t: f"rint({x})",
    "reciprocal": lambda x, t: f"({literal(1, t)} / {x})",
    "sigmoid": lambda x, t: f"({literal(1, t)} / ({literal(1, t)} + exp(-{x})))",
    # float32: the program's own lgc_erf (lgc.backends.program.HELPERS), PoCL's erf is slow
    "erf": lambda x, t: f"lgc_erf({x})" if t.cl_compute == "float" else f"erf({x})",
    "neg": lambda x, t: f"(-{x})",
    "abs": lambda x, t: f"({x} < {literal(0, t)} ? -{x} : {x})",
    "sign": lambda x, t: f"(({x} > {literal(0, t)}) - ({x} < {literal(0, t)}))",
    "relu": lambda x, t: f"({x} < {literal(0, t)} ? {literal(0, t)} : {x})",
    "not": lambda x, t: f"(!{x})",
    "bitwise_not": lambda x, t: f"(~{x})",
}


def _isinf(x, at):
    tests = ((["(isinf(" + x + ") && " + x + " > 0)"] if at["detect_positive"] else []) +
             (["(isinf(" + x + ") && " + x + " < 0)"] if at["detect_negative"] else []))
    return "(" + " || ".join(tests or ["0"]) + ")"


BOOL_OUT = {
    "isnan": lambda x, at: f"isnan({x})",
    "isinf": _isinf,
}


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


def _c_pow(a, b, t, at):
    if t.is_float:
        return f"pow({a}, {b})"
    return f"({t.cl_compute})pow((double){a}, (double){b})"


def _c_shift(left):
    """A count outside [0, bits) gives 0 (or -1 for a right shift of a negative value), as
    NumPy does, instead of C's undefined behaviour."""
    def expr(a, b, t, at):
        bits = t.itemsize * 8
        ok = f"({b} >= 0 && {b} < {bits})" if t.is_signed_int else f"({b} < {bits})"
        if left:
            unsigned = "u" + t.cl_storage if not t.cl_storage.startswith("u") else t.cl_storage
            return f"({ok} ? ({t.cl_compute})(({unsigned}){a} << {b}) : 0)"
        fill = f"({a} < 0 ? -1 : 0)" if t.is_signed_int else "0"
        return f"({ok} ? ({a} >> {b}) : {fill})"
    return expr


BINARY = {
    "add": lambda a, b, t, at: f"({a} + {b})",
    "sub": lambda a, b, t, at: f"({a} - {b})",
    "mul": lambda a, b, t, at: f"({a} * {b})",
    "div": _c_div,
    "pow": _c_pow,
    "max": _c_max,
    "min": _c_min,
    "mod": _c_mod,
    "eq": lambda a, b, t, at: f"({a} == {b})",
    "lt": lambda a, b, t, at: f"({a} < {b})",
    "le": lambda a, b, t, at: f"({a} <= {b})",
    "gt": lambda a, b, t, at: f"({a} > {b})",
    "ge": lambda a, b, t, at: f"({a} >= {b})",
    "and": lambda a, b, t, at: f"({a} && {b})",
    "or": lambda a, b, t, at: f"({a} || {b})",
    "xor": lambda a, b, t, at: f"({a} != {b})",
    "bitwise_and": lambda a, b, t, at: f"({a} & {b})",
    "bitwise_or": lambda a, b, t, at: f"({a} | {b})",
    "bitwise_xor": lambda a, b, t, at: f"({a} ^ {b})",
    "shift_left": _c_shift(True),
    "shift_right": _c_shift(False),
}


def _unary(op, c_expr) -> Elementwise:
    complex_expr = cplx.UNARY.get(op)
    if complex_expr is None:
        return Elementwise(lambda a, em: c_expr(a[0], em.in_type(0)))
    return Elementwise(lambda a, em: complex_expr(a[0]) if em.in_type(0).is_complex
                       else c_expr(a[0], em.in_type(0)))


def _bool_out(c_expr) -> Elementwise:
    return Elementwise(lambda a, em: c_expr(a[0], em.node.attrs))


def _binary(op, c_expr) -> Elementwise:
    complex_expr = cplx.BINARY.get(op)
    if complex_expr is None:
        return Elementwise(lambda a, em: c_expr(a[0], a[1], em.in_type(0), em.node.attrs))
    return Elementwise(lambda a, em: complex_expr(a[0], a[1]) if em.in_type(0).is_complex
                       else c_expr(a[0], a[1], em.in_type(0), em.node.attrs))


def _where_body(em):
    c = em.load(0, em.broadcast_coords(0))
    a = em.load(1, em.broadcast_coords(1))
    b = em.load(2, em.broadcast_coords(2))
    em.store(f"({c} ? {a} : {b})")


LOWERINGS: dict = {
    **{op: _unary(op, expr) for op, expr in UNARY.items()},
    **{op: _bool_out(expr) for op, expr in BOOL_OUT.items()},
    **{op: _binary(op, expr) for op, expr in BINARY.items()},
    "where": Pointwise(_where_body),
    # the loaded input converted to the output type: Elementwise's own conversion is the cast
    "cast": Elementwise(lambda a, em: a[0], on_output=False),
}
