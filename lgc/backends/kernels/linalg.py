"""OpenCL kernels of the linalg op family (lgc.ops.linalg holds their semantics).

matmul (and qmatmul, with int8 reads: lgc.backends.quant_kernels) on a CPU target runs the
register-tile schedule (gemm.cpu_tile): rows of A read as scalars and broadcast, rows of B
as vectors, a TM x TN tile (`MatmulParams`, chosen by `lgc tune` where it has timed them).
GPU targets take the local-memory schedule (gpu_gemm); the CPU backend rewrites large
float32 matmuls onto its packed panels first (cpu_lowering), so this kernel is what is left.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import gpu_gemm
from ..gemm.cpu_tile import Tile, accumulate, matmul_kernel
from ..gemm.loads import Load, lane, vtype, width_for
from ..gemm.problem import Matmul, int8_terms
from ..gemm.readers import Columns, Rows
from ..kernel import Template, index_type_for
from ..target import current_target
from ..templates import Pointwise
from ..tuning import tuned   # tile choice: tuning database, else heuristic


# ---- matmul ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MatmulParams:
    TM: int = 8    # rows of C per work-item
    TN: int = 16   # columns of C per work-item (vector width: 1, 2, 4, 8 or 16)


def matmul_params(M: int, K: int, N: int) -> MatmulParams:
    """Default tile: as wide as N allows, as tall as M allows (no wasted rows for M=1).
    8x16 beat 4x16, 6x16, 8x8 and 16x16 on a 2-core AVX-512 PoCL machine (~210 GFLOP/s
    at 512^3); 128 accumulators, as for conv."""
    return MatmulParams(TM=max(1, min(8, M)), TN=width_for(N))


class TileGen(Template):
    """The GEMM-shaped ops (matmul, conv and their int8 forms): on GPU targets the
    local-memory variant `gpu` for the dtypes it serves, else the CPU register tile
    (`cpu_kernel`) that `params` sizes."""

    def __init__(self, params):
        self.params = params

    def kernels(self, node, name, epilogue=None):
        """epilogue (lgc.backends.fused.Epilogue): applied to each value before the store."""
        if node.outputs[0].type.size == 0:
            return []
        if gpu_gemm.use_gpu(node, target := current_target()):
            return self.gpu(node, name, target, epilogue)
        return [self.cpu_kernel(node, name, epilogue)]


class MatmulGen(TileGen):
    """Kernel generator for matmul and qmatmul; `params(M, K, N)` picks the CPU tile."""

    def gpu(self, node, name, target, epilogue):      # the local-memory tiled GEMM
        return gpu_gemm.matmul_kernels(node, name, target, epilogue=epilogue)

    def cpu_kernel(self, node, name, epilogue):
        mm = Matmul.of(node)
        A, B = node.inputs[:2]
        it = index_type_for(A.type.size, B.type.size, node.outputs[0].type.size)
        if mm.trans:
            return self.dot_kernel(node, name, mm, it, epilogue)
        p = self.params(mm.M, mm.K, mm.N)
        t = Tile(p.TM, p.TN, 1, "float" if node.op == "qmatmul" else node.outputs[0].dtype.cl_compute)
        zero, affine = int8_terms(node) if node.op == "qmatmul" else (None, None)
        a = Rows(Load("in0", A.dtype, t.ct), mm.K, "offa", f"({it}){mm.M - 1}", zero, it)
        b = Columns(Load("in1", B.dtype, t.ct), mm.K, mm.N, "offb", it=it)
        return matmul_kernel(node, name, mm, t, it, accumulate(t, a, b), epilogue, affine)

    @staticmethod
    def dot_kernel(node, name, mm, it, epilogue=None):
        """B stored [..., N, K]: each of a TM x TN tile of C is a dot product of two contiguous
        rows, accumulated in VK-wide vectors and summed at the end. Streams B row by row,
        which is what a matrix-vector product (an FC layer at batch 1) needs."""
        A, B, C = node.inputs[0], node.inputs[1], node.outputs[0]
        M, K, N = mm.M, mm.K, mm.N
        t = Tile(min(2, M), 1, min(4, N), C.dtype.cl_compute)    # TN sums of width 1 per row
        VK = 8 if K >= 8 else 1
        VT = vtype(t.ct, VK)
        a, b = Load("in0", A.dtype), Load("in1", B.dtype)
        tile = [(i, j) for i in range(t.rows) for j in range(t.vectors)]
        body = [f"const {it} a{i} = offa + min(m0 + {i}, ({it}){M - 1}) * {K};" for i in range(t.rows)]
        body += [f"const {it} b{j} = offb + min(n0 + {j}, ({it}){N - 1}) * {K};" for j in range(t.vectors)]
        body += [f"{VT} d{i}_{j} = ({VT})0;" for i, j in tile]
        body += [f"{it} k = 0;", f"for (; k + {VK} <= {K}; k += {VK}) {{"]
        body += [f"  const {VT} av{i} = {a.vector(f'a{i} + k', VK)};" for i in range(t.rows)]
        body += [f"  const {VT} bv{j} = {b.vector(f'b{j} + k', VK)};" for j in range(t.vectors)]
        body += [f"  d{i}_{j} += av{i} * bv{j};" for i, j in tile] + ["}"]
        body += [f"{t.ct} {t.acc(i, j)} = {' + '.join(lane(f'd{i}_{j}', v, VK) for v in range(VK))};"
                 for i, j in tile]
        body += [f"for (; k < {K}; ++k) {{"]
        body += [f"  {t.acc(i, j)} += {a.scalar(f'a{i} + k')} * {b.scalar(f'b{j} + k')};" for i, j in tile]
        return matmul_kernel(node, name, mm, t, it, body + ["}"], epilogue)


# ---- det ------------------------------------------------------------------------------------

def _det_body(em):
    """Gaussian elimination with partial pivoting, one work-item per matrix."""
    n, ct, it = em.inputs[0].shape[-1], em.out_type().cl_compute, em.index_type
    em.emit(f"{ct} a[{max(n * n, 1)}];",
            f"for ({it} i = 0; i < {n * n}; ++i) a[i] = {em.load_flat(0, f'gid * {n * n} + i')};",
            f"{ct} det = 1;",
            f"for ({it} k = 0; k < {n}; ++k) {{",
            f"  {it} p = k;",
            f"  for ({it} i = k + 1; i < {n}; ++i) if (fabs(a[i * {n} + k]) > fabs(a[p * {n} + k])) p = i;",
            "  if (p != k) {",
            "    det = -det;",
            f"    for ({it} j = k; j < {n}; ++j) {{ {ct} t = a[k * {n} + j]; "
            f"a[k * {n} + j] = a[p * {n} + j]; a[p * {n} + j] = t; }}",
            "  }",
            f"  const {ct} piv = a[k * {n} + k];",
            "  det *= piv;",
            "  if (piv == 0) break;",
            f"  for ({it} i = k + 1; i < {n}; ++i) {{",
            f"    const {ct} f = a[i * {n} + k] / piv;",
            f"    for ({it} j = k + 1; j < {n}; ++j) a[i * {n} + j] -= f * a[k * {n} + j];",
            "  }",
            "}")
    em.store("det")


LOWERINGS: dict = {
    "matmul": MatmulGen(tuned("matmul", matmul_params, MatmulParams)),
    "det": Pointwise(_det_body),
}
