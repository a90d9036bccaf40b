"""Control flow (If, Loop, Scan) for static graphs.

lgc compiles for concrete shapes, so control flow is resolved at compile time where it can be:
  If    - a constant condition inlines the taken branch; a data-dependent one computes both
          branches and selects with `where` (both are pure), when their outputs agree in type.
  Loop  - unrolled when the trip count is a constant and the condition stays constant;
          otherwise (a condition or trip count that depends on data, or more than
          MAX_UNROLL iterations) one `while` op (lgc/ops/control.py) whose cond and body are
          graphs of their own, when it has no scan outputs (their length would depend on
          data too).
  Scan  - unrolled over the (static) sequence length.
"""
from __future__ import annotations

import numpy as np

from ....errors import ModelError
from ....ir.builder import GraphBuilder
from ..context import Context
from . import converter

MAX_UNROLL = 4096


def _run_subgraph(ctx, graph, bound: list, outer_env: dict, into=None, what: str = "subgraph") -> list:
    """Inline `graph` into the graph of `into` (default: ctx's) with its inputs bound to
    `bound`; returns its output Values."""
    from ..importer import convert_nodes   # the importer loads the converters
    from onnx import numpy_helper
    into = into or ctx
    env = dict(outer_env)
    for vi, v in zip(graph.input, bound):
        env[vi.name] = v
    for init in graph.initializer:
        env[init.name] = into.const(numpy_helper.to_array(init))
    saved = ctx.node
    convert_nodes(into, graph.node, env, ctx.opset)
    ctx.node = saved
    try:
        return [env[o.name] for o in graph.output]
    except KeyError as e:
        raise ModelError(f"node {ctx.name!r}: {what} output {e} is never produced") from None


@converter("If")
def if_(ctx, node, cond):
    env = ctx.env
    cval = ctx.value(cond)
    if cval is not None:
        branch = node.attr("then_branch") if bool(np.asarray(cval).reshape(-1)[0]) else node.attr("else_branch")
        return _run_subgraph(ctx, branch, [], env)
    then = _run_subgraph(ctx, node.attr("then_branch"), [], env)
    other = _run_subgraph(ctx, node.attr("else_branch"), [], env)
    outs = []
    for a, b in zip(then, other):
        if any(v is None or isinstance(v, list) for v in (a, b)):
            raise NotImplementedError("If with a data-dependent condition whose branches give "
                                      "sequences or empty optionals")
        if a.type != b.type:
            raise NotImplementedError(f"If with a data-dependent condition whose branches give "
                                      f"different types ({a.type} vs {b.type})")
        c = cond if cond.shape == () else ctx.op("reshape", [cond], {"shape": ()})
        outs.append(ctx.op("where", [c, a, b]))
    return outs


def _stack(ctx, values):
    """Stack equal-shaped Values along a new leading axis."""
    parts = [ctx.op("reshape", [v], {"shape": (1,) + tuple(v.shape)}) for v in values]
    return parts[0] if len(parts) == 1 else ctx.op("concat", parts, {"axis": 0})


class _NotStatic(Exception):
    """The Loop's termination is not known when compiling: build a while op instead."""


@converter("Loop")
def loop(ctx, node, trip=None, cond=None, *carried):
    try:
        return _unrolled(ctx, node, trip, cond, *carried)
    except _NotStatic as e:
        return _as_while(ctx, node, trip, cond, list(carried), str(e))


def _unrolled(ctx, node, trip=None, cond=None, *carried):
    body = node.attr("body")
    env = ctx.env
    try:
        n = None if trip is None else int(np.asarray(ctx.need(trip, "the Loop trip count")).reshape(-1)[0])
        keep_going = True if cond is None else bool(np.asarray(ctx.need(cond, "the Loop condition")).reshape(-1)[0])
    except ModelError:
        raise _NotStatic("its trip count or condition depends on data") from None
    if n is None or n > MAX_UNROLL:
        raise _NotStatic(f"it has no trip count or more than {MAX_UNROLL} iterations")
    state = list(carried)
    n_carried = len(carried)
    scans: list[list] = []
    cond_v = cond if cond is not None else ctx.const(np.array(True))
    i = 0
    while i < n and keep_going:
        it = ctx.const(np.array(i, np.int64))
        outs = _run_subgraph(ctx, body, [it, cond_v] + state, env)
        cond_v, state, scan_vals = outs[0], outs[1:1 + n_carried], outs[1 + n_carried:]
        if not scans:
            scans = [[] for _ in scan_vals]
        for lst, v in zip(scans, scan_vals):
            lst.append(v)
        c = ctx.value(cond_v)
        if c is None:
            raise _NotStatic("its condition depends on data")
        keep_going = bool(np.asarray(c).reshape(-1)[0])
        i += 1
    n_scan = len(body.output) - 1 - n_carried
    if i == 0 and n_scan:
        raise NotImplementedError("Loop that runs zero iterations but has scan outputs")
    return state + [_stack(ctx, lst) for lst in scans] if scans else state + []


def _names_read(graph) -> set:
    """Every name the nodes of `graph` (and of the graphs in their attributes) read."""
    out = set()
    for n in graph.node:
        out.update(n.input)
        for a in n.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                out |= _names_read(g)
    return out


def _as_while(ctx, node, trip, cond, carried, why: str):
    """The Loop as one while op. Carry: (iteration, keep going, loop state...); constants:
    the trip count, then the values of the enclosing graph the body reads (constants known
    when compiling are copied into the body instead)."""
    body = node.attr("body")
    n_state = len(carried)
    if len(body.output) - 1 - n_state:
        raise NotImplementedError(f"Loop with scan outputs when {why} (their length would "
                                  f"depend on data)")
    scalar = lambda v, dt: ctx.op("reshape", [v], {"shape": ()}) if v.type.shape != () else v  # noqa: E731
    own = {vi.name for vi in body.input} | {i.name for i in body.initializer}
    outer = sorted(k for k in _names_read(body) if k not in own and k and k in ctx.env)
    captured = [ctx.env[k] for k in outer if ctx.value(ctx.env[k]) is None]
    carry0 = [ctx.const(np.array(0, np.int64)),
              ctx.const(np.array(True)) if cond is None else scalar(cond, np.bool_)] + carried
    consts = ([scalar(trip, np.int64)] if trip is not None else []) + captured
    if any(not hasattr(v, "type") for v in carry0 + consts):
        raise NotImplementedError("Loop over sequences or optionals")

    def subgraph(name):
        b = GraphBuilder(name)
        sctx = Context(b, ctx.opset, {})
        ins = [b.input(f"c{k}", v.type) for k, v in enumerate(carry0)]
        ins += [b.input(f"k{k}", v.type) for k, v in enumerate(consts)]
        env = {}
        for k in outer:
            v = ctx.env[k]
            env[k] = sctx.const(ctx.value(v)) if ctx.value(v) is not None else \
                ins[len(carry0) + len(consts) - len(captured) + captured.index(v)]
        return b, sctx, ins, env

    b, sctx, ins, env = subgraph("cond")
    keep = ins[1]
    if trip is not None:
        keep = b.op("and", [keep, b.op("lt", [ins[0], ins[len(carry0)]])])
    g_cond = b.build([keep])

    b, sctx, ins, env = subgraph("body")
    outs = _run_subgraph(ctx, body, ins[:len(carry0)], env, sctx, "Loop body")
    keep_out = ins[1] if cond is None else outs[0]   # no cond input: the body's is ignored
    if keep_out.type.shape != ():
        keep_out = sctx.op("reshape", [keep_out], {"shape": ()})
    step = b.op("add", [ins[0], sctx.const(np.array(1, np.int64))])
    state = outs[1:]
    for k, (v, w) in enumerate(zip(state, carried)):
        if v.type != w.type:
            raise NotImplementedError(f"Loop state {k} changes from {w.type} to {v.type} in "
                                      f"the body, and {why}")
    g_body = b.build([step, keep_out] + state)
    res = ctx.b.op("while", carry0 + consts, {"cond": g_cond, "body": g_body},
                   name=ctx.name or None, num_outputs=-1)
    return list(res[2:])


@converter("Scan")
def scan(ctx, node, *inputs):
    if ctx.opset < 9:
        raise NotImplementedError("Scan before opset 9 (with a batch axis)")
    body = node.attr("body")
    env = ctx.env
    n_scan_in = int(node.attr("num_scan_inputs"))
    if not 0 < n_scan_in <= len(inputs):
        raise ModelError(f"node {node.name!r} (Scan): num_scan_inputs {n_scan_in}, but the node "
                         f"has {len(inputs)} inputs")
    n_state = len(inputs) - n_scan_in
    state, xs = list(inputs[:n_state]), list(inputs[n_state:])
    in_axes = list(node.attr("scan_input_axes", [0] * n_scan_in))
    in_dirs = list(node.attr("scan_input_directions", [0] * n_scan_in))
    n_scan_out = len(body.output) - n_state
    out_axes = list(node.attr("scan_output_axes", [0] * n_scan_out))
    out_dirs = list(node.attr("scan_output_directions", [0] * n_scan_out))
    axes = [a % len(x.shape) for a, x in zip(in_axes, xs)]
    length = xs[0].shape[axes[0]] if xs else 0
    if length > MAX_UNROLL:
        raise NotImplementedError(f"Scan unrolling is limited to {MAX_UNROLL} steps")
    collected = [[] for _ in range(n_scan_out)]
    for t in range(length):
        slices = []
        for x, ax, d in zip(xs, axes, in_dirs):
            idx = ctx.const(np.array(length - 1 - t if d else t, np.int64))
            slices.append(ctx.op("gather", [x, idx], {"axis": ax}))
        outs = _run_subgraph(ctx, body, state + slices, env)
        state = outs[:n_state]
        for lst, v in zip(collected, outs[n_state:]):
            lst.append(v)
    results = []
    for lst, ax, d in zip(collected, out_axes, out_dirs):
        if d:
            lst = lst[::-1]
        stacked = _stack(ctx, lst)
        rank = len(stacked.shape)
        ax = ax % rank
        if ax:
            perm = list(range(1, ax + 1)) + [0] + list(range(ax + 1, rank))
            stacked = ctx.op("transpose", [stacked], {"perm": tuple(perm)})
        results.append(stacked)
    return state + results
