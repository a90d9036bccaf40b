"""2-D max and average pooling for CPU devices (PoCL): one work-item per output row segment.

The generic pool kernels (lgc.backends.kernels.nn) give each output its own work-item and a
bounds test per tap; on PoCL a 3x3/2 max pool of ShuffleNet's stem ran at ~3 GB/s. Here, as
in cpu_depthwise, a work-item owns SEG <= 8 adjacent outputs of one (n, c, row) and loads
each input row span they share once into registers. Outside the image a tap reads -inf
(max) or 0 (average); the average divides by the taps inside the image (count_include_pad
= 0) or by the whole window (= 1). The fusion epilogue is applied before the store.

Stride-2 pools 2 or 3 wide (every stem and downsampling pool of the CNNs lgc runs) take 16
outputs per work-item from vector loads instead (`_stride2_kernel`).

  pool_rows(X [N, C, H, W]) -> [N, C, OH, OW], mode "max" | "avg" | "avg_pad"
Only ceil_mode 0 and a single output (no argmax) come here (cpu_lowering checks). The op's
semantics and NumPy reference are in lgc.ops.lowered.
"""
from __future__ import annotations

from .cpu_depthwise import row_loads, segment, segment_head, segment_stores
from .cpu_gemm import NO_UNROLL
from .kernel import Kernel, Template, index_type_for, template_args


VEC = 16    # outputs per work-item of the stride-2 vector path


def _vector_path(at, mode: str, OW: int) -> bool:
    """Stride 2 along W, windows 2 or 3 wide, undilated, at least a vector of outputs per
    row, and a divisor that is the same for every window (max; average over whole windows)."""
    (_, sw), (_, dw), KW = at["strides"], at["dilations"], at["kernel"][1]
    whole = mode == "avg_pad" or mode == "avg" and not any(at["pads"])
    return sw == 2 and dw == 1 and KW in (2, 3) and OW >= VEC and (mode == "max" or whole)


class PoolRowsGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, Y = node.inputs[0], node.outputs[0]
        at = node.attrs
        mode = at["mode"]
        if _vector_path(at, mode, Y.shape[3]):
            return [_stride2_kernel(node, name, epilogue)]
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


def _stride2_kernel(node, name, epilogue) -> Kernel:
    """One work-item per 16 outputs of a row, stride 2: each window row is two vload16s (and
    one more element for 3-wide windows), its columns the even and odd lanes, so a tap is
    one vector max or add. Segments at the image's edge (padding, the ragged end) read lane
    by lane. On SqueezeNet's 3x3/2 pool of [64, 111, 111] (PoCL 3.1, AVX-512, AMD EPYC) this
    took 0.37 ms where the scalar row segments of 8 took 0.48."""
    X, Y = node.inputs[0], node.outputs[0]
    at, mode = node.attrs, node.attrs["mode"]
    N, C, H, W = X.shape
    KH, KW = at["kernel"]
    OH, OW = Y.shape[2:]
    sh, dh = at["strides"][0], at["dilations"][0]
    pt, pl = at["pads"][:2]
    it = index_type_for(X.type.size, Y.type.size)
    fill, op = ("-INFINITY", "fmax({a}, {b})") if mode == "max" else ("0.0f", "({a} + {b})")
    last = 2 * (VEC - 1) + KW - 1          # the last column the 16 windows read, from x0
    b = segment_head(it, C, VEC, 2, pl)
    b += [f"const __global float* src = in0 + nc * {H * W};",
          f"const int inside = ox0 + {VEC} <= {OW} && x0 >= 0 && x0 + {last} < {W};",
          f"float16 acc = (float16)({fill});",
          f"{NO_UNROLL} for ({it} kh = 0; kh < {KH}; ++kh) {{",
          f"  const {it} iy = oy * {sh} - {pt} + kh * {dh};",
          f"  if (iy < 0 || iy >= {H}) continue;",
          f"  const __global float* row = src + iy * {W};",
          "  if (inside) {",
          "    const float16 u = vload16(0, row + x0), v = vload16(0, row + x0 + 16);",
          "    acc = " + op.format(a="acc", b="(float16)(u.even, v.even)") + ";",
          "    acc = " + op.format(a="acc", b="(float16)(u.odd, v.odd)") + ";"]
    if KW == 3:
        b.append("    acc = " + op.format(a="acc", b="(float16)(u.s2468, u.sACE, v.even, row[x0 + 32])") + ";")
    b += ["  } else {"]       # lane by lane, unrolled (a private array here ran 3x slower)
    b += ["  " + ln for ln in row_loads(it, last + 1, W, fill)]
    for kw in range(KW):
        b.append("    acc = " + op.format(a="acc", b=f"(float16)({', '.join(f'r{2 * j + kw}' for j in range(VEC))})") + ";")
    b += ["  }", "}"]
    div = "" if mode == "max" else f" / {float(KH * KW)!r}f"
    b += segment_stores(it, VEC, OH, OW, Y, epilogue, lambda i: f"(acc.s{i:X}{div})")
    return Kernel(name, template_args([X], epilogue, Y), b, global_size=(-(-OW // VEC), OH, N * C),
                  local_size=None, index_type=it, node_name=node.name or "", flops=KH * KW * Y.type.size)


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"pool_rows": PoolRowsGen()}
