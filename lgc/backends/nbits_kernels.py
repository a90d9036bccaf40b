"""Kernels for 4-bit weights (lgc.ops.quant's qmatmul_nbits and dequantize_nbits), reading
onnxruntime's MatMulNBits layout as it is stored (gemm.readers.NBitsColumns): no repacking.

GCN (gfx803) and PoCL have no packed integer dot product (docs/HARDWARE.md), so every kernel
unpacks nibbles with masks and shifts, scales them in registers (w = q * s + o, o = -zero *
s, once per block and column) and accumulates in float32.

  CPU     one work-item per TM x TN tile of C (gemm.cpu_tile's tile and store): each step
          reads 16 bytes (32 k) of each column as a uchar16 and 32 x of each row split into
          even and odd k, so the low and high nibbles need no shuffle. One or two rows (decode)
          sum levels and apply scale and zero point once per block; more rows scale the levels
          as they are unpacked (nbits_tile). M = 1 reads every weight byte once.
  GPU     at most GEMV_ROWS rows: a GEMV per row, a work-group of one wave per GEMV_COLUMNS
          columns, its work-items striding along K in 4-byte words (coalesced) and meeting in
          a tree reduction; more rows: the local-memory GEMM (gemm.gpu_local) with the reader
          dequantizing as it stages B.
"""
from __future__ import annotations

from ..ops.quant import NBITS_PANEL, pack_nbits_panels
from .gemm.cpu_tile import Tile, matmul_kernel
from .gemm.problem import Matmul
from .gemm.readers import NBitsColumns
from .gpu_gemm import GEMV_COLUMNS, GEMV_GROUP, GEMV_ROWS, gemv_reduce_store, matmul_kernels
from .kernel import Kernel, Template, index_type_for, template_args
from .target import current_target
from .templates import Pointwise

SCALED_ROWS = 3    # CPU tiles of this many rows scale the levels in registers (see cpu_kernel)
GPU_BYTES = 4      # bytes of a column per GPU GEMV step: one 32-bit word, 8 k


def nbits_tile(M: int, N: int) -> Tile:
    """The CPU tile: one or two rows by four columns, summing levels (each (row, column) holds
    two float16 sums while it runs); from three rows on, 4 x 3 scaling the levels in
    registers (12 sums, x's halves and the unpacked bytes fit AVX-512's 32 registers; on
    a shared 2-core Zen 5 it took 21 and 85 ms for 16 and 64 rows x 4096 x 4096, 2 x 4
    summing levels 36 and 136)."""
    if M <= 2:
        return Tile(rows=M, width=1, vectors=max(1, min(4, N)))
    return Tile(rows=min(4, M), width=1, vectors=max(1, min(3, N)))


class NBitsMatmulGen(Template):
    """qmatmul_nbits(x [..., K], b, scales[, zero_points])."""
    stores_any_dtype = True

    def kernels(self, node, name, epilogue=None):
        if node.outputs[0].type.size == 0:
            return []
        target = current_target()
        if not target.is_gpu:
            return [cpu_kernel(node, name, epilogue)]
        if Matmul.of(node).M <= GEMV_ROWS:
            return [gpu_gemv_kernel(node, name, epilogue)]
        return matmul_kernels(node, name, target, epilogue=epilogue)


def _index_type(node, epilogue) -> str:
    out = epilogue.output if epilogue is not None else node.outputs[0]
    return index_type_for(*(v.type.size for v in node.inputs), out.type.size)


def cpu_kernel(node, name, epilogue=None) -> Kernel:
    """Within a block, each (row i, column j) sums x * level in p{i}_{j} and each row its x in
    sx{i}; at the block's end d{i}_{j} += s * p + o * sx (o = -zero * s), so the scale and
    zero point cost two operations per block, not per weight. A step reads W bytes of each
    column (2W k) and 2W x of each row, split into even and odd k."""
    mm = Matmul.of(node)
    M, K, N = mm.M, mm.K, mm.N
    it = _index_type(node, epilogue)
    r = NBitsColumns.of(node, it)
    t = nbits_tile(M, N)
    TM, TN, W = t.rows, t.cols, min(16, r.block // 2)
    scaled = TM >= SCALED_ROWS
    FW = f"float{W}"
    tile = [(i, j) for i in range(TM) for j in range(TN)]
    body = [f"const {it} xr{i} = min(m0 + {i}, ({it}){M - 1}) * {K};" for i in range(TM)]
    body += r.columns([f"min(n0 + {j}, ({it}){N - 1})" for j in range(TN)])
    body += [f"{FW} d{i}_{j} = ({FW})0;" for i, j in tile]

    def x_halves(i: int) -> list[str]:
        at = f"in0 + xr{i} + kk"
        if W == 8:
            return [f"const float16 xv{i} = vload16(0, {at});",
                    f"const float8 xe{i} = xv{i}.even, xo{i} = xv{i}.odd;"]
        return [f"const float16 xa{i} = vload16(0, {at}), xb{i} = vload16(1, {at});",
                f"const float16 xe{i} = (float16)(xa{i}.even, xb{i}.even), xo{i} = (float16)(xa{i}.odd, xb{i}.odd);"]

    def block(g: str, k0: str, size: int) -> list[str]:
        """One block's k (size of them from k0): whole steps of 2W, then single k."""
        acc = "d" if scaled else "p"
        lines = r_dequant(g) if scaled else \
            [f"{FW} p{i}_{j} = ({FW})0;" for i, j in tile] + [f"{FW} sx{i} = ({FW})0;" for i in range(TM)]
        steps = size // (2 * W)
        if steps:
            step = [f"const {it} kk = {k0} + c * {2 * W};"]
            for i in range(TM):
                step += x_halves(i) + ([] if scaled else [f"sx{i} += xe{i} + xo{i};"])
            for j in range(TN):
                ls, lo, hi = r.halves(j, "kk / 2", W, scaled=scaled)
                step += ls + [f"const {FW} lo{j} = {lo}, hi{j} = {hi};"]
            step += [f"{acc}{i}_{j} += xe{i} * lo{j} + xo{i} * hi{j};" for i, j in tile]
            lines += [f"for ({it} c = 0; c < {steps}; ++c) {{"] + ["  " + ln for ln in step] + ["}"]
        if size % (2 * W):          # the k past the last whole step: level and x one at a time
            one = [f"const {it} kk = {k0} + c;"] + [f"const float x{i} = in0[xr{i} + kk];" for i in range(TM)]
            one += [] if scaled else [f"sx{i}.s0 += x{i};" for i in range(TM)]
            one += [f"{acc}{i}_{j}.s0 += x{i} * {r.one(j, 'kk', scaled=scaled)};" for i, j in tile]
            lines += [f"for ({it} c = {steps * 2 * W}; c < {size}; ++c) {{"] + ["  " + ln for ln in one] + ["}"]
        if not scaled:
            lines += r_dequant(g) + [f"d{i}_{j} += s{j} * p{i}_{j} + o{j} * sx{i};" for i, j in tile]
        return ["{"] + ["  " + ln for ln in lines] + ["}"]

    def r_dequant(g: str) -> list[str]:
        return [ln for j in range(TN) for ln in r.dequant(j, g)]

    full, rest = K // r.block, K % r.block
    if full:
        body += [f"for ({it} g = 0; g < {full}; ++g) {{"]
        body += ["  " + ln for ln in block("g", f"g * {r.block}", r.block)] + ["}"]
    if rest:
        body += block(str(full), str(full * r.block), rest)
    for i, j in tile:
        body += _lane_sum(f"d{i}_{j}", W, t.acc(i, j))
    return matmul_kernel(node, name, mm, t, it, body, epilogue)


def _lane_sum(v: str, w: int, out: str) -> list[str]:
    """Lines declaring float `out`, the sum of float{w} v's lanes, by halves."""
    lines = []
    while w > 1:
        w //= 2
        nxt = f"{v}_{w}"
        lines.append(f"const {'float' if w == 1 else f'float{w}'} {nxt} = {v}.lo + {v}.hi;")
        v = nxt
    return lines + [f"float {out} = {v};"]


def gpu_gemv_kernel(node, name, epilogue=None) -> Kernel:
    """Each work-group: one row of x and GEMV_COLUMNS columns of W; its work-items take
    4-byte words of the columns (8 k) in turn, the k past the last whole word singly."""
    mm = Matmul.of(node)
    M, K, N = mm.M, mm.K, mm.N
    Y = epilogue.output if epilogue is not None else node.outputs[0]
    it = _index_type(node, epilogue)
    r = NBitsColumns.of(node, it)
    G, W, B = GEMV_GROUP, GEMV_COLUMNS, GPU_BYTES
    words = K // (2 * B)
    body = [f"__local float red[{G * W}];",
            f"const {it} t = ({it})get_local_id(0), n0 = ({it})get_group_id(0) * {W};",
            f"const {it} z = ({it})get_group_id(2), row = z, offa = z * {K};"]
    body += r.columns([f"min(n0 + {j}, ({it}){N - 1})" for j in range(W)])
    body += [f"float s{j}_ = 0.0f;" for j in range(W)]
    step = [f"const {it} kk = w * {2 * B}, g = kk / {r.block};",
            f"const float{2 * B} xv = vload{2 * B}(0, in0 + offa + kk);",
            f"const float{B} xe = xv.even, xo = xv.odd;"]
    for j in range(W):
        ls, lo, hi = r.halves(j, "kk / 2", B)
        step += r.dequant(j, "g") + ls + [f"s{j}_ += dot(xe, {lo}) + dot(xo, {hi});"]
    body += [f"for ({it} w = t; w < {words}; w += {G}) {{"] + ["  " + ln for ln in step] + ["}"]
    if K % (2 * B):
        one = [f"const {it} g = kk / {r.block};"]
        for j in range(W):
            one += r.dequant(j, "g") + [f"s{j}_ += in0[offa + kk] * {r.one(j, 'kk')};"]
        body += [f"for ({it} kk = {words * 2 * B} + t; kk < {K}; kk += {G}) {{"] + ["  " + ln for ln in one] + ["}"]
    body += [f"const float s{j} = s{j}_;" for j in range(W)]
    body += gemv_reduce_store(epilogue, Y, N, it, lambda col: mm.coords("b", "row", col))
    return Kernel(name, template_args(node.inputs, epilogue, Y), body,
                  global_size=(-(-N // W) * G, 1, M), local_size=(G, 1, 1), index_type=it,
                  node_name=node.name or "", flops=2 * M * N * K)


def _dequantize_body(em) -> None:
    """One work-item per weight (k, n): its nibble less its block's zero point, times the
    block's scale."""
    r = NBitsColumns.of(em.node, em.index_type, first=0)
    lines, v = r.at("c0", "c1")
    em.emit(*lines)
    em.store(v)


# ---- CPU: the weights repacked in column panels of 16 (lgc.ops.quant.pack_nbits_panels) -------

PANEL_ROWS = 4      # rows of x per work-item from SCALED_ROWS on (see panel_tile)
PANEL_UNROLL = 2    # k pairs per step of a summing tile: 2 * 2 accumulators per row


def panel_tile(M: int) -> Tile:
    """One or two rows sum levels (scale and zero point once per block); more rows scale
    the levels as they are unpacked, shared by PANEL_ROWS rows."""
    return Tile(rows=min(M, 2 if M < SCALED_ROWS else PANEL_ROWS), width=NBITS_PANEL)


def lower_nbits_panels(rw, node, consts) -> bool:
    """qmatmul_nbits with constant weights and K a whole number of blocks ->
    qmatmul_nbits_panels over the weights repacked once, here (CPU targets)."""
    K, bs = node.attrs["k"], node.attrs["block_size"]
    x, *w = (rw.get(v) for v in node.inputs)
    Y = node.outputs[0]
    if K % bs or x.dtype.name != "f32" or Y.type.size == 0 or not all(v in consts for v in w):
        return False
    packed = pack_nbits_panels(consts[w[0]], consts[w[1]], consts[w[2]] if len(w) > 2 else None, bs)
    y = rw.op("qmatmul_nbits_panels", [x] + [rw.const(a) for a in packed],
              {"k": K, "block_size": bs, "n": Y.shape[-1]}, name=node.name)
    rw.replace(Y, y)
    return True


class NBitsPanelsGen(Template):
    """qmatmul_nbits_panels(x [..., K], bytes, scales, zero points): one work-item per
    panel of 16 columns and tile of rows, every lane a column; x broadcast per k."""
    stores_any_dtype = True

    def kernels(self, node, name, epilogue=None):
        if node.outputs[0].type.size == 0:
            return []
        return [panel_kernel(node, name, epilogue)]


def panel_kernel(node, name, epilogue=None) -> Kernel:
    """Per block: its 16 scales s and offsets o = -zero * s as vectors. Summing tiles add x *
    level in 2 * PANEL_UNROLL accumulators a{i}_{u} per row and x's block sum in sx{i}, then
    c += s * sum(a) + o * sx; scaling tiles unpack each k pair to lo, hi = level * s + o and
    add x * lo + x' * hi into every row. The panel's bytes are read once, in order."""
    mm = Matmul.of(node)
    M, K = mm.M, mm.K
    bs = node.attrs["block_size"]
    G, half = K // bs, bs // 2
    it = _index_type(node, epilogue)
    t = panel_tile(M)
    TM, P, V = t.rows, NBITS_PANEL, t.vt
    scaled = TM >= SCALED_ROWS
    U = 1 if scaled else PANEL_UNROLL
    rows = range(TM)
    body = [f"const {it} xr{i} = min(m0 + {i}, ({it}){M - 1}) * {K};" for i in rows]
    body += [f"__global const uchar* bq = in1 + pn * {G * half * P};",
             f"__global const float* sq = in2 + pn * {G * P};",
             f"__global const uchar* zq = in3 + pn * {G * P};"]
    body += [f"{V} {t.acc(i)} = ({V})0;" for i in rows]
    block = [f"const {V} s = vload16(0, sq + g * {P}), o = -convert_{V}(vload16(0, zq + g * {P})) * s;"]
    if not scaled:
        for i in rows:
            x = " + ".join(f"vload16({j}, in0 + xr{i} + g * {bs})" for j in range(bs // P))
            block += [f"const {V} xs{i} = {x};"] + _lane_sum(f"xs{i}", P, f"sx{i}")
            block += [f"{V} " + ", ".join(f"a{i}_{u} = ({V})0" for u in range(2 * U)) + ";"]
    step = [f"const {it} kb = g * {half} + c * {U};"]
    for u in range(U):
        k = f"2 * (kb + {u})" if u else "2 * kb"
        lo, hi = f"convert_{V}(q{u} & 15)", f"convert_{V}(q{u} >> 4)"
        step += [f"const int16 q{u} = convert_int16(vload16(0, bq + (kb + {u}) * {P}));"]
        if scaled:
            step += [f"const {V} lo{u} = {lo} * s + o, hi{u} = {hi} * s + o;"]
            step += [f"{t.acc(i)} += in0[xr{i} + {k}] * lo{u} + in0[xr{i} + {k} + 1] * hi{u};" for i in rows]
        else:
            step += [f"const {V} lo{u} = {lo}, hi{u} = {hi};"]
            step += [f"a{i}_{2 * u} += in0[xr{i} + {k}] * lo{u}; a{i}_{2 * u + 1} += in0[xr{i} + {k} + 1] * hi{u};"
                     for i in rows]
    block += [f"for ({it} c = 0; c < {half // U}; ++c) {{"] + ["  " + ln for ln in step] + ["}"]
    if not scaled:
        block += [f"{t.acc(i)} += s * (" + " + ".join(f"a{i}_{u}" for u in range(2 * U)) + f") + o * sx{i};"
                  for i in rows]
    body += [f"for ({it} g = 0; g < {G}; ++g) {{"] + ["  " + ln for ln in block] + ["}"]
    return matmul_kernel(node, name, mm, t, it, body, epilogue, rows_first=M > TM)


LOWERINGS: dict = {"qmatmul_nbits": NBitsMatmulGen(), "dequantize_nbits": Pointwise(_dequantize_body),
                   "qmatmul_nbits_panels": NBitsPanelsGen()}
