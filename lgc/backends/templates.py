"""Kernel generators shared by many ops; each op's OpDef holds one of these as `codegen`.

A generator turns one IR node into kernels: `kernels(node, name) -> list[Kernel]`.
  Pointwise   - one work-item per output element, body written by a function of an Emitter
  Elementwise - Pointwise for ops whose result is a C expression of broadcast operands
  Alias       - no kernel: the output shares its input's buffer (reshape and friends)
"""
from __future__ import annotations

from typing import Callable

from ..ir import dtypes
from ..ir.dtypes import DType
from ..ir.graph import Node
from ..ops.linalg import prod
from .emit import Emitter, convert


def literal(value, dtype: DType) -> str:
    """A C literal of `value` in dtype's compute type."""
    if dtype.is_bool:
        return "1" if value else "0"
    if dtype.is_complex:
        value = complex(value)
        return f"(float2)({literal(value.real, dtypes.f32)}, {literal(value.imag, dtypes.f32)})"
    if dtype.is_float:
        v = float(value)
        if v != v:
            return "NAN" if dtype.cl_compute == "float" else "(double)NAN"
        if v in (float("inf"), float("-inf")):
            s = "INFINITY" if v > 0 else "(-INFINITY)"
            return s if dtype.cl_compute == "float" else f"(double){s}"
        text = repr(v)
        if "e" not in text and "." not in text:
            text += ".0"
        return f"{text}f" if dtype.cl_compute == "float" else text
    v = int(value)
    if dtype.cl_compute in ("long", "ulong"):
        if v == -2**63:
            return "(long)(-9223372036854775807L - 1)"
        return f"{v}L" if dtype.cl_compute == "long" else f"{v}UL"
    if dtype.cl_compute == "int" and v == -2**31:
        return "(-2147483647 - 1)"
    if dtype.cl_compute == "uint":
        return f"{v}U"
    return f"({dtype.cl_compute}){v}"


class Pointwise:
    """One work-item per point of the output (or of `domain(node)`)."""

    def __init__(self, body: Callable[[Emitter], None], domain=None, flops_per_point=1):
        self.body = body
        self.domain = domain
        self.flops_per_point = flops_per_point

    def kernels(self, node: Node, name: str):
        em = Emitter(node, domain=self.domain(node) if self.domain else None)
        self.body(em)
        return [em.kernel(name, flops=self.flops_per_point * prod(em.domain))]


class Elementwise(Pointwise):
    """`expr(operands, em)` gives the result from operands already loaded with broadcasting
    and converted to the operand type (the first input's, or the output's if `on_output`);
    the result is of that type too, unless expr returns (C expression, its DType) (complex
    abs is a float)."""

    def __init__(self, expr: Callable, on_output: bool = False):
        self.expr = expr
        self.on_output = on_output
        super().__init__(self._body)

    def _body(self, em: Emitter) -> None:
        work = em.out_type() if self.on_output or not em.inputs else em.in_type(0)
        operands = []
        for i in range(len(em.inputs)):
            x = convert(em.load(i, em.broadcast_coords(i)), em.in_type(i), work)
            operands.append(em.tmp(work.cl_compute, x, "x"))
        value = self.expr(operands, em)
        value, vtype = value if isinstance(value, tuple) else (value, work)
        em.store(convert(value, vtype, em.out_type()))


class Alias:
    """No kernel: the output is a view of input 0's buffer (same bytes, new shape)."""
    alias = True

    def kernels(self, node, name):
        return []
