"""lgc.lax: structured control flow and a few lax primitives (jax.lax names).

Every shape in the IR is static. `cond`/`switch` with a traced predicate compute every
branch and select the result (identical for side-effect-free branches); `fori_loop` with
static bounds and `scan` unroll over their trip count. `while_loop` inside a trace (jit,
make_ir, export), and `fori_loop` with traced bounds, become one `while` op whose condition
and body are graphs of their own, run by the host around their kernels (lgc/trace/control.py,
lgc/ops/control.py). Outside a trace a concrete predicate or bound runs the Python loop.
"""
from __future__ import annotations

import numpy as np

from . import nn
from . import numpy as lnp
from .ops.core import ArrayBase, ConcretizationError, Tracer, bind, dynamic_mains
from .trace import autodiff, pytree
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


def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands); pred is a scalar."""
    if lnp.shape(pred) != ():
        raise TypeError(f"cond predicate must be a scalar, got shape {lnp.shape(pred)}")
    p = _concrete(pred)
    if p is not None:
        return true_fun(*operands) if bool(p) else false_fun(*operands)
    t, f = true_fun(*operands), false_fun(*operands)
    lt, lf, tree = _check_same_types(t, f, "cond")
    return pytree.unflatten(tree, [lnp.where(pred, a, b) for a, b in zip(lt, lf)])


def switch(index, branches, *operands):
    """branches[clamp(index)](*operands)."""
    n = len(branches)
    i = _concrete(index)
    if i is not None:
        return branches[int(np.clip(i, 0, n - 1))](*operands)
    outs = [b(*operands) for b in branches]
    index = lnp.clip(index, 0, n - 1)
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


def dynamic_slice(operand, start_indices, slice_sizes):
    """operand[start:start+size] per axis with possibly traced starts, clamped into range
    (as jax.lax.dynamic_slice); a gather per axis with a static size."""
    x = lnp.asarray(operand)
    for axis, (s, k) in enumerate(zip(start_indices, slice_sizes)):
        n = x.shape[axis]
        if k == n:
            continue
        c = _concrete(s)
        if c is not None:
            s0 = int(np.clip(int(c), 0, n - k))
            x = lnp.take(x, np.arange(s0, s0 + k, dtype=np.int32), axis=axis)
        else:
            start = lnp.clip(lnp.astype(s, lnp.int32), 0, n - k)
            x = lnp.take(x, lnp.add(lnp.arange(k), start), axis=axis)
    return x


def dynamic_update_slice(operand, update, start_indices):
    x, u = lnp.asarray(operand), lnp.asarray(update)
    idx = []
    for axis, s in enumerate(start_indices):
        n, k = x.shape[axis], u.shape[axis]
        start = lnp.clip(lnp.astype(s, lnp.int32) if isinstance(s, ArrayBase) else int(s), 0, n - k)
        shape = [1] * x.ndim
        shape[axis] = k
        idx.append(lnp.reshape(lnp.add(lnp.arange(k), start), tuple(shape)))
    return x.at[tuple(idx)].set(u)


# lax names for elementwise ops (jax.lax applies no promotion; lnp's promotion agrees on
# same-dtype operands, which is all lax accepts)
add, sub, mul, div = lnp.add, lnp.subtract, lnp.multiply, lnp.true_divide
max, min, pow, rem = lnp.maximum, lnp.minimum, lnp.power, lnp.fmod  # noqa: A001
neg, abs, sign, floor, ceil, round = lnp.negative, lnp.abs, lnp.sign, lnp.floor, lnp.ceil, lnp.rint  # noqa: A001
exp, log, log1p, expm1, sqrt, rsqrt = lnp.exp, lnp.log, lnp.log1p, lnp.expm1, lnp.sqrt, lnp.rsqrt
sin, cos, tan, tanh, atan2 = lnp.sin, lnp.cos, lnp.tan, lnp.tanh, lnp.arctan2
eq, ne, lt, le, gt, ge = (lnp.equal, lnp.not_equal, lnp.less, lnp.less_equal, lnp.greater,
                          lnp.greater_equal)
bitwise_and, bitwise_or, bitwise_not = lnp.bitwise_and, lnp.bitwise_or, lnp.invert
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


def sort(operand, dimension: int = -1, is_stable: bool = True):
    return lnp.sort(operand, axis=dimension)


def argmax(operand, axis: int, index_dtype=np.int32):
    return lnp.astype(lnp.argmax(operand, axis), index_dtype)


def argmin(operand, axis: int, index_dtype=np.int32):
    return lnp.astype(lnp.argmin(operand, axis), index_dtype)


def clamp(min, x, max):  # noqa: A002 (jax.lax's argument names)
    return lnp.clip(x, min, max)


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
    import builtins
    idx = tuple(builtins.slice(s, e, st) for s, e, st in
                zip(start_indices, limit_indices, strides or (1,) * len(start_indices)))
    return lnp.asarray(operand)[idx]


def slice_in_dim(operand, start_index, limit_index, stride=1, axis=0):
    import builtins
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


def pad(operand, padding_value, padding_config):
    """[(lo, hi, interior)] per axis; interior padding is not supported (no core op)."""
    if any(c[2] for c in padding_config):
        raise NotImplementedError("lax.pad with interior padding")
    return lnp.pad(operand, [(lo, hi) for lo, hi, _ in padding_config],
                   constant_values=padding_value)


def full(shape, fill_value, dtype=None):
    return lnp.full(shape, fill_value, dtype)


def full_like(x, fill_value, dtype=None, shape=None):
    return lnp.full_like(x, fill_value, dtype, shape)


def cumsum(operand, axis: int = 0, reverse: bool = False):
    x = lnp.asarray(operand)
    if reverse:
        return lnp.flip(lnp.cumsum(lnp.flip(x, axis), axis), axis)
    return lnp.cumsum(x, axis)


def map(f, xs):  # noqa: A001 (jax.lax.map)
    """f over the leading axis of xs (unrolled), stacked."""
    return scan(lambda c, x: (c, f(x)), None, xs)[1]
