"""lgc.vmap: vectorizing map, after Autodidax's batching interpreter.

A BatchTracer carries (value, batch axis): `val` is a value of the trace below (a device
Array, a jit tracer, an outer vmap's or grad's tracer, or a host constant) holding every
example, and `bdim` is the axis of val that runs over them (None: the same for every example).
Its abstract value is one example's. For each op, BatchTrace calls the op's batching rule
(`OpDef.batch`, beside the op in lgc/ops/*.py; lgc/ops/batch_rules.py has the shared
ones), which computes the whole batch with ordinary binds at the level below, so vmap
composes with jit (inside or outside), grad, and itself. An op without a rule falls back to
a loop over the examples unrolled at trace time, which is always correct.
"""
from __future__ import annotations

import functools

import numpy as np

from ..ir import registry
from ..ops import batch_rules
from ..ops.core import (ArrayBase, ConcretizationError, ShapedArray, Trace, Tracer, bind_list,
                        full_raise, get_aval, infer_avals, new_main)
from . import pytree


class BatchTracer(Tracer):
    """One example as the traced function sees it; the whole batch underneath."""

    def __init__(self, trace: "BatchTrace", val, bdim: int | None, weak: bool | None = None):
        self._trace = trace
        self.val = val
        self.bdim = bdim
        a = get_aval(val)
        s = a.shape if bdim is None else a.shape[:bdim] + a.shape[bdim + 1:]
        self.aval = ShapedArray(s, a.dtype, a.weak_type if weak is None else weak)

    def __repr__(self):
        return f"Batched<{self.aval.str_short()}, axis {self.bdim}>"

    def _concrete_error(self, what: str):
        raise ConcretizationError(
            f"{what} needs a concrete value, but this is an array {self.aval.str_short()} "
            f"batched by lgc.vmap: its value differs per example, and Python control flow "
            f"(if/while/and/or, bool(), int()) runs once for the whole batch. Use "
            f"lgc.numpy.where or lgc.lax.cond/switch (which select per example) instead.")


class BatchTrace(Trace):
    """main.global_data is the batch size."""

    def pure(self, x):
        return BatchTracer(self, x, None)

    lift = pure

    def process_op(self, op, tracers, attrs, weak):
        vals = [t.val for t in tracers]
        dims = [t.bdim for t in tracers]
        if all(d is None for d in dims):    # nothing batched: the op is the same for all
            return [BatchTracer(self, v, None, weak) for v in bind_list(op, vals, attrs, weak)]
        # the per-example type rule: the errors eager mode and jit would give
        out_avals, attrs = infer_avals(op, [t.aval for t in tracers], attrs, weak)
        rule = registry.get(op).batch or batch_rules.loop(op)
        outs, out_dims = rule(vals, dims, attrs)
        res = [BatchTracer(self, v, d, weak) for v, d in zip(outs, out_dims)]
        for r, a in zip(res, out_avals):
            if r.aval.shape != a.shape or r.aval.dtype != a.dtype:
                raise AssertionError(f"batching rule of {op} gave {r.aval.str_short()} per "
                                     f"example, expected {a.str_short()} (attrs {attrs})")
        return res


# ---- in_axes / out_axes -----------------------------------------------------------------------

def _is_axis(a) -> bool:
    return a is None or isinstance(a, (int, np.integer))


def _axes_for_leaves(prefix, tree, what: str) -> list:
    """The axis of every leaf of a value whose structure is `tree`, from `prefix`: an axis (or
    None) for a whole subtree, or a container of the value's kind with axes further down."""
    if _is_axis(prefix):
        return [None if prefix is None else int(prefix)] * tree.num_leaves
    if tree.kind is None:
        raise ValueError(f"vmap {what}: {prefix!r} is a container where the value is an array")
    kind, fns = pytree._node_of(prefix)
    if kind is None:
        raise ValueError(f"vmap {what}: {prefix!r} is neither an axis, None nor a container")
    children, aux = fns[0](prefix)
    if kind is not tree.kind or aux != tree.aux or len(children) != len(tree.children):
        raise ValueError(f"vmap {what}: {prefix!r} does not match the structure {tree}")
    out = []
    for p, t in zip(children, tree.children):
        out += _axes_for_leaves(p, t, what)
    return out


def _norm(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"vmap {what}: axis {axis} is out of range for an array of rank {ndim}")
    return axis % ndim


def _move_out(val, bdim, out_axis, size):
    """An output of the batched function as the caller sees it: batched along out_axis."""
    if out_axis is None:
        if bdim is not None:
            raise ValueError("vmap out_axes: an output marked None (not batched) depends on "
                             "the batched inputs")
        return val
    s = batch_rules.shape(val)
    if bdim is None:
        a = _norm(out_axis, len(s) + 1, "out_axes")
        return batch_rules.broadcast_to(batch_rules.reshape(val, s[:a] + (1,) + s[a:]),
                                        s[:a] + (size,) + s[a:])
    return batch_rules.moveaxis(val, bdim, _norm(out_axis, len(s), "out_axes"))


def vmap(fun, in_axes=0, out_axes=0, axis_name=None, axis_size=None, spmd_axis_name=None):
    """Vectorize `fun` over an axis of its arguments (jax.vmap).

    in_axes: an axis (negative counts from the end) or None for every argument, or a tuple
    with one entry per positional argument, each an axis, None (not batched) or a pytree
    prefix of the argument with axes at its leaves. Keyword arguments are batched on axis 0.
    out_axes: the same for the results. axis_size: the batch size when no argument is batched.
    axis_name (collectives) is not supported."""
    if axis_name is not None or spmd_axis_name is not None:
        raise NotImplementedError("vmap axis_name: lgc has no collectives to use it")
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)

    @functools.wraps(fun)
    def batched(*args, **kwargs):
        if isinstance(in_axes, tuple) and len(in_axes) != len(args):
            raise ValueError(f"vmap in_axes has {len(in_axes)} entries for {len(args)} "
                             f"positional arguments")
        leaves, tree = pytree.flatten((args, kwargs))
        axes = _axes_for_leaves((in_axes if isinstance(in_axes, tuple) else
                                 (in_axes,) * len(args), 0), tree, "in_axes")
        sizes = set()
        for i, (x, a) in enumerate(zip(leaves, axes)):
            if a is not None:
                if not isinstance(x, (ArrayBase, np.ndarray, np.generic, int, float, bool)):
                    raise TypeError(f"vmap: argument leaf of type {type(x).__name__} is not an "
                                    f"array (mark it None in in_axes)")
                nd = len(get_aval(x).shape)
                axes[i] = a = _norm(a, nd, "in_axes")
                sizes.add(get_aval(x).shape[a])
        if len(sizes) > 1:
            raise ValueError(f"vmap got inconsistent sizes for the mapped axes: {sorted(sizes)}")
        if not sizes and axis_size is None:
            raise ValueError("vmap needs at least one batched argument, or axis_size")
        size = sizes.pop() if sizes else int(axis_size)
        if axis_size is not None and size != axis_size:
            raise ValueError(f"vmap axis_size={axis_size}, but the mapped axes have size {size}")
        with new_main(BatchTrace, size) as main:
            trace = BatchTrace(main)
            ins = [x if a is None else BatchTracer(trace, _as_array(x), a)
                   for x, a in zip(leaves, axes)]
            a2, k2 = pytree.unflatten(tree, ins)
            out = fun(*a2, **k2)
            out_leaves, out_tree = pytree.flatten(out)
            outs = [full_raise(trace, x) for x in out_leaves]
            oaxes = _axes_for_leaves(tuple(out_axes) if isinstance(out_axes, list) else out_axes,
                                     out_tree, "out_axes")
            res = [_move_out(t.val, t.bdim, a, size) for t, a in zip(outs, oaxes)]
        return pytree.unflatten(out_tree, res)

    return batched


def _as_array(x):
    if isinstance(x, ArrayBase):
        return x
    from . import numpy as lnp   # lgc.trace.numpy's vectorize is built on vmap
    return lnp.asarray(x)


def any_example(x):
    """Whether any example of a predicate batched by vmap is true, when the values under the
    vmap levels are concrete (eager vmap); None when a traced value lies underneath."""
    while isinstance(x, BatchTracer):
        x = x.val
    return None if isinstance(x, Tracer) else bool(np.any(np.asarray(x)))
