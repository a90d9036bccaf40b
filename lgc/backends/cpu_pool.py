"""2-D max and average pooling for CPU devices (PoCL): one work-item per output row segment.

The generic pool kernels (lgc.backends.kernels.nn) give each output its own work-item and a
bounds test per tap; on PoCL a 3x3/2 max pool of ShuffleNet's stem ran at ~3 GB/s. Here, as
in cpu_depthwise, a work-item owns SEG <= 8 adjacent outputs of one (n, c, row) and loads
each input row span they share once into registers. Outside the image a tap reads -inf
(max) or 0 (average); the average divides by the taps inside the image (count_include_pad
= 0) or by the whole window (= 1). The fusion epilogue is applied before the store.

  pool_rows(X [N, C, H, W]) -> [N, C, OH, OW], mode "max" | "avg" | "avg_pad"
Only ceil_mode 0 and a single output (no argmax) come here (cpu_lowering checks). The op's
semantics and NumPy reference are in lgc.ops.lowered.
"""
from __future__ import annotations

from .cpu_depthwise import row_loads, segment, segment_head, segment_stores
from .cpu_gemm import NO_UNROLL
from .kernel import Kernel, Template, index_type_for, template_args


class PoolRowsGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, Y = node.inputs[0], node.outputs[0]
        at = node.attrs
        mode = at["mode"]
        N, C, H, W = X.shape
        KH, KW = at["kernel"]
        OH, OW = Y.shape[2:]
        (sh, sw), (dh, dw) = at["strides"], at["dilations"]
        pt, pl = at["pads"][:2]
        S = segment(OW)
        span = (S - 1) * sw + (KW - 1) * dw + 1
        it = index_type_for(X.type.size, Y.type.size)
        fill = "-INFINITY" if mode == "max" else "0.0f"
        b = segment_head(it, C, S, sw, pl) + [f"const __global float* src = in0 + nc * {H * W};", "int vy = 0;"]
        b += [f"float a{i} = {fill};" for i in range(S)]
        # the window's rows in a loop (its columns stay unrolled): unrolled, PoCL's
        # first-launch compile of this kernel took about twice as long
        b.append(f"{NO_UNROLL} for ({it} kh = 0; kh < {KH}; ++kh) {{")
        b.append(f"{{ const {it} iy = oy * {sh} - {pt} + kh * {dh};")
        b.append(f"  if (iy >= 0 && iy < {H}) {{")
        b.append(f"    const __global float* row = src + iy * {W};")
        b.append("    vy += 1;")
        b += row_loads(it, span, W, fill)
        for kw in range(KW):
            for i in range(S):
                r = f"r{i * sw + kw * dw}"
                b.append(f"    a{i} = fmax(a{i}, {r});" if mode == "max" else f"    a{i} += {r};")
        b += ["  }", "}"]
        b.append("}")

        def value(i):      # the average divides by the taps inside the image, or by all
            if mode == "avg_pad":
                return f"(a{i} / {float(KH * KW)!r}f)"
            if mode == "avg":
                cols = " + ".join(f"(x0 + {i * sw + kw * dw} >= 0 && x0 + {i * sw + kw * dw} < {W})"
                                  for kw in range(KW))
                return f"(a{i} / (float)(vy * ({cols})))"
            return f"a{i}"
        b += segment_stores(it, S, OH, OW, Y, epilogue, value)
        args = template_args([X], epilogue, Y)
        return [Kernel(name, args, b, global_size=(-(-OW // S), OH, N * C), local_size=None,
                       index_type=it, node_name=node.name or "", flops=KH * KW * Y.type.size)]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"pool_rows": PoolRowsGen()}
