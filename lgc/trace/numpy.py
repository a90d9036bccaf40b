"""lgc.numpy: jax.numpy on lgc's core ops (`import lgc.numpy as lnp`).

Each function does what is NumPy's (JAX type promotion with weak Python scalars, conversion
to float, the bool cases, NumPy's argument names) and leaves the array logic to lgc.ops.prim,
as jax.numpy leaves it to lax; the rest binds core ops itself. Both lower to ops of the one
registry, so the same code runs eagerly (op by op on the device) and under lgc.jit (staged
into one graph). Names, signatures and semantics follow jax.numpy: 32-bit defaults, NumPy
broadcasting, immutable arrays (update with `x.at[i].set(v)`).
NumPy is used here only to compute constants (arange, eye, index tables) at trace time.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..ops import prim
from ..ops.core import ArrayBase, ShapedArray, bind, get_aval
from . import dtypes as _dt
from .batching import vmap as _vmap
from .eager import Array
from .pytree import tree_leaves as _tree_leaves

ndarray = Array
newaxis = None
pi, e, inf, nan, euler_gamma = np.pi, np.e, np.inf, np.nan, np.euler_gamma
bool_, int8, int16, int32, int64 = np.bool_, np.int8, np.int16, np.int32, np.int64
uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64
float16, float32, float64 = np.float16, np.float32, np.float64
complex64, complex128, complexfloating = np.complex64, np.complex128, np.complexfloating
dtype, finfo, iinfo, issubdtype = np.dtype, np.finfo, np.iinfo, np.issubdtype
number, integer, signedinteger, unsignedinteger = np.number, np.integer, np.signedinteger, np.unsignedinteger
floating, inexact, bool = np.floating, np.inexact, np.bool_  # noqa: A001 (as jax.numpy)


# ---- conversion and promotion -----------------------------------------------------------------

def _is_array(x) -> builtins.bool:
    return isinstance(x, ArrayBase)


def _holds_arrays(a) -> builtins.bool:
    """Whether a is a list or tuple with lgc arrays among its leaves (prim takes none)."""
    return isinstance(a, (list, tuple)) and builtins.any(_is_array(v) for v in _tree_leaves(a))


def asarray(a, dtype=None, copy=None):
    """An lgc array (device Array, or tracer under jit) from any array-like."""
    if _holds_arrays(a):
        a = stack([asarray(v) for v in a])
    return prim.asarray(a, dtype)


array = asarray


def result_type(*args):
    """JAX's result dtype of arrays, scalars (weak) and dtypes."""
    pairs = [(np.dtype(a), False) if isinstance(a, (type, np.dtype, str)) else
             (get_aval(a).dtype, get_aval(a).weak_type) for a in args]
    return _dt.promote(*pairs)[0]


def promote_types(a, b):
    return _dt.promote((np.dtype(a), False), (np.dtype(b), False))[0]


def _cast(x, dt):
    """x converted to dtype dt; host values stay host values (they become constants)."""
    return prim.astype(x, dt) if _is_array(x) else np.asarray(x, dtype=dt)


def astype(x, dtype):
    return prim.astype(asarray(x), dtype)


def _promote(*args, to_float=False):
    """Operands converted to their JAX result type; returns (operands, dtype, weak)."""
    avals = [get_aval(a) for a in args]
    dt, weak = _dt.promote(*[(a.dtype, a.weak_type) for a in avals])
    if to_float and dt.kind not in "fc":
        dt = _dt.default_float()
    return [_cast(a, dt) for a in args], dt, weak


def _shape(x):
    return get_aval(x).shape


def _as_float(a):
    """a as an lgc array of a float (or complex) dtype: its own, else the default float."""
    a = asarray(a)
    return _cast(a, a.dtype if a.dtype.kind in "fc" else _dt.default_float())


# ---- elementwise ------------------------------------------------------------------------------

def _unary(op, to_float=True):
    def fn(x, /):
        (x,), dt, weak = _promote(x, to_float=to_float)
        return bind(op, x, weak=weak)
    fn.__name__ = op
    return fn


exp, log, sqrt = _unary("exp"), _unary("log"), _unary("sqrt")
log1p, expm1 = _unary("log1p"), _unary("expm1")
sin, cos, tan = _unary("sin"), _unary("cos"), _unary("tan")
arcsin, arccos, arctan = _unary("asin"), _unary("acos"), _unary("atan")
sinh, cosh, tanh = _unary("sinh"), _unary("cosh"), _unary("tanh")
arcsinh, arccosh, arctanh = _unary("asinh"), _unary("acosh"), _unary("atanh")
asin, acos, atan, asinh, acosh, atanh = arcsin, arccos, arctan, arcsinh, arccosh, arctanh


def _float_fn(name, body):
    def fn(x, /):
        (x,), dt, weak = _promote(x, to_float=True)
        return _weak(body(x, dt), weak)
    fn.__name__ = name
    return fn


def _weak(x, weak):
    """x with its weak-type flag set (a new handle to the same value)."""
    if x.weak_type == weak:
        return x
    aval = ShapedArray(x.shape, x.dtype, weak)
    if isinstance(x, Array):
        return Array(x._buf, aval)
    clone = object.__new__(type(x))
    clone.__dict__.update(x.__dict__)
    clone.aval = aval
    return clone


exp2 = _float_fn("exp2", lambda x, dt: bind("pow", np.asarray(2, dt), x))
log2 = _float_fn("log2", lambda x, dt: bind("mul", bind("log", x), np.asarray(1 / np.log(2), dt)))
log10 = _float_fn("log10", lambda x, dt: bind("mul", bind("log", x), np.asarray(1 / np.log(10), dt)))
rsqrt = _float_fn("rsqrt", lambda x, dt: bind("reciprocal", bind("sqrt", x)))
cbrt = _float_fn("cbrt", lambda x, dt: bind("mul", bind("sign", x),
                                             bind("pow", bind("abs", x), np.asarray(1 / 3, dt))))
deg2rad = radians = _float_fn("deg2rad", lambda x, dt: bind("mul", x, np.asarray(np.pi / 180, dt)))
rad2deg = degrees = _float_fn("rad2deg", lambda x, dt: bind("mul", x, np.asarray(180 / np.pi, dt)))


def _same_kind_unary(name, fn_by_kind):
    def fn(x, /):
        (x,), dt, weak = _promote(asarray(x))
        return _weak(fn_by_kind(x, dt), weak)
    fn.__name__ = name
    return fn


def _float_only(op):
    return lambda x, dt: bind(op, x) if dt.kind == "f" else x


floor = _same_kind_unary("floor", _float_only("floor"))
ceil = _same_kind_unary("ceil", _float_only("ceil"))
rint = _same_kind_unary("rint", _float_only("round"))
trunc = fix = _same_kind_unary("trunc", lambda x, dt: where(less(x, 0), ceil(x), floor(x))
                                if dt.kind == "f" else x)


def round(a, decimals=0):  # noqa: A001 (jax.numpy name)
    return prim.round(asarray(a), decimals)


around = round


def negative(x, /):
    x = asarray(x)
    if x.dtype == np.bool_:
        raise TypeError("negative of a boolean array; use logical_not or ~")
    return prim.neg(x)


def positive(x, /):
    return asarray(x)


def abs(x, /):  # noqa: A001
    return prim.abs(asarray(x))


absolute = abs


def real(val, /):
    return prim.real(val)


def imag(val, /):
    return prim.imag(val)


def conjugate(x, /):
    return prim.conj(x)


conj = conjugate


def angle(z, deg=False):
    """The argument of z, arctan2(imag, real) (of a real z: 0, or pi where it is negative)."""
    z = asarray(z)
    a = arctan2(imag(z), real(z))
    return multiply(a, 180 / np.pi) if deg else a


def iscomplexobj(x):
    return np.dtype(get_aval(x).dtype).kind == "c"


def isrealobj(x):
    return not iscomplexobj(x)


def iscomplex(x):
    return not_equal(imag(x), 0)


def isreal(x):
    return equal(imag(x), 0)


def sign(x, /):
    return prim.sign(asarray(x))


def square(x, /):
    (x,), dt, weak = _promote(x)
    return bind("mul", x, x, weak=weak)


def reciprocal(x, /):
    (x,), dt, weak = _promote(x)
    return bind("reciprocal", x, weak=weak) if dt.kind == "f" else bind("div", np.asarray(1, dt), x, weak=weak)


def _either_part(fn):
    """fn of a complex x: true where it holds for the real or the imaginary part."""
    return lambda x: logical_or(fn(real(x)), fn(imag(x)))


def isnan(x, /):
    x = asarray(x)
    if x.dtype.kind == "c":
        return _either_part(isnan)(x)
    return bind("isnan", x) if x.dtype.kind == "f" else full(x.shape, False)


def isinf(x, /):
    x = asarray(x)
    if x.dtype.kind == "c":
        return _either_part(isinf)(x)
    return bind("isinf", x) if x.dtype.kind == "f" else full(x.shape, False)


def isfinite(x, /):
    x = asarray(x)
    if x.dtype.kind == "c":
        return logical_and(isfinite(real(x)), isfinite(imag(x)))
    if x.dtype.kind != "f":
        return full(x.shape, True)
    return logical_not(logical_or(isnan(x), isinf(x)))


def signbit(x, /):
    x = asarray(x)
    if x.dtype.kind == "f":   # -0.0 counts: its reciprocal is -inf
        return logical_or(less(x, 0), logical_and(equal(x, 0), less(reciprocal(x), 0)))
    return less(x, 0) if x.dtype.kind == "i" else full(x.shape, False)


def _binary(name, op, bool_op=None, to_float=False):
    def fn(x1, x2, /):
        (a, b), dt, weak = _promote(x1, x2, to_float=to_float)
        if dt == np.bool_:
            if bool_op is None:
                raise TypeError(f"{name} is not defined for boolean arrays")
            return bind(bool_op, a, b)
        return bind(op, a, b, weak=weak)
    fn.__name__ = name
    return fn


add = _binary("add", "add", "or")
subtract = _binary("subtract", "sub")
multiply = _binary("multiply", "mul", "and")
true_divide = divide = _binary("true_divide", "div", to_float=True)
power = _binary("power", "pow")
float_power = power
maximum = _binary("maximum", "max", "or")
minimum = _binary("minimum", "min", "and")
remainder = mod = _binary("remainder", "mod")
bitwise_and = _binary("bitwise_and", "bitwise_and", "and")
bitwise_or = _binary("bitwise_or", "bitwise_or", "or")
bitwise_xor = _binary("bitwise_xor", "bitwise_xor", "xor")
left_shift = _binary("left_shift", "shift_left")
right_shift = _binary("right_shift", "shift_right")


def fmod(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2)
    return bind("mod", a, b, fmod=1, weak=weak)


def floor_divide(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2)
    if dt == np.bool_:
        raise TypeError("floor_divide is not defined for boolean arrays")
    return _weak(prim.floor_divide(a, b), weak)


def divmod(x1, x2, /):  # noqa: A001
    return floor_divide(x1, x2), remainder(x1, x2)


def invert(x, /):
    x = asarray(x)
    return bind("not", x) if x.dtype == np.bool_ else bind("bitwise_not", x, weak=x.weak_type)


bitwise_not = bitwise_invert = invert


def _compare(name, op):
    def fn(x1, x2, /):
        (a, b), dt, weak = _promote(x1, x2)
        if dt == np.bool_ and op not in ("eq",):
            a, b = _cast(a, np.uint8), _cast(b, np.uint8)
        return bind(op, a, b)
    fn.__name__ = name
    return fn


equal = _compare("equal", "eq")
less, less_equal = _compare("less", "lt"), _compare("less_equal", "le")
greater, greater_equal = _compare("greater", "gt"), _compare("greater_equal", "ge")


def not_equal(x1, x2, /):
    return bind("not", equal(x1, x2))


def _to_bool(x):
    x = asarray(x)
    return x if x.dtype == np.bool_ else not_equal(x, 0)


def logical_and(x1, x2, /):
    return bind("and", *_promote(_to_bool(x1), _to_bool(x2))[0])


def logical_or(x1, x2, /):
    return bind("or", *_promote(_to_bool(x1), _to_bool(x2))[0])


def logical_xor(x1, x2, /):
    return bind("xor", *_promote(_to_bool(x1), _to_bool(x2))[0])


def logical_not(x, /):
    return bind("not", _to_bool(x))


def hypot(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2, to_float=True)
    return _weak(sqrt(add(multiply(a, a), multiply(b, b))), weak)


def arctan2(x1, x2, /):
    """Quadrant-correct atan(y/x) from atan and selects (there is no atan2 core op)."""
    (y, x), dt, weak = _promote(x1, x2, to_float=True)
    base = bind("atan", bind("div", y, x))
    p = np.asarray(np.pi, dt)
    neg_y = signbit(y)
    out = where(less(x, 0), where(neg_y, subtract(base, p), add(base, p)), base)
    half = np.asarray(np.pi / 2, dt)
    at_zero = where(greater(y, 0), half, where(less(y, 0), -half,
                                               where(signbit(x), where(neg_y, -p, p), y)))
    out = where(equal(x, 0), at_zero, out)
    return _weak(out, weak)


atan2 = arctan2


def logaddexp(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2, to_float=True)
    m = maximum(a, b)
    d = negative(abs(subtract(a, b)))
    out = add(m, log1p(exp(d)))
    return _weak(where(isinf(m), m, out), weak)


def where(condition, x=None, y=None, /):
    if x is None or y is None:
        raise NotImplementedError("where(condition) has a data-dependent shape; lgc arrays need "
                                  "static shapes: use where(condition, x, y)")
    c = _to_bool(condition)
    (a, b), dt, weak = _promote(x, y)
    return bind("where", c, a, b, weak=weak)


def clip(arr=None, /, min=None, max=None, *, a_min=None, a_max=None):  # noqa: A002
    x = asarray(arr)
    lo = min if min is not None else a_min
    hi = max if max is not None else a_max
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = asarray(x)
    if x.dtype.kind != "f":
        return x
    info = np.finfo(x.dtype)
    x = where(isnan(x), np.asarray(nan, x.dtype), x)
    x = where(bind("isinf", x, detect_negative=0), np.asarray(info.max if posinf is None else posinf, x.dtype), x)
    return where(bind("isinf", x, detect_positive=0), np.asarray(info.min if neginf is None else neginf, x.dtype), x)


# ---- creation ---------------------------------------------------------------------------------

def full(shape, fill_value, dtype=None):
    if _holds_arrays(fill_value):
        fill_value = asarray(fill_value)
    return prim.full(shape, fill_value, dtype)


def full_like(a, fill_value, dtype=None, shape=None):
    return full(_shape(a) if shape is None else shape, fill_value, dtype or get_aval(a).dtype)


zeros, ones, zeros_like, ones_like = prim.zeros, prim.ones, prim.zeros_like, prim.ones_like
empty, empty_like = zeros, zeros_like
arange = prim.arange   # a constant computed with NumPy at trace time (there is no iota op)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    dtype = _dt.canonicalize(dtype or _dt.default_float())
    out = asarray(np.linspace(start, stop, num, endpoint=endpoint, axis=axis).astype(dtype))
    if retstep:
        step = (stop - start) / builtins.max(num - 1 if endpoint else num, 1)
        return out, step
    return out


def _index_compare(N, M, k, cmp, dtype):
    """cmp(row + k, col) over an N x M grid, from two small aranges (not an N*M constant)."""
    M = N if M is None else M
    rows = reshape(asarray(np.arange(N, dtype=np.int32) + int(k)), (N, 1))
    cols = reshape(asarray(np.arange(M, dtype=np.int32)), (1, M))
    return astype(cmp(rows, cols), _dt.canonicalize(dtype or _dt.default_float()))


def eye(N, M=None, k=0, dtype=None):
    return _index_compare(N, M, k, equal, dtype)


def identity(n, dtype=None):
    return eye(n, dtype=dtype)


def tri(N, M=None, k=0, dtype=None):
    return _index_compare(N, M, k, greater_equal, dtype)


# ---- shapes -----------------------------------------------------------------------------------

def shape(a):
    return _shape(a)


def ndim(a):
    return len(_shape(a))


def size(a, axis=None):
    s = _shape(a)
    return math.prod(s) if axis is None else s[axis]


def reshape(a, shape=None, order="C", *, newshape=None):
    if order != "C":
        raise NotImplementedError("reshape supports order='C' only")
    if shape is None and newshape is None:
        raise TypeError("reshape needs the new shape")
    return prim.reshape(asarray(a), shape if shape is not None else newshape)


def ravel(a, order="C"):
    return reshape(a, (-1,), order)


def transpose(a, axes=None):
    return prim.transpose(asarray(a), axes)


def permute_dims(a, axes):
    return transpose(a, axes)


def swapaxes(a, axis1, axis2):
    return prim.swapaxes(asarray(a), axis1, axis2)


def moveaxis(a, source, destination):
    return prim.moveaxis(asarray(a), source, destination)


def expand_dims(a, axis):
    return prim.expand_dims(asarray(a), axis)


def squeeze(a, axis=None):
    return prim.squeeze(asarray(a), axis)


def atleast_1d(*arys):
    out = [reshape(a, (1,)) if ndim(a) == 0 else asarray(a) for a in arys]
    return out[0] if len(out) == 1 else out


def atleast_2d(*arys):
    out = []
    for a in arys:
        a = asarray(a)
        out.append(reshape(a, (1,) * (2 - a.ndim) + a.shape) if a.ndim < 2 else a)
    return out[0] if len(out) == 1 else out


def broadcast_shapes(*shapes):
    return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))


def broadcast_to(array, shape):
    return prim.broadcast_to(asarray(array), shape)


def broadcast_arrays(*args):
    s = broadcast_shapes(*[_shape(a) for a in args])
    return [broadcast_to(a, s) for a in args]


def concatenate(arrays, axis=0, dtype=None):
    """prim.concatenate of the arrays at their result type (or at dtype when given)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    arrays, _, weak = _promote(*arrays)
    if dtype is not None:
        arrays = [astype(a, dtype) for a in arrays]
    return _weak(prim.concatenate(arrays, axis), weak)


concat = concatenate


def stack(arrays, axis=0, dtype=None):
    arrays = [asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    axis = prim.normalize_axis(axis, arrays[0].ndim + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis, dtype)


def hstack(tup):
    arrs = [atleast_1d(a) for a in tup]
    return concatenate(arrs, 0 if arrs[0].ndim == 1 else 1)


def vstack(tup):
    return concatenate([atleast_2d(a) for a in tup], 0)


def split(ary, indices_or_sections, axis=0):
    return prim.split(asarray(ary), indices_or_sections, axis)


def array_split(ary, indices_or_sections, axis=0):
    if isinstance(indices_or_sections, (int, np.integer)):
        n, k = _shape(ary)[prim.normalize_axis(axis, ndim(ary))], int(indices_or_sections)
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        return split(ary, list(np.cumsum(sizes)[:-1]), axis)
    return split(ary, indices_or_sections, axis)


def flip(m, axis=None):
    return prim.flip(asarray(m), axis)


def fliplr(m):
    return flip(m, 1)


def flipud(m):
    return flip(m, 0)


def roll(a, shift, axis=None):
    a = asarray(a)
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), a.shape)
    shifts = shift if isinstance(shift, (tuple, list)) else (shift,)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    for s, ax in zip(shifts, axes):
        ax = prim.normalize_axis(ax, a.ndim)
        n = a.shape[ax]
        s = int(s) % n if n else 0
        if s:
            a = concatenate([prim.slice_in_dim(a, n - s, n, axis=ax),
                             prim.slice_in_dim(a, 0, n - s, axis=ax)], ax)
    return a


def tile(A, reps):
    a = asarray(A)
    reps = prim.shape_tuple(reps)
    nd = builtins.max(a.ndim, len(reps))
    a = reshape(a, (1,) * (nd - a.ndim) + a.shape)
    reps = (1,) * (nd - len(reps)) + reps
    return a if builtins.all(r == 1 for r in reps) else bind("tile", a, repeats=reps, weak=a.weak_type)


def repeat(a, repeats, axis=None, total_repeat_length=None):
    a = asarray(a)
    if axis is None:
        a, axis = ravel(a), 0
    if _is_array(repeats):
        raise TypeError("repeat needs static repeats (an int or a NumPy array)")
    n = a.shape[prim.normalize_axis(axis, a.ndim)]
    return prim.take(a, np.repeat(np.arange(n), np.asarray(repeats)).astype(np.int32), axis)


def pad(array, pad_width, mode="constant", constant_values=0):
    if np.ndim(constant_values) != 0:
        raise NotImplementedError("pad with per-axis constant_values")
    return prim.pad(asarray(array), pad_width, mode, constant_values)


def tril(m, k=0):
    return bind("trilu", asarray(m), upper=0, k=int(k))


def triu(m, k=0):
    return bind("trilu", asarray(m), upper=1, k=int(k))


# ---- reductions -------------------------------------------------------------------------------

def _accumulated(a, dtype):
    """a in the dtype its sum, product or cumsum runs in: dtype when given, else a's own with
    bool and narrow integers widened to the default width (as jax.numpy does)."""
    a = asarray(a)
    dt = a.dtype
    if dtype is not None:
        return astype(a, dtype)
    if dt == np.bool_ or (dt.kind == "i" and dt.itemsize < _dt.default_int().itemsize):
        return _cast(a, _dt.default_int())
    if dt.kind == "u" and dt.itemsize < 4:
        return _cast(a, np.uint32)
    return a


def _masked(a, where_, fill):
    """a with fill wherever the mask where_ (broadcast against a) is False: the values a
    reduction with `where=` leaves out are replaced by its identity (as jax.numpy)."""
    if where_ is None:
        return a
    return prim.where(_to_bool(where_), a, fill)


def _identity_of(op_name, dt):
    """The identity of max (-inf or the smallest integer) or min for dtype dt."""
    if dt == np.bool_:
        return op_name == "min"
    if dt.kind == "f":
        return -np.inf if op_name == "max" else np.inf
    info = np.iinfo(dt)
    return info.min if op_name == "max" else info.max


def _needs_initial(name, initial, where_):
    if where_ is not None and initial is None:
        raise ValueError(f"reduction operation {name!r} does not have an identity, so to use a "
                         f"where mask one has to specify 'initial'")


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):  # noqa: A001
    _no(out)
    a = _accumulated(a, dtype)
    r = prim.sum(_masked(a, where, 0), axis, keepdims)
    return r if initial is None else add(r, initial)


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _no(out)
    a = _accumulated(a, dtype)
    r = prim.prod(_masked(a, where, 1), axis, keepdims)
    return r if initial is None else multiply(r, initial)


def max(a, axis=None, out=None, keepdims=False, initial=None, where=None):  # noqa: A001
    _no(out)
    _needs_initial("max", initial, where)
    a = asarray(a)
    r = prim.max(_masked(a, where, _identity_of("max", a.dtype)), axis, keepdims)
    return r if initial is None else maximum(r, initial)


def min(a, axis=None, out=None, keepdims=False, initial=None, where=None):  # noqa: A001
    _no(out)
    _needs_initial("min", initial, where)
    a = asarray(a)
    r = prim.min(_masked(a, where, _identity_of("min", a.dtype)), axis, keepdims)
    return r if initial is None else minimum(r, initial)


amax, amin = max, min


def all(a, axis=None, out=None, keepdims=False, *, where=None):  # noqa: A001
    _no(out)
    return prim.min(_masked(_to_bool(a), where, True), axis, keepdims)


def any(a, axis=None, out=None, keepdims=False, *, where=None):  # noqa: A001
    _no(out)
    return prim.max(_masked(_to_bool(a), where, False), axis, keepdims)


def _count(a, axis, keepdims, where_):
    """How many elements a reduction over axis averages: a static number, or with a mask
    the number of True entries (in a's float dtype)."""
    axes = prim.normalize_axes(axis, a.ndim)
    if where_ is None:
        return np.asarray(math.prod(a.shape[x] for x in axes), a.dtype)
    m = prim.broadcast_to(_to_bool(where_), a.shape)
    return prim.sum(_cast(m, a.dtype), axes, keepdims)


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    _no(out)
    a = _as_float(a) if dtype is None else astype(a, dtype)
    if where is None:
        return prim.mean(a, axis, keepdims)
    return divide(sum(a, axis, keepdims=keepdims, where=where), _count(a, axis, keepdims, where))


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, correction=None):
    _no(out)
    a = _as_float(a)
    ddof = ddof if correction is None else correction
    axes = prim.normalize_axes(axis, a.ndim)
    d = subtract(a, mean(a, axes, keepdims=True, where=where))
    sq = real(multiply(d, conj(d))) if d.dtype.kind == "c" else multiply(d, d)   # |d|^2
    s = sum(sq, axes, keepdims=keepdims, where=where)
    n = _count(a, axes, keepdims, where)
    n = (np.maximum(np.real(n) - ddof, 0).astype(s.dtype) if where is None
         else maximum(subtract(real(n), ddof), 0))
    r = divide(s, n)
    return r if dtype is None else astype(r, dtype)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, correction=None):
    return sqrt(var(a, axis, dtype, out, ddof, keepdims, where=where, correction=correction))


def _no(out):
    if out is not None:
        raise NotImplementedError("out= is not supported: lgc arrays are immutable")


def _arg(op, a, axis, keepdims):
    a = asarray(a)
    if axis is None:
        r = bind(op, ravel(a), axis=0, keepdims=0)
        r = reshape(r, (1,) * a.ndim) if keepdims else r
    else:
        r = bind(op, a, axis=prim.normalize_axis(axis, a.ndim), keepdims=int(builtins.bool(keepdims)))
    return _cast(r, _dt.default_int())


def argmax(a, axis=None, out=None, keepdims=None):
    return _arg("argmax", a, axis, keepdims)


def argmin(a, axis=None, out=None, keepdims=None):
    return _arg("argmin", a, axis, keepdims)


def _scan(op, a, axis, dtype, reverse=False):
    a = asarray(a)
    if axis is None:
        a, axis = ravel(a), 0
    a = _accumulated(a, dtype)
    if a.ndim == 0:
        return a
    return bind(op, a, axis=prim.normalize_axis(axis, a.ndim), reverse=int(reverse), weak=a.weak_type)


def cumsum(a, axis=None, dtype=None, out=None):
    return _scan("cumsum", a, axis, dtype)


def cumprod(a, axis=None, dtype=None, out=None):
    return _scan("cumprod", a, axis, dtype)


def _sort_topk(a, axis, descending):
    """(values, indices) of one topk over the whole axis (of the flattened a when axis is
    None): NaN sorts last, as in NumPy; bools sort as uint8."""
    if axis is None:
        a, axis = ravel(a), 0
    axis = prim.normalize_axis(axis, a.ndim)
    x = _cast(a, np.uint8) if a.dtype == np.bool_ else a
    return bind("topk", x, axis=axis, k=a.shape[axis], largest=int(descending))


def sort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    a = asarray(a)
    if axis is not None and a.ndim == 0:
        return a
    return _cast(_sort_topk(a, axis, descending)[0], a.dtype)


def argsort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    return _cast(_sort_topk(asarray(a), axis, descending)[1], _dt.default_int())


def count_nonzero(a, axis=None, keepdims=False):
    return sum(_to_bool(a), axis, keepdims=keepdims)


# ---- indexing helpers -------------------------------------------------------------------------

def take(a, indices, axis=None, mode=None, fill_value=None):
    """np.take; out-of-range indices are clamped (negative ones wrap once)."""
    return prim.take(asarray(a), asarray(indices), axis)


def take_along_axis(arr, indices, axis):
    return prim.take_along_axis(asarray(arr), asarray(indices), axis)


# ---- linear algebra -----------------------------------------------------------------------------

def matmul(a, b, /):
    (a, b), dt, weak = _promote(a, b)
    if dt == np.bool_:   # as int32 (the core op has no bool type), then back
        return _cast(matmul(_cast(a, np.int32), _cast(b, np.int32)), np.bool_)
    return _weak(prim.matmul(a, b), weak)


def dot(a, b):
    a, b = asarray(a), asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if b.ndim <= 2:
        return matmul(a, b)
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 2]))


def vdot(a, b):
    return dot(ravel(a), ravel(b))


def inner(a, b):
    a, b = asarray(a), asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def outer(a, b):
    return multiply(reshape(ravel(a), (-1, 1)), reshape(ravel(b), (1, -1)))


def tensordot(a, b, axes=2):
    """Contract axes of a with axes of b: transpose both, reshape to matrices, one matmul."""
    (a, b), dt, weak = _promote(a, b)
    a, b = asarray(a), asarray(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        ax_a, ax_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    ax_a = [prim.normalize_axis(x, a.ndim) for x in ax_a]
    ax_b = [prim.normalize_axis(x, b.ndim) for x in ax_b]
    if [a.shape[i] for i in ax_a] != [b.shape[i] for i in ax_b]:
        raise ValueError(f"tensordot: shape mismatch {a.shape} {ax_a} vs {b.shape} {ax_b}")
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [i for i in range(b.ndim) if i not in ax_b]
    k = math.prod(a.shape[i] for i in ax_a)
    am = reshape(transpose(a, free_a + ax_a), (-1, k))
    bm = reshape(transpose(b, ax_b + free_b), (k, -1))
    out = matmul(am, bm)
    return reshape(out, tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


def einsum(subscripts, *operands, optimize=None, precision=None):
    from .einsum import einsum as _einsum   # written with this module; loaded on first use
    return _einsum(subscripts, *operands)


def trace(a, offset=0, axis1=0, axis2=1):
    return sum(diagonal(a, offset, axis1, axis2), -1)


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal moved to the last axis, read as a strided slice of the flattened pair."""
    a = asarray(a)
    i, j = prim.normalize_axis(axis1, a.ndim), prim.normalize_axis(axis2, a.ndim)
    a = moveaxis(a, (i, j), (-2, -1))
    n, m = a.shape[-2:]
    rows = range(builtins.max(0, -offset), builtins.min(n, m - offset))
    flat = reshape(a, a.shape[:-2] + (n * m,))
    if not len(rows):
        return reshape(prim.slice_in_dim(flat, 0, 0, axis=-1), a.shape[:-2] + (0,))
    start = rows[0] * m + rows[0] + offset
    return prim.slice_in_dim(flat, start, start + (len(rows) - 1) * (m + 1) + 1, m + 1, axis=-1)


def diag(v, k=0):
    v = asarray(v)
    if v.ndim == 1:
        n = v.shape[0] + builtins.abs(k)
        return multiply(eye(n, k=k, dtype=v.dtype),
                        reshape(pad(v, (builtins.abs(k), 0)), (1, n) if k >= 0 else (n, 1)))
    return diagonal(v, k)



# ---- more of jax.numpy ----------------------------------------------------------------------

def select(condlist, choicelist, default=0):
    """The first choice whose condition holds, else default (a chain of wheres)."""
    if len(condlist) != len(choicelist):
        raise ValueError("select: condlist and choicelist must have the same length")
    out = default
    for c, v in reversed(list(zip(condlist, choicelist))):
        out = where(c, v, out)
    return asarray(out)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    (a, b), dt, weak = _promote(a, b)
    if dt.kind != "f":
        return equal(a, b)
    close = less_equal(abs(subtract(a, b)), add(atol, multiply(rtol, abs(b))))
    close = logical_or(close, equal(a, b))               # equal infinities
    return logical_or(close, logical_and(isnan(a), isnan(b))) if equal_nan else close


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return all(isclose(a, b, rtol, atol, equal_nan))


def array_equal(a1, a2, equal_nan=False):
    if _shape(a1) != _shape(a2):
        return asarray(False)
    eq = equal(a1, a2)
    if equal_nan:
        eq = logical_or(eq, logical_and(isnan(a1), isnan(a2)))
    return all(eq)


def meshgrid(*xi, indexing="xy"):
    xi = [ravel(x) for x in xi]
    shape = [x.shape[0] for x in xi]
    if indexing == "xy" and len(xi) > 1:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for k, x in enumerate(xi):
        axis = {0: 1, 1: 0}.get(k, k) if indexing == "xy" and len(xi) > 1 else k
        s = [1] * len(xi)
        s[axis] = x.shape[0]
        out.append(broadcast_to(reshape(x, tuple(s)), tuple(shape)))
    return out


def append(arr, values, axis=None):
    if axis is None:
        return concatenate([ravel(arr), ravel(values)])
    return concatenate([arr, values], axis)


def cross(a, b, axis=-1):
    a, b = moveaxis(asarray(a), axis, -1), moveaxis(asarray(b), axis, -1)
    if a.shape[-1] != 3 or b.shape[-1] != 3:
        raise NotImplementedError("cross of 3-vectors only")
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    return stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def kron(a, b):
    a, b = asarray(a), asarray(b)
    nd = builtins.max(a.ndim, b.ndim)
    a = reshape(a, (1,) * (nd - a.ndim) + a.shape)
    b = reshape(b, (1,) * (nd - b.ndim) + b.shape)
    out = multiply(reshape(a, tuple(d for n in a.shape for d in (n, 1))),
                   reshape(b, tuple(d for n in b.shape for d in (1, n))))
    return reshape(out, tuple(p * q for p, q in zip(a.shape, b.shape)))


def _nan_reduce(fn, fill):
    def f(a, axis=None, keepdims=False, **kw):
        a = asarray(a)
        if a.dtype.kind == "f":
            a = where(isnan(a), np.asarray(fill, a.dtype), a)
        return fn(a, axis, keepdims=keepdims, **kw)
    return f


nansum = _nan_reduce(sum, 0)
nanprod = _nan_reduce(prod, 1)
nanmax = _nan_reduce(max, -np.inf)
nanmin = _nan_reduce(min, np.inf)


def copy(a, order=None):
    return asarray(a)


def ptp(a, axis=None, keepdims=False):
    return subtract(max(a, axis, keepdims=keepdims), min(a, axis, keepdims=keepdims))


def diff(a, n=1, axis=-1, prepend=None, append=None):
    a = asarray(a)
    axis = prim.normalize_axis(axis, a.ndim)
    if prepend is not None or append is not None:
        parts = [broadcast_to(asarray(p), a.shape[:axis] + (1,) + a.shape[axis + 1:])
                 if ndim(p) == 0 else asarray(p) for p in (prepend, a, append) if p is not None]
        a = concatenate(parts, axis)
    for _ in range(n):
        k = a.shape[axis]
        a = subtract(prim.slice_in_dim(a, 1, k, axis=axis),
                     prim.slice_in_dim(a, 0, builtins.max(k - 1, 0), axis=axis))
    return a


def average(a, axis=None, weights=None, returned=False, keepdims=False):
    if weights is None:
        avg = mean(a, axis, keepdims=keepdims)
        n = asarray(size(a) / builtins.max(size(avg), 1), avg.dtype)
        return (avg, broadcast_to(n, avg.shape)) if returned else avg
    a, w = asarray(a), asarray(weights)
    if w.ndim == 1 and a.ndim > 1 and axis is not None:
        shape = [1] * a.ndim
        shape[prim.normalize_axis(axis, a.ndim)] = w.shape[0]
        w = reshape(w, tuple(shape))
    wsum = sum(broadcast_to(w, a.shape), axis, keepdims=keepdims)
    avg = divide(sum(multiply(a, w), axis, keepdims=keepdims), wsum)
    return (avg, wsum) if returned else avg


def quantile(a, q, axis=None, keepdims=False, method="linear"):
    """Linear interpolation between the sorted neighbours (NumPy's default method)."""
    if method != "linear":
        raise NotImplementedError(f"quantile method {method!r}")
    a = _as_float(a)
    if axis is None:
        a, axis, shape = ravel(a), 0, (1,) * a.ndim
    else:
        axis = prim.normalize_axis(axis, a.ndim)
        shape = a.shape[:axis] + (1,) + a.shape[axis + 1:]
    srt = sort(a, axis)
    n = a.shape[axis]
    qs = np.asarray(q, np.float64)
    pos = qs * (n - 1)
    lo = np.floor(pos).astype(np.int32)
    hi = np.minimum(lo + 1, n - 1).astype(np.int32)
    frac = (pos - lo).astype(a.dtype)
    x_lo = take(srt, lo.reshape(-1), axis=axis)
    x_hi = take(srt, hi.reshape(-1), axis=axis)
    fshape = [1] * srt.ndim
    fshape[axis] = frac.size
    out = add(x_lo, multiply(subtract(x_hi, x_lo), frac.reshape(fshape)))
    out = moveaxis(out, axis, 0)                         # quantiles first, as NumPy
    if keepdims:
        out = reshape(out, (frac.size,) + shape)
    return reshape(out, qs.shape + out.shape[1:])


def percentile(a, q, axis=None, keepdims=False, method="linear"):
    return quantile(a, np.asarray(q, np.float64) / 100, axis, keepdims=keepdims, method=method)


def median(a, axis=None, keepdims=False):
    return quantile(a, 0.5, axis, keepdims=keepdims)


def nanmean(a, axis=None, keepdims=False):
    a = asarray(a)
    ok = logical_not(isnan(a))
    return divide(sum(where(ok, a, 0.0), axis, keepdims=keepdims), sum(ok, axis, keepdims=keepdims))


def heaviside(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2, to_float=True)
    return where(less(a, 0), np.asarray(0, dt), where(greater(a, 0), np.asarray(1, dt), b))


def copysign(x1, x2, /):
    (a, b), dt, weak = _promote(x1, x2, to_float=True)
    return where(signbit(b), negative(abs(a)), abs(a))


def sinc(x, /):
    (x,), dt, weak = _promote(x, to_float=True)
    px = multiply(np.asarray(np.pi, dt), x)
    zero = equal(x, 0)
    return where(zero, np.asarray(1, dt), divide(sin(px), where(zero, np.asarray(1, dt), px)))


def column_stack(tup):
    return concatenate([reshape(a, (-1, 1)) if ndim(a) < 2 else asarray(a) for a in tup], 1)


def dstack(tup):
    arrs = []
    for a in tup:
        a = asarray(a)
        a = reshape(a, (1, -1, 1)) if a.ndim == 1 else reshape(a, a.shape + (1,)) if a.ndim == 2 else \
            reshape(a, (1, 1, 1)) if a.ndim == 0 else a
        arrs.append(a)
    return concatenate(arrs, 2)


def rot90(m, k=1, axes=(0, 1)):
    m = asarray(m)
    k %= 4
    a, b = axes
    if k == 1:
        return swapaxes(flip(m, b), a, b)
    if k == 2:
        return flip(flip(m, a), b)
    if k == 3:
        return flip(swapaxes(m, a, b), b)
    return m


def indices(dimensions, dtype=None, sparse=False):
    out = np.indices(tuple(dimensions), dtype=_dt.canonicalize(dtype or _dt.default_int()),
                     sparse=sparse)
    return tuple(asarray(o) for o in out) if sparse else asarray(out)


def unravel_index(indices, shape):
    i = asarray(indices)
    out = []
    for d in reversed(shape):
        out.append(remainder(i, d))
        i = floor_divide(i, d)
    return tuple(reversed(out))


def ravel_multi_index(multi_index, dims, mode="raise", order="C"):
    out = 0
    for i, d in zip(multi_index, dims):
        out = add(multiply(out, d), clip(asarray(i), 0, d - 1))
    return asarray(out)


def searchsorted(a, v, side="left", sorter=None):
    """Insertion points by counting (O(len(a) * len(v)) compares; fine for small a)."""
    a = asarray(a)
    if sorter is not None:
        a = take(a, sorter)
    v = asarray(v)
    cmp = less if side == "left" else less_equal
    hits = cmp(reshape(a, (1,) * v.ndim + (-1,)), expand_dims(v, -1))
    return sum(hits, axis=-1, dtype=_dt.default_int())


def digitize(x, bins, right=False):
    return searchsorted(bins, x, side="left" if right else "right")


def isin(element, test_elements, invert=False):
    e, t = asarray(element), ravel(test_elements)
    r = any(equal(expand_dims(e, -1), reshape(t, (1,) * e.ndim + (-1,))), axis=-1)
    return logical_not(r) if invert else r


def bincount(x, weights=None, minlength=0, *, length=None):
    """Counts of each value in [0, length); `length` must be static (as under jax.jit)."""
    n = length if length is not None else minlength
    if not n:
        raise ValueError("bincount needs a static length= (or minlength=) in lgc")
    x = asarray(x)
    hit = equal(expand_dims(x, -1), arange(n))
    if weights is None:
        return sum(hit, axis=0, dtype=_dt.default_int())
    w = asarray(weights)
    return sum(where(hit, expand_dims(w, -1), np.asarray(0, w.dtype)), axis=0)


def tril_indices(n, k=0, m=None):
    return tuple(asarray(i.astype(np.int32)) for i in np.tril_indices(n, k, m))


def triu_indices(n, k=0, m=None):
    return tuple(asarray(i.astype(np.int32)) for i in np.triu_indices(n, k, m))


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    return asarray(np.logspace(start, stop, num, endpoint, base, axis=axis).astype(
        _dt.canonicalize(dtype or _dt.default_float())))


def polyval(p, x):
    """Horner's rule over the (static number of) coefficients."""
    p, x = asarray(p), asarray(x)
    out = zeros_like(x, dtype=result_type(p, x))
    for i in range(p.shape[0]):
        out = add(multiply(out, x), p[i])
    return out


def interp(x, xp, fp, left=None, right=None):
    xp, fp = asarray(xp), asarray(fp)
    x = asarray(x)
    x, xp_, fp_ = _promote(x, xp, fp, to_float=True)[0]
    n = xp.shape[0]
    i = clip(searchsorted(xp_, x, side="right"), 1, n - 1)
    x0, x1 = take(xp_, subtract(i, 1)), take(xp_, i)
    y0, y1 = take(fp_, subtract(i, 1)), take(fp_, i)
    t = divide(subtract(x, x0), where(equal(x1, x0), 1.0, subtract(x1, x0)))
    y = add(y0, multiply(t, subtract(y1, y0)))
    y = where(less(x, xp_[0]), fp_[0] if left is None else left, y)
    return where(greater(x, xp_[n - 1]), fp_[n - 1] if right is None else right, y)


def convolve(a, v, mode="full"):
    """1-D convolution through the core conv op (floats)."""
    (a, v), dt, weak = _promote(a, v, to_float=True)
    a, v = asarray(a), asarray(v)
    if a.shape[0] < v.shape[0]:
        a, v = v, a
    n, m = a.shape[0], v.shape[0]
    pads = {"full": (m - 1, m - 1), "same": (m // 2, m - 1 - m // 2),
            "valid": (0, 0)}[mode]
    out = bind("conv", reshape(a, (1, 1, n)), reshape(flip(v), (1, 1, m)), pads=pads,
               strides=(1,), dilations=(1,), group=1)
    return reshape(out, (-1,))


def correlate(a, v, mode="valid"):
    return convolve(a, flip(v), mode)


# ---- built on vmap --------------------------------------------------------------------------------

def _parse_signature(signature):
    """'(m,n),(n)->(m)' -> ([('m', 'n'), ('n',)], [('m',)]): core axis names per operand."""
    import re
    part = r"\(([\w,]*)\)"
    m = re.fullmatch(rf"\s*({part}(?:,{part})*)?->({part}(?:,{part})*)\s*",
                     signature.replace(" ", ""))
    if m is None:
        raise ValueError(f"not a valid gufunc signature: {signature!r}")
    ins, outs = signature.replace(" ", "").split("->")
    core = lambda s: [tuple(d for d in g.split(",") if d) for g in re.findall(part, s)]  # noqa
    return core(ins), core(outs)


def vectorize(pyfunc, *, excluded=frozenset(), signature=None):
    """jnp.vectorize: pyfunc on the core axes of its arguments (none, or those `signature`
    names), mapped over the broadcast leading axes by nested vmap. Positional indices and
    keyword names in `excluded`, and all keyword arguments, are passed through as they are."""
    import functools
    in_core = _parse_signature(signature)[0] if signature is not None else None

    @functools.wraps(pyfunc)
    def wrapped(*args, **kwargs):
        mapped = [i for i in range(len(args)) if i not in excluded]
        cores = in_core if in_core is not None else [()] * len(mapped)
        if len(cores) != len(mapped):
            raise TypeError(f"vectorize signature {signature!r} has {len(cores)} inputs, got "
                            f"{len(mapped)} arguments")
        xs = [asarray(args[i]) for i in mapped]
        for x, c in zip(xs, cores):
            if x.ndim < len(c):
                raise ValueError(f"vectorize: an argument of shape {x.shape} has fewer axes "
                                 f"than its core dimensions {c}")
        loop = broadcast_shapes(*[x.shape[:x.ndim - len(c)] for x, c in zip(xs, cores)])
        xs = [broadcast_to(x, loop + x.shape[x.ndim - len(c):]) for x, c in zip(xs, cores)]

        def core_fn(*vals):
            full = list(args)
            for i, v in zip(mapped, vals):
                full[i] = v
            return pyfunc(*full, **kwargs)
        f = core_fn
        for _ in loop:
            f = _vmap(f)
        return f(*xs)
    return wrapped


def apply_along_axis(func1d, axis, arr, *args, **kwargs):
    """func1d on every 1-D slice along `axis` (by vmap over the other axes); the slices'
    results take the axis' place (jnp.apply_along_axis)."""
    arr = asarray(arr)
    axis = prim.normalize_axis(axis, arr.ndim)
    f = lambda a: func1d(a, *args, **kwargs)  # noqa: E731
    for i in range(1, arr.ndim - axis):
        f = _vmap(f, in_axes=i, out_axes=-1)
    for _ in range(axis):
        f = _vmap(f)
    return f(arr)


def _vector_norm(x, ord, axis, keepdims):  # noqa: A002 (NumPy's name)
    if ord is None or ord == 2:
        return sqrt(sum(multiply(x, x), axis, keepdims=keepdims))
    if isinstance(ord, str):
        raise ValueError(f"Invalid order {ord!r} for vector norm")
    if ord == np.inf:
        return max(abs(x), axis, keepdims=keepdims)
    if ord == -np.inf:
        return min(abs(x), axis, keepdims=keepdims)
    if ord == 0:
        return sum(not_equal(x, 0), axis, dtype=x.dtype, keepdims=keepdims)
    if ord == 1:
        return sum(abs(x), axis, keepdims=keepdims)
    p = np.asarray(ord, x.dtype)
    return power(sum(power(abs(x), p), axis, keepdims=keepdims), np.asarray(1 / p, x.dtype))


def _singular_value_norm(x, ord, axes, keepdims):  # noqa: A002
    """Matrix norms of the singular values (the core svd op without vectors, as
    lnp.linalg.svdvals): 2 the largest, -2 the smallest, 'nuc' their sum."""
    m = moveaxis(x, axes, (-2, -1))
    s = bind("svd", m, full_matrices=0, compute_uv=0)
    out = {2: max, -2: min, "nuc": sum}[ord](s, -1)
    if keepdims:
        for a in sorted(axes):
            out = expand_dims(out, a)
    return out


def _matrix_norm(x, ord, axes, keepdims):  # noqa: A002
    """jax.numpy's matrix norms over the axis pair (rows, cols) = axes."""
    rows, cols = axes
    if ord in (None, "fro"):
        return sqrt(sum(multiply(x, x), axes, keepdims=keepdims))
    if ord in (1, -1, np.inf, -np.inf):
        inner, outer = (rows, cols) if ord in (1, -1) else (cols, rows)   # 1: max column sum
        if not keepdims and outer > inner:
            outer -= 1
        pick = max if ord in (1, np.inf) else min
        return pick(sum(abs(x), inner, keepdims=keepdims), outer, keepdims=keepdims)
    if ord in (2, -2, "nuc"):
        return _singular_value_norm(x, ord, axes, keepdims)
    raise ValueError(f"Invalid order {ord!r} for matrix norm")


class _Linalg:
    """lnp.linalg: what the core ops cover (norm, det)."""

    @staticmethod
    def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
        """jax.numpy.linalg.norm: vector norms (any p, inf, -inf, 0) over one axis, matrix
        norms ('fro', 1, -1, inf, -inf, and 2, -2, 'nuc' of the singular values) over two; axis None: the
        2-norm of everything for ord None, else a vector or matrix norm by x's rank. Of a
        complex x, the norms of |x|."""
        x = _as_float(x)
        x = abs(x) if x.dtype.kind == "c" else x
        if axis is None:
            if ord is None:
                return sqrt(sum(multiply(x, x), keepdims=keepdims))
            axis = tuple(range(x.ndim))
        axes = (prim.normalize_axis(axis, x.ndim),) if not isinstance(axis, (tuple, list)) \
            else tuple(prim.normalize_axis(a, x.ndim) for a in axis)
        if len(axes) == 1:
            return _vector_norm(x, ord, axes[0], keepdims)
        if len(axes) == 2 and axes[0] != axes[1]:
            return _matrix_norm(x, ord, axes, keepdims)
        raise ValueError(f"Improper number of dimensions to norm: axis={axis!r} of a "
                         f"{x.ndim}-d array")

    @staticmethod
    def det(a):
        return bind("det", _as_float(a))


from . import linalg  # noqa: E402  (lnp.linalg is lgc/trace/linalg.py; norm stays above)

from . import fft  # noqa: E402  (lnp.fft: jax.numpy.fft, built on the functions above)


def __getattr__(name):
    raise AttributeError(f"lgc.numpy has no {name!r} yet (jax.numpy has more; see "
                         f"docs/TRACING.md for what is covered)")
