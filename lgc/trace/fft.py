"""lgc.numpy.fft: jax.numpy.fft on the core op `fft` (lgc/ops/fft.py).

The op transforms the last axis with NumPy's "backward" scaling; this module does the rest,
as jax.numpy.fft does over lax.fft: it converts the input (to complex64, or float32 for the
real transforms), moves the transformed axes last, crops or zero-pads each to the requested
length, applies one 1-D transform per axis (rfftn: the real one on the last axis, then
complex ones; irfftn the reverse), scales for norm="ortho" or "forward" and moves the axes
back. Sizes and axes are static, as everywhere in lgc. complex128 has no device type, so
results are complex64 (float32 for irfft), as jax.numpy.fft's without x64.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..ops import prim
from ..ops.fft import half
from ..ops.core import bind, get_aval
from . import numpy as lnp

__all__ = ["fft", "ifft", "rfft", "irfft", "hfft", "ihfft", "fft2", "ifft2", "rfft2", "irfft2",
           "fftn", "ifftn", "rfftn", "irfftn", "fftfreq", "rfftfreq", "fftshift", "ifftshift"]

_NORMS = (None, "backward", "ortho", "forward")


def _scale(norm, n: int, inverse: bool) -> float | None:
    """The factor on top of the op's backward scaling (1/n on inverse transforms)."""
    if norm not in _NORMS:
        raise ValueError(f'Invalid norm value {norm!r}; should be "backward", "ortho" or '
                         '"forward".')
    if norm == "ortho":
        return math.sqrt(n) if inverse else 1 / math.sqrt(n)
    if norm == "forward":
        return n if inverse else 1 / n
    return None


def _input(name: str, a, real: bool):
    """a as the transform's input dtype: float32 for rfft (complex refused, as JAX does),
    complex64 for the others."""
    a = lnp.asarray(a)
    if real and a.dtype.kind == "c":
        raise ValueError(f"lgc.numpy.fft.{name} needs a real input, got {a.dtype}")
    if a.dtype == np.float64:    # only with x64 on
        raise TypeError(f"lgc.numpy.fft.{name}: float64 input has no transform in lgc "
                        "(complex64 is its one complex type); convert it to float32 first")
    return prim.astype(a, np.float32 if real else np.complex64)


def _resize_last(x, n: int):
    """x cropped or zero-padded at the end of its last axis to n elements."""
    m = x.shape[-1]
    if n < m:
        return prim.slice_in_dim(x, 0, n, axis=-1)
    if n > m:
        return prim.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - m)])
    return x


def _along_last(x, fft_type: str, n: int):
    """The op on the last axis, its input cropped or padded to the length it needs."""
    x = _resize_last(x, half(n) if fft_type == "irfft" else n)
    return bind("fft", x, fft_type=fft_type, length=n)


def _along(x, axis: int, fft_type: str, n: int):
    """The op along `axis` (moved last for it, and back)."""
    if axis == x.ndim - 1:
        return _along_last(x, fft_type, n)
    return prim.moveaxis(_along_last(prim.moveaxis(x, axis, -1), fft_type, n), -1, axis)


def _plan(name: str, a, s, axes, irfft: bool):
    """(axes, lengths) as NumPy's fftn reads s and axes."""
    nd = get_aval(a).ndim
    if s is not None:
        s = tuple(operator.index(d) for d in s)
        if axes is not None and len(s) != len(axes):
            raise ValueError("Shape and axes have different lengths.")
    if axes is None:
        axes = range(nd) if s is None else range(nd - len(s), nd)
    axes = tuple(prim.normalize_axis(ax, nd) for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"lgc.numpy.fft.{name} does not support repeated axes. Got axes {axes}.")
    shape = get_aval(a).shape
    if s is None:
        s = [shape[ax] for ax in axes]
        if irfft and axes:
            s[-1] = 2 * (shape[axes[-1]] - 1)
    for d in s:
        if d < 1:
            raise ValueError(f"Invalid number of FFT data points ({d}) specified.")
    return axes, tuple(s)


def _nd(name: str, fft_type: str, a, s, axes, norm):
    """fftn, ifftn, rfftn, irfftn: one 1-D transform per axis (rfftn's real one on the last
    axis first, irfftn's last); fft/ifft/rfft/irfft are the one-axis case."""
    inverse = fft_type in ("ifft", "irfft")
    x = _input(name, a, fft_type == "rfft")
    axes, s = _plan(name, x, s, axes, fft_type == "irfft")
    _scale(norm, 1, inverse)   # a bad norm fails before any work
    if not axes:
        return x
    real = fft_type in ("rfft", "irfft")
    complex_axes = list(zip(axes, s))[:-1] if real else list(zip(axes, s))
    if fft_type == "rfft":
        x = _along(x, axes[-1], "rfft", s[-1])
    for ax, n in reversed(complex_axes):
        x = _along(x, ax, "ifft" if inverse else "fft", n)
    if fft_type == "irfft":
        x = _along(x, axes[-1], "irfft", s[-1])
    factor = _scale(norm, math.prod(s), inverse)
    return x if factor is None else prim.mul(x, factor)


def _one_axis(name: str, axis):
    if isinstance(axis, (list, tuple)):
        raise ValueError(f"lgc.numpy.fft.{name} does not support multiple axes. Please use "
                         f"lgc.numpy.fft.{name}n. Got axis = {axis!r}.")
    return [axis]


def fft(a, n=None, axis=-1, norm=None):
    return _nd("fft", "fft", a, None if n is None else [n], _one_axis("fft", axis), norm)


def ifft(a, n=None, axis=-1, norm=None):
    return _nd("ifft", "ifft", a, None if n is None else [n], _one_axis("ifft", axis), norm)


def rfft(a, n=None, axis=-1, norm=None):
    return _nd("rfft", "rfft", a, None if n is None else [n], _one_axis("rfft", axis), norm)


def irfft(a, n=None, axis=-1, norm=None):
    return _nd("irfft", "irfft", a, None if n is None else [n], _one_axis("irfft", axis), norm)


_SWAP = {None: "forward", "backward": "forward", "ortho": "ortho", "forward": "backward"}


def hfft(a, n=None, axis=-1, norm=None):
    """The real spectrum of a signal with Hermitian symmetry: irfft(conj(a)) scaled the other
    way round (NumPy's definition)."""
    _scale(norm, 1, False)
    return irfft(lnp.conj(_input("hfft", a, False)), n, axis, _SWAP[norm])


def ihfft(a, n=None, axis=-1, norm=None):
    _scale(norm, 1, False)
    return lnp.conj(rfft(a, n, axis, _SWAP[norm]))


def fftn(a, s=None, axes=None, norm=None):
    return _nd("fftn", "fft", a, s, axes, norm)


def ifftn(a, s=None, axes=None, norm=None):
    return _nd("ifftn", "ifft", a, s, axes, norm)


def rfftn(a, s=None, axes=None, norm=None):
    return _nd("rfftn", "rfft", a, s, axes, norm)


def irfftn(a, s=None, axes=None, norm=None):
    return _nd("irfftn", "irfft", a, s, axes, norm)


def fft2(a, s=None, axes=(-2, -1), norm=None):
    return _nd("fft2", "fft", a, s, axes, norm)


def ifft2(a, s=None, axes=(-2, -1), norm=None):
    return _nd("ifft2", "ifft", a, s, axes, norm)


def rfft2(a, s=None, axes=(-2, -1), norm=None):
    return _nd("rfft2", "rfft", a, s, axes, norm)


def irfft2(a, s=None, axes=(-2, -1), norm=None):
    return _nd("irfft2", "irfft", a, s, axes, norm)


# ---- frequencies and shifts: constants and rolls -------------------------------------------------

def _frequencies(values: np.ndarray, d, dtype):
    dt = lnp.float32 if dtype is None else dtype
    return lnp.asarray((values / (np.asarray(d, np.float64))).astype(dt))


def fftfreq(n, d=1.0, *, dtype=None):
    """The sample frequencies of an n-point fft: [0, 1, ..., -1] / (d n) (a constant)."""
    n = operator.index(n)
    return _frequencies(np.fft.fftfreq(n, 1.0), d, dtype)


def rfftfreq(n, d=1.0, *, dtype=None):
    """The sample frequencies of an n-point rfft: [0, 1, ..., n//2] / (d n) (a constant)."""
    n = operator.index(n)
    return _frequencies(np.fft.rfftfreq(n, 1.0), d, dtype)


def _shift(x, axes, sign: int):
    x = lnp.asarray(x)
    axes = prim.normalize_axes(axes, x.ndim)
    shifts = [sign * (x.shape[ax] // 2) for ax in axes]
    return lnp.roll(x, shifts, axes) if axes else x


def fftshift(x, axes=None):
    """The zero frequency moved to the centre (a roll by n // 2 on each axis)."""
    return _shift(x, axes, 1)


def ifftshift(x, axes=None):
    """fftshift's inverse (a roll by -(n // 2))."""
    return _shift(x, axes, -1)
