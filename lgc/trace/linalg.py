"""lgc.numpy.linalg: jax.numpy.linalg on the factorization ops of lgc.ops.linalg.

Names, signatures, defaults and results follow jax.numpy.linalg: float32 unless x64 (integer
operands become the default float), any leading batch axes, named tuples for several
results. The factorizations are core ops (cholesky, lu, qr, eigh, svd, triangular_solve;
kernels in lgc/backends/kernels/factor.py); the rest is composed here, as JAX composes it:

  solve     lu, then the two triangular solves, with JAX's reverse rule reusing the
            factors (d b = A^-T g, d A = -(A^-T g) x^T: custom_vjp)
  inv       solve(a, I)
  det       n <= 32: the det op; larger: the product of lu's pivots, with JAX's tangent
            rule through the cofactor solve (right for singular matrices too)
  slogdet   lu's pivots (sign 0 and -inf for a singular matrix); JAX's tangent rule,
            trace(solve(a, da))
  pinv      svd with JAX's cutoff rtol = 10 max(m, n) eps times the largest singular value,
            and JAX's (Golub-Pereyra) tangent rule
  lstsq     svd, with JAX's rcond = eps max(m, n) and its residuals in all cases
  matrix_power  repeated squaring (inv first for negative powers)
  eigvalsh  eigh's eigenvalues
  svd(hermitian=True)  eigh, sorted by |w|, as JAX
norm lives in lgc/trace/numpy.py (`norm` here is that one); its matrix ords 2, -2 and 'nuc'
are svd's singular values (`svdvals`).
"""
from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

from ..ops import prim
from ..ops.core import ArrayBase, bind
from ..ops.linalg import DET_MAX_N
from . import numpy as lnp
from .autodiff import custom_jvp, custom_vjp


class EighResult(NamedTuple):
    eigenvalues: ArrayBase
    eigenvectors: ArrayBase


class QRResult(NamedTuple):
    Q: ArrayBase
    R: ArrayBase


class SlogdetResult(NamedTuple):
    sign: ArrayBase
    logabsdet: ArrayBase


class SVDResult(NamedTuple):
    U: ArrayBase
    S: ArrayBase
    Vh: ArrayBase


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 (NumPy's name)
    """jnp.linalg.norm (lgc/trace/numpy.py)."""
    return lnp._Linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


def _matrices(a, what: str, square: bool = False):
    """a as a float array of rank >= 2 ([..., n, n] if square)."""
    a = lnp._as_float(a)
    if a.ndim < 2:
        raise ValueError(f"{what}: {a.ndim}-dimensional array given; it needs at least two "
                         f"dimensions [..., m, n]")
    if square and a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{what}: the last two dimensions must be square, got {a.shape}")
    return a


def _T(x):
    return prim.swapaxes(x, -1, -2)


def _symmetrize(x):
    return prim.div(prim.add(x, _T(x)), 2)


def _eye_like(a):
    """The identity in a's shape [..., n, n] and dtype."""
    return lnp.broadcast_to(lnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


def _rows(x, perm):
    """x[..., perm[i], :] for each i: rows gathered by a permutation [..., m]."""
    return prim.take_along_axis(x, prim.expand_dims(perm, -1), axis=-2)


def _diagonal(x):
    return lnp.diagonal(x, axis1=-2, axis2=-1)


# ---- the factorizations ------------------------------------------------------------------------

def cholesky(a, *, upper=False, symmetrize_input=True):
    """L with a = L L^T (upper: L^T); NaN where a is not positive definite."""
    a = _matrices(a, "cholesky", square=True)
    if symmetrize_input:
        a = _symmetrize(a)
    L = bind("cholesky", a)
    return _T(L) if upper else L


def qr(a, mode="reduced"):
    """QRResult(Q, R) for mode 'reduced' or 'complete', R alone for 'r'."""
    a = _matrices(a, "qr")
    if mode not in ("reduced", "complete", "r"):
        if mode == "raw":
            raise NotImplementedError("qr mode='raw' (Householder reflectors and taus)")
        raise ValueError(f"Unsupported QR decomposition mode {mode!r}")
    q, r = bind("qr", a, full_matrices=int(mode == "complete"))
    return r if mode == "r" else QRResult(q, r)


def _uplo(UPLO) -> bool:
    if UPLO is None or UPLO == "L":
        return True
    if UPLO == "U":
        return False
    raise ValueError(f"UPLO must be one of None, 'L', or 'U', got {UPLO!r}")


def eigh(a, UPLO=None, symmetrize_input=True):
    """EighResult(eigenvalues ascending, eigenvectors as columns) of a symmetric matrix;
    without symmetrize_input only the UPLO triangle is read."""
    lower = _uplo(UPLO)
    a = _matrices(a, "eigh", square=True)
    if symmetrize_input:
        a = _symmetrize(a)
    v, w = bind("eigh", a, lower=int(lower))
    return EighResult(w, v)


def eigvalsh(a, UPLO="L", *, symmetrize_input=True):
    return eigh(a, UPLO, symmetrize_input).eigenvalues


def svd(a, full_matrices=True, compute_uv=True, hermitian=False, subset_by_index=None):
    """SVDResult(U, S, Vh) with S descending, or S alone without compute_uv."""
    if subset_by_index is not None:
        raise NotImplementedError("svd with subset_by_index")
    a = _matrices(a, "svd")
    if hermitian:
        return _svd_hermitian(a, compute_uv)
    if not compute_uv:
        return bind("svd", a, full_matrices=int(full_matrices), compute_uv=0)
    s, u, vt = bind("svd", a, full_matrices=int(full_matrices), compute_uv=1)
    return SVDResult(u, s, vt)


def _svd_hermitian(a, compute_uv):
    """JAX's: eigh, singular values |w| sorted descending, U the eigenvectors in that
    order and Vh = (U sign(w))^T."""
    w, v = eigh(a)
    s = lnp.abs(w)
    order = lnp.argsort(s, axis=-1, descending=True)
    s = lnp.take_along_axis(s, order, axis=-1)
    if not compute_uv:
        return s
    u = lnp.take_along_axis(v, prim.expand_dims(order, -2), axis=-1)
    sign = lnp.take_along_axis(lnp.sign(w), order, axis=-1)
    return SVDResult(u, s, _T(prim.mul(u, prim.expand_dims(sign, -2))))


def svdvals(x):
    """The singular values, descending (what norm's ord 2, -2 and 'nuc' reduce)."""
    return svd(x, compute_uv=False)


# ---- solving --------------------------------------------------------------------------------

def _lu_solve(lu, perm, b, trans: bool):
    """A^-1 b (A^-T b with trans) from P A = L U, for b [..., m, k] with lu's batch axes."""
    if not trans:
        y = bind("triangular_solve", lu, _rows(b, perm), left_side=1, lower=1, unit_diagonal=1)
        return bind("triangular_solve", lu, y, left_side=1, lower=0)
    y = bind("triangular_solve", lu, b, left_side=1, lower=0, transpose_a=1)
    y = bind("triangular_solve", lu, y, left_side=1, lower=1, unit_diagonal=1, transpose_a=1)
    return _rows(y, lnp.argsort(perm, axis=-1))


@custom_vjp
def _solve(a, b):
    lu, _, perm = bind("lu", a)
    return _lu_solve(lu, perm, b, False)


def _solve_fwd(a, b):
    lu, _, perm = bind("lu", a)
    x = _lu_solve(lu, perm, b, False)
    return x, (lu, perm, x)


def _solve_bwd(res, g):
    lu, perm, x = res
    gb = _lu_solve(lu, perm, g, True)
    return prim.neg(prim.matmul(gb, _T(x))), gb


_solve.defvjp(_solve_fwd, _solve_bwd)


def solve(a, b):
    """x with a x = b: b [..., m] (one vector, NumPy 2's rule: only a 1-D b) or
    [..., m, k], the batch axes broadcast."""
    (a, b), _, _ = lnp._promote(lnp.asarray(a), lnp.asarray(b), to_float=True)
    a = _matrices(a, "solve", square=True)
    vector = b.ndim == 1
    if vector:
        b = prim.expand_dims(b, -1)
    if b.ndim < 2 or b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve: a {a.shape} and b {b.shape if not vector else b.shape[:-1]} "
                         f"do not match: b needs [..., {a.shape[-1]}] or [..., {a.shape[-1]}, k]")
    batch = lnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = lnp.broadcast_to(a, batch + a.shape[-2:])
    b = lnp.broadcast_to(b, batch + b.shape[-2:])
    x = _solve(a, b)
    return prim.squeeze(x, -1) if vector else x


def inv(a):
    a = _matrices(a, "inv", square=True)
    return solve(a, _eye_like(a))


def matrix_power(a, n):
    """a to the integer power n by repeated squaring (n < 0: of inv(a))."""
    a = _matrices(a, "matrix_power", square=True)
    try:
        n = operator.index(n)
    except TypeError as err:
        raise TypeError(f"exponent must be an integer, got {n!r}") from err
    if n == 0:
        return _eye_like(a)
    if n < 0:
        a, n = inv(a), -n
    result, z = None, None
    while n > 0:
        z = a if z is None else prim.matmul(z, z)
        n, bit = divmod(n, 2)
        if bit:
            result = z if result is None else prim.matmul(result, z)
    return result


# ---- determinants ---------------------------------------------------------------------------

def _lu_parts(a):
    """(diagonal of U, parity of the row swaps as 0/1 ints) of lu(a)."""
    lu, piv, _ = bind("lu", a)
    swaps = lnp.count_nonzero(prim.ne(piv, lnp.arange(a.shape[-1], dtype=piv.dtype)), axis=-1)
    return lu, _diagonal(lu), prim.remainder(swaps, 2)


@custom_jvp
def _slogdet(a):
    _, diag, odd = _lu_parts(a)
    dt = a.dtype
    zero = lnp.any(prim.eq(diag, 0), axis=-1)
    odd = prim.remainder(prim.add(odd, lnp.count_nonzero(prim.lt(diag, 0), axis=-1)), 2)
    sign = prim.where(zero, np.asarray(0, dt), prim.sub(np.asarray(1, dt),
                                                        prim.mul(prim.astype(odd, dt), 2)))
    logdet = prim.where(zero, np.asarray(-np.inf, dt), prim.sum(prim.log(prim.abs(diag)), -1))
    return sign, logdet


@_slogdet.defjvp
def _slogdet_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    sign, logdet = _slogdet(a)
    return (sign, logdet), (lnp.zeros_like(sign), lnp.trace(solve(a, da), axis1=-2, axis2=-1))


def slogdet(a, *, method=None):
    """SlogdetResult(sign, log|det|) from lu: sign 0 and -inf for a singular matrix."""
    a = _matrices(a, "slogdet", square=True)
    if method not in (None, "lu"):
        if method == "qr":
            raise NotImplementedError("slogdet method='qr' (use the default, lu)")
        raise ValueError(f"Unknown slogdet method {method!r}; supported: 'lu' (None)")
    return SlogdetResult(*_slogdet(a))


def _cofactor_solve(a, b):
    """(det(a), adj(a) b), JAX's _cofactor_solve: from lu with U's last pivot replaced so
    that rank n-1 matrices give the (rank-1) adjugate and lower ranks give 0."""
    n = a.shape[-1]
    if n == 1:
        return a[..., 0, 0], b
    lu, diag, odd = _lu_parts(a)
    _, _, perm = bind("lu", a)
    dt = a.dtype
    sign = prim.sub(np.asarray(1, dt), prim.mul(prim.astype(odd, dt), 2))
    partial = prim.mul(lnp.cumprod(diag, axis=-1), prim.expand_dims(sign, -1))
    lu = lu.at[..., -1, -1].set(prim.div(1, partial[..., -2]))
    d = bind("triangular_solve", lu, lnp.ones(a.shape[:-1] + (1,), dt), left_side=1, lower=0)
    bad = lnp.any(lnp.logical_or(lnp.isnan(d), lnp.isinf(d)), axis=(-2, -1))
    bad = prim.expand_dims(bad, (-2, -1))
    x = prim.where(bad, np.asarray(0, dt), b)
    x = bind("triangular_solve", lu, _rows(x, perm), left_side=1, lower=1, unit_diagonal=1)
    x = prim.concatenate([prim.mul(x[..., :-1, :], prim.expand_dims(partial[..., -1], (-2, -1))),
                          x[..., -1:, :]], axis=-2)
    x = bind("triangular_solve", lu, x, left_side=1, lower=0)
    return partial[..., -1], prim.where(bad, np.asarray(0, dt), x)


@custom_jvp
def _det_lu(a):
    _, diag, odd = _lu_parts(a)
    sign = prim.sub(np.asarray(1, a.dtype), prim.mul(prim.astype(odd, a.dtype), 2))
    return prim.mul(sign, prim.prod(diag, -1))


@_det_lu.defjvp
def _det_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    y, z = _cofactor_solve(a, da)
    return y, lnp.trace(z, axis1=-2, axis2=-1)


def det(a):
    """The determinant: the det op (its cofactor gradient) up to 32 x 32, else lu's."""
    a = _matrices(a, "det", square=True)
    if a.shape[-1] <= DET_MAX_N:
        return bind("det", a)
    return _det_lu(a)


# ---- pseudo-inverse and least squares --------------------------------------------------------

def _pinv(a, rtol, hermitian):
    m, n = a.shape[-2:]
    if m == 0 or n == 0:
        return lnp.zeros(a.shape[:-2] + (n, m), a.dtype)
    if rtol is None:
        rtol = 10.0 * max(m, n) * np.finfo(a.dtype).eps
    rtol = lnp.asarray(rtol, dtype=a.dtype)
    u, s, vh = svd(a, full_matrices=False, hermitian=hermitian)
    rtol = prim.reshape(rtol, rtol.shape + (1,) * (s.ndim - rtol.ndim))
    cutoff = prim.mul(rtol, s[..., 0:1])
    s = prim.where(prim.gt(s, cutoff), s, np.asarray(np.inf, a.dtype))
    return prim.matmul(_T(vh), prim.div(_T(u), prim.expand_dims(s, -1)))


_pinv_custom = custom_jvp(lambda a, rtol, hermitian: _pinv(a, rtol, hermitian))


@_pinv_custom.defjvp
def _pinv_jvp(primals, tangents):
    """JAX's (Golub and Pereyra 1973): the derivative of the pseudo-inverse p of a."""
    a, rtol, hermitian = primals
    da = tangents[0]
    p = _pinv(a, rtol, hermitian)
    if hermitian:
        a, da = _symmetrize(a), _symmetrize(da)
    mm = prim.matmul
    m, n = a.shape[-2:]
    if m >= n:
        s = mm(mm(p, _T(p)), _T(da))
        t = mm(mm(_T(da), _T(p)), p)
        pdot = prim.add(prim.sub(prim.neg(mm(mm(p, da), p)), prim.sub(mm(mm(s, a), p), s)),
                        prim.sub(t, mm(mm(p, a), t)))
    else:
        s = mm(p, mm(_T(p), _T(da)))
        t = mm(_T(da), mm(_T(p), p))
        pdot = prim.add(prim.sub(prim.neg(mm(p, mm(da, p))), prim.sub(mm(s, mm(a, p)), s)),
                        prim.sub(t, mm(p, mm(a, t))))
    return p, pdot


def pinv(a, rtol=None, hermitian=False, *, rcond=None):
    """Moore-Penrose pseudo-inverse by svd; singular values at most rtol times the largest
    are dropped (default: JAX's 10 max(m, n) eps; rcond is rtol's old name)."""
    a = _matrices(a, "pinv")
    if rcond is not None:
        if rtol is not None:
            raise TypeError("pinv: pass rtol or rcond (its old name), not both")
        rtol = rcond
    if not isinstance(rtol, (type(None), int, float, np.ndarray, np.generic)):
        return _pinv(a, rtol, bool(hermitian))   # a traced rtol: no custom tangent rule
    return _pinv_custom(a, rtol, bool(hermitian))


def lstsq(a, b, rcond=None, *, numpy_resid=False):
    """(x, residuals, rank, s) minimizing |a x - b|: a [m, n], b [m] or [m, k]; singular
    values below rcond times the largest are dropped (default: eps max(m, n)). The
    residuals are returned in all cases (numpy_resid=True: empty where NumPy's are)."""
    (a, b), _, _ = lnp._promote(lnp.asarray(a), lnp.asarray(b), to_float=True)
    if a.ndim != 2:
        raise TypeError(f"lstsq: {a.ndim}-dimensional array given; a must be two-dimensional")
    if b.ndim not in (1, 2):
        raise TypeError(f"lstsq: {b.ndim}-dimensional b given; it must be one- or two-dimensional")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"lstsq: a {a.shape} and b {b.shape} must have the same number of rows")
    vector = b.ndim == 1
    b = prim.expand_dims(b, -1) if vector else b
    m, n = a.shape
    eps = np.finfo(a.dtype).eps
    if a.size == 0:
        s = lnp.zeros((0,), a.dtype)
        rank = lnp.asarray(0, dtype=lnp.int32)
        x = lnp.zeros((n, b.shape[1]), a.dtype)
    else:
        rcond = eps * max(m, n) if rcond is None else prim.where(prim.lt(rcond, 0), eps, rcond)
        u, s, vt = svd(a, full_matrices=False)
        keep = prim.ge(s, prim.mul(lnp.asarray(rcond, dtype=a.dtype), s[0]))
        keep = lnp.logical_and(keep, prim.gt(s, 0))   # a zero matrix: x = 0 (JAX: NaN)
        rank = lnp.sum(keep)
        s_inv = prim.where(keep, prim.div(1, prim.where(keep, s, 1)), 0)
        x = prim.matmul(_T(vt), prim.mul(prim.expand_dims(s_inv, -1), prim.matmul(_T(u), b)))
    if numpy_resid and (int(rank) < n or m <= n):
        resid = lnp.zeros((0,), a.dtype)
    else:
        r = prim.sub(b, prim.matmul(a, x))
        resid = prim.sum(prim.mul(r, r), 0)
    return (prim.squeeze(x, -1) if vector else x), resid, rank, s
