"""Packed-panel GEMM for CPU devices (PoCL): the kernel and the packing ops it reads.

What made SGEMM fast on PoCL (DESIGN.md, "Facts about PoCL"): B packed into column panels
of 16 ([..., ceil(N/16), K, 16], zero-padded past N), so that one work-item streams one
contiguous panel while it holds an 8 x 16 tile of C in vector accumulators, work-group size
1, no local memory, `c += a * b` rather than `fma()`. Reading B unpacked (row stride N) ran
at a fifth of the speed at 2048^3 (44 against 211 GFLOP/s). Measured here (PoCL 3.1, AVX-512)
and unlike the float8 recipe of DESIGN.md: one float16 accumulator per tile row beat two
float8, and 8-row tiles beat 4-row ones. A is read row by row (8 scalar streams), or from row
panels of 4 ([K, 4] each, two per tile) when it is a constant packed once at compile time
(conv weights) or tall enough for a runtime pack to pay (cpu_lowering.MIN_M_PACKED).

Ops (made only by lgc.backends.cpu_lowering, after differentiation and batching; their
semantics and NumPy references are in lgc.ops.lowered):
  pack_panels(B)        B [..., K, N] (trans: [..., N, K]) -> [..., ceil(N/16), K, 16]
  im2col_panels(X)      X [N, C, *S] -> the conv's patches as B panels [N, ceil(P/16), C*KS, 16]
  pack_rows(A)          A [..., M, K] -> row panels [..., ceil(M/8)*2, K, 4]
  matmul_panels(A, Bp[, bias])  C = A @ B (+ bias per row), stored in shape `out_shape`
Constant operands are packed by the NumPy references at compile time (weights: once).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops.linalg import prod
from ..ops.lowered import (PACKED_TILE, PANEL, ROWS, columns_start, conv_geometry, matmul_panels_dims,
                           panels)
from .fused import unravel
from .gemm.cpu_tile import Tile, accumulate, matmul_kernel
from .gemm.loads import Load
from .gemm.problem import Affine, Matmul
from .gemm.readers import Columns, Panels, RowPanels, Rows
from .gemm.store import NO_UNROLL
from .kernel import Arg, Kernel, Template, index_type_for
from .tuning import PanelTile

UNPACKED_TILE = 8   # rows per C tile when A is read row by row (8 beat 4 by 1.2-1.6x)
ACC_WIDTHS = (4, 8, 16)   # lanes per accumulator a tile may take (one SSE, AVX2, AVX-512 register)
ACC = 16        # accumulator width: one float16 per tile row. On PoCL 3.1 (Debian) with
                # AVX-512 it beat two float8 by 1.5-2x at 1024^3 and 2048^3 (/tmp proto, same run)
QACC = 8        # the int8 panel GEMMs: two float8 per row beat one float16 by 1.2x (weight-only
                # qconv, 128->128 3x3 @28: 1.87 against 2.27 ms; 1024->256 1x1 @14: 0.86 against 1.04)


def _lanes_loop(it, cond, read) -> list[str]:
    """Statements storing the panel row at dst: lane j is `read` where `cond` holds, else 0,
    with q = p * 16 + j. A loop, not 16 unrolled lanes: PoCL compiles every kernel again at
    its first launch, and that is where the time of these cold paths went."""
    return [f"float t_[{PANEL}];", NO_UNROLL,
            f"for ({it} j = 0; j < {PANEL}; ++j) {{ const {it} q = p * {PANEL} + j; "
            f"t_[j] = ({cond}) ? {read} : 0.0f; }}",
            "vstore16(vload16(0, t_), 0, dst);"]


PACK_LOCAL = 64     # work-items per group along k (a fixed size: one PoCL specialisation)


# ---- pack_panels ----------------------------------------------------------------------------

class PackGen:
    """One work-item per panel row: 16 elements of B stored with one vstore16 (a vload16
    from a row of B when the panel lies inside it)."""

    def kernels(self, node, name):
        X, Y = node.inputs[0], node.outputs[0]
        trans = node.attrs["trans"]
        x = X.shape
        K, N = (x[-1], x[-2]) if trans else (x[-2], x[-1])
        NP, nb = panels(N), prod(x[:-2])
        it = index_type_for(X.type.size, Y.type.size)
        L = PACK_LOCAL
        # sizes are kernel arguments (Kernel.params) and the work-group size is fixed (rows
        # of k, rounded up), so every pack of the same kind is one kernel for PoCL to compile
        params = (("K_", K), ("N_", N), ("NP_", NP))
        body = [f"const {it} k = ({it})get_global_id(0);",
                f"const {it} p = ({it})get_global_id(1);",
                f"const {it} b = ({it})get_global_id(2);"]
        if L:
            body.append("if (k >= K_) return;")
        body += ["__global const float* src = in0 + b * K_ * N_;",
                 f"__global float* dst = out0 + ((b * NP_ + p) * K_ + k) * {PANEL};"]
        if trans:
            body += _lanes_loop(it, "q < N_", "src[q * K_ + k]")
        else:
            full = "vstore16(vload16(0, src + k * N_ + p * 16), 0, dst);"
            body += [f"if (p * 16 + 16 <= N_) {full}", "else {"]
            body += ["  " + ln for ln in _lanes_loop(it, "q < N_", "src[k * N_ + q]")] + ["}"]
        return [Kernel(name, [Arg("in0", X), Arg("out0", Y, writable=True)], body,
                       global_size=(-(-K // L) * L if L else K, NP, nb),
                       local_size=(L, 1, 1) if L else None, index_type=it,
                       node_name=node.name or "", params=params)]


# ---- im2col_panels --------------------------------------------------------------------------

STRIDE2_VLOAD = True    # the stride-2 fast path of im2col_panels (off: for A/B timing)


class Im2colGen:
    """One work-item per panel row: the 16 output positions of panel p read at one window
    offset k of one channel, stored with one vstore16. The window offset is decoded once per
    work-item; when the 16 positions lie in one output row and inside the image, with stride
    1 along it, they are one vload16."""

    def kernels(self, node, name):
        X, Y = node.inputs[0], node.outputs[0]
        at = node.attrs
        x, ks = X.shape, tuple(at["kernel"])
        s, pb, d, out = conv_geometry(x, ks, at)
        r, C, P, KS, S = len(ks), x[1], prod(out), prod(ks), x[2:]
        NP = panels(P)
        it = index_type_for(X.type.size, Y.type.size)
        body = [f"const {it} k = ({it})get_global_id(0);",
                f"const {it} p = ({it})get_global_id(1);",
                f"const {it} n = ({it})get_global_id(2);",
                f"__global const float* src = in0 + (n * {C} + k / {KS}) * {prod(S)};",
                f"__global float* dst = out0 + ((n * {NP} + p) * {C * KS} + k) * {PANEL};"]
        kk = unravel(f"k % {KS}", ks)
        body += [f"const {it} kk{i} = {kk[i]};" for i in range(r)]

        def lane(pos):
            """(condition, index) of output position `pos` at window offset kk."""
            oo = unravel(pos, out)
            conds, idx = [f"{pos} < {P}"], []
            for i in range(r):
                e = f"({oo[i]} * {s[i]} - {pb[i]} + kk{i} * {d[i]})"
                if pb[i] or ks[i] > 1 or (out[i] - 1) * s[i] >= S[i]:
                    conds.append(f"{e} >= 0 && {e} < {S[i]}")
                idx.append(f"clamp({e}, ({it})0, ({it}){S[i] - 1})")
            flat = " + ".join(f"{idx[i]} * {prod(S[i + 1:])}" for i in range(r))
            return " && ".join(conds), flat

        lanes = []      # unrolled: as a loop (cheaper to compile) it ran 2.4x slower here
        for j in range(PANEL):
            cond, flat = lane(f"(p * 16 + {j})")
            lanes.append(f"(({cond}) ? src[{flat}] : 0.0f)")
        slow = f"vstore16((float16)({', '.join(lanes)}), 0, dst);"
        OW = out[-1]
        if s[-1] == 1 and OW >= PANEL:
            # the fast case: 16 positions in one output row, every read inside the image
            row_cond, row_flat = lane("(p * 16)")
            ix0 = f"(p * 16) % {OW} - {pb[-1]} + kk{r - 1} * {d[-1]}"
            body += [f"const {it} x0 = {ix0};",
                     f"if ((p * 16) % {OW} + 16 <= {OW} && x0 >= 0 && x0 + 16 <= {S[-1]} && "
                     f"{row_cond}) vstore16(vload16(0, src + {row_flat}), 0, dst);",
                     f"else {slow}"]
        elif s[-1] == 2 and OW >= PANEL and STRIDE2_VLOAD:
            # stride 2 (stems): the 16 positions are the even lanes of 31 inputs, two vload16s
            # (when they lie in one output row: all panels where OW is a multiple of 16)
            row_cond, row_flat = lane("(p * 16)")
            ix0 = f"(p * 16) % {OW} * 2 - {pb[-1]} + kk{r - 1} * {d[-1]}"
            one_row = f"(p * 16) % {OW} + 16 <= {OW} && " if OW % PANEL else ""
            body += [f"const {it} x0 = {ix0};",
                     f"if ({one_row}x0 >= 0 && x0 + 31 <= {S[-1]} && {row_cond}) {{",
                     f"  __global const float* q = src + {row_flat};",
                     "  vstore16((float16)(vload16(0, q).even, vload16(0, q + 15).odd), 0, dst);",
                     f"}} else {slow}"]
        else:
            body.append(slow)
        return [Kernel(name, [Arg("in0", X), Arg("out0", Y, writable=True)], body,
                       global_size=(C * KS, NP, x[0]), local_size=None, index_type=it,
                       node_name=node.name or "")]


# ---- matmul_panels --------------------------------------------------------------------------

class PackRowsGen:
    """One work-item per (k, row panel): 4 rows of A at column k, stored as one float4."""

    def kernels(self, node, name):
        X, Y = node.inputs[0], node.outputs[0]
        M, K = X.shape[-2:]
        Q, nb = Y.shape[-3], prod(X.shape[:-2])
        it = index_type_for(X.type.size, Y.type.size)
        lanes = [f"(q * 4 + {i} < {M} ? src[min(q * 4 + {i}, ({it}){M - 1}) * {K} + k] : 0.0f)"
                 for i in range(ROWS)]
        body = [f"const {it} k = ({it})get_global_id(0);",
                f"const {it} q = ({it})get_global_id(1);",
                f"const {it} b = ({it})get_global_id(2);",
                f"__global const float* src = in0 + b * {M * K};",
                f"vstore4((float4)({', '.join(lanes)}), 0, out0 + ((b * {Q} + q) * {K} + k) * 4);"]
        return [Kernel(name, [Arg("in0", X), Arg("out0", Y, writable=True)], body,
                       global_size=(K, Q, nb), local_size=None, index_type=it,
                       node_name=node.name or "")]


def panel_tile(M: int, N: int, K: int, batch: int, packed: bool) -> PanelTile:
    """The C tile of this GEMM: `lgc tune`'s winner or the shipped table of the CPU's ISA
    class (lgc.backends.tuning), each field kept only where the layout can take it, else
    8 x 16 in one float16 per row. A tile is at most 16 rows (and at most M); one of whole
    row panels of packed A (a multiple of 4 rows) lies inside A's padding to PACKED_TILE."""
    from .tuning import panel_tile as stored
    found = stored(M, N, K, batch, packed)

    def field(name, ok, default):
        try:
            v = int(found.get(name, default))
        except (TypeError, ValueError):
            return default
        return v if ok(v) else default
    padded = panels(M, PACKED_TILE) * PACKED_TILE
    rows = field("rows", lambda r: 0 < r <= 16 and (not packed or r % ROWS or padded % r == 0),
                 PACKED_TILE if packed else UNPACKED_TILE)
    rows = rows if packed and rows % ROWS == 0 else min(rows, M)
    acc = field("acc", lambda a: a in ACC_WIDTHS, ACC)
    npan = field("panels", lambda p: p in (1, 2, 4), 1)
    return PanelTile(rows, acc, min(npan, panels(N)), field("order", lambda o: o in (0, 1), 0))


def tile_rows(M: int, N: int, K: int, batch: int, packed: bool) -> int:
    """Rows per C tile (panel_tile's)."""
    return panel_tile(M, N, K, batch, packed).rows


class PanelGemmGen(Template):
    """The panel GEMMs on the CPU register-tile schedule (gemm.cpu_tile): one work-item per
    TM x 16 tile of C over one B panel (see the module docstring). matmul_panels reads A by
    rows or from float row panels; the int8 forms (quant_kernels: weight-only qconv and
    qmatmul) read int8 row panels times float B panels, or float rows times int8 panels, and
    apply the weights' scales and the bias to the finished tile."""

    def kernels(self, node, name, epilogue=None):
        A, Bp = node.inputs[:2]
        g = PanelGemm.of(node)
        mm, t = g.mm, Tile(g.TM, g.acc, g.panels * PANEL // g.acc)
        it = index_type_for(A.type.size, Bp.type.size, node.outputs[0].type.size)
        a_load, b_load = Load("in0", A.dtype, "float"), Load("in1", Bp.dtype, "float")
        if g.a_panel:
            a = RowPanels(a_load, g.a_panel, "K_", "offa", "M_ - 1")
        else:
            a = Rows(a_load, "K_", "offa", "M_ - 1", pointers=True)
        bias = node.op == "matmul_panels" and len(node.inputs) == 3
        bias = (lambda i: f"in2[min(m0 + {i}, M_ - 1)]") if bias else None
        if g.b_rows:     # B as it stands: row k's columns n0.. are one vector load
            b = Columns(b_load, "K_", "N_", "offb", it=it)
        else:
            b = Panels(b_load, "K_", "offb", it, "((N_ + 15) / 16)")
        reduction = accumulate(t, a, b, bias)
        # Sizes are kernel arguments (Kernel.params), so layers that differ only in M, N, K
        # share one kernel; guards for ragged tiles are always there (cheap at run time).
        SB = mm.K * mm.N if g.b_rows else panels(mm.N) * mm.K * PANEL
        params = (("M_", mm.M), ("N_", mm.N), ("K_", mm.K), ("SA_", g.SA), ("SB_", SB))
        return [matmul_kernel(node, name, mm, t, it, reduction, epilogue, g.affine, params, g.rows_first)]


@dataclass(frozen=True)
class PanelGemm:
    """The GEMM a panel op describes (`mm`: sizes, batch, the output axes C's rows and
    columns span), rows per tile, A's layout (a_panel: rows per row panel, 0: by rows; SA:
    its elements per batch entry) and the int8 forms' scales and bias."""
    mm: Matmul
    TM: int
    a_panel: int
    SA: int
    affine: Affine | None = None
    acc: int = QACC        # lanes per accumulator
    panels: int = 1        # B panels per tile
    rows_first: bool = False   # launch order: tiles of one column block consecutive
    b_rows: bool = False       # B row-major [K, N] as it stands (matmul_panels' b_rows)

    @staticmethod
    def of(node) -> "PanelGemm":
        A, Bp = node.inputs[:2]
        at = node.attrs
        f32 = node.inputs[-1].dtype          # the int8 forms' scale and bias
        if node.op == "qmatmul_bpanels":      # float x [..., K] times int8 column panels
            lead, K, N = A.shape[:-1], A.shape[-1], at["n"]
            M = prod(lead)
            return PanelGemm(Matmul((), (), (), M, K, N, lead, (N,)), min(4, M), 0, M * K,
                             Affine(((Load("in2", f32), "col"),), (Load("in3", f32), "col")))
        out = tuple(at["out_shape"])
        if node.op == "qmatmul_panels":       # int8 row panels times an image's B panels
            from .quant_kernels import QROWS
            M, N, K = at["m"], at["n"], Bp.shape[2]
            return PanelGemm(Matmul(out[:1], (), Bp.shape[:1], M, K, N, (M,), out[2:]), QROWS, QROWS,
                             A.type.size, Affine(((Load("in2", f32), "row"),), (Load("in3", f32), "row")))
        ba, bb, M, K, N = matmul_panels_dims([v.type for v in node.inputs], at)
        nb_rank = max(len(ba), len(bb))
        batch, packed = out[:nb_rank], bool(at["a_packed"])
        tile = panel_tile(M, N, K, prod(batch), packed)
        cols = columns_start(out, batch, M, N)
        return PanelGemm(Matmul(batch, ba, bb, M, K, N, out[nb_rank:cols], out[cols:]),
                         tile.rows, ROWS if packed else 0,
                         panels(M, PACKED_TILE) * PACKED_TILE * K if packed else M * K,
                         acc=tile.acc, panels=tile.panels, rows_first=bool(tile.order),
                         b_rows=bool(at.get("b_rows")))


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {
    "pack_panels": PackGen(),
    "im2col_panels": Im2colGen(),
    "pack_rows": PackRowsGen(),
    "matmul_panels": PanelGemmGen(),
}
