"""jax.lax's bit-level functions on the core integer ops (bitcast, shifts, and/or, add).

The core shift_right is C's: arithmetic on signed types, logical on unsigned ones (a count
outside [0, bits) gives 0, or -1 for a negative value shifted right, as XLA). The other
kind of shift reinterprets the bits as the other signedness first. Bitcasts between widths
split a value into little-endian parts (or join parts) with shifts and masks on unsigned
integers, as a little-endian host's JAX does.
"""
from __future__ import annotations

import numpy as np

from ..ir.dtypes import from_numpy
from ..ops import dtypes as _dtypes
from ..ops import prim
from ..ops.core import bind
from . import numpy as lnp


def _bitcast(x, dt):
    dt = np.dtype(dt)
    return x if x.dtype == dt else bind("bitcast", x, to=from_numpy(dt).name)


def _uint(itemsize: int) -> np.dtype:
    return np.dtype(f"u{itemsize}")


def _int(itemsize: int) -> np.dtype:
    return np.dtype(f"i{itemsize}")


def bitcast_convert_type(operand, new_dtype):
    """jax.lax.bitcast_convert_type: the same bits as another dtype. To a narrower type the
    result gains a last axis of width ratio (little-endian parts); from a narrower one the
    operand's last axis must be that ratio, and it goes."""
    x = lnp.asarray(operand)
    to = _dtypes.canonicalize(new_dtype)
    if x.dtype == np.bool_ or to == np.bool_:
        raise TypeError(f"bitcast_convert_type does not convert bool ({x.dtype} to {to})")
    a, b = x.dtype.itemsize, to.itemsize
    if a == b:
        return _bitcast(x, to)
    if a > b:
        u = _bitcast(x, _uint(a))
        mask = np.asarray((1 << 8 * b) - 1, _uint(a))
        parts = [prim.astype(lnp.bitwise_and(lnp.right_shift(u, np.asarray(8 * b * i, _uint(a))),
                                             mask), _uint(b)) for i in range(a // b)]
        return _bitcast(lnp.stack(parts, -1), to)
    r = b // a
    if x.ndim == 0 or x.shape[-1] != r:
        raise TypeError(f"bitcast_convert_type from {x.dtype} to {to} needs a last axis of "
                        f"size {r}, got shape {x.shape}")
    u = prim.astype(_bitcast(x, _uint(a)), _uint(b))
    out = None
    for i in range(r):
        part = lnp.left_shift(prim.index_in_dim(u, i, -1), np.asarray(8 * a * i, _uint(b)))
        out = part if out is None else lnp.bitwise_or(out, part)
    return _bitcast(out, to)


def _shift_as(x, y, dt):
    """The core shift_right of x and y reinterpreted as dtype dt, bits back as x's dtype."""
    return _bitcast(bind("shift_right", _bitcast(x, dt), _bitcast(y, dt)), x.dtype)


def shift_right_logical(x, y):
    """x >> y filling with zeros (counts outside [0, bits) give 0)."""
    return _shift_as(x, y, _uint(x.dtype.itemsize))


def shift_right_arithmetic(x, y):
    """x >> y filling with the sign bit (unsigned values are read as signed, as XLA)."""
    return _shift_as(x, y, _int(x.dtype.itemsize))


def population_count(x):
    """The number of set bits of each element, in its dtype: pairwise sums of bit fields
    of widths 1, 2, 4, ... (no multiply)."""
    x = lnp.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"population_count needs integers, got {x.dtype}")
    ut, bits = _uint(x.dtype.itemsize), 8 * x.dtype.itemsize
    c, width = _bitcast(x, ut), 1
    while width < bits:
        mask = sum(((1 << width) - 1) << i for i in range(0, bits, 2 * width))
        m, w = np.asarray(mask, ut), np.asarray(width, ut)
        c = prim.add(lnp.bitwise_and(c, m), lnp.bitwise_and(lnp.right_shift(c, w), m))
        width *= 2
    return _bitcast(c, x.dtype)
