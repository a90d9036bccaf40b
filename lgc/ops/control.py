"""Structured control flow: the `while` op (jax.lax.while_loop with a traced condition).

    %r0, %r1 = while(%c0, %c1, %k0) {cond = graph @cond(...) -> (bool[]) {...},
                                     body = graph @body(...) -> (f32[], i32[]) {...}} : ...

Inputs are the initial carry (one value per body output) followed by the loop's constants
(values the condition or body read from outside, captured when tracing). `cond` and `body`
are nested Graphs that both take (carry..., constants...); cond returns one scalar bool,
body the next carry with the same types. Shapes are fixed, so the memory of every
iteration is known; the runtime runs the loop on the host, reading the predicate back
after each condition (lgc.runtime.executor).

Reverse mode is refused here (the trip count is known only at run time). The batching rule
vmaps the cond and body graphs and forward mode runs the jvp of the body: transformations
of the tracing layer above, so they live with the tracing code (lgc/trace/control.py),
which sets this op's OpDef.batch when lgc.trace is imported.
"""
from __future__ import annotations

import numpy as np

from ..errors import LgcError
from ..ir import dtypes, registry
from ..ir.graph import Graph, TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register

BOOL_SCALAR = TensorType(dtypes.bool_, ())


def _types(ts) -> str:
    return "(" + ", ".join(map(str, ts)) + ")"


def _infer(types, attrs):
    cond, body = attrs["cond"], attrs["body"]
    for what, g in (("cond", cond), ("body", body)):
        if not isinstance(g, Graph):
            raise OpError(f"attribute {what!r} must be a graph, got {type(g).__name__}")
        got = [v.type for v in g.inputs]
        if got != list(types):
            raise OpError(f"{what} graph takes {_types(got)}, the loop passes {_types(types)}")
    n = len(body.outputs)
    carry = list(types[:n])
    if n > len(types):
        raise OpError(f"body returns {n} values but the loop has only {len(types)} inputs")
    if [v.type for v in body.outputs] != carry:
        raise OpError(f"body returns {_types(v.type for v in body.outputs)}, the carry is "
                      f"{_types(carry)}")
    if [v.type for v in cond.outputs] != [BOOL_SCALAR]:
        raise OpError(f"cond must return one bool[] scalar, it returns "
                      f"{_types(v.type for v in cond.outputs)}")
    return carry


def run_reference(graph: Graph, arrays) -> list[np.ndarray]:
    """A graph's outputs by each op's NumPy reference (nested loops included)."""
    env = dict(zip(graph.inputs, arrays))
    for node in graph.nodes:
        if node.op == "const":
            env[node.output] = node.attrs["value"]
            continue
        outs = registry.get(node.op).reference([env[v] for v in node.inputs], node.attrs)
        env.update(zip(node.outputs, outs))
    return [np.asarray(env[v]) for v in graph.outputs]


MAX_REFERENCE_STEPS = 100_000   # the reference interprets the body op by op: slow past this


def _reference(xs, attrs):
    """Stops with an error past MAX_REFERENCE_STEPS iterations, so constant folding leaves a
    long (or endless) loop to the device instead of running it while compiling."""
    cond, body = attrs["cond"], attrs["body"]
    n = len(body.outputs)
    carry, consts = [np.asarray(x) for x in xs[:n]], list(xs[n:])
    steps = 0
    while bool(run_reference(cond, carry + consts)[0]):
        if steps == MAX_REFERENCE_STEPS:
            raise RuntimeError(f"while: the NumPy reference stops after {steps} iterations")
        carry = [np.asarray(y, x.dtype) for y, x in zip(run_reference(body, carry + consts), carry)]
        steps += 1
    return carry


class ReverseModeError(LgcError, ValueError):
    """Reverse-mode differentiation through a loop whose trip count is data-dependent."""


def refuse_reverse_mode():
    raise ReverseModeError(
        "reverse-mode differentiation (grad, vjp) does not work for while_loop with a traced "
        "condition, nor for fori_loop with traced bounds: the trip count is known only at run "
        "time. Use scan or fori_loop with static bounds (trip count fixed when tracing), or "
        "forward mode (jvp, jacfwd)")


def _vjp(cts, ins, outs, attrs):
    refuse_reverse_mode()


register(OpDef("while", _infer, _reference, fusion="opaque",
               attrs={"cond": REQUIRED, "body": REQUIRED}, num_inputs=(1, 1 << 30),
               flops=lambda ins, outs, attrs: 0, vjp=_vjp,
               doc="while cond(carry, consts): carry = body(carry, consts)"))
