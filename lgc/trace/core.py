"""The tracing core, after JAX's Autodidax: abstract values, traces, tracers and `bind`.

Every lnp function ends in `bind(op, *args, **attrs)` with an op of the one registry
(lgc.ir.registry). `bind` finds the innermost active trace among its arguments (or the
dynamic trace, so that constants made inside `jit` are staged too) and lets it process the op:
the eval trace runs it on the device at once (eager mode), the graph trace of `jit` adds a
node with GraphBuilder.op. Transformations to come (grad, vmap) are further Trace classes
that read per-op rule tables from OpDef.vjp / OpDef.batch; nothing here needs to change.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import dtypes as ir_dtypes, registry
from ..ir.graph import TensorType
from . import dtypes


@dataclass(frozen=True)
class ShapedArray:
    """Abstract value: what tracing knows about an array (shape, dtype, weak typing)."""
    shape: tuple[int, ...]
    dtype: np.dtype
    weak_type: bool = False

    def __hash__(self) -> int:   # computed once: avals key every jit cache lookup
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.shape, self.dtype, self.weak_type))
            object.__setattr__(self, "_hash", h)
        return h

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def tensor_type(self) -> TensorType:
        return TensorType(ir_dtypes.from_numpy(self.dtype), self.shape)

    def str_short(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"


def aval_of_type(t: TensorType, weak: bool = False) -> ShapedArray:
    return ShapedArray(tuple(t.shape), t.dtype.np, weak)


class ConcretizationError(TypeError):
    """A traced value was used where Python needs a concrete one (if, while, int(), ...)."""


class UnexpectedTracerError(RuntimeError):
    """A tracer escaped the function being traced (stored globally, returned by side door)."""


# ---- traces --------------------------------------------------------------------------------

class MainTrace:
    def __init__(self, level: int, trace_type: type, global_data: Any = None):
        self.level, self.trace_type, self.global_data = level, trace_type, global_data


class Trace:
    """How one kind of interpretation handles values and ops."""

    def __init__(self, main: MainTrace):
        self.main = main

    def pure(self, x):        # a concrete value (Array, NumPy, scalar) enters this trace
        raise NotImplementedError

    lift = pure               # a tracer of an outer trace enters this one

    def process_op(self, op: str, tracers: list, attrs: dict, weak: bool) -> list:
        raise NotImplementedError


_stack: list[MainTrace] = []
_dynamic: list[MainTrace] = []


def _eval_main() -> MainTrace:
    if not _stack:
        from .eager import EvalTrace
        _stack.append(MainTrace(0, EvalTrace))
    return _stack[0]


@contextmanager
def new_main(trace_type: type, global_data=None, dynamic: bool = False):
    """Push a trace level; `dynamic` makes it take ops on constants too (omnistaging)."""
    _eval_main()
    main = MainTrace(len(_stack), trace_type, global_data)
    _stack.append(main)
    if dynamic:
        _dynamic.append(main)
    try:
        yield main
    finally:
        if dynamic:
            _dynamic.pop()
        _stack.pop()


def _alive(main: MainTrace) -> bool:
    return main.level < len(_stack) and _stack[main.level] is main


def find_top_trace(args) -> Trace:
    top = _dynamic[-1] if _dynamic else _eval_main()
    for a in args:
        if isinstance(a, Tracer):
            m = a._trace.main
            if not _alive(m):
                raise UnexpectedTracerError(
                    f"a traced value ({a.aval.str_short()}) from a finished lgc.jit trace was "
                    "used outside it: it leaked (e.g. stored in a global or a closure); return "
                    "it from the function instead")
            if m.level > top.level:
                top = m
    return top.trace_type(top)


def full_raise(trace: Trace, x):
    if isinstance(x, Tracer):
        m = x._trace.main
        if m is trace.main:
            return x
        if m.level < trace.main.level:
            return trace.lift(x)
        raise UnexpectedTracerError("a tracer from an inner transformation leaked out")
    return trace.pure(x)


def bind(op: str, *args, weak: bool = False, num_outputs: int | None = None, **attrs):
    """Apply core op `op` to arrays/tracers: the one door from lnp to the registry.

    Returns one array, or a tuple when the op has several outputs (or num_outputs=-1).
    `weak` marks the result weakly typed (a computation on Python scalars only)."""
    outs = bind_list(op, args, attrs, weak)
    return outs[0] if len(outs) == 1 and num_outputs is None else tuple(outs)


def bind_list(op: str, args, attrs: dict, weak: bool = False) -> list:
    """bind with the attributes as a dict (any names) and the outputs as a list."""
    trace = find_top_trace(args)
    tracers = [full_raise(trace, a) for a in args]
    return trace.process_op(op, tracers, dict(attrs), weak)


def infer_avals(op: str, avals: list[ShapedArray], attrs: dict, weak: bool):
    """The op's type rule on abstract values (its "abstract eval"); attrs normalized."""
    opdef = registry.get(op)
    try:
        opdef.check_arity(len(avals))
        attrs = opdef.normalize_attrs(attrs)
        types = opdef.infer([a.tensor_type() for a in avals], attrs)
    except registry.OpError as e:
        raise TypeError(f"{op}: {e}") from None
    return [aval_of_type(t, weak) for t in types], attrs


# ---- the array interface shared by Array and Tracer -----------------------------------------

def _lnp():
    import lgc.numpy as lnp
    return lnp


def _binop(name, reflected=False):
    def method(self, other):
        if not _is_arraylike(other):
            return NotImplemented
        fn = getattr(_lnp(), name)
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = name
    return method


def _is_arraylike(x) -> bool:
    return isinstance(x, (ArrayBase, np.ndarray, np.generic, bool, int, float, list, tuple))


class ArrayBase:
    """Operators and methods of jax.Array, for concrete Arrays and tracers alike; each
    delegates to lgc.numpy so both paths share one definition."""
    __array_priority__ = 100
    aval: ShapedArray

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: self.aval.ndim)
    size = property(lambda self: self.aval.size)
    weak_type = property(lambda self: self.aval.weak_type)
    T = property(lambda self: _lnp().transpose(self))
    mT = property(lambda self: _lnp().swapaxes(self, -1, -2))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

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
    __hash__ = None

    def __neg__(self):
        return _lnp().negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _lnp().abs(self)

    def __invert__(self):
        return _lnp().invert(self)

    def __getitem__(self, idx):
        from .indexing import getitem
        return getitem(self, idx)

    def __setitem__(self, idx, value):
        raise TypeError("lgc arrays are immutable and do not support item assignment; use "
                        "x = x.at[idx].set(value) (or .add, .multiply, .min, .max)")

    @property
    def at(self):
        from .indexing import IndexUpdateHelper
        return IndexUpdateHelper(self)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return _lnp().reshape(self, shape, order=order)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else (axes or None)
        return _lnp().transpose(self, axes)

    def astype(self, dtype):
        return _lnp().astype(self, dtype)

    def ravel(self):
        return _lnp().ravel(self)

    flatten = ravel

    def squeeze(self, axis=None):
        return _lnp().squeeze(self, axis)

    def swapaxes(self, a, b):
        return _lnp().swapaxes(self, a, b)

    def clip(self, min=None, max=None):
        return _lnp().clip(self, min, max)

    def round(self, decimals=0):
        return _lnp().round(self, decimals)

    def dot(self, other):
        return _lnp().dot(self, other)

    def item(self):
        if self.size != 1:
            raise ValueError("only arrays with one element can be converted to a Python scalar")
        return np.asarray(self).reshape(()).item()

    def tolist(self):
        return np.asarray(self).tolist()

    def copy(self):
        return self   # immutable: a copy is the same value

    itemsize = property(lambda self: self.aval.dtype.itemsize)
    nbytes = property(lambda self: self.aval.size * self.aval.dtype.itemsize)


def _reduction_method(name):
    def method(self, axis=None, **kw):
        return getattr(_lnp(), name)(self, axis=axis, **kw)
    method.__name__ = name
    return method


for _n in ("sum", "prod", "mean", "max", "min", "all", "any", "argmax", "argmin", "std", "var",
           "cumsum", "cumprod"):
    setattr(ArrayBase, _n, _reduction_method(_n))


class Tracer(ArrayBase):
    """A value of a trace: has an abstract value but (in general) no data."""
    _trace: Trace

    def _concrete_error(self, what: str):
        raise ConcretizationError(
            f"{what} needs a concrete value, but this is a traced array {self.aval.str_short()} "
            f"inside lgc.jit. Python control flow (if/while/and/or, bool(), int(), float()) "
            f"cannot depend on traced values: the function is traced once for all inputs of this "
            f"shape. Use lgc.numpy.where, lgc.lax.cond/switch, or lgc.lax.fori_loop/scan with "
            f"static trip counts instead, or mark the argument static with "
            f"jit(f, static_argnums=...).")

    def __bool__(self):
        self._concrete_error("bool() (an `if`, `while`, `and`, `or` or `not` on an array)")

    def __int__(self):
        self._concrete_error("int()")

    def __float__(self):
        self._concrete_error("float()")

    def __index__(self):
        self._concrete_error("use as an index or size (__index__)")

    def __array__(self, *a, **k):
        self._concrete_error("converting to a NumPy array")

    def item(self):
        self._concrete_error(".item()")

    def __repr__(self):
        return f"Traced<{self.aval.str_short()}>"


def get_aval(x) -> ShapedArray:
    """Abstract value of any array-like: tracer, Array, NumPy array or Python scalar."""
    if isinstance(x, ArrayBase):
        return x.aval
    s = dtypes.scalar_dtype(x)
    if s is not None:
        return ShapedArray((), s[0], s[1])
    a = np.asarray(x)
    return ShapedArray(tuple(a.shape), dtypes.canonicalize(a.dtype), False)


def to_numpy_const(x, dtype=None) -> np.ndarray:
    """A concrete host value as a NumPy array of the lgc dtype (constants and eager inputs)."""
    aval = get_aval(x)
    return np.asarray(x, dtype=np.dtype(dtype) if dtype is not None else aval.dtype)
