"""Dtypes of the tracing API: jax.numpy's 32-bit defaults and its type promotion.

Python scalars are "weak": `x * 2.0` keeps x's float16, `i32 + 1` stays int32, while
`i32 * 2.0` gives float32. Promotion is the least upper bound in JAX's lattice, where the
weak kinds `int`/`float` sit between bool and the concrete types. The defaults and the x64
switch (`enable_x64(True)` keeps 64-bit types) live in lgc/ops/dtypes.py, below the tracing
core, and are re-exported here.
"""
from __future__ import annotations

import functools

import numpy as np

from ..ops.dtypes import (canonicalize, default_complex, default_float,  # noqa: F401
                          default_int, enable_x64, is_float, is_int, scalar_dtype, x64)


# ---- the promotion lattice (jax._src.dtypes, 'standard' mode) ---------------------------------

_b, _i, _f, _c = "bool", "int", "float", "complex"   # bool and the three weak kinds
_u8, _u16, _u32, _u64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
_i8, _i16, _i32, _i64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
_f16, _f32, _f64 = (np.dtype(t) for t in (np.float16, np.float32, np.float64))
_c64, _c128 = np.dtype(np.complex64), np.dtype(np.complex128)
_UP = {_b: [_i], _i: [_u8, _i8], _u8: [_i16, _u16], _u16: [_i32, _u32], _u32: [_i64, _u64],
       _u64: [_f], _i8: [_i16], _i16: [_i32], _i32: [_i64], _i64: [_f], _f: [_f16, _c],
       _f16: [_f32], _f32: [_f64, _c64], _f64: [_c128], _c: [_c64], _c64: [_c128], _c128: []}


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
        return _i if dtype.kind in "iu" else _c if dtype.kind == "c" else _f
    return dtype


def promote(*pairs) -> tuple[np.dtype, bool]:
    """Result (dtype, weak) of (dtype, weak) operands: the lattice's least upper bound."""
    return _promote(tuple((np.dtype(d), bool(w)) for d, w in pairs), x64())


@functools.lru_cache(maxsize=4096)
def _promote(pairs, x64) -> tuple[np.dtype, bool]:
    nodes = {_node(d, w) for d, w in pairs}
    common = set.intersection(*(_ABOVE[n] for n in nodes))
    lub = next(n for n in common if all(m in _ABOVE[n] for m in common))
    # `is`, not ==: NumPy finds np.dtype("float64") == "float" (and int64 == "int") true
    if lub is _b:
        return np.dtype(np.bool_), False
    if lub is _i:
        return default_int(), True
    if lub is _f:
        return default_float(), True
    if lub is _c:
        return default_complex(), True
    return canonicalize(lub), False
