"""Kernels for the quantized ops (lgc.ops.quant): matmul and convolution that read int8.

GCN has no int8 dot instructions (DESIGN.md), so the gain is memory and bandwidth: weights
(and, in full int8 mode, activations) are read as 8-bit integers, converted to float32 in
registers and accumulated in float32. Dequantization is fused into the prologue (the
activation's zero point is subtracted as it is loaded; scales are applied once per
accumulator, in the epilogue: acc * x_scale * w_scale[channel] + bias[channel]) and the
graph's own epilogue (relu, a residual add, the next layer's requantization to int8) is
applied by the fusion `Epilogue` before the store.

Both are register-tile templates in the manner of the float kernels: one work-item per
TM x TN tile of the output, no local memory and no barriers (what PoCL runs fastest); on
GPU targets the driver chooses the work-group size.

Accumulating (x - zero) * w in float32 is exact while the partial sums stay below 2^24
(K up to ~500 for uint8 x int8); beyond that the error is float32 rounding, far below one
quantization step.
"""
from __future__ import annotations

from ..ops.quant import tile_weights, untile_weights  # noqa: F401 (tile_weights: for lgc.compress)
from .fused import unravel
from .kernel import Arg, Kernel, index_type_for
from .target import current_target

LANES = "0123456789abcdef"


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _width(extent: int, most: int = 16) -> int:
    w = 1
    while w * 2 <= min(extent, most):
        w *= 2
    return w


def _vt(n: int) -> str:
    return "float" if n == 1 else f"float{n}"


def _lane(v: str, j: int, n: int) -> str:
    return v if n == 1 else f"{v}.s{LANES[j]}"


def _vec(n: int, elems: list[str]) -> str:
    return elems[0] if n == 1 else f"(float{n})({', '.join(elems)})"


class Reader:
    """Float32 loads from one buffer of any storage type (f32, or integers converted)."""

    def __init__(self, buf: str, dtype, zero: str | None = None):
        self.buf, self.dtype, self.zero = buf, dtype, zero

    def scalar(self, index: str) -> str:
        if self.dtype.name == "f32":
            return f"{self.buf}[{index}]"
        x = f"(float){self.buf}[{index}]"
        return f"({x} - {self.zero})" if self.zero else x

    def vector(self, index: str, n: int) -> str:
        if n == 1:
            return self.scalar(index)
        if self.dtype.name == "f32":
            return f"vload{n}(0, {self.buf} + {index})"
        x = f"convert_float{n}(vload{n}(0, {self.buf} + {index}))"
        return f"({x} - ({_vt(n)})({self.zero}))" if self.zero else x

    def gather(self, indices: list[str]) -> str:
        return _vec(len(indices), [self.scalar(i) for i in indices])


def _local_size(rank: int):
    """Work-group size 1 on the CPU (PoCL); the driver's choice on GPUs."""
    return None if current_target().is_gpu else (1,) * rank


def _zero_line(node) -> tuple[list[str], str | None, str]:
    """Declarations of the activation's zero point and scale (int8 activations), and the
    expression of the scale that multiplies every accumulator."""
    if len(node.inputs) <= 4:
        return [], None, "1.0f"
    return ["const float xs_ = in4[0];", "const float xz_ = in5[0];"], "xz_", "xs_"


class _QuantGen:
    """What the quantized kernel generators share: they take the graph's epilogue."""
    alias = False
    stores_any_dtype = True     # an epilogue may requantize: the store converts to its dtype

    @staticmethod
    def takes_epilogue(node) -> bool:
        return node.outputs[0].type.size > 0


def _args(node, epilogue):
    """The kernel's arguments (the node's inputs, the epilogue's, out0) and the value stored.
    Called after the epilogue has been applied."""
    out = epilogue.output if epilogue is not None else node.outputs[0]
    args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
    return args + (epilogue.args if epilogue is not None else []) + [Arg("out0", out, writable=True)], out


def _epilogue_tiles(epilogue, TM, TN, place) -> list[str]:
    """The epilogue on TM vector accumulators acc{i} of width TN; `place(i, j)` gives lane
    j of row i's output coordinates and flat index."""
    body = []
    for i in range(TM):
        lanes = []
        for j in range(TN):
            lines, v = epilogue(_lane(f"acc{i}", j, TN), *place(i, j))
            body += lines
            lanes.append(v)
        body.append(f"acc{i} = {_vec(TN, lanes)};")
    return body


class QMatmulGen(_QuantGen):
    """qmatmul(x [..., K], w [K, N] int, w_scale [N], bias [N][, x_scale, x_zero])."""

    def kernels(self, node, name, epilogue=None):
        X, W = node.inputs[:2]
        Y = node.outputs[0]
        if Y.type.size == 0:
            return []
        K, N = W.shape
        R = _prod(X.shape[:-1])
        gpu = current_target().is_gpu      # GPUs: a smaller tile, for occupancy (VGPRs)
        TM, TN = max(1, min(4 if gpu else 8, R)), _width(N, 4 if gpu else 16)
        it = index_type_for(X.type.size, W.type.size, Y.type.size)
        VT = _vt(TN)
        per_row = len(node.inputs) > 4 and node.inputs[4].type.size > 1   # a scale per row of x
        head, zero, xs = ([], None, "1.0f") if per_row else _zero_line(node)
        xr = [Reader("in0", X.dtype, f"xz{i}" if per_row else zero) for i in range(TM)]
        w = Reader("in1", W.dtype)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};"] + head
        for i in range(TM):
            body.append(f"const {it} a{i} = min(m0 + {i}, ({it}){R - 1}) * {K};")
            body.append(f"{VT} acc{i} = ({VT})0;")
            if per_row:
                body.append(f"const float xs{i} = in4[min(m0 + {i}, ({it}){R - 1})], "
                            f"xz{i} = in5[min(m0 + {i}, ({it}){R - 1})];")
        col = [f"min(n0 + {j}, ({it}){N - 1})" for j in range(TN)]

        def k_loop(bvec):
            lines = [f"for ({it} k = 0; k < {K}; ++k) {{", f"  const {VT} bv = {bvec};"]
            lines += [f"  acc{i} += {xr[i].scalar(f'a{i} + k')} * bv;" for i in range(TM)]
            return lines + ["}"]

        full = N % TN == 0
        if full:
            body += k_loop(w.vector(f"k * {N} + n0", TN))
        else:
            body.append(f"if (n0 + {TN} <= {N}) {{")
            body += ["  " + ln for ln in k_loop(w.vector(f"k * {N} + n0", TN))]
            body.append("} else {")
            body += ["  " + ln for ln in k_loop(w.gather([f"k * {N} + {c}" for c in col]))]
            body.append("}")
        scale = _vec(TN, [f"in2[{c}]" for c in col])
        bias = _vec(TN, [f"in3[{c}]" for c in col])
        body += [f"const {VT} sc_ = {scale} * {xs};", f"const {VT} bi_ = {bias};"]
        body += [f"acc{i} = acc{i} * {f'(sc_ * xs{i})' if per_row else 'sc_'} + bi_;" for i in range(TM)]
        lead = X.shape[:-1]
        if epilogue is not None:
            def place(i, j):
                m = f"min(m0 + {i}, ({it}){R - 1})"
                return (unravel(m, lead) if lead else []) + [col[j]], f"{m} * {N} + {col[j]}"
            body += _epilogue_tiles(epilogue, TM, TN, place)
        args, out = _args(node, epilogue)
        body += _store_rows(out.dtype, TM, TN, N, full, lambda i: f"(m0 + {i}) * {N} + n0",
                            lambda i: f"m0 + {i} < {R}" if R % TM else "")
        return [Kernel(name, args, body, global_size=(-(-N // TN), -(-R // TM)),
                       local_size=_local_size(2), index_type=it, node_name=node.name or "",
                       flops=2 * R * N * K)]


def _store(dtype, buf: str, index: str, value: str) -> str:
    from .emit import write
    return write(buf, dtype, index, value)


def _vstore(dtype, index: str, value: str, n: int) -> str:
    if n == 1:
        return _store(dtype, "out0", index, value)
    if dtype.name == "f32":
        return f"vstore{n}({value}, 0, out0 + {index});"
    if dtype.name == "f16":
        return f"vstore_half{n}({value}, 0, ((__global half*)out0) + {index});"
    ct = dtype.cl_storage
    return f"vstore{n}(convert_{ct}{n}_sat_rte({value}), 0, out0 + {index});"


def _store_rows(dtype, TM, TN, N, full, at, row_guard, n0="n0") -> list[str]:
    """Stores of TM vector accumulators acc{i} of width TN at columns n0.. (< N; all in
    range when `full`); `at(i)` is row i's first element, `row_guard(i)` the condition that
    row i exists ("": always)."""
    body = []
    for i in range(TM):
        guard = f"if ({row_guard(i)}) " if row_guard(i) else ""
        if full:
            body.append(guard + _vstore(dtype, at(i), f"acc{i}", TN))
            continue
        body += [guard + "{",
                 f"  if ({n0} + {TN} <= {N}) {_vstore(dtype, at(i), f'acc{i}', TN)}",
                 "  else {"]
        body += [f"    if ({n0} + {j} < {N}) " + _store(dtype, "out0", f"{at(i)} + {j}", _lane(f"acc{i}", j, TN))
                 for j in range(TN)]
        body += ["  }", "}"]
    return body


class QConvGen(_QuantGen):
    """qconv(x [N, C, *S], w [M, C/g, *K] int, w_scale [M], bias [M][, x_scale, x_zero]):
    one work-item per TM output channels x TP consecutive positions of the last spatial
    axis (the float conv's tile). Padding reads as zero after the zero point is removed,
    i.e. as the real value 0, as ONNX's QLinearConv defines it."""
    def kernels(self, node, name, epilogue=None):
        from ..ops.nn import spatial_attrs
        from .kernels.nn import conv_tile_indices, conv_window_loops
        X, W = node.inputs[:2]
        Y = node.outputs[0]
        if Y.type.size == 0:
            return []
        a = node.attrs
        r, g = len(X.shape) - 2, a["group"]
        s, pb, pe, d = spatial_attrs(a, r)
        wshape = tuple(a["w_shape"]) if a.get("tm") else W.shape     # logical [M, C/g, *K]
        S, K, O = list(X.shape[2:]), list(wshape[2:]), list(Y.shape[2:])
        if all(k == 1 for k in K) and all(v == 1 for v in s) and not any(pb + pe):
            S, K, O, r = [_prod(S)], [1], [_prod(O)], 1       # pointwise: one flat axis
            s, pb, pe, d = (1,), (0,), (0,), (1,)
        Nb, C, M = X.shape[0], X.shape[1], wshape[0]
        Cg, Mg = C // g, M // g
        tiled = node.attrs.get("tm", 0)
        TM = tiled or min(16 if s[-1] == 1 and _prod(K) > 1 else 8, Mg)
        TP = _width(O[-1], 4 if current_target().is_gpu else 16 if _prod(K) == 1 else 8)
        it = index_type_for(X.type.size, W.type.size, Y.type.size)
        VT = _vt(TP)
        head, zero, xs = _zero_line(node)
        x, w = Reader("in0", X.dtype, zero), Reader("in1", W.dtype)
        OT, MT = -(-O[-1] // TP), -(-Mg // TM)
        L = r - 1
        body = conv_tile_indices(it, O, TP, TM, Mg) + head
        last_m = f"grp * {Mg} + {Mg - 1}"
        KS = _prod(K)
        for i in range(TM):
            if not tiled:
                body.append(f"const {it} w{i} = min(m0 + {i}, {last_m}) * {Cg * KS};")
            body.append(f"{VT} acc{i} = ({VT})0;")
        loops, ind, row, wk = conv_window_loops(it, C, Cg, S, K, s, pb, d)
        body += loops
        sl, dl, pl, SL = s[-1], d[-1], pb[-1], S[-1]
        inside = x.vector("xr + ix", TP) if sl == 1 else \
            x.gather([f"xr + ix + {j * sl}" for j in range(TP)])
        border = _vec(TP, [f"((ix + {j * sl} >= 0 && ix + {j * sl} < {SL}) ? "
                           f"{x.scalar(f'xr + ix + {j * sl}')} : 0.0f)" for j in range(TP)])
        body += [f"{ind}const {it} xr = {row};",
                 f"{ind}for ({it} kx = 0; kx < {K[-1]}; ++kx) {{",
                 f"{ind}  const {it} ix = ox0 * {sl} - {pl} + kx * {dl};",
                 f"{ind}  {VT} xv;",
                 f"{ind}  if (ix >= 0 && ix + last * {sl} < {SL} && "
                 f"xr + ix + {(TP - 1) * sl} < {X.type.size}) xv = {inside};",
                 f"{ind}  else xv = {border};",
                 f"{ind}  const {it} wk = {wk};"]
        if tiled:      # the tile's TM weights at this offset: one vector load
            body.append(f"{ind}  const {_vt(TM)} wv = {w.vector(f'(({it})get_global_id(1) * {Cg * KS} + wk) * {TM}', TM)};")
            body += [f"{ind}  acc{i} += {_lane('wv', i, TM)} * xv;" for i in range(TM)]
        else:
            body += [f"{ind}  acc{i} += {w.scalar(f'w{i} + wk')} * xv;" for i in range(TM)]
        body.append(f"{ind}}}")
        for i in range(L):
            ind = ind[:-2]
            body.append(f"{ind}}}")
        body.append("}")
        for i in range(TM):
            m = f"min(m0 + {i}, {last_m})"
            body.append(f"acc{i} = acc{i} * (in2[{m}] * {xs}) + in3[{m}];")
        orow = " + ".join([f"o{i} * {_prod(O[i + 1:])}" for i in range(L)] + ["ox0"])
        full = O[-1] % TP == 0
        if epilogue is not None:
            def place(i, j):
                m = f"min(m0 + {i}, {last_m})" if Mg % TM else f"m0 + {i}"
                xj = f"ox0 + {j}" if full else f"min(ox0 + {j}, ({it}){O[-1] - 1})"
                sp = [f"o{k}" for k in range(L)] + [xj]
                if len(sp) != len(Y.shape) - 2:
                    sp = unravel(xj, Y.shape[2:])
                lead = [f"o{k} * {_prod(O[k + 1:])}" for k in range(L)]
                return ["n", m] + sp, f"(n * {M} + {m}) * {_prod(O)} + " + " + ".join(lead + [xj])
            body += _epilogue_tiles(epilogue, TM, TP, place)
        args, out = _args(node, epilogue)
        body += _store_rows(out.dtype, TM, TP, O[-1], full,
                            lambda i: f"(n * {M} + m0 + {i}) * {_prod(O)} + {orow}",
                            lambda i: f"m0 + {i} <= {last_m}" if Mg % TM else "", n0="ox0")
        return [Kernel(name, args, body, global_size=(OT * _prod(O[:-1]), g * MT, Nb),
                       local_size=_local_size(3), index_type=it, node_name=node.name or "",
                       flops=2 * Y.type.size * Cg * KS)]


def qconv_tile(w_shape, attrs) -> int:
    """Output channels per work-item for a qconv whose weights are stored tiled (TM of
    them interleaved per window offset, read with one vector load), or 0: untiled."""
    from ..ops.nn import spatial_attrs
    g = attrs.get("group", 1)
    Mg, KS = w_shape[0] // g, _prod(w_shape[2:])
    s = spatial_attrs(attrs, len(w_shape) - 2)[0]
    big = s[-1] == 1 and KS > 1 and not current_target().is_gpu    # GPUs: fewer VGPRs
    tm = min(16 if big else 8, _width(Mg))
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


class QPanelGen(_QuantGen):
    """qmatmul_panels(Ap int8 [MP, K, 8], Bp f32 [N, NP, K, 16], scale [M], bias [M]):
    one work-item per 8 x 16 tile of C [N, M, P], in float8 accumulator pairs."""
    def kernels(self, node, name, epilogue=None):
        A, Bp = node.inputs[:2]
        Y = node.outputs[0]
        at = node.attrs
        M, P, O = at["m"], at["n"], tuple(at["out_shape"][2:])
        Nb, NP, K = Bp.shape[0], Bp.shape[1], Bp.shape[2]
        it = index_type_for(A.type.size, Bp.type.size, Y.type.size)
        body = [f"const {it} pn = ({it})get_global_id(0);",
                f"const {it} pm = ({it})get_global_id(1);",
                f"const {it} n = ({it})get_global_id(2);",
                f"const {it} m0 = pm * {QROWS};",
                f"const {it} n0 = pn * 16;",
                f"__global const float* bq = in1 + (n * {NP} + pn) * {K * 16};",
                f"__global const char* aq = in0 + pm * {K * QROWS};"]
        body += [f"float8 c{i}_0 = (float8)0, c{i}_1 = (float8)0;" for i in range(QROWS)]
        body += [f"for ({it} k = 0; k < {K}; ++k) {{",
                 "  const float8 b0 = vload8(0, bq + k * 16), b1 = vload8(1, bq + k * 16);",
                 "  const float8 a = convert_float8(vload8(k, aq));"]
        body += [f"  c{i}_0 += a.s{i} * b0; c{i}_1 += a.s{i} * b1;" for i in range(QROWS)]
        body.append("}")
        for i in range(QROWS):
            m = f"min(m0 + {i}, ({it}){M - 1})"
            body += [f"{{ const float s = in2[{m}], t = in3[{m}];",
                     f"  c{i}_0 = c{i}_0 * s + t; c{i}_1 = c{i}_1 * s + t; }}"]
        if epilogue is not None:
            body += _epilogue_pairs(epilogue, QROWS, M, P, it, lambda m, p: (
                ["n", m] + (unravel(p, O) if len(O) > 1 else [p] * len(O)), f"(n * {M} + {m}) * {P} + {p}"))
        args, out = _args(node, epilogue)
        body += _store_pairs(out.dtype, QROWS, M, P, lambda i: f"(n * {M} + m0 + {i}) * {P} + n0")
        return [Kernel(name, args, body, global_size=(NP, -(-M // QROWS), Nb), local_size=(1, 1, 1),
                       index_type=it, node_name=node.name or "", flops=2 * Nb * M * P * K)]


def _epilogue_pairs(epilogue, TM, M, N, it, place) -> list[str]:
    """The epilogue on the panel kernels' accumulator pairs c{i}_0, c{i}_1 (rows m0 + i of
    M, 16 columns n0.. of N); `place(m, c)` gives row m, column c's output coordinates and
    flat index."""
    body = []
    for i in range(TM):
        m = f"min(m0 + {i}, ({it}){M - 1})"
        for h in range(2):
            for j in range(8):
                coords, flat = place(m, f"min(n0 + {8 * h + j}, ({it}){N - 1})")
                lines, v = epilogue(f"c{i}_{h}.s{j}", coords, flat)
                body += lines + [f"c{i}_{h}.s{j} = {v};"]
    return body


def _store_pairs(dtype, TM, M, N, at) -> list[str]:
    """Stores of the accumulator pairs c{i}_0, c{i}_1 (rows m0 + i < M, 16 columns n0.. < N);
    `at(i)` is row i's first element."""
    body = []
    for i in range(TM):
        row = at(i)
        if N % 16 == 0:
            lines = [_vstore(dtype, row, f"c{i}_0", 8), _vstore(dtype, f"{row} + 8", f"c{i}_1", 8)]
        else:
            lines = [f"if (n0 + 16 <= {N}) {{ {_vstore(dtype, row, f'c{i}_0', 8)} "
                     f"{_vstore(dtype, f'{row} + 8', f'c{i}_1', 8)} }}", "else {"]
            lines += [f"  if (n0 + {8 * h + j} < {N}) " +
                      _store(dtype, "out0", f"{row} + {8 * h + j}", f"c{i}_{h}.s{j}")
                      for h in range(2) for j in range(8)]
            lines.append("}")
        body += ([f"if (m0 + {i} < {M}) {{"] + ["  " + ln for ln in lines] + ["}"]) if M % TM else lines
    return body


MIN_PANEL_FLOPS = 1 << 22


def lower_quant_for_cpu(graph):
    """CPU targets: qconvs (group 1, big enough) onto int8 row panels times the float panel
    GEMM's B panels (im2col_panels, or pack_panels of a pointwise conv's image); int8
    activations are dequantized to float32 first. Weight-only qmatmuls (float x) onto int8
    column panels (qmatmul_bpanels). Runs in lgc.backends.program.lower, after lower_for_cpu;
    LGC_CPU_PANELS=0 turns it off with the float rewrite."""
    import os

    from ..passes.dce import dce
    from ..passes.rewrite import Rewriter
    if current_target().is_gpu or os.environ.get("LGC_CPU_PANELS", "1") == "0" or \
            not any(n.op in ("qconv", "qmatmul") for n in graph.nodes):
        return graph
    consts = graph.constants()
    rw = Rewriter(graph)
    for node in graph.nodes:
        if not (node.op == "qconv" and _panel_qconv(rw, node, consts) or
                node.op == "qmatmul" and _panel_qmatmul(rw, node, consts)):
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
    M, KK, P = shape[0], _prod(shape[1:]), _prod(Y.shape[2:])
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


class QBPanelGen(_QuantGen):
    """qmatmul_bpanels(x f32 [..., K], Bp int8 [ceil(N/16), K, 16], scale [N], bias [N]): a
    weight-only qmatmul on CPU targets: one work-item per 4 rows of x times one int8 panel
    (one char16 per k, converted in registers), accumulators in float8 pairs."""
    def kernels(self, node, name, epilogue=None):
        X, Bp = node.inputs[:2]
        Y = node.outputs[0]
        N, K = node.attrs["n"], X.shape[-1]
        R, lead = _prod(X.shape[:-1]), X.shape[:-1]
        TM = min(4, R)
        it = index_type_for(X.type.size, Bp.type.size, Y.type.size)
        body = [f"const {it} pn = ({it})get_global_id(0);",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};",
                f"const {it} n0 = pn * 16;",
                f"__global const char* bq = in1 + pn * {K * 16};"]
        body += [f"__global const float* a{i} = in0 + min(m0 + {i}, ({it}){R - 1}) * {K};" for i in range(TM)]
        body += [f"float8 c{i}_0 = (float8)0, c{i}_1 = (float8)0;" for i in range(TM)]
        body += [f"for ({it} k = 0; k < {K}; ++k) {{",
                 "  const float16 b = convert_float16(vload16(k, bq));"]
        body += [f"  {{ const float a = a{i}[k]; c{i}_0 += a * b.lo; c{i}_1 += a * b.hi; }}" for i in range(TM)]
        body.append("}")
        cols = [f"min(n0 + {j}, ({it}){N - 1})" for j in range(16)]
        body += [f"const float8 s0 = (float8)({', '.join(f'in2[{c}]' for c in cols[:8])}), "
                 f"s1 = (float8)({', '.join(f'in2[{c}]' for c in cols[8:])});",
                 f"const float8 t0 = (float8)({', '.join(f'in3[{c}]' for c in cols[:8])}), "
                 f"t1 = (float8)({', '.join(f'in3[{c}]' for c in cols[8:])});"]
        body += [f"c{i}_0 = c{i}_0 * s0 + t0; c{i}_1 = c{i}_1 * s1 + t1;" for i in range(TM)]
        if epilogue is not None:
            body += _epilogue_pairs(epilogue, TM, R, N, it, lambda m, c: (
                (unravel(m, lead) if lead else []) + [c], f"{m} * {N} + {c}"))
        args, out = _args(node, epilogue)
        body += _store_pairs(out.dtype, TM, R, N, lambda i: f"(m0 + {i}) * {N} + n0")
        return [Kernel(name, args, body, global_size=(-(-N // 16), -(-R // TM)), local_size=(1, 1),
                       index_type=it, node_name=node.name or "", flops=2 * R * N * K)]


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
LOWERINGS: dict = {"qmatmul_panels": QPanelGen(), "qmatmul_bpanels": QBPanelGen()}
