"""Sequence and Optional operators, resolved at compile time.

With static shapes a sequence's length and positions are known when compiling, so a
sequence is just a Python list of Values during import and an optional is a Value or None.
Nothing of them reaches the IR; a graph whose inputs or outputs are sequences is not
supported (the compiled program has tensor inputs and outputs only).
"""
from __future__ import annotations

import numpy as np

from ....ir.registry import OpError
from . import converter
from .control import _run_subgraph
from .layout import _axis


def _pos(ctx, pos, n, insert=False):
    p = ctx.ints(pos, "a sequence position")[0]
    limit = n + 1 if insert else n
    if not -n <= p < limit:
        raise ValueError(f"sequence position {p} out of range for length {n}")
    return p % (n + 1 if insert and p >= 0 else n) if n else 0


@converter("SequenceEmpty")
def sequence_empty(ctx, node):
    return [[]]


@converter("SequenceConstruct")
def sequence_construct(ctx, node, *xs):
    return [list(xs)]


@converter("SequenceLength")
def sequence_length(ctx, node, seq):
    return ctx.const(np.array(len(seq), np.int64))


@converter("SequenceAt")
def sequence_at(ctx, node, seq, pos):
    return seq[_pos(ctx, pos, len(seq))]


@converter("SequenceInsert")
def sequence_insert(ctx, node, seq, x, pos=None):
    out = list(seq)
    if pos is None:
        out.append(x)
    else:
        p = ctx.ints(pos, "a sequence position")[0]
        out.insert(p if p >= 0 else len(seq) + p, x)
    return [out]


@converter("SequenceErase")
def sequence_erase(ctx, node, seq, pos=None):
    out = list(seq)
    del out[-1 if pos is None else _pos(ctx, pos, len(seq))]
    return [out]


@converter("SplitToSequence")
def split_to_sequence(ctx, node, x, split=None):
    if not x.shape:
        raise OpError("SplitToSequence of a scalar")
    axis = _axis(node.attr("axis", 0), len(x.shape))
    n = x.shape[axis]
    if split is None:
        sizes, keep = [1] * n, node.attr("keepdims", 1)
    else:
        sp = ctx.ints(split, "the split sizes")
        keep = 1
        if np.asarray(ctx.need(split, "the split sizes")).ndim == 0:
            sizes = [sp[0]] * (n // sp[0]) + ([n % sp[0]] if n % sp[0] else [])
        else:
            sizes = sp
    out, start = [], 0
    for size in sizes:
        starts = [0] * len(x.shape)
        starts[axis] = start
        shape = list(x.shape)
        shape[axis] = size
        part = ctx.op("slice", [x], {"starts": tuple(starts), "steps": (1,) * len(shape), "shape": tuple(shape)})
        if not keep:
            part = ctx.op("reshape", [part], {"shape": tuple(shape[:axis] + shape[axis + 1:])})
        out.append(part)
        start += size
    return [out]


@converter("ConcatFromSequence")
def concat_from_sequence(ctx, node, seq):
    if not seq:
        raise NotImplementedError("ConcatFromSequence of an empty sequence")
    axis = node.attr("axis")
    if node.attr("new_axis", 0):
        rank = len(seq[0].shape) + 1
        axis %= rank
        seq = [ctx.op("reshape", [v], {"shape": tuple(v.shape[:axis]) + (1,) + tuple(v.shape[axis:])}) for v in seq]
    else:
        axis %= len(seq[0].shape)
    return seq[0] if len(seq) == 1 else ctx.op("concat", list(seq), {"axis": axis})


@converter("SequenceMap")
def sequence_map(ctx, node, seq, *extra):
    body = node.attr("body")
    results = None
    for i in range(len(seq)):
        args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
        outs = _run_subgraph(ctx, body, args, ctx.env)
        results = [[] for _ in outs] if results is None else results
        for r, v in zip(results, outs):
            r.append(v)
    return results if results is not None else [[] for _ in body.output]


@converter("Optional")
def optional(ctx, node, x=None):
    return [x]


@converter("OptionalHasElement")
def optional_has_element(ctx, node, x=None):
    present = x is not None and not (isinstance(x, list) and False)
    return ctx.const(np.array(present))


@converter("OptionalGetElement")
def optional_get_element(ctx, node, x):
    if x is None:
        raise ValueError("OptionalGetElement of an empty optional")
    return [x]
