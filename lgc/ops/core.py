"""The tracing core, after JAX's Autodidax: abstract values, traces, tracers and `bind`.

Every traced computation ends in `bind(op, *args, **attrs)` with an op of the one registry
(lgc.ir.registry). `bind` finds the innermost active trace among its arguments (or the
dynamic trace, so that constants made inside `jit` are staged too) and lets it process the op:
the eval trace runs it on the device at once (eager mode), the graph trace of `jit` adds a
node with GraphBuilder.op, and grad and vmap are further Trace classes that read per-op rule
tables from OpDef.jvp / OpDef.vjp / OpDef.batch.

This is the lowest layer of tracing, below the op rules (which bind through it, via
lgc.ops.prim) and below the front end in lgc/trace that sits on it. What needs the layers
above is set from there, as JAX does: the eval trace class (`register_eval_trace`, by
lgc.trace), reverse-mode differentiation for the gradient rules that differentiate a
composition of ops (`register_vjp`, by lgc.trace.autodiff) and the NumPy-style array
methods on ArrayBase (lgc/trace/array_methods.py).
"""
from __future__ import annotations

import threading
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


class _ThreadStack(threading.local):
    """A list that each thread sees on its own (JAX keeps its trace state per thread too):
    a trace running in one thread never takes another thread's ops. `items` is this
    thread's list (the hot paths read it directly); the list methods serve other modules."""

    def __init__(self):
        self.items: list = []

    def append(self, x) -> None:
        self.items.append(x)

    def pop(self):
        return self.items.pop()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


_stack = _ThreadStack()          # MainTrace levels of this thread; level 0 is the eval trace
dynamic_mains = _ThreadStack()   # this thread's staging traces (jit, make_ir), innermost last
_eval_trace: list[type] = []   # the level-0 trace class, registered by the layer above


def register_eval_trace(trace_type: type) -> None:
    """Set the trace that runs ops on concrete values (lgc.trace's EvalTrace: the device)."""
    _eval_trace[:] = [trace_type]


_vjp: list = []          # reverse-mode differentiation, registered by the layer above


def register_vjp(vjp) -> None:
    """Set reverse-mode differentiation (lgc.trace.autodiff's vjp) for `vjp` below."""
    _vjp[:] = [vjp]


def vjp(fun, *primals):
    """(fun(*primals), pullback) as jax.vjp. For the gradient rules of ops whose gradient is
    that of a composition of other ops (grid_sample, roi_align): the reverse pass is the
    tracing layer's, which calls those rules, so it is registered before they can run."""
    if not _vjp:
        raise RuntimeError("no reverse-mode differentiation is registered; import "
                           "lgc.trace.autodiff (or lgc), which registers it")
    return _vjp[0](fun, *primals)


def _eval_main() -> MainTrace:
    if not _eval_trace:
        raise RuntimeError("no eval trace is registered to run ops on concrete values; "
                           "import lgc.trace (or lgc), which registers the device's")
    stack = _stack.items
    if not stack:
        stack.append(MainTrace(0, _eval_trace[0]))
    return stack[0]


@contextmanager
def new_main(trace_type: type, global_data=None, dynamic: bool = False):
    """Push a trace level; `dynamic` makes it take ops on constants too (omnistaging)."""
    _eval_main()
    stack, staging = _stack.items, dynamic_mains.items
    main = MainTrace(len(stack), trace_type, global_data)
    stack.append(main)
    if dynamic:
        staging.append(main)
    try:
        yield main
    finally:
        if dynamic:
            staging.pop()
        stack.pop()


def _alive(main: MainTrace) -> bool:
    stack = _stack.items
    return main.level < len(stack) and stack[main.level] is main


def find_top_trace(args) -> Trace:
    staging = dynamic_mains.items
    top = staging[-1] if staging else _eval_main()
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

class ArrayBase:
    """What jax.Array and its tracers have in common that needs no op: the abstract value's
    attributes, length and iteration. The operators and NumPy-style methods (`x + y`, `x.T`,
    `x.sum()`, `x[i]`, `x.at[i]`) are installed by lgc.trace (install_array_methods), as
    jax.numpy installs them on JAX's arrays, since they are written with lgc.numpy."""
    __array_priority__ = 100
    __hash__ = None
    aval: ShapedArray

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: self.aval.ndim)
    size = property(lambda self: self.aval.size)
    weak_type = property(lambda self: self.aval.weak_type)
    itemsize = property(lambda self: self.aval.dtype.itemsize)
    nbytes = property(lambda self: self.aval.size * self.aval.dtype.itemsize)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __pos__(self):
        return self

    def __setitem__(self, idx, value):
        raise TypeError("lgc arrays are immutable and do not support item assignment; use "
                        "x = x.at[idx].set(value) (or .add, .multiply, .min, .max)")

    def item(self):
        if self.size != 1:
            raise ValueError("only arrays with one element can be converted to a Python scalar")
        return np.asarray(self).reshape(()).item()

    def tolist(self):
        return np.asarray(self).tolist()

    def copy(self):
        return self   # immutable: a copy is the same value


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


class ValueTracer(Tracer):
    """A tracer standing for an IR Value of a graph being built (StagingTrace)."""

    def __init__(self, trace: Trace, value, weak: bool = False):
        self._trace = trace
        self.value = value
        self.aval = aval_of_type(value.type, weak)


class StagingTrace(Trace):
    """Stages every op into main.global_data, anything with GraphBuilder's `op` and `const`:
    lgc.jit's graph builder (lgc.trace.jit.GraphTrace) or an ATen converter's context (the
    gradient rules of lgc.frontend.torch.rules). Ops are type-checked first, so a rule or a
    traced function gets the same errors as in eager mode."""

    def pure(self, x):
        aval = get_aval(x)
        return ValueTracer(self, self.main.global_data.const(to_numpy_const(x, aval.dtype)),
                           aval.weak_type)

    lift = pure

    def process_op(self, op, tracers, attrs, weak):
        infer_avals(op, [t.aval for t in tracers], attrs, weak)
        outs = self.main.global_data.op(op, [t.value for t in tracers], attrs, num_outputs=-1)
        return [ValueTracer(self, v, weak) for v in outs]
