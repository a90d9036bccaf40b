"""Staged control flow: while_loop with a traced condition becomes one `while` op.

Inside a graph trace (jit, make_ir, export) the condition and the body are traced into
Graphs of their own (lgc/ops/control.py) on the carry's abstract values. Values they read
from the enclosing computation (tracers of any outer level: jit's graph, vmap, jvp) become
extra inputs of the subgraph ("constants" of the loop), so the loop op is closed and every
transformation sees them as ordinary operands. The rules of the op, as in JAX:
  - vmap: the body and condition are vmapped; a batched predicate runs the loop while any
    example goes on, and finished examples keep their carry (a select per step);
  - jvp: one loop carries (primal, tangent), its body the jvp of the old body;
  - vjp/grad: refused (the trip count is known only at run time, nothing is recorded to
    walk back through) with an error that says what to use instead (lgc/ops/control.py).
The batching rule is set on the op (OpDef.batch) when this module is imported, with
lgc.trace: it vmaps the subgraphs, which the op's own module below cannot do.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.registry import OPS
from ..ops.control import ReverseModeError, refuse_reverse_mode  # noqa: F401 (also here)
from ..ops import batch_rules
from ..ops.core import bind_list, full_raise, get_aval, new_main
from . import numpy as lnp
from . import pytree
from .autodiff import JVPTrace, JVPTracer, _is_float
from .batching import vmap
from .interpret import eval_graph
from .jit import GraphTrace, GraphTracer, TraceBuilder


# ---- tracing a function into a closed subgraph ---------------------------------------------

class _SubBuilder(TraceBuilder):
    def __init__(self, name: str):
        super().__init__(name)
        self.captured: list = []      # outer values read inside, in the order first read
        self.capture_of: dict = {}    # id(outer value) -> its GraphTracer here


class _SubGraphTrace(GraphTrace):
    """A graph trace whose graph is closed: a tracer of an enclosing level becomes an input."""

    def lift(self, x):
        b = self.builder
        hit = b.capture_of.get(id(x))
        if hit is None:
            v = b.input(f"k{len(b.captured)}", x.aval.tensor_type())
            hit = b.capture_of[id(x)] = GraphTracer(self, v, x.aval.weak_type)
            b.captured.append(x)
        return hit


def trace_subgraph(fun, avals, name: str):
    """fun(*tracers of avals) traced into a Graph whose inputs are those, then the outer
    values fun read (returned as `captured`). -> (graph, captured, out_tree, out_avals)."""
    b = _SubBuilder(name)
    with new_main(_SubGraphTrace, b, dynamic=True) as main:
        trace = _SubGraphTrace(main)
        ins = [GraphTracer(trace, b.input(f"c{i}", a.tensor_type()), a.weak_type)
               for i, a in enumerate(avals)]
        out = fun(*ins)
        leaves, tree = pytree.flatten(out)
        outs = [full_raise(trace, lnp.asarray(x)) for x in leaves]
    graph = b.build([t.value for t in outs])
    return graph, b.captured, tree, [t.aval for t in outs]


def _with_consts(graph: Graph, n: int, captured: list, consts: list) -> Graph:
    """graph with inputs (its first n, then one per entry of consts): the ones it captured,
    and unused inputs for the others; inputs named c<i> and k<j>."""
    mine = {id(c): v for c, v in zip(captured, graph.inputs[n:])}
    ins = list(graph.inputs[:n])
    for j, c in enumerate(consts):
        v = mine.get(id(c)) or Value(get_aval(c).tensor_type())
        v.name = f"k{j}"
        ins.append(v)
    return graph.replace(inputs=ins, input_names=[v.name for v in ins])


def _types(avals) -> str:
    return "(" + ", ".join(a.str_short() for a in avals) + ")"


def stage_while(cond_fun, body_fun, init_val):
    """while_loop as one `while` op of the graph being traced."""
    leaves, tree = pytree.flatten(init_val)
    leaves = [lnp.asarray(x) for x in leaves]
    avals = [get_aval(x) for x in leaves]
    n = len(leaves)
    if n == 0:
        raise TypeError("while_loop needs a carry with at least one array")

    def on_tree(fn):
        return lambda *xs: fn(pytree.unflatten(tree, list(xs)))

    cond, c_caps, c_tree, c_avals = trace_subgraph(on_tree(cond_fun), avals, "cond")
    if c_tree.kind is not None or c_avals[0].shape != () or c_avals[0].dtype != np.bool_:
        raise TypeError(f"while_loop cond_fun must return a boolean scalar, it returned "
                        f"{_types(c_avals) if c_tree.kind is not None else c_avals[0].str_short()}")
    body, b_caps, b_tree, b_avals = trace_subgraph(on_tree(body_fun), avals, "body")
    if b_tree != tree or [(a.shape, a.dtype) for a in b_avals] != [(a.shape, a.dtype) for a in avals]:
        raise TypeError(f"while_loop body_fun must return the carry's structure and types: it "
                        f"takes {tree} {_types(avals)} and returns {b_tree} {_types(b_avals)}")
    consts, seen = [], set()
    for c in c_caps + b_caps:
        if id(c) not in seen:
            seen.add(id(c))
            consts.append(c)
    attrs = {"cond": _with_consts(cond, n, c_caps, consts),
             "body": _with_consts(body, n, b_caps, consts)}
    outs = bind_list("while", leaves + consts, attrs)
    # a slot weakly typed on the way in and out (a Python scalar) stays weak, as in JAX
    outs = [bind_list("reshape", [o], {"shape": a.shape}, weak=True)[0]
            if a.weak_type and b.weak_type else o for o, a, b in zip(outs, avals, b_avals)]
    return pytree.unflatten(tree, outs)


# ---- dependence of outputs on inputs ---------------------------------------------------------

def depends(graph: Graph, flags) -> list[bool]:
    """Per output: whether it depends on an input whose flag is set (a nested op's outputs
    on all of its inputs)."""
    on = {v for v, f in zip(graph.inputs, flags) if f}
    for node in graph.nodes:
        if any(v in on for v in node.inputs):
            on.update(node.outputs)
    return [v in on for v in graph.outputs]


def _carry_fixpoint(body: Graph, carry, consts) -> list[bool]:
    """Carry flags closed under the body: a carry slot is set if its initial value is, or if
    the body's output for it depends on a set slot or constant."""
    carry = list(carry)
    while True:
        out = depends(body, carry + list(consts))
        new = [a or b for a, b in zip(carry, out)]
        if new == carry:
            return carry
        carry = new


# ---- vmap ----------------------------------------------------------------------------------

def batch_while(vals, dims, attrs):
    """The while op's batching rule (called by BatchTrace with the level-below values)."""
    cond, body = attrs["cond"], attrs["body"]
    n = len(body.outputs)
    size = batch_rules.axis_size(vals, dims)
    const_b = [d is not None for d in dims[n:]]
    carry_b = _carry_fixpoint(body, [d is not None for d in dims[:n]], const_b)
    pred_b = depends(cond, carry_b + const_b)[0]
    if pred_b:
        carry_b = [True] * n    # every slot is selected per example
    flags = carry_b + const_b
    ins = [(batch_rules.to_front(v, d, size) if f else v) for v, d, f in zip(vals, dims, flags)]
    avals = [get_aval(x) for x in ins]
    axes = tuple(0 if f else None for f in flags)
    out_axes = tuple(0 if f else None for f in carry_b)

    def pred(*xs):
        return vmap(lambda *ys: eval_graph(cond, *ys)[0], in_axes=axes,
                    out_axes=0 if pred_b else None, axis_size=size)(*xs)

    def new_cond(*xs):
        p = pred(*xs)
        return lnp.any(p) if pred_b else p

    def new_body(*xs):
        out = vmap(lambda *ys: tuple(eval_graph(body, *ys)), in_axes=axes,
                   out_axes=out_axes, axis_size=size)(*xs)
        if not pred_b:
            return out
        p = pred(*xs)
        return tuple(lnp.where(lnp.reshape(p, (size,) + (1,) * (lnp.ndim(o) - 1)), o, x)
                     for o, x in zip(out, xs[:n]))

    g_cond = trace_subgraph(new_cond, avals, "cond")[0]
    g_body = trace_subgraph(new_body, avals, "body")[0]
    outs = bind_list("while", ins, {"cond": g_cond, "body": g_body})
    return outs, [0 if f else None for f in carry_b]


OPS["while"].batch = batch_while


# ---- jvp -----------------------------------------------------------------------------------

def _jvp_flat(fun, primals, tangents):
    """(outputs, output tangents) of fun at primals; a tangent None is a known zero."""
    with new_main(JVPTrace) as main:
        trace = JVPTrace(main)
        outs = fun(*[JVPTracer(trace, p, t) for p, t in zip(primals, tangents)])
        outs = [full_raise(trace, o) for o in outs]
    return [o.primal for o in outs], [o.tangent for o in outs]


def jvp_while(trace, tracers, attrs):
    """Forward mode through a while op: one loop over (carry, carry tangents)."""
    cond, body = attrs["cond"], attrs["body"]
    n = len(body.outputs)
    prims = [t.primal for t in tracers]
    tans = [t.tangent if _is_float(t.primal) else None for t in tracers]
    if all(t is None for t in tans):
        return [JVPTracer(trace, o, None) for o in bind_list("while", prims, attrs)]
    floats = [_is_float(p) for p in prims]
    live = _carry_fixpoint(body, [t is not None for t in tans[:n]], [t is not None for t in tans[n:]])
    tc = [i for i in range(n) if live[i] and floats[i]]       # carry slots with tangents
    tk = [j for j in range(n, len(prims)) if tans[j] is not None]   # constants with tangents
    t0 = [tans[i] if tans[i] is not None else lnp.zeros_like(prims[i]) for i in tc]
    ins = prims[:n] + t0 + prims[n:] + [tans[j] for j in tk]
    a, b = n + len(tc), len(tc) + len(prims)     # xs: carry | carry tangents | consts | ...

    def split(xs):
        xs = list(xs)
        primals = xs[:n] + xs[a:b]
        tangents = [None] * len(primals)
        for i, t in zip(tc, xs[n:a]):
            tangents[i] = t
        for j, t in zip(tk, xs[b:]):
            tangents[j] = t
        return primals, tangents

    def new_cond(*xs):
        return eval_graph(cond, *split(xs)[0])[0]

    def new_body(*xs):
        primals, tangents = split(xs)
        outs, t_outs = _jvp_flat(lambda *ys: eval_graph(body, *ys), primals, tangents)
        return tuple(outs) + tuple(t_outs[i] if t_outs[i] is not None
                                   else lnp.zeros_like(outs[i]) for i in tc)

    avals = [get_aval(x) for x in ins]
    g_cond = trace_subgraph(new_cond, avals, "cond")[0]
    g_body = trace_subgraph(new_body, avals, "body")[0]
    res = bind_list("while", ins, {"cond": g_cond, "body": g_body})
    t_of = dict(zip(tc, res[n:]))
    return [JVPTracer(trace, res[i], t_of.get(i)) for i in range(n)]
