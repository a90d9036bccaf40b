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
    return isinstance(x, (ArrayBase, np.ndarray, np.generic, bool, int, float, list, tuple))


def _binop(name, reflected=False):
    def method(self, other):
        if not _is_arraylike(other):
            return NotImplemented
        fn = getattr(lnp, name)
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = name
    return method


def _reduction(name):
    def method(self, axis=None, **kw):
        return getattr(lnp, name)(self, axis=axis, **kw)
    method.__name__ = name
    return method


class ArrayMethods:
    """The methods install_array_methods copies (its functions and properties)."""

    T = property(lambda self: lnp.transpose(self))
    mT = property(lambda self: lnp.swapaxes(self, -1, -2))

    __add__, __radd__ = _binop("add"), _binop("add", True)
    __sub__, __rsub__ = _binop("subtract"), _binop("subtract", True)
    __mul__, __rmul__ = _binop("multiply"), _binop("multiply", True)
    __truediv__, __rtruediv__ = _binop("true_divide"), _binop("true_divide", True)
    __floordiv__, __rfloordiv__ = _binop("floor_divide"), _binop("floor_divide", True)
    __mod__, __rmod__ = _binop("remainder"), _binop("remainder", True)
    __pow__, __rpow__ = _binop("power"), _binop("power", True)
    __matmul__, __rmatmul__ = _binop("matmul"), _binop("matmul", True)
    __and__, __rand__ = _binop("bitwise_and"), _binop("bitwise_and", True)
    __or__, __ror__ = _binop("bitwise_or"), _binop("bitwise_or", True)
    __xor__, __rxor__ = _binop("bitwise_xor"), _binop("bitwise_xor", True)
    __lshift__, __rlshift__ = _binop("left_shift"), _binop("left_shift", True)
    __rshift__, __rrshift__ = _binop("right_shift"), _binop("right_shift", True)
    __lt__, __le__ = _binop("less"), _binop("less_equal")
    __gt__, __ge__ = _binop("greater"), _binop("greater_equal")
    __eq__, __ne__ = _binop("equal"), _binop("not_equal")

    def __neg__(self):
        return lnp.negative(self)

    def __abs__(self):
        return lnp.abs(self)

    def __invert__(self):
        return lnp.invert(self)

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

    def astype(self, dtype):
        return lnp.astype(self, dtype)

    def ravel(self):
        return lnp.ravel(self)

    flatten = ravel

    def squeeze(self, axis=None):
        return lnp.squeeze(self, axis)

    def swapaxes(self, a, b):
        return lnp.swapaxes(self, a, b)

    def clip(self, min=None, max=None):
        return lnp.clip(self, min, max)

    def round(self, decimals=0):
        return lnp.round(self, decimals)

    def dot(self, other):
        return lnp.dot(self, other)

    sum, prod, mean, max, min = (_reduction(n) for n in ("sum", "prod", "mean", "max", "min"))
    all, any, argmax, argmin = (_reduction(n) for n in ("all", "any", "argmax", "argmin"))
    std, var, cumsum, cumprod = (_reduction(n) for n in ("std", "var", "cumsum", "cumprod"))


def install_array_methods(cls: type = ArrayBase) -> None:
    """Give cls (and so Array and every Tracer) the methods above."""
    for name, member in vars(ArrayMethods).items():
        if isinstance(member, (FunctionType, property)):
            setattr(cls, name, member)
