"""Depthwise 2-D convolution for CPU devices (PoCL): one work-item per output row segment.

The generic conv template (ConvGen) tiles output channels of one group, so a depthwise conv
(one channel per group) leaves it a single channel per work-item and ~5 GFLOP/s. Here a
work-item owns one (n, c, output row) and a segment of adjacent outputs of it. Stride 1 or
2 along W without dilation (MobileNets, ShuffleNet): VEC = 8 outputs in one float8, each tap
one vector multiply-add on a vload of the input row where the segment's window lies inside
the image, else on lanes of the row's span built in float16 registers (zero outside). Rows
of at most ROW_SEGMENTS segments (14 x 14, 7 x 7 maps) are up to MAX_ROWS rows per work-item,
each input row visited once for all of them, the segments' edges known when the kernel is
generated (no bounds tests): 0.6-0.7x the kernel time of a row per work-item on 28 x 28 to
7 x 7 maps. Over MobileNet-shaped layers
(1x32x112x112 ... 1x960x7x7, 3x3 and 5x5) the vector kernels took 0.6x the kernel time of
scalar accumulators, whose taps PoCL left unvectorized (one process, alternating, profiling
events). Other strides and dilations: SEG <= 8 scalar accumulators, the input span loaded
once into registers per kernel row. The bias and the fusion epilogue (activation,
residual) are applied before the store.

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


def segment_stores(it: str, S: int, OH: int, OW: int, y, epilogue, value, ox0: str = "ox0",
                   oy: str = "oy") -> list[str]:
    """The segment's outputs `value(i)` from column `ox0`, each through the fusion epilogue,
    stored (those past OW in the last segment are not)."""
    out = epilogue.output if epilogue is not None else y
    b = []
    for i in range(S):
        tail = OW % S and i >= OW % S
        ox = f"min({ox0} + {i}, ({it}){OW - 1})" if tail else f"{ox0} + {i}"
        flat = f"(nc * {OH} + {oy}) * {OW} + {ox}"
        v = value(i)
        if epilogue is not None:     # at top level: it may reuse what it declared
            lines, v = epilogue(v, ["n", "c", oy, ox], flat)
            b += lines
        store = f"out0[{flat}] = ({out.dtype.cl_storage})({v});"
        b.append(f"if ({ox0} + {i} < {OW}) {store}" if tail else store)
    return b


VEC = 8           # outputs per work-item of the vector kernel (floatV accumulators along W)
MAX_ROWS = 7      # output rows per work-item of the whole-row kernel (7 x 7 maps: one per plane)
ROW_SEGMENTS = 4  # output rows of at most this many segments (OW <= 32) in one work-item: 0.86x
                  # the kernel time of a work-item per segment over MobileNet-shaped layers


def vector_ok(at) -> bool:
    """The vector kernel reads a tap's V inputs as one vload (stride 1) or the even lanes of
    one vload of 2V (stride 2); other strides and dilations take the scalar kernel."""
    return at["strides"][1] in (1, 2) and at["dilations"][1] == 1


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
        vector = vector_ok(at)
        S = VEC if vector else segment(OW)
        nseg = -(-OW // S)
        span = (S - 1) * sw + (KW - 1) * dw + 1
        it = index_type_for(X.type.size, Y.type.size)
        ci = f"(c % {g}) * {C // g} + c / {g}" if g > 1 else "c"
        b = segment_head(it, C, S, sw, pl) + [f"const __global float* src = in0 + (n * {C} + {ci}) * {H * W};"]
        b.append(f"const __global float* wk = in1 + c * {KH * KW};")
        init = "in2[c]" if len(node.inputs) == 3 else "0.0f"
        whole = vector and nseg <= ROW_SEGMENTS
        if whole:      # every segment of the row in this work-item, edges known when generated
            R = _rows_per_item(OH, nseg)
            b = [f"const {it} oy0 = ({it})get_global_id(1) * {R};"] + b[2:4] + b[5:]   # nc, n and c, src, wk
            b += _row_taps(it, S, nseg, R, span, H, W, KH, KW, sh, sw, dh, pt, pl, init)
            for r in range(R):
                for k in range(nseg):
                    b += segment_stores(it, S, OH, OW, Y, epilogue, lambda i, k=k, r=r: f"a{k}_{r}.s{i:x}",
                                        str(k * S), f"(oy0 + {r})")
        elif vector:
            b += segment_taps(it, S, H, W, KH, KW, sh, sw, dh, pt, init)
            value = lambda i: f"a.s{i:x}"     # noqa: E731
        else:
            b += _scalar_taps(it, S, span, H, W, KH, KW, sh, sw, dh, dw, pt, init)
            value = lambda i: f"a{i}"     # noqa: E731
        if not whole:
            b += segment_stores(it, S, OH, OW, Y, epilogue, value)
        args = template_args(node.inputs, epilogue, Y)
        launch = (1, OH // R, N * C) if whole else (nseg, OH, N * C)
        return [Kernel(name, args, b, global_size=launch, local_size=None,
                       index_type=it, node_name=node.name or "",
                       flops=2 * KH * KW * Y.type.size)]


def segment_taps(it, V, H, W, KH, KW, sh, sw, dh, pt, init) -> list[str]:
    """floatV a = `init` plus every tap for the segment of output row oy from input column
    x0 (src: the input plane, wk: its KH x KW weights). Inside the image: vloads; at its
    edges: the row built in registers."""
    span = (V - 1) * sw + KW
    reach = KW - 1 + sw * V      # the last tap's vload: V lanes, or 2V at stride 2
    b = [f"float{V} a = (float{V})({init});", f"if (x0 >= 0 && x0 + {reach} <= {W}) {{"]
    b += ["  " + ln for ln in _vector_taps(it, V, H, W, KH, KW, sh, sw, dh, pt)]
    return b + ["} else {"] + ["  " + ln for ln in _edge_taps(it, V, span, H, W, KH, KW, sh, sw, dh, pt)] + ["}"]


def inside(x0: int, V: int, KW: int, sw: int, W: int) -> bool:
    """A segment from input column x0 whose taps all lie inside the row (vloads)."""
    return x0 >= 0 and x0 + KW - 1 + sw * V <= W


def _rows(it, KH, sh, dh, pt, H, W, taps, offset: str = "") -> list[str]:
    """For each kernel row kh inside the image: `row` points at it (plus `offset`), then
    taps(kh)'s statements."""
    return [ln for kh in range(KH) for ln in _guarded_row(it, "oy", kh * dh, sh, pt, H, W, taps(kh), offset)]


def _guarded_row(it, oy: str, d: int, sh, pt, H, W, body: list[str], offset: str = "") -> list[str]:
    """`body` in a block where `row` points at input row oy * sh - pt + d (plus `offset`),
    skipped where that row lies outside the image (zero padding)."""
    return [f"{{ const {it} iy = {oy} * {sh} - {pt} + {d};",
            f"  if (iy >= 0 && iy < {H}) {{",
            f"    const __global float* row = src + iy * {W}{offset};",
            *("    " + ln for ln in body),
            "  }",
            "}"]


def _vload_taps(acc: str, at, V, KW, sw, kh) -> list[str]:
    """acc += each tap of kernel row kh times one vload at `at(kw)` (stride 2: even lanes)."""
    load = (lambda kw: f"vload{V}(0, {at(kw)})") if sw == 1 else (lambda kw: f"vload{2 * V}(0, {at(kw)}).even")
    return [f"{acc} += wk[{kh * KW + kw}] * {load(kw)};" for kw in range(KW)]


def _register_taps(acc: str, r: str, lane, span, V, KW, sw, kh) -> list[str]:
    """acc += each tap of kernel row kh times lanes of the row's span, built in float16
    registers {r}0, {r}1, ... from lane(j) (an expression, "0.0f" outside the image)."""
    b = []
    for q in range(-(-span // 16)):
        lanes = [lane(j) if j < span else "0.0f" for j in range(16 * q, 16 * q + 16)]
        b.append(f"const float16 {r}{q} = (float16)({', '.join(lanes)});")
    for kw in range(KW):
        vec = ", ".join(f"{r}{j // 16}.s{j % 16:x}" for j in (kw + i * sw for i in range(V)))
        b.append(f"{acc} += wk[{kh * KW + kw}] * (float{V})({vec});")
    return b


def _scalar_taps(it, S, span, H, W, KH, KW, sh, sw, dh, dw, pt, init) -> list[str]:
    """a0..a{S-1}: S outputs as scalars, every tap S multiply-adds on the row's registers."""
    def taps(kh):
        b = [ln.strip() for ln in row_loads(it, span, W, "0.0f")]
        for kw in range(KW):
            b.append(f"const float w{kw} = wk[{kh * KW + kw}];")
            b += [f"a{i} += w{kw} * r{i * sw + kw * dw};" for i in range(S)]
        return b
    return [f"float a{i} = {init};" for i in range(S)] + _rows(it, KH, sh, dh, pt, H, W, taps)


def _rows_per_item(OH: int, nseg: int) -> int:
    """Output rows per work-item of the whole-row kernel: the largest divisor of OH up to
    MAX_ROWS with at most 16 accumulators in all."""
    return max(r for r in range(1, MAX_ROWS + 1) if OH % r == 0 and r * nseg <= 16)


def _row_taps(it, V, nseg, R, span, H, W, KH, KW, sh, sw, dh, pt, pl, init) -> list[str]:
    """a{k}_{r}: segment k of output row oy0 + r, every segment of R output rows in floatV
    accumulators. Each input row they read is visited once for all the rows that use it.
    The segments' columns are known when the kernel is generated: one inside the image reads
    its taps with vloads, one at an edge builds its span in float16 registers from plain loads
    and zeros once per input row (no bounds tests); each tap is one vector multiply-add."""
    b = [f"float{V} a{k}_{r} = (float{V})({init});" for r in range(R) for k in range(nseg)]
    return b + _input_rows(it, R, H, W, KH, sh, dh, pt, lambda rk: [
        ln for k in range(nseg) for ln in _row_segment(k * V * sw - pl, rk, lambda r, k=k: f"a{k}_{r}", f"r{k}_",
                                                       V, span, W, KW, sw)])


def _input_rows(it, R, H, W, KH, sh, dh, pt, taps) -> list[str]:
    """Each input row that R output rows from oy0 read, visited once: `row` points at it,
    then taps(rk)'s statements, rk its users (r, kh): output row r, kernel row kh."""
    users: dict[int, list] = {}      # input row offset from oy0 * sh - pt -> its (r, kh)
    for r in range(R):
        for kh in range(KH):
            users.setdefault(r * sh + kh * dh, []).append((r, kh))
    return [ln for d, rk in sorted(users.items()) for ln in _guarded_row(it, "oy0", d, sh, pt, H, W, taps(rk))]


def _row_segment(x0, rk, acc, regs: str, V, span, W, KW, sw) -> list[str]:
    """The taps of input row `row` for the segment from input column x0 in the accumulators
    acc(r) of its users rk. x0 a number: known when generated, vloads inside the image, else
    the span built once in float16 registers {regs}0.. (no bounds tests); a name: a column
    whose taps lie inside the row (vloads)."""
    if isinstance(x0, str) or inside(x0, V, KW, sw, W):
        at = (lambda kw: f"row + {x0} + {kw}") if isinstance(x0, str) else (lambda kw: f"row + {x0 + kw}")
        return [ln for r, kh in rk for ln in _vload_taps(acc(r), at, V, KW, sw, kh)]
    lane = lambda j: f"row[{x0 + j}]" if 0 <= x0 + j < W else "0.0f"     # noqa: E731
    b = []
    for i, (r, kh) in enumerate(rk):
        taps = _register_taps(acc(r), regs, lane, span, V, KW, sw, kh)
        b += taps if i == 0 else [t for t in taps if not t.startswith("const")]
    return b


def rows_taps(it, V, R, H, W, KH, KW, sh, sw, dh, pt, pl, nseg, init) -> list[str]:
    """floatV a0 .. a{R-1} = `init` plus every tap for output rows oy0 .. oy0 + R - 1 of the
    segment from input column x0, the input rows visited once for all. Inside the image:
    vloads; the segments at its edges (columns known when generated): registers, no bounds
    tests."""
    span = (V - 1) * sw + KW
    b = [f"float{V} " + ", ".join(f"a{r} = (float{V})({init})" for r in range(R)) + ";",
         f"if (x0 >= 0 && x0 + {KW - 1 + sw * V} <= {W}) {{"]
    cases = [("x0", "")] + [(k * V * sw - pl, f"x0 == {k * V * sw - pl}") for k in range(nseg)
                             if not inside(k * V * sw - pl, V, KW, sw, W)]
    for i, (x0, cond) in enumerate(cases):
        if i:
            b.append("} else " + (f"if ({cond}) {{" if i < len(cases) - 1 else "{"))
        b += ["  " + ln for ln in _input_rows(it, R, H, W, KH, sh, dh, pt, lambda rk, x0=x0: _row_segment(
            x0, rk, lambda r: f"a{r}", "r", V, span, W, KW, sw))]
    return b + ["}"]


def _edge_taps(it, V, span, H, W, KH, KW, sh, sw, dh, pt) -> list[str]:
    """Adds every tap to floatV a for a segment at the image's edge: each row's span read
    element by element (zero outside) into float16 registers, each tap one vector
    multiply-add on the lanes it needs."""
    def lane(j):
        return f"(x0 + {j} >= 0 && x0 + {j} < {W}) ? row[clamp(x0 + {j}, ({it})0, ({it}){W - 1})] : 0.0f"
    return _rows(it, KH, sh, dh, pt, H, W, lambda kh: _register_taps("a", "r", lane, span, V, KW, sw, kh))


def _vector_taps(it, V, H, W, KH, KW, sh, sw, dh, pt) -> list[str]:
    """Adds every tap to floatV a, the segment lying inside the image: one vector
    multiply-add per tap on one vload (stride 1) or the even lanes of one of 2V (stride 2)."""
    return _rows(it, KH, sh, dh, pt, H, W, lambda kh: _vload_taps("a", lambda kw: f"row + {kw}", V, KW, sw, kh),
                 " + x0")


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"depthwise_conv": DepthwiseGen()}
