"""The discrete Fourier transform: one op, `fft`, over the last axis (lax.fft's four types).

  fft    complex64 [..., n]      -> complex64 [..., n]        X_k = sum_j x_j e^(-2 pi i jk/n)
  ifft   complex64 [..., n]      -> complex64 [..., n]        the inverse, scaled by 1/n
  rfft   float32   [..., n]      -> complex64 [..., n//2+1]   fft of a real x, k <= n/2
  irfft  complex64 [..., n//2+1] -> float32   [..., n]        the inverse of rfft, 1/n

`fft_type` is one of these, `length` is n, the transform's length (for irfft it is not implied by the input). This is
NumPy's "backward" normalization; lgc.numpy.fft scales for the others, pads or crops to a
requested n and moves other axes last (lgc/trace/fft.py). Leading axes are independent
transforms. Kernels: lgc.backends.kernels.fft.

Gradients (JAX's convention, lgc.ops.complex): the DFT matrix is symmetric, so fft and ifft
transpose to themselves; rfft is a full fft cropped after a real-to-complex cast, so its
transpose pads, transforms and keeps the real part; irfft is R-linear only (it ignores the
imaginary parts of X_0 and X_n/2, and X_k stands for X_n-k too), so its transpose is the
conjugated rfft of the cotangent, with the halved bins counted twice (jax/_src/lax/fft.py
reasons the same way).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules, prim
from ._rules import linear_jvp
from .core import bind

TYPES = ("fft", "ifft", "rfft", "irfft")


def half(n: int) -> int:
    """How many bins an rfft of length n keeps: k = 0 .. n/2."""
    return n // 2 + 1


def _infer(types, attrs):
    x, kind, n = types[0], attrs["fft_type"], attrs["length"]
    if kind not in TYPES:
        raise OpError(f"fft_type {kind!r} (known: {', '.join(TYPES)})")
    if not isinstance(n, int) or n < 1:
        raise OpError(f"length {n!r} must be a positive integer")
    if x.rank == 0:
        raise OpError("needs an array of at least one dimension (it transforms the last axis)")
    want_in = dtypes.f32 if kind == "rfft" else dtypes.c64
    if x.dtype != want_in:
        raise OpError(f"{kind} needs {want_in} input, got {x.dtype}")
    n_in = half(n) if kind == "irfft" else n
    if x.shape[-1] != n_in:
        raise OpError(f"{kind} of length {n} needs {n_in} elements on the last axis, "
                      f"got {x.shape[-1]}")
    n_out = half(n) if kind == "rfft" else n
    return [TensorType(dtypes.f32 if kind == "irfft" else dtypes.c64, x.shape[:-1] + (n_out,))]


def _reference(xs, attrs):
    kind, n = attrs["fft_type"], attrs["length"]
    x = xs[0].astype(np.float64 if kind == "rfft" else np.complex128)
    y = getattr(np.fft, kind)(x, n=n, axis=-1)
    return [y.astype(np.float32 if kind == "irfft" else np.complex64)]


def _flops(ins, outs, attrs):
    """5 n log2 n per complex transform (the usual count); the real ones do half."""
    n = attrs["length"]
    rows = outs[0].size // max(outs[0].shape[-1], 1)
    per = 5 * n * max(math.log2(n), 1)
    return int(rows * (per / 2 if attrs["fft_type"] in ("rfft", "irfft") else per))


def _batch(args, dims, attrs):
    """Leading axes are independent transforms: the batch axis stays, unless it is last."""
    x, d = args[0], dims[0]
    if d == len(batch_rules.shape(x)) - 1:
        x, d = batch_rules.moveaxis(x, d, 0), 0
    return [bind("fft", x, **attrs)], [d]


def _irfft_weights(n: int) -> np.ndarray:
    """1 for X_0 (and X_n/2 when n is even), 2 for the bins that stand for two."""
    w = np.full(half(n), 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def _vjp(cts, ins, outs, attrs):
    g, kind, n = cts[0], attrs["fft_type"], attrs["length"]
    if kind in ("fft", "ifft"):
        return [bind("fft", g, **attrs)]
    if kind == "rfft":
        full = prim.pad(g, [(0, 0)] * (g.ndim - 1) + [(0, n - half(n))])
        return [prim.real(bind("fft", full, fft_type="fft", length=n))]
    spectrum = bind("fft", g, fft_type="rfft", length=n)
    return [prim.conj(prim.mul(spectrum, (_irfft_weights(n) / n).astype(np.complex64)))]


register(OpDef(
    "fft", _infer, _reference, fusion="opaque", num_inputs=1,
    attrs={"fft_type": REQUIRED, "length": REQUIRED}, flops=_flops,
    vjp=_vjp, jvp=linear_jvp("fft"), batch=_batch,
    doc="discrete Fourier transform over the last axis (fft, ifft, rfft, irfft; NumPy's "
        "'backward' normalization)"))
