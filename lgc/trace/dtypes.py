"""Dtypes of the tracing API: jax.numpy's 32-bit defaults and its type promotion.

Python scalars are "weak": `x * 2.0` keeps x's float16, `i32 + 1` stays int32, while
`i32 * 2.0` gives float32. Promotion is the least upper bound in JAX's lattice, where the
weak kinds `int`/`float` sit between bool and the concrete types. 64-bit types appear only
with `enable_x64(True)`; otherwise int64/float64 NumPy inputs become int32/float32 as in JAX.
"""
from __future__ import annotations

import functools

import numpy as np

_X64 = [False]


def enable_x64(on: bool = True) -> None:
    """Keep 64-bit dtypes (as JAX's jax_enable_x64); off by default."""
    _X64[0] = bool(on)


def x64() -> bool:
    return _X64[0]


_NARROW = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.uint64): np.dtype(np.uint32),
           np.dtype(np.float64): np.dtype(np.float32)}


def canonicalize(dt) -> np.dtype:
    """The dtype lgc uses for `dt`: 64-bit types narrowed unless x64 is on."""
    dt = np.dtype(dt)
    if dt.kind == "c":
        raise TypeError("complex dtypes are not supported by lgc")
    return dt if _X64[0] else _NARROW.get(dt, dt)


def default_int() -> np.dtype:
    return np.dtype(np.int64 if _X64[0] else np.int32)


def default_float() -> np.dtype:
    return np.dtype(np.float64 if _X64[0] else np.float32)


# ---- the promotion lattice (jax._src.dtypes, 'standard' mode) ---------------------------------

_b, _i, _f = "bool", "int", "float"   # bool and the two weak kinds
_u8, _u16, _u32, _u64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
_i8, _i16, _i32, _i64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
_f16, _f32, _f64 = (np.dtype(t) for t in (np.float16, np.float32, np.float64))
_UP = {_b: [_i], _i: [_u8, _i8], _u8: [_i16, _u16], _u16: [_i32, _u32], _u32: [_i64, _u64],
       _u64: [_f], _i8: [_i16], _i16: [_i32], _i32: [_i64], _i64: [_f], _f: [_f16],
       _f16: [_f32], _f32: [_f64], _f64: []}


def _closure():
    up = {}
    for t in _UP:
        seen, todo = {t}, [t]
        while todo:
            for n in _UP[todo.pop()]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        up[t] = seen
    return up


_ABOVE = _closure()


def _node(dtype: np.dtype, weak: bool):
    if dtype == np.bool_:
        return _b
    if weak:
        return _i if dtype.kind in "iu" else _f
    return dtype


def promote(*pairs) -> tuple[np.dtype, bool]:
    """Result (dtype, weak) of (dtype, weak) operands: the lattice's least upper bound."""
    return _promote(tuple((np.dtype(d), bool(w)) for d, w in pairs), _X64[0])


@functools.lru_cache(maxsize=4096)
def _promote(pairs, x64) -> tuple[np.dtype, bool]:
    nodes = {_node(d, w) for d, w in pairs}
    common = set.intersection(*(_ABOVE[n] for n in nodes))
    lub = next(n for n in common if all(m in _ABOVE[n] for m in common))
    if lub == _b:
        return np.dtype(np.bool_), False
    if lub == _i:
        return default_int(), True
    if lub == _f:
        return default_float(), True
    return canonicalize(lub), False


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
        raise TypeError("complex numbers are not supported by lgc")
    return None


def is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def is_int(dt) -> bool:
    return np.dtype(dt).kind in "iu"
