"""Fine-tuning compressed models with lgc.grad: recover the accuracy pruning cost.

`finetune(model_fn, params, masks, x, y)` trains any lgc.numpy model function
`model_fn(params, x) -> logits` with Adam under lgc.jit(value_and_grad), multiplying each
gradient and each updated parameter by its mask (a 0/1 array, or None for "no mask"), so
pruned weights stay exactly zero throughout. `finetune_graph` does the same for a Graph:
its weight constants become the parameters (`graph_function` evaluates the graph with
them through the tracing API, one example at a time, vmapped over the batch), the masks
are the weights' current zeros, and the result is the same graph with the trained
constants. Structurally pruned graphs need no masks: they are already smaller.
"""
from __future__ import annotations

import numpy as np

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.tree_util as tu

from ..errors import InputError
from ..ir.graph import Graph
from ..ops.core import bind_list
from .graphtools import Rebuild

WEIGHT_OPS = {"conv": (1, 2), "matmul": (1,), "sparse_matmul": (1,)}
AFFINE_OPS = ("add", "sub", "mul")


def trainable_constants(graph: Graph) -> list:
    """The const Values that are weights, biases or per-channel scales: float constants of
    at least 2 elements read as a conv/matmul weight or bias, or by add/sub/mul."""
    consts = graph.constants()
    out = []
    for node in graph.nodes:
        slots = WEIGHT_OPS.get(node.op, (0, 1) if node.op in AFFINE_OPS else ())
        for i in slots:
            if i < len(node.inputs):
                v = node.inputs[i]
                if v in consts and v.dtype.is_float and v.type.size >= 2 and v not in out:
                    out.append(v)
    return out


def graph_function(graph: Graph, trainable: list | None = None):
    """(fn, params): fn(params, x) evaluates the graph (one example: x has the graph's input
    shape) with the trainable constants taken from `params` (a list of arrays)."""
    trainable = trainable_constants(graph) if trainable is None else trainable
    index = {v: i for i, v in enumerate(trainable)}

    def fn(params, *xs):
        env = dict(zip(graph.inputs, xs))
        for node in graph.nodes:
            if node.op == "const":
                v = node.output
                env[v] = params[index[v]] if v in index else lnp.asarray(node.attrs["value"])
                continue
            env.update(zip(node.outputs, bind_list(node.op, [env[v] for v in node.inputs],
                                                   node.attrs)))
        outs = [env[v] for v in graph.outputs]
        return outs[0] if len(outs) == 1 else outs
    consts = graph.constants()
    return fn, [np.array(consts[v]) for v in trainable]


def batched(graph: Graph):
    """A jitted f(x) running a batch-1 graph over x [B, *input shape]: vmap of the graph."""
    fn, params = graph_function(graph, [])
    return lgc.jit(lgc.vmap(lambda x: fn([], x)))


def cross_entropy(logits, y):
    """Mean softmax cross-entropy of integer labels y [B] (logits [B, classes])."""
    lp = nn.log_softmax(logits)
    return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1))


def finetune(model_fn, params, masks, x: np.ndarray, y: np.ndarray, epochs: int = 5,
             lr: float = 1e-3, batch: int = 64, loss=cross_entropy, seed: int = 0,
             verbose: bool = False):
    """Adam on loss(model_fn(params, xb), yb) over shuffled full batches of (x, y), with
    gradients and parameters multiplied by `masks` (a pytree like params; None leaves mean
    no mask). Returns the trained params as NumPy arrays (masked entries exactly zero)."""
    if len(x) != len(y) or len(x) < batch:
        raise InputError(f"finetune: need at least one batch of {batch} examples with labels "
                         f"(got {len(x)} inputs, {len(y)} labels)")
    if masks is not None:   # None leaves: all ones (a list/dict like params)
        flat_p, tree = tu.tree_flatten(params)
        flat_m = _mask_leaves(masks, len(flat_p))
        masks = tu.tree_unflatten(tree, [np.ones_like(p) if m is None else np.asarray(m, p.dtype)
                                         for p, m in zip(flat_p, flat_m)])

    def apply_mask(tree):
        return tree if masks is None else tu.tree_map(lambda t, m: t * m, tree, masks)

    @lgc.jit
    def step(params, m, v, k, xb, yb):
        value, g = lgc.value_and_grad(lambda p: loss(model_fn(p, xb), yb))(params)
        g = apply_mask(g)
        m = tu.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = tu.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        c1, c2 = 1 - 0.9 ** k, 1 - 0.999 ** k
        params = tu.tree_map(lambda p, m, v: p - lr * (m / c1) / (lnp.sqrt(v / c2) + 1e-8),
                             params, m, v)
        return apply_mask(params), m, v, value

    params = apply_mask(params)
    m = tu.tree_map(np.zeros_like, params)
    v = tu.tree_map(np.zeros_like, params)
    rng, k = np.random.default_rng(seed), 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for b in range(len(x) // batch):
            idx = order[b * batch:(b + 1) * batch]
            k += 1
            params, m, v, value = step(params, m, v, np.float32(k), x[idx], y[idx])
        if verbose:
            print(f"finetune: epoch {epoch + 1} loss {float(value):.4f}")
    return tu.tree_map(lambda p: np.asarray(p), params)


def _mask_leaves(masks, n: int) -> list:
    """The masks' leaves in params' order, None kept (a flat list, or a pytree of arrays)."""
    if isinstance(masks, (list, tuple)) and len(masks) == n and \
            all(m is None or isinstance(m, np.ndarray) for m in masks):
        return list(masks)
    leaves = tu.tree_leaves(masks)
    if len(leaves) != n:
        raise InputError(f"finetune: {len(leaves)} masks for {n} parameters")
    return leaves


def finetune_graph(graph: Graph, x: np.ndarray, y: np.ndarray, keep_zeros: bool = True,
                   **options) -> Graph:
    """Fine-tune a batch-1 classifier graph's weights on (x [N, *input shape], y [N] int)
    (entry point). Options: keep_zeros (zeros of weights of rank >= 2, i.e. pruned
    weights, stay zero) [True], then those of
    `finetune`: epochs [5], lr [1e-3], batch [64], loss [cross_entropy], seed [0], verbose."""
    if len(graph.inputs) != 1 or graph.inputs[0].shape[:1] != (1,):
        raise InputError("finetune_graph: needs a graph of one input with batch size 1 "
                         f"(got inputs {[str(v.type) for v in graph.inputs]})")
    trainable = trainable_constants(graph)
    fn, params = graph_function(graph, trainable)
    # weights (rank >= 2) keep their zeros; biases and scales (rank 1) train freely
    masks = [(p != 0) if keep_zeros and p.ndim >= 2 and np.any(p == 0) else None
             for p in params]

    def model(params, xb):            # xb [B, 1, ...] -> logits [B, classes]
        out = lgc.vmap(lambda xi: fn(params, xi), in_axes=0)(xb)
        return lnp.reshape(out, (out.shape[0], -1))

    trained = finetune(model, params, masks, np.asarray(x, graph.inputs[0].dtype.np)[:, None],
                       np.asarray(y, np.int32), **options)
    new = dict(zip(trainable, trained))
    rb = Rebuild(graph)
    for node in graph.nodes:
        if node.op == "const" and node.output in new:
            arr = np.asarray(new[node.output], node.attrs["value"].dtype)
            rb.bind(node.output, rb.const(arr, node.output.name))
        else:
            rb.copy(node)
    return rb.finish()
