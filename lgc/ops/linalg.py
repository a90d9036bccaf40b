"""Linear algebra ops: matmul (NumPy's: 1-D operands promoted, batch dims broadcast; with
trans_b, B stored with its last two axes swapped) and det.

Their kernels are in lgc.backends (kernels/linalg.py: the CPU register-tile template;
gpu_gemm: the GPU SGEMM; cpu_gemm: the CPU packed-panel GEMM large matmuls are rewritten to).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import OpDef, OpError, register
from . import batch_rules
from ._rules import bilinear_jvp, broadcast_shapes, f16_as_f32, require, same_dtype


def prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


# ---- matmul ---------------------------------------------------------------------------------

def mm_shapes(a, b):
    """(batch_a, batch_b, batch, M, K, N, out_shape) after NumPy's 1-D promotion."""
    if not a or not b:
        raise OpError("matmul operands must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise OpError(f"matmul: inner dimensions differ ({a} @ {b})")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return a2[:-2], b2[:-2], batch, a2[-2], a2[-1], b2[-1], out


def b_shape(b, attrs):
    """B's shape as the product sees it: with trans_b, B is stored [..., N, K]."""
    if not attrs["trans_b"]:
        return tuple(b)
    if len(b) < 2:
        raise OpError("matmul with trans_b needs B of rank >= 2")
    return tuple(b[:-2]) + (b[-1], b[-2])


def _mm_infer(types, attrs):
    require(types, "fiu", "matmul")
    dt = same_dtype(types)
    return [TensorType(dt, mm_shapes(types[0].shape, b_shape(types[1].shape, attrs))[-1])]


def _mm_ref(xs, attrs):
    a, b = xs
    if attrs["trans_b"]:
        b = np.swapaxes(b, -1, -2)
    return [np.asarray(np.matmul(f16_as_f32(a), f16_as_f32(b))).astype(a.dtype)]


def _batch_matmul(args, dims, at):
    """1-D operands promoted to matrices (as NumPy does), batched ones with the batch axis
    first and size-1 axes up to the common batch rank, so the op's own batch broadcasting
    does the rest; the promoted axes are dropped again. A batched A times one shared
    matrix is one GEMM with the batch folded into A's rows (or B's columns)."""
    (a, b), (da, db) = args, dims
    ra, rb = (len(batch_rules.shape(x)) - (d is not None) for x, d in ((a, da), (b, db)))
    if db is None and rb == 2:
        x = batch_rules.moveaxis(a, da, 0)
        s = batch_rules.shape(x)
        y = batch_rules.bind("matmul", batch_rules.reshape(x, (prod(s[:-1]), s[-1])), b, **at)
        return [batch_rules.reshape(y, s[:-1] + batch_rules.shape(y)[-1:])], [0]
    if da is None and ra == 2 and rb <= 2:   # a shared matrix times a batch: into B's columns
        t = at["trans_b"]
        x = batch_rules.moveaxis(b, db, 0 if t else 1)   # [B, N, K] with trans_b, else [K, B, (N)]
        s = batch_rules.shape(x)
        x = batch_rules.reshape(x, (s[0] * s[1], s[2]) if t else (s[0], prod(s[1:])))
        y = batch_rules.bind("matmul", a, x, **at)
        return [batch_rules.reshape(y, batch_rules.shape(y)[:1] + (s[:2] if t else s[1:]))], [1]
    xs = []
    for x, d, r, where in ((a, da, ra, -1), (b, db, rb, None)):
        if d is not None:
            x = batch_rules.moveaxis(x, d, 0)
        s = batch_rules.shape(x)
        if r == 1:   # (K,) -> (1, K) for a, (K, 1) for b
            s = s[:-1] + (1,) + s[-1:] if where == -1 else s + (1,)
        xs.append((x, s, d is not None))
    nb = max(len(s) - bat for _, s, bat in xs) - 2
    xs = [batch_rules.reshape(x, s[:1] + (1,) * (nb + 2 - len(s) + 1) + s[1:] if bat else s)
          for x, s, bat in xs]
    y = batch_rules.bind("matmul", *xs, trans_b=at["trans_b"])
    s = batch_rules.shape(y)
    return [batch_rules.reshape(y, s[:-2] + s[-2:-1] * (ra > 1) + s[-1:] * (rb > 1))], [0]


register(OpDef("matmul", _mm_infer, _mm_ref, fusion="out_fusable", num_inputs=2,
               attrs={"trans_b": 0}, batch=_batch_matmul,
               flops=lambda ins, outs, at: 2 * outs[0].size * ins[0].shape[-1],
               doc="NumPy matmul: 1-D operands promoted, batch dims broadcast; trans_b: B is "
                   "stored with its last two axes swapped"))


# ---- det ------------------------------------------------------------------------------------

DET_MAX_N = 32   # the matrix is copied into private memory


def _det_infer(types, attrs):
    require(types, "f", "det")
    x = types[0].shape
    if len(x) < 2 or x[-1] != x[-2]:
        raise OpError(f"det needs [..., n, n], got {x}")
    if x[-1] > DET_MAX_N:
        raise OpError(f"det of {x[-1]}x{x[-1]} matrices: at most {DET_MAX_N}x{DET_MAX_N} supported")
    return [TensorType(types[0].dtype, x[:-2])]


register(OpDef("det", _det_infer,
               lambda xs, at: [np.asarray(np.linalg.det(xs[0].astype(np.float64))).astype(xs[0].dtype)],
               fusion="opaque", num_inputs=1,
               batch=batch_rules.on_matrices("det"),
               doc="determinant of [..., n, n] by LU with partial pivoting"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim so the backward ops trace like any others (jit, grad of grad).

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from .core import bind  # noqa: E402


def _matmul_vjp(cts, ins, outs, attrs):
    """ga = g @ b^T, gb = a^T @ g, with 1-d operands as rows/columns and batch axes summed
    back by autodiff (broadcast operands)."""
    (a, b), g = ins, cts[0]
    if attrs["trans_b"]:
        b = prim.swapaxes(b, -1, -2)
    a2 = prim.reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = prim.reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a.ndim == 1:
        g = prim.expand_dims(g, -2 if b.ndim > 1 else 0)
    if b.ndim == 1:
        g = prim.expand_dims(g, -1)
    ga = prim.reshape(prim.unbroadcast(prim.matmul(g, prim.swapaxes(b2, -1, -2)), a2.shape),
                      a.shape)
    gb = prim.reshape(prim.unbroadcast(prim.matmul(prim.swapaxes(a2, -1, -2), g), b2.shape),
                      b.shape)
    return [ga, prim.swapaxes(gb, -1, -2) if attrs["trans_b"] else gb]


def _det_vjp(cts, ins, outs, attrs):
    """d det(A) / dA = adj(A)^T, the cofactors: (-1)^(i+j) det(A without row i, column j).
    The minors are one batched det (exact for singular A too, unlike det * inv(A)^T)."""
    a, g = ins[0], cts[0]
    n = a.shape[-1]
    if n == 1:
        return [prim.mul(prim.ones_like(a), prim.expand_dims(g, (-2, -1)))]
    keep = [[k for k in range(n) if k != i] for i in range(n)]
    rows = np.array([keep[i] for i in range(n) for j in range(n)])[:, :, None]
    cols = np.array([keep[j] for i in range(n) for j in range(n)])[:, None, :]
    at = (rows * n + cols).astype(np.int32)    # the minors' entries in the flattened matrix
    flat = prim.reshape(a, a.shape[:-2] + (n * n,))
    minors = bind("det", bind("gather", flat, at, axis=flat.ndim - 1, weak=flat.weak_type))
    sign = np.array([(-1.0) ** (i + j) for i in range(n) for j in range(n)], a.dtype)
    cof = prim.reshape(prim.mul(minors, sign), a.shape)
    return [prim.mul(cof, prim.expand_dims(g, (-2, -1)))]


OPS["matmul"].vjp = _matmul_vjp
OPS["det"].vjp = _det_vjp
OPS["matmul"].jvp = bilinear_jvp("matmul")
