"""OpenCL kernels of the spike op family (lgc.ops.spike holds their semantics).

active_indices: one work-item per row compacts the positions of its nonzeros without
branching (every position is written at the next free slot, which advances by x != 0),
then fills the rest of the row with -1: about the same time at any density. (Skipping
8-wide chunks without a spike was 1.7x faster at 1% density and 1.5x slower at 5-30%,
mispredicted branches, on PoCL.)

spike_matmul: one work-item per (row, TN columns). It walks its row's active positions
until the first -1 and adds x[k] times TN contiguous weights of row k (vector loads) to
TN accumulators, so the work is 2 * N per active entry, and W's rows of silent inputs are
never read. The store, with the fusion epilogue, is the GEMMs' (lgc.backends.gemm.store).
No local memory and no barriers; the driver picks the work-group size.
"""
from __future__ import annotations

from ...ops.linalg import prod
from ..gemm.cpu_tile import Tile
from ..gemm.loads import Load, width_for
from ..gemm.problem import axes
from ..gemm.store import Place, unrolled
from ..kernel import Arg, Kernel, Template, index_type_for, template_args


class ActiveIndicesGen:
    def kernels(self, node, name):
        X, Y = node.inputs[0], node.outputs[0]
        if Y.type.size == 0:
            return []
        K, R = X.shape[-1], prod(X.shape[:-1])
        it = index_type_for(X.type.size)
        x = Load("in0", X.dtype)
        body = [f"const {it} base = ({it})get_global_id(0) * {K};",
                f"{it} n = 0;",
                f"for ({it} k = 0; k < {K}; ++k) {{",
                "  out0[base + n] = (int)k;",
                f"  n += ({x.scalar('base + k')} != 0);",
                "}",
                f"for (; n < {K}; ++n) out0[base + n] = -1;"]
        return [Kernel(name, [Arg("in0", X), Arg("out0", Y, writable=True)], body,
                       global_size=(R,), index_type=it, node_name=node.name or "")]


def _tile_cols(n: int) -> int:
    """Columns per work-item: the largest power of two <= 16 that divides N (no ragged edge)."""
    c = 1
    while c < 16 and n % (c * 2) == 0:
        c *= 2
    return c


class SpikeMatmulGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, Idx, W = node.inputs
        Y = node.outputs[0]
        if Y.type.size == 0:
            return []
        K, N, lead = X.shape[-1], W.shape[1], X.shape[:-1]
        R, TN = prod(lead), _tile_cols(N)
        width = width_for(TN, 8)
        t = Tile(1, width, TN // width, Y.dtype.cl_compute)
        it = index_type_for(X.type.size, W.type.size, Y.type.size)
        x, w = Load("in0", X.dtype), Load("in2", W.dtype)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1);",
                f"const {it} row = m0 * {K};"]
        body += [f"{t.vt} {t.acc(0, h)} = ({t.vt})(0);" for h in range(t.vectors)]
        body += [f"for ({it} j = 0; j < {K}; ++j) {{",
                 f"  {it} k = ({it})in1[row + j];",
                 "  if (k < 0) break;",
                 f"  k = min(k, ({it}){K - 1});",          # a bad index reads inside W
                 f"  const {t.ct} s = {x.scalar('row + k')};",
                 f"  const {it} wk = k * {N} + n0;"]
        body += [f"  {t.acc(0, h)} += s * {w.vector(f'wk + {h * width}', width)};"
                 for h in range(t.vectors)]
        body.append("}")
        out = epilogue.output if epilogue is not None else Y
        place = Place(lambda m, c: f"{m} * {N} + {c}", lambda m, c: axes(m, lead) + [c],
                      f"({it}){R - 1}", f"({it}){N - 1}", False, False, "n0")
        body += unrolled(t, out.dtype, epilogue, place)
        return [Kernel(name, template_args(node.inputs, epilogue, Y), body,
                       global_size=(N // TN, R), local_size=None, index_type=it,
                       node_name=node.name or "")]


LOWERINGS: dict = {"active_indices": ActiveIndicesGen(), "spike_matmul": SpikeMatmulGen()}
