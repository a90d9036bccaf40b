"""Batch norm folded into convolution (and per-column scales into matmul).

After ONNX import an inference BatchNormalization is a chain of elementwise ops with
per-channel constants after the conv (sub mean, mul scale, add bias). Any chain of
mul/add/sub/div by constants that vary only along the output-channel axis is an affine map
y -> s*y + b per channel, so it folds into the producer: conv(x, W*s, s*bias + b) is one
kernel instead of four passes over the activation. For matmul (channels are the columns)
the scale goes into B and what is left is a single bias add.

A chain is only followed through values with a single user that are not graph outputs, and
only with constant weights, so nothing else observes the removed intermediate values.
Arithmetic is done in float64 and rounded once to the weight dtype. Elsewhere (batch norm
after a concat, as in DenseNet) a chain of three or more such ops collapses into one mul and
one add.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from .dce import dce
from .rewrite import Rewriter

AFFINE = ("mul", "add", "sub", "div")


def _per_channel(c: np.ndarray, out_shape, axis: int):
    """c as a vector along `axis` of out_shape (length 1 or the channel count), or None when
    it varies along another axis or would broadcast the output to a bigger shape."""
    if c.ndim > len(out_shape):
        return None
    full = (1,) * (len(out_shape) - c.ndim) + c.shape
    for k, (d, o) in enumerate(zip(full, out_shape)):
        if d != 1 and (k != axis or d != o):
            return None
    return c.reshape(-1).astype(np.float64) if c.size else None


def _compose(op, k, c, s, b):
    """(s', b') with op(s*y + b, c) = s'*y + b' (y is operand k), or None if not affine."""
    if op == "mul":
        return s * c, b * c
    if op == "add":
        return s, b + c
    if op == "sub":
        return (s, b - c) if k == 0 else (-s, c - b)
    if op == "div" and k == 0 and np.all(c != 0):   # c / y is not affine
        return s / c, b / c
    return None


def _chain(start, users, outputs, consts, axis, rw):
    """Follow affine ops from `start`; returns (last value, scale, bias, nodes) or None."""
    m = start.shape[axis]
    s, b = np.ones(m), np.zeros(m)
    v, steps = start, []
    while v not in outputs and len(users.get(v, ())) == 1:
        n = users[v][0]
        if n.op not in AFFINE or n.outputs[0].type != v.type:
            break
        k = 0 if n.inputs[0] is v else 1
        if n.inputs[k] is not v or n.inputs[1 - k] is v:
            break
        c = consts.get(rw.get(n.inputs[1 - k]))
        c = None if c is None else _per_channel(c, v.shape, axis)
        if c is None:
            break
        if (sb := _compose(n.op, k, c, s, b)) is None:
            break
        s, b = sb
        steps.append(n)
        v = n.outputs[0]
    return (v, s, b, steps) if steps else None


def fold_affine(graph: Graph) -> Graph:
    consts = graph.constants()
    users = graph.users()
    outputs = set(graph.outputs)
    rw = Rewriter(graph)
    skip: set = set()
    for node in graph.nodes:
        if node in skip:
            continue
        done = False
        if node.op == "conv" and node.outputs[0].dtype.np.kind == "f":
            done = _fold_conv(node, consts, users, outputs, rw, skip)
        elif node.op == "matmul" and node.outputs[0].dtype.np.kind == "f":
            done = _fold_matmul(node, consts, users, outputs, rw, skip)
        elif node.op in AFFINE and node.outputs[0].dtype.np.kind == "f":
            done = _collapse_chain(node, consts, users, outputs, rw, skip)
        if not done:
            rw.keep(node)
    return dce(rw.finish())


def _collapse_chain(node, consts, users, outputs, rw, skip) -> bool:
    """A chain of three or more affine ops with constants (batch norm after a concat, then a
    scale layer) becomes one mul and one add, with constants of any broadcast shape."""
    k = 0 if consts.get(rw.get(node.inputs[1])) is not None else 1
    v = node.inputs[k]
    if consts.get(rw.get(v)) is not None or v.type != node.outputs[0].type:
        return False
    s, b = np.ones(()), np.zeros(())
    steps, cur = [], v
    n = node
    while True:
        k = 0 if n.inputs[0] is cur else 1
        if n.op not in AFFINE or n.inputs[k] is not cur or n.inputs[1 - k] is cur \
                or n.outputs[0].type != cur.type:
            break
        c = consts.get(rw.get(n.inputs[1 - k]))
        if c is None or c.ndim > len(cur.shape):
            break
        if (sb := _compose(n.op, k, c.astype(np.float64), s, b)) is None:
            break
        s, b = sb
        steps.append(n)
        cur = n.outputs[0]
        if cur in outputs or len(users.get(cur, ())) != 1:
            break
        n = users[cur][0]
    if len(steps) < 3:
        return False
    dt = v.dtype.np
    y = rw.get(v)
    if np.any(s != 1):
        y = rw.op("mul", [y, rw.const(s.astype(dt))], {}, steps[0].name)
    if np.any(b != 0):
        y = rw.op("add", [y, rw.const(b.astype(dt))], {}, steps[-1].name)
    if y is rw.get(v):
        return False
    rw.replace(cur, y)
    skip.update(steps)
    return True


def _fold_conv(node, consts, users, outputs, rw, skip) -> bool:
    w = consts.get(rw.get(node.inputs[1]))
    bias = consts.get(rw.get(node.inputs[2])) if len(node.inputs) == 3 else None
    if w is None or (len(node.inputs) == 3 and bias is None):
        return False
    found = _chain(node.outputs[0], users, outputs, consts, 1, rw)
    if found is None:
        return False
    last, s, b, steps = found
    dt = w.dtype
    w2 = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dt)
    b0 = np.zeros(len(s)) if bias is None else bias.astype(np.float64)
    ins = [rw.get(node.inputs[0]), rw.const(w2), rw.const((s * b0 + b).astype(dt))]
    rw.replace(last, rw.op("conv", ins, node.attrs, node.name))
    skip.update(steps)
    return True


def _fold_matmul(node, consts, users, outputs, rw, skip) -> bool:
    bmat = consts.get(rw.get(node.inputs[1]))
    a = node.inputs[0]
    if bmat is None or bmat.ndim != 2 or len(a.shape) < 2:
        return False
    out = node.outputs[0]
    found = _chain(out, users, outputs, consts, len(out.shape) - 1, rw)
    if found is None:
        return False
    last, s, b, steps = found
    if np.all(s == 1) and len(steps) == 1:   # a lone bias add: nothing to gain
        return False
    dt = bmat.dtype
    col = (1, -1) if not node.attrs["trans_b"] else (-1, 1)
    b2 = (bmat.astype(np.float64) * s.reshape(col)).astype(dt)
    y = rw.op("matmul", [rw.get(a), rw.const(b2)], node.attrs, node.name)
    if np.any(b != 0):
        y = rw.op("add", [y, rw.const(b.astype(dt))], {}, steps[-1].name)
    rw.replace(last, y)
    skip.update(steps)
    return True
