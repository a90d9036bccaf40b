"""Grouped-query attention without repeating the cache.

A Llama-style decoder with fewer key/value heads than query heads (TinyLlama: 32 and 4)
exports transformers' `repeat_kv`: each KV head broadcast to its R query heads and reshaped,
[B, KV, C, D] -> [B, KV, R, C, D] -> [B, KV * R, C, D], before the attention's two matmuls.
Run as written, every step copies the whole cache R times (TinyLlama at 64 positions: 2 x
512 KB per layer, two kernels that took as long as the attention's own math 10 times over).

`share_kv_heads` rewrites each matmul whose B is such a repeat (optionally transposed over its
last two axes and times a scalar, as torch's exporter writes q @ (k^T * scale)) to multiply
the R query heads of a group together against their one KV head:
  A [B, KV * R, S, X] -> [B, KV, R * S, X];  @ B's KV heads;  [B, KV, R * S, Y] -> [B, KV * R, S, Y]
(reshapes of contiguous axes: free).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..passes.dce import dce
from ..passes.rewrite import Rewriter


def share_kv_heads(graph: Graph) -> Graph:
    producer = {v: n for n in graph.nodes for v in n.outputs}
    rw = Rewriter(graph)
    for node in graph.nodes:
        if not (node.op == "matmul" and _grouped(rw, node, producer)):
            rw.keep(node)
    return dce(rw.finish()) if rw.changed else graph


def _repeat_source(v, producer):
    """(the [B, KV, C, D] source of a repeated B, transposed?, scalar factor or None), or None."""
    transposed, scale = False, None
    while v in producer:
        n = producer[v]
        if n.op == "mul" and scale is None and len(n.inputs) == 2 and n.inputs[1].type.size == 1 \
                and n.inputs[0].shape == v.shape:
            v, scale = n.inputs[0], n.inputs[1]
        elif n.op == "transpose" and not transposed and tuple(n.attrs["perm"]) == (0, 1, 3, 2):
            v, transposed = n.inputs[0], True
        else:
            break
    n = producer.get(v)
    if n is None or n.op != "reshape" or len(v.shape) != 4:
        return None
    rep = n.inputs[0]
    b = producer.get(rep)
    if b is None or b.op != "broadcast_to" or len(rep.shape) != 5:
        return None
    src = b.inputs[0]
    B, KV, R, C, D = rep.shape
    if src.shape != (B, KV, 1, C, D) or v.shape != (B, KV * R, C, D):
        return None
    return src, transposed, scale


def _grouped(rw: Rewriter, node, producer) -> bool:
    A, Bv = node.inputs
    found = _repeat_source(Bv, producer)
    if found is None or node.attrs.get("trans_b") or len(A.shape) != 4:
        return False
    src, transposed, scale = found
    Bn, KV, _, C, D = src.shape
    H, S, X = A.shape[1:]
    if A.shape[0] != Bn or H % KV or H == KV:
        return False
    R = H // KV
    kv = rw.op("reshape", [src], {"shape": (Bn, KV, C, D)})
    if transposed:
        kv = rw.op("transpose", [kv], {"perm": (0, 1, 3, 2)})
    if scale is not None:
        kv = rw.op("mul", [kv, scale])
    a = rw.op("reshape", [A], {"shape": (Bn, KV, R * S, X)})
    y = rw.op("matmul", [a, kv], {"trans_b": 0}, name=node.name)
    out = node.outputs[0]
    rw.replace(out, rw.op("reshape", [y], {"shape": out.shape}))
    return True
