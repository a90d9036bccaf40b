"""Linear algebra ops: matmul (NumPy's: 1-D operands promoted, batch dims broadcast; with
trans_b, B stored with its last two axes swapped), det, and the factorizations lgc.numpy's
linalg is built on (JAX's lax.linalg primitives): cholesky, triangular_solve, lu, qr, eigh
and svd, each on [..., m, n] with any leading batch axes, float32 or float64.

Their kernels are in lgc.backends (kernels/linalg.py: the CPU register-tile template;
gpu_gemm: the GPU SGEMM; cpu_gemm: the CPU packed-panel GEMM large matmuls are rewritten to;
kernels/factor.py: the factorizations, one work-item (CPU) or work-group (GPU) per matrix).
Their gradients are JAX's: each factorization has JAX's tangent rule, and its vjp is that
rule transposed by reverse mode (`transposed`); triangular_solve's vjp is written out, as
the transposition of the others ends in it.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
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


# ---- factorizations -------------------------------------------------------------------------
# Each reads the last two axes of its operands; leading axes are a batch (equal between the
# operands of triangular_solve). References use NumPy's LAPACK where it has the routine and
# otherwise a plain NumPy loop; they return the semantics the kernels implement, including
# NaN from cholesky of a matrix that is not positive definite.

def _factor_operand(t: TensorType, what: str, square: bool = False) -> tuple[int, int]:
    """(m, n) of a [..., m, n] float32/float64 operand."""
    if t.dtype.name not in ("f32", "f64"):
        raise OpError(f"{what}: dtype {t.dtype} not supported (float32 or float64)")
    if t.rank < 2:
        raise OpError(f"{what} needs [..., m, n], got {t.shape}")
    m, n = t.shape[-2:]
    if square and m != n:
        raise OpError(f"{what} needs square matrices [..., n, n], got {t.shape}")
    return m, n


def _per_matrix(fn, x, outs):
    """fn(matrix) -> tuple of arrays, for each matrix of x's batch, into `outs`."""
    for idx in np.ndindex(x.shape[:-2]):
        for o, r in zip(outs, fn(x[idx])):
            o[idx] = r
    return outs


def _symmetric_from(x: np.ndarray, lower: bool) -> np.ndarray:
    """The symmetric matrix whose lower (else upper) triangle is x's."""
    t = np.tril(x) if lower else np.triu(x)
    return t + np.swapaxes(np.tril(x, -1) if lower else np.triu(x, 1), -1, -2)


def _chol_infer(types, at):
    _factor_operand(types[0], "cholesky", square=True)
    return [types[0]]


def _chol_ref(xs, at):
    x = xs[0]

    def one(a):
        try:
            return (np.linalg.cholesky(a),)
        except np.linalg.LinAlgError:
            return (np.full(a.shape, np.nan, a.dtype),)
    return _per_matrix(one, _symmetric_from(x, True), [np.empty_like(x)])


def _trisolve_infer(types, at):
    a, b = types
    m, _ = _factor_operand(a, "triangular_solve", square=True)
    _factor_operand(b, "triangular_solve")
    want = b.shape[-2] if at["left_side"] else b.shape[-1]
    if want != m or a.shape[:-2] != b.shape[:-2] or a.dtype != b.dtype:
        raise OpError(f"triangular_solve: a {a} and b {b} do not match (b's "
                      f"{'rows' if at['left_side'] else 'columns'} must be a's size, the batch "
                      f"axes and dtypes equal)")
    return [b]


def _triangle(a, lower: bool, unit: bool):
    """The triangle of `a` that triangular_solve reads, with a unit diagonal if `unit`."""
    t = np.tril(a, -int(unit)) if lower else np.triu(a, int(unit))
    return t + np.eye(a.shape[-1], dtype=a.dtype) if unit else t


def _trisolve_ref(xs, at):
    """Substitution in float64, row by row (vectorized over the batch and right-hand sides)."""
    a, b = (x.astype(np.float64) for x in xs)
    t = _triangle(a, at["lower"], at["unit_diagonal"])
    t = np.swapaxes(t, -1, -2) if at["transpose_a"] else t
    lower = bool(at["lower"]) != bool(at["transpose_a"])
    if not at["left_side"]:         # x t = b  <=>  t^T x^T = b^T
        t, b, lower = np.swapaxes(t, -1, -2), np.swapaxes(b, -1, -2), not lower
    x = np.zeros_like(b)
    m = t.shape[-1]
    with np.errstate(all="ignore"):
        for i in (range(m) if lower else range(m - 1, -1, -1)):
            done = slice(0, i) if lower else slice(i + 1, m)
            x[..., i, :] = (b[..., i, :] - np.einsum("...j,...jk->...k", t[..., i, done],
                                                      x[..., done, :])) / t[..., i, i, None]
    x = x if at["left_side"] else np.swapaxes(x, -1, -2)
    return [x.astype(xs[1].dtype)]


def _lu_infer(types, at):
    m, n = _factor_operand(types[0], "lu")
    batch = types[0].shape[:-2]
    return [types[0], TensorType(dtypes.i32, batch + (min(m, n),)), TensorType(dtypes.i32, batch + (m,))]


def _lu_one(a):
    """LAPACK's getrf with partial pivoting on one matrix: (lu, pivots, permutation), the
    first largest |pivot| taken, columns with a zero pivot left unscaled."""
    lu = a.copy()
    m, n = lu.shape
    piv, perm = np.zeros(min(m, n), np.int32), np.arange(m, dtype=np.int32)
    for k in range(min(m, n)):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]], perm[[k, p]] = lu[[p, k]], perm[[p, k]]
        if lu[k, k] != 0:
            lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv, perm


def _lu_ref(xs, at):
    x = xs[0]
    outs = [np.empty_like(x)] + [np.empty(t.shape, np.int32) for t in _lu_infer(
        [TensorType(dtypes.from_numpy(x.dtype), x.shape)], at)[1:]]
    return _per_matrix(_lu_one, x, outs)


def qr_shapes(m: int, n: int, full: bool) -> tuple[tuple, tuple]:
    """Q's and R's [rows, columns]: [m, m] and [m, n] (full), else [m, k] and [k, n]."""
    k = min(m, n)
    return ((m, m), (m, n)) if full else ((m, k), (k, n))


def _qr_infer(types, at):
    m, n = _factor_operand(types[0], "qr")
    q, r = qr_shapes(m, n, at["full_matrices"])
    batch, dt = types[0].shape[:-2], types[0].dtype
    return [TensorType(dt, batch + q), TensorType(dt, batch + r)]


def _qr_ref(xs, at):
    x = xs[0]
    (m, n), full = x.shape[-2:], at["full_matrices"]
    if m == 0 or n == 0:       # NumPy's LAPACK call refuses empty matrices
        q, r = qr_shapes(m, n, full)
        return [np.broadcast_to(np.eye(*q, dtype=x.dtype), x.shape[:-2] + q).copy(),
                np.zeros(x.shape[:-2] + r, x.dtype)]
    q, r = np.linalg.qr(x, mode="complete" if full else "reduced")
    return [q.astype(x.dtype), r.astype(x.dtype)]


def eigh_types(types, at):
    n, _ = _factor_operand(types[0], "eigh", square=True)
    return [types[0], TensorType(types[0].dtype, types[0].shape[:-2] + (n,))]


def eigh_reference(xs, at):
    x = xs[0]
    if x.shape[-1] == 0:
        return [x.copy(), np.zeros(x.shape[:-1], x.dtype)]
    w, v = np.linalg.eigh(x, UPLO="L" if at["lower"] else "U")
    return [v.astype(x.dtype), w.astype(x.dtype)]


def svd_shapes(m: int, n: int, full: bool) -> tuple[tuple, tuple]:
    """U's and Vt's [rows, columns]: [m, m] and [n, n] (full), else [m, k] and [k, n]."""
    k = min(m, n)
    return ((m, m), (n, n)) if full else ((m, k), (k, n))


def svd_types(types, at):
    m, n = _factor_operand(types[0], "svd")
    batch, dt = types[0].shape[:-2], types[0].dtype
    s = TensorType(dt, batch + (min(m, n),))
    if not at["compute_uv"]:
        return [s]
    u, vt = svd_shapes(m, n, at["full_matrices"])
    return [s, TensorType(dt, batch + u), TensorType(dt, batch + vt)]


def svd_reference(xs, at):
    x = xs[0]
    (m, n), full = x.shape[-2:], at["full_matrices"]
    if m == 0 or n == 0:
        u, vt = svd_shapes(m, n, full)
        s = np.zeros(x.shape[:-2] + (0,), x.dtype)
        eye = [np.broadcast_to(np.eye(*d, dtype=x.dtype), x.shape[:-2] + d).copy() for d in (u, vt)]
        return [s] + eye if at["compute_uv"] else [s]
    if not at["compute_uv"]:
        return [np.linalg.svd(x, compute_uv=False).astype(x.dtype)]
    u, s, vt = np.linalg.svd(x, full_matrices=bool(full))
    return [s.astype(x.dtype), u.astype(x.dtype), vt.astype(x.dtype)]


def _cube(ins, outs, at) -> int:
    m, n = ins[0].shape[-2:]
    return prod(ins[0].shape[:-2]) * m * n * min(m, n)


register(OpDef("cholesky", _chol_infer, _chol_ref, num_inputs=1, batch=batch_rules.on_matrices("cholesky"),
               flops=lambda ins, outs, at: _cube(ins, outs, at) // 3,
               doc="lower Cholesky factor L (A = L L^T) of the symmetric matrix whose lower "
                   "triangle A holds; all NaN where A is not positive definite"))
register(OpDef("triangular_solve", _trisolve_infer, _trisolve_ref, num_inputs=2,
               attrs={"left_side": 0, "lower": 0, "transpose_a": 0, "unit_diagonal": 0},
               flops=lambda ins, outs, at: outs[0].size * ins[0].shape[-1],
               doc="X with op(A) X = B (left_side) or X op(A) = B, op(A) = A or A^T, A's "
                   "lower or upper triangle (unit diagonal: not read)"))
register(OpDef("lu", _lu_infer, _lu_ref, num_inputs=1, batch=batch_rules.on_matrices("lu"),
               flops=lambda ins, outs, at: 2 * _cube(ins, outs, at) // 3,
               doc="LU with partial pivoting, P A = L U: (L below and U on and above the "
                   "diagonal, int32 pivots (row swaps), int32 permutation)"))
register(OpDef("qr", _qr_infer, _qr_ref, num_inputs=1, attrs={"full_matrices": 0},
               batch=batch_rules.on_matrices("qr"), flops=lambda ins, outs, at: 4 * _cube(ins, outs, at),
               doc="Householder QR, A = Q R (numpy.linalg.qr's 'complete' or 'reduced')"))
register(OpDef("eigh", eigh_types, eigh_reference, num_inputs=1, attrs={"lower": 1},
               batch=batch_rules.on_matrices("eigh"), flops=lambda ins, outs, at: 60 * _cube(ins, outs, at),
               doc="(V, w): eigenvectors (columns) and ascending eigenvalues of the symmetric "
                   "matrix held in A's lower (or upper) triangle"))
register(OpDef("svd", svd_types, svd_reference, num_inputs=1,
               attrs={"full_matrices": 0, "compute_uv": 1},
               batch=batch_rules.on_matrices("svd"), flops=lambda ins, outs, at: 60 * _cube(ins, outs, at),
               doc="(s, U, Vt) with A = U diag(s) Vt, s descending; (s,) without compute_uv"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim so the backward ops trace like any others (jit, grad of grad).

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from .core import bind, bind_list  # noqa: E402


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


# ---- factorization rules ---------------------------------------------------------------------
# Tangent rules are JAX's (jax/_src/lax/linalg.py), written with prim; the vjp of each
# factorization is its tangent rule transposed (`transposed`), which bottoms out in the
# vjps of matmul, triangular_solve and the layout ops. Two departures, both where JAX's
# values are not finite or not the derivative of what the op computes: 1/(w_j - w_i) is
# taken as 0 for equal eigen- or singular values (JAX's symbolic zero cotangents hide the
# resulting inf * 0 there, lgc's materialized zeros would not), and ops reading one triangle
# of A (cholesky, eigh) differentiate that triangle, so their tangents are symmetrized from
# it (JAX uses the whole tangent; the two agree for the symmetric tangents that
# lnp.linalg's symmetrize_input produces).

from .core import get_aval, vjp as reverse_mode  # noqa: E402


def transposed(jvp_rule):
    """The vjp rule of an op whose tangent rule `jvp_rule` is linear in the tangents: the
    transpose of that linear map, by reverse mode through it (as JAX transposes JVPs)."""
    def vjp_rule(cts, ins, outs, attrs):
        live = [i for i, x in enumerate(ins) if get_aval(x).dtype.kind == "f"]
        floats = [j for j, y in enumerate(outs) if get_aval(y).dtype.kind == "f"]

        def tangent_map(*ts):
            tans = [None] * len(ins)
            for i, t in zip(live, ts):
                tans[i] = t
            t_outs = jvp_rule(tans, ins, outs, attrs)
            return [prim.zeros_like(outs[j]) if t_outs[j] is None else t_outs[j] for j in floats]

        _, pullback = reverse_mode(tangent_map, *[prim.zeros_like(ins[i]) for i in live])
        grads = [None] * len(ins)
        for i, g in zip(live, pullback([cts[j] for j in floats])):
            grads[i] = g
        return grads
    vjp_rule.__name__ = f"transposed{jvp_rule.__name__}"
    return vjp_rule


def _T(x):
    return prim.swapaxes(x, -1, -2)


def _tri(x, lower, k=0):
    return bind("trilu", x, upper=int(not lower), k=k)


def _solve(a, b, **attrs):
    return bind("triangular_solve", a, b, **attrs)


def _diagonal(x):
    """The diagonal of square [..., n, n] matrices, [..., n]."""
    n = x.shape[-1]
    flat = prim.reshape(x, x.shape[:-2] + (n * n,))
    return prim.slice_in_dim(flat, 0, n * n, n + 1, axis=-1) if n else prim.reshape(flat, x.shape[:-1])


def _safe_recip(x):
    """1 / x, and 0 where x is 0."""
    zero = prim.eq(x, 0)
    return prim.where(zero, 0, prim.div(1, prim.where(zero, 1, x)))


def _symmetric_tangent(t, lower):
    """The tangent of the symmetric matrix an op reads from one triangle of its operand."""
    return prim.add(_tri(t, lower), _T(_tri(t, lower, -1 if lower else 1)))


def _cholesky_jvp(tans, ins, outs, at):
    """dL = L phi(L^-1 dA L^-T), phi: the lower triangle with the diagonal halved."""
    L, da = outs[0], tans[0]
    if da is None:
        return [None]
    y = _solve(L, _solve(L, _symmetric_tangent(da, True), left_side=0, lower=1, transpose_a=1),
               left_side=1, lower=1)
    n = L.shape[-1]
    phi = (np.tril(np.ones((n, n))) - 0.5 * np.eye(n)).astype(L.dtype)
    return [prim.matmul(L, prim.mul(y, phi))]


def _trisolve_jvp(tans, ins, outs, at):
    """d(op(A)^-1 B) = op(A)^-1 (dB - op(dA) X) on the left, (dB - X op(dA)) op(A)^-1 on the
    right, dA restricted to the triangle the op reads."""
    (a, _), (da, db), x = ins, tans, outs[0]
    rhs = db
    if da is not None:
        k = int(at["unit_diagonal"])
        dt = _tri(da, at["lower"], -k if at["lower"] else k)
        dt = _T(dt) if at["transpose_a"] else dt
        term = prim.matmul(dt, x) if at["left_side"] else prim.matmul(x, dt)
        rhs = prim.neg(term) if rhs is None else prim.sub(rhs, term)
    return [None if rhs is None else _solve(a, rhs, **at)]


def _trisolve_vjp(cts, ins, outs, at):
    """gB solves the transposed system; gA = -gB X^T (left) or -X^T gB (right), transposed
    with A and restricted to the triangle read."""
    a, x, g = ins[0], outs[0], cts[0]
    gb = _solve(a, g, **{**at, "transpose_a": 1 - at["transpose_a"]})
    left, trans = at["left_side"], at["transpose_a"]
    if left:
        ga = prim.matmul(x, _T(gb)) if trans else prim.matmul(gb, _T(x))
    else:
        ga = prim.matmul(_T(gb), x) if trans else prim.matmul(_T(x), gb)
    k = int(at["unit_diagonal"])
    return [prim.neg(_tri(ga, at["lower"], -k if at["lower"] else k)), gb]


def _lu_jvp(tans, ins, outs, at):
    """JAX's: with P dA = X, L and U padded to m x m and n x n with the identity,
    M = L^-1 X U^-1 and d(LU) = L tril(M, -1) + triu(M) U."""
    da = tans[0]
    lu, _, perm = outs
    if da is None or lu.size == 0:
        return [None if da is None else prim.zeros_like(lu), None, None]
    m, n = lu.shape[-2:]
    k, lead = min(m, n), [(0, 0)] * (lu.ndim - 2)
    x = prim.take_along_axis(da, prim.expand_dims(perm, -1), axis=-2)
    low = prim.pad(_tri(prim.slice_in_dim(lu, 0, k, axis=-1), True, -1), lead + [(0, 0), (0, m - k)])
    low = prim.add(low, np.eye(m, dtype=lu.dtype))
    up = prim.pad(_tri(prim.slice_in_dim(lu, 0, k, axis=-2), False), lead + [(0, n - k), (0, 0)])
    up = prim.add(up, np.diag((np.arange(n) >= k).astype(lu.dtype)))
    mid = _solve(up, _solve(low, x, left_side=1, lower=1, unit_diagonal=1), left_side=0, lower=0)
    return [prim.add(prim.matmul(low, _tri(mid, True, -1)), prim.matmul(_tri(mid, False), up)),
            None, None]


def _qr_jvp(tans, ins, outs, at):
    """JAX's (j-towns.github.io/papers/qr-derivative.pdf): with Y = dA R^-1 and
    Z = Q^T Y, Omega = tril(Z, -1) - tril(Z, -1)^T, dQ = Q (Omega - Z) + Y, dR = (Z - Omega) R."""
    dx = tans[0]
    q, r = outs
    if dx is None:
        return [None, None]
    m, n = ins[0].shape[-2:]
    if m < n or (at["full_matrices"] and m != n):
        raise NotImplementedError("the derivative of qr is not implemented for wide matrices "
                                  "(m < n) nor for full_matrices with m != n (as in JAX)")
    y = _solve(r, dx, left_side=0, lower=0)
    z = prim.matmul(_T(q), y)
    low = _tri(z, True, -1)
    omega = prim.sub(low, _T(low))
    return [prim.add(prim.matmul(q, prim.sub(omega, z)), y), prim.matmul(prim.sub(z, omega), r)]


def _eigh_jvp(tans, ins, outs, at):
    """With M = V^T dA V: dw = diag(M), dV = V (F * M), F_ij = 1 / (w_j - w_i) off the
    diagonal."""
    da = tans[0]
    v, w = outs
    if da is None:
        return [None, None]
    m = prim.matmul(prim.matmul(_T(v), _symmetric_tangent(da, at["lower"])), v)
    f = _safe_recip(prim.sub(prim.expand_dims(w, -2), prim.expand_dims(w, -1)))
    return [prim.matmul(v, prim.mul(f, m)), _diagonal(m)]


def _svd_jvp(tans, ins, outs, at):
    """JAX's: with dS = U^T dA V, ds = diag(dS), dU = U (F * (dS S + S dS^T)) and
    dV = V (F * (S dS + dS^T S)), F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, plus the
    parts of dA outside the span of U (m > n) or V (n > m), divided by s."""
    a, da = ins[0], tans[0]
    if da is None:
        return [None] * len(outs)
    m, n = a.shape[-2:]
    uv = at["compute_uv"]
    if uv and at["full_matrices"] and m != n:
        raise NotImplementedError("the derivative of svd with full_matrices=True is "
                                  "implemented for square matrices only (JAX: for none)")
    s, u, vt = outs if uv else bind("svd", a, full_matrices=0, compute_uv=1)
    v = _T(vt)
    ds = prim.matmul(prim.matmul(_T(u), da), v)
    if not uv:
        return [_diagonal(ds)]
    s_row, s_col = prim.expand_dims(s, -2), prim.expand_dims(s, -1)
    f = _safe_recip(prim.mul(prim.add(s_row, s_col), prim.sub(s_row, s_col)))
    dss, sds = prim.mul(s_row, ds), prim.mul(s_col, ds)
    du = prim.matmul(u, prim.mul(f, prim.add(dss, _T(dss))))
    dv = prim.matmul(v, prim.mul(f, prim.add(sds, _T(sds))))
    if m > n:
        dav = prim.matmul(da, v)
        out = prim.sub(dav, prim.matmul(u, prim.matmul(_T(u), dav)))
        du = prim.add(du, prim.mul(out, _safe_recip(s_row)))
    if n > m:
        dau = prim.matmul(_T(da), u)
        out = prim.sub(dau, prim.matmul(v, prim.matmul(vt, dau)))
        dv = prim.add(dv, prim.mul(out, _safe_recip(s_row)))
    return [_diagonal(ds), du, _T(dv)]


def _batch_trisolve(args, dims, at):
    """An unbatched A with a batch of right-hand sides: the batch joins B's columns (rows
    on the right side), one solve; otherwise both operands batch first."""
    (a, b), (da, db) = args, dims
    if da is not None:
        outs = bind_list("triangular_solve", batch_rules.all_to_front(args, dims), at)
        return outs, [0]
    left = at["left_side"]
    x = batch_rules.moveaxis(b, db, len(batch_rules.shape(b)) - (1 if left else 3))
    s = batch_rules.shape(x)
    folded = s[:-2] + (s[-2] * s[-1],) if left else s[:-3] + (s[-3] * s[-2], s[-1])
    y = bind_list("triangular_solve", [a, batch_rules.reshape(x, folded)], at)[0]
    return [batch_rules.reshape(y, s)], [len(s) - (1 if left else 3)]


for _name, _jvp in (("cholesky", _cholesky_jvp), ("lu", _lu_jvp), ("qr", _qr_jvp),
                    ("eigh", _eigh_jvp), ("svd", _svd_jvp)):
    OPS[_name].jvp, OPS[_name].vjp = _jvp, transposed(_jvp)
OPS["triangular_solve"].jvp, OPS["triangular_solve"].vjp = _trisolve_jvp, _trisolve_vjp
OPS["triangular_solve"].batch = _batch_trisolve
