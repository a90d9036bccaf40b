"""Kernel for sparse_matmul (lgc.ops.sparse): x [..., K] times a CSR-stored weight.

The weight W [K, N] is kept by output column (CSR of W^T: for column n, the positions
indptr[n]..indptr[n+1] of `indices` and `values` hold its nonzero rows and weights). One
work-item computes TM rows of one output column: it walks the column's nonzeros once and
applies each to its TM rows, so each index and weight read is used TM times and x is read
by gather within rows (cache-resident on a CPU). Only the nonzeros are touched: the work
is 2 * rows * nnz FLOPs. The fusion epilogue (bias, activation) is applied before the store.
No local memory and no barriers (PoCL, DESIGN.md); the driver picks the work-group size
(with it PoCL ran this kernel faster than with groups of one).
"""
from __future__ import annotations

from .emit import read, write
from .fused import unravel
from .kernel import Arg, Kernel, index_type_for


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


class SparseMatmulGen:
    alias = False

    @staticmethod
    def takes_epilogue(node) -> bool:
        return node.outputs[0].type.size > 0

    def kernels(self, node, name, epilogue=None):
        X, V, I, P = node.inputs
        Y = node.outputs[0]
        if Y.type.size == 0:
            return []
        K, N = X.shape[-1], Y.shape[-1]
        R = _prod(X.shape[:-1])
        TM = max(1, min(8, R))
        dt = Y.dtype
        it = index_type_for(X.type.size, V.type.size, Y.type.size)
        ct = dt.cl_compute
        body = [f"const {it} n = ({it})get_global_id(0);",
                f"const {it} r0 = ({it})get_global_id(1) * {TM};",
                f"const {it} j0 = ({it})in3[n];",
                f"const {it} j1 = ({it})in3[n + 1];"]
        U = max(1, 4 // TM)        # independent sums: one chain of adds is latency-bound
        for i in range(TM):
            body.append(f"const {it} a{i} = min(r0 + {i}, ({it}){R - 1}) * {K};")
            body += [f"{ct} acc{i}_{u} = 0;" for u in range(U)]

        def step(j, u):
            lines = [f"  {{ const {it} k = ({it})in2[{j}];",
                     f"    const {ct} v = {read('in1', V.dtype, j)};"]
            lines += [f"    acc{i}_{u} += {read('in0', X.dtype, f'a{i} + k')} * v;" for i in range(TM)]
            return lines + ["  }"]

        body.append(f"{it} j = j0;")
        if U > 1:
            body.append(f"for (; j + {U} <= j1; j += {U}) {{")
            for u in range(U):
                body += step(f"j + {u}", u)
            body.append("}")
        body.append("for (; j < j1; ++j) {")
        body += step("j", 0)
        body.append("}")
        for i in range(TM):
            body.append(f"{ct} acc{i} = " + " + ".join(f"acc{i}_{u}" for u in range(U)) + ";")
        out = Y
        if epilogue is not None:
            for i in range(TM):
                r = f"min(r0 + {i}, ({it}){R - 1})"
                coords = (unravel(r, X.shape[:-1]) if len(X.shape) > 1 else []) + ["n"]
                lines, v = epilogue(f"acc{i}", coords, f"{r} * {N} + n")
                body += lines
                body.append(f"acc{i} = {v};")
            out = epilogue.output
        for i in range(TM):
            guard = f"if (r0 + {i} < {R}) " if R % TM else ""
            body.append(guard + write("out0", out.dtype, f"(r0 + {i}) * {N} + n", f"acc{i}"))
        args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
        args += (epilogue.args if epilogue else []) + [Arg("out0", out, writable=True)]
        return [Kernel(name, args, body, global_size=(N, -(-R // TM)), local_size=None,
                       index_type=it, node_name=node.name or "", flops=2 * R * V.type.size)]
