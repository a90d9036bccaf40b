"""Batching rules (vmap) shared by the op families, and the helpers the per-op rules use.

A rule is `rule(args, dims, attrs) -> (outputs, out_dims)`: `args` are values of the trace
below vmap's (device Arrays, tracers of jit or of an outer transformation, host constants),
`dims[i]` is the axis of args[i] that is the vmapped one (None: not batched; at least one
is batched), `attrs` are normalized. Outputs are returned with the axis each is batched
along. Rules only call `bind` (through the helpers here), so they are staged by an outer
jit, differentiated by grad and batched again by an outer vmap like any other op.
lgc/trace/batching.py has the trace that calls them (BatchTrace).
"""
from __future__ import annotations

import functools

import numpy as np

from ..ir import dtypes
from .core import ShapedArray, bind_list, get_aval, infer_avals


def bind(op: str, *args, **attrs):
    """core.bind for rules: attributes only (the results are not weakly typed); one output,
    or a tuple of them."""
    outs = bind_list(op, args, attrs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def shape(x) -> tuple:
    return get_aval(x).shape


def dtype(x):
    return get_aval(x).dtype


def const(value, dt):
    """A host constant of exactly dtype dt (tracing narrows 64-bit host values by default)."""
    x = bind("broadcast_to", np.asarray(value), shape=np.shape(value))
    if np.dtype(dtype(x)) == np.dtype(dt):
        return x
    return bind("cast", x, to=dtypes.from_numpy(np.dtype(dt)).name)


def axis_size(args, dims) -> int:
    return next(shape(x)[d] for x, d in zip(args, dims) if d is not None)


def moveaxis(x, src: int, dst: int):
    """x with axis src moved to position dst (one transpose, none when it is in place)."""
    if src == dst:
        return x
    perm = [k for k in range(len(shape(x))) if k != src]
    perm.insert(dst, src)
    return bind("transpose", x, perm=tuple(perm))


def reshape(x, new_shape):
    new_shape = tuple(int(d) for d in new_shape)
    return x if shape(x) == new_shape else bind("reshape", x, shape=new_shape)


def broadcast_to(x, new_shape):
    new_shape = tuple(int(d) for d in new_shape)
    return x if shape(x) == new_shape else bind("broadcast_to", x, shape=new_shape)


def to_front(x, d, size: int):
    """x with its batch axis first; an unbatched x is broadcast to the batch (materialized:
    for ops whose operands must agree on every axis)."""
    if d is None:
        return broadcast_to(reshape(x, (1,) + shape(x)), (size,) + shape(x))
    return moveaxis(x, d, 0)


def all_to_front(args, dims):
    n = axis_size(args, dims)
    return [to_front(x, d, n) for x, d in zip(args, dims)]


def take(x, d: int, i: int):
    """x[..., i, ...] on axis d, the axis dropped (slice + reshape)."""
    s = shape(x)
    starts, steps, sizes = [0] * len(s), [1] * len(s), list(s)
    starts[d], sizes[d] = i, 1
    y = bind("slice", x, starts=tuple(starts), steps=tuple(steps), shape=tuple(sizes))
    return reshape(y, s[:d] + s[d + 1:])


def stack(xs):
    """Stack along a new axis 0 (a concat of [1, ...] reshapes)."""
    xs = [reshape(x, (1,) + shape(x)) for x in xs]
    return xs[0] if len(xs) == 1 else bind("concat", *xs, axis=0)


def shift_axis(a: int, d: int) -> int:
    """Per-example axis a in the batched array whose batch axis is d."""
    return a if a < d else a + 1


# ---- generic rules -----------------------------------------------------------------------------

def family(body):
    """A family of rules written once, as body(op, args, dims, attrs, **params): the family
    called with an op name (and params) gives that op's rule."""
    @functools.wraps(body)
    def rule_of(op: str, **params):
        def rule(args, dims, attrs):
            return body(op, args, dims, attrs, **params)
        rule.__name__ = f"batch_{op}"
        return rule
    return rule_of


@family
def loop(op: str, args, dims, attrs):
    """The rule that is always right: apply the op to each example (unrolled at trace time)
    and stack the results. For ops without a specialised rule, or cases a rule skips."""
    n = axis_size(args, dims)
    if n == 0:
        return _empty_batch(op, args, dims, attrs)
    per = [bind_list(op, [x if d is None else take(x, d, i) for x, d in zip(args, dims)],
                     attrs) for i in range(n)]
    return [stack([p[k] for p in per]) for k in range(len(per[0]))], [0] * len(per[0])


def _empty_batch(op, args, dims, attrs):
    """A batch of zero examples: zero-size outputs of the per-example types."""
    avals = []
    for x, d in zip(args, dims):
        a = get_aval(x)
        avals.append(a if d is None else ShapedArray(a.shape[:d] + a.shape[d + 1:], a.dtype))
    outs, _ = infer_avals(op, avals, attrs, False)
    res = [bind("broadcast_to", np.zeros((), o.dtype), shape=(0,) + o.shape) for o in outs]
    return res, [0] * len(res)


@family
def unary(op: str, args, dims, attrs):
    """Elementwise on one operand (and ops that act on each element alone, like cast):
    the batch axis stays where it is."""
    return [bind(op, args[0], **attrs)], [dims[0]]


@family
def broadcasting(op: str, args, dims, attrs):
    """NumPy-broadcasting ops (binary arithmetic, comparisons, where): operands batched on the
    same axis of the same rank keep it; otherwise batched operands get their batch axis first
    and size-1 axes up to the example rank, and unbatched ones broadcast as they are."""
    ranks = [len(shape(x)) - (d is not None) for x, d in zip(args, dims)]
    r = max(ranks)
    batched = {(d, rk) for d, rk in zip(dims, ranks) if d is not None}
    if len(batched) == 1:
        d, rk = next(iter(batched))
        # batched operands agree; unbatched ones broadcast along the axes after d only
        if rk == r and all(dd is not None or rk2 <= r - d for dd, rk2 in zip(dims, ranks)):
            return [bind(op, *args, **attrs)], [d]
    xs = []
    for x, d, rk in zip(args, dims, ranks):
        if d is not None:
            x = moveaxis(x, d, 0)
            s = shape(x)
            x = reshape(x, s[:1] + (1,) * (r - rk) + s[1:])
        xs.append(x)
    return [bind(op, *xs, **attrs)], [0]


@family
def batch_first(op: str, args, dims, attrs, shift=()):
    """Ops on [N, ...] layouts with the batch axis put first and every operand batched;
    `shift` names integer attributes that are axes (moved up by one)."""
    at = dict(attrs)
    for name in shift:   # negative axes count from the end: unchanged
        at[name] = at[name] + (at[name] >= 0)
    outs = bind_list(op, all_to_front(args, dims), at)
    return outs, [0] * len(outs)


@family
def reduce_axes(op: str, args, dims, attrs):
    """reduce_*: the reduced axes step past the batch axis, which stays (moved left by the
    axes dropped in front of it, without keepdims)."""
    d, axes = dims[0], attrs["axes"]
    out_d = d if attrs["keepdims"] else d - sum(a < d for a in axes)
    at = {**attrs, "axes": tuple(shift_axis(a, d) for a in axes)}
    return [bind(op, args[0], **at)], [out_d]


@family
def along_axis(op: str, args, dims, attrs):
    """Ops along one `axis` (argmax/argmin, softmax, scans, topk): the axis steps past the
    batch axis, which stays where it is (moved left when argmax drops an axis before it)."""
    d, a = dims[0], attrs["axis"]
    outs = bind_list(op, [args[0]], {**attrs, "axis": shift_axis(a, d)})
    out_d = d - 1 if not attrs.get("keepdims", 1) and a < d else d
    return outs, [out_d] * len(outs)


@family
def leading_axes(op: str, args, dims, attrs):
    """Ops whose first operand x [..., K] may have any leading axes (qmatmul, sparse_matmul):
    only x batched, its batch axis joins them; otherwise one op per example."""
    if any(d is not None for d in dims[1:]):
        return loop(op)(args, dims, attrs)
    return [bind(op, moveaxis(args[0], dims[0], 0), *args[1:], **attrs)], [0]


@family
def fold_into_n(op: str, args, dims, attrs):
    """Ops on [N, C, ...] (pools, conv with shared weights): when only x is batched, the
    batch folds into N, one op over B*N examples; otherwise the per-example loop."""
    if any(d is not None for d in dims[1:]):
        return loop(op)(args, dims, attrs)
    x = moveaxis(args[0], dims[0], 0)
    s = shape(x)
    outs = bind_list(op, [reshape(x, (s[0] * s[1],) + s[2:])] + list(args[1:]), attrs)
    return [reshape(o, s[:2] + shape(o)[1:]) for o in outs], [0] * len(outs)


@family
def fold_all_into_n(op: str, args, dims, attrs):
    """Ops whose operands all lead with N (grid_sample's x and grid): every operand gets the
    batch first (repeated if unbatched) and folded into N."""
    xs = all_to_front(args, dims)
    n = shape(xs[0])[:2]
    outs = bind_list(op, [reshape(x, (n[0] * n[1],) + shape(x)[2:]) for x in xs], attrs)
    return [reshape(o, n + shape(o)[1:]) for o in outs], [0] * len(outs)


@family
def on_matrices(op: str, args, dims, attrs):
    """Ops on the last two axes (trilu, det, the factorizations): the batch axis stays where
    it is unless it is one of them (then it goes first); it is the same leading axis of
    every output."""
    x, d = args[0], dims[0]
    if d >= len(shape(x)) - 2:
        x, d = moveaxis(x, d, 0), 0
    outs = bind_list(op, [x], attrs)
    return outs, [d] * len(outs)


def with_example_numbers(ind):
    """Index tuples ind [B, ..., k] (batch first) led by their example number: [B, ..., k+1].
    Lets gather_nd/scatter_nd address one example each without batch_dims (which grad,
    for one, does not handle)."""
    s = shape(ind)
    num = np.arange(s[0]).reshape((-1,) + (1,) * (len(s) - 1))
    num = broadcast_to(const(num, dtype(ind)), s[:-1] + (1,))
    return bind("concat", num, ind, axis=len(s) - 1)
