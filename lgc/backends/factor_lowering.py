"""eigh and svd as their kernels take them (kernels/factor.py); both backends.

  - float32 matrices are factored in float64 and the results rounded once, which gives
    NumPy's accuracy. In float32, a GPU's Jacobi sweep rounds every element at each of its
    ~n rotations (512 x 512 reconstructions 1e-5 (svd) to 3e-4 (eigh, whose shifted
    matrix is ~2 |A|_inf large) times |A| off, NumPy's 1e-7), and a CPU's QL and QR
    sweeps left residuals and orthogonality 6-13x NumPy's at n = 512 for half the time.
  - eigh on a CPU becomes eigh_tridiagonal (tridiagonal QL, with its n x n work matrix as
    an output; its eigenvectors only when the graph uses them: eigvalsh is O(n^2) after the
    reduction), and stays the Jacobi kernel on a GPU (a lane per pair of rows);
  - svd on a CPU becomes svd_bidiagonal (Golub-Reinsch on a tall matrix: the transpose of
    a wide one, A^T = V S U^T; (s, U^T, Vt) and an O(mn) work vector), on a GPU svd_rows
    (one-sided Jacobi on the rows of a wide matrix, in place in Vt's buffer, which it
    needs even when only the singular values are wanted); the outputs nobody uses are left
    out, the others transposed back where needed.
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
    swap = _swap_last(len(a.shape))

    def emit(op, inputs, attrs):
        opdef = get(op)
        attrs = opdef.normalize_attrs(attrs)
        outputs = [Value(t) for t in opdef.infer([v.type for v in inputs], attrs)]
        rw.nodes.append(Node(op, inputs, attrs, outputs, node.name))
        return outputs

    x = emit("cast", [a], {"to": "f64"})[0] if widen else a
    if node.op == "eigh":
        if target.is_gpu:
            outs = emit("eigh", [x], node.attrs)
        else:
            outs = emit("eigh_tridiagonal", [x], {"lower": node.attrs["lower"],
                                                 "vectors": int(node.outputs[0] in used)})
        results = [(outs[0], False), (outs[1], False)]
    else:
        uv, at = node.attrs["compute_uv"], {"full_matrices": node.attrs["full_matrices"],
                                            "compute_uv": node.attrs["compute_uv"]}
        # svd_rows: (s, U, Vt) of a wide x; svd_bidiagonal: (s, U^T, Vt) of a tall x;
        # the other orientation is factored as A^T = V S U^T
        op, transposed = ("svd_rows", m > n) if target.is_gpu else ("svd_bidiagonal", m < n)
        s, p, q = emit(op, [emit("transpose", [x], swap)[0] if transposed else x], at)[:3]
        if op == "svd_rows":
            u, vt = ((q, True), (p, True)) if transposed else ((p, False), (q, False))
        else:
            u, vt = ((q, True), (p, False)) if transposed else ((p, True), (q, False))
        results = [(s, False)] + ([u, vt] if uv else [])
    for want, (got, transpose) in zip(node.outputs, results):
        if want not in used:
            continue
        if transpose:
            got = emit("transpose", [got], swap)[0]
        if widen:
            got = emit("cast", [got], {"to": want.dtype.name})[0]
        rw.replace(want, got)
