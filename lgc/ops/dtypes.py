"""Dtypes of traced values: JAX's 32-bit defaults and the x64 switch.

64-bit types appear only with `enable_x64(True)`; otherwise int64/float64 NumPy inputs
become int32/float32 as in JAX. Python scalars are "weak" (they take the other operand's
type); how weak and strong types combine (promotion) is lgc.numpy's business, in
lgc/trace/dtypes.py. These live below the tracing core because abstract values need them.
"""
from __future__ import annotations

import numpy as np

_X64 = [False]


def enable_x64(on: bool = True) -> None:
    """Keep 64-bit dtypes (as JAX's jax_enable_x64); off by default."""
    _X64[0] = bool(on)


def x64() -> bool:
    return _X64[0]


_NARROW = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.uint64): np.dtype(np.uint32),
           np.dtype(np.float64): np.dtype(np.float32),
           np.dtype(np.complex128): np.dtype(np.complex64)}


def canonicalize(dt) -> np.dtype:
    """The dtype lgc uses for `dt`: 64-bit types narrowed unless x64 is on. complex128 has no
    device type (complex64 is float2; there is no double2 arithmetic yet), so x64 refuses it."""
    dt = np.dtype(dt)
    if dt.kind == "c" and (_X64[0] and dt != np.complex64 or dt.itemsize > 16):
        raise TypeError(f"dtype {dt} is not supported by lgc (its one complex dtype is complex64)")
    return dt if _X64[0] else _NARROW.get(dt, dt)


def default_int() -> np.dtype:
    return np.dtype(np.int64 if _X64[0] else np.int32)


def default_float() -> np.dtype:
    return np.dtype(np.float64 if _X64[0] else np.float32)


def default_complex() -> np.dtype:
    return np.dtype(np.complex64)


def scalar_dtype(x) -> tuple[np.dtype, bool] | None:
    """(dtype, weak) of a Python scalar, or None when x is not one (NumPy scalars are not)."""
    if isinstance(x, np.generic):
        return None
    if isinstance(x, bool):
        return np.dtype(np.bool_), False
    if isinstance(x, int):
        return default_int(), True
    if isinstance(x, float):
        return default_float(), True
    if isinstance(x, complex):
        return default_complex(), True
    return None


def is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def is_inexact(dt) -> bool:
    """Float or complex: the dtypes that carry gradients."""
    return np.dtype(dt).kind in "fc"


def is_int(dt) -> bool:
    return np.dtype(dt).kind in "iu"
