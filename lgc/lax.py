"""lgc.lax: structured control flow and jax.lax's functions (names, signatures, typing).

Every shape in the IR is static. `cond`/`switch` with a traced predicate compute every
branch and select the result (identical for side-effect-free branches), and under grad
select each branch's cotangents (lgc/trace/autodiff.py, branch_guard); `fori_loop` with
static bounds and `scan` unroll over their trip count. `while_loop` inside a trace (jit,
make_ir, export), and `fori_loop` with traced bounds, become one `while` op whose condition
and body are graphs of their own, run by the host around their kernels (lgc/trace/control.py,
lgc/ops/control.py). Outside a trace a concrete predicate or bound runs the Python loop.
Functions take operands of one dtype, as jax.lax's (lgc.numpy's promote); convolutions,
windowed reductions and padding are in lgc/trace/convolution.py, bit functions in
lgc/trace/bitwise.py: all are compositions of core ops, so grad, vmap and jit apply.
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from . import nn
from . import numpy as lnp
from .ops import prim
from .ops.core import ArrayBase, ConcretizationError, Tracer, bind, dynamic_mains, get_aval
from .random import _erfinv as _erfinv_f32   # XLA's float32 erfinv (lgc.random.normal's)
from .trace import autodiff, bitwise, convolution, pytree
from .trace.batching import any_example
from .trace.control import stage_while


def _concrete(x):
    """A Python value for x when it is known now (not traced), else None."""
    if isinstance(x, Tracer):
        return None
    return np.asarray(x)


def _check_same_types(a, b, what):
    la, ta = pytree.flatten(a)
    lb, tb = pytree.flatten(b)
    if ta != tb:
        raise TypeError(f"{what}: branches return different structures {ta} and {tb}")
    for x, y in zip(la, lb):
        if lnp.shape(x) != lnp.shape(y) or lnp.result_type(x) != lnp.result_type(y):
            raise TypeError(f"{what}: branch results differ: {lnp.shape(x)} {lnp.result_type(x)} "
                            f"vs {lnp.shape(y)} {lnp.result_type(y)}")
    return la, lb, ta


def select(pred, on_true, on_false):
    return lnp.where(pred, on_true, on_false)


def _as_pred(pred):
    """cond's predicate as a bool scalar (a number means pred != 0, as in JAX)."""
    p = lnp.asarray(pred)
    return p if p.dtype == np.bool_ else lnp.not_equal(p, 0)


def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands); pred is a scalar. With a traced
    pred both branches run and the result is selected; under grad each branch's cotangents
    are selected too, so the branch not taken adds exact zeros (even where its own gradient
    is infinite or NaN), as JAX's cond."""
    if lnp.shape(pred) != ():
        raise TypeError(f"cond predicate must be a scalar, got shape {lnp.shape(pred)}")
    p = _concrete(pred)
    if p is not None:
        return true_fun(*operands) if bool(p) else false_fun(*operands)
    pred = _as_pred(pred)
    with autodiff.branch_guard(pred):
        t = true_fun(*operands)
    with autodiff.branch_guard(lnp.logical_not(pred)):
        f = false_fun(*operands)
    lt, lf, tree = _check_same_types(t, f, "cond")
    return pytree.unflatten(tree, [lnp.where(pred, a, b) for a, b in zip(lt, lf)])


def switch(index, branches, *operands):
    """branches[clamp(index, 0, len - 1)](*operands); a traced index runs every branch and
    selects (results and, under grad, cotangents), as cond."""
    n = len(branches)
    i = _concrete(index)
    if i is not None:
        return branches[int(np.clip(i, 0, n - 1))](*operands)
    index = lnp.clip(lnp.astype(index, np.int32), 0, n - 1)
    outs = []
    for k, b in enumerate(branches):
        with autodiff.branch_guard(lnp.equal(index, k)):
            outs.append(b(*operands))
    leaves, tree = pytree.flatten(outs[0])
    for o in outs[1:]:
        _check_same_types(outs[0], o, "switch")
    result = leaves
    for k in range(1, n):
        lk = pytree.flatten(outs[k])[0]
        result = [lnp.where(lnp.equal(index, k), b, a) for a, b in zip(result, lk)]
    return pytree.unflatten(tree, result)


def fori_loop(lower, upper, body_fun, init_val, *, unroll=None):
    """for i in range(lower, upper): val = body_fun(i, val); unrolled when the bounds are
    static, else a while_loop over (i, upper, val) (which grad cannot go back through)."""
    lo, hi = _concrete(lower), _concrete(upper)
    if lo is None or hi is None:
        dt = lnp.result_type(lower, upper)
        i0 = lnp.astype(lnp.asarray(lower), dt)
        _, _, val = while_loop(lambda c: lnp.less(c[0], c[1]),
                               lambda c: (lnp.add(c[0], lnp.asarray(1, dt)), c[1],
                                          body_fun(c[0], c[2])),
                               (i0, lnp.astype(lnp.asarray(upper), dt), init_val))
        return val
    val = init_val
    for i in range(int(lo), int(hi)):
        val = body_fun(i, val)
    return val


def while_loop(cond_fun, body_fun, init_val):
    """while cond_fun(val): val = body_fun(val). Inside jit/make_ir/export: one `while` op
    (body and condition traced once; the carry keeps its shapes and dtypes). Outside, on
    concrete values: a Python loop; under an eager vmap it runs while any example goes on,
    and finished examples keep their value."""
    if dynamic_mains:
        return stage_while(cond_fun, body_fun, init_val)
    val = init_val
    while True:
        c = cond_fun(val)
        if isinstance(c, Tracer) and any_example(c) is not None:   # batched, eager
            if not any_example(c):
                return val
            new = body_fun(val)
            val = pytree.tree_map(lambda n, o: lnp.where(c, n, o), new, val)
            continue
        if isinstance(c, Tracer):
            try:
                c = bool(c)   # concrete under grad/jvp outside jit: the loop runs eagerly
            except ConcretizationError:
                raise ConcretizationError(
                    "while_loop with a traced condition: its trip count depends on data, and "
                    "lgc graphs are static (loops are unrolled when tracing). Use fori_loop or "
                    "scan with a static bound (masking finished steps with lnp.where), or run "
                    "it eagerly") from None
        if not bool(c):
            return val
        val = body_fun(val)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """carry, y = f(carry, x) over the leading axis of xs (a pytree); unrolled.
    Returns (final carry, stacked ys)."""
    x_leaves, x_tree = pytree.flatten(xs)
    n = length if length is not None else (lnp.shape(x_leaves[0])[0] if x_leaves else None)
    if n is None:
        raise ValueError("scan needs xs or length")
    steps = range(n - 1, -1, -1) if reverse else range(n)
    carry, ys = init, []
    for i in steps:
        x = pytree.unflatten(x_tree, [leaf[i] for leaf in x_leaves])
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    if not ys:
        return carry, None
    y_leaves = [pytree.flatten(y)[0] for y in ys]
    tree = pytree.flatten(ys[0])[1]
    stacked = [lnp.stack([yl[k] for yl in y_leaves]) for k in range(len(y_leaves[0]))]
    return carry, pytree.unflatten(tree, stacked)


def stop_gradient(x):
    """x, with no gradient flowing back through it (at any order)."""
    return pytree.tree_map(lambda v: lnp.asarray(v) if isinstance(v, ArrayBase) else v,
                           autodiff.stop_gradient(x))


def _start(s, n: int, k: int):
    """A dynamic start index as JAX takes it: negative counts from the end (once), then
    clamped so the k-long window fits in n."""
    c = _concrete(s)
    if c is not None:
        c = int(c)
        return int(np.clip(c + n if c < 0 else c, 0, n - k))
    s = lnp.astype(s, lnp.int32)
    return lnp.clip(lnp.where(lnp.less(s, 0), lnp.add(s, n), s), 0, n - k)


def dynamic_slice(operand, start_indices, slice_sizes):
    """operand[start:start+size] per axis with possibly traced starts (as
    jax.lax.dynamic_slice: negative starts count from the end, then clamped into range);
    a gather per axis with a static size."""
    x = lnp.asarray(operand)
    if len(start_indices) != x.ndim or len(slice_sizes) != x.ndim:
        raise ValueError(f"dynamic_slice: {len(start_indices)} start indices and "
                         f"{len(slice_sizes)} sizes for a {x.ndim}-d operand")
    for axis, (s, k) in enumerate(zip(start_indices, slice_sizes)):
        n = x.shape[axis]
        if not 0 <= k <= n:
            raise ValueError(f"dynamic_slice: size {k} does not fit axis {axis} of size {n}")
        if k == n:
            continue
        start = _start(s, n, k)
        if isinstance(start, int):
            x = prim.slice_in_dim(x, start, start + k, 1, axis)
        else:
            x = lnp.take(x, lnp.add(lnp.arange(k), start), axis=axis)
    return x


def dynamic_update_slice(operand, update, start_indices):
    """operand with update written at the start indices (negative from the end, clamped so
    it fits), as jax.lax.dynamic_update_slice."""
    x, u = lnp.asarray(operand), lnp.asarray(update)
    idx = []
    for axis, s in enumerate(start_indices):
        n, k = x.shape[axis], u.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = k
        idx.append(lnp.reshape(lnp.add(lnp.arange(k), _start(s, n, k)), tuple(shape)))
    return x.at[tuple(idx)].set(u)


# ---- elementwise: lax's typing (no promotion) ------------------------------------------------

def _same_dtype(name, *xs):
    """lax's operands share one dtype: no promotion. A weakly typed operand (a Python scalar,
    or an array computed from Python scalars only) takes the others' dtype, as in JAX."""
    avals = [get_aval(x) for x in xs]
    strong = sorted({str(a.dtype) for a in avals if not a.weak_type})
    if len(strong) > 1:
        raise TypeError(f"lax.{name} requires arguments to have the same dtype, got "
                        f"{', '.join(strong)} (lgc.numpy's functions promote; or convert with "
                        f"lax.convert_element_type)")
    if not strong:
        return xs
    dt = np.dtype(strong[0])
    out = []
    for x, a in zip(xs, avals):
        if isinstance(x, ArrayBase) and a.weak_type and a.dtype != dt:
            if "biuf".index(a.dtype.kind) > "biuf".index(dt.kind):
                raise TypeError(f"lax.{name}: a weakly typed {a.dtype} operand would change its "
                                f"value as {dt}; convert it first")
            x = lnp.astype(x, dt)
        out.append(x)
    return tuple(out)


def _lax_binary(name, fn):
    def op(x, y):
        return fn(*_same_dtype(name, x, y))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"jax.lax.{name}: elementwise, on operands of one dtype (no promotion)."
    return op


def _rem(x, y):
    """The remainder of a division that truncates toward zero (C's fmod; sign of x)."""
    (x, y), weak = prim._operands(lnp.asarray(x), y)
    return bind("mod", x, y, fmod=1, weak=weak)


add, sub, mul = (_lax_binary(n, f) for n, f in (("add", prim.add), ("sub", prim.sub),
                                                 ("mul", prim.mul)))
div = _lax_binary("div", prim.div)   # integers: rounded toward zero, as C and XLA
rem = _lax_binary("rem", _rem)
max = _lax_binary("max", lnp.maximum)  # noqa: A001
min = _lax_binary("min", lnp.minimum)  # noqa: A001
atan2 = _lax_binary("atan2", lnp.arctan2)
bitwise_and = _lax_binary("bitwise_and", lnp.bitwise_and)
bitwise_or = _lax_binary("bitwise_or", lnp.bitwise_or)
bitwise_xor = _lax_binary("bitwise_xor", lnp.bitwise_xor)
eq, ne, lt, le, gt, ge = (_lax_binary(n, f) for n, f in (
    ("eq", lnp.equal), ("ne", lnp.not_equal), ("lt", lnp.less), ("le", lnp.less_equal),
    ("gt", lnp.greater), ("ge", lnp.greater_equal)))


def pow(x, y):  # noqa: A001 (jax.lax.pow)
    """x ** y: y of x's dtype, or an integer exponent of a float base (as jax.lax.pow)."""
    ax, ay = get_aval(x), get_aval(y)
    if ax.dtype.kind == "f" and ay.dtype.kind in "iu" and not ay.weak_type:
        return lnp.power(x, lnp.astype(y, ax.dtype))
    return lnp.power(*_same_dtype("pow", x, y))


neg, abs, sign, floor, ceil, round = lnp.negative, lnp.abs, lnp.sign, lnp.floor, lnp.ceil, lnp.rint  # noqa: A001
exp, log, log1p, expm1, sqrt, rsqrt = lnp.exp, lnp.log, lnp.log1p, lnp.expm1, lnp.sqrt, lnp.rsqrt
sin, cos, tan, tanh = lnp.sin, lnp.cos, lnp.tan, lnp.tanh
bitwise_not = lnp.invert
square, reciprocal = lnp.square, lnp.reciprocal


def logistic(x):
    return nn.sigmoid(x)


def erf(x):
    (x,), dt, weak = lnp._promote(x, to_float=True)
    return bind("erf", x, weak=weak)


def convert_element_type(operand, new_dtype):
    return lnp.astype(operand, new_dtype)


def broadcast_in_dim(operand, shape, broadcast_dimensions):
    x = lnp.asarray(operand)
    expanded = [1] * len(shape)
    for d, b in zip(x.shape, broadcast_dimensions):
        expanded[b] = d
    return lnp.broadcast_to(lnp.reshape(x, tuple(expanded)), tuple(shape))


def reduce_sum(operand, axes):
    return lnp.sum(operand, axis=tuple(axes))


def reduce_max(operand, axes):
    return lnp.max(operand, axis=tuple(axes))


def iota(dtype, size):
    return lnp.arange(size, dtype=dtype)


# ---- structural lax ops ----------------------------------------------------------------------

def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)) as in jax.lax: lowered to an
    einsum (batch dims first, then lhs free, then rhs free)."""
    (lc, rc), (lb, rb) = dimension_numbers
    lhs, rhs = lnp.asarray(lhs), lnp.asarray(rhs)
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ls, rs = [None] * lhs.ndim, [None] * rhs.ndim
    for i, j in zip(lb, rb):
        ls[i] = rs[j] = next(letters)
    for i, j in zip(lc, rc):
        ls[i] = rs[j] = next(letters)
    for k in range(lhs.ndim):
        ls[k] = ls[k] or next(letters)
    for k in range(rhs.ndim):
        rs[k] = rs[k] or next(letters)
    out = [ls[i] for i in lb] + [c for k, c in enumerate(ls) if k not in lb and k not in lc] + \
        [c for k, c in enumerate(rs) if k not in rb and k not in rc]
    y = lnp.einsum(f"{''.join(ls)},{''.join(rs)}->{''.join(out)}", lhs, rhs)
    return y if preferred_element_type is None else lnp.astype(y, preferred_element_type)


def dot(lhs, rhs, precision=None, preferred_element_type=None):
    y = lnp.dot(lhs, rhs)
    return y if preferred_element_type is None else lnp.astype(y, preferred_element_type)


def top_k(operand, k: int):
    """The k largest along the last axis, sorted, and their int32 indices (one topk op)."""
    x = lnp.asarray(operand)
    vals, idx = bind("topk", x, axis=x.ndim - 1, k=int(k), largest=1)
    return vals, lnp.astype(idx, lnp.int32)


def sort(operand, dimension: int = -1, is_stable: bool = True, num_keys: int = 1):
    """jax.lax.sort: one array sorted, or a sequence of arrays of one shape sorted together
    (a tuple back) by the first num_keys of them, lexicographically. Stable; NaN sorts last
    and -0.0 equals 0.0, as JAX. Keys are ordered by stable argsorts (one topk each), least
    significant first; every operand is then gathered by the permutation."""
    if not isinstance(operand, (tuple, list)):
        if num_keys != 1:
            raise ValueError(f"sort: num_keys={num_keys} needs that many operands")
        return lnp.sort(operand, axis=dimension)
    ops = [lnp.asarray(o) for o in operand]
    if not 1 <= num_keys <= len(ops):
        raise ValueError(f"sort: num_keys={num_keys} for {len(ops)} operands")
    if any(o.shape != ops[0].shape for o in ops) or ops[0].ndim == 0:
        raise TypeError(f"sort: operands need one shape of rank >= 1, got "
                        f"{[o.shape for o in ops]}")
    axis = prim.normalize_axis(dimension, ops[0].ndim)
    perm = None
    for key in reversed(ops[:num_keys]):
        k = key if perm is None else lnp.take_along_axis(key, perm, axis)
        p = lnp.argsort(k, axis=axis)
        perm = p if perm is None else lnp.take_along_axis(perm, p, axis)
    return tuple(lnp.take_along_axis(o, perm, axis) for o in ops)


def sort_key_val(keys, values, dimension: int = -1, is_stable: bool = True):
    """(keys sorted, values in the keys' order) along dimension."""
    return sort((keys, values), dimension, is_stable, num_keys=1)


def argmax(operand, axis: int, index_dtype=np.int32):
    return lnp.astype(lnp.argmax(operand, axis), index_dtype)


def argmin(operand, axis: int, index_dtype=np.int32):
    return lnp.astype(lnp.argmin(operand, axis), index_dtype)


def clamp(min, x, max):  # noqa: A002 (jax.lax's argument names)
    """min(max(x, min), max); min and max are scalars or of x's shape, of x's dtype. The
    gradient is JAX's: to x strictly inside (min, max), to min where min > x (and min < max),
    to max where max < x; nothing at the bounds themselves."""
    x, lo, hi = _same_dtype("clamp", x, min, max)
    x = lnp.asarray(x)
    value = lnp.minimum(lnp.maximum(x, lo), hi)
    if x.dtype.kind != "f":
        return value
    at_lo = lnp.logical_and(lnp.greater(lo, x), lnp.less(lo, hi))
    at_hi = lnp.less(hi, x)
    inside = lnp.logical_and(lnp.greater(x, lo), lnp.less(x, hi))
    rest = lnp.where(inside, x, stop_gradient(value))
    return lnp.broadcast_to(lnp.where(at_lo, lo, lnp.where(at_hi, hi, rest)), x.shape)


def integer_pow(x, y: int):
    """x ** y for a static integer y, by repeated squaring (exact, no pow op)."""
    x = lnp.asarray(x)
    if y == 0:
        return lnp.ones_like(x)
    base, result, n = x, None, builtins_abs(y)
    while n:
        if n & 1:
            result = base if result is None else lnp.multiply(result, base)
        n >>= 1
        if n:
            base = lnp.multiply(base, base)
    return lnp.reciprocal(result) if y < 0 else result


def builtins_abs(v):
    return v if v >= 0 else -v


def reshape(operand, new_sizes, dimensions=None):
    x = lnp.asarray(operand)
    if dimensions is not None:
        x = lnp.transpose(x, dimensions)
    return lnp.reshape(x, tuple(new_sizes))


def transpose(operand, permutation):
    return lnp.transpose(operand, permutation)


def expand_dims(array, dimensions):
    return lnp.expand_dims(array, tuple(dimensions))


def squeeze(array, dimensions):
    return lnp.squeeze(array, tuple(dimensions))


def concatenate(operands, dimension: int):
    return lnp.concatenate(operands, dimension)


def slice(operand, start_indices, limit_indices, strides=None):  # noqa: A001
    idx = tuple(builtins.slice(s, e, st) for s, e, st in
                zip(start_indices, limit_indices, strides or (1,) * len(start_indices)))
    return lnp.asarray(operand)[idx]


def slice_in_dim(operand, start_index, limit_index, stride=1, axis=0):
    x = lnp.asarray(operand)
    idx = [builtins.slice(None)] * x.ndim
    idx[axis] = builtins.slice(start_index, limit_index, stride)
    return x[tuple(idx)]


def dynamic_slice_in_dim(operand, start_index, slice_size, axis=0):
    x = lnp.asarray(operand)
    starts = [0] * x.ndim
    sizes = list(x.shape)
    starts[axis], sizes[axis] = start_index, slice_size
    return dynamic_slice(x, starts, sizes)


pad = convolution.pad_general


def full(shape, fill_value, dtype=None):
    return lnp.full(shape, fill_value, dtype)


def full_like(x, fill_value, dtype=None, shape=None):
    return lnp.full_like(x, fill_value, dtype, shape)


def _cumulative(op: str):
    def fn(operand, axis: int = 0, reverse: bool = False):
        x = lnp.asarray(operand)
        return bind(op, x, axis=prim.normalize_axis(axis, x.ndim), reverse=int(reverse),
                    weak=x.weak_type)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"jax.lax.{op}: along axis (from the end with reverse), in the operand's dtype."
    return fn


cumsum, cumprod = _cumulative("cumsum"), _cumulative("cumprod")


def associative_scan(fn, elems, reverse: bool = False, axis: int = 0):
    """jax.lax.associative_scan: the inclusive scan of an associative fn over axis of the
    pytree elems, in log2(n) rounds of slices (JAX's algorithm: combine pairs, scan the
    half, fill in the even positions), so gradients through it are JAX's too."""
    leaves, tree = pytree.flatten(elems)
    leaves = [lnp.asarray(x) for x in leaves]
    if not leaves:
        return elems
    axis = prim.normalize_axis(axis, leaves[0].ndim)
    n = leaves[0].shape[axis]
    if any(x.shape[axis] != n for x in leaves):
        raise ValueError(f"associative_scan: elems need one length along axis {axis}, got "
                         f"{[x.shape for x in leaves]}")

    def combine(a, b):
        return [lnp.asarray(c) for c in pytree.flatten(
            fn(pytree.unflatten(tree, a), pytree.unflatten(tree, b)))[0]]

    def cut(xs, start, stop=None, step=1):
        return [prim.slice_in_dim(x, start, stop, step, axis) for x in xs]

    def scan_(xs):
        m = xs[0].shape[axis]
        if m < 2:
            return xs
        odd = scan_(combine(cut(xs, 0, -1, 2), cut(xs, 1, None, 2)))
        if m > 2:   # even positions after the first: odd prefix combined with the next element
            rest = cut(xs, 2, None, 2)
            even = combine(cut(odd, 0, -1) if m % 2 == 0 else odd, rest)
            even = [prim.concatenate([f, e], axis) for f, e in zip(cut(xs, 0, 1), even)]
        else:
            even = cut(xs, 0, 1)
        return [_interleave(e, o, axis) for e, o in zip(even, odd)]

    if reverse:
        leaves = [prim.flip(x, axis) for x in leaves]
    out = scan_(leaves)
    if reverse:
        out = [prim.flip(x, axis) for x in out]
    return pytree.unflatten(tree, out)


def _interleave(a, b, axis):
    """a[0], b[0], a[1], b[1], ... along axis (a has as many elements as b, or one more)."""
    m, longer = a.shape[axis], a.shape[axis] > b.shape[axis]
    if longer:
        width = [(0, 0)] * b.ndim
        width[axis] = (0, 1)
        b = prim.pad(b, width)
    ab = prim.concatenate([prim.expand_dims(a, axis + 1), prim.expand_dims(b, axis + 1)], axis + 1)
    ab = prim.reshape(ab, a.shape[:axis] + (2 * m,) + a.shape[axis + 1:])
    return prim.slice_in_dim(ab, 0, 2 * m - longer, 1, axis)


def _cum_by_scan(combine, name):
    def fn(operand, axis: int = 0, reverse: bool = False):
        return associative_scan(combine, lnp.asarray(operand), reverse=reverse, axis=axis)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"jax.lax.{name}: an associative_scan along axis (from the end with reverse)."
    return fn


cummax = _cum_by_scan(lnp.maximum, "cummax")
cummin = _cum_by_scan(lnp.minimum, "cummin")
cumlogsumexp = _cum_by_scan(lnp.logaddexp, "cumlogsumexp")


def map(f, xs):  # noqa: A001 (jax.lax.map)
    """f over the leading axis of xs (unrolled), stacked."""
    return scan(lambda c, x: (c, f(x)), None, xs)[1]


# ---- more lax ops (jax.lax names and signatures) ------------------------------------------------

def rev(operand, dimensions):
    """operand reversed along each of dimensions."""
    return prim.flip(lnp.asarray(operand), tuple(dimensions))


def index_in_dim(operand, index, axis: int = 0, keepdims: bool = True):
    """operand[..., index, ...] along axis with a static index (keepdims keeps the axis)."""
    return prim.index_in_dim(lnp.asarray(operand), index, axis, keepdims)


def dynamic_index_in_dim(operand, index, axis: int = 0, keepdims: bool = True):
    """operand[..., index, ...] along axis with a possibly traced index (negative from the
    end, then clamped, as dynamic_slice)."""
    y = dynamic_slice_in_dim(operand, index, 1, axis)
    return y if keepdims else lnp.squeeze(y, axis)


def select_n(which, *cases):
    """cases[which] elementwise: which is bool (two cases) or an integer array (or scalar);
    every case has one shape and dtype."""
    if not cases:
        raise ValueError("select_n needs at least one case")
    cases = _same_dtype("select_n", *cases)
    if len(cases) == 1:
        return lnp.asarray(cases[0])
    w = lnp.asarray(which)
    if w.dtype == np.bool_:
        if len(cases) != 2:
            raise TypeError(f"select_n with a bool selector takes two cases, got {len(cases)}")
        return lnp.where(w, cases[1], cases[0])
    if w.dtype.kind not in "iu":
        raise TypeError(f"select_n selector must be bool or integer, got {w.dtype}")
    out = cases[0]
    for k in range(1, len(cases)):
        out = lnp.where(lnp.equal(w, k), cases[k], out)
    return out


def erf_inv(x):
    """The inverse of erf (jax.lax.erf_inv): XLA's float32 polynomial (as lgc.random.normal
    uses), two Newton steps more for float64; gradient sqrt(pi)/2 exp(erf_inv(x)^2)."""
    return _erf_inv(lnp.asarray(x) if lnp.result_type(x).kind == "f"
                    else lnp.astype(x, lnp.result_type(x, 1.0)))


@autodiff.custom_jvp
def _erf_inv(x):
    if x.dtype == np.float16:
        return lnp.astype(_erfinv_f32(lnp.astype(x, np.float32)), np.float16)
    y = _erfinv_f32(x)
    if x.dtype == np.float64:
        for _ in range(2):   # y -= (erf(y) - x) / erf'(y)
            step = lnp.divide(lnp.subtract(erf(y), x),
                              lnp.multiply(2 / np.sqrt(np.pi), lnp.exp(lnp.negative(lnp.square(y)))))
            y = lnp.where(lnp.isfinite(y), lnp.subtract(y, step), y)
    return y


@_erf_inv.defjvp
def _erf_inv_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = _erf_inv(x)
    return y, lnp.multiply(lnp.multiply(t, np.sqrt(np.pi) / 2), lnp.exp(lnp.square(y)))


shift_left = _lax_binary("shift_left", lnp.left_shift)
shift_right_logical = _lax_binary("shift_right_logical", bitwise.shift_right_logical)
shift_right_arithmetic = _lax_binary("shift_right_arithmetic", bitwise.shift_right_arithmetic)
bitcast_convert_type = bitwise.bitcast_convert_type
population_count = bitwise.population_count


# ---- reductions with a computation ---------------------------------------------------------------

_MONOIDS = {add: "add", prim.add: "add", lnp.add: "add", operator.add: "add",
            mul: "mul", prim.mul: "mul", lnp.multiply: "mul", operator.mul: "mul",
            max: "max", lnp.maximum: "max", prim.maximum: "max",
            min: "min", lnp.minimum: "min", prim.minimum: "min"}


def _monoid(computation, what: str) -> str:
    """'add', 'mul', 'max' or 'min' for a computation that is one of lax's (or lnp's,
    operator's) functions, or carries the tag `lgc_monoid` naming one."""
    tag = getattr(computation, "lgc_monoid", None) or _MONOIDS.get(computation)
    if tag not in ("add", "mul", "max", "min"):
        raise NotImplementedError(
            f"{what}: computation {getattr(computation, '__name__', computation)!r} is not "
            f"lax.add, lax.mul, lax.max or lax.min (or a function tagged with lgc_monoid = "
            f"'add'/'mul'/'max'/'min'); other computations have no lgc lowering")
    return tag


def reduce(operands, init_values, computation, dimensions):
    """jax.lax.reduce for one operand (or a one-element sequence) and a computation that is
    add, mul, max or min: the reduction over dimensions, combined once with init_values."""
    seq = isinstance(operands, (tuple, list))
    if seq and len(operands) != 1:
        raise NotImplementedError("lax.reduce over several operands (a variadic computation)")
    x = lnp.asarray(operands[0] if seq else operands)
    init = init_values[0] if isinstance(init_values, (tuple, list)) else init_values
    monoid = _monoid(computation, "lax.reduce")
    axes = tuple(prim.normalize_axis(a, x.ndim) for a in dimensions)
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if any(x.shape[a] == 0 for a in axes):
        out = lnp.full(shape, init, x.dtype)
    else:
        out = {"add": prim.sum, "mul": prim.prod, "max": prim.max, "min": prim.min}[monoid](
            x, axes) if axes else x
        if not convolution.is_identity(monoid, init, x.dtype):
            out = convolution.COMBINE[monoid](lnp.full(shape, init, x.dtype), out)
    return (out,) if seq else out


def reduce_window(operand, init_value, computation, window_dimensions, window_strides,
                  padding, base_dilation=None, window_dilation=None):
    """jax.lax.reduce_window for a computation that is add, mul, max or min (see _monoid):
    padding 'SAME'/'VALID' or (low, high) pairs, base and window dilation."""
    return convolution.reduce_window(operand, init_value, _monoid(computation, "reduce_window"),
                                     window_dimensions, window_strides, padding, base_dilation,
                                     window_dilation)


# ---- convolutions (lgc/trace/convolution.py) ----------------------------------------------------

ConvDimensionNumbers = convolution.ConvDimensionNumbers
conv_dimension_numbers = convolution.conv_dimension_numbers
conv_general_dilated = convolution.conv_general_dilated
conv_transpose = convolution.conv_transpose
padtype_to_pads = convolution.padtype_to_pads


def conv(lhs, rhs, window_strides, padding, precision=None, preferred_element_type=None):
    """jax.lax.conv: NCHW input, OIHW kernel, no dilation or groups."""
    return conv_general_dilated(lhs, rhs, window_strides, padding, precision=precision,
                                preferred_element_type=preferred_element_type)


def conv_with_general_padding(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                              precision=None, preferred_element_type=None):
    return conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                precision=precision, preferred_element_type=preferred_element_type)
