"""Depthwise 2-D convolution for CPU devices (PoCL): one work-item per output row segment.

The generic conv template (ConvGen) tiles output channels of one group, so a depthwise conv
(one channel per group) leaves it a single channel per work-item and ~5 GFLOP/s. Here a
work-item owns one (n, c, output row) and SEG <= 8 adjacent outputs of it: for each kernel
row it loads the input span those outputs need once into registers (zero outside the image),
then every tap is SEG multiply-adds with one weight read per work-item. Any kernel size,
stride, pads and dilation; the bias and the fusion epilogue (activation, residual) are
applied before the store.

`shuffle` = g > 1 folds a preceding ShuffleNet channel shuffle (reshape [N, g, C/g, H, W],
transpose (0, 2, 1, 3, 4), reshape back) into the input index: output channel c reads input
channel (c % g) * (C / g) + c / g, so the shuffled copy is never written.

  depthwise_conv(X [N, C, H, W], W [C, 1, KH, KW][, bias [C]]) -> [N, C, OH, OW]
(its semantics and NumPy reference are in lgc.ops.lowered)
"""
from __future__ import annotations

from .kernel import Kernel, Template, index_type_for, template_args

MAX_SEG = 8       # outputs per work-item along W


def segment(ow: int) -> int:
    """Outputs per work-item: at most MAX_SEG, spread evenly (28 -> 4 x 7, 56 -> 7 x 8)."""
    return -(-ow // -(-ow // MAX_SEG))


def segment_head(it: str, C: int, S: int, sw: int, pl: int) -> list[str]:
    """Where a work-item sits: segment s of output row oy of image channel nc = n * C + c;
    ox0, its first output, and x0, the input column where that output's window starts."""
    return [f"const {it} s = ({it})get_global_id(0);",
            f"const {it} oy = ({it})get_global_id(1);",
            f"const {it} nc = ({it})get_global_id(2);",
            f"const {it} n = nc / {C}, c = nc % {C};",
            f"const {it} ox0 = s * {S}, x0 = ox0 * {sw} - {pl};"]


def row_loads(it: str, span: int, W: int, fill: str) -> list[str]:
    """r0..r{span-1}: the input row's columns from x0, `fill` outside the image."""
    return [f"    const float r{j} = (x0 + {j} >= 0 && x0 + {j} < {W}) ? "
            f"row[clamp(x0 + {j}, ({it})0, ({it}){W - 1})] : {fill};" for j in range(span)]


def segment_stores(it: str, S: int, OH: int, OW: int, y, epilogue, value) -> list[str]:
    """The segment's outputs `value(i)`, each through the fusion epilogue, stored (those past
    OW in the last segment are not)."""
    out = epilogue.output if epilogue is not None else y
    b = []
    for i in range(S):
        tail = OW % S and i >= OW % S
        ox = f"min(ox0 + {i}, ({it}){OW - 1})" if tail else f"ox0 + {i}"
        flat = f"(nc * {OH} + oy) * {OW} + {ox}"
        v = value(i)
        if epilogue is not None:     # at top level: it may reuse what it declared
            lines, v = epilogue(v, ["n", "c", "oy", ox], flat)
            b += lines
        store = f"out0[{flat}] = ({out.dtype.cl_storage})({v});"
        b.append(f"if (ox0 + {i} < {OW}) {store}" if tail else store)
    return b


class DepthwiseGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, Wt, Y = node.inputs[0], node.inputs[1], node.outputs[0]
        at = node.attrs
        N, C, H, W = X.shape
        KH, KW = Wt.shape[2:]
        OH, OW = Y.shape[2:]
        (sh, sw), (dh, dw) = at["strides"], at["dilations"]
        pt, pl = at["pads"][:2]
        g = at["shuffle"]
        S = segment(OW)
        nseg = -(-OW // S)
        span = (S - 1) * sw + (KW - 1) * dw + 1
        it = index_type_for(X.type.size, Y.type.size)
        ci = f"(c % {g}) * {C // g} + c / {g}" if g > 1 else "c"
        b = segment_head(it, C, S, sw, pl) + [f"const __global float* src = in0 + (n * {C} + {ci}) * {H * W};"]
        b.append(f"const __global float* wk = in1 + c * {KH * KW};")
        init = "in2[c]" if len(node.inputs) == 3 else "0.0f"
        b += [f"float a{i} = {init};" for i in range(S)]
        for kh in range(KH):
            b.append(f"{{ const {it} iy = oy * {sh} - {pt} + {kh * dh};")
            b.append(f"  if (iy >= 0 && iy < {H}) {{")
            b.append(f"    const __global float* row = src + iy * {W};")
            b += row_loads(it, span, W, "0.0f")
            for kw in range(KW):
                b.append(f"    const float w{kw} = wk[{kh * KW + kw}];")
                b += [f"    a{i} = fma(w{kw}, r{i * sw + kw * dw}, a{i});" for i in range(S)]
            b.append("  }")
            b.append("}")
        b += segment_stores(it, S, OH, OW, Y, epilogue, lambda i: f"a{i}")
        args = template_args(node.inputs, epilogue, Y)
        return [Kernel(name, args, b, global_size=(nseg, OH, N * C), local_size=None,
                       index_type=it, node_name=node.name or "",
                       flops=2 * KH * KW * Y.type.size)]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"depthwise_conv": DepthwiseGen()}
