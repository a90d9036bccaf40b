"""OpenCL kernels of the quant op family (lgc.ops.quant holds their semantics): quantize as
a C expression, the qmatmul and qconv templates of lgc.backends.quant_kernels, which every
backend lowers (the CPU's int8 panel ops are in that module's own table), and the 4-bit
ops' kernels (lgc.backends.nbits_kernels)."""
from __future__ import annotations

from ...ir import dtypes
from ...ops.quant import RANGES
from ..nbits_kernels import LOWERINGS as NBITS
from ..quant_kernels import QConvGen, QMatmulGen, qconv_params
from ..templates import Elementwise, literal
from .linalg import matmul_params


def _quantize_expr(ops, em):
    lo, hi = RANGES[em.node.attrs["to"]]
    f = dtypes.f32
    return f"clamp(rint({ops[0]} / {ops[1]}) + {ops[2]}, {literal(lo, f)}, {literal(hi, f)})"


LOWERINGS: dict = {
    "quantize": Elementwise(_quantize_expr),
    "qmatmul": QMatmulGen(matmul_params),
    "qconv": QConvGen(qconv_params),
    **NBITS,
}
