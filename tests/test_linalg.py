"""lgc.numpy.linalg and the factorization ops (cholesky, triangular_solve, lu, qr, eigh, svd)
against NumPy/SciPy: the kernels (CPU and GPU variants) against the ops' references, the
functions on random and awkward inputs (singular, rank-deficient, repeated eigenvalues,
empty and size-1 axes, flipped views), gradients against float64 central differences,
vmap against a loop. Eigenvectors and singular vectors are checked by what defines them
(reconstruction, orthogonality), not element by element. Cases are grouped into a few jitted
functions to keep compiles few."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg as sl

import lgc
import lgc.numpy as lnp
from lgc.backends.target import GFX803
from lgc.testing import check_ops, run_op
from lgc.trace import bind, enable_x64

rng = np.random.default_rng(0)
la = lnp.linalg


def f32(*s):
    return rng.standard_normal(s).astype(np.float32)


def spd(n, *batch, dtype=np.float32):
    a = rng.standard_normal(batch + (n, n))
    return (a @ np.swapaxes(a, -1, -2) + n * np.eye(n)).astype(dtype)


def rank_deficient(m, n, r, dtype=np.float32):
    """Rank r exactly (small integers: no rounding in float32)."""
    return (rng.integers(-3, 4, (m, r)) @ rng.integers(-3, 4, (r, n))).astype(dtype)


def repeated_eigenvalues(values):
    q, _ = np.linalg.qr(rng.standard_normal((len(values), len(values))))
    return ((q * np.asarray(values, float)) @ q.T).astype(np.float32)


def _orthonormal(x, axis, tol):
    """The vectors along `axis` of x (columns: -2, rows: -1) are orthonormal."""
    g = np.swapaxes(x, -1, -2) @ x if axis == -2 else x @ np.swapaxes(x, -1, -2)
    np.testing.assert_allclose(g, np.broadcast_to(np.eye(g.shape[-1]), g.shape), atol=tol)


# ---- kernels against the ops' references ----------------------------------------------------------

def _kernel_cases():
    a5 = f32(2, 5, 5) + 4 * np.eye(5, dtype=np.float32)
    cases = [("cholesky", [spd(4)], {}), ("cholesky", [spd(3, 2)], {}),
             ("cholesky", [-spd(3)], {}),                     # not positive definite: NaN
             ("cholesky", [np.ones((1, 1), np.float32)], {}),
             ("cholesky", [np.zeros((2, 0, 0), np.float32)], {})]
    for left, lower, trans, unit in itertools.product((0, 1), repeat=4):
        b = f32(2, 5, 3) if left else f32(2, 3, 5)
        cases.append(("triangular_solve", [a5, b], dict(left_side=left, lower=lower,
                                                         transpose_a=trans, unit_diagonal=unit)))
    cases.append(("triangular_solve", [a5, f32(2, 5, 0)], dict(left_side=1)))
    singular = np.array([[1, 2, 3], [2, 4, 6], [1, 0, 1]], np.float32)
    cases += [("lu", [x], {}) for x in (f32(4, 4), f32(2, 6, 3), f32(3, 7), singular,
                                        np.zeros((3, 3), np.float32), f32(1, 1), f32(3, 0))]
    cases += [("qr", [x], dict(full_matrices=full)) for full in (0, 1)
              for x in (f32(5, 3), f32(3, 5), f32(2, 4, 4), f32(6, 1), f32(1, 1), f32(3, 0), f32(0, 3))]
    return cases


KERNEL_CASES = _kernel_cases()


def test_kernels_cpu():
    check_ops(KERNEL_CASES, rtol=1e-4, atol=2e-5)


def test_kernels_gpu_variants():
    """The work-group-per-matrix kernels (lanes and barriers), run on PoCL: matrices wider
    than the 64 lanes too (triangular_solve's GPU kernel differs only in its launch: a few
    of its variants)."""
    cases = [c for c in KERNEL_CASES if c[0] != "triangular_solve" or c[2].get("unit_diagonal") == c[2].get("lower")]
    check_ops(cases + [("lu", [f32(70, 66)], {}), ("qr", [f32(70, 66)], {"full_matrices": 1}),
                       ("cholesky", [spd(70)], {})], rtol=1e-4, atol=5e-5, target=GFX803)
    for x in (f32(6, 6), f32(70, 70), np.eye(5, dtype=np.float32)):
        v, w = run_op("eigh", [x], target=GFX803)
        s = np.tril(x) + np.tril(x, -1).T
        np.testing.assert_allclose(w, np.linalg.eigvalsh(s), atol=1e-4)
        np.testing.assert_allclose(s @ v, v * w, atol=1e-4)
    for x, full in ((f32(6, 4), 1), (f32(4, 70), 0), (rank_deficient(5, 7, 2), 1)):
        s, u, vt = run_op("svd", [x], {"full_matrices": full}, target=GFX803)
        _check_svd(x, s, u, vt, full, tol=1e-4)


def _check_svd(x, s, u, vt, full, tol):
    k = min(x.shape[-2:])
    np.testing.assert_allclose(s, np.linalg.svd(x, compute_uv=False), atol=tol * max(1, np.abs(x).max()))
    np.testing.assert_allclose((u[..., :, :k] * s[..., None, :]) @ vt[..., :k, :], x, atol=tol * max(1, np.abs(x).max()))
    assert u.shape[-1] == (x.shape[-2] if full else k) and vt.shape[-2] == (x.shape[-1] if full else k)
    _orthonormal(u, -2, tol)
    _orthonormal(vt, -1, tol)


# ---- the functions against NumPy ------------------------------------------------------------

def test_solve_inv_det_cholesky_matrix_power():
    a, b, bv = f32(3, 4, 4), f32(4, 2), f32(4)
    big = f32(40, 40) / 6                    # det above the det op's 32 x 32: lu's pivots
    sing = np.array([[1, 2, 3], [2, 4, 6], [1, 0, 1]], np.float32)   # exactly singular
    s3 = spd(3, 2)

    def f(a, b, bv, big, sing, s3):
        return (la.solve(a, b), la.solve(a, bv), la.solve(a[0], b), la.inv(a), la.det(a),
                la.det(big), la.slogdet(a), la.slogdet(big), la.slogdet(sing), la.det(sing),
                la.cholesky(s3), la.cholesky(s3, upper=True),
                [la.matrix_power(a, k) for k in (0, 1, 2, 3, 5, -2)])
    got = lgc.jit(f)(a, b, bv, big, sing, s3)
    want = (np.linalg.solve(a, b), np.linalg.solve(a, bv), np.linalg.solve(a[0], b), np.linalg.inv(a),
            np.linalg.det(a), np.linalg.det(big), tuple(np.linalg.slogdet(a)), tuple(np.linalg.slogdet(big)),
            (0.0, -np.inf), 0.0, np.linalg.cholesky(s3), np.swapaxes(np.linalg.cholesky(s3), -1, -2),
            [np.linalg.matrix_power(a, k) for k in (0, 1, 2, 3, 5, -2)])
    for g, w in zip(lgc.tree_util.tree_leaves(got), lgc.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=2e-4, atol=2e-5)
    assert got[6].sign.dtype == np.float32 and got[0].dtype == np.float32


def test_integer_and_flipped_operands():
    """Integers become float32; flipped (negative-stride) views read correctly."""
    ai = np.array([[4, 1], [2, 3]])
    flipped = np.flip(f32(5, 5), axis=(0, 1))
    inv, det, s = lgc.jit(lambda i, x, y: (la.inv(i), la.det(x), la.svd(y, compute_uv=False)))(
        ai, flipped, flipped[::2])
    assert inv.dtype == np.float32
    np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(ai), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(det), np.linalg.det(flipped), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(s), np.linalg.svd(flipped[::2], compute_uv=False), rtol=1e-5)


def test_qr_svd_eigh_modes():
    a, w = f32(2, 5, 3), f32(3, 6)
    sym = f32(4, 4)

    def f(a, w, sym):
        return (la.qr(a), la.qr(a, mode="complete"), la.qr(a, mode="r"), la.qr(w),
                la.svd(a), la.svd(a, full_matrices=False), la.svd(w), la.svd(a, compute_uv=False),
                la.eigh(sym), la.eigh(sym, UPLO="U", symmetrize_input=False),
                la.eigvalsh(sym, UPLO="U", symmetrize_input=False), la.svd(sym + sym.T, hermitian=True))
    (q, r), (qc, rc), r_only, (qw, rw), svd_full, svd_red, svd_w, s_only, eig, eig_u, w_u, svd_h = \
        lgc.jit(f)(a, w, sym)
    for q_, r_, x, mode in ((q, r, a, "reduced"), (qc, rc, a, "complete"), (qw, rw, w, "reduced")):
        wq, wr = np.linalg.qr(x, mode=mode)          # LAPACK's reflectors: the same signs
        np.testing.assert_allclose(np.asarray(q_), wq, atol=1e-5)
        np.testing.assert_allclose(np.asarray(r_), wr, atol=1e-5)
    np.testing.assert_allclose(np.asarray(r_only), np.asarray(r))
    for (u, s, vt), x, full in ((svd_full, a, 1), (svd_red, a, 0), (svd_w, w, 1)):
        _check_svd(x, np.asarray(s), np.asarray(u), np.asarray(vt), full, tol=1e-5)
    np.testing.assert_allclose(np.asarray(s_only), np.linalg.svd(a, compute_uv=False), rtol=1e-6)
    for (vals, vecs), x in ((eig, (sym + sym.T) / 2), (eig_u, np.triu(sym) + np.triu(sym, 1).T)):
        vals, vecs = np.asarray(vals), np.asarray(vecs)
        np.testing.assert_allclose(vals, np.linalg.eigvalsh(x), atol=1e-5)
        np.testing.assert_allclose(x @ vecs, vecs * vals, atol=1e-5)
        _orthonormal(vecs, -2, 1e-6)
    np.testing.assert_allclose(np.asarray(w_u), np.linalg.eigvalsh(sym, UPLO="U"), atol=1e-5)
    u, s, vt = (np.asarray(t) for t in svd_h)
    _check_svd(sym + sym.T, s, u, vt, 1, tol=1e-5)


def test_awkward_spectra():
    """Identity, repeated eigenvalues, zero and rank-deficient matrices, size 1 and 0."""
    mats = [np.eye(5, dtype=np.float32), repeated_eigenvalues([1, 1, 2, 2, 3]),
            repeated_eigenvalues([-2, -2, 2, 2, 0]), np.zeros((5, 5), np.float32)]
    low_rank = [rank_deficient(6, 4, 1), rank_deficient(4, 6, 2), np.zeros((3, 5), np.float32)]

    def f(mats, low_rank, one):
        return ([la.eigh(m) for m in mats], [la.svd(m) for m in low_rank],
                [la.pinv(m, 1e-4) for m in low_rank], [la.lstsq(m, m[:, 0], 1e-4) for m in low_rank],
                la.eigh(one), la.svd(one), la.eigh(one[:, :0, :0]), la.svd(one[:, :, :0]))
    one = f32(2, 1, 1)
    eigs, svds, pinvs, lstsqs, eig1, svd1, eig0, svd0 = lgc.jit(f)(mats, low_rank, one)
    for m, (vals, vecs) in zip(mats, eigs):
        vals, vecs = np.asarray(vals), np.asarray(vecs)
        np.testing.assert_allclose(vals, np.linalg.eigvalsh(m), atol=2e-6)
        np.testing.assert_allclose(m @ vecs, vecs * vals, atol=2e-6)
        _orthonormal(vecs, -2, 1e-6)
    for m, (u, s, vt), p, (x, resid, rank, sv) in zip(low_rank, svds, pinvs, lstsqs):
        _check_svd(m, np.asarray(s), np.asarray(u), np.asarray(vt), 1, tol=2e-5)
        np.testing.assert_allclose(np.asarray(p), np.linalg.pinv(m, rcond=1e-4), atol=2e-5)
        wx, wres, wrank, wsv = np.linalg.lstsq(m, m[:, 0], rcond=1e-4)
        np.testing.assert_allclose(np.asarray(x), wx, atol=2e-5)
        assert int(rank) == wrank
        np.testing.assert_allclose(np.asarray(sv), wsv, atol=2e-5)
        np.testing.assert_allclose(np.asarray(resid), np.sum((m @ wx - m[:, 0]) ** 2, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.asarray(eig1.eigenvalues), one[:, 0], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.asarray(eig1.eigenvectors)), 1)
    np.testing.assert_allclose(np.asarray(svd1.S), np.abs(one[:, 0]), rtol=1e-6)
    assert eig0.eigenvectors.shape == (2, 0, 0) and svd0.U.shape == (2, 1, 1) and svd0.S.shape == (2, 0)
    np.testing.assert_allclose(np.asarray(svd0.U), np.ones((2, 1, 1)))


def test_empty_matrices():
    """0 x 0 and n x 0 operands as NumPy has them: det 1, slogdet (1, 0), empty results."""
    z, zb = np.zeros((0, 0), np.float32), np.zeros((2, 0, 0), np.float32)
    det, dets, (sign, logdet), inv, x, chol, w, p, (q, r), power = lgc.jit(lambda z, zb: (
        la.det(z), la.det(zb), la.slogdet(z), la.inv(zb), la.solve(z, z.sum(0)), la.cholesky(zb),
        la.eigvalsh(zb), la.pinv(np.zeros((3, 0), np.float32)), la.qr(np.zeros((0, 3), np.float32)),
        la.matrix_power(zb, 3)))(z, zb)
    assert float(det) == 1 and np.asarray(dets).tolist() == [1, 1] and (float(sign), float(logdet)) == (1, 0)
    assert [t.shape for t in (inv, x, chol, w, p, q, r, power)] == \
        [(2, 0, 0), (0,), (2, 0, 0), (2, 0), (0, 3), (0, 0), (0, 3), (2, 0, 0)]


def test_ill_conditioned():
    """A Hilbert matrix (condition 1.5e7 at 6 x 6): what is defined is small backward errors
    (solve, cholesky, qr), and eigenvalues and singular values to float32's precision of |A|."""
    h = sl.hilbert(6).astype(np.float32)
    b = np.ones(6, np.float32)
    x, L, (q, r), w, s = lgc.jit(lambda h, b: (la.solve(h, b), la.cholesky(h), la.qr(h), la.eigvalsh(h),
                                               la.svd(h, compute_uv=False)))(h, b)
    x, L, q, r = (np.asarray(t, np.float64) for t in (x, L, q, r))
    h64, norm = h.astype(np.float64), np.linalg.norm(h, 2)
    assert np.linalg.norm(h64 @ x - b) <= 1e-6 * norm * np.linalg.norm(x)
    assert np.abs(L @ L.T - h64).max() <= 1e-6 * norm
    assert np.abs(q @ r - h64).max() <= 1e-6 * norm
    _orthonormal(q, -2, 1e-6)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(h64), atol=1e-6 * norm)
    np.testing.assert_allclose(np.asarray(s), np.linalg.svd(h64, compute_uv=False), atol=1e-6 * norm)


def test_lstsq_overdetermined_residuals():
    a, b = f32(6, 3), f32(6, 2)
    x, resid, rank, s = lgc.jit(la.lstsq)(a, b)
    wx, wres, wrank, ws = np.linalg.lstsq(a, b, rcond=None)
    np.testing.assert_allclose(np.asarray(x), wx, atol=1e-5)
    np.testing.assert_allclose(np.asarray(resid), wres, rtol=1e-4)
    assert int(rank) == 3 and la.lstsq(a[:2], b[:2], numpy_resid=True)[1].shape == (0,)


# ---- gradients against float64 central differences ------------------------------------------

def _grad_check(f, args, rs, forward=False, eps=1e-5, rtol=1e-6):
    """<grad sum(w * f), v> along a random v against (F(x + e v) - F(x - e v)) / 2e (one
    random direction checks every entry of the gradient at once), all jitted. The vjps of
    the factorizations are their tangent rules transposed, so this checks those rules too;
    `forward` also checks the jvp itself (where forward mode takes another path: solve's
    custom vjp, triangular_solve's own vjp rule)."""
    shapes = [v.shape for v in lgc.make_ir(lambda *xs: lgc.tree_util.tree_leaves(f(*xs)))(*args).outputs]
    ws = [rs.standard_normal(shape) for shape in shapes]

    def scalar(*xs):
        return sum(lnp.sum(lnp.asarray(w) * o) for w, o in zip(ws, lgc.tree_util.tree_leaves(f(*xs))))
    value = lgc.jit(scalar)
    grads = lgc.jit(lgc.grad(scalar, argnums=tuple(range(len(args)))))(*args)
    vs = [rs.standard_normal(np.shape(a)) for a in args]
    fd = (float(value(*[a + eps * v for a, v in zip(args, vs)]))
          - float(value(*[a - eps * v for a, v in zip(args, vs)]))) / (2 * eps)
    an = sum(float(np.sum(np.asarray(g) * v)) for g, v in zip(grads, vs))
    np.testing.assert_allclose(an, fd, rtol=rtol, atol=rtol * 1e-2)
    if forward:
        tangent = float(lgc.jit(lambda xs, ts: lgc.jvp(scalar, xs, ts)[1])(tuple(args), tuple(vs)))
        np.testing.assert_allclose(tangent, fd, rtol=rtol, atol=rtol * 1e-2)


def _r(rs, *s):
    return rs.standard_normal(s)


def _svd_parts(a, x, y):
    """Functions of a's svd that do not depend on the vectors' signs."""
    u, s, vt = la.svd(a, full_matrices=False)
    return s, (x @ u) ** 2, (vt @ y) ** 2


# each group: one function of several arguments (of f64 operands made by `make`) summing
# up the functions it checks, one jitted gradient and one jitted jvp
GRADS = {
    "solve_inv_slogdet_power": (
        lambda a, b, c, d, e: (la.solve(a, b), la.solve(c, d), la.inv(a), la.slogdet(a).logabsdet,
                               la.matrix_power(e, -3), la.matrix_power(e, 5)),
        lambda rs: (_r(rs, 4, 4), _r(rs, 4, 2), _r(rs, 2, 3, 3), _r(rs, 3), _r(rs, 3, 3) + 3 * np.eye(3))),
    "det": (lambda a, b: (la.det(a), la.det(b)),       # the det op, and lu's pivots above 32 x 32
            lambda rs: (_r(rs, 3, 3), _r(rs, 34, 34) / 5)),
    "cholesky_qr_lu": (
        lambda s, a, c, w: (la.cholesky(s), la.qr(a), la.qr(c, mode="complete"), bind("lu", a)[0],
                            bind("lu", w)[0]),
        lambda rs: (spd(4, dtype=np.float64), _r(rs, 5, 3), _r(rs, 3, 3), _r(rs, 3, 5))),
    "eigh": (lambda a, x: (la.eigvalsh(a), (x @ la.eigh(a).eigenvectors) ** 2),
             lambda rs: (_r(rs, 4, 4), _r(rs, 4))),
    "svd": (lambda a, t, x, y, z: (la.svd(a, compute_uv=False), _svd_parts(a, x, y), _svd_parts(t, y, x)),
            lambda rs: (_r(rs, 3, 5), _r(rs, 5, 3), _r(rs, 3), _r(rs, 5), _r(rs, 2))),
    "pinv_lstsq": (lambda a, w, b: (la.pinv(a), la.pinv(w), la.lstsq(a, b)[0]),
                   lambda rs: (_r(rs, 5, 3), _r(rs, 2, 4), _r(rs, 5))),
    "triangular_solve": (
        lambda a, *bs: [bind("triangular_solve", a, b, left_side=left, lower=lower, transpose_a=trans,
                             unit_diagonal=unit)
                        for b, (left, lower, trans, unit) in zip(bs, itertools.product((0, 1), repeat=4))],
        lambda rs: (_r(rs, 4, 4) + 4 * np.eye(4),) + tuple(_r(rs, *((4, 2) if left else (2, 4)))
                                                          for left, *_ in itertools.product((0, 1), repeat=4))),
}


@pytest.fixture(scope="module")
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients(name, x64):
    f, make = GRADS[name]
    rs = np.random.default_rng(sorted(GRADS).index(name))
    _grad_check(f, make(rs), rs, forward=name in ("solve_inv_slogdet_power", "triangular_solve"))


def test_det_gradient_of_singular_matrices_is_the_adjugate(x64):
    """JAX's cofactor solve: rank n-1 gives the (rank-1) cofactor matrix, lower rank 0; above
    the det op's 32 x 32, through lu."""
    n = 34
    a = rank_deficient(n, n, n - 1, np.float64)
    grad_det = lgc.jit(lgc.grad(la.det))
    got = np.asarray(grad_det(a))
    u, s, vt = np.linalg.svd(a)   # adj(A)^T of rank n-1: det(U) det(V) prod(s[:-1]) u_n v_n^T
    want = np.linalg.det(u) * np.linalg.det(vt) * np.prod(s[:-1]) * np.outer(u[:, -1], vt[-1])
    np.testing.assert_allclose(got, want, atol=1e-8 * np.abs(want).max())
    low = rng.standard_normal((n, n - 2)) @ rng.standard_normal((n - 2, n)) / n    # rank n - 2
    np.testing.assert_allclose(np.asarray(grad_det(low)), 0, atol=1e-20)


def test_eigh_gradient_with_repeated_eigenvalues(x64):
    """A weighted sum of eigenvalues is smooth across a repeated eigenvalue; its gradient
    is V diag(c) V^T (no 1 / (w_i - w_j) infinities leak in)."""
    a = repeated_eigenvalues([1, 1, 2, 3]).astype(np.float64)
    c = np.array([1.0, 1.0, 2.0, -1.0])
    g = np.asarray(lgc.jit(lgc.grad(lambda a: lnp.sum(lnp.asarray(c) * la.eigvalsh(a))))(a))
    w, v = np.linalg.eigh(a)
    np.testing.assert_allclose(g, (v * c) @ v.T, atol=1e-10)


# ---- vmap against a loop -------------------------------------------------------------------

def test_vmap():
    """Each function vmapped (the batch axis where the case puts it) against NumPy/SciPy on
    each example."""
    B = 3

    def trisolve(a, b, **at):
        return sl.solve_triangular(a, b, lower=at.get("lower", False)) if at.get("left_side") else \
            sl.solve_triangular(a, b.T, trans=1, lower=at.get("lower", False)).T
    cases = [
        (la.cholesky, np.linalg.cholesky, (1,), [np.stack([spd(3)] * B, 1)]),
        (la.solve, np.linalg.solve, (0, None), [f32(B, 3, 3), f32(3, 2)]),
        (la.solve, np.linalg.solve, (None, 2), [f32(3, 3), f32(3, 2, B)]),
        (la.solve, np.linalg.solve, (None, 0), [f32(3, 3), f32(B, 3)]),
        (la.inv, np.linalg.inv, (2,), [f32(3, 3, B)]),
        (la.det, np.linalg.det, (1,), [f32(3, B, 3)]),
        (lambda a: la.slogdet(a).logabsdet, lambda a: np.linalg.slogdet(a)[1], (0,), [f32(B, 3, 3)]),
        (la.pinv, np.linalg.pinv, (0,), [f32(B, 4, 3)]),
        (la.eigvalsh, lambda a: np.linalg.eigvalsh((a + a.T) / 2), (2,), [f32(3, 3, B)]),
        (lambda a: la.svd(a, compute_uv=False), lambda a: np.linalg.svd(a, compute_uv=False), (1,), [f32(4, B, 3)]),
        (lambda a: lnp.abs(la.qr(a, mode="r")), lambda a: np.abs(np.linalg.qr(a, mode="r")), (0,), [f32(B, 4, 3)]),
        (lambda a: la.matrix_power(a, 3), lambda a: np.linalg.matrix_power(a, 3), (0,), [f32(B, 3, 3)]),
        (lambda a, b: la.lstsq(a, b)[0], lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], (0, None),
         [f32(B, 4, 3), f32(4)]),
        (lambda a, b: bind("triangular_solve", a, b, left_side=1, lower=1),
         lambda a, b: trisolve(a, b, left_side=1, lower=1), (0, None), [spd(3, B), f32(3, 2)]),
        (lambda a, b: bind("triangular_solve", a, b, left_side=0), trisolve, (None, 1), [spd(3), f32(2, B, 3)]),
    ]
    got = lgc.jit(lambda *args: [lgc.vmap(f, in_axes=ax)(*a) for (f, _, ax, _), a in zip(cases, args)])(
        *[c[3] for c in cases])
    for k, ((_, ref, axes, args), g) in enumerate(zip(cases, got)):
        want = np.stack([ref(*[a if d is None else np.take(a, i, axis=d) for a, d in zip(args, axes)])
                         for i in range(B)])
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-5, err_msg=str(k))


# ---- errors and the backend's rewrite ---------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="square"):
        la.inv(f32(2, 3))
    with pytest.raises(ValueError, match="two dimensions"):
        la.det(f32(3))
    with pytest.raises(ValueError, match="do not match"):
        la.solve(f32(3, 3), f32(4))
    with pytest.raises(ValueError, match="UPLO"):
        la.eigh(f32(3, 3), UPLO="X")
    with pytest.raises(ValueError, match="mode"):
        la.qr(f32(3, 3), mode="economic")
    with pytest.raises(TypeError, match="float32 or float64"):
        la.cholesky(np.eye(2, dtype=np.float16))
    with pytest.raises(TypeError, match="integer"):
        la.matrix_power(f32(2, 2), 1.5)
    with pytest.raises(NotImplementedError, match="wide"):
        lgc.jit(lgc.grad(lambda a: lnp.sum(la.qr(a).R)))(f32(2, 3))


def test_backend_rewrite_of_eigh_and_svd():
    """float32 eigh and svd factor in float64. On a CPU, eigh is the tridiagonal QL and svd
    Golub-Reinsch on a tall matrix (a wide one transposed), vectors computed only when used;
    a GPU keeps the Jacobi kernels (svd on a wide matrix)."""
    from lgc.backends.backend import backend_for
    g = lgc.make_ir(lambda a, b, c, d: (la.eigh(a), la.svd(b), la.eigvalsh(c), la.svd(d, compute_uv=False)))(
        f32(3, 3), f32(5, 3), f32(4, 4), f32(3, 5))
    cpu, gpu = (backend_for(t).rewrite(g).nodes for t in (None, GFX803))
    assert not {"svd", "eigh"} & {n.op for n in cpu}
    assert sorted(n.attrs["vectors"] for n in cpu if n.op == "eigh_tridiagonal") == [0, 1]
    svds = [n for n in cpu if n.op == "svd_bidiagonal"]
    assert [(n.inputs[0].dtype.name, n.inputs[0].shape, n.attrs["compute_uv"]) for n in svds] == \
        [("f64", (5, 3), 1), ("f64", (5, 3), 0)]
    assert [n.inputs[0].shape for n in gpu if n.op == "svd_rows"] == [(3, 5), (3, 5)]
    assert "eigh" in [n.op for n in gpu]
