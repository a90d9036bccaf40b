"""jax.Array's operators and NumPy-style methods, installed on lgc.ops.core.ArrayBase.

They are written with lgc.numpy, which sits above the tracing core, so the core cannot
define them itself; lgc.trace installs them when it is imported, as jax.numpy does for
JAX's arrays (jax/_src/numpy/array_methods.py). Device Arrays and every kind of tracer
share them: `x + 1` inside jit, grad or vmap runs the same lgc.numpy code as eagerly.
"""
from __future__ import annotations

from types import FunctionType

import numpy as np

from ..ops.core import ArrayBase
from . import numpy as lnp


def _is_arraylike(x) -> bool:
    return isinstance(x, (ArrayBase, np.ndarray, np.generic, bool, int, float, complex, list, tuple))


def _binop(name, reflected=False):
    def method(self, other):
        if not _is_arraylike(other):
            return NotImplemented
        fn = getattr(lnp, name)
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = name
    return method


def _method(name):
    """x.name(*args, **kw) as lnp.name(x, *args, **kw)."""
    def method(self, *args, **kw):
        return getattr(lnp, name)(self, *args, **kw)
    method.__name__ = name
    return method


# Python's operators: __op__ and __rop__ (the reflected one) for each
_OPERATORS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
              "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
              "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor",
              "lshift": "left_shift", "rshift": "right_shift"}
_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                "eq": "equal", "ne": "not_equal"}


class ArrayMethods:
    """The methods install_array_methods copies (its functions and properties), besides the
    operators in _OPERATORS and _COMPARISONS."""

    T = property(lambda self: lnp.transpose(self))
    mT = property(lambda self: lnp.swapaxes(self, -1, -2))

    __neg__, __abs__, __invert__ = _method("negative"), _method("abs"), _method("invert")

    def __getitem__(self, idx):
        from .indexing import getitem   # loaded on first indexing: `import lgc` does not need it
        return getitem(self, idx)

    @property
    def at(self):
        from .indexing import IndexUpdateHelper   # as in __getitem__
        return IndexUpdateHelper(self)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return lnp.reshape(self, shape, order=order)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else (axes or None)
        return lnp.transpose(self, axes)

    astype, ravel, flatten, squeeze = (_method(n) for n in ("astype", "ravel", "ravel", "squeeze"))
    swapaxes, clip, round, dot = (_method(n) for n in ("swapaxes", "clip", "round", "dot"))
    sum, prod, mean, max, min = (_method(n) for n in ("sum", "prod", "mean", "max", "min"))
    all, any, argmax, argmin = (_method(n) for n in ("all", "any", "argmax", "argmin"))
    std, var, cumsum, cumprod = (_method(n) for n in ("std", "var", "cumsum", "cumprod"))
    conj = conjugate = _method("conjugate")
    real = property(lambda self: lnp.real(self))
    imag = property(lambda self: lnp.imag(self))


def install_array_methods(cls: type = ArrayBase) -> None:
    """Give cls (and so Array and every Tracer) the methods above."""
    for name, member in vars(ArrayMethods).items():
        if isinstance(member, (FunctionType, property)):
            setattr(cls, name, member)
    for op, fn in _OPERATORS.items():
        setattr(cls, f"__{op}__", _binop(fn))
        setattr(cls, f"__r{op}__", _binop(fn, True))
    for op, fn in _COMPARISONS.items():
        setattr(cls, f"__{op}__", _binop(fn))
