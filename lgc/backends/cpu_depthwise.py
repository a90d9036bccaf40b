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

from .kernel import Arg, Kernel, index_type_for

MAX_SEG = 8       # outputs per work-item along W


def segment(ow: int) -> int:
    """Outputs per work-item: at most MAX_SEG, spread evenly (28 -> 4 x 7, 56 -> 7 x 8)."""
    return -(-ow // -(-ow // MAX_SEG))


class DepthwiseGen:
    alias = False

    @staticmethod
    def takes_epilogue(node) -> bool:
        return node.outputs[0].type.size > 0

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
        b = [f"const {it} s = ({it})get_global_id(0);",
             f"const {it} oy = ({it})get_global_id(1);",
             f"const {it} nc = ({it})get_global_id(2);",
             f"const {it} n = nc / {C}, c = nc % {C};",
             f"const {it} ox0 = s * {S}, x0 = ox0 * {sw} - {pl};",
             f"const __global float* src = in0 + (n * {C} + {ci}) * {H * W};",
             f"const __global float* wk = in1 + c * {KH * KW};"]
        init = "in2[c]" if len(node.inputs) == 3 else "0.0f"
        b += [f"float a{i} = {init};" for i in range(S)]
        for kh in range(KH):
            b.append(f"{{ const {it} iy = oy * {sh} - {pt} + {kh * dh};")
            b.append(f"  if (iy >= 0 && iy < {H}) {{")
            b.append(f"    const __global float* row = src + iy * {W};")
            for j in range(span):
                b.append(f"    const float r{j} = (x0 + {j} >= 0 && x0 + {j} < {W}) ? "
                         f"row[clamp(x0 + {j}, ({it})0, ({it}){W - 1})] : 0.0f;")
            for kw in range(KW):
                b.append(f"    const float w{kw} = wk[{kh * KW + kw}];")
                b += [f"    a{i} = fma(w{kw}, r{i * sw + kw * dw}, a{i});" for i in range(S)]
            b.append("  }")
            b.append("}")
        st = epilogue.output if epilogue is not None else Y
        for i in range(S):
            tail = OW % S and i >= OW % S         # past OW in the last segment: not stored
            ox = f"min(ox0 + {i}, ({it}){OW - 1})" if tail else f"ox0 + {i}"
            flat = f"(nc * {OH} + oy) * {OW} + {ox}"
            v = f"a{i}"
            if epilogue is not None:     # at top level: it may reuse what it declared
                lines, v = epilogue(v, ["n", "c", "oy", ox], flat)
                b += lines
            store = f"out0[{flat}] = ({st.dtype.cl_storage})({v});"
            b.append(f"if (ox0 + {i} < {OW}) {store}" if tail else store)
        args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
        args += epilogue.args if epilogue is not None else []
        args.append(Arg("out0", st, writable=True))
        return [Kernel(name, args, b, global_size=(nseg, OH, N * C), local_size=None,
                       index_type=it, node_name=node.name or "",
                       flops=2 * KH * KW * Y.type.size)]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"depthwise_conv": DepthwiseGen()}
