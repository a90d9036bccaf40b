"""Kernel for sparse_matmul (lgc.ops.sparse): x [..., K] times a CSR-stored weight.

The weight W [K, N] is kept by output column (CSR of W^T: for column n, the positions
indptr[n]..indptr[n+1] of `indices` and `values` hold its nonzero rows and weights). One
work-item computes TM rows of one output column: it walks the column's nonzeros once and
applies each to its TM rows, so each index and weight read is used TM times and x is read
by gather within rows (cache-resident on a CPU). Only the nonzeros are touched: the work
is 2 * rows * nnz FLOPs. No local memory and no barriers (PoCL, DESIGN.md); the driver
picks the work-group size (with it PoCL ran this kernel faster than with groups of one).
The tile's store, with the fusion epilogue (bias, activation), is the GEMMs'
(lgc.backends.gemm.store); the walk is its own: with fewer than 4 rows it keeps 4 // TM
partial sums per row, since one chain of dependent adds is latency-bound.
"""
from __future__ import annotations

from ..ops.linalg import prod
from .gemm.cpu_tile import Tile
from .gemm.loads import Load
from .gemm.problem import axes
from .gemm.store import Place, unrolled
from .kernel import Kernel, Template, index_type_for, template_args


class SparseMatmulGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, V, I, P = node.inputs
        Y = node.outputs[0]
        if Y.type.size == 0:
            return []
        K, N, lead = X.shape[-1], Y.shape[-1], X.shape[:-1]
        R = prod(lead)
        t = Tile(max(1, min(8, R)), 1, 1, Y.dtype.cl_compute)
        it = index_type_for(X.type.size, V.type.size, Y.type.size)
        x, v = Load("in0", X.dtype), Load("in1", V.dtype)
        body = [f"const {it} n = ({it})get_global_id(0);",
                f"const {it} m0 = ({it})get_global_id(1) * {t.rows};",
                f"const {it} j0 = ({it})in3[n];",
                f"const {it} j1 = ({it})in3[n + 1];"]
        U = max(1, 4 // t.rows)        # independent sums: one chain of adds is latency-bound
        for i in range(t.rows):
            body.append(f"const {it} a{i} = min(m0 + {i}, ({it}){R - 1}) * {K};")
            body += [f"{t.ct} acc{i}_{u} = 0;" for u in range(U)]

        def step(j, u):
            lines = [f"  {{ const {it} k = ({it})in2[{j}];", f"    const {t.ct} v = {v.scalar(j)};"]
            return lines + [f"    acc{i}_{u} += {x.scalar(f'a{i} + k')} * v;" for i in range(t.rows)] + ["  }"]

        body.append(f"{it} j = j0;")
        if U > 1:
            body.append(f"for (; j + {U} <= j1; j += {U}) {{")
            for u in range(U):
                body += step(f"j + {u}", u)
            body.append("}")
        body += ["for (; j < j1; ++j) {"] + step("j", 0) + ["}"]
        body += [f"{t.ct} {t.acc(i)} = " + " + ".join(f"acc{i}_{u}" for u in range(U)) + ";" for i in range(t.rows)]
        out = epilogue.output if epilogue is not None else Y
        place = Place(lambda m, c: f"{m} * {N} + {c}", lambda m, c: axes(m, lead) + [c],
                      f"({it}){R - 1}", "n", R % t.rows != 0, False, "n")
        body += unrolled(t, out.dtype, epilogue, place)
        args = template_args(node.inputs, epilogue, Y)
        return [Kernel(name, args, body, global_size=(N, -(-R // t.rows)), local_size=None,
                       index_type=it, node_name=node.name or "", flops=2 * R * V.type.size)]

