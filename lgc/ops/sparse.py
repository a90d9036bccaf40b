"""sparse_matmul: x @ W with W stored in compressed sparse form (lgc.compress.prune).

Inputs: x [..., K] float; values [nnz] (x's dtype), indices [nnz] int32 (row k of each
nonzero), indptr [N + 1] int32 (column n's nonzeros are values[indptr[n]:indptr[n+1]]):
CSR of W^T, i.e. W [K, N] stored by output column. Attribute k = K, so that the type rule
can check x. Output [..., N]. The kernel (lgc.backends.sparse_kernels) does 2 * rows * nnz
FLOPs and takes a fusion epilogue like matmul.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register


def _infer(types, attrs):
    x, v, i, p = types
    if not x.dtype.is_float or v.dtype != x.dtype:
        raise OpError(f"sparse_matmul: x and values must share a float dtype, got {x.dtype} "
                      f"and {v.dtype}")
    if i.dtype.name != "i32" or p.dtype.name != "i32":
        raise OpError("sparse_matmul: indices and indptr must be int32")
    if v.rank != 1 or i.shape != v.shape or p.rank != 1 or p.shape[0] < 1:
        raise OpError(f"sparse_matmul: values {v.shape}, indices {i.shape} and indptr "
                      f"{p.shape} must be 1-D, values and indices of one length")
    if x.rank < 1 or x.shape[-1] != attrs["k"]:
        raise OpError(f"sparse_matmul: x's last axis {x.shape} must be k={attrs['k']}")
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + (p.shape[0] - 1,))]


def csr_to_dense(values, indices, indptr, k: int) -> np.ndarray:
    """W [K, N] from its by-column CSR."""
    n = len(indptr) - 1
    w = np.zeros((n, k), np.float64)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    w[rows, indices] = values
    return w.T


def dense_to_csr(w: np.ndarray):
    """(values, indices, indptr) of W [K, N] stored by column; zeros dropped."""
    wt = np.asarray(w).T
    nz = wt != 0
    indptr = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int32)
    rows, cols = np.nonzero(nz)
    return wt[rows, cols].astype(w.dtype), cols.astype(np.int32), indptr


def _ref(xs, attrs):
    x, v, i, p = xs
    w = csr_to_dense(v.astype(np.float64), i, p, attrs["k"])
    return [(x.astype(np.float64) @ w).astype(x.dtype)]


register(OpDef("sparse_matmul", _infer, _ref, fusion="out_fusable",
               attrs={"k": REQUIRED}, num_inputs=4,
               flops=lambda ins, outs, at: 2 * (outs[0].size // max(outs[0].shape[-1], 1)) * ins[1].size,
               doc="x [..., K] @ W, W [K, N] as by-column CSR (values, indices, indptr)"))


# ---- batching and gradient rules (lgc.vmap, lgc.grad) ---------------------------------------

from . import batch_rules, prim  # noqa: E402
from ..ir.registry import OPS  # noqa: E402
from ._rules import is_host  # noqa: E402


def _vjp_sparse(cts, ins, outs, attrs):
    """x: g @ W^T, as a segment sum of g's columns weighted by the nonzeros onto their rows;
    values: the sum over rows of x[k_j] * g[n_j]. Integer index inputs get none."""
    x, v, idx, ptr = ins
    g = cts[0]
    K, N = attrs["k"], g.shape[-1]
    g2 = prim.reshape(g, (-1, N))
    x2 = prim.reshape(x, (-1, K))
    nnz = v.shape[0]
    ends = ptr[1:][None, :] if is_host(ptr) else \
        prim.expand_dims(prim.slice_in_dim(ptr, 1, None), 0)        # [1, N]: column ends
    past = prim.ge(prim.expand_dims(prim.arange(nnz, dtype=np.int32), 1), ends)
    col = prim.sum(prim.astype(past, np.int32), axis=1)             # column of each nonzero
    gc = prim.take(g2, col, axis=1)                                 # [R, nnz]
    gv = prim.sum(prim.mul(prim.take(x2, idx, axis=1), gc), axis=0)
    gx = prim.segment_sum(prim.transpose(prim.mul(gc, prim.expand_dims(v, 0))), idx,
                          num_segments=K)                           # [K, R]
    return [prim.reshape(prim.transpose(gx), x.shape), gv, None, None]


OPS["sparse_matmul"].batch = batch_rules.leading_axes("sparse_matmul")
OPS["sparse_matmul"].vjp = _vjp_sparse
