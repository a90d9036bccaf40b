"""OpenCL kernels of complex64 (lgc.ops.complex holds the semantics).

A complex64 is a float2: .x the real part, .y the imaginary part (NumPy's layout, so
buffers need no conversion). add, sub, neg and where are the same C expressions on float2
as on float, so the elementwise family's do; the arithmetic that is not componentwise is
here, as the tables the elementwise family's kernels use for complex operands:
  UNARY  - expr(x): x a float2 variable; a str of the same type, or (str, DType)
  BINARY - expr(a, b): a and b float2 variables
`lgc_cdiv` (lgc.backends.program.HELPERS) divides as NumPy does (Smith's method).
"""
from __future__ import annotations

from ...ir import dtypes
from ..templates import Elementwise


def cmul(a: str, b: str) -> str:
    """a * b for float2 names a and b (each read twice: pass variables)."""
    return f"(float2)({a}.x * {b}.x - {a}.y * {b}.y, {a}.x * {b}.y + {a}.y * {b}.x)"


UNARY = {
    "abs": lambda x: (f"hypot({x}.x, {x}.y)", dtypes.f32),
    "exp": lambda x: f"(exp({x}.x) * (float2)(cos({x}.y), sin({x}.y)))",
}

BINARY = {
    "mul": cmul,
    "div": lambda a, b: f"lgc_cdiv({a}, {b})",
    "eq": lambda a, b: (f"({a}.x == {b}.x && {a}.y == {b}.y)", dtypes.bool_),
}


LOWERINGS: dict = {
    "real": Elementwise(lambda a, em: (f"{a[0]}.x", dtypes.f32)),
    "imag": Elementwise(lambda a, em: (f"{a[0]}.y", dtypes.f32)),
    "conj": Elementwise(lambda a, em: f"(float2)({a[0]}.x, -{a[0]}.y)"),
    "complex": Elementwise(lambda a, em: (f"(float2)({a[0]}, {a[1]})", dtypes.c64)),
}
