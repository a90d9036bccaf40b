"""Kernels for the quantized ops (lgc.ops.quant): matmul and convolution that read int8.

qmatmul and qconv are the float generators (kernels.linalg.MatmulGen, kernels.nn.ConvGen)
with int8 readers on either schedule: int8 converted to float32 in registers, less the
activation's zero point, the scales and bias applied to the finished accumulators
(gemm.problem.int8_terms), then the graph's epilogue (relu, a residual, the next layer's
requantization). GCN has no int8 dot instructions (DESIGN.md): the gain is memory traffic.
On CPU targets the big ones are first rewritten onto int8 panels (lower_quant_for_cpu).
Accumulating (x - zero) * w in float32 is exact while the partial sums stay below 2^24
(K up to ~500 for uint8 x int8); beyond that the error is float32 rounding, far below one
quantization step.
"""
from __future__ import annotations

from ..ops.linalg import prod
from ..ops.quant import untile_weights
from .cpu_gemm import PanelGemmGen
from .gemm.loads import width_for
from .kernels.linalg import MatmulGen
from .kernels.nn import ConvGen, ConvParams
from .nbits_kernels import lower_nbits_panels
from .settings import current_settings
from .target import CPU, Target, current_target


def qconv_params(Mg: int, out_last: int, stride: int, window: int) -> ConvParams:
    """A qconv's CPU tile: 16 channels on a stride-1 window, 16 positions on a pointwise one
    (weights stored tiled fix the channels: `qconv_tile`)."""
    return ConvParams(TM=min(16 if stride == 1 and window > 1 else 8, Mg),
                      TP=width_for(out_last, 16 if window == 1 else 8))


class QMatmulGen(MatmulGen):
    """qmatmul(x [..., K], w [K, N] int, w_scale [N], bias [N][, x_scale, x_zero])."""
    stores_any_dtype = True     # an epilogue may requantize: the store converts to its dtype


class QConvGen(ConvGen):
    """qconv(x [N, C, *S], w [M, C/g, *K] int, w_scale [M], bias [M][, x_scale, x_zero]).
    Padding reads as zero after the zero point is removed, i.e. as the real value 0, as
    ONNX's QLinearConv defines it."""
    stores_any_dtype = True


class QPanelGen(PanelGemmGen):
    """The int8 panel GEMMs (qmatmul_panels, qmatmul_bpanels)."""
    stores_any_dtype = True


def qconv_tile(w_shape, attrs) -> int:
    """Output channels per work-item for a qconv whose weights are stored tiled (TM of
    them interleaved per window offset, read with one vector load), or 0: untiled."""
    from ..ops.nn import spatial_attrs
    g = attrs.get("group", 1)
    Mg, KS = w_shape[0] // g, prod(w_shape[2:])
    s = spatial_attrs(attrs, len(w_shape) - 2)[0]
    big = s[-1] == 1 and KS > 1 and not current_target().is_gpu    # GPUs: fewer VGPRs
    tm = min(16 if big else 8, width_for(Mg))
    return tm if tm > 1 else 0


# ---- CPU: int8 weights times the float panel GEMM's B panels ------------------------------------
#
# On CPU targets (PoCL) float32 convs run on lgc.backends.cpu_gemm's packed panels: the image
# as im2col panels of 16 columns, one work-item per tile streaming a contiguous panel. A
# weight-only qconv (float x, group 1) is lowered onto the same B panels, with its int8
# weights as row panels of 8 ([ceil(M/8), C*KS, 8], one char8 per k, converted in registers).

QROWS = 8      # rows of W per panel and per C tile


def pack_qrows(w2):
    """W [M, K] (int8) -> row panels [ceil(M/8), K, 8], zero rows past M."""
    import numpy as np
    M, K = w2.shape
    w2 = np.pad(w2, [(0, -(-M // QROWS) * QROWS - M), (0, 0)]).reshape(-1, QROWS, K)
    return np.ascontiguousarray(np.swapaxes(w2, 1, 2))


MIN_PANEL_FLOPS = 1 << 22


def lower_quant_for_cpu(graph, target: Target = CPU):
    """CPU targets: qconvs (group 1, big enough) onto int8 row panels times the float panel
    GEMM's B panels (im2col_panels, or pack_panels of a pointwise conv's image); int8
    activations are dequantized to float32 first. Weight-only qmatmuls (float x) onto int8
    column panels (qmatmul_bpanels). 4-bit qmatmul_nbits with constant weights onto their
    column panels (qmatmul_nbits_panels, lgc.backends.nbits_kernels). Runs in
    lgc.backends.program.lower, after lower_for_cpu;
    LGC_CPU_PANELS=0 turns it off with the float rewrite."""

    from ..passes.dce import dce
    from ..passes.rewrite import Rewriter
    if target.is_gpu or not current_settings().cpu_panels or \
            not any(n.op in ("qconv", "qmatmul", "qmatmul_nbits") for n in graph.nodes):
        return graph
    consts = graph.constants()
    rw = Rewriter(graph)
    for node in graph.nodes:
        if not (node.op == "qconv" and _panel_qconv(rw, node, consts) or
                node.op == "qmatmul" and _panel_qmatmul(rw, node, consts) or
                node.op == "qmatmul_nbits" and lower_nbits_panels(rw, node, consts)):
            rw.keep(node)
    return dce(rw.finish()) if rw.changed else graph


def _panel_qconv(rw, node, consts) -> bool:
    from ..ops.nn import spatial_attrs
    X, W = (rw.get(v) for v in node.inputs[:2])
    at = node.attrs
    Y = node.outputs[0]
    if at["group"] != 1 or W not in consts or W.dtype.name != "i8" or Y.type.size == 0:
        return False
    w = consts[W]
    shape = tuple(at["w_shape"]) if at["tm"] else w.shape
    if at["tm"]:
        w = untile_weights(w, at["tm"], 1, shape)
    M, KK, P = shape[0], prod(shape[1:]), prod(Y.shape[2:])
    if 2 * Y.type.size * KK < MIN_PANEL_FLOPS or P < 8:
        return False
    if len(node.inputs) == 6:    # int8 activations: dequantized for the panels (one more kernel)
        xs, xz = (rw.get(v) for v in node.inputs[4:])
        X = rw.op("mul", [rw.op("sub", [rw.op("cast", [X], {"to": "f32"}), xz]), xs])
    r = len(shape) - 2
    s, pb, pe, d = spatial_attrs(at, r)
    if all(k == 1 for k in shape[2:]) and set(s) <= {1} and not any(pb + pe):
        flat = rw.op("reshape", [X], {"shape": (X.shape[0], X.shape[1], P)})
        bp = rw.op("pack_panels", [flat], {"trans": 0}, name=node.name)
    else:
        bp = rw.op("im2col_panels", [X], {"kernel": tuple(shape[2:]), "strides": at["strides"],
                                          "pads": at["pads"], "dilations": at["dilations"]}, name=node.name)
    ap = rw.const(pack_qrows(w.reshape(M, KK)))
    y = rw.op("qmatmul_panels", [ap, bp, rw.get(node.inputs[2]), rw.get(node.inputs[3])],
              {"m": M, "n": P, "out_shape": tuple(Y.shape)}, name=node.name)
    rw.replace(Y, y)
    return True


def pack_qpanels(w):
    """W [K, N] (int8) -> column panels [ceil(N/16), K, 16], zero columns past N."""
    import numpy as np
    K, N = w.shape
    w = np.pad(w, [(0, 0), (0, -(-N // 16) * 16 - N)]).reshape(K, -1, 16)
    return np.ascontiguousarray(np.swapaxes(w, 0, 1))


def _panel_qmatmul(rw, node, consts) -> bool:
    X, W = (rw.get(v) for v in node.inputs[:2])
    Y = node.outputs[0]
    K, N = W.shape
    if len(node.inputs) != 4 or X.dtype.name != "f32" or W not in consts or W.dtype.name != "i8" \
            or N < 16 or Y.type.size == 0 or 2 * Y.type.size * K < MIN_PANEL_FLOPS:
        return False
    y = rw.op("qmatmul_bpanels", [X, rw.const(pack_qpanels(consts[W])), rw.get(node.inputs[2]),
                                  rw.get(node.inputs[3])], {"n": N}, name=node.name)
    rw.replace(Y, y)
    return True


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering): the
# ops that only lower_quant_for_cpu creates. qmatmul and qconv, which every backend lowers,
# are in lgc.backends.kernels.quant.
LOWERINGS: dict = {"qmatmul_panels": QPanelGen(), "qmatmul_bpanels": QPanelGen()}
