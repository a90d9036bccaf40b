"""OpenCL kernels of the linalg op family (lgc.ops.linalg holds their semantics).

matmul is a register-tile template: one work-item computes a TM x TN tile of C held in TM
vector accumulators of width TN (rows of A are read as scalars and broadcast, rows of B as
vectors). Work-group size 1, no local memory: what PoCL runs fastest (DESIGN.md). The tile
sizes are explicit parameters (`MatmulParams`), chosen by `lgc tune` where it has timed them.
GPU targets take gpu_gemm's local-memory tiled SGEMM instead; the CPU backend rewrites large
float32 matmuls onto its packed panels first (cpu_lowering), so this template is what is left.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ops.linalg import b_shape, mm_shapes, prod
from .. import gpu_gemm
from ..emit import read, write
from ..fused import unravel
from ..kernel import Arg, Kernel, index_type_for
from ..templates import Pointwise
from ..tuning import tuned   # tile choice: tuning database, else heuristic
from ..vector import batch_offsets, gather, lane, vload, vstore, vtype, width_for


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


class MatmulGen:
    """Kernel generator for matmul; `params(M, K, N)` picks the tile."""
    alias = False

    def __init__(self, params=matmul_params):
        self.params = params

    @staticmethod
    def takes_epilogue(node) -> bool:
        """Whether `kernels` can apply a fusion epilogue (the CPU templates and the GPU GEMM can)."""
        return node.outputs[0].type.size > 0

    @staticmethod
    def _epilogue(epilogue, node, batch, M, N, value, i, j, it):
        """Apply `epilogue` to the value of C[b, m0 + i, n0 + j] (rows and columns past the
        end clamped: their results are computed, then not stored)."""
        m = f"min(m0 + {i}, ({it}){M - 1})"
        n = f"min(n0 + {j}, ({it}){N - 1})"
        coords = unravel("b", batch) if batch else []
        coords += [m] if len(node.inputs[0].shape) > 1 else []
        coords += [n] if len(node.inputs[1].shape) > 1 else []
        return epilogue(value, coords, f"b * {M * N} + {m} * {N} + {n}")

    def kernels(self, node, name, epilogue=None):
        """epilogue (lgc.backends.fused.Epilogue): applied to each accumulator value, at its
        output coordinates, before the store; the kernel then stores epilogue.output."""
        A, B = node.inputs
        C = node.outputs[0]
        ba, bb, batch, M, K, N, _ = mm_shapes(A.shape, b_shape(B.shape, node.attrs))
        if C.type.size == 0:
            return []
        if gpu_gemm.use_gpu(node, target := gpu_gemm.current_target()):   # local-memory tiled SGEMM
            return gpu_gemm.matmul_kernels(node, name, target, epilogue=epilogue)
        if node.attrs["trans_b"]:
            return self.dot_kernels(node, name, ba, bb, batch, M, K, N, epilogue)
        p = self.params(M, K, N)
        TM, TN = p.TM, p.TN
        dt = C.dtype
        it = index_type_for(A.type.size, B.type.size, C.type.size)
        VT = vtype(dt, TN)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};",
                f"const {it} b = ({it})get_global_id(2);"]
        body += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
        for i in range(TM):
            body.append(f"const {it} a{i} = offa + min(m0 + {i}, ({it}){M - 1}) * {K};")
            body.append(f"{VT} acc{i} = ({VT})0;")

        def k_loop(bvec):
            lines = [f"for ({it} k = 0; k < {K}; ++k) {{",
                     f"  const {VT} bv = {bvec};"]
            lines += [f"  acc{i} += {read('in0', dt, f'a{i} + k')} * bv;" for i in range(TM)]
            return lines + ["}"]

        if N % TN == 0:
            body += k_loop(vload("in1", dt, f"offb + k * {N} + n0", TN))
        else:
            body.append(f"if (n0 + {TN} <= {N}) {{")
            body += ["  " + ln for ln in k_loop(vload("in1", dt, f"offb + k * {N} + n0", TN))]
            body.append("} else {")
            elems = [read("in1", dt, f"offb + k * {N} + min(n0 + {j}, ({it}){N - 1})") for j in range(TN)]
            body += ["  " + ln for ln in k_loop(gather(dt, TN, elems))]
            body.append("}")

        body.append(f"const {it} offc = b * {M * N};")
        if epilogue is not None:
            for i in range(TM):
                lanes = []
                for j in range(TN):
                    lines, v = self._epilogue(epilogue, node, batch, M, N, lane(f"acc{i}", j, TN), i, j, it)
                    body += lines
                    lanes.append(v)
                body.append(f"acc{i} = {gather(dt, TN, lanes)};")
        for i in range(TM):
            row = f"offc + (m0 + {i}) * {N} + n0"
            guard = f"if (m0 + {i} < {M}) " if M % TM else ""
            if N % TN == 0:
                body.append(guard + vstore("out0", dt, row, f"acc{i}", TN))
            else:
                body.append(guard + "{")
                body.append(f"  if (n0 + {TN} <= {N}) {vstore('out0', dt, row, f'acc{i}', TN)}")
                body.append("  else {")
                for j in range(TN):
                    body.append(f"    if (n0 + {j} < {N}) "
                                + write("out0", dt, f"{row} + {j}", lane(f"acc{i}", j, TN)))
                body += ["  }", "}"]
        nb = prod(batch)
        args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue else [])
        args.append(Arg("out0", epilogue.output if epilogue else C, writable=True))
        return [Kernel(name, args, body, global_size=(-(-N // TN), -(-M // TM), nb),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                       flops=2 * M * N * K * nb)]

    def dot_kernels(self, node, name, ba, bb, batch, M, K, N, epilogue=None):
        """B stored [..., N, K]: each of a TM x TN tile of C is a dot product of two contiguous
        rows, accumulated in VK-wide vectors and summed at the end. Streams B row by row,
        which is what a matrix-vector product (an FC layer at batch 1) needs."""
        A, B, C = node.inputs[0], node.inputs[1], node.outputs[0]
        TM, TN, VK = min(2, M), min(4, N), 8 if K >= 8 else 1
        dt, ct = C.dtype, C.dtype.cl_compute
        it = index_type_for(A.type.size, B.type.size, C.type.size)
        VT = vtype(dt, VK)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};",
                f"const {it} b = ({it})get_global_id(2);"]
        body += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
        tile = [(i, j) for i in range(TM) for j in range(TN)]
        body += [f"const {it} a{i} = offa + min(m0 + {i}, ({it}){M - 1}) * {K};" for i in range(TM)]
        body += [f"const {it} b{j} = offb + min(n0 + {j}, ({it}){N - 1}) * {K};" for j in range(TN)]
        body += [f"{VT} acc{i}_{j} = ({VT})0;" for i, j in tile]
        body += [f"{it} k = 0;", f"for (; k + {VK} <= {K}; k += {VK}) {{"]
        body += [f"  const {VT} av{i} = {vload('in0', dt, f'a{i} + k', VK)};" for i in range(TM)]
        body += [f"  const {VT} bv{j} = {vload('in1', dt, f'b{j} + k', VK)};" for j in range(TN)]
        body += [f"  acc{i}_{j} += av{i} * bv{j};" for i, j in tile] + ["}"]
        body += [f"{ct} s{i}_{j} = {' + '.join(lane(f'acc{i}_{j}', v, VK) for v in range(VK))};"
                 for i, j in tile]
        body += [f"for (; k < {K}; ++k) {{"]
        body += [f"  s{i}_{j} += {read('in0', dt, f'a{i} + k')} * {read('in1', dt, f'b{j} + k')};"
                 for i, j in tile] + ["}"]
        for i, j in tile:
            if epilogue is not None:
                lines, v = self._epilogue(epilogue, node, batch, M, N, f"s{i}_{j}", i, j, it)
                body += lines + [f"s{i}_{j} = {v};"]
        for i, j in tile:
            guard = " && ".join(([f"m0 + {i} < {M}"] if M % TM else []) +
                                ([f"n0 + {j} < {N}"] if N % TN else []))
            store = write("out0", dt, f"b * {M * N} + (m0 + {i}) * {N} + n0 + {j}", f"s{i}_{j}")
            body.append(f"if ({guard}) {store}" if guard else store)
        args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue else [])
        args.append(Arg("out0", epilogue.output if epilogue else C, writable=True))
        return [Kernel(name, args, body, global_size=(-(-N // TN), -(-M // TM), prod(batch)),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                       flops=2 * M * N * K * prod(batch))]


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
