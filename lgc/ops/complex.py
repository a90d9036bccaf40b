"""The ops of complex64 itself: real, imag, conj and complex (a value from its two parts).

complex64 arithmetic (add, sub, mul, div, neg, exp, eq, abs) is the elementwise family's;
these are what only complex numbers have. Kernels: lgc.backends.kernels.complex.

Gradients follow JAX's convention for complex values: a cotangent pairs with a tangent as
Re(ct * t), without conjugation, so a holomorphic op transposes to multiplication by its
derivative, and `lgc.grad` of a real function of a complex z returns df/dx - i df/dy (the
conjugate of the steepest-ascent direction), as jax.grad does. The rules below are the
transposes of these linear ops under that pairing: real's is ct + 0i, imag's -i ct,
complex's (Re ct, -Im ct), conj's conj(ct).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import OpDef, OpError, register
from . import batch_rules, prim
from ._rules import broadcast_shapes, linear_jvp, require


def _part_infer(name):
    def infer(types, attrs):
        require(types, "c", name)
        return [TensorType(dtypes.f32, types[0].shape)]
    return infer


def _conj_infer(types, attrs):
    require(types, "c", "conj")
    return [types[0]]


def _complex_infer(types, attrs):
    if any(t.dtype != dtypes.f32 for t in types):
        raise OpError(f"complex needs two float32 parts, got {types[0].dtype} and {types[1].dtype}")
    return [TensorType(dtypes.c64, broadcast_shapes(types[0].shape, types[1].shape))]


def _complex_ref(xs, attrs):
    """re + i im without arithmetic (1j * inf would make a NaN real part)."""
    re, im = np.broadcast_arrays(*xs)
    out = np.empty(re.shape, np.complex64)
    out.real, out.imag = re, im
    return [out]


register(OpDef(
    "real", _part_infer("real"), lambda xs, at: [np.ascontiguousarray(xs[0].real)],
    fusion="elementwise", num_inputs=1, doc="the real part (float32)",
    batch=batch_rules.unary("real"), jvp=linear_jvp("real"),
    vjp=lambda cts, ins, outs, at: [prim.astype(cts[0], np.complex64)]))
register(OpDef(
    "imag", _part_infer("imag"), lambda xs, at: [np.ascontiguousarray(xs[0].imag)],
    fusion="elementwise", num_inputs=1, doc="the imaginary part (float32)",
    batch=batch_rules.unary("imag"), jvp=linear_jvp("imag"),
    vjp=lambda cts, ins, outs, at: [prim.complex(prim.zeros_like(cts[0]), prim.neg(cts[0]))]))
register(OpDef(
    "conj", _conj_infer, lambda xs, at: [np.conj(xs[0])],
    fusion="elementwise", num_inputs=1, doc="the complex conjugate",
    batch=batch_rules.unary("conj"),
    vjp=lambda cts, ins, outs, at: [prim.conj(cts[0])]))
register(OpDef(
    "complex", _complex_infer, _complex_ref,
    fusion="broadcast", num_inputs=2, doc="re + i im from two float32 arrays (broadcast)",
    batch=batch_rules.broadcasting("complex"), jvp=linear_jvp("complex"),
    vjp=lambda cts, ins, outs, at: [prim.real(cts[0]), prim.neg(prim.imag(cts[0]))]))
