"""Operand readers: a Load (gemm.loads) and an address pattern for A [M, K] or B [K, N],
serving the schedules they fit through the schedules' protocols:
  CPU register tile (cpu_tile)   A: setup(t), step(t, k); B: setup(t), walks(t)
  GPU local memory (gpu_local)   A: at(m, k), vec(m, k, w); B: at, vec, column, k_fastest

  Rows        A row-major (a matmul's A, a conv's filters)         CPU and GPU
  TiledRows   a qconv's filters stored tiled, tm rows interleaved   CPU and GPU
  RowPanels   A packed in row panels of 4 floats or 8 int8           CPU
  Columns     B row-major [K, N], or stored [N, K] (trans_b)         CPU (not trans) and GPU
  Panels      B packed in column panels of 16                        CPU
  Im2col      B as a convolution's image, never materialised        CPU and GPU
  NBitsColumns  B of 4-bit weights, MatMulNBits' layout              CPU (dot tile) and GPU
Sizes and offsets are C expressions (numbers, or names of kernel arguments). CPU readers
clamp rows and columns past C's edge to its last one (computed, then not stored).
"""
from __future__ import annotations

from ...ops.linalg import prod
from .cpu_tile import Walk, flat_walk
from .loads import Load, gather, vtype


def _plus(*terms) -> str:
    return " + ".join(str(t) for t in terms if t)


class Reader:
    """What most readers do: nothing per work-item, no vector loads, no column to hoist."""
    k_fastest = False

    def setup(self, t) -> list[str]:
        return []

    def vec(self, r: str, c: str, w: int) -> str | None:
        return None

    def column(self, n: str):
        return None

    def pointer(self, name: str, *offset) -> str:
        """A pointer `name` to the buffer at `offset`, in its storage type."""
        return f"__global const {self.load.dtype.cl_storage}* {name} = {_plus(self.load.buf, *offset)};"


class Rows(Reader):
    """A row-major: element (m, k) at base + m * stride + k; `last`: the last row (CPU tiles
    clamp to it); `zero(row)`: a row's zero point, or None. A CPU tile finds its rows by
    offsets of type `it`, or by `pointers`: each kernel keeps the faster form (offsets: the
    direct 2048^3 matmul, 216 against 340 ms; pointers: the panel GEMM, 34.7 against 42.9)."""

    def __init__(self, load: Load, stride, base: str = "", last: str = "", zero=None, it: str = "",
                 pointers: bool = False):
        self.load, self.stride, self.base, self.last, self.zero = load, stride, base, last, zero
        self.it, self.pointers = it, pointers

    def setup(self, t) -> list[str]:
        at = [(f"a{i}", f"min(m0 + {i}, {self.last}) * {self.stride}") for i in range(t.rows)]
        lines = [self.pointer(a, self.base, off) if self.pointers else f"const {self.it} {a} = {_plus(self.base, off)};"
                 for a, off in at]
        if self.zero:
            lines += [f"const float z{i} = {self.zero(f'min(m0 + {i}, {self.last})')};" for i in range(t.rows)]
        return lines

    def step(self, t, k: str):
        z = [f"z{i}" if self.zero else None for i in range(t.rows)]
        if self.pointers:
            return [], [Load(f"a{i}", self.load.dtype, self.load.ct).scalar(k, z[i]) for i in range(t.rows)]
        return [], [self.load.scalar(f"a{i} + {k}", z[i]) for i in range(t.rows)]

    def _index(self, m: str, k: str) -> str:
        return _plus(self.base, f"({m}) * {self.stride}", k)

    def at(self, m: str, k: str) -> str:
        return self.load.scalar(self._index(m, k), self.zero(m) if self.zero else None)

    def vec(self, m: str, k: str, w: int) -> str | None:
        """Rows start aligned: the schedule asks only when the row length is a multiple of w."""
        return self.load.aligned(self._index(m, k), w, self.zero(m) if self.zero else None)


class TiledRows(Reader):
    """A qconv's filters stored tiled (lgc.ops.quant.tile_weights): tm rows interleaved per
    k, element (m, k) at ((tile + m / tm) * stride + k) * tm + m % tm, rows counted from the
    first row of tile `tile`. A CPU tile of tm rows reads them as one vector per step."""

    def __init__(self, load: Load, tm: int, stride, tile: str):
        self.load, self.tm, self.stride, self.tile = load, tm, stride, tile

    def step(self, t, k: str):
        assert t.rows == self.tm, "a tile of tiled weights has their rows"
        v = self.load.vector(f"({self.tile} * {self.stride} + {k}) * {self.tm}", self.tm)
        return [f"const {vtype(t.ct, self.tm)} wv = {v};"], [f"wv.s{'0123456789abcdef'[i]}" for i in range(t.rows)]

    def at(self, m: str, k: str) -> str:
        return self.load.scalar(f"(({self.tile} + ({m}) / {self.tm}) * {self.stride} + {k}) * {self.tm}"
                                f" + ({m}) % {self.tm}")


class RowPanels(Reader):
    """A packed as row panels ([..., M/per, K, per]: per = 4 floats, or 8 int8 in one
    vector load). Float panels are read one scalar per row, which LLVM folds into the
    multiply-add as a broadcast from memory; as a vector load split into lanes it took a
    register shuffle per row, on Intel the port that also does half of the FMAs
    (docs/HARDWARE.md, PoCL). A tile of whole panels (TM a multiple of per) reads them from
    one pointer; other tiles keep a pointer per row, clamped to row `last`."""

    def __init__(self, load: Load, per: int, K, base: str = "", last: str = ""):
        self.load, self.per, self.K, self.base, self.last = load, per, K, base, last

    def _whole(self, t) -> bool:
        return t.rows % self.per == 0

    def setup(self, t) -> list[str]:
        if self._whole(t):
            return [self.pointer("aq", self.base, f"pm * {self.K} * {t.rows}")]
        rows = [f"min(m0 + {i}, {self.last})" for i in range(t.rows)]
        return [self.pointer(f"aq{i}", self.base, f"{r} / {self.per} * {self.per} * {self.K}",
                             f"{r} % {self.per}") for i, r in enumerate(rows)]

    def step(self, t, k: str):
        per = self.per
        if not self._whole(t):
            return [], [Load(f"aq{i}", self.load.dtype, self.load.ct).scalar(f"{k} * {per}")
                        for i in range(t.rows)]
        aq = Load("aq", self.load.dtype, self.load.ct)
        if not aq.converts:
            return [], [aq.scalar(f"{i // per * per} * {self.K} + {k} * {per} + {i % per}") for i in range(t.rows)]
        lines = [f"const {vtype(t.ct, per)} ap{j} = {aq.vector(f'{j * per} * {self.K}', per, nth=k)};"
                 for j in range(t.rows // per)]
        return lines, [f"ap{i // per}.s{i % per}" for i in range(t.rows)]


class Columns(Reader):
    """B row-major [K, N] from `base` (or stored [N, K]: `trans`, GPU only). A CPU tile loads
    its columns as vectors; a tile on C's ragged right edge gathers them, clamped. N may be
    an expression (a kernel argument): the edge walk is then always there, under a guard."""

    def __init__(self, load: Load, K, N, base: str = "", trans: bool = False, it: str = "int"):
        self.load, self.K, self.N, self.base, self.trans, self.it = load, K, N, base, trans, it
        self.k_fastest = trans

    def walks(self, t):
        W, N = t.width, self.N
        row = _plus(self.base, f"k * {N}")
        full = [f"const {t.vt} b{h} = {self.load.vector(_plus(row, 'n0', W * h), W)};" for h in range(t.vectors)]
        if isinstance(N, int) and N % t.cols == 0:
            return [("", flat_walk(self.it, self.K, full))]
        last = f"({self.it}){N - 1}" if isinstance(N, int) else f"{N} - 1"
        gathered = [self.load.gather([_plus(row, f"min(n0 + {h * W + j}, {last})") for j in range(W)])
                    for h in range(t.vectors)]
        if isinstance(N, int):
            edge = [f"const {t.vt} b{h} = {v};" for h, v in enumerate(gathered)]
            return [(f"n0 + {t.cols} <= {N}", flat_walk(self.it, self.K, full)),
                    ("", flat_walk(self.it, self.K, edge))]
        # N a kernel argument (the panel GEMM's b_rows): the edge tile's rows are vector loads
        # too, reading on into the next row (lanes past N are computed, then not stored), up
        # to the rows whose loads would leave B: those gather. Gathering every row took the
        # 7 x 7 1x1 convs of MobileNetV2 to twice the time of packing B first.
        kv = f"kv_ = {self.K} - (n0 + {t.cols} - 1) / {N}"
        edge = [f"const {t.vt} b{h} = (k < kv_) ? {self.load.vector(_plus(row, 'n0', W * h), W)} : {v};"
                for h, v in enumerate(gathered)]
        walk = flat_walk(self.it, self.K, edge)
        walk.head.insert(0, f"const {self.it} {kv};")
        return [(f"n0 + {t.cols} <= {N}", flat_walk(self.it, self.K, full)), ("", walk)]

    def at(self, k: str, n: str):
        i = f"({n}) * {self.K} + {k}" if self.trans else f"({k}) * {self.N} + {n}"
        return [], self.load.scalar(_plus(self.base, i))

    def vec(self, k: str, n: str, w: int) -> str | None:
        return None if self.trans else self.load.aligned(_plus(self.base, f"({k}) * {self.N}", n), w)


class Panels(Reader):
    """B packed in column panels ([..., NP, K, 16], zero past N): the tile's TN columns are
    TN / 16 consecutive panels from pn * TN / 16, each one contiguous stream. `NP` (an
    expression) is the panel count: a tile's panels past it read the last one (computed,
    then not stored)."""
    WIDTH = 16

    def __init__(self, load: Load, K, base: str = "", it: str = "int", NP=None):
        self.load, self.K, self.base, self.it, self.NP = load, K, base, it, NP

    def _count(self, t) -> int:
        assert t.cols % self.WIDTH == 0, "a tile of whole panels"
        return t.cols // self.WIDTH

    def setup(self, t) -> list[str]:
        n = self._count(t)
        if n == 1:
            return [self.pointer("bq", self.base, f"pn * {self.K} * {self.WIDTH}")]
        return [self.pointer(f"bq{p}", self.base, f"min(pn * {n} + {p}, {self.NP} - 1) * {self.K} * {self.WIDTH}")
                for p in range(n)]

    def walks(self, t):
        n, W = self._count(t), self.WIDTH
        step = []
        for h in range(t.vectors):
            col = h * t.width
            bq = Load("bq" if n == 1 else f"bq{col // W}", self.load.dtype, self.load.ct)
            step.append(f"const {t.vt} b{h} = {bq.vector(f'k * {W}', t.width, nth=str((col % W) // t.width))};")
        return [("", flat_walk(self.it, self.K, step))]


class Im2col(Reader):
    """B of a convolution as implicit GEMM: element (k, p) is the input under window tap k
    (channel, then window offsets) at output position p; padding reads as the real value 0
    (an int8 image's zero point removed, as ONNX's QLinearConv has it).
    CPU: the columns are TP outputs along the last spatial axis from ox0 (o0.. fixed); the
    walk loops over the group's channels and the window, skipping rows outside the image, and
    loads TP inputs as one vector where they lie inside it; A's offset of a step is `wk`.
    GPU: the columns are output positions (with `fold`, of all images side by side)."""

    def __init__(self, conv, load: Load, it: str, zero: str | None = None, size: int = 0, fold: bool = False):
        self.c, self.load, self.it, self.zero, self.size, self.fold = conv, load, it, zero, size, fold

    # ---- CPU register tile
    def setup(self, t) -> list[str]:
        return [f"const float xz_ = {self.zero};"] if self.zero else []

    def walks(self, t):
        assert t.vectors == 1, "a conv tile row is one vector"
        c, it, TP = self.c, self.it, t.width
        S, K, s, pb, d = c.S, c.KW, c.s, c.pb, c.d
        L = len(S) - 1
        head = [f"for ({it} c = 0; c < {c.Cg}; ++c) {{",
                f"  const {it} xc = (n * {c.C} + grp * {c.Cg} + c) * {prod(S)};"]
        ind = "  "
        for i in range(L):
            head.append(f"{ind}for ({it} k{i} = 0; k{i} < {K[i]}; ++k{i}) {{")
            ind += "  "
            head.append(f"{ind}const {it} i{i} = o{i} * {s[i]} - {pb[i]} + k{i} * {d[i]};")
            head.append(f"{ind}if (i{i} < 0 || i{i} >= {S[i]}) continue;")
        row = " + ".join([f"i{i} * {prod(S[i + 1:])}" for i in range(L)] + ["xc"])
        wk = " + ".join([f"k{i} * {prod(K[i + 1:])}" for i in range(L)] + ["kx", f"c * {prod(K)}"])
        sl, SL = s[-1], S[-1]
        head += [f"{ind}const {it} xr = {row};",
                 f"{ind}for ({it} kx = 0; kx < {K[-1]}; ++kx) {{"]
        reach, inside, border = self._row(TP)
        step = [f"const {it} ix = ox0 * {sl} - {pb[-1]} + kx * {d[-1]};", f"{t.vt} b0;",
                f"if (ix >= 0 && ix + last * {sl} < {SL} && xr + ix + {reach} < {self.size}) b0 = {inside};",
                f"else b0 = {border};", f"const {it} wk = {wk};"]
        close = [f"{ind[:len(ind) - 2 * i]}}}" for i in range(L + 1)] + ["}"]
        return [("", Walk(head, step, close, "wk", ind + "  "))]

    def _row(self, TP):
        """(last input offset the in-image load of TP outputs touches, that load, the load
        lane by lane with bounds checks)."""
        sl, SL, x, z = self.c.s[-1], self.c.S[-1], self.load, self.zero and "xz_"
        border = gather(x.ct, [f"((ix + {j * sl} >= 0 && ix + {j * sl} < {SL}) ? "
                               f"{x.scalar(f'xr + ix + {j * sl}', z)} : {x.nothing})" for j in range(TP)])
        if sl == 1:
            return (TP - 1) * sl, x.vector("xr + ix", TP, z), border
        if sl == 2 and 1 < TP <= 8:   # one contiguous load of 2*TP, keep the even lanes
            return 2 * TP - 1, f"({x.vector('xr + ix', 2 * TP, z)}).even", border
        return (TP - 1) * sl, x.gather([f"xr + ix + {j * sl}" for j in range(TP)], z), border

    # ---- GPU local memory
    def image_base(self, n: str) -> tuple[str, str]:
        """(X offset of column n's image, group and split, n's output position)."""
        c = self.c
        if not self.fold:
            return "offx", f"({n})"
        return f"((({n}) / {c.P}) * {c.C} + grp * {c.Cg} + z * {c.Cg // c.splits}) * {prod(c.S)}", f"(({n}) % {c.P})"

    def _x(self, at: str) -> str:
        return f"inside ? {self.load.scalar(at, self.zero)} : {self.load.nothing}"

    def at(self, k: str, n: str):
        c, it = self.c, self.it
        base, pos = self.image_base(n)
        SP, KS, r = prod(c.S), c.KS, len(c.S)
        if c.pointwise:
            return [], self.load.scalar(f"{base} + ({k}) * {SP} + {pos}", self.zero)
        lines = [f"const {it} kk = {k}, ch = kk / {KS};",
                 f"{it} kr = kk % {KS}, pr = {pos}, at = {base} + ch * {SP};", "int inside = 1;"]
        for i in range(r - 1, -1, -1):   # decode window tap and output position, last axis first
            lines += [f"{{ const {it} ki = kr % {c.KW[i]}, oi = pr % {c.O[i]}; kr /= {c.KW[i]}; pr /= {c.O[i]};",
                      f"  const {it} xi = oi * {c.s[i]} - {c.pb[i]} + ki * {c.d[i]};",
                      f"  inside &= (xi >= 0) & (xi < {c.S[i]}); at += xi * {prod(c.S[i + 1:])}; }}"]
        return lines, self._x("at")

    def column(self, n: str):
        """The output position's part of the address, once per work-item."""
        c, it = self.c, self.it
        if c.pointwise and not self.fold:
            return None
        base, pos = self.image_base(n)
        SP, KS, r = prod(c.S), c.KS, len(c.S)
        if c.pointwise:
            return [f"const {it} bxo = {base} + {pos};"], \
                lambda k: ([], self.load.scalar(f"bxo + ({k}) * {SP}", self.zero))
        lines = [f"{it} bpr = {pos};", f"const {it} bxo = {base};"]
        for i in range(r - 1, -1, -1):
            lines.append(f"const {it} bx{i} = (bpr % {c.O[i]}) * {c.s[i]} - {c.pb[i]}; bpr /= {c.O[i]};")

        def at_k(k):
            ls = [f"const {it} kk = {k}, ch = kk / {KS};",
                  f"{it} kr = kk % {KS}, at = bxo + ch * {SP};", "int inside = 1;"]
            for i in range(r - 1, -1, -1):
                ls += [f"{{ const {it} xi = bx{i} + (kr % {c.KW[i]}) * {c.d[i]}; kr /= {c.KW[i]};",
                       f"  inside &= (xi >= 0) & (xi < {c.S[i]}); at += xi * {prod(c.S[i + 1:])}; }}"]
            return ls, self._x("at")
        return lines, at_k

    def vec(self, k: str, n: str, w: int) -> str | None:
        """Unfolded 1x1 convs: a row of B is a row of the image."""
        if not self.c.pointwise or self.fold or prod(self.c.S) % w:
            return None
        return self.load.aligned(f"offx + ({k}) * {prod(self.c.S)} + {n}", w, self.zero)


class NBitsColumns(Reader):
    """B [K, N] of 4-bit weights in onnxruntime's MatMulNBits layout (lgc.ops.quant): column
    n's bytes contiguous, two k per byte (the even one in the low nibble), a scale and zero
    point per column and block of `block` k. GCN and PoCL have no packed integer dot product
    (docs/HARDWARE.md): nibbles are unpacked with masks and shifts and multiplied in float.
    GPU local memory: `at` dequantizes one element as it is staged (k fastest: a wave reads
    consecutive bytes). Dot-product tiles (lgc.backends.nbits_kernels, CPU and GPU GEMV) load
    w bytes of a column at once: `columns` declares the columns' offsets, `dequant` a block's
    scale and offset, `halves` the low and high nibbles as float vectors scaled in registers.
    `first`: the buffer number of b (scales and zero points follow it)."""
    k_fastest = True

    def __init__(self, K: int, N: int, block: int, zeros: bool, it: str = "int", first: int = 1):
        self.K, self.N, self.block, self.zeros, self.it = K, N, block, zeros, it
        self.b, self.s, self.z = (f"in{first + i}" for i in range(3))
        self.G = -(-K // block)
        self.KB, self.ZB = self.G * block // 2, -(-self.G // 2)

    @staticmethod
    def of(node, it: str, first: int = 1) -> "NBitsColumns":
        at = node.attrs
        return NBitsColumns(at["k"], node.inputs[first].shape[0], at["block_size"],
                            len(node.inputs) > first + 2, it, first)

    def scale(self, n: str, g: str) -> str:
        return f"{self.s}[({n}) * {self.G} + ({g})]"

    def zero(self, n: str, g: str) -> str:
        return _nibble(self.z, f"({n}) * {self.ZB}", g) if self.zeros else "8.0f"

    def nibble(self, n: str, k: str) -> str:
        return _nibble(self.b, f"({n}) * {self.KB}", k)

    # ---- GPU local memory
    def at(self, k: str, n: str):
        it = self.it
        lines = [f"const {it} kq_ = {k}, nq_ = {n}, gq_ = kq_ / {self.block};"]
        return lines, f"(({self.nibble('nq_', 'kq_')} - {self.zero('nq_', 'gq_')}) * {self.scale('nq_', 'gq_')})"

    # ---- dot-product tiles
    def columns(self, cols: list[str]) -> list[str]:
        """Offsets of the tile's columns (expressions, clamped to B): bytes, scales, zeros."""
        it, lines = self.it, []
        for j, n in enumerate(cols):
            lines += [f"const {it} br{j} = ({n}) * {self.KB}, sr{j} = ({n}) * {self.G};"]
            if self.zeros:
                lines.append(f"const {it} zr{j} = ({n}) * {self.ZB};")
        return lines

    def dequant(self, j: int, g: str) -> list[str]:
        """Column j's scale s{j} and offset o{j} = -zero * scale in block g: w = q * s + o."""
        z = _nibble(self.z, f"zr{j}", g) if self.zeros else "8.0f"
        return [f"const float s{j} = {self.s}[sr{j} + ({g})], o{j} = -{z} * s{j};"]

    def halves(self, j: int, kb: str, w: int, scaled: bool = True) -> tuple[list[str], str, str]:
        """(lines, low, high): w bytes of column j from byte kb, the even and odd k's levels as
        float vectors, dequantized with the block's s{j} and o{j} unless not `scaled`."""
        q, fw = f"q{j}", f"float{w}"
        lines = [f"const uchar{w} {q} = vload{w}(0, {self.b} + br{j} + {kb});"]
        lo, hi = f"convert_{fw}({q} & (uchar{w})15)", f"convert_{fw}({q} >> (uchar{w})4)"
        if scaled:
            lo, hi = f"({lo} * s{j} + o{j})", f"({hi} * s{j} + o{j})"
        return lines, lo, hi

    def one(self, j: int, k: str, scaled: bool = True) -> str:
        """Column j's weight at k (in the block whose s{j} and o{j} are declared), or its
        level (not `scaled`)."""
        q = _nibble(self.b, f"br{j}", k)
        return f"({q} * s{j} + o{j})" if scaled else q


def _nibble(buf: str, row: str, i: str) -> str:
    """Nibble i of the row of nibbles at byte `row` of buf (low nibble first), as a float."""
    return f"(float)(({buf}[{row} + ({i}) / 2] >> ((({i}) & 1) << 2)) & 15)"
