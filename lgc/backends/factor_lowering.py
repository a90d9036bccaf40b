"""eigh and svd as their kernels take them (kernels/factor.py); both backends.

  - float32 matrices are factored in float64 and the results rounded once: a float32
    Jacobi sweep rounds every element at each of its ~n rotations, which left 512 x 512
    reconstructions 1e-5 (svd) to 3e-4 (eigh, whose shifted matrix is ~2 |A|_inf large)
    times |A| off, against NumPy's 1e-7; in float64 they are float32's last bit, for ~2.3x
    the time.
  - eigh on a CPU becomes eigh_tridiagonal (tridiagonal QL, with its n x n work matrix as
    an output; its eigenvectors only when the graph uses them: eigvalsh is O(n^2) after the
    reduction), and stays the Jacobi kernel on a GPU (a lane per pair of rows);
  - svd becomes svd_rows, which makes the rows of an m x n matrix with m <= n orthogonal
    in place in Vt's buffer, so it needs that buffer even when only the singular values
    are wanted; a tall matrix is done as its transpose (rows are contiguous):
        svd(A), m <= n          -> svd_rows(A)
        svd(A), m > n           -> svd_rows(A^T) = (s, U', Vt');  U = Vt'^T, Vt = U'^T
        svd(A, compute_uv=0)    -> the same, U and Vt unused
"""
from __future__ import annotations

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.registry import get
from ..passes.rewrite import Rewriter
from .target import Target


def _swap_last(rank: int) -> dict:
    return {"perm": tuple(range(rank - 2)) + (rank - 1, rank - 2)}


def lower_factorizations(graph: Graph, target: Target) -> Graph:
    """`graph` with eigh and svd in float64, eigh as eigh_tridiagonal on a CPU, svd as
    svd_rows (and transposes)."""
    if not any(n.op in ("eigh", "svd") for n in graph.nodes):
        return graph
    used = {v for n in graph.nodes for v in n.inputs} | set(graph.outputs)
    rw = Rewriter(graph)
    for node in graph.nodes:
        if node.op not in ("eigh", "svd"):
            rw.keep(node)
            continue
        _lower(rw, node, target, used)
        rw.changed = True
    return rw.finish()


def _lower(rw: Rewriter, node: Node, target: Target, used: set) -> None:
    a = rw.get(node.inputs[0])
    widen = a.dtype == dtypes.f32
    m, n = a.shape[-2:]
    tall = node.op == "svd" and m > n

    def emit(op, inputs, attrs, outputs=None):
        opdef = get(op)
        attrs = opdef.normalize_attrs(attrs)
        outputs = outputs or [Value(t) for t in opdef.infer([v.type for v in inputs], attrs)]
        rw.nodes.append(Node(op, inputs, attrs, outputs, node.name))
        return outputs

    x = emit("cast", [a], {"to": "f64"})[0] if widen else a
    x = emit("transpose", [x], _swap_last(len(a.shape)))[0] if tall else x
    if node.op == "eigh" and target.is_gpu:
        op, attrs = "eigh", node.attrs
    elif node.op == "eigh":
        op, attrs = "eigh_tridiagonal", {"lower": node.attrs["lower"],
                                         "vectors": int(node.outputs[0] in used)}
    else:
        op, attrs = "svd_rows", dict(node.attrs)
    types = get(op).infer([x.type], get(op).normalize_attrs(attrs))
    # the node's own Values where nothing is left to do to them, else new ones
    outs = [want if not widen and (i == 0 or not tall) else Value(t)
            for i, (want, t) in enumerate(zip(node.outputs, types))]
    outs += [Value(t) for t in types[len(outs):]]
    emit(op, [x], attrs, outs)
    if node.op == "svd" and node.attrs["compute_uv"] and tall:    # U = Vt'^T, Vt = U'^T
        perm = _swap_last(len(a.shape))
        outs = [outs[0]] + [emit("transpose", [got], perm, None if widen else [want])[0]
                            for got, want in ((outs[2], node.outputs[1]), (outs[1], node.outputs[2]))]
    if widen:
        for want, got in zip(node.outputs, outs):
            if want in used:
                emit("cast", [got], {"to": want.dtype.name}, [want])
