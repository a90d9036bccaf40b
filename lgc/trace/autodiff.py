"""Automatic differentiation: lgc.vjp, lgc.grad, lgc.value_and_grad, lgc.jvp.

Reverse mode is a tape, one per transformation level (a MainTrace, as in Autodidax). Under
`vjp`, inputs become VJPTracers; each op computes its primal result by binding on the
primals (so the level below - eager, jit's graph, or an outer vjp - does the arithmetic) and,
when a differentiated input flows into it, appends an entry to the level's tape. The
backward pass walks the tape in reverse and calls each op's `OpDef.vjp` rule. The rules are
lgc.ops.prim/bind code, so the backward ops are processed by whatever trace is below: they run
eagerly, are staged by an enclosing jit, or are recorded on an outer level's tape, which is
what makes grad-of-grad and jit(grad) / grad(jit) work without anything special.

Rule shape: `OpDef.vjp(cts, inputs, outputs, attrs) -> [cotangent or None per input]`,
`cts` has one cotangent per output (zeros where an output got none). A cotangent may have
the broadcast output shape: the pass sums it back to the input's shape and dtype.

Forward mode (`jvp`) is a JVPTrace of (primal, tangent) pairs. An op's tangent rule is
OpDef.jvp(tangents, inputs, outputs, attrs) where an op defines one; otherwise it is derived
from the vjp rule, so every op with a gradient also has forward mode: elementwise ops have
diagonal (self-adjoint) Jacobians, other ops have their linear vjp rule transposed.

Branches (`branch_guard`): lax.cond/switch with a traced predicate trace every branch and
select the result. What each branch records carries its guard (is this branch the one
taken?), and the reverse pass selects every cotangent a guarded entry passes back with
where(guard, g, 0), running the entry's rule under the same guard (so outer levels select
too). The branch not taken thus contributes exact zeros even where its own backward
computes 0 * inf (sqrt at 0, 1/x at 0), as JAX's cond, whose transpose is a cond. A plain
lnp.where has no guard: its unselected side's rule sees a zero cotangent, and 0 * inf is
NaN there, as in JAX. A predicate batched by a vmap inside the grad is invisible to the
tape (JAX turns that cond into a select too).
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager

import numpy as np

from ..ir import registry
from ..ops.control import refuse_reverse_mode
from ..ops.core import Trace, Tracer, bind_list, full_raise, get_aval, new_main, register_vjp
from ..ops import prim
from ..ops.prim import unbroadcast
from . import numpy as lnp
from . import pytree
from .batching import BatchTracer, vmap


def _is_float(x) -> bool:
    """Whether x carries a gradient: a float or a complex value."""
    return np.dtype(get_aval(x).dtype).kind in "fc"


class _Tape:
    def __init__(self):
        # (op, attrs, in_nodes, ins, out_nodes, outs, guards); op is a core op's name or a
        # rule (custom_vjp, checkpoint); guards: the branch predicates it ran under
        self.entries: list[tuple] = []
        self._ids = itertools.count()
        self.segment = None   # a checkpointed function being recorded (lgc/trace/remat.py)

    def new_node(self) -> int:
        return next(self._ids)

    def append(self, main, op, attrs, in_nodes, ins, out_nodes, outs, weak=False) -> None:
        """Record an entry of the level `main` (into the checkpoint being recorded, if any)."""
        entry = (op, attrs, in_nodes, ins, out_nodes, outs, guards_for(main))
        if self.segment is not None:
            self.segment.record(entry, weak)
        else:
            self.entries.append(entry)


# ---- branch guards (lax.cond / lax.switch) ----------------------------------------------------

class _Guards(threading.local):
    def __init__(self):
        self.stack: list = []   # predicates of the branches being traced, innermost last


_guards = _Guards()


@contextmanager
def branch_guard(pred):
    """Trace (or run the backward rules of) a branch taken where the bool scalar pred holds."""
    _guards.stack.append(pred)
    try:
        yield
    finally:
        _guards.stack.pop()


@contextmanager
def _guarded(preds):
    for p in preds:
        _guards.stack.append(p)
    try:
        yield
    finally:
        del _guards.stack[len(_guards.stack) - len(preds):]


def guards_for(main) -> tuple:
    """The active branch predicates as values of the level below `main` (what its tape
    entries hold). A predicate under a vmap above `main` has no such value: skipped."""
    out = []
    for p in _guards.stack:
        while isinstance(p, Tracer) and p._trace.main.level >= main.level:
            p = p.primal if isinstance(p, (VJPTracer, JVPTracer)) else None
        if p is not None:
            out.append(p)
    return tuple(out)


def _select(preds, g):
    g = lnp.asarray(g)
    for p in preds:
        g = prim.where(p, g, 0)
    return g


class _ADTracer(Tracer):
    """Differentiation does not hide values: where the primal is concrete (grad outside
    jit), Python control flow and conversions on it work, as in JAX; under jit the primal
    is a graph tracer and raises the usual ConcretizationError."""

    def __bool__(self):
        return bool(self.primal)

    def __int__(self):
        return int(self.primal)

    def __float__(self):
        return float(self.primal)

    def __index__(self):
        return self.primal.__index__()

    def __array__(self, *a, **k):
        return np.asarray(self.primal, *a, **k)

    def item(self):
        return lnp.asarray(self.primal).item()


class VJPTracer(_ADTracer):
    """A value at one differentiation level: its primal and its tape node (None: a constant
    of this level, or an integer value, which gets no cotangent)."""

    def __init__(self, trace, primal, node):
        self._trace, self.primal, self.node = trace, primal, node
        self.aval = get_aval(primal)


class VJPTrace(Trace):
    def pure(self, x):
        return VJPTracer(self, x, None)

    lift = pure

    def process_op(self, op, tracers, attrs, weak):
        if op == "while" and any(t.node is not None for t in tracers):
            refuse_reverse_mode()
        ins = [t.primal for t in tracers]
        outs = bind_list(op, ins, attrs, weak)
        in_nodes = [t.node for t in tracers]
        tape: _Tape = self.main.global_data
        live = any(n is not None for n in in_nodes)
        out_nodes = [tape.new_node() if live and _is_float(o) else None for o in outs]
        # a checkpoint replays every op it saw, differentiated or not (lgc/trace/remat.py)
        if any(n is not None for n in out_nodes) or tape.segment is not None:
            attrs = registry.get(op).normalize_attrs(attrs)
            tape.append(self.main, op, attrs, in_nodes, ins, out_nodes, outs, weak)
        return [VJPTracer(self, o, n) for o, n in zip(outs, out_nodes)]


def _fit(g, x):
    aval = get_aval(x)
    g = unbroadcast(lnp.asarray(g), aval.shape)
    return g if g.dtype == aval.dtype else lnp.astype(g, aval.dtype)


def backward(entries, out_nodes, out_cts, in_nodes, in_primals) -> list:
    """Cotangents of the inputs, given cotangents of the outputs (a reverse walk of a
    tape's entries)."""
    ct: dict[int, object] = {}

    def add(node, g):
        ct[node] = g if node not in ct else lnp.add(ct[node], g)

    for n, g in zip(out_nodes, out_cts):
        if n is not None and g is not None:
            add(n, g)
    for op, attrs, e_in_nodes, ins, e_out_nodes, outs, guards in reversed(entries):
        gs = [ct.pop(n, None) if n is not None else None for n in e_out_nodes]
        if all(g is None for g in gs):
            continue
        rule = op if callable(op) else registry.get(op).vjp   # callable: custom_vjp, checkpoint
        if rule is None:
            raise NotImplementedError(f"lgc.grad: op {op!r} has no gradient rule (OpDef.vjp)")
        gs = [lnp.zeros_like(y) if g is None else g for g, y in zip(gs, outs)]
        with _guarded(guards):
            in_cts = rule(gs, ins, outs, attrs)
            if guards:   # a branch: its cotangents count only where it is the one taken
                in_cts = [None if g is None else _select(guards, g) for g in in_cts]
        for n, x, g in zip(e_in_nodes, ins, in_cts):
            if n is not None and g is not None:
                add(n, _fit(g, x))
    return [_fit(ct[n], x) if n in ct else lnp.zeros_like(x)
            for n, x in zip(in_nodes, in_primals)]


def _strip(main, x):
    """A result leaf of this level as a value of the level below."""
    return x.primal if isinstance(x, (VJPTracer, JVPTracer)) and x._trace.main is main else x


def vjp(fun, *primals, has_aux: bool = False):
    """(fun(*primals), vjp_fun[, aux]) as jax.vjp: vjp_fun(cotangent of the output pytree)
    returns a tuple with the cotangent of each primal (same pytree structure)."""
    leaves, tree = pytree.flatten(primals)
    leaves = [lnp.asarray(x) for x in leaves]
    for x in leaves:
        if not _is_float(x):
            raise TypeError(f"lgc.vjp/grad: differentiated inputs must be floating point (or "
                            f"complex), got {get_aval(x).str_short()} (pass integers through "
                            f"static or non-differentiated arguments)")
    tape = _Tape()
    with new_main(VJPTrace, tape) as main:
        trace = VJPTrace(main)
        in_tracers = [VJPTracer(trace, x, tape.new_node()) for x in leaves]
        out = fun(*pytree.unflatten(tree, in_tracers))
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("has_aux=True needs the function to return a pair (out, aux)")
            out, aux = out
            aux = pytree.tree_map(lambda v: _strip(main, v), aux)
        out_leaves, out_tree = pytree.flatten(out)
        out_tracers = [full_raise(trace, o) for o in out_leaves]
    in_nodes = [t.node for t in in_tracers]
    out_nodes = [t.node for t in out_tracers]
    primal_out = pytree.unflatten(out_tree, [t.primal for t in out_tracers])

    def vjp_fun(cotangent):
        ct_leaves, ct_tree = pytree.flatten(cotangent)
        if len(ct_leaves) != len(out_nodes):
            raise TypeError(f"vjp_fun: cotangent has {len(ct_leaves)} leaves, the output "
                            f"{len(out_nodes)}")
        cts = [_fit(g, t.primal) for g, t in zip(ct_leaves, out_tracers)]
        grads = backward(tape.entries, out_nodes, cts, in_nodes, leaves)
        return pytree.unflatten(tree, grads)

    return (primal_out, vjp_fun, aux) if has_aux else (primal_out, vjp_fun)


register_vjp(vjp)   # for the op rules that differentiate a composition (lgc.ops.core.vjp)


def _argnums_partial(fun, args, kwargs, argnums):
    """fun as a function of the argnums arguments alone (the others fixed), and those."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    nums = tuple(i % len(args) for i in nums)

    def partial(*dargs):
        full = list(args)
        for i, d in zip(nums, dargs):
            full[i] = d
        return fun(*full, **kwargs)
    return partial, tuple(args[i] for i in nums)


def value_and_grad(fun, argnums=0, has_aux: bool = False, holomorphic: bool = False):
    """jax.value_and_grad: f's value and its gradient w.r.t. the argnums arguments (pytrees);
    f must return a real scalar (or (scalar, aux) with has_aux). Of complex inputs, the
    gradient is df/dx - i df/dy (JAX's convention; lgc/ops/complex.py); holomorphic=True
    takes a complex scalar f of complex inputs and gives f'(z)."""
    def wrapped(*args, **kwargs):
        partial, dargs = _argnums_partial(fun, args, kwargs, argnums)
        if holomorphic:
            bad = [a for a in pytree.flatten(dargs)[0] if get_aval(a).dtype.kind != "c"]
            if bad:
                raise TypeError("grad(holomorphic=True) needs complex inputs, got "
                                f"{get_aval(bad[0]).str_short()}")
        res = vjp(partial, *dargs, has_aux=has_aux)
        out, vjp_fun = res[0], res[1]
        aval = get_aval(out) if not isinstance(out, (tuple, list, dict)) else None
        kind = "c" if holomorphic else "f"
        if aval is None or aval.shape != () or aval.dtype.kind != kind:
            got = aval.str_short() if aval else type(out).__name__
            if holomorphic:
                raise TypeError(f"grad(holomorphic=True) needs a function returning a complex "
                                f"scalar, got {got}")
            hint = "; for a holomorphic function pass holomorphic=True" if aval and aval.dtype.kind == "c" else ""
            raise TypeError(f"grad needs a function returning a real scalar, got {got}{hint}")
        g = vjp_fun(lnp.ones_like(out))
        g = g[0] if isinstance(argnums, int) else g
        return ((out, res[2]) if has_aux else out), g

    wrapped.__name__ = f"value_and_grad_{getattr(fun, '__name__', 'fn')}"
    return wrapped


def grad(fun, argnums=0, has_aux: bool = False, holomorphic: bool = False):
    """jax.grad: the gradient of a real scalar function w.r.t. the argnums arguments (of a
    complex one with holomorphic=True)."""
    vg = value_and_grad(fun, argnums, has_aux, holomorphic)

    def wrapped(*args, **kwargs):
        (out, g) = vg(*args, **kwargs)
        return (g, out[1]) if has_aux else g

    wrapped.__name__ = f"grad_{getattr(fun, '__name__', 'fn')}"
    return wrapped


class custom_vjp:
    """jax.custom_vjp: f with a hand-written backward pass. f.defvjp(fwd, bwd): fwd(*args)
    -> (out, residuals), bwd(residuals, out_cotangent) -> one cotangent per argument (None
    for none). Under grad, fwd runs on the primals and bwd becomes the tape entry; outer
    levels differentiate through fwd and bwd (so higher orders work as in JAX). Under jvp,
    or with no gradient being taken, f itself runs."""

    def __init__(self, fun):
        self.fun, self.fwd, self.bwd = fun, None, None
        self.__name__ = getattr(fun, "__name__", "custom_vjp")

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        leaves, tree = pytree.flatten(args)
        tracers = [x for x in leaves if isinstance(x, Tracer)]
        top = max(tracers, key=lambda t: t._trace.main.level, default=None)
        if not isinstance(top, VJPTracer) or self.fwd is None:
            return self.fun(*args)
        main = top._trace.main
        trace = VJPTrace(main)
        mine = [isinstance(x, VJPTracer) and x._trace.main is main for x in leaves]
        primals = [x.primal if m else x for x, m in zip(leaves, mine)]
        out, res = self.fwd(*pytree.unflatten(tree, primals))
        out_leaves, out_tree = pytree.flatten(out)
        tape: _Tape = main.global_data
        out_nodes = [tape.new_node() if _is_float(o) else None for o in out_leaves]
        in_nodes = [x.node if m else None for x, m in zip(leaves, mine)]
        bwd = self.bwd

        def rule(cts, ins, outs, attrs):
            g = bwd(res, pytree.unflatten(out_tree, cts))
            g_leaves = []
            for a, ga in zip(args, g):   # None for a whole argument: no cotangent
                n = len(pytree.flatten(a)[0])
                g_leaves += [None] * n if ga is None else pytree.flatten(ga)[0]
            return g_leaves

        tape.append(main, rule, {}, in_nodes, primals, out_nodes, out_leaves)
        return pytree.unflatten(out_tree, [VJPTracer(trace, o, n)
                                           for o, n in zip(out_leaves, out_nodes)])


class custom_jvp:
    """jax.custom_jvp: f with a hand-written tangent rule. f.defjvp(rule): rule(primals,
    tangents) -> (out, tangent_out), linear in the tangents. Under jvp the rule gives the
    tangents; under grad its transpose (reverse mode over the rule in the tangents) is the
    tape entry. Outer levels differentiate through the rule, so higher orders work."""

    def __init__(self, fun):
        self.fun, self.rule = fun, None
        self.__name__ = getattr(fun, "__name__", "custom_jvp")

    def defjvp(self, rule):
        self.rule = rule
        return rule

    def __call__(self, *args):
        leaves, tree = pytree.flatten(args)
        tracers = [x for x in leaves if isinstance(x, Tracer)]
        top = max(tracers, key=lambda t: t._trace.main.level, default=None)
        if not isinstance(top, (VJPTracer, JVPTracer)) or self.rule is None:
            return self.fun(*args)
        main = top._trace.main
        mine = [isinstance(x, type(top)) and x._trace.main is main for x in leaves]
        primals = [x.primal if m else x for x, m in zip(leaves, mine)]
        p_args = pytree.unflatten(tree, primals)

        def tangent_out(t_leaves):
            return self.rule(p_args, pytree.unflatten(tree, t_leaves))[1]

        if isinstance(top, JVPTracer):
            t_leaves = [x.tangent if m and x.tangent is not None else lnp.zeros_like(p)
                        for x, m, p in zip(leaves, mine, primals)]
            out, t_out = self.rule(p_args, pytree.unflatten(tree, t_leaves))
            trace = JVPTrace(main)
            return pytree.tree_map(lambda o, t: JVPTracer(trace, o, _fit(t, o)), out, t_out)
        out = self(*p_args)          # levels below use the rule too
        out_leaves, out_tree = pytree.flatten(out)
        tape: _Tape = main.global_data
        out_nodes = [tape.new_node() if _is_float(o) else None for o in out_leaves]
        live = [i for i, m in enumerate(mine) if m and _is_float(primals[i])]

        def rule(cts, ins, outs, attrs):
            def lin(*ts):   # the tangent map restricted to the differentiated leaves
                full = [lnp.zeros_like(p) for p in primals]
                for i, t in zip(live, ts):
                    full[i] = t
                return tangent_out(full)
            _, transposed = vjp(lin, *[lnp.zeros_like(primals[i]) for i in live])
            g_live = transposed(pytree.unflatten(out_tree, cts))
            g = [None] * len(primals)
            for i, gi in zip(live, g_live):
                g[i] = gi
            return g

        in_nodes = [x.node if m else None for x, m in zip(leaves, mine)]
        tape.append(main, rule, {}, in_nodes, primals, out_nodes, out_leaves)
        trace = VJPTrace(main)
        return pytree.unflatten(out_tree, [VJPTracer(trace, o, n)
                                           for o, n in zip(out_leaves, out_nodes)])


# ---- forward mode ----------------------------------------------------------------------------

class JVPTracer(_ADTracer):
    """A (primal, tangent) pair of one forward-mode level; tangent None is a known zero."""

    def __init__(self, trace, primal, tangent):
        self._trace, self.primal, self.tangent = trace, primal, tangent
        self.aval = get_aval(primal)


class JVPTrace(Trace):
    """Forward mode: each op's primal is bound on the level below, its tangent comes from
    OpDef.jvp where an op has one, else from its vjp rule (see `_tangents`)."""

    def pure(self, x):
        return JVPTracer(self, x, None)

    lift = pure

    def process_op(self, op, tracers, attrs, weak):
        if op == "while":   # the tangents ride along in the loop's carry
            from .control import jvp_while   # lgc.trace.control builds on this module
            return jvp_while(self, tracers, attrs)
        ins = [t.primal for t in tracers]
        outs = bind_list(op, ins, attrs, weak)
        tans = [t.tangent if _is_float(t.primal) else None for t in tracers]
        if all(t is None for t in tans) or not any(_is_float(o) for o in outs):
            return [JVPTracer(self, o, None) for o in outs]
        opdef = registry.get(op)
        attrs = opdef.normalize_attrs(attrs)
        if opdef.jvp is not None:
            t_outs = opdef.jvp(tans, ins, outs, attrs)
        else:
            t_outs = _tangents(opdef, tans, ins, outs, attrs)
        return [JVPTracer(self, o, _fit(t, o) if t is not None and _is_float(o) else None)
                for o, t in zip(outs, t_outs)]


def _tangents(opdef, tans, ins, outs, attrs) -> list:
    """Output tangents from the vjp rule. An elementwise op's Jacobian in each input is
    diagonal (after broadcasting), hence its own transpose: the vjp rule applied to the
    broadcast tangent is the JVP (elementwise rules return cotangents in the output's
    shape; the reverse pass sums them back). Any other op: transpose the (linear) vjp rule
    itself, by reverse mode over it."""
    rule = opdef.vjp
    if rule is None:
        raise NotImplementedError(f"lgc.jvp: op {opdef.name!r} has no gradient rule")
    if opdef.fusion in ("elementwise", "broadcast") and len(outs) == 1:
        total = None
        for i, t in enumerate(tans):
            if t is None:
                continue
            r = rule([lnp.broadcast_to(t, outs[0].shape)], ins, outs, attrs)[i]
            if r is not None:
                total = r if total is None else lnp.add(total, r)
        return [total]
    live = [i for i, t in enumerate(tans) if t is not None]
    fl = [j for j, o in enumerate(outs) if _is_float(o)]

    def pullback(*ws):
        cts = [lnp.zeros_like(o) for o in outs]
        for j, w in zip(fl, ws):
            cts[j] = w
        res = rule(cts, ins, outs, attrs)
        return [lnp.zeros_like(ins[i]) if res[i] is None else _fit(res[i], ins[i])
                for i in live]

    _, transposed = vjp(pullback, *[lnp.zeros_like(outs[j]) for j in fl])
    t_fl = transposed([tans[i] for i in live])
    t_outs = [None] * len(outs)
    for j, t in zip(fl, t_fl):
        t_outs[j] = t
    return t_outs


def jvp(fun, primals, tangents, has_aux: bool = False):
    """jax.jvp: (fun(*primals), J(primals) . tangents) in one forward pass."""
    leaves, tree = pytree.flatten(tuple(primals))
    t_leaves, t_tree = pytree.flatten(tuple(tangents))
    if len(t_leaves) != len(leaves):
        raise TypeError("jvp: tangents must have the structure of primals")
    leaves = [lnp.asarray(x) for x in leaves]
    with new_main(JVPTrace) as main:
        trace = JVPTrace(main)
        ins = [JVPTracer(trace, x, _fit(t, x) if _is_float(x) else None)
               for x, t in zip(leaves, t_leaves)]
        out = fun(*pytree.unflatten(tree, ins))
        if has_aux:
            out, aux = out
            aux = pytree.tree_map(lambda v: _strip(main, v), aux)
        out_leaves, out_tree = pytree.flatten(out)
        outs = [full_raise(trace, o) for o in out_leaves]
    primal_out = pytree.unflatten(out_tree, [t.primal for t in outs])
    tangent_out = pytree.unflatten(out_tree, [lnp.zeros_like(t.primal) if t.tangent is None
                                              else t.tangent for t in outs])
    return (primal_out, tangent_out, aux) if has_aux else (primal_out, tangent_out)


def stop_gradient(x):
    """The value with every differentiation level removed: no gradient flows back through
    it, at any order (jax.lax.stop_gradient); levels under a vmap are stripped inside it."""

    def strip(v):
        while isinstance(v, (VJPTracer, JVPTracer)):
            v = v.primal
        if isinstance(v, BatchTracer):
            return BatchTracer(v._trace, strip(v.val), v.bdim, v.aval.weak_type)
        return v
    return pytree.tree_map(strip, x)


# ---- Jacobians -------------------------------------------------------------------------------

def _basis(x):
    """The standard basis of x's space, stacked: shape (x.size,) + x.shape."""
    n = get_aval(x).size
    return lnp.reshape(lnp.eye(n, dtype=get_aval(x).dtype), (n,) + tuple(get_aval(x).shape))


def jacrev(fun, argnums=0, has_aux: bool = False):
    """jax.jacrev: the Jacobian by reverse mode, one vjp per output element (vmapped).
    Each output leaf holds, per differentiated argument, an array of shape out + in."""

    def wrapped(*args, **kwargs):
        partial, dargs = _argnums_partial(fun, args, kwargs, argnums)
        res = vjp(partial, *dargs, has_aux=has_aux)
        y, pullback = res[0], res[1]
        y_leaves, y_tree = pytree.flatten(y)
        rows = []
        for k, yk in enumerate(y_leaves):
            def pull_row(e, k=k):
                cts = [e if j == k else lnp.zeros_like(yj) for j, yj in enumerate(y_leaves)]
                return pullback(pytree.unflatten(y_tree, cts))
            jac = vmap(pull_row)(_basis(yk))   # per argument: (yk.size,) + x.shape
            jac = pytree.tree_map(
                lambda j: lnp.reshape(j, tuple(get_aval(yk).shape) + tuple(j.shape[1:])), jac)
            rows.append(jac[0] if isinstance(argnums, int) else jac)
        out = pytree.unflatten(y_tree, rows)
        return (out, res[2]) if has_aux else out
    return wrapped


def jacfwd(fun, argnums=0, has_aux: bool = False):
    """jax.jacfwd: the Jacobian by forward mode, one jvp per input element (vmapped)."""

    def wrapped(*args, **kwargs):
        partial, dargs = _argnums_partial(fun, args, kwargs, argnums)
        dargs = pytree.tree_map(lnp.asarray, dargs)
        x_leaves, x_tree = pytree.flatten(dargs)
        per_input = []
        for i, xi in enumerate(x_leaves):
            def push(e, i=i):
                ts = [e if j == i else lnp.zeros_like(xj) for j, xj in enumerate(x_leaves)]
                return jvp(partial, dargs, pytree.unflatten(x_tree, ts), has_aux=has_aux)[1]
            cols = vmap(push)(_basis(xi))     # per output leaf: (xi.size,) + y.shape
            per_input.append(pytree.tree_map(
                lambda c: lnp.reshape(lnp.moveaxis(c, 0, -1),
                                      tuple(c.shape[1:]) + tuple(get_aval(xi).shape)), cols))
        y_cols = [pytree.flatten(p)[0] for p in per_input]
        y_tree = pytree.flatten(per_input[0])[1]
        leaves = [pytree.unflatten(x_tree, [y_cols[i][k] for i in range(len(x_leaves))])
                  for k in range(len(y_cols[0]))]
        out = pytree.unflatten(y_tree, [lv[0] if isinstance(argnums, int) else lv
                                        for lv in leaves])
        if has_aux:
            return out, jvp(partial, dargs, pytree.tree_map(lnp.zeros_like, dargs),
                            has_aux=True)[2]
        return out
    return wrapped


def hessian(fun, argnums=0):
    """jax.hessian: jacfwd of jacrev."""
    return jacfwd(jacrev(fun, argnums), argnums)
