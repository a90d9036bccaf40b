"""OpenCL kernels of the factorizations (lgc.ops.linalg holds their semantics): cholesky,
triangular_solve, lu, qr, eigh (on a CPU as eigh_tridiagonal) and svd (svd_bidiagonal on a
CPU, svd_rows on a GPU): the forms lgc.backends.factor_lowering gives them.

Each matrix of the batch is one work-item on a CPU and one work-group of LANES work-items
on a GPU. A CPU work-item walks rows of the matrix (docs/HARDWARE.md: PoCL runs
barrier kernels slowly, and one work-item looping over a contiguous row is vector code: a
single work-item's LU of a 512 x 512 matrix took 2.8 ms on the 2-core AVX-512 machine,
the same launched as one kernel per column 15-25 ms, each launch ~25 us). A GPU work-group
shares each step's loops among its lanes (adjacent lanes on adjacent columns, so reads
coalesce) with barriers between the steps. The kernels write their results in place in
their output buffers, which are their only memory; sizes are kernel arguments (Kernel
params), so one kernel serves every shape of one variant.

  cholesky          right-looking on the upper triangle (U = L^T, rows contiguous), L = U^T
  lu                right-looking with partial pivoting (LAPACK's getf2: first largest pivot,
                    a zero pivot's column left unscaled)
  triangular_solve  substitution; right-hand sides are independent: work-items take chunks
                    of B's columns (left side) or single rows of B (right side)
  qr                Householder (LAPACK's larfg reflectors, so R and Q match LAPACK's signs)
                    in the Q buffer (m >= n) or the R buffer (m < n); Q formed in place
                    backwards from the reflectors (orgqr)
  eigh_tridiagonal  (CPU) Householder tridiagonalization and implicit QL, LAPACK's syev
  svd_bidiagonal    (CPU) Householder bidiagonalization and implicit-shift QR, Golub-Reinsch
  eigh, svd_rows    (GPU) one-sided (Hestenes) Jacobi on rows, swept until a sweep rotates
                    nothing (at most MAX_SWEEPS); a lane per pair of rows
  (factor_lowering runs eigh and svd in float64.)
"""
from __future__ import annotations

import re
from string import Template

from ...ir.graph import Node
from ..kernel import Arg, Kernel, index_type_for
from ..target import current_target

LANES = 64            # work-items per matrix on a GPU (one GCN wave)
CPU_COLUMNS = 64      # right-hand-side columns per CPU work-item of triangular_solve
MAX_SWEEPS = {"float": 30, "double": 40}   # Jacobi sweeps (a float64 512 x 512 needs 10-14)
VECTOR = {"float": 16, "double": 8}         # CPU dot products' vector width


class Lanes:
    """How a kernel's loops are shared: `par` loops split among a GPU work-group's lanes,
    `sync` a barrier between steps; on a CPU (one work-item) plain loops and no barriers."""

    def __init__(self, gpu: bool, it: str):
        self.gpu, self.it = gpu, it
        self.size = LANES if gpu else 1

    def expand(self, text: str, **subs) -> list[str]:
        """C text with $-substitutions, PAR(var, lo, hi) loops and SYNC; barriers."""
        text = Template(text).substitute(it=self.it, **subs)
        step = f"{self.size}" if self.gpu else "1"
        start = "+ lid" if self.gpu else ""

        def par(m):
            var, lo, hi = m.group(1), m.group(2), m.group(3)
            return f"for ({self.it} {var} = ({lo}) {start}; {var} < ({hi}); {var} += {step})"
        text = re.sub(r"PAR\((\w+), ([^,]+), ([^)]+)\)", par, text)
        text = text.replace("SYNC;", "barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);"
                            if self.gpu else "")
        return [line for line in text.split("\n") if line.strip()]

    def preamble(self) -> list[str]:
        lid = f"({self.it})get_local_id(0)" if self.gpu else "0"
        return [f"const {self.it} b = ({self.it})get_group_id(0);", f"const {self.it} lid = {lid};"]


def _lanes(node: Node) -> Lanes:
    sizes = [v.type.size for v in list(node.inputs) + list(node.outputs)]
    return Lanes(current_target().is_gpu, index_type_for(*sizes))


def _args(node: Node) -> list[Arg]:
    return [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)] + \
           [Arg(f"out{j}", v, writable=True) for j, v in enumerate(node.outputs)]


def _batch(node: Node) -> int:
    n = 1
    for d in node.inputs[0].shape[:-2]:
        n *= d
    return n


def _per_matrix(node, name, lanes: Lanes, body: list[str], params, flops=0) -> list[Kernel]:
    """One work-group (GPU) or work-item (CPU) per matrix of the batch."""
    return [Kernel(name, _args(node), lanes.preamble() + body, global_size=(_batch(node) * lanes.size,),
                   local_size=(lanes.size,), index_type=lanes.it, node_name=node.name or "",
                   flops=flops, params=tuple(params))]


def _literals(ct: str) -> dict:
    f = ct == "float"
    return dict(T=ct, EPS="FLT_EPSILON" if f else "DBL_EPSILON", NAN="NAN" if f else "(double)NAN",
                TINY="1e-30f" if f else "1e-290", HUGE="1e30f" if f else "1e290")


def _householder(first: str, rest, lo: str, hi: str) -> str:
    """C declaring beta, f and v0 for the reflector H = I - v v^T (|v|^2 = 2; LAPACK's larfg
    choice of sign; v = 0 where larfg takes H = I) that maps x = (first, rest(q) for q in
    [lo, hi)) to (beta, 0, ..., 0): v = (v0 f, rest(q) f). The norm is scaled (no under- or
    overflow of the squares)."""
    x = rest("q")
    return f"""
  const $T x0 = {first};
  $T scale = 0, ss = 0;
  for ($it q = {lo}; q < {hi}; ++q) scale = fmax(scale, fabs({x}));
  if (scale > ($T)0) for ($it q = {lo}; q < {hi}; ++q) {{ const $T t = {x} / scale; ss += t * t; }}
  const $T xnorm = scale * sqrt(ss);
  $T beta = x0, f = 0, v0 = 0;
  if (xnorm != ($T)0) {{
    const $T h = hypot(x0, xnorm);
    beta = x0 >= ($T)0 ? -h : h;
    v0 = x0 - beta;
    f = ($T)1.4142135623730950488 / hypot(v0, xnorm);
  }}"""


def _symmetric_read(lower) -> str:
    """Element (i, j) of the symmetric matrix A's lower (else upper) triangle holds."""
    return ("(i >= j ? A[i * N_ + j] : A[j * N_ + i])" if lower
            else "(i <= j ? A[i * N_ + j] : A[j * N_ + i])")


# ---- cholesky ---------------------------------------------------------------------------------

_CHOLESKY = """
__global const $T* A = in0 + b * N_ * N_;
__global $T* U = out0 + b * N_ * N_;
PAR(i, 0, N_) { for ($it j = i; j < N_; ++j) U[i * N_ + j] = A[j * N_ + i]; }
SYNC;
int ok = 1;
for ($it k = 0; k < N_ && ok; ++k) {
  const $T d = U[k * N_ + k];
  ok = d > ($T)0;
  if (ok) { const $T s = sqrt(d); PAR(j, k + 1, N_) U[k * N_ + j] /= s; }
  SYNC;
  for ($it i = k + 1; i < N_ && ok; ++i) {
    const $T f = U[k * N_ + i];
    PAR(j, i, N_) U[i * N_ + j] -= f * U[k * N_ + j];
  }
  SYNC;
}
PAR(i, 0, N_) {
  if (ok) {
    U[i * N_ + i] = sqrt(U[i * N_ + i]);
    for ($it j = i + 1; j < N_; ++j) { U[j * N_ + i] = U[i * N_ + j]; U[i * N_ + j] = ($T)0; }
  } else {
    for ($it j = 0; j < N_; ++j) U[i * N_ + j] = $NAN;
  }
}
"""


class CholeskyGen:
    """The upper triangle U = L^T is factored in the output (it reads A's lower triangle
    transposed): step k scales row k by 1/sqrt(d_k) and subtracts u_ki u_k from each later
    row i, contiguous axpys; the diagonal keeps d_k until the end, when U is transposed into
    L. A non-positive pivot fills the matrix with NaN (JAX's convention)."""

    def kernels(self, node, name):
        lanes, n = _lanes(node), node.inputs[0].shape[-1]
        body = lanes.expand(_CHOLESKY, **_literals(node.outputs[0].dtype.cl_compute))
        return _per_matrix(node, name, lanes, body, [("N_", n)], _batch(node) * n ** 3 // 3)


# ---- lu ---------------------------------------------------------------------------------------

_LU = """
__global const $T* A = in0 + b * M_ * N_;
__global $T* LU = out0 + b * M_ * N_;
__global int* P = out1 + b * K_;
__global int* Q = out2 + b * M_;
PAR(i, 0, M_) { for ($it j = 0; j < N_; ++j) LU[i * N_ + j] = A[i * N_ + j]; Q[i] = (int)i; }
SYNC;
for ($it k = 0; k < K_; ++k) {
  $it p = k;
  $T best = fabs(LU[k * N_ + k]);
  for ($it i = k + 1; i < M_; ++i) { const $T v = fabs(LU[i * N_ + k]); if (v > best) { best = v; p = i; } }
  SYNC;
  if (p != k) {
    PAR(j, 0, N_) { const $T t = LU[k * N_ + j]; LU[k * N_ + j] = LU[p * N_ + j]; LU[p * N_ + j] = t; }
    if (lid == 0) { const int t = Q[k]; Q[k] = Q[p]; Q[p] = t; }
  }
  if (lid == 0) P[k] = (int)p;
  SYNC;
  const $T piv = LU[k * N_ + k];
  if (piv != ($T)0) { PAR(i, k + 1, M_) LU[i * N_ + k] /= piv; }
  SYNC;
  for ($it i = k + 1; i < M_; ++i) {
    const $T f = LU[i * N_ + k];
    PAR(j, k + 1, N_) LU[i * N_ + j] -= f * LU[k * N_ + j];
  }
  SYNC;
}
"""


class LuGen:
    """Row swaps of whole rows and rank-1 updates along rows (contiguous); the permutation
    is the swaps applied to 0..m-1."""

    def kernels(self, node, name):
        lanes = _lanes(node)
        m, n = node.inputs[0].shape[-2:]
        body = lanes.expand(_LU, **_literals(node.outputs[0].dtype.cl_compute))
        return _per_matrix(node, name, lanes, body, [("M_", m), ("N_", n), ("K_", min(m, n))],
                           2 * _batch(node) * m * n * min(m, n) // 3)


# ---- triangular_solve ---------------------------------------------------------------------------

_SOLVE_LEFT = """
const $it g = ($it)get_global_id(0);
const $it bb = g / CH_, c0 = (g % CH_) * KC_;
const $it c1 = min(c0 + KC_, K_);
__global const $T* A = in0 + bb * M_ * M_;
__global const $T* B = in1 + bb * M_ * K_;
__global $T* X = out0 + bb * M_ * K_;
for ($it ii = 0; ii < M_; ++ii) {
  const $it i = $row;
  __global $T* xi = X + i * K_;
  for ($it c = c0; c < c1; ++c) xi[c] = B[i * K_ + c];
  for ($it j = $jlo; j < $jhi; ++j) {
    const $T t = $tij;
    __global const $T* xj = X + j * K_;
    for ($it c = c0; c < c1; ++c) xi[c] -= t * xj[c];
  }
  $divide
}
"""

_SOLVE_RIGHT = """
const $it g = ($it)get_global_id(0);
const $it bb = g / K_;
__global const $T* A = in0 + bb * M_ * M_;
__global const $T* B = in1 + g * M_;
__global $T* x = out0 + g * M_;
for ($it j = 0; j < M_; ++j) x[j] = B[j];
for ($it ii = 0; ii < M_; ++ii) {
  const $it i = $row;
  const $T xi = x[i]$divide;
  x[i] = xi;
  for ($it j = $jlo; j < $jhi; ++j) x[j] -= xi * $tij;
}
"""


class TriangularSolveGen:
    """op(A) X = B: row i of X is B's row i less the rows of X already solved, over the
    right-hand-side columns a work-item owns (contiguous); X op(A) = B: each row of X on
    its own, solved for its elements in the order the triangle allows, each one's multiple
    of a row of op(A) subtracted from the rest of the row (contiguous when op(A) = A). The
    right-hand sides are independent, so no work-group shares anything: one work-item per
    column (GPU) or CPU_COLUMNS columns (CPU), one per row on the right side."""

    def kernels(self, node, name):
        at = node.attrs
        a, b = node.inputs
        m, left = a.shape[-1], bool(at["left_side"])
        k = b.shape[-1] if left else b.shape[-2]
        lower = bool(at["lower"]) != bool(at["transpose_a"])    # the triangle op(A) has
        forward = lower if left else not lower                   # rows solved first to last
        ct, gpu = a.dtype.cl_compute, current_target().is_gpu
        it = _lanes(node).it
        subs = dict(_literals(ct), row="ii" if forward else "M_ - 1 - ii",
                    jlo="0" if forward == left else "i + 1", jhi="i" if forward == left else "M_",
                    tij="A[j * M_ + i]" if at["transpose_a"] else "A[i * M_ + j]")
        unit = at["unit_diagonal"]
        if left:
            subs["divide"] = "" if unit else \
                f"{{ const {ct} d = A[i * M_ + i]; for ({it} c = c0; c < c1; ++c) xi[c] /= d; }}"
            kc = 1 if gpu else max(1, min(k, CPU_COLUMNS))
            chunks = -(-k // kc)
            params = [("M_", m), ("K_", k), ("KC_", kc), ("CH_", max(chunks, 1))]
            text, items = _SOLVE_LEFT, _batch(node) * chunks
        else:
            subs["divide"] = "" if unit else " / A[i * M_ + i]"
            params, text, items = [("M_", m), ("K_", k)], _SOLVE_RIGHT, _batch(node) * k
        return [Kernel(name, _args(node), Lanes(False, it).expand(text, **subs), global_size=(items,),
                       local_size=None if gpu else (1,), index_type=it, node_name=node.name or "",
                       params=tuple(params), flops=_batch(node) * m * m * k)]


# ---- qr ---------------------------------------------------------------------------------------

_QR_FACTOR = """
__global const $T* A = in0 + b * M_ * N_;
__global $T* Q = out0 + b * M_ * QC_;
__global $T* R = out1 + b * RR_ * N_;
__global $T* X = $X;
PAR(i, 0, M_) { for ($it c = 0; c < N_; ++c) X[i * $XS + c] = A[i * N_ + c]; }
SYNC;
for ($it j = 0; j < K_; ++j) {
$reflector
  SYNC;
  PAR(i, j, M_) {
    Q[i * QC_ + j] = i == j ? v0 * f : X[i * $XS + j] * f;
    $store_r
  }
  SYNC;
  if (f != ($T)0) {
$apply
  }
  SYNC;
  $r_row
}
$r_rest
"""

_QR_FORM = """
$q_rest
SYNC;
for ($it j = K_ - 1; j >= 0; --j) {
$apply
  SYNC;
  const $T v0 = Q[j * QC_ + j];
  SYNC;
  PAR(i, 0, M_) Q[i * QC_ + j] = i < j ? ($T)0 : (i == j ? ($T)1 : ($T)0) - Q[i * QC_ + j] * v0;
  SYNC;
}
"""

# H = I - v v^T (v: column j of Q from row j) applied to X[j:, lo:hi], a column at a time
# (a lane per column on a GPU), or, on a CPU, row by row through a temporary row w = v^T X.
_BY_COLUMNS = """
    PAR(c, $lo, $hi) {
      $T d = 0;
      for ($it i = j; i < M_; ++i) d += Q[i * QC_ + j] * $X[i * $XS + c];
      for ($it i = j; i < M_; ++i) $X[i * $XS + c] -= d * Q[i * QC_ + j];
    }
"""
_BY_ROWS = """
    __global $T* w = $w;
    for ($it c = $lo; c < $hi; ++c) w[c] = 0;
    for ($it i = j; i < M_; ++i) {
      const $T vi = Q[i * QC_ + j];
      __global const $T* xi = $X + i * $XS;
      for ($it c = $lo; c < $hi; ++c) w[c] += vi * xi[c];
    }
    for ($it i = j; i < M_; ++i) {
      const $T vi = Q[i * QC_ + j];
      __global $T* xi = $X + i * $XS;
      for ($it c = $lo; c < $hi; ++c) xi[c] -= vi * w[c];
    }
    $clear
"""


class QrGen:
    """Householder QR. Reflector j is I - v v^T with |v|^2 = 2 (0 where LAPACK's larfg
    takes H = I), stored whole in column j of Q from row j down; R's row j goes to R at
    step j. The matrix is reduced in the Q buffer when m >= n (R's next row is the CPU's
    temporary row) and in the R buffer when m < n (Q's columns hold the reflectors). Q is
    then formed in place backwards, H_j applied to the columns right of j (Q's row 0 is
    the CPU's temporary: those columns are still zero in the rows above j), then column j
    becomes H_j e_j."""

    def kernels(self, node, name):
        lanes = _lanes(node)
        m, n = node.inputs[0].shape[-2:]
        full, k, tall = node.attrs["full_matrices"], min(m, n), m >= n
        qc = rr = m if full else k        # Q's columns, R's rows
        lit = _literals(node.outputs[0].dtype.cl_compute)
        x, xs = ("Q", "QC_") if tall else ("R", "N_")
        rows = not lanes.gpu

        def apply(buf, stride, lo, hi, temp=None, clear=""):
            text = _BY_ROWS if rows and temp else _BY_COLUMNS
            return Template(text).safe_substitute(X=buf, XS=stride, lo=lo, hi=hi, w=temp or "",
                                                  clear=clear)

        fact = Template(_QR_FACTOR).safe_substitute(
            X=x, XS=xs, store_r="" if tall else "X[i * N_ + j] = i == j ? beta : ($T)0;",
            reflector=_householder(f"X[j * {xs} + j]", lambda q: f"X[{q} * {xs} + j]", "j + 1", "M_"),
            apply=apply(x, xs, "j + 1", "N_", "R + (j + 1) * N_" if tall else None),
            r_row="PAR(c, 0, N_) R[j * N_ + c] = c < j ? ($T)0 : (c == j ? beta : X[j * QC_ + c]);"
            if tall else "",
            r_rest="PAR(i, N_, RR_) { for ($it c = 0; c < N_; ++c) R[i * N_ + c] = 0; }"
            if tall and rr > n else "")
        form_apply = apply("Q", "QC_", "j + 1", "QC_")
        if rows:   # Q's row 0 is the temporary from j = 1 on, cleared after
            clear = f"for ({lanes.it} c = j + 1; c < QC_; ++c) w[c] = 0;"
            form_apply = (f"if (j > 0) {{ {apply('Q', 'QC_', 'j + 1', 'QC_', 'Q', clear)} }}"
                          f" else {{ {form_apply} }}")
        form = Template(_QR_FORM).safe_substitute(
            q_rest="PAR(i, 0, M_) { for ($it c = N_; c < QC_; ++c) Q[i * QC_ + c] = i == c ? 1 : 0; }"
            if qc > n else "", apply=form_apply)
        body = lanes.expand(fact + form, **lit)
        params = [("M_", m), ("N_", n), ("K_", k), ("QC_", qc), ("RR_", rr)]
        return _per_matrix(node, name, lanes, body, params, 4 * _batch(node) * m * n * k)


# ---- one-sided Jacobi on a GPU: eigh and svd_rows ---------------------------------------------

# Rounds of the round-robin order, r/2 disjoint pairs (i, j) a round, a lane each; a pair is
# rotated when |wi . wj| > eps sqrt(c) |wi| |wj| (the angle zeroing wi . wj, Rutishauser's
# formulas), J^T's rows alike; until a sweep rotates nothing or MAX_SWEEPS
_JACOBI = """
const $it RP = $R + ($R & 1);
const $T tol = $EPS * sqrt(($T)max(($it)1, ($it)$C));
int go = 1;
for (int sweep = 0; sweep < $sweeps && go; ++sweep) {
  if (lid == 0) flag[0] = 0;
  SYNC;
  for ($it rnd = 0; rnd + 1 < RP; ++rnd) {
    PAR(p, 0, RP / 2) {
      $it i = p == 0 ? 0 : 1 + (p - 1 + rnd) % (RP - 1);
      $it j = 1 + (RP - 2 - p + rnd) % (RP - 1);
      if (i > j) { const $it s = i; i = j; j = s; }
      if (j < $R) {
        __global $T* wi = $W + i * $C;
        __global $T* wj = $W + j * $C;
        $T alpha = 0, beta = 0, gamma = 0;
        for ($it x = 0; x < $C; ++x) { const $T a = wi[x], e = wj[x]; alpha += a * a; beta += e * e; gamma += a * e; }
        if (fabs(gamma) > tol * sqrt(alpha) * sqrt(beta)) {
          flag[0] = 1;
          const $T zeta = (beta - alpha) / (2 * gamma);
          const $T tn = (zeta >= ($T)0 ? ($T)1 : ($T)-1) / (fabs(zeta) + sqrt(1 + zeta * zeta));
          const $T cs = 1 / sqrt(1 + tn * tn), sn = cs * tn;
          for ($it x = 0; x < $C; ++x) {
            const $T a = wi[x], e = wj[x];
            wi[x] = cs * a - sn * e;
            wj[x] = sn * a + cs * e;
          }
$accumulate
        }
      }
    }
    SYNC;
  }
  go = flag[0];
  SYNC;
}
"""

_ROTATE_J = """
          __global $T* ji = $J + i * $R;
          __global $T* jj = $J + j * $R;
          for ($it x = 0; x < $R; ++x) {
            const $T a = ji[x], e = jj[x];
            ji[x] = cs * a - sn * e;
            jj[x] = sn * a + cs * e;
          }
"""


def _jacobi(ct: str, w: str, r: str, c: str, j: str | None = None) -> str:
    """Rows 0..r-1 of the r x c matrix at w made orthogonal, J^T's rows (at j) rotated
    alike (_JACOBI)."""
    accumulate = Template(_ROTATE_J).safe_substitute(J=j, R=r) if j else ""
    return Template(_JACOBI).safe_substitute(W=w, R=r, C=c, sweeps=MAX_SWEEPS[ct],
                                             accumulate=accumulate)


_ROW_NORM = """
    $T ss = 0, big = 0;
    for ($it x = 0; x < $n; ++x) { const $T v = $row[x]; ss += v * v; big = fmax(big, fabs(v)); }
    $T nrm = sqrt(ss);
    if (ss == ss && !(ss > $TINY && ss < $HUGE) && big > ($T)0) {
      $T s2 = 0;
      for ($it x = 0; x < $n; ++x) { const $T v = $row[x] / big; s2 += v * v; }
      nrm = big * sqrt(s2);
    }
"""


def _row_norm(row: str, n: str) -> str:
    """`nrm` = the 2-norm of row[0..n), rescaled where the squares under- or overflow."""
    return Template(_ROW_NORM).safe_substitute(row=row, n=n)


_SORT = """
for ($it i = 0; i < $n; ++i) {
  $it p = i;
  $T best = $S[i];
  for ($it q = i + 1; q < $n; ++q) if ($S[q] $cmp best) { best = $S[q]; p = q; }
  SYNC;
  if (p != i) {
$swaps
    if (lid == 0) { $S[p] = $S[i]; $S[i] = best; }
  }
  SYNC;
}
"""


def _sort(values: str, n: str, rows: list[tuple[str, str]], descending: bool) -> str:
    """Selection sort of values[0..n), the same swaps applied to the rows (buffer, length)."""
    swaps = "\n".join(f"    PAR(x, 0, {length}) {{ const $T t = {buf}[i * {length} + x]; "
                      f"{buf}[i * {length} + x] = {buf}[p * {length} + x]; {buf}[p * {length} + x] = t; }}"
                      for buf, length in rows)
    return Template(_SORT).safe_substitute(S=values, n=n, cmp=">" if descending else "<",
                                           swaps=swaps)


def _transpose_square(buf: str, n: str) -> str:
    return (f"PAR(i, 0, {n}) {{ for ($it x = i + 1; x < {n}; ++x) {{ const $T t = {buf}[i * {n} + x]; "
            f"{buf}[i * {n} + x] = {buf}[x * {n} + i]; {buf}[x * {n} + i] = t; }} }}")


_EIGH = """
__global const $T* A = in0 + b * N_ * N_;
__global $T* V = out0 + b * N_ * N_;
__global $T* E = out1 + b * N_;
PAR(i, 0, N_) { $T s = 0; for ($it j = 0; j < N_; ++j) s += fabs($aij); E[i] = s; }
SYNC;
$T sigma = 0;
for ($it i = 0; i < N_; ++i) sigma = fmax(sigma, E[i]);
sigma = sigma > ($T)0 ? 2 * sigma : ($T)1;
SYNC;
PAR(i, 0, N_) { for ($it j = 0; j < N_; ++j) V[i * N_ + j] = $aij + (i == j ? sigma : ($T)0); }
SYNC;
$jacobi
PAR(i, 0, N_) {
  __global $T* vi = V + i * N_;
$norm
  for ($it x = 0; x < N_; ++x) vi[x] /= nrm;
  E[i] = nrm - sigma;
}
SYNC;
$sort
$transpose
"""


class EighGen:
    """B = A + sigma I with sigma = 2 max_i sum_j |a_ij| has its eigenvalues in [|A|, 3|A|]
    (well conditioned, all positive), so B's singular vectors are A's eigenvectors and its
    singular values A's eigenvalues plus sigma. One-sided Jacobi makes B's rows orthogonal
    (J^T B = diag(s) W^T); normalized, they are the eigenvectors, sorted by s - sigma and
    transposed into columns. No rotation is accumulated: V is the only n x n buffer."""

    def kernels(self, node, name):
        lanes, n = Lanes(True, _lanes(node).it), node.inputs[0].shape[-1]
        ct = node.outputs[0].dtype.cl_compute
        text = Template(_EIGH).safe_substitute(
            aij=_symmetric_read(node.attrs["lower"]), jacobi=_jacobi(ct, "V", "N_", "N_"),
            norm=_row_norm("vi", "N_"),
            sort=_sort("E", "N_", [("V", "N_")], descending=False),
            transpose=_transpose_square("V", "N_"))
        body = ["__local int flag[1];"] + lanes.expand(text, **_literals(ct))
        return _per_matrix(node, name, lanes, body, [("N_", n)], 60 * _batch(node) * n ** 3)


_SVD = """
__global const $T* A = in0 + b * M_ * N_;
__global $T* S = out0 + b * M_;
__global $T* U = out1 + b * M_ * M_;
__global $T* W = out2 + b * VR_ * N_;
PAR(i, 0, M_) {
  for ($it x = 0; x < N_; ++x) W[i * N_ + x] = A[i * N_ + x];
  $init_u
}
SYNC;
$jacobi
PAR(i, 0, M_) {
  __global $T* wi = W + i * N_;
$norm
  S[i] = nrm;
}
SYNC;
$sort
$vectors
"""

_SVD_VECTORS = """
const $T small = M_ > 0 ? S[0] * $EPS * $EPS : ($T)0;
$it valid = 0;
for ($it i = 0; i < M_; ++i) valid += S[i] > small;
PAR(i, 0, M_) { if (S[i] > small) { const $T s = S[i]; for ($it x = 0; x < N_; ++x) W[i * N_ + x] /= s; } }
SYNC;
if (lid == 0) {
  $it cand = 0;
  for ($it i = valid; i < VR_; ++i) {
    __global $T* v = W + i * N_;
    while (cand < N_) {
      for ($it x = 0; x < N_; ++x) v[x] = x == cand ? ($T)1 : ($T)0;
      ++cand;
      for (int rep = 0; rep < 2; ++rep) {
        for ($it r = 0; r < i; ++r) {
          __global const $T* w = W + r * N_;
          $T d = 0;
          for ($it x = 0; x < N_; ++x) d += v[x] * w[x];
          for ($it x = 0; x < N_; ++x) v[x] -= d * w[x];
        }
      }
      $T ss = 0;
      for ($it x = 0; x < N_; ++x) ss += v[x] * v[x];
      if (ss * N_ > ($T)0.25) { const $T r = sqrt(ss); for ($it x = 0; x < N_; ++x) v[x] /= r; break; }
    }
  }
}
SYNC;
$transpose
"""


class SvdRowsGen:
    """One-sided Jacobi on the rows of A (m <= n), in the Vt buffer, the rotations
    accumulated into J^T in the U buffer: J^T A = diag(s) Vt. The rows' norms are s; rows
    sorted by s (descending) and normalized are Vt's rows, J = U. Rows with s at most
    s_max eps^2 (a numerically zero singular value) and Vt's extra rows (full_matrices) are
    completed to an orthonormal basis: the first unit vectors e_q left with at least half a
    unit's worth of the complement after two Gram-Schmidt passes against the rows above."""

    def kernels(self, node, name):
        lanes = Lanes(True, _lanes(node).it)
        m, n = node.inputs[0].shape[-2:]
        ct = node.outputs[0].dtype.cl_compute
        uv = node.attrs["compute_uv"]
        text = Template(_SVD).safe_substitute(
            init_u="for ($it x = 0; x < M_; ++x) U[i * M_ + x] = i == x ? 1 : 0;" if uv else "",
            jacobi=_jacobi(ct, "W", "M_", "N_", "U" if uv else None),
            norm=_row_norm("wi", "N_"),
            sort=_sort("S", "M_", [("W", "N_")] + ([("U", "M_")] if uv else []), descending=True),
            vectors=Template(_SVD_VECTORS).safe_substitute(transpose=_transpose_square("U", "M_"))
            if uv else "")
        body = ["__local int flag[1];"] + lanes.expand(text, **_literals(ct))
        params = [("M_", m), ("N_", n), ("VR_", node.outputs[2].shape[-2])]
        return _per_matrix(node, name, lanes, body, params, 60 * _batch(node) * m * m * n)


# ---- eigh on a CPU: tridiagonal QL --------------------------------------------------------------

def _dot(ct: str, acc: str, x: str, y: str, lo: str, hi: str, it: str) -> str:
    """`acc` = sum of x[j] y[j] for j in [lo, hi), in VECTOR-wide partial sums."""
    w = VECTOR[ct]
    vt, lanes = f"{ct}{w}", " + ".join(f"va.s{'0123456789abcdef'[i]}" for i in range(w))
    return (f"{ct} {acc}; {{ {vt} va = ({vt})0; {it} j = {lo};\n"
            f"  for (; j + {w} <= {hi}; j += {w}) va += vload{w}(0, {x} + j) * vload{w}(0, {y} + j);\n"
            f"  {acc} = {lanes};\n  for (; j < {hi}; ++j) {acc} += {x}[j] * {y}[j]; }}")


_TRIDIAGONAL_QL = """
__global const $T* A = in0 + b * N_ * N_;
__global $T* Z = out0 + b * N_ * N_;
__global $T* D = out1 + b * N_;
__global $T* W = out2 + b * N_ * N_;
for ($it i = 0; i < N_; ++i) for ($it j = 0; j < N_; ++j) W[i * N_ + j] = $aij;
for ($it k = 0; k + 2 < N_; ++k) {
  __global $T* wk = W + k * N_;
$reflector
  wk[k + 1] = v0 * f;
  for ($it j = k + 2; j < N_; ++j) wk[j] *= f;
  if (f != ($T)0) {
    $T pu = 0;
    for ($it i = k + 1; i < N_; ++i) {
      __global const $T* wi = W + i * N_;
      $symv
      Z[i] = s;
      pu += s * wk[i];
    }
    for ($it i = k + 1; i < N_; ++i) Z[i] -= pu / 2 * wk[i];
    for ($it i = k + 1; i < N_; ++i) {
      __global $T* wi = W + i * N_;
      const $T ui = wk[i], pi = Z[i];
      for ($it j = k + 1; j < N_; ++j) wi[j] -= ui * Z[j] + pi * wk[j];
    }
  }
  D[k] = wk[k];
  wk[k] = beta;
}
if (N_ >= 2) { D[N_ - 2] = W[(N_ - 2) * (N_ + 1)]; W[(N_ - 2) * (N_ + 1)] = W[(N_ - 1) * N_ + N_ - 2]; }
if (N_ >= 1) { D[N_ - 1] = W[(N_ - 1) * (N_ + 1)]; W[(N_ - 1) * (N_ + 1)] = 0; }
$init_z
int fail = 0;
for ($it l = 0; l < N_ && !fail; ++l) {
  int iter = 0;
  for (;;) {
    $it m = l;
    for (; m + 1 < N_; ++m) if (fabs(W[m * (N_ + 1)]) <= $EPS * (fabs(D[m]) + fabs(D[m + 1]))) break;
    if (m == l) break;
    if (++iter > 60) { fail = 1; break; }
    const $T el = W[l * (N_ + 1)];
    $T g = (D[l + 1] - D[l]) / (2 * el);
    $T r = hypot(g, ($T)1);
    g = D[m] - D[l] + el / (g + (g >= ($T)0 ? r : -r));
    $T s = 1, c = 1, p = 0;
    int split = 0;
    for ($it i = m - 1; i >= l; --i) {
      const $T ei = W[i * (N_ + 1)];
      const $T f = s * ei, bb = c * ei;
      r = hypot(f, g);
      W[(i + 1) * (N_ + 1)] = r;
      if (r == ($T)0) { D[i + 1] -= p; W[m * (N_ + 1)] = 0; split = 1; break; }
      s = f / r;
      c = g / r;
      g = D[i + 1] - p;
      r = (D[i] - g) * s + 2 * c * bb;
      p = s * r;
      D[i + 1] = g + p;
      g = c * r - bb;
$rotate
    }
    if (split) continue;
    D[l] -= p;
    W[l * (N_ + 1)] = g;
    W[m * (N_ + 1)] = 0;
  }
}
$back
if (fail) { for ($it i = 0; i < N_; ++i) D[i] = $NAN; }
$sort
$transpose
"""

_QL_ROTATE = """
      __global $T* zi = Z + i * N_;
      __global $T* zn = Z + (i + 1) * N_;
      for ($it x = 0; x < N_; ++x) { const $T t = zn[x]; zn[x] = s * zi[x] + c * t; zi[x] = c * zi[x] - s * t; }
"""

_BACK_TRANSFORM = """
for ($it k = N_ - 3; k >= 0; --k) {
  __global const $T* u = W + k * N_;
  for ($it r = 0; r < N_; ++r) {
    __global $T* zr = Z + r * N_;
    $dot
    for ($it j = k + 1; j < N_; ++j) zr[j] -= d * u[j];
  }
}
"""


class EighTridiagonalGen:
    """eigh on a CPU, as LAPACK's syev: Householder tridiagonalization (sytd2's reflectors,
    the trailing matrix kept whole so that the symmetric product and the rank-2 update run
    along rows), then implicit QL with Wilkinson's shift (tql2), each rotation applied to two
    rows of Z^T (contiguous), then Z^T times the reflectors, sorted and transposed. The work
    matrix holds A, then the reflectors (|u|^2 = 2, H = I - u u^T) in its rows and the
    off-diagonal on its diagonal. Without `vectors` (eigvalsh) only the QL of the tridiagonal
    runs after the reduction: O(n^2)."""

    def kernels(self, node, name):
        n = node.inputs[0].shape[-1]
        ct, it = node.outputs[0].dtype.cl_compute, _lanes(node).it
        vectors = node.attrs["vectors"]
        cpu = Lanes(False, it)
        text = Template(_TRIDIAGONAL_QL).safe_substitute(
            aij=_symmetric_read(node.attrs["lower"]), symv=_dot(ct, "s", "wi", "wk", "k + 1", "N_", it),
            reflector=_householder("wk[k + 1]", lambda q: f"wk[{q}]", "k + 2", "N_"),
            init_z="for ($it i = 0; i < N_; ++i) for ($it x = 0; x < N_; ++x) Z[i * N_ + x] = i == x;"
            if vectors else "",
            rotate=_QL_ROTATE if vectors else "",
            back=Template(_BACK_TRANSFORM).safe_substitute(dot=_dot(ct, "d", "zr", "u", "k + 1", "N_", it))
            if vectors else "",
            sort=_sort("D", "N_", [("Z", "N_")] if vectors else [], descending=False),
            transpose=_transpose_square("Z", "N_") if vectors else "")
        body = cpu.expand(text, **_literals(ct))
        return _per_matrix(node, name, cpu, body, [("N_", n)], 10 * _batch(node) * n ** 3)


# ---- svd on a CPU: Golub-Reinsch -------------------------------------------------------------

_BIDIAGONAL = """
__global const $T* A = in0 + b * M_ * N_;
__global $T* S = out0 + b * N_;
__global $T* UT = out1 + b * UR_ * M_;
__global $T* VT = out2 + b * N_ * N_;
__global $T* X = out3 + b * (M_ * N_ + M_ + N_);
__global $T* E = X + M_ * N_;
__global $T* TMP = E + N_;
for ($it i = 0; i < M_ * N_; ++i) X[i] = A[i];
for ($it k = 0; k < N_; ++k) {
$left
  S[k] = beta;
  X[k * N_ + k] = v0 * f;
  for ($it i = k + 1; i < M_; ++i) X[i * N_ + k] *= f;
  if (f != ($T)0) {
    for ($it c = k + 1; c < N_; ++c) TMP[c] = 0;
    for ($it i = k; i < M_; ++i) {
      const $T vi = X[i * N_ + k];
      __global const $T* xi = X + i * N_;
      for ($it c = k + 1; c < N_; ++c) TMP[c] += vi * xi[c];
    }
    for ($it i = k; i < M_; ++i) {
      const $T vi = X[i * N_ + k];
      __global $T* xi = X + i * N_;
      for ($it c = k + 1; c < N_; ++c) xi[c] -= vi * TMP[c];
    }
  }
  if (k + 1 < N_) {
    __global $T* xk = X + k * N_;
$right
    E[k + 1] = beta;
    xk[k + 1] = v0 * f;
    for ($it c = k + 2; c < N_; ++c) xk[c] *= f;
    if (f != ($T)0) {
      for ($it i = k + 1; i < M_; ++i) {
        __global $T* xi = X + i * N_;
        $dot_row
        for ($it c = k + 1; c < N_; ++c) xi[c] -= t * xk[c];
      }
    }
  }
}
if (N_ > 0) E[0] = 0;
$form
$T anorm = 0;
for ($it i = 0; i < N_; ++i) anorm = fmax(anorm, fabs(S[i]) + fabs(E[i]));
const $T tol = $EPS * anorm;
int fail = 0;
for ($it k = N_ - 1; k >= 0 && !fail; --k) {
  for (int its = 1; its <= 75; ++its) {
    int cancel = 1;
    $it l = k, nm = 0;
    for (; l >= 0; --l) {
      nm = l - 1;
      if (l == 0 || fabs(E[l]) <= tol) { cancel = 0; break; }
      if (fabs(S[nm]) <= tol) break;
    }
    if (cancel) {
      $T c = 0, s = 1;
      for ($it i = l; i <= k; ++i) {
        const $T f = s * E[i];
        E[i] = c * E[i];
        if (fabs(f) <= tol) break;
        const $T g = S[i], h = hypot(f, g);
        S[i] = h;
        c = g / h;
        s = -f / h;
$rot_u_nm
      }
    }
    const $T z = S[k];
    if (l == k) {
      if (z < ($T)0) { S[k] = -z; $negate_v }
      break;
    }
    if (its == 75) { fail = 1; break; }
    $T x = S[l], y = S[k - 1], g = E[k - 1], h = E[k];
    $T f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y);
    g = hypot(f, ($T)1);
    f = ((x - z) * (x + z) + h * ((y / (f + (f >= ($T)0 ? g : -g))) - h)) / x;
    $T c = 1, s = 1;
    for ($it j = l; j < k; ++j) {
      const $it i = j + 1;
      g = E[i];
      y = S[i];
      h = s * g;
      g = c * g;
      $T zz = hypot(f, h);
      E[j] = zz;
      c = f / zz;
      s = h / zz;
      f = x * c + g * s;
      g = g * c - x * s;
      h = y * s;
      y *= c;
$rot_v
      zz = hypot(f, h);
      S[j] = zz;
      if (zz != ($T)0) { zz = 1 / zz; c = f * zz; s = h * zz; }
      f = c * g + s * y;
      x = c * y - s * g;
$rot_u
    }
    E[l] = 0;
    E[k] = f;
    S[k] = x;
  }
}
if (fail) { for ($it i = 0; i < N_; ++i) S[i] = $NAN; }
$sort
"""

_FORM_UV = """
for ($it j = 0; j < N_; ++j) {
  __global $T* vj = VT + j * N_;
  for ($it c = 0; c < N_; ++c) vj[c] = c == j;
  for ($it k = N_ - 2; k >= 0; --k) {
    __global const $T* uk = X + k * N_;
    $dot_v
    for ($it c = k + 1; c < N_; ++c) vj[c] -= t * uk[c];
  }
}
for ($it i = 0; i < UR_; ++i) for ($it c = 0; c < M_; ++c) UT[i * M_ + c] = c == i;
for ($it k = N_ - 1; k >= 0; --k) {
  for ($it r = k; r < M_; ++r) TMP[r] = X[r * N_ + k];
  for ($it i = 0; i < UR_; ++i) {
    __global $T* ui = UT + i * M_;
    $dot_u
    for ($it c = k; c < M_; ++c) ui[c] -= t * TMP[c];
  }
}
"""


def _rotate_rows(buf: str, length: str, a: str, b: str) -> str:
    """Rows a and b of buf (rows of `length`) <- (a c + b s, b c - a s)."""
    return (f"      {{ __global $T* ra = {buf} + ({a}) * {length}; __global $T* rb = {buf} + ({b}) * {length};\n"
            f"        for ($it q = 0; q < {length}; ++q) {{ const $T ta = ra[q], tb = rb[q]; "
            f"ra[q] = ta * c + tb * s; rb[q] = tb * c - ta * s; }} }}")


class SvdBidiagonalGen:
    """svd on a CPU, as Golub and Reinsch (LAPACK's gesvd, Numerical Recipes' svdcmp):
    Householder bidiagonalization, A = Q B P^T (the left reflectors stored in the columns,
    the right ones in the rows of the work copy, each applied along rows), Q and P formed
    as the rows of U^T and Vt, then implicit-shift QR sweeps on the bidiagonal, each
    rotation applied to two rows of U^T or Vt (contiguous), the singular values made
    positive and sorted. U^T's extra rows (full_matrices) are Q's other columns. Without
    compute_uv only the sweeps on the bidiagonal run after the reduction: O(n^2)."""

    def kernels(self, node, name):
        m, n = node.inputs[0].shape[-2:]
        ct, it = node.outputs[0].dtype.cl_compute, _lanes(node).it
        uv = node.attrs["compute_uv"]
        cpu = Lanes(False, it)
        text = Template(_BIDIAGONAL).safe_substitute(
            left=_householder("X[k * N_ + k]", lambda q: f"X[{q} * N_ + k]", "k + 1", "M_"),
            right=_householder("xk[k + 1]", lambda q: f"xk[{q}]", "k + 2", "N_"),
            dot_row=_dot(ct, "t", "xi", "xk", "k + 1", "N_", it),
            form=Template(_FORM_UV).safe_substitute(
                dot_v=_dot(ct, "t", "vj", "uk", "k + 1", "N_", it),
                dot_u=_dot(ct, "t", "ui", "TMP", "k", "M_", it)) if uv else "",
            rot_u_nm=_rotate_rows("UT", "M_", "nm", "i") if uv else "",
            rot_v=_rotate_rows("VT", "N_", "j", "i") if uv else "",
            rot_u=_rotate_rows("UT", "M_", "j", "i") if uv else "",
            negate_v="for ($it q = 0; q < N_; ++q) VT[k * N_ + q] = -VT[k * N_ + q];" if uv else "",
            sort=_sort("S", "N_", [("UT", "M_"), ("VT", "N_")] if uv else [], descending=True))
        body = cpu.expand(text, **_literals(ct))
        params = [("M_", m), ("N_", n), ("UR_", node.outputs[1].shape[-2])]
        return _per_matrix(node, name, cpu, body, params, 12 * _batch(node) * m * n * n)


# the generators of the ops both device classes run; factor_lowering gives each its own eigh
# and svd (joined per device class in lgc.backends.lowering)
LOWERINGS: dict = {
    "cholesky": CholeskyGen(),
    "lu": LuGen(),
    "triangular_solve": TriangularSolveGen(),
    "qr": QrGen(),
}
CPU_LOWERINGS: dict = {"eigh_tridiagonal": EighTridiagonalGen(), "svd_bidiagonal": SvdBidiagonalGen()}
GPU_LOWERINGS: dict = {"eigh": EighGen(), "svd_rows": SvdRowsGen()}
