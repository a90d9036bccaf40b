"""Array functions one step above the core ops, for writing op rules (jax.lax's role).

The vjp, jvp and batching rules of lgc/ops/*.py run on traced values, so they need array
functions; lgc.numpy is the user-facing front end above the tracing core and must not be
imported from below it. lgc.numpy is built on these, as jax.numpy is on lax: it does NumPy's
part (type promotion, conversion to float, NumPy's argument names) and calls the function
here where there is one. These functions bind the registry's ops directly through
lgc.ops.core.bind, with explicit semantics:

- No type promotion: the array operands of one op share a dtype (else the op's type rule
  refuses them); `astype` converts. Reductions accumulate in the operand's dtype.
- A Python scalar operand becomes a constant of the array operands' dtype, weakly typed as in
  JAX (`mul(x, 2.0)` keeps x's float16). A float scalar with an integer operand, or an int
  with a boolean one, is refused rather than rounded.
- A result is weakly typed when every operand is (Python scalars, or weak arrays).
- The conveniences that cost no op stay: negative axes, -1 in reshape, and returning the
  operand itself where an op would change nothing.

Where lgc.numpy's function of the same name converts nothing (operands of one dtype, floats
for exp and log, no arithmetic on bools, no narrow integers summed), it binds the same ops
with the same attributes (most call the function here), so a rule moved from lgc.numpy to
prim traces to the same graph.
Names are NumPy's (reshape, where, sum); the arithmetic a rule writes with
Python operators has lax's short names (add, sub, mul, div, neg, eq, ne, lt, le, gt, ge).
"""
from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from ..ir.dtypes import from_numpy
from . import dtypes
from .core import ArrayBase, bind, find_top_trace, get_aval


# ---- values and dtypes --------------------------------------------------------------------------

def asarray(x, dtype=None):
    """x as a value of the current trace (a device Array, or a const node under jit). Host
    values take lgc's dtype for them (64-bit narrowed unless x64); Python scalars are weak."""
    if isinstance(x, ArrayBase):
        return x if dtype is None else astype(x, dtype)
    aval = get_aval(x)
    if dtype is None and aval.weak_type:
        return find_top_trace(()).pure(x)
    dt = dtypes.canonicalize(dtype if dtype is not None else aval.dtype)
    return find_top_trace(()).pure(np.asarray(x, dtype=dt))


def astype(x, dtype):
    """x converted to dtype (narrowed as asarray does); to bool means x != 0."""
    x, dt = asarray(x), dtypes.canonicalize(dtype)
    if x.dtype == dt:
        return x
    if dt == np.bool_:
        return ne(x, 0)
    return bind("cast", x, to=from_numpy(dt).name)


def _is_scalar(x) -> bool:
    return dtypes.scalar_dtype(x) is not None   # Python bool, int, float or complex (not NumPy's)


_KIND_ORDER = "bifc"   # bool < int < float < complex: the type Python scalars take on their own


def _scalar_as(v, dt: np.dtype) -> np.ndarray:
    if isinstance(v, builtins.complex):
        fits = dt.kind == "c"
    else:
        fits = dt.kind in "fc" or (not isinstance(v, float) and (dt.kind != "b" or isinstance(v, bool)))
    if not fits:
        raise TypeError(f"a Python {type(v).__name__} ({v!r}) would change its value as a "
                        f"{dt} operand; convert the array with astype first")
    return np.asarray(v, dt)


def _operands(*xs):
    """xs with their Python scalars made constants of the arrays' dtype, and whether the
    result is weakly typed (every operand is)."""
    weak = all(get_aval(x).weak_type for x in xs)
    arrays = [x for x in xs if not _is_scalar(x)]
    if arrays:
        dt = get_aval(arrays[0]).dtype
    else:
        dt = builtins.max((dtypes.scalar_dtype(x)[0] for x in xs),
                          key=lambda d: _KIND_ORDER.index(d.kind))
    return [_scalar_as(x, dt) if _is_scalar(x) else x for x in xs], weak


# ---- elementwise --------------------------------------------------------------------------------

def _binary(op: str, name: str):
    def fn(x, y):
        (x, y), weak = _operands(x, y)
        return bind(op, x, y, weak=weak)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The core op {op!r} on x and y (broadcast)."
    return fn


add, sub, mul, div = (_binary(op, op) for op in ("add", "sub", "mul", "div"))
power, remainder = _binary("pow", "power"), _binary("mod", "remainder")
maximum, minimum = _binary("max", "maximum"), _binary("min", "minimum")


def _compare(op: str):
    def fn(x, y):
        (x, y), _ = _operands(x, y)
        return bind(op, x, y)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"The comparison {op!r} of x and y (broadcast), a bool array."
    return fn


eq, lt, le, gt, ge = (_compare(op) for op in ("eq", "lt", "le", "gt", "ge"))


def ne(x, y):
    return bind("not", eq(x, y))


def logical_and(x, y):
    (x, y), _ = _operands(x, y)
    return bind("and", x, y)


def where(cond, x, y):
    """x where the bool array cond holds, else y (all three broadcast)."""
    (x, y), weak = _operands(x, y)
    return bind("where", cond, x, y, weak=weak)


def clip(x, lo=None, hi=None):
    x = asarray(x)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def neg(x):
    x = asarray(x)
    if x.dtype == np.bool_:
        raise TypeError("neg of a boolean array")
    if x.dtype.kind == "u":   # the core op is for signed types: 0 - x wraps as NumPy does
        return bind("sub", np.asarray(0, x.dtype), x, weak=x.weak_type)
    return bind("neg", x, weak=x.weak_type)


def _float_unary(op: str):
    def fn(x):
        x = asarray(x)
        return bind(op, x, weak=x.weak_type)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"The core op {op!r} on a float array (integers are refused, not converted)."
    return fn


exp, log, sqrt = _float_unary("exp"), _float_unary("log"), _float_unary("sqrt")
sin, cos, sinh, cosh = (_float_unary(op) for op in ("sin", "cos", "sinh", "cosh"))


def abs(x):  # noqa: A001 (NumPy's name)
    """|x|; bool and unsigned values are their own; of a complex x, its float32 modulus."""
    x = asarray(x)
    return x if x.dtype.kind in "bu" else bind("abs", x, weak=x.weak_type)


def real(x):
    """The real part of a complex x (float32); a real x is its own."""
    x = asarray(x)
    return bind("real", x, weak=x.weak_type) if x.dtype.kind == "c" else x


def imag(x):
    """The imaginary part of a complex x (float32); a real x has zeros."""
    x = asarray(x)
    return bind("imag", x, weak=x.weak_type) if x.dtype.kind == "c" else zeros_like(x)


def conj(x):
    """The complex conjugate; a real x is its own."""
    x = asarray(x)
    return bind("conj", x, weak=x.weak_type) if x.dtype.kind == "c" else x


def complex(re, im):  # noqa: A001 (lax's name)
    """re + i im from two float32 arrays (broadcast), as lax.complex."""
    (re, im), weak = _operands(re, im)
    return bind("complex", re, im, weak=weak)


def sign(x):
    x = asarray(x)
    return x if x.dtype == np.bool_ else bind("sign", x, weak=x.weak_type)


def floor(x):
    """Rounded down; integers are their own."""
    x = asarray(x)
    return bind("floor", x, weak=x.weak_type) if x.dtype.kind == "f" else x


def floor_divide(x, y):
    """x // y rounded toward minus infinity, as NumPy (the core div truncates integers)."""
    q = div(x, y)
    if q.dtype.kind == "f":
        return floor(q)
    if q.dtype.kind == "u":
        return q
    r = sub(x, mul(q, y))   # nonzero with the sign of y's opposite: one step too far up
    return where(logical_and(ne(r, 0), ne(lt(r, 0), lt(y, 0))), sub(q, 1), q)


def round(x, decimals=0):  # noqa: A001 (NumPy's name)
    """Rounded half to even at `decimals` places; integers are their own."""
    x = asarray(x)
    if x.dtype.kind != "f":
        return x
    if decimals == 0:
        return bind("round", x, weak=x.weak_type)
    s = np.asarray(10.0 ** decimals, x.dtype)
    return bind("div", bind("round", bind("mul", x, s)), s, weak=x.weak_type)


# ---- creation -----------------------------------------------------------------------------------

def shape_tuple(shape) -> tuple[int, ...]:
    if isinstance(shape, (tuple, list)):
        return tuple(operator.index(d) for d in shape)
    return (operator.index(shape),)


def full(shape, fill_value, dtype=None):
    """fill_value (a scalar, or an array broadcast) in the given shape."""
    if isinstance(fill_value, ArrayBase):
        v = fill_value if dtype is None else astype(fill_value, dtype)
    else:
        v = asarray(fill_value, dtype=dtype)
    return broadcast_to(v, shape_tuple(shape))


def zeros(shape, dtype=None):
    return full(shape, 0, dtype or dtypes.default_float())


def ones(shape, dtype=None):
    return full(shape, 1, dtype or dtypes.default_float())


def full_like(a, fill_value, dtype=None, shape=None):
    aval = get_aval(a)
    return full(aval.shape if shape is None else shape, fill_value, dtype or aval.dtype)


def zeros_like(a, dtype=None, shape=None):
    return full_like(a, 0, dtype, shape)


def ones_like(a, dtype=None, shape=None):
    return full_like(a, 1, dtype, shape)


def arange(start, stop=None, step=None, dtype=None):
    """A constant computed with NumPy at trace time; its bounds must be Python numbers."""
    bounds = [v for v in (start, stop, step) if v is not None]
    if any(isinstance(v, ArrayBase) for v in bounds):
        raise TypeError("arange needs concrete (Python) bounds: its size must be static")
    if dtype is None:
        floats = any(isinstance(v, float) or np.asarray(v).dtype.kind == "f" for v in bounds)
        dtype = dtypes.default_float() if floats else dtypes.default_int()
    values = np.arange(start) if stop is None and step is None else np.arange(start, stop, step)
    return asarray(values.astype(dtypes.canonicalize(dtype)))


# ---- shapes -------------------------------------------------------------------------------------

def normalize_axis(axis, ndim: int) -> int:
    """axis as a non-negative axis of an ndim-dimensional array (one past the end for 0-d)."""
    axis = operator.index(axis)
    if not -ndim <= axis < builtins.max(ndim, 1):
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim if ndim else 0


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Sorted non-negative axes: all of them for None, one for an int."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(normalize_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {axis}")
        return tuple(sorted(axes))
    return (normalize_axis(axis, ndim),)


def _as_list(v) -> list:
    """v as a list: a tuple or list's items, else v alone."""
    return list(v) if isinstance(v, (tuple, list)) else [v]


def reshape(x, shape):
    """x in a new shape of the same size; one entry may be -1 (the rest of the size)."""
    x = asarray(x)
    shape = shape_tuple(shape)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or x.size % known:
            raise ValueError(f"cannot reshape array of shape {x.shape} into shape {shape}")
        shape = tuple(x.size // known if d == -1 else d for d in shape)
    if math.prod(shape) != x.size:
        raise ValueError(f"cannot reshape array of shape {x.shape} into shape {shape}")
    return x if shape == x.shape else bind("reshape", x, shape=shape, weak=x.weak_type)


def transpose(x, axes=None):
    """x with its axes permuted (reversed when axes is None)."""
    x = asarray(x)
    perm = (tuple(range(x.ndim))[::-1] if axes is None
            else tuple(normalize_axis(a, x.ndim) for a in axes))
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"axes {axes} don't match array of dimension {x.ndim}")
    return x if perm == tuple(range(x.ndim)) else bind("transpose", x, perm=perm, weak=x.weak_type)


def swapaxes(x, axis1, axis2):
    x = asarray(x)
    perm = list(range(x.ndim))
    i, j = normalize_axis(axis1, x.ndim), normalize_axis(axis2, x.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(x, perm)


def moveaxis(x, source, destination):
    """x with the axes `source` (an int or a sequence) moved to `destination`."""
    x = asarray(x)
    src = [normalize_axis(s, x.ndim) for s in _as_list(source)]
    dst = [normalize_axis(d, x.ndim) for d in _as_list(destination)]
    order = [n for n in range(x.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


def expand_dims(x, axis):
    """x with size-1 axes inserted at `axis` (an int or a sequence; in the result's axes)."""
    x = asarray(x)
    axes = _as_list(axis)
    shape = list(x.shape)
    for a in sorted(normalize_axis(a, x.ndim + len(axes)) for a in axes):
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def squeeze(x, axis=None):
    """x without its size-1 axes (all of them when axis is None, else those named)."""
    x = asarray(x)
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = normalize_axes(axis, x.ndim)
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            raise ValueError(f"cannot select an axis to squeeze out which has size not equal "
                             f"to one (axis {bad[0]} of shape {x.shape})")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def broadcast_to(x, shape):
    x, shape = asarray(x), shape_tuple(shape)
    if x.shape == shape:
        return x
    if tuple(np.broadcast_shapes(x.shape, shape)) != shape:
        raise ValueError(f"cannot broadcast array of shape {x.shape} to {shape}")
    return bind("broadcast_to", x, shape=shape, weak=x.weak_type)


def strided_slice(x, starts, steps, shape):
    """The core slice op: shape[i] elements of axis i from starts[i] in steps of steps[i]
    (x itself where that is all of x)."""
    x = asarray(x)
    starts, steps, shape = tuple(starts), tuple(steps), tuple(shape)
    if (starts, steps, shape) == ((0,) * x.ndim, (1,) * x.ndim, x.shape):
        return x
    return bind("slice", x, starts=starts, steps=steps, shape=shape, weak=x.weak_type)


def slice_in_dim(x, start, stop, step=1, axis=0):
    """x[..., start:stop:step, ...] along one axis (lax.slice_in_dim; Python's slice rules)."""
    x = asarray(x)
    axis = normalize_axis(axis, x.ndim)
    start, stop, step = builtins.slice(start, stop, step).indices(x.shape[axis])
    m = len(range(start, stop, step))
    starts, steps, shape = [0] * x.ndim, [1] * x.ndim, list(x.shape)
    starts[axis], steps[axis], shape[axis] = (start if m else 0), step, m
    return strided_slice(x, starts, steps, shape)


def index_in_dim(x, index, axis=0, keepdims=False):
    """x[..., index, ...] along one axis (lax.index_in_dim): the axis dropped unless keepdims."""
    x = asarray(x)
    axis = normalize_axis(axis, x.ndim)
    n, i = x.shape[axis], operator.index(index)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
    y = slice_in_dim(x, i % n, i % n + 1, 1, axis)
    return y if keepdims else reshape(y, x.shape[:axis] + x.shape[axis + 1:])


def flip(x, axis=None):
    """x reversed along `axis` (all axes when None): one step -1 slice per axis."""
    x = asarray(x)
    for a in normalize_axes(axis, x.ndim):
        if x.shape[a] > 1:
            x = slice_in_dim(x, None, None, -1, a)
    return x


def concatenate(xs, axis=0):
    """Arrays of one dtype joined along an existing axis."""
    xs = [asarray(x) for x in xs]
    if not xs:
        raise ValueError("need at least one array to concatenate")
    if xs[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis(axis, xs[0].ndim)
    if len(xs) == 1:
        return xs[0]
    return bind("concat", *xs, axis=axis, weak=all(x.weak_type for x in xs))


def split(x, indices_or_sections, axis=0):
    """np.split: x cut along `axis` into equal sections (an int) or at the given indices."""
    x = asarray(x)
    axis = normalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if n % k:
            raise ValueError("array split does not result in an equal division")
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0] + cuts + [n]
    return [slice_in_dim(x, lo, builtins.max(lo, hi), 1, axis)
            for lo, hi in zip(bounds, bounds[1:])]


def pad(x, pad_width, mode="constant", constant_values=0):
    """np.pad for the modes the core op has (constant, edge, reflect, wrap)."""
    x = asarray(x)
    widths = np.broadcast_to(np.asarray(pad_width, np.int64), (x.ndim, 2))
    if mode not in ("constant", "edge", "reflect", "wrap"):
        raise NotImplementedError(f"pad mode {mode!r} (supported: constant, edge, reflect, wrap)")
    pads = tuple(int(p) for p in widths[:, 0]) + tuple(int(p) for p in widths[:, 1])
    if not any(pads):
        return x
    return bind("pad", x, pads=pads, mode=mode, value=float(constant_values), weak=x.weak_type)


# ---- indexing -----------------------------------------------------------------------------------

def take(x, indices, axis=None):
    """np.take (of the flattened x when axis is None); out-of-range indices are clamped."""
    x = asarray(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    ind = asarray(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(f"take indices must be integers, got {ind.dtype}")
    return bind("gather", x, ind, axis=normalize_axis(axis, x.ndim), weak=x.weak_type)


def take_along_axis(x, indices, axis):
    """np.take_along_axis: x and indices broadcast against each other off the axis (both
    flattened when axis is None)."""
    x, ind = asarray(x), asarray(indices)
    if axis is None:
        x, ind, axis = reshape(x, (-1,)), reshape(ind, (-1,)), 0
    axis = normalize_axis(axis, x.ndim)
    if x.ndim != ind.ndim:
        raise ValueError("indices and arr must have the same number of dimensions")
    off_axis = np.broadcast_shapes(tuple(1 if i == axis else d for i, d in enumerate(x.shape)),
                                   tuple(1 if i == axis else d for i, d in enumerate(ind.shape)))
    x = broadcast_to(x, tuple(x.shape[i] if i == axis else d for i, d in enumerate(off_axis)))
    ind = broadcast_to(ind, tuple(ind.shape[i] if i == axis else d for i, d in enumerate(off_axis)))
    return bind("gather_elements", x, ind, axis=axis, weak=x.weak_type)


def segment_sum(data, segment_ids, num_segments: int):
    """out[s] = the sum of data[i] with segment_ids[i] == s (jax.ops.segment_sum); ids out of
    range are dropped. One scatter_nd adding into zeros."""
    data, ids = asarray(data), astype(segment_ids, np.int32)
    out = zeros((num_segments,) + data.shape[1:], data.dtype)
    ids = where(lt(ids, 0), num_segments, ids)   # scatter_nd would wrap negative ids
    return bind("scatter_nd", out, reshape(ids, (-1, 1)), data, reduction="add")


# ---- reductions and products --------------------------------------------------------------------

def _reduce(op: str, x, axis, keepdims: bool):
    x = asarray(x)
    axes = normalize_axes(axis, x.ndim)
    if not axes:
        return x
    return bind(op, x, axes=axes, keepdims=int(bool(keepdims)), weak=x.weak_type)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (NumPy's name)
    """Sum over `axis` (all axes when None), in x's dtype."""
    return _reduce("reduce_sum", x, axis, keepdims)


def prod(x, axis=None, keepdims=False):
    """Product over `axis` (all axes when None), in x's dtype."""
    return _reduce("reduce_prod", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over `axis` (all axes when None), in x's dtype (so a float one)."""
    return _reduce("reduce_mean", x, axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 (NumPy's name)
    """Largest element over `axis` (all axes when None); `maximum` is the elementwise one."""
    return _reduce("reduce_max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001 (NumPy's name)
    """Smallest element over `axis` (all axes when None); `minimum` is the elementwise one."""
    return _reduce("reduce_min", x, axis, keepdims)


def unbroadcast(g, shape):
    """g summed down to `shape`, the shape of an operand broadcast to g's: over the leading
    axes g has more and the axes where shape has 1. How a cotangent returns to its operand."""
    g, shape = asarray(g), tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    return reshape(sum(g, axes), shape)


def matmul(a, b):
    """NumPy's matmul on two arrays of one dtype (1-D operands promoted, batch axes broadcast)."""
    (a, b), weak = _operands(a, b)
    a, b = asarray(a), asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    return bind("matmul", a, b, weak=weak)
